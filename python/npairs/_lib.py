"""ctypes binding of libnpairs' C API (include/npairs/npairs.h).

The shared library is found lazily, at the first call that needs it:

1. the path in the environment variable ``NPAIRS_LIBRARY``;
2. a ``libnpairs.so*`` (``libnpairs*.dylib``, ``npairs.dll``) next to this file,
   where ``pip install .`` (pyproject.toml) puts the one it builds;
3. the system loader: ``libnpairs.so.1``, then whatever
   ``ctypes.util.find_library("npairs")`` returns.

Struct layouts mirror the header field by field; ctypes applies the same
natural alignment (and so the same padding) as the C compiler.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pathlib
import sys
import threading

from .errors import LibraryNotFoundError

ENV_VAR = "NPAIRS_LIBRARY"
SUPPORTED_MAJOR = 1

# npairs_status
OK = 0
ERROR_INVALID_ARGUMENT = 1
ERROR_INVALID_VALUE = 2
ERROR_UNSUPPORTED = 3
ERROR_OUT_OF_MEMORY = 4
ERROR_BACKEND_UNAVAILABLE = 5
ERROR_DEVICE = 6
ERROR_INTERNAL = 7

# npairs_backend
BACKEND_AUTO = 0
BACKEND_CPU = 1
BACKEND_CUDA = 2

# npairs_dtype
F32 = 0
F64 = 1
F16 = 2
BF16 = 3
I32 = 16
I64 = 17

# npairs_reduction
REDUCTION_NONE = 0
REDUCTION_SUM = 1
REDUCTION_SUM_OVER_BATCH_SIZE = 2

FLAG_ALLOW_TF32 = 1
FLAG_DEFER_CHECKS = 2
FLAG_SYMMETRIC = 4  # 1.1, SPEC section 5: CLIP's loss, rows and columns

npairs_status = ctypes.c_int32
npairs_backend = ctypes.c_int32
npairs_dtype = ctypes.c_int32
npairs_reduction = ctypes.c_int32
npairs_context = ctypes.c_void_p


class Options(ctypes.Structure):
    """struct npairs_options."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("reduction", npairs_reduction),
        ("temperature", ctypes.c_double),
        ("reg_lambda", ctypes.c_double),
        ("flags", ctypes.c_uint32),
    ]


class Problem(ctypes.Structure):
    """struct npairs_problem."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("rows", ctypes.c_int64),
        ("cols", ctypes.c_int64),
        ("dtype", npairs_dtype),
        ("labels", ctypes.c_void_p),
        ("column_labels", ctypes.c_void_p),
        ("label_dtype", npairs_dtype),
        ("multilabels", ctypes.c_void_p),
        ("column_multilabels", ctypes.c_void_p),
        ("num_classes", ctypes.c_int64),
        ("similarity", ctypes.c_void_p),
        ("anchors", ctypes.c_void_p),
        ("positives", ctypes.c_void_p),
        ("dim", ctypes.c_int64),
        ("sample_weight", ctypes.c_void_p),
    ]


class Gradients(ctypes.Structure):
    """struct npairs_gradients (1.1: temperature, SPEC section 5, at the end)."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("similarity", ctypes.c_void_p),
        ("anchors", ctypes.c_void_p),
        ("positives", ctypes.c_void_p),
        ("temperature", ctypes.c_void_p),
    ]


# The 1.0 size of npairs_gradients (no temperature): what npairs_gradients_init
# writes into struct_size (see init_gradients).
GRADIENTS_SIZE_1_0 = Gradients.temperature.offset


