"""The three architecture checkers, one module each (kept here under their old import path).

- :func:`~skiplab.checks.basic_block.check_basic_block`: a ResNet basic block.
- :func:`~skiplab.checks.dense_layer.check_dense_layer`: a DenseNet layer.
- :func:`~skiplab.checks.crop.check_crop_and_concat`: the valid U-Net's crop and concatenate.
"""

from .basic_block import check_basic_block
from .crop import check_crop_and_concat
from .dense_layer import check_dense_layer

__all__ = ["check_basic_block", "check_crop_and_concat", "check_dense_layer"]
