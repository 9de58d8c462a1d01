import numpy as np
import pytest
import torch

import skiplab
import skiplab.data
from skiplab import load_digits, load_mnist1d
from skiplab.data import batch_indices, cifar, segmentation, splits


def test_digits_shapes_and_standardisation():
    flat = load_digits(device="cpu")
    assert flat.x_train.shape[1:] == (64,) and flat.n_classes == 10
    assert len(flat.y_train) + len(flat.y_test) == 1797
    assert flat.x_train.dtype == torch.float32 and flat.y_train.dtype == torch.int64
    assert abs(flat.x_train.mean().item()) < 1e-4
    assert abs(flat.x_train.std().item() - 1) < 1e-2
    images = load_digits(images=True, device="cpu")
    assert images.example_shape == (1, 8, 8)
    torch.testing.assert_close(images.x_train.flatten(1), flat.x_train)


def test_split_depends_on_seed_only():
    a, b, c = (load_digits(seed=s, device="cpu") for s in (0, 0, 1))
    assert torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_test, c.y_test)


def test_mnist1d_is_generated_without_touching_global_numpy_state():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    data = load_mnist1d(num_samples=500, device="cpu")
    assert np.random.rand() == expected
    assert data.example_shape == (1, 40)
    assert len(data.y_train) == 400 and set(data.y_train.tolist()) <= set(range(10))


def test_batch_indices_cover_each_epoch_once():
    n, batch = 10, 3
    epoch = torch.cat([batch_indices(step, n, batch, seed=0) for step in range(3)])
    assert len(set(epoch.tolist())) == 9  # 3 full batches, no repeats; the remainder dropped
    assert torch.equal(batch_indices(4, n, batch, 0), batch_indices(4, n, batch, 0))
    with pytest.raises(ValueError, match="batch_size"):
        batch_indices(0, n, 11, 0)


def test_the_data_package_re_exports_every_module_name():
    modules = (splits, cifar, segmentation)
    assert sorted(skiplab.data.__all__) == sorted(n for m in modules for n in m.__all__)
    for module in modules:
        for name in module.__all__:
            assert getattr(skiplab.data, name) is getattr(module, name)
    assert skiplab.load_digits is splits.load_digits and skiplab.DataSplit is splits.DataSplit