class ClassSelection(ctypes.Structure):
    """struct npairs_class_selection (1.1)."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("class_embeddings", ctypes.c_void_p),
        ("classes", ctypes.c_int64),
        ("dim", ctypes.c_int64),
        ("dtype", npairs_dtype),
        ("count", ctypes.c_int64),
        ("seed", ctypes.c_uint64),
    ]


ROW_STATS_WIDTH = 4  # NPAIRS_ROW_STATS_WIDTH (1.1, column blocks): max, sum of exponentials, target weight, gap

# Every prototype: name -> (restype, argtypes, version that added it). The 1.0
# functions are declared when the library loads (a library without one is not
# libnpairs); the later ones on first use, by function(), so that a 1.0
# library still loads for the loss and only the calls that need more fail.
_V1_0, _V1_1 = (1, 0), (1, 1)
_SIGNATURES = {
    "npairs_version_number": (ctypes.c_uint32, [], _V1_0),
    "npairs_version_string": (ctypes.c_char_p, [], _V1_0),
    "npairs_status_string": (ctypes.c_char_p, [npairs_status], _V1_0),
    "npairs_last_error": (ctypes.c_char_p, [], _V1_0),
    "npairs_backend_available": (ctypes.c_int32, [npairs_backend], _V1_0),
    "npairs_context_create": (npairs_status, [npairs_backend, ctypes.c_int32, ctypes.POINTER(npairs_context)], _V1_0),
    "npairs_context_destroy": (npairs_status, [npairs_context], _V1_0),
    "npairs_context_backend": (npairs_status, [npairs_context, ctypes.POINTER(npairs_backend)], _V1_0),
    "npairs_context_set_stream": (npairs_status, [npairs_context, ctypes.c_void_p], _V1_0),
    "npairs_context_set_threads": (npairs_status, [npairs_context, ctypes.c_int32], _V1_0),
    "npairs_context_synchronize": (npairs_status, [npairs_context], _V1_0),
    "npairs_options_init": (None, [ctypes.POINTER(Options)], _V1_0),
    "npairs_problem_init": (None, [ctypes.POINTER(Problem)], _V1_0),
    "npairs_gradients_init": (None, [ctypes.POINTER(Gradients)], _V1_0),
    "npairs_loss": (
        npairs_status,
        [npairs_context, ctypes.POINTER(Options), ctypes.POINTER(Problem), ctypes.c_void_p, ctypes.c_void_p,
         ctypes.POINTER(Gradients)],
        _V1_0,
    ),
    # Workspace limits and reserve (SPEC section 4).
    "npairs_context_set_workspace_limit": (npairs_status, [npairs_context, ctypes.c_size_t], _V1_1),
    "npairs_workspace_size": (
        npairs_status,
        [npairs_context, ctypes.POINTER(Options), ctypes.POINTER(Problem), ctypes.POINTER(Gradients),
         ctypes.POINTER(ctypes.c_size_t)],
        _V1_1,
    ),
    "npairs_context_reserve": (npairs_status, [npairs_context, ctypes.c_size_t], _V1_1),
    # npairs_gradients at its 1.1 size (SPEC section 5's temperature).
    "npairs_gradients_init_sized": (None, [ctypes.POINTER(Gradients), ctypes.c_size_t], _V1_1),
    # Hard negative class mining.
    "npairs_class_selection_init": (None, [ctypes.POINTER(ClassSelection)], _V1_1),
    "npairs_select_hard_classes": (
        npairs_status, [npairs_context, ctypes.POINTER(ClassSelection), ctypes.c_void_p], _V1_1),
    # Column blocks (issue #14's ring strategy).
    "npairs_block_stats": (
        npairs_status,
        [npairs_context, ctypes.POINTER(Options), ctypes.POINTER(Problem), ctypes.c_void_p, ctypes.c_void_p],
        _V1_1,
    ),
    "npairs_block_gradients": (
        npairs_status,
        [npairs_context, ctypes.POINTER(Options), ctypes.POINTER(Problem), ctypes.c_void_p, ctypes.c_void_p,
         ctypes.POINTER(Gradients)],
        _V1_1,
    ),
}

_lock = threading.Lock()
_lib = None
_path = None
_origin = None


def _candidates():
    """(description, name-or-path) pairs to try, in order."""
    env = os.environ.get(ENV_VAR)
    if env:
        # An explicit choice is never silently replaced by another library.
        return [(f"${ENV_VAR}={env}", env)]
    here = pathlib.Path(__file__).resolve().parent
    out = []
    if sys.platform == "win32":
        patterns = ["npairs.dll", "libnpairs.dll"]
    elif sys.platform == "darwin":
        patterns = ["libnpairs.1.dylib", "libnpairs.dylib", "libnpairs*.dylib"]
    else:
        patterns = ["libnpairs.so.1", "libnpairs.so", "libnpairs.so.1.*"]
    seen = set()
    for pattern in patterns:
        for p in sorted(here.glob(pattern)):
            if p not in seen:
                seen.add(p)
                out.append((f"next to the package: {p}", str(p)))
    system = {"win32": "npairs.dll", "darwin": "libnpairs.1.dylib"}.get(sys.platform, "libnpairs.so.1")
    out.append((f"system loader: {system}", system))
    found = ctypes.util.find_library("npairs")
    if found and found != system:
        out.append((f"system loader: {found}", found))
    return out


def _declare(fn, name):
    restype, argtypes, _ = _SIGNATURES[name]
    fn.restype = restype
    fn.argtypes = argtypes


def _declare_1_0(lib):
    """Declares the 1.0 functions (AttributeError when lib lacks one: it is not libnpairs)."""
    for name, (_, _, version) in _SIGNATURES.items():
        if version == _V1_0:
            _declare(getattr(lib, name), name)


_declared = {}  # name -> the function object whose prototype function() set


def _lookup(name):
    """The loaded library's function `name`, declared on first use; None when the library lacks it."""
    fn = getattr(load(), name, None)
    if fn is not None and _declared.get(name) is not fn:
        _declare(fn, name)
        _declared[name] = fn
    return fn


