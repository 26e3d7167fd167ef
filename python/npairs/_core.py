"""The functional API: argument checks in Python, then one npairs_loss call."""

from __future__ import annotations

import ctypes
import math
import re
import numbers
import threading
import weakref

import numpy as np

from . import _arrays, _lib
from .errors import (
    InvalidArgumentError,
    InvalidDTypeError,
    UnsupportedError,
    error_for_status,
)

# ---------------------------------------------------------------------------
# Status checks and contexts


def check(status):
    """Raises the NpairsError of a non-zero status, with the library's message."""
    if status:
        raise error_for_status(status, f"{_lib.last_error()} [{_lib.status_string(status)}]")


_BACKENDS = {"auto": _lib.BACKEND_AUTO, "cpu": _lib.BACKEND_CPU, "cuda": _lib.BACKEND_CUDA, "gpu": _lib.BACKEND_CUDA}


def backend_code(backend):
    """'auto' | 'cpu' | 'cuda' (case-insensitive) -> npairs_backend."""
    key = str(getattr(backend, "value", backend)).lower()
    if key not in _BACKENDS:
        raise InvalidArgumentError(f"backend must be 'auto', 'cpu' or 'cuda', got {backend!r}")
    return _BACKENDS[key]


def backend_available(backend):
    """True when a context of `backend` ('cpu', 'cuda' or 'auto') can be created now."""
    return bool(_lib.load().npairs_backend_available(backend_code(backend)))


class Context:
    """An owned npairs_context; destroyed when collected or at interpreter exit."""

    def __init__(self, backend, device):
        lib = _lib.load()
        handle = _lib.npairs_context()
        check(lib.npairs_context_create(backend, device, ctypes.byref(handle)))
        self.handle = handle
        self.device = device
        kind = _lib.npairs_backend()
        check(lib.npairs_context_backend(handle, ctypes.byref(kind)))
        self.backend = kind.value
        self._stream = None
        self._threads = 0  # the library's default: every core
        self._workspace_limit = 0  # the library's default: none
        self.reserved = 0  # bytes of workspace known to be allocated (compute's reserve_workspace)
        self._finalizer = weakref.finalize(self, _destroy, lib, handle, self.backend == _lib.BACKEND_CUDA)

    def set_stream(self, stream):
        if stream != self._stream:
            check(_lib.load().npairs_context_set_stream(self.handle, stream))
            self._stream = stream

    def set_threads(self, threads):
        if threads != self._threads:
            check(_lib.load().npairs_context_set_threads(self.handle, threads))
            self._threads = threads

    def set_workspace_limit(self, limit):
        if limit != self._workspace_limit:
            check(_lib.function("npairs_context_set_workspace_limit")(self.handle, limit))
            self._workspace_limit = limit
            if limit and self.reserved > limit:  # the library frees workspace beyond a new limit
                self.reserved = 0

    def synchronize(self):
        check(_lib.load().npairs_context_synchronize(self.handle))

    def close(self):
        self._finalizer()


def _destroy(lib, handle, cuda):
    # The caller's last stream may be gone by now (and at exit): go back to
    # the legacy default stream first, so that destroy never waits on a
    # dangling stream handle. Errors cannot be reported from a finalizer.
    if cuda:
        lib.npairs_context_set_stream(handle, None)
    lib.npairs_context_destroy(handle)


class _ContextCache(dict):
    """One thread's contexts by (backend, device); a dict subclass so that the registry can hold it weakly."""

    __hash__ = object.__hash__  # identity: two threads' caches are never the same entry

    def __eq__(self, other):
        return self is other


_local = threading.local()
_caches = weakref.WeakSet()  # every live thread's _ContextCache, for empty_cache()
_caches_lock = threading.Lock()


def context(backend, device=0):
    """This thread's cached context for (backend, device); created on first use."""
    cache = getattr(_local, "contexts", None)
    if cache is None:
        cache = _local.contexts = _ContextCache()
        with _caches_lock:
            _caches.add(cache)
    key = (backend, device)
    ctx = cache.get(key)
    if ctx is None:
        ctx = cache[key] = Context(backend, device)
    return ctx


def empty_cache():
    """Releases the library's cached workspace: drops every thread's cached contexts.

    Each context keeps the largest workspace any of its calls needed (see the
    README, "Memory"); destroying it returns that memory. A context that
    another thread is using right now is destroyed when that call returns.
    The next call creates a fresh context. It also drops the free blocks
    that large host outputs (an R x M gradient) are reused from.
    """
    with _caches_lock:
        caches = list(_caches)
    for cache in caches:
        cache.clear()
    _arrays.release_outputs()


# The thread count of CPU calls that give none: 0 means every core.
_threads = 0


def threads_count(value, name="threads"):
    """A thread count: an integer >= 0 (0: every core)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InvalidArgumentError(f"{name} must be an integer at least 0 (0: every core), got {value!r}")
    return int(value)


def set_num_threads(threads):
    """Sets the CPU thread count of calls that pass no threads= (0, the default: every core).

    npairs.torch ignores it and follows torch.get_num_threads().
    """
    global _threads
    _threads = threads_count(threads)


def get_num_threads():
    """The CPU thread count of calls that pass no threads= (0: every core)."""
    return _threads


# The workspace limit of calls that give none, in bytes: 0 means no limit.
_workspace_limit = 0
_SIZE_BITS = 8 * ctypes.sizeof(ctypes.c_size_t)


def workspace_limit_bytes(value, name="workspace_limit"):
    """A workspace limit: an integer number of bytes, 0 to SIZE_MAX (0: no limit)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < 2**_SIZE_BITS:
        raise InvalidArgumentError(
            f"{name} must be an integer number of bytes, at least 0 (0: no limit) and below 2**{_SIZE_BITS}, "
            f"got {value!r}"
        )
    return int(value)


def set_workspace_limit(limit):
    """Sets the workspace limit, in bytes, of calls that pass no workspace_limit= (0, the default: none).

    A call whose scratch memory would exceed it is computed in pieces that
    fit (SPEC section 4); one whose smallest piece does not fit raises
    OutOfMemoryError. It caps the library's own scratch memory only, not the
    inputs and outputs.
    """
    global _workspace_limit
    _workspace_limit = workspace_limit_bytes(limit)


