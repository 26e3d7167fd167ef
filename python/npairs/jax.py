"""JAX functions of libnpairs, through XLA's FFI.

:func:`npairs_loss`, :func:`npairs_multilabel_loss` and
:func:`npairs_embeddings_loss` take JAX arrays (or anything jnp.asarray
takes) and give JAX arrays; they work under ``jax.jit``, differentiate with
``jax.grad`` / ``jax.value_and_grad`` (a ``custom_vjp`` whose forward pass
computes the loss and the library's gradients in one call, scaled by the
upstream gradient in the backward pass), and batch under ``jax.vmap`` one problem at a time. Each is
one XLA custom call (``jax.ffi.ffi_call``) into ``libnpairs_jax.so``, the
FFI handlers built next to libnpairs (jax-ffi/ in the source tree): the CPU
handler, and the CUDA one (on XLA's stream; it never waits for the device)
in CUDA builds.

Arguments are checked from their shapes and dtypes before the call is
staged, by the checks of the numpy API (npairs._core), and raise its
exceptions; what only the data can show (a row with no positive, a negative
multi-label) comes back from the library as an XLA error carrying its
message (on CUDA, whose checks run on the device, as NaN rows instead).

Differences from the numpy API: labels must have an integer dtype (a traced
float array cannot be checked for integral values); ``sample_weight`` is not
differentiated (its cotangent is zero); float64 needs ``jax_enable_x64``;
float16 and bfloat16 are computed on CUDA only; CPU calls use
:func:`npairs.get_num_threads` threads as it is when they are staged (traced).
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading

import jax
import jax.numpy as jnp
import numpy as np

from . import _core, _lib
from .errors import InvalidDTypeError, LibraryNotFoundError, UnsupportedError

ENV_VAR = "NPAIRS_JAX_LIBRARY"
_TARGET = "npairs_loss"
_FFI_NAME = "libnpairs_jax.so"

_registered = None  # the platforms whose handler is registered with XLA
_register_lock = threading.Lock()


def ffi_library_path():
    """Where libnpairs_jax.so is looked for: $NPAIRS_JAX_LIBRARY, else next to the loaded libnpairs."""
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR]
    return os.path.join(os.path.dirname(os.path.realpath(_lib.library_path())), _FFI_NAME)


# PyCapsule_New with a prototype of its own: jax.ffi.pycapsule sets the
# argtypes of the process-wide ctypes.pythonapi.PyCapsule_New, which other
# code of the process may have set otherwise.
_capsule_new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(
    ("PyCapsule_New", ctypes.pythonapi))


def _capsule(function):
    """An unnamed PyCapsule of a ctypes function's address, as XLA's handler registry reads it."""
    return _capsule_new(ctypes.cast(function, ctypes.c_void_p).value, None, None)


def _register():
    """Loads the FFI handlers and registers them with XLA, once; returns the registered platforms."""
    global _registered
    if _registered is not None:
        return _registered
    with _register_lock:
        if _registered is None:
            path = ffi_library_path()
            try:
                handlers = ctypes.CDLL(path)
            except OSError as e:
                raise LibraryNotFoundError(
                    f"npairs.jax needs {_FFI_NAME}, the XLA FFI handlers built with libnpairs when jax is present at "
                    f"build time (cmake -DNPAIRS_JAX_PYTHON=/path/to/python-with-jax); cannot load {path}: {e}"
                ) from None
            platforms = {"cpu": "npairs_jax_loss_cpu", "CUDA": "npairs_jax_loss_cuda"}
            found = []
            for platform, symbol in platforms.items():
                if hasattr(handlers, symbol):
                    jax.ffi.register_ffi_target(_TARGET, _capsule(getattr(handlers, symbol)),
                                                platform=platform)
                    found.append(platform.lower())
            _registered = tuple(found)
    return _registered


def available():
    """True when the FFI handlers load (npairs.jax can compute on the CPU)."""
    try:
        return "cpu" in _register()
    except LibraryNotFoundError:
        return False


def _on_cuda():
    """Whether calls staged now run on a CUDA device (JAX's default backend)."""
    on_cuda = jax.default_backend() == "gpu"
    if on_cuda and "cuda" not in _register():
        raise UnsupportedError(
            f"JAX computes on CUDA but {ffi_library_path()} has no CUDA handler: build libnpairs with nvcc on PATH "
            "(its CUDA backend), or run JAX on the CPU (JAX_PLATFORMS=cpu)"
        )
    return on_cuda


# The want_grads bits of the FFI handler (jax-ffi/npairs_jax_ffi.cpp).
_GRAD_BITS = {"similarity": 1, "anchors": 2, "positives": 4}


class _Config:
    """The hashable, checked configuration of one staged loss (custom_vjp's non-differentiable argument)."""

    def __init__(self, p, embeddings):
        self.multilabel = p.multilabel
        self.embeddings = embeddings
        self.reduction = p.reduction
        self.temperature = p.temperature
        self.reg_lambda = p.reg_lambda
        self.dtype = p.out_dtype
        self.R, self.M, self.D = p.R, p.M, p.D
        self.threads = _core.get_num_threads()  # CPU threads of the call, when it is staged

    def key(self):
        return (self.multilabel, self.embeddings, self.reduction, self.temperature, self.reg_lambda,
                str(self.dtype), self.R, self.M, self.D, self.threads)

    def __hash__(self):
        return hash(self.key())

    def __eq__(self, other):
        return isinstance(other, _Config) and self.key() == other.key()


def _ffi(cfg, targets, column_targets, weight, logits, grad_loss, want_loss, want_grads):
    """One npairs_loss custom call; returns [loss] and/or the gradients named in want_grads, in that order."""
    shapes = {"similarity": (cfg.R, cfg.M), "anchors": (cfg.R, cfg.D), "positives": (cfg.M, cfg.D)}
    results = []
    if want_loss:
        results.append(jax.ShapeDtypeStruct((cfg.R,) if cfg.reduction == _lib.REDUCTION_NONE else (), cfg.dtype))
    results += [jax.ShapeDtypeStruct(shapes[name], cfg.dtype) for name in want_grads]
    operands = [targets] + ([column_targets] if column_targets is not None else []) + list(logits)
    operands += [x for x in (weight, grad_loss) if x is not None]
    call = jax.ffi.ffi_call(_TARGET, results, vmap_method="sequential")
    return call(
        *operands,
        reduction=np.int32(cfg.reduction),
        temperature=np.float64(cfg.temperature),
        reg_lambda=np.float64(cfg.reg_lambda),
        multilabel=np.int32(cfg.multilabel),
        embeddings=np.int32(cfg.embeddings),
        column_targets=np.int32(column_targets is not None),
        sample_weight=np.int32(weight is not None),
        grad_loss=np.int32(grad_loss is not None),
        want_loss=np.int32(want_loss),
        want_grads=np.int32(sum(_GRAD_BITS[name] for name in want_grads)),
        threads=np.int32(cfg.threads),
    )


def _logit_names(cfg):
    return ("anchors", "positives") if cfg.embeddings else ("similarity",)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _loss(cfg, targets, column_targets, weight, logits):
    return _ffi(cfg, targets, column_targets, weight, logits, None, True, ())[0]


def _loss_fwd(cfg, targets, column_targets, weight, logits):
    # The loss and its gradients for a unit upstream gradient in one library
    # call; they are linear in the upstream gradient (a scalar, or per row of
    # dL/dS for 'none'), so the backward pass scales them. Per-row upstream
    # gradients mix in dL/danchors and dL/dpositives: those are a second
    # library call, given the upstream gradient as its grad_loss.
    if cfg.embeddings and cfg.reduction == _lib.REDUCTION_NONE:
        return _loss(cfg, targets, column_targets, weight, logits), (targets, column_targets, weight, logits, None)
    loss, *unit_grads = _ffi(cfg, targets, column_targets, weight, logits, None, True, _logit_names(cfg))
    return loss, (None, None, None, None, tuple(unit_grads))


def _loss_bwd(cfg, residuals, g):
    targets, column_targets, weight, logits, unit_grads = residuals
    g = g.astype(cfg.dtype)
    if unit_grads is None:
        return None, None, None, tuple(_ffi(cfg, targets, column_targets, weight, logits, g, False,
                                            _logit_names(cfg)))
    scale = g[:, None] if cfg.reduction == _lib.REDUCTION_NONE else g
    return None, None, None, tuple(scale * d for d in unit_grads)


_loss.defvjp(_loss_fwd, _loss_bwd)


def _integer_labels(name, x):
    if not jnp.issubdtype(x.dtype, jnp.integer) and x.dtype != jnp.bool_:
        raise InvalidDTypeError(
            f"{name} must hold integer class labels, got dtype {x.dtype}: cast it (e.g. .astype(jnp.int32)); "
            "under jax a float array cannot be checked for integral values"
        )


def _stage(*, multilabel, embeddings, targets, column_targets, logits, sample_weight, reduction, temperature,
           reg_lambda, names):
    """Checks the arguments (npairs._core, from shapes and dtypes), converts them as the core would, stages the loss."""
    logits = tuple(jnp.asarray(x) for x in logits)
    targets = jnp.asarray(_core._densify(names["targets"], targets) if multilabel else targets)
    if column_targets is not None:
        column_targets = jnp.asarray(column_targets)
    if not multilabel:
        _integer_labels(names["targets"], targets)
        if column_targets is not None:
            _integer_labels(names["column_targets"], column_targets)
    if sample_weight is not None and not _core._is_scalar_like(sample_weight):
        sample_weight = jnp.asarray(sample_weight)
    logit_args = dict(zip(("anchors", "positives"), logits)) if embeddings else {"similarity": logits[0]}
    p = _core.check_spec(on_cuda=_on_cuda(), names=names, targets=targets, column_targets=column_targets,
                         multilabel=multilabel, embeddings=embeddings, sample_weight=sample_weight,
                         reduction=reduction, temperature=temperature, reg_lambda=reg_lambda, **logit_args)
    _register()
    cfg = _Config(p, embeddings)
    # The library reads the dtypes the core chose (int64 is int32 without
    # jax_enable_x64; the handler reads either); 1-D labels and weights.
    targets_dtype = jax.dtypes.canonicalize_dtype(p.targets_dtype)
    targets = targets.astype(targets_dtype)
    if not multilabel:
        targets = targets.reshape(p.R)
    if column_targets is not None:
        column_targets = column_targets.astype(targets_dtype)
        if not multilabel:
            column_targets = column_targets.reshape(p.M)
    if sample_weight is not None:
        sample_weight = jnp.broadcast_to(jnp.asarray(sample_weight, cfg.dtype).reshape(-1), (p.R,))
    return _loss(cfg, targets, column_targets, sample_weight, tuple(x.astype(cfg.dtype) for x in logits))


_SIMILARITY_NAMES = {"targets": "y_true", "column_targets": "column_labels", "similarity": "y_pred",
                     "sample_weight": "sample_weight"}


def npairs_loss(y_true, y_pred, sample_weight=None, *, reduction="sum_over_batch_size", temperature=1.0,
                column_labels=None):
    """N-pairs loss of a similarity matrix (``tfa.losses.npairs_loss``), as a JAX function.

    y_true: [R] (or [R, 1]) integer labels; y_pred: [R, M] similarities;
    sample_weight: None, a scalar or [R]; reduction: 'sum_over_batch_size'
    (default), 'sum' or 'none'; column_labels: [M] labels of the columns
    (needed when M != R). Differentiable in y_pred.
    """
    return _stage(multilabel=False, embeddings=False, targets=y_true, column_targets=column_labels,
                  logits=(y_pred,), sample_weight=sample_weight, reduction=reduction, temperature=temperature,
                  reg_lambda=0.0, names=_SIMILARITY_NAMES)


def npairs_multilabel_loss(y_true, y_pred, sample_weight=None, *, reduction="sum_over_batch_size", temperature=1.0,
                           column_labels=None):
    """Multi-label N-pairs loss (``tfa.losses.npairs_multilabel_loss``), as a JAX function.

    y_true: [R, K] non-negative multi-hot rows (any real dtype, cast to
    y_pred's; an object with indices, values and dense_shape, such as a
    tf.SparseTensor, is densified on the host); column_labels: [M, K].
    Others as for :func:`npairs_loss`.
    """
    return _stage(multilabel=True, embeddings=False, targets=y_true, column_targets=column_labels,
                  logits=(y_pred,), sample_weight=sample_weight, reduction=reduction, temperature=temperature,
                  reg_lambda=0.0, names=_SIMILARITY_NAMES)


def npairs_embeddings_loss(labels, anchors, positives, *, reg_lambda=0.0, temperature=1.0,
                           reduction="sum_over_batch_size", column_labels=None, sample_weight=None, multilabel=None):
    """N-pairs loss of embeddings, with tf.contrib's optional L2 term, as a JAX function.

    Logits ``anchors @ positives.T / temperature`` (computed by the
    library), plus ``0.25 * reg_lambda * (mean_i |a_i|^2 + mean_j |p_j|^2)``;
    reg_lambda=0.002 is tf.contrib's. labels: [R] integers or [R, K]
    multi-hot (multilabel=None infers it: 2-D with more than one column).
    Differentiable in anchors and positives.
    """
    multilabel = _core.is_multilabel(labels, multilabel)
    return _stage(multilabel=multilabel, embeddings=True, targets=labels, column_targets=column_labels,
                  logits=(anchors, positives), sample_weight=sample_weight, reduction=reduction,
                  temperature=temperature, reg_lambda=reg_lambda,
                  names={"targets": "labels", "column_targets": "column_labels", "anchors": "anchors",
                         "positives": "positives", "sample_weight": "sample_weight"})


__all__ = ["available", "ffi_library_path", "npairs_embeddings_loss", "npairs_loss", "npairs_multilabel_loss"]