def function(name):
    """The loaded library's function `name` (a later version's; see _SIGNATURES), declared on first use.

    Raises UnsupportedError, naming the function and the version that added
    it, when the loaded library is older.
    """
    fn = _lookup(name)
    if fn is None:
        from .errors import UnsupportedError

        version = ".".join(map(str, _SIGNATURES[name][2]))
        raise UnsupportedError(
            f"the loaded libnpairs ({load().npairs_version_string().decode()}, {_path}) has no {name}; "
            f"it needs libnpairs {version} or newer"
        )
    return fn


def init_gradients(grads):
    """Initialises `grads` (a Gradients) at its full size with npairs_gradients_init_sized.

    The exported npairs_gradients_init fills only the 1.0 struct (what 1.0
    callers allocate), as does a 1.0 library, which has no _sized function:
    then struct_size says 1.0 and the library never reads `temperature`.
    """
    sized = _lookup("npairs_gradients_init_sized")
    if sized is None:
        load().npairs_gradients_init(ctypes.byref(grads))
    else:
        sized(ctypes.byref(grads), ctypes.sizeof(grads))


def load():
    """Returns the loaded library (a ctypes.CDLL), loading it on first use.

    Raises LibraryNotFoundError (an NpairsError and an OSError) when no
    usable libnpairs is found.
    """
    global _lib, _path, _origin
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for what, name in _candidates():
            try:
                lib = ctypes.CDLL(name)
            except OSError as e:
                tried.append(f"  {what}: {e}")
                continue
            try:
                _declare_1_0(lib)
            except AttributeError as e:
                tried.append(f"  {what}: not libnpairs ({e})")
                continue
            version = lib.npairs_version_number()
            if version // 10000 != SUPPORTED_MAJOR:
                tried.append(
                    f"  {what}: libnpairs {lib.npairs_version_string().decode()} has major "
                    f"version {version // 10000}; this package needs {SUPPORTED_MAJOR}.x"
                )
                continue
            _lib, _path, _origin = lib, name, what
            return lib
        raise LibraryNotFoundError(
            "libnpairs (the shared library behind the npairs package) could not be loaded. "
            "Install the package with `pip install .` at the repository root (it builds the library "
            f"into the package), set {ENV_VAR} to the path of a libnpairs.so, or install the library "
            "where the system loader finds it. Tried:\n" + "\n".join(tried)
        )


def library_path():
    """The name or path the library was loaded from (loads it if needed)."""
    load()
    return _path


def library_origin():
    """How the library was found, e.g. 'next to the package: PATH' (loads it if needed)."""
    load()
    return _origin


def last_error():
    return load().npairs_last_error().decode("utf-8", "replace")


def status_string(status):
    return load().npairs_status_string(int(status)).decode("utf-8", "replace")
