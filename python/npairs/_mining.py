"""Hard negative class mining (Sohn 2016, section 3.2): one npairs_select_hard_classes call.

The greedy rule (npairs.h documents it exactly): the first class at random
from the seed, then each step the unselected class whose largest inner
product with the classes selected so far is the highest; ties go to a hash
of (seed, step, class).
"""

from __future__ import annotations

import ctypes
import numbers

import numpy as np

from . import _arrays, _lib
from ._core import backend_code, check, context, get_num_threads, get_workspace_limit
from .errors import InvalidArgumentError, InvalidDTypeError

_DTYPES = {np.dtype("float32"): _lib.F32, np.dtype("float64"): _lib.F64}


def _count(n, classes):
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise InvalidArgumentError(f"n must be an integer, got {n!r}")
    if not 1 <= int(n) <= classes:
        raise InvalidArgumentError(f"n must be between 1 and the number of classes ({classes}), got {n}")
    return int(n)


def _seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**64:
        raise InvalidArgumentError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    return int(seed)


def select_hard_classes(class_embeddings, n, seed=0, backend="auto"):
    """Selects n classes by hard negative class mining; returns their indices in the order selected.

    class_embeddings: [C, D] floating array, one embedding per candidate
    class (NumPy or any host array; PyTorch, CuPy or other CUDA arrays are
    read in place on their device). float16 and bfloat16 are not supported
    (cast to float32). backend: 'auto' (the array's device: CUDA for CUDA
    arrays, else the CPU), 'cpu' or 'cuda'.

    Returns an int64 array of n distinct class indices: NumPy for host
    arrays (a torch tensor for torch tensors), on the array's device for
    CUDA arrays. Deterministic for a seed, backend, device and thread count.
    Raises InvalidArgumentError for a bad shape, n or seed,
    InvalidDTypeError for a non-floating dtype, InvalidValueError (from the
    library) for NaN, infinite or overflowing embeddings.
    """
    if class_embeddings is None:
        raise InvalidArgumentError("class_embeddings is None; it is a required input")
    code = backend_code(backend)
    E = _arrays.wrap("class_embeddings", class_embeddings)
    if E.ndim != 2:
        raise InvalidArgumentError(f"class_embeddings must be 2-D [classes, dim], got shape {list(E.shape)}")
    C, D = E.shape
    if C == 0 or D == 0:
        raise InvalidArgumentError(f"class_embeddings must have at least one class and one column, got shape {list(E.shape)}")
    count = _count(n, C)
    seed = _seed(seed)
    dtype = E.dtype
    if dtype.kind in "iub":
        dtype = np.dtype("float64")
    if dtype not in _DTYPES:
        raise InvalidDTypeError(
            f"class_embeddings has dtype {_arrays.dtype_name(E.dtype)}; select_hard_classes reads float32 or "
            "float64 (cast it first)"
        )
    if E.on_cuda and code == _lib.BACKEND_CPU:
        raise InvalidArgumentError(f"backend='cpu' but class_embeddings is in CUDA memory (device {E.device})")
    if code == _lib.BACKEND_AUTO:
        code = _lib.BACKEND_CUDA if E.on_cuda else _lib.BACKEND_CPU
    if E.on_cuda:
        E = _arrays.convert_cuda(E, dtype)
        out = _arrays.empty_like_family(E, "selected", (count,), np.int64)
    else:
        fam = E.fam
        E = _arrays.host(E.name, E.obj, dtype)
        E.fam = fam
        out = _arrays.empty_host(E, "selected", (count,), np.int64)

    select = _lib.function("npairs_select_hard_classes")  # 1.1: UnsupportedError from an older library
    ctx = context(code, E.device if E.on_cuda else 0)
    ctx.set_workspace_limit(get_workspace_limit())
    if ctx.backend == _lib.BACKEND_CPU:
        ctx.set_threads(get_num_threads())
    else:
        ctx.set_stream(_arrays.stream_of(E) if E.on_cuda else None)
    sel = _lib.ClassSelection()
    _lib.function("npairs_class_selection_init")(ctypes.byref(sel))
    sel.class_embeddings = E.pointer()
    sel.classes, sel.dim, sel.dtype, sel.count, sel.seed = C, D, _DTYPES[dtype], count, seed
    check(select(ctx.handle, ctypes.byref(sel), out.pointer()))
    return out.obj