def get_workspace_limit():
    """The workspace limit, in bytes, of calls that pass no workspace_limit= (0: none)."""
    return _workspace_limit


# ---------------------------------------------------------------------------
# Argument normalisation

_REDUCTIONS = {
    "none": _lib.REDUCTION_NONE,
    "sum": _lib.REDUCTION_SUM,
    "sum_over_batch_size": _lib.REDUCTION_SUM_OVER_BATCH_SIZE,
    "auto": _lib.REDUCTION_SUM_OVER_BATCH_SIZE,
    "mean": _lib.REDUCTION_SUM_OVER_BATCH_SIZE,
}
REDUCTION_NAMES = {v: k for k, v in _REDUCTIONS.items() if k in ("none", "sum", "sum_over_batch_size")}


def reduction_code(reduction):
    """Keras reduction name ('none', 'sum', 'sum_over_batch_size', also 'auto'/'mean'; any case) -> code.

    Only names: the library's integer codes are not part of the Python API.
    """
    key = getattr(reduction, "value", reduction)  # tf.keras.losses.Reduction members are strings anyway
    if isinstance(key, str) and key.lower() in _REDUCTIONS:
        return _REDUCTIONS[key.lower()]
    raise InvalidArgumentError(
        f"reduction must be one of 'none', 'sum', 'sum_over_batch_size' (or 'auto', 'mean'), got {reduction!r}"
    )


def reduction_name(reduction):
    """The canonical name ('none', 'sum' or 'sum_over_batch_size') of a reduction name."""
    return REDUCTION_NAMES[reduction_code(reduction)]


def check_reg_lambda(reg_lambda, reduction, embeddings=True):
    """reg_lambda as a float, checked against the reduction code (the L2 term needs a scalar one)."""
    value = non_negative_float("reg_lambda", reg_lambda)
    if embeddings and value > 0 and reduction == _lib.REDUCTION_NONE:
        raise InvalidArgumentError(
            "reg_lambda must be 0 with reduction='none': the L2 term is added once to a scalar loss"
        )
    return value


def check_symmetric(symmetric, reduction, sample_weight=None):
    """symmetric as a bool, checked against the reduction code and the weights (SPEC section 5).

    The loss over columns is averaged with the loss over rows into one
    scalar, and has no row to weight: it needs a scalar reduction and no
    sample_weight.
    """
    if not isinstance(symmetric, (bool, np.bool_)):
        raise InvalidArgumentError(f"symmetric must be True or False, got {symmetric!r}")
    if symmetric and reduction == _lib.REDUCTION_NONE:
        raise InvalidArgumentError(
            "symmetric=True needs a scalar reduction ('sum' or 'sum_over_batch_size'), got reduction='none': "
            "the symmetric loss is the mean of a row loss and a column loss, with no value per row"
        )
    if symmetric and sample_weight is not None:
        raise InvalidArgumentError(
            "symmetric=True takes no sample_weight: the loss over columns has no row to weight"
        )
    return bool(symmetric)


