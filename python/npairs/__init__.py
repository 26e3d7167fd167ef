"""npairs: Python bindings of libnpairs, the N-pairs metric-learning loss.

Functions named as in TensorFlow Addons (:func:`npairs_loss`,
:func:`npairs_multilabel_loss`) plus tf.contrib's embeddings form
(:func:`npairs_embeddings_loss`), forward and backward, on CPU and CUDA.
Loss classes: :class:`NpairsLoss`, :class:`NpairsMultilabelLoss`,
:class:`NpairsEmbeddingsLoss`; PyTorch modules in ``npairs.torch``.

The shared library is loaded at first use from ``$NPAIRS_LIBRARY``, else
next to this package, else through the system loader (see ``npairs._lib``).

Threads: CPU calls use :func:`get_num_threads` threads (set with
:func:`set_num_threads`; 0, the default, means every core), or ``threads=``
per call; ``npairs.torch`` follows ``torch.get_num_threads()``. Memory: each
thread's contexts keep the largest workspace their calls needed until
:func:`empty_cache` releases it; :func:`set_workspace_limit` (or
``workspace_limit=`` per call; 0, the default, means none) caps it, and a
call that needs more is computed in pieces that fit.
"""

from ._core import (
    backend_available,
    empty_cache,
    get_num_threads,
    get_workspace_limit,
    npairs_embeddings_loss,
    npairs_loss,
    npairs_multilabel_loss,
    set_num_threads,
    set_workspace_limit,
)
from .errors import (
    BackendUnavailableError,
    DeviceError,
    InternalError,
    InvalidArgumentError,
    InvalidDTypeError,
    InvalidValueError,
    LibraryNotFoundError,
    NpairsError,
    OutOfMemoryError,
    UnsupportedError,
)
from .losses import NpairsEmbeddingsLoss, NpairsLoss, NpairsMultilabelLoss
from ._config import show_config
from ._mining import select_hard_classes

__version__ = "1.1.0"


def library_version():
    """The loaded libnpairs' version string, e.g. '1.1.0' (loads the library)."""
    from . import _lib

    return _lib.load().npairs_version_string().decode()


def library_path():
    """Where libnpairs was loaded from (loads the library)."""
    from . import _lib

    return _lib.library_path()


__all__ = [
    "BackendUnavailableError",
    "DeviceError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidDTypeError",
    "InvalidValueError",
    "LibraryNotFoundError",
    "NpairsEmbeddingsLoss",
    "NpairsError",
    "NpairsLoss",
    "NpairsMultilabelLoss",
    "OutOfMemoryError",
    "UnsupportedError",
    "backend_available",
    "empty_cache",
    "get_num_threads",
    "get_workspace_limit",
    "library_path",
    "library_version",
    "npairs_embeddings_loss",
    "npairs_loss",
    "npairs_multilabel_loss",
    "select_hard_classes",
    "set_num_threads",
    "set_workspace_limit",
    "show_config",
]
