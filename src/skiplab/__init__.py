"""skiplab: the library behind the executable book on skip connections.

Import what a chapter needs from the submodules, or the common names from here::

    from skiplab import claim, load_digits, seed_everything, by_scale, train
"""

from .claims import Claim, ClaimFailed, claim
from .data import DataSplit, load_digits, load_mnist1d
from .runtime import (
    SCALES,
    KnobError,
    by_scale,
    checkpoint_dir,
    get_device,
    get_scale,
    get_seed,
    progress,
    seed_everything,
)
from .train import History, evaluate, train

# The one place the version is written: pyproject.toml reads it, and the notebooks' setup cell
# installs the git tag v<version> (tools/setup_cell.py).
__version__ = "0.3.0"

__all__ = [
    "SCALES",
    "Claim",
    "ClaimFailed",
    "DataSplit",
    "History",
    "KnobError",
    "by_scale",
    "checkpoint_dir",
    "claim",
    "evaluate",
    "get_device",
    "get_scale",
    "get_seed",
    "load_digits",
    "load_mnist1d",
    "progress",
    "seed_everything",
    "train",
]