def positive_float(name, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a finite number greater than 0, got {value!r}") from None
    if not (0 < v < math.inf):
        raise InvalidArgumentError(f"{name} must be finite and greater than 0, got {value!r}")
    return v


def non_negative_float(name, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be a finite number at least 0, got {value!r}") from None
    if not (0 <= v < math.inf):
        raise InvalidArgumentError(f"{name} must be finite and at least 0, got {value!r}")
    return v


# The library's floating dtypes; float16 and bfloat16 on CUDA only (a CPU
# context answers UNSUPPORTED).
_DTYPE_CODES = {
    np.dtype("float32"): _lib.F32,
    np.dtype("float64"): _lib.F64,
    np.dtype("float16"): _lib.F16,
    _arrays.BFLOAT16: _lib.BF16,
}
_LABEL_INTS = (np.dtype("int32"), np.dtype("int64"))


def _logits_dtype(name, dtype, on_cuda):
    """float16/bfloat16/float32/float64 kept; host integers and booleans become float64."""
    if dtype in _DTYPE_CODES:
        return dtype
    if dtype.kind in "biu" and not on_cuda:
        return np.dtype("float64")
    raise InvalidDTypeError(
        f"{name} has dtype {_arrays.dtype_name(dtype)}; libnpairs computes in float16, bfloat16, float32 "
        "or float64 (cast it first)"
    )


def result_dtype(logits):
    """The dtype of a call's loss and gradients, from its logits as (name, NumPy dtype, on_cuda) triples.

    Also what npairs.torch's fake kernels give their outputs, from tensor metadata alone.
    """
    dtypes = [_logits_dtype(*x) for x in logits]
    return dtypes[0] if len(dtypes) == 1 else _promote(*dtypes)


def _promote(a, b):
    """NumPy's type promotion, and PyTorch's for bfloat16, which NumPy lacks:
    bfloat16 with float16 or float32 gives float32, with float64 float64."""
    if _arrays.BFLOAT16 not in (a, b):
        return np.result_type(a, b)
    other = b if a == _arrays.BFLOAT16 else a
    return other if other == _arrays.BFLOAT16 else np.result_type(other, np.float32)


def _label_dtype(a):
    """int32/int64 kept; other integers and booleans become int64; integral host floats too."""
    if a.dtype in _LABEL_INTS:
        return a.dtype
    if a.dtype.kind in "biu":
        return np.dtype("int64")
    if a.dtype.kind == "f" and not a.on_cuda:
        v = a.obj
        if v.size == 0 or (np.all(np.isfinite(v)) and np.all(v == np.round(v)) and np.all(np.abs(v) < 2.0**63)):
            return np.dtype("int64")
        raise InvalidDTypeError(f"{a.name} must hold integer class labels; it has non-integer {a.dtype} values")
    raise InvalidDTypeError(
        f"{a.name} must hold integer class labels (int32 or int64), got dtype {_arrays.dtype_name(a.dtype)}"
    )


def _real_dtype_ok(a):
    if a.dtype.kind not in "biuf" and a.dtype != _arrays.BFLOAT16:
        raise InvalidDTypeError(f"{a.name} must be real numbers, got dtype {a.dtype}")


def _shape_str(shape):
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _is_scalar_like(x):
    return isinstance(x, numbers.Number) or (isinstance(x, np.ndarray) and x.ndim == 0) or isinstance(x, np.generic)


def _densify(name, obj):
    """Dense values of a SparseTensor-like object (indices, values, dense_shape), else obj itself."""
    if all(hasattr(obj, a) for a in ("indices", "values", "dense_shape")) and not hasattr(obj, "__array__"):
        shape = tuple(int(s) for s in np.asarray(obj.dense_shape))
        indices = np.asarray(obj.indices, dtype=np.int64).reshape(-1, len(shape))
        values = np.asarray(obj.values)
        dense = np.zeros(shape, dtype=values.dtype if values.dtype.kind in "biuf" else np.float64)
        np.add.at(dense, tuple(indices.T), values)
        return dense
    return obj


# ---------------------------------------------------------------------------
# The call


class _Prepared:
    """Checked, converted inputs of one npairs_loss call."""


def _prepare(
    *,
    targets,
    column_targets,
    multilabel,
    embeddings,
    similarity,
    anchors,
    positives,
    sample_weight,
    grad_loss,
    reduction,
    temperature,
    reg_lambda,
    backend,
    names,
    host_half_as_float32,
    weights_as_grad_loss,
    symmetric=False,
):
    p = _Prepared()
    p.reduction = reduction_code(reduction)
    p.symmetric = check_symmetric(symmetric, p.reduction, sample_weight)
    p.temperature = positive_float("temperature", temperature)
    p.reg_lambda = check_reg_lambda(reg_lambda, p.reduction, embeddings)
    p.backend = backend_code(backend)
    required = [("targets", targets)] + ([("anchors", anchors), ("positives", positives)] if embeddings
                                         else [("similarity", similarity)])
    for key, value in required:
        if value is None:
            raise InvalidArgumentError(f"{names[key]} is None; it is a required input")

    # Logits.
    if embeddings:
        A = _arrays.wrap(names["anchors"], anchors)
        P = _arrays.wrap(names["positives"], positives)
        for X in (A, P):
            if X.ndim != 2:
                raise InvalidArgumentError(f"{X.name} must be 2-D [rows, dim], got shape {_shape_str(X.shape)}")
        if A.shape[1] != P.shape[1]:
            raise InvalidArgumentError(
                f"{A.name} and {P.name} must have the same width (embedding dim), got {A.shape[1]} and {P.shape[1]}"
            )
        if A.shape[1] == 0:
            raise InvalidArgumentError(f"{A.name} and {P.name} must have at least one column (dim > 0)")
        R, M, D = A.shape[0], P.shape[0], A.shape[1]
        dtype = result_dtype([(X.name, X.dtype, X.on_cuda) for X in (A, P)])
        logits = [A, P]
    else:
        S = _arrays.wrap(names["similarity"], similarity)
        if S.ndim != 2:
            raise InvalidArgumentError(f"{S.name} must be 2-D [rows, columns], got shape {_shape_str(S.shape)}")
        R, M = S.shape
        D = 0
        dtype = result_dtype([(S.name, S.dtype, S.on_cuda)])
        logits = [S]
    if R > 0 and M == 0:
        raise InvalidArgumentError(f"{logits[-1].name} has no columns, so row 0 has no positive column")
    p.R, p.M, p.D, p.dtype = R, M, D, dtype

    # Targets.
    tname = names["targets"]
    if multilabel:
        T = _arrays.wrap(tname, _densify(tname, targets))
        _real_dtype_ok(T)
        if T.ndim != 2:
            raise InvalidArgumentError(f"{tname} must be 2-D multi-hot [rows, classes], got shape {_shape_str(T.shape)}")
        if T.shape[0] != R:
            raise InvalidArgumentError(f"{tname} has {T.shape[0]} rows but {logits[0].name} has {R}")
        if T.shape[1] == 0:
            raise InvalidArgumentError(f"{tname} must have at least one class column")
        K = T.shape[1]
        targets_dtype = dtype
    else:
        T = _arrays.wrap(tname, targets)
        if T.ndim == 2 and T.shape[1] == 1:
            T.reshape_view((T.shape[0],))
        if T.ndim != 1:
            raise InvalidArgumentError(f"{tname} must be 1-D integer labels [rows] (or [rows, 1]), got shape {_shape_str(T.shape)}")
        if T.shape[0] != R:
            raise InvalidArgumentError(f"{tname} has {T.shape[0]} labels but {logits[0].name} has {R} rows")
        K = 0
        targets_dtype = _label_dtype(T)
    C = None
    if column_targets is not None:
        cname = names["column_targets"]
        C = _arrays.wrap(cname, _densify(cname, column_targets) if multilabel else column_targets)
        if multilabel:
            _real_dtype_ok(C)
            if C.ndim != 2 or C.shape[1] != K:
                raise InvalidArgumentError(f"{cname} must be 2-D [columns, {K}], got shape {_shape_str(C.shape)}")
        else:
            if C.ndim == 2 and C.shape[1] == 1:
                C.reshape_view((C.shape[0],))
            if C.ndim != 1:
                raise InvalidArgumentError(f"{cname} must be 1-D integer labels [columns], got shape {_shape_str(C.shape)}")
            targets_dtype = np.result_type(targets_dtype, _label_dtype(C))
        if C.shape[0] != M:
            raise InvalidArgumentError(
                f"{cname} has {C.shape[0]} entries but {logits[-1].name} has {M} {'rows' if embeddings else 'columns'}"
            )
    elif M != R:
        if embeddings:
            what = f"{logits[1].name} has {M} rows but {logits[0].name} has {R}"
            whose = f"the {M} rows of {logits[1].name}"
        else:
            what = f"{logits[0].name} is not square ({R} rows, {M} columns)"
            whose = f"its {M} columns"
        raise InvalidArgumentError(f"{what}: give {names['column_targets']}, the labels of {whose}")
    p.K = K
    p.multilabel = multilabel
    p.targets_dtype = np.dtype(targets_dtype)

    # Weights and upstream gradient. Broadcast scalars are made in float64 and
    # cast to dtype with the other inputs (NumPy has no bfloat16).
    W = None
    if sample_weight is not None:
        if _is_scalar_like(sample_weight):
            sample_weight = np.full((R,), float(sample_weight))
        W = _arrays.wrap(names["sample_weight"], sample_weight)
        _real_dtype_ok(W)
        if W.ndim == 0:
            W = _arrays.host(W.name, np.full((R,), float(W.obj)))
        if W.ndim == 2 and W.shape[1] == 1:
            W.reshape_view((W.shape[0],))
        if W.shape != (R,):
            raise InvalidArgumentError(
                f"{W.name} must be a scalar or have shape [{R}] (one weight per row), got {_shape_str(W.shape)}"
            )
    G = None
    if grad_loss is not None:
        G = _arrays.wrap("grad_loss", grad_loss)
        _real_dtype_ok(G)
        if p.reduction == _lib.REDUCTION_NONE:
            if G.ndim == 0:
                G = _arrays.host(G.name, np.full((R,), float(G.obj)))
            if G.shape != (R,):
                raise InvalidArgumentError(f"grad_loss must have shape [{R}] with reduction='none', got {_shape_str(G.shape)}")
        elif G.size != 1:
            raise InvalidArgumentError(f"grad_loss must be a single value with a scalar reduction, got shape {_shape_str(G.shape)}")
        else:
            G.reshape_view(())

    inputs = [X for X in logits + [T, C, W, G] if X is not None]

    # Placement: one CUDA device at most; the backend follows the arrays.
    cuda = [X for X in inputs if X.on_cuda]
    for X in cuda[1:]:
        if X.device != cuda[0].device:
            raise InvalidArgumentError(
                f"{cuda[0].name} is on {cuda[0].where()} but {X.name} is on {X.where()}; put them on one device"
            )
    if cuda and p.backend == _lib.BACKEND_CPU:
        raise InvalidArgumentError(f"backend='cpu' but {cuda[0].name} is in CUDA memory (device {cuda[0].device})")
    if p.backend == _lib.BACKEND_AUTO:
        p.backend = _lib.BACKEND_CUDA if cuda else _lib.BACKEND_CPU
    p.device = cuda[0].device if cuda else 0

    # float16/bfloat16 are computed on CUDA only. npairs.torch computes them
    # in float32 on the CPU (as CPU autocast wants) and returns the 16-bit type.
    p.out_dtype = dtype
    if p.backend == _lib.BACKEND_CPU and dtype in (np.dtype("float16"), _arrays.BFLOAT16):
        half = next(X for X in logits if X.dtype in (np.dtype("float16"), _arrays.BFLOAT16))
        if not host_half_as_float32:
            raise UnsupportedError(
                f"{half.name} is {_arrays.dtype_name(half.dtype)}, which the CPU backend does not compute: "
                "cast it to float32, or pass CUDA arrays (or backend='cuda')"
            )
        dtype = p.dtype = np.dtype("float32")
        if multilabel:
            p.targets_dtype = dtype

    # Conversion to the dtypes the library reads, C-contiguous.
    def convert(X, want):
        if X is None:
            return None
        if X.on_cuda:
            return _arrays.convert_cuda(X, want)
        out = _arrays.host(X.name, X.obj, want)
        out.shape = X.shape  # [n, 1] viewed as [n]: same elements, C-contiguous
        out.fam = X.fam
        return out

    p.logits = [convert(X, dtype) for X in logits]
    p.T = convert(T, p.targets_dtype)
    p.C = convert(C, p.targets_dtype)
    p.W = convert(W, dtype)
    p.G = convert(G, dtype)
    if weights_as_grad_loss:
        # The caller wants the unweighted row losses and the gradients of
        # sum_i w_i loss_i from one call (npairs.torch, for dL/dw): a 'none'
        # call whose upstream gradient is w. Checked as weights, above.
        if p.reduction != _lib.REDUCTION_NONE or G is not None:
            raise InvalidArgumentError("weights_as_grad_loss needs reduction='none' and no grad_loss")
        if p.W is not None:
            p.G, p.W = p.W, None
    converted = [X for X in p.logits + [p.T, p.C, p.W, p.G] if X is not None]
    # Outputs follow the logits: in CUDA memory (made by the same library) when
    # a logits array is, else on the host (NumPy, or torch for torch tensors).
    p.ref = next((X for X in p.logits if X.on_cuda), p.logits[0])
    # The caller's stream, from the first CUDA array, orders the work.
    p.stream_ref = next((X for X in converted if X.on_cuda), None)
    return p


def _output(p, name, shape):
    if p.ref.on_cuda:
        return _arrays.empty_like_family(p.ref, name, shape, p.dtype)
    return _arrays.empty_host(p.ref, name, shape, p.dtype)


def _given_output(p, name, obj, shape):
    """The caller's array for an output (out=), checked: it is written as it is, never copied."""
    what = f"a C-contiguous, writable {_arrays.dtype_name(p.dtype)} array of shape {_shape_str(shape)}"
    if isinstance(obj, np.ndarray):
        X = _arrays.Array(name, obj, obj.ctypes.data, obj.shape, obj.dtype,
                          None if obj.flags.c_contiguous else obj.strides)
        writable = obj.flags.writeable
    elif _arrays.is_torch(obj) or hasattr(obj, "__cuda_array_interface__") or hasattr(obj, "__dlpack_device__"):
        X = _arrays.wrap(name, obj)
        writable = not (_arrays.is_torch(obj) and obj.requires_grad)
    else:
        raise InvalidArgumentError(f"{name} must be {what} (a NumPy array, a torch tensor or a CUDA array), "
                                   f"got {type(obj).__name__}")
    if X.dtype != p.dtype or X.shape != tuple(shape) or not X.c_contiguous() or not writable:
        state = "" if writable else ", not writable"
        raise InvalidArgumentError(
            f"{name} must be {what}, got dtype {_arrays.dtype_name(X.dtype)}, shape {_shape_str(X.shape)}"
            + ("" if X.c_contiguous() else ", not C-contiguous") + state
        )
    if X.device != p.ref.device:
        raise InvalidArgumentError(f"{name} is in {X.where()} but {p.ref.name} is in {p.ref.where()}")
    X.obj = obj  # handed back as given
    return X


def _check_no_overlap(p, outputs):
    """SPEC section 2: outputs never overlap inputs, except dL/dS written over the similarity itself."""
    def extent(X):
        return X.device, X.ptr, X.ptr + X.size * X.dtype.itemsize

    inputs = [X for X in p.logits + [p.T, p.C, p.W, p.G] if X is not None]
    for i, (name, Y) in enumerate(outputs):
        dev, lo, hi = extent(Y)
        if lo == hi:
            continue
        for X in inputs + [Z for _, Z in outputs[i + 1:]]:
            xdev, xlo, xhi = extent(X)
            if xdev != dev or xlo >= hi or lo >= xhi:
                continue
            if name == "similarity" and X is p.logits[0] and len(p.logits) == 1 and (xlo, xhi) == (lo, hi):
                continue  # in place: the library reads each logit before it writes its gradient
            raise InvalidArgumentError(f"{Y.name} overlaps {X.name} in memory; give it memory of its own")


def _finish(a, dtype):
    """The user-facing object of an output, in dtype: NumPy 0-d arrays become NumPy scalars."""
    if a is None:
        return None
    obj = a.obj
    if a.dtype != dtype:  # computed in float32 for 16-bit host tensors
        obj = _arrays.cast(obj, dtype)
    if isinstance(obj, np.ndarray) and obj.ndim == 0:
        return obj[()]
    return obj


def _user_message(message, status, names, multilabel):
    """The library's message with its argument names (problem.labels) replaced by the caller's (y_true)."""
    mapping = {
        "problem.labels": names["targets"],
        "problem.multilabels": names["targets"],
        "problem.column_labels": names["column_targets"],
        "problem.column_multilabels": names["column_targets"],
        "problem.similarity": names["similarity"],
        "problem.anchors": names["anchors"],
        "problem.positives": names["positives"],
        "problem.sample_weight": names["sample_weight"],
        "options.temperature": "temperature",
        "options.reg_lambda": "reg_lambda",
        "options.reduction": "reduction",
    }
    text = re.sub(r"\b(problem|options)\.\w+", lambda m: mapping.get(m.group(0), m.group(0)), message)
    return f"{text} [{_lib.status_string(status)}]"


def compute(
    *,
    targets,
    column_targets=None,
    multilabel=False,
    embeddings=None,
    similarity=None,
    anchors=None,
    positives=None,
    sample_weight=None,
    grad_loss=None,
    reduction="sum_over_batch_size",
    temperature=1.0,
    reg_lambda=0.0,
    backend="auto",
    threads=None,
    workspace_limit=None,
    want_loss=True,
    want_grads=(),
    names=None,
    host_half_as_float32=False,
    weights_as_grad_loss=False,
    reserve_workspace=False,
    capturing=False,
    out=None,
    symmetric=False,
):
    """One npairs_loss call. want_grads names any of 'similarity', 'anchors', 'positives', 'temperature'.

    symmetric: CLIP's loss, the mean of the row and the column directions
    (SPEC section 5). 'temperature' in want_grads: dL/dtau, a scalar.

    out: {name: array} of caller-given arrays for gradients (see _given_output);
    the gradient dL/dS may be given the similarity array itself (computed in place).

    embeddings: whether the logits are anchors and positives (None: when no
    similarity is given). threads: CPU threads (None: get_num_threads()).
    workspace_limit: bytes of library workspace (None: get_workspace_limit()).
    host_half_as_float32: compute 16-bit host inputs in float32 and return
    outputs in their 16-bit type, instead of raising. weights_as_grad_loss
    (with reduction='none', no grad_loss): the loss rows come back
    unweighted and the gradients are those of sum_i w_i loss_i.

    For CUDA graphs (SPEC section 4; npairs.torch passes them for CUDA
    tensors): reserve_workspace allocates the call's workspace before it
    (kept for later calls); capturing (the current stream is capturing)
    passes NPAIRS_FLAG_DEFER_CHECKS and raises, allocating nothing, when the
    workspace reserved by earlier calls is too small. (On a CPU context the
    flag changes nothing and the reserve is host memory.)

    Returns (loss or None, {name: gradient}).
    """
    threads = _threads if threads is None else threads_count(threads)
    workspace_limit = _workspace_limit if workspace_limit is None else workspace_limit_bytes(workspace_limit)
    all_names = {
        "targets": "labels",
        "column_targets": "column_labels",
        "similarity": "similarity",
        "anchors": "anchors",
        "positives": "positives",
        "sample_weight": "sample_weight",
    }
    all_names.update(names or {})
    p = _prepare(
        targets=targets,
        column_targets=column_targets,
        multilabel=multilabel,
        embeddings=similarity is None if embeddings is None else embeddings,
        similarity=similarity,
        anchors=anchors,
        positives=positives,
        sample_weight=sample_weight,
        grad_loss=grad_loss,
        reduction=reduction,
        temperature=temperature,
        reg_lambda=reg_lambda,
        backend=backend,
        names=all_names,
        host_half_as_float32=host_half_as_float32,
        weights_as_grad_loss=weights_as_grad_loss,
        symmetric=symmetric,
    )
    ctx = prepared_context(p, threads, workspace_limit)
    opts, prob = call_structs(p)
    loss = None
    if want_loss:
        loss = _output(p, "loss", (p.R,) if p.reduction == _lib.REDUCTION_NONE else ())
    grads, gstruct = gradient_outputs(p, want_grads, out)
    raise_for = _raiser(all_names, p.multilabel)
    lib = _lib.load()
    if reserve_workspace or capturing:
        _graph_ready(ctx, opts, prob, gstruct, reserve_workspace, capturing, raise_for)
    raise_for(lib.npairs_loss(
        ctx.handle,
        ctypes.byref(opts),
        ctypes.byref(prob),
        p.G.pointer() if p.G is not None else None,
        loss.pointer() if loss is not None else None,
        ctypes.byref(gstruct) if gstruct is not None else None,
    ))
    if ctx.backend == _lib.BACKEND_CUDA and p.ref.fam == "tensorflow":
        # TensorFlow's tensors carry no stream, and its kernels run on streams
        # of its own, created non-blocking (StreamExecutor's CreateStream,
        # CU_STREAM_NON_BLOCKING), which the library's does not order: its
        # outputs are ready when they are returned.
        ctx.synchronize()
    return _finish(loss, p.out_dtype), {k: _finish(v, p.out_dtype) for k, v in grads.items()}


_OUT_NAMES = {"similarity": "grad_out", "anchors": "grads_out[0]", "positives": "grads_out[1]"}


def prepared_context(p, threads, workspace_limit):
    """This thread's context for a prepared call, set for it: CPU threads or the CUDA stream, workspace limit."""
    ctx = context(p.backend, p.device)
    if ctx.backend == _lib.BACKEND_CPU:
        ctx.set_threads(threads)
    else:
        ctx.set_stream(_arrays.stream_of(p.stream_ref) if p.stream_ref is not None else None)
    ctx.set_workspace_limit(workspace_limit)
    return ctx


def call_structs(p):
    """The npairs_options and npairs_problem of a prepared call (npairs_loss's, and the column blocks')."""
    lib = _lib.load()
    opts = _lib.Options()
    lib.npairs_options_init(ctypes.byref(opts))
    opts.reduction = p.reduction
    opts.temperature = p.temperature
    opts.reg_lambda = p.reg_lambda
    if p.symmetric:
        opts.flags |= _lib.FLAG_SYMMETRIC
    prob = _lib.Problem()
    lib.npairs_problem_init(ctypes.byref(prob))
    prob.rows = p.R
    prob.cols = p.M
    prob.dtype = _DTYPE_CODES[p.dtype]
    if p.multilabel:
        prob.multilabels = p.T.pointer()
        prob.column_multilabels = p.C.pointer() if p.C is not None else None
        prob.num_classes = p.K
    else:
        prob.labels = p.T.pointer()
        prob.column_labels = p.C.pointer() if p.C is not None else None
        prob.label_dtype = _lib.I32 if p.targets_dtype == np.int32 else _lib.I64
    if len(p.logits) == 2:
        prob.anchors = p.logits[0].pointer()
        prob.positives = p.logits[1].pointer()
        prob.dim = p.D
    else:
        prob.similarity = p.logits[0].pointer()
    prob.sample_weight = p.W.pointer() if p.W is not None else None
    return opts, prob


def gradient_outputs(p, want_grads, out=None):
    """({name: output array}, their npairs_gradients or None) for the gradients named in want_grads.

    out: {name: array} given by the caller (see _given_output), else new arrays.
    """
    if not want_grads:
        return {}, None
    lib = _lib.load()
    gstruct = _lib.Gradients()
    _lib.init_gradients(gstruct)
    if "temperature" in want_grads and gstruct.struct_size <= _lib.GRADIENTS_SIZE_1_0:
        raise UnsupportedError(
            f"this libnpairs ({lib.npairs_version_string().decode()}, {_lib.library_path()}) does not compute "
            "dL/dtemperature: it needs a library with npairs_gradients.temperature (SPEC section 5)"
        )
    shapes = {"similarity": (p.R, p.M), "anchors": (p.R, p.D), "positives": (p.M, p.D), "temperature": ()}
    given = {k: v for k, v in (out or {}).items() if v is not None}
    grads = {}
    for name in want_grads:
        grads[name] = _given_output(p, _OUT_NAMES[name], given[name], shapes[name]) if name in given \
            else _output(p, name, shapes[name])
        setattr(gstruct, name, grads[name].pointer())
    if given:
        _check_no_overlap(p, [(n, grads[n]) for n in want_grads if n in given])
    return grads, gstruct


def _raiser(names, multilabel):
    """raise_for(status): the NpairsError of a failed call, its message in the caller's argument names."""
    def raise_for(status):
        if status:
            raise error_for_status(status, _user_message(_lib.last_error(), status, names, multilabel))

    return raise_for


def _graph_ready(ctx, opts, prob, gstruct, reserve_workspace, capturing, raise_for):
    """Readies a CUDA call for graph capture: its workspace reserved now, or checked and its checks deferred.

    A captured call may only queue work on the stream: an allocation would
    break the capture, so the workspace is reserved by the calls before it
    (warm-up steps, which torch.compile's mode="reduce-overhead" runs) and a
    captured call that needs more fails here instead.
    """
    needed = ctypes.c_size_t()
    workspace_size = _lib.function("npairs_workspace_size")
    raise_for(workspace_size(ctx.handle, ctypes.byref(opts), ctypes.byref(prob),
                             ctypes.byref(gstruct) if gstruct is not None else None, ctypes.byref(needed)))
    if capturing:
        if needed.value > ctx.reserved:
            raise UnsupportedError(
                f"this call, made while the CUDA stream is capturing a graph, needs {needed.value} bytes of "
                f"workspace but {ctx.reserved} are reserved: run the same step once outside capture first "
                "(a warm-up step), so that it reserves the workspace"
            )
        opts.flags |= _lib.FLAG_DEFER_CHECKS
    elif needed.value > ctx.reserved:
        raise_for(_lib.function("npairs_context_reserve")(ctx.handle, needed.value))
        ctx.reserved = needed.value


# ---------------------------------------------------------------------------
# Public functions, named as in TensorFlow Addons
#
# Their keywords are TensorFlow Addons' (y_true, y_pred) and tf.contrib's
# (labels, anchors, positives); npairs.torch uses PyTorch-style names
# (labels, similarity, multilabels). The README lists both.


def _autograd_wanted(*arrays):
    """True when a torch tensor among arrays requires grad and grad mode is on: npairs.torch computes those."""
    if not any(_arrays.is_torch(a) and a.requires_grad for a in arrays):
        return False
    import torch

    return torch.is_grad_enabled()


def npairs_loss(
    y_true,
    y_pred,
    sample_weight=None,
    *,
    reduction="sum_over_batch_size",
    temperature=1.0,
    column_labels=None,
    backend="auto",
    threads=None,
    workspace_limit=None,
    return_grad=False,
    grad_loss=None,
    grad_out=None,
    symmetric=False,
    return_temperature_grad=False,
):
    """N-pairs loss of a similarity matrix (``tfa.losses.npairs_loss``).

    Args:
      y_true: integer class labels of the rows, shape [R] or [R, 1]
        (int32/int64 kept; other integers, booleans and integral floats
        become int64).
      y_pred: similarity matrix [R, M] (float32 or float64; float16, or
        torch.bfloat16, on the CUDA backend; kept), e.g. ``a @ p.T``; its
        logits are ``y_pred / temperature``.
      sample_weight: None, a scalar, or one weight per row ([R] or [R, 1]).
      reduction: 'sum_over_batch_size' (default, also 'auto'), 'sum' or 'none'.
      temperature: > 0.
      column_labels: labels of the M columns, when they differ from y_true
        (needed when M != R).
      backend: 'auto' (CUDA for CUDA arrays, else CPU), 'cpu' or 'cuda'.
      threads: CPU threads for this call; None: :func:`npairs.get_num_threads`
        (0: every core).
      workspace_limit: bytes of scratch memory the library may use for this
        call; None: :func:`npairs.get_workspace_limit` (0: no limit). A call
        that needs more is computed in pieces that fit; one whose smallest
        piece does not fit raises OutOfMemoryError.
      return_grad: also return dL/dy_pred.
      grad_loss: upstream gradient (a scalar, or [R] with reduction='none');
        None means ones.
      grad_out: with ``return_grad``, an array to write dL/dy_pred into
        instead of a new one: [R, M], C-contiguous, writable, of the result
        dtype (y_pred's floating dtype), in y_pred's memory space; y_pred
        itself computes the gradient in place. It is returned as the grad.
      symmetric: CLIP's loss (SPEC section 5): the mean of this loss over
        the rows and the same loss over the columns (images to texts and
        texts to images, with labels 0..R-1). Needs a scalar reduction and
        no sample_weight.
      return_temperature_grad: also return dL/dtemperature (a scalar),
        after the gradient when ``return_grad`` is given too.

    Returns:
      The loss (a scalar, or [R] for 'none'), or ``(loss, grad)`` with
      ``return_grad``, ``(loss, grad, grad_temperature)`` with both return
      flags, ``(loss, grad_temperature)`` with return_temperature_grad alone. NumPy inputs give NumPy outputs; PyTorch, CuPy and
      Numba inputs give outputs of the same library and device. Without
      ``return_grad``, a torch tensor that requires grad (y_pred or
      sample_weight) is computed by :mod:`npairs.torch`, so the loss is
      differentiable.
    """
    return _similarity_loss(False, y_true, y_pred, sample_weight, reduction, temperature, column_labels, backend,
                            threads, workspace_limit, return_grad, grad_loss, grad_out, symmetric,
                            return_temperature_grad)


def npairs_multilabel_loss(
    y_true,
    y_pred,
    sample_weight=None,
    *,
    reduction="sum_over_batch_size",
    temperature=1.0,
    column_labels=None,
    backend="auto",
    threads=None,
    workspace_limit=None,
    return_grad=False,
    grad_loss=None,
    grad_out=None,
    symmetric=False,
    return_temperature_grad=False,
):
    """Multi-label N-pairs loss (``tfa.losses.npairs_multilabel_loss``).

    ``y_true`` is a dense non-negative multi-hot matrix [R, K] (any real
    dtype; cast to y_pred's). TensorFlow Addons takes a ``tf.SparseTensor``:
    objects with ``indices``, ``values`` and ``dense_shape`` are densified
    on the host; other sparse formats (e.g. SciPy) are not supported, pass
    ``.toarray()``. The targets are ``G = Y Y'^T`` row-normalised; a row
    with no positive (all-zero row of G) raises InvalidValueError.
    ``column_labels`` ([M, K]) gives the columns' multi-hot rows. Other
    arguments and the result are as for :func:`npairs_loss`.
    """
    return _similarity_loss(True, y_true, y_pred, sample_weight, reduction, temperature, column_labels, backend,
                            threads, workspace_limit, return_grad, grad_loss, grad_out, symmetric,
                            return_temperature_grad)


def _out_needs(flag_name, flag, **given):
    """An out= argument without the return flag that asks for its gradient is a mistake: say so."""
    for name, value in given.items():
        if value is not None and not flag:
            raise InvalidArgumentError(f"{name} is given but {flag_name} is False; pass {flag_name}=True")


def _with_grads(loss, grads, names, return_temperature_grad):
    """loss, then the gradients asked for: those of names (one, or a tuple of several), then dL/dtau."""
    out = (loss,)
    if names:
        out += (grads[names[0]] if len(names) == 1 else tuple(grads[n] for n in names),)
    if return_temperature_grad:
        out += (grads["temperature"],)
    return out if len(out) > 1 else loss


def _similarity_loss(multilabel, y_true, y_pred, sample_weight, reduction, temperature, column_labels, backend,
                     threads, workspace_limit, return_grad, grad_loss, grad_out, symmetric, return_temperature_grad):
    """The shared body of npairs_loss and npairs_multilabel_loss."""
    _out_needs("return_grad", return_grad, grad_out=grad_out)
    if not (return_grad or return_temperature_grad) and _autograd_wanted(y_pred, sample_weight, temperature):
        from . import torch as nt

        loss = nt.npairs_multilabel_loss if multilabel else nt.npairs_loss
        return loss(y_true, y_pred, sample_weight, reduction=reduction, temperature=temperature, backend=backend,
                    threads=threads, workspace_limit=workspace_limit, symmetric=symmetric,
                    **{"column_multilabels" if multilabel else "column_labels": column_labels})
    names = ("similarity",) if return_grad else ()
    loss, grads = compute(
        targets=y_true,
        column_targets=column_labels,
        multilabel=multilabel,
        embeddings=False,
        similarity=y_pred,
        sample_weight=sample_weight,
        grad_loss=grad_loss,
        reduction=reduction,
        temperature=temperature,
        backend=backend,
        threads=threads,
        workspace_limit=workspace_limit,
        want_grads=names + (("temperature",) if return_temperature_grad else ()),
        names={"targets": "y_true", "similarity": "y_pred"},
        out={"similarity": grad_out},
        symmetric=symmetric,
    )
    return _with_grads(loss, grads, names, return_temperature_grad)


def npairs_embeddings_loss(
    labels,
    anchors,
    positives,
    *,
    reg_lambda=0.0,
    temperature=1.0,
    reduction="sum_over_batch_size",
    column_labels=None,
    sample_weight=None,
    multilabel=None,
    backend="auto",
    threads=None,
    workspace_limit=None,
    return_grads=False,
    grad_loss=None,
    grads_out=None,
    symmetric=False,
    return_temperature_grad=False,
):
    """N-pairs loss of embeddings, with tf.contrib's optional L2 term.

    Logits ``anchors @ positives.T / temperature``, plus ``0.25 *
    reg_lambda * (mean_i |a_i|^2 + mean_j |p_j|^2)`` (added once;
    reg_lambda must be 0 with reduction='none'). The default reg_lambda is
    0 (no L2 term, as pytorch-metric-learning and CLIP expect);
    ``reg_lambda=0.002`` reproduces
    ``tf.contrib.losses.metric_learning.npairs_loss(labels, anchors, positives)``.

    Args:
      labels: [R] integer labels, or an [R, K] multi-hot matrix.
      anchors: [R, D]; positives: [M, D] (float32/float64; float16 or
        torch.bfloat16 on the CUDA backend; mixed types promote).
      multilabel: whether labels are multi-hot; None infers it (2-D with
        more than one column).
      column_labels: labels (or multi-hot rows) of the positives when they
        differ from labels (needed when M != R).
      return_grads: also return ``(dL/danchors, dL/dpositives)``.
      grads_out: with ``return_grads``, a pair of arrays (either may be None)
        to write them into instead of new ones, as ``grad_out`` of
        :func:`npairs_loss` ([R, D] and [M, D]; neither may overlap an input).
      symmetric: CLIP's loss (anchors: images, positives: texts), as for
        :func:`npairs_loss`; the L2 term is added once.
      return_temperature_grad: also return dL/dtemperature (a scalar), last.
      Others as for :func:`npairs_loss` (torch tensors that require grad go
      to :mod:`npairs.torch` without ``return_grads``).

    Returns:
      The loss, or ``(loss, (grad_anchors, grad_positives))``, with
      ``grad_temperature`` appended to the tuple with return_temperature_grad.
    """
    _out_needs("return_grads", return_grads, grads_out=grads_out)
    if grads_out is not None and (isinstance(grads_out, (str, bytes)) or len(grads_out) != 2):
        raise InvalidArgumentError("grads_out must be a pair (grad_anchors_out, grad_positives_out); either may be None")
    if not (return_grads or return_temperature_grad) and _autograd_wanted(anchors, positives, sample_weight,
                                                                          temperature):
        from . import torch as nt

        return nt.npairs_embeddings_loss(labels, anchors, positives, sample_weight, column_labels=column_labels,
                                         reg_lambda=reg_lambda, temperature=temperature, reduction=reduction,
                                         multilabel=multilabel, backend=backend, threads=threads,
                                         workspace_limit=workspace_limit, symmetric=symmetric)
    names = ("anchors", "positives") if return_grads else ()
    loss, grads = compute(
        targets=labels,
        column_targets=column_labels,
        multilabel=is_multilabel(labels, multilabel),
        embeddings=True,
        anchors=anchors,
        positives=positives,
        sample_weight=sample_weight,
        grad_loss=grad_loss,
        reduction=reduction,
        temperature=temperature,
        reg_lambda=reg_lambda,
        backend=backend,
        threads=threads,
        workspace_limit=workspace_limit,
        want_grads=names + (("temperature",) if return_temperature_grad else ()),
        out=dict(zip(("anchors", "positives"), grads_out)) if grads_out is not None else None,
        symmetric=symmetric,
    )
    return _with_grads(loss, grads, names, return_temperature_grad)


def is_multilabel(labels, multilabel=None):
    """multilabel if given, else whether labels look multi-hot (2-D with more than one column)."""
    if multilabel is not None:
        return bool(multilabel)
    if labels is None:
        return False
    shape = tuple(labels.shape) if hasattr(labels, "shape") else np.shape(_densify("labels", labels))
    return len(shape) == 2 and shape[1] != 1


# ---------------------------------------------------------------------------
# Checks from shapes and dtypes alone, for npairs.jax and npairs.keras, whose
# arrays are symbolic when a call is staged (JAX tracers, tf.function tensors).


def check_spec(*, names, on_cuda=False, **arguments):
    """Checks the arguments of a compute() call from their shapes and dtypes alone; reads no data.

    Takes compute()'s targets, column_targets, multilabel, embeddings,
    similarity, anchors, positives, sample_weight, grad_loss, reduction,
    temperature and reg_lambda; each array is anything with .shape and a
    .dtype (NumPy's, TensorFlow's or PyTorch's), checked as compute() checks
    a host array of that shape and dtype (a zero-filled stand-in: integral
    labels, no data errors); NumPy arrays are checked as they are. names:
    the caller's names of the arrays, by the keys of compute()'s names.
    on_cuda: the call will run on a CUDA device, where 16-bit floats are
    computed. Returns the checked call's description: R, M, D, K,
    multilabel, reduction (code), temperature, reg_lambda, out_dtype (of the
    loss and gradients) and targets_dtype (what the library reads the
    targets as).
    """
    array_keys = ("targets", "column_targets", "similarity", "anchors", "positives", "sample_weight", "grad_loss")

    def stand_in(key, x):
        if x is None or _is_scalar_like(x) or isinstance(x, np.ndarray):
            return x  # NumPy arrays are checked as they are (float labels for integral values, too)
        if _arrays.is_torch(x):
            dtype = _arrays.numpy_dtype(key, x.dtype)
        else:
            dtype = np.dtype(getattr(x.dtype, "as_numpy_dtype", x.dtype))  # TensorFlow's DType too
        return np.zeros(tuple(int(s) for s in x.shape), dtype)  # calloc'd: untouched pages cost nothing

    arguments = {k: stand_in(k, v) if k in array_keys else v for k, v in arguments.items()}
    embeddings = arguments.pop("embeddings", None)
    call = dict(column_targets=None, multilabel=False, similarity=None, anchors=None, positives=None,
                sample_weight=None, grad_loss=None, reduction="sum_over_batch_size", temperature=1.0, reg_lambda=0.0)
    call.update(arguments)
    p = _prepare(embeddings=call["similarity"] is None if embeddings is None else embeddings, backend="cpu",
                 names=names, host_half_as_float32=on_cuda, weights_as_grad_loss=False, **call)
    if on_cuda and p.multilabel:  # multi-labels are read in the logits' dtype, 16-bit ones too on CUDA
        p.targets_dtype = p.out_dtype
    return p
