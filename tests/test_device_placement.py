"""Helpers that create tensors must create them where the model or inputs live.

There is no GPU in the test environment; the meta device (shapes and dtypes, no data)
stands in for it: a tensor made on the CPU next to a meta tensor fails just as one made
on the CPU next to a CUDA tensor does.
"""

import pytest
import torch
from torch import nn

from skiplab.probes import checkerboard_share, conv_matrix
from skiplab.toys import TwoUnitToy

META = torch.device("meta")


def test_toy_loss_is_computed_on_the_device_of_its_arguments():
    toy = TwoUnitToy()
    loss = toy.loss(torch.tensor([1.0, 2.0], device=META), 0.5)
    assert loss.device == META and loss.shape == (2,)
    assert toy.loss(2.0, 0.5).item() == pytest.approx(0.0, abs=1e-12)   # numbers: the CPU


def test_conv_matrix_is_built_on_the_convolutions_device():
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False).double().to(META)
    matrix = conv_matrix(conv, (2, 6, 6))
    assert matrix.device == META and matrix.shape == (27, 72)


class _Seen(Exception):
    pass


def test_checkerboard_probe_feeds_the_upsampler_on_its_device():
    upsampler = nn.ConvTranspose2d(4, 4, 2, stride=2).to(META)
    seen = []

    def stop(_module, inputs):
        seen.append(inputs[0].device)
        raise _Seen    # the share itself needs real numbers, which meta tensors lack

    upsampler.register_forward_pre_hook(stop)
    with pytest.raises(_Seen):
        checkerboard_share(upsampler, 4)
    assert seen == [META]
