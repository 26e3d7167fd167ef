"""Seeing arrays from any library as (pointer, shape, dtype, device).

Host arrays (NumPy, anything ``numpy.asarray`` takes) are converted with
NumPy; PyTorch CPU tensors with PyTorch (``.to``, ``.contiguous()``), and
not at all when they already have the dtype wanted and are contiguous. CUDA arrays are read without copying through
``__cuda_array_interface__`` (CuPy, Numba, PyTorch) or DLPack
(``__dlpack__``/``__dlpack_device__``); when one needs a cast or a contiguous
copy, and for the outputs, the array's own library is used (PyTorch, CuPy,
Numba; TensorFlow makes the outputs of its tensors, which need the dtype
wanted already; for other DLPack producers CuPy, then PyTorch, when
importable). Host arrays of other DLPack producers (TensorFlow's CPU
tensors, JAX's CPU arrays) are read in place through a NumPy view
(``numpy.from_dlpack``).

NumPy has no bfloat16: such arrays carry the dtype :data:`BFLOAT16`, their
host copies and casts are PyTorch tensors (only PyTorch and DLPack producers
hand bfloat16 over), and their outputs are PyTorch tensors.
"""

from __future__ import annotations

import ctypes
import mmap
import threading
import weakref

import numpy as np

from .errors import InvalidArgumentError, InvalidDTypeError, UnsupportedError

# DLPack device types.
KDL_CPU = 1
KDL_CUDA = 2
KDL_CUDA_HOST = 3
KDL_CUDA_MANAGED = 13
_CUDA_DEVICE_TYPES = (KDL_CUDA, KDL_CUDA_MANAGED)

# A host byte for zero-size arrays whose data pointer is NULL: the library
# wants non-NULL inputs even when they hold no element.
_EMPTY = ctypes.c_double(0.0)
EMPTY_PTR = ctypes.addressof(_EMPTY)

# Stands for bfloat16 where a NumPy dtype is expected: 2 bytes, and unequal to
# every NumPy number type.
BFLOAT16 = np.dtype([("bfloat16", "<u2")])


def dtype_name(dtype):
    """'float32', 'int64', ..., and 'bfloat16' for BFLOAT16."""
    return "bfloat16" if dtype == BFLOAT16 else str(dtype)


def family(obj):
    """The top-level module of obj's type: 'numpy', 'torch', 'cupy', ..."""
    return type(obj).__module__.partition(".")[0]


def is_torch(obj):
    return family(obj) == "torch" and hasattr(obj, "is_cuda") and hasattr(obj, "detach")


class Array:
    """An input or output array the library can be handed.

    device is None for host memory, else the CUDA device ordinal. keep holds
    the Python object(s) owning the memory.
    """

    __slots__ = ("name", "obj", "ptr", "shape", "dtype", "strides", "device", "stream", "fam", "keep")

    def __init__(self, name, obj, ptr, shape, dtype, strides=None, device=None, stream=None, fam="numpy", keep=None):
        self.name = name
        self.obj = obj
        self.ptr = int(ptr or 0)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.strides = None if strides is None else tuple(int(s) for s in strides)  # bytes
        self.device = device
        self.stream = stream
        self.fam = fam
        self.keep = keep

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def on_cuda(self):
        return self.device is not None

    def c_contiguous(self):
        if self.strides is None or self.size == 0:
            return True
        expected = self.dtype.itemsize
        for dim, stride in zip(reversed(self.shape), reversed(self.strides)):
            if dim != 1 and stride != expected:
                return False
            expected *= dim
        return True

    def reshape_view(self, shape):
        """Views [n, 1] as [n] or a one-element array as []: no data moves."""
        shape = tuple(shape)
        if self.strides is not None:
            if shape == (self.shape[0],) and self.ndim == 2:
                self.strides = (self.strides[0],)
            elif shape == ():
                self.strides = ()
            else:
                raise ValueError("reshape_view only drops unit dimensions")
        self.shape = shape
        return self

    def pointer(self):
        """The data pointer to pass to the library (never NULL)."""
        return self.ptr if self.ptr else EMPTY_PTR

    def where(self):
        return "host memory" if self.device is None else f"CUDA device {self.device}"


# ---------------------------------------------------------------------------
# Host arrays


def host(name, obj, dtype=None):
    """Wraps a host object as a C-contiguous array (of dtype if given).

    NumPy converts other objects; torch tensors stay torch tensors (see
    _host_torch). With bfloat16 wanted, PyTorch casts, and the result is a
    torch tensor (see _host_bfloat16).
    """
    if is_torch(obj):
        return _host_torch(name, obj, dtype)
    if dtype is not None and np.dtype(dtype) == BFLOAT16:
        return _host_bfloat16(name, obj, dtype)
    fam = "numpy"
    try:
        a = np.asarray(obj) if dtype is None else np.ascontiguousarray(obj, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{name} is not an array of numbers ({e})") from None
    if dtype is not None or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a, dtype=dtype)
    return Array(name, a, a.ctypes.data, a.shape, a.dtype, None, None, None, fam, a)


def _host_bfloat16(name, obj, dtype):
    """host() of a non-torch object cast to BFLOAT16, through PyTorch."""
    import torch

    try:  # float64: a type PyTorch reads, exact for float16/32 values
        t = torch.from_numpy(np.array(obj, dtype=np.float64))
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{name} is not an array of numbers ({e})") from None
    return _host_torch(name, t, dtype)


def _host_torch(name, t, dtype):
    """host() of a CPU tensor: cast and made contiguous by PyTorch, only where needed (never through NumPy).

    Without dtype (wrap(), before the dtype wanted is known) the tensor is
    only viewed, its strides kept, so that the conversion copies it once.
    """
    import torch

    t = t.detach()
    if t.is_conj():
        t = t.resolve_conj()
    if dtype is None:
        strides = None if t.is_contiguous() else tuple(s * t.element_size() for s in t.stride())
        return Array(name, t, t.data_ptr(), t.shape, numpy_dtype(name, t.dtype), strides, None, None, "torch", t)
    t = t.to(_torch_dtype(torch, dtype)).contiguous()
    return Array(name, t, t.data_ptr(), t.shape, numpy_dtype(name, t.dtype), None, None, None, "torch", t)


def numpy_dtype(name, torch_dtype):
    """The NumPy dtype (BFLOAT16 for bfloat16) of a torch dtype."""
    text = str(torch_dtype).replace("torch.", "")
    if text == "bfloat16":
        return BFLOAT16
    try:
        return np.dtype(text)
    except TypeError:
        raise InvalidDTypeError(f"{name} has dtype {torch_dtype}, which libnpairs does not read") from None


def cast(obj, dtype):
    """obj (a NumPy array or a torch tensor) in dtype, by its own library."""
    if is_torch(obj):
        import torch

        return obj.to(_torch_dtype(torch, dtype))
    return obj.astype(dtype)


# ---------------------------------------------------------------------------
# CUDA arrays: __cuda_array_interface__


def _device_ordinal(obj):
    """The CUDA device of obj, from DLPack, .device.index (torch) or .device.id (CuPy); 0 if unknown."""
    get = getattr(obj, "__dlpack_device__", None)
    if get is not None:
        try:
            kind, ordinal = get()
            if int(kind) in _CUDA_DEVICE_TYPES:
                return int(ordinal)
        except Exception:  # noqa: BLE001 - a producer's quirk must not hide the array
            pass
    dev = getattr(obj, "device", None)
    for attr in ("index", "id"):
        v = getattr(dev, attr, None)
        if isinstance(v, int):
            return v
    return 0


def parse_cuda_array_interface(name, obj, iface):
    """Array from a __cuda_array_interface__ dict (versions 0-3)."""
    if not isinstance(iface, dict):
        raise InvalidArgumentError(f"{name}.__cuda_array_interface__ is not a dict")
    try:
        shape = tuple(int(s) for s in iface["shape"])
        typestr = iface["typestr"]
        ptr, _readonly = iface["data"]
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{name}.__cuda_array_interface__ is malformed ({e!r})") from None
    if iface.get("mask") is not None:
        raise UnsupportedError(f"{name}: masked CUDA arrays are not supported")
    try:
        dtype = np.dtype(typestr)
    except TypeError:
        raise InvalidDTypeError(f"{name}: unknown CUDA array typestr {typestr!r}") from None
    stream = iface.get("stream")
    if stream == 0:
        raise InvalidArgumentError(f"{name}.__cuda_array_interface__ has stream 0, which the protocol forbids")
    strides = iface.get("strides")
    return Array(name, obj, ptr or 0, shape, dtype, strides, _device_ordinal(obj), stream, family(obj), obj)


# ---------------------------------------------------------------------------
# CUDA arrays: DLPack


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


_capsule_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_get_pointer.restype = ctypes.c_void_p
_capsule_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_capsule_is_valid.restype = ctypes.c_int
_capsule_is_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]

_DL_CODES = {0: "i", 1: "u", 2: "f", 6: "b"}
_DL_BFLOAT = 4


def parse_dlpack_capsule(name, capsule):
    """(ptr, shape, dtype, byte strides or None, (device_type, device_id)) of a 'dltensor' capsule.

    The capsule is only borrowed: it is not renamed, so its own destructor
    releases the tensor once the capsule is garbage collected.
    """
    if not _capsule_is_valid(capsule, b"dltensor"):
        raise InvalidArgumentError(f"{name}.__dlpack__() did not return an unused 'dltensor' capsule")
    managed = DLManagedTensor.from_address(_capsule_get_pointer(capsule, b"dltensor"))
    t = managed.dl_tensor
    code, bits, lanes = t.dtype.code, t.dtype.bits, t.dtype.lanes
    dtype = None
    if (code, bits, lanes) == (_DL_BFLOAT, 16, 1):
        dtype = BFLOAT16
    elif lanes == 1 and code in _DL_CODES and bits % 8 == 0:
        try:
            dtype = np.dtype("?") if code == 6 else np.dtype(f"{_DL_CODES[code]}{bits // 8}")
        except TypeError:  # no NumPy type of that size, e.g. 8-bit floats
            pass
    if dtype is None:
        raise InvalidDTypeError(f"{name}: unsupported DLPack dtype (code {code}, bits {bits}, lanes {lanes})")
    shape = tuple(t.shape[i] for i in range(t.ndim))
    strides = None
    if t.strides:
        strides = tuple(t.strides[i] * dtype.itemsize for i in range(t.ndim))
    ptr = (t.data or 0) + t.byte_offset
    return ptr, shape, dtype, strides, (t.device.device_type, t.device.device_id)


def parse_dlpack(name, obj, device):
    """Array from a DLPack producer whose __dlpack_device__ is a CUDA device."""
    try:
        capsule = obj.__dlpack__(stream=1)  # we queue on the legacy default stream
    except TypeError:
        capsule = obj.__dlpack__()
    except RuntimeError:
        # TensorFlow's tensors take no stream: their export waits for the whole
        # device instead (TFE_TensorHandleDevicePointer calls Device::Sync(),
        # tensorflow/c/eager/c_api.cc), so the data is ready on any stream.
        capsule = obj.__dlpack__()
    ptr, shape, dtype, strides, (kind, ordinal) = parse_dlpack_capsule(name, capsule)
    if kind not in _CUDA_DEVICE_TYPES:
        raise InvalidArgumentError(f"{name}: __dlpack_device__ says CUDA but its tensor is on DLPack device type {kind}")
    return Array(name, obj, ptr, shape, dtype, strides, int(ordinal), 1, family(obj), (obj, capsule))


def dlpack_host_view(obj):
    """A NumPy view (no copy) of a DLPack producer's host memory, holding the producer's tensor; None if
    NumPy cannot read it (e.g. bfloat16): the caller then converts the object itself."""
    try:
        return np.from_dlpack(obj)
    except (BufferError, TypeError, RuntimeError, AttributeError):  # AttributeError: NumPy < 1.22 lacks it
        return None


def _torch_cuda_array(name, t):
    """Array of a CUDA tensor; bfloat16 ones from the tensor itself (PyTorch's
    __cuda_array_interface__ has no bfloat16)."""
    if str(t.dtype) != "torch.bfloat16":
        return parse_cuda_array_interface(name, t, t.__cuda_array_interface__)
    strides = None if t.is_contiguous() else tuple(s * t.element_size() for s in t.stride())
    return Array(name, t, t.data_ptr() if t.numel() else 0, t.shape, BFLOAT16, strides, t.device.index or 0, None,
                 "torch", t)


# ---------------------------------------------------------------------------
# Dispatch


def wrap(name, obj):
    """Array seen without copying: CUDA arrays by pointer, others via NumPy.

    Host arrays are not converted here (see host()); the caller does that once
    it knows the dtype wanted.
    """
    if is_torch(obj):
        kind = obj.device.type
        if kind not in ("cpu", "cuda"):
            what = "a meta tensor, which holds no data" if kind == "meta" else f"on the {obj.device} device"
            raise InvalidArgumentError(f"{name} is {what}; libnpairs reads CPU or CUDA tensors")
        if obj.is_cuda:
            t = obj.detach()  # __cuda_array_interface__ refuses tensors that require grad
            try:
                if hasattr(t, "resolve_conj"):
                    t = t.resolve_conj()
                a = _torch_cuda_array(name, t)
            except (TypeError, RuntimeError, AttributeError, KeyError) as e:
                raise InvalidDTypeError(f"{name}: cannot read the CUDA tensor of dtype {t.dtype} ({e})") from None
            a.device = t.device.index if t.device.index is not None else 0
            a.stream = None  # torch gives no stream: the current one is used (see stream_of)
            return a
        return host(name, obj)
    iface = getattr(obj, "__cuda_array_interface__", None)
    if iface is not None:
        return parse_cuda_array_interface(name, obj, iface)
    get_device = getattr(obj, "__dlpack_device__", None)
    if get_device is not None and hasattr(obj, "__dlpack__") and not isinstance(obj, (np.ndarray, np.generic)):
        kind, ordinal = get_device()
        if int(kind) in _CUDA_DEVICE_TYPES:
            return parse_dlpack(name, obj, int(ordinal))
        if int(kind) == KDL_CPU:  # e.g. TensorFlow's CPU tensors: read in place
            view = dlpack_host_view(obj)
            return host(name, obj if view is None else view)
    return host(name, obj)


# ---------------------------------------------------------------------------
# The libraries of CUDA arrays: casts, contiguous copies, outputs, streams


def _torch_dtype(torch, dtype):
    return {
        np.dtype("float16"): torch.float16,
        BFLOAT16: torch.bfloat16,
        np.dtype("float32"): torch.float32,
        np.dtype("float64"): torch.float64,
        np.dtype("int32"): torch.int32,
        np.dtype("int64"): torch.int64,
    }[np.dtype(dtype)]


def convert_cuda(a, dtype):
    """a as a C-contiguous CUDA array of dtype, copied by its own library if needed."""
    dtype = np.dtype(dtype)
    if a.dtype == dtype and a.c_contiguous():
        return a
    if a.fam == "torch":
        import torch

        t = a.obj.to(_torch_dtype(torch, dtype)).contiguous()
        out = _torch_cuda_array(a.name, t)
    elif a.fam == "cupy" and dtype != BFLOAT16:  # CuPy has no bfloat16
        import cupy

        with cupy.cuda.Device(a.device):
            c = cupy.ascontiguousarray(a.obj, dtype=dtype)
        out = parse_cuda_array_interface(a.name, c, c.__cuda_array_interface__)
    else:
        what = "C-contiguous" if a.dtype == dtype else f"of dtype {dtype_name(dtype)}"
        raise InvalidArgumentError(
            f"{a.name}: a CUDA array of type {type(a.obj).__module__}.{type(a.obj).__name__} must be {what} "
            f"(got dtype {dtype_name(a.dtype)}, shape {a.shape}, strides {a.strides}); convert it first"
        )
    out.device, out.stream, out.fam = a.device, a.stream, a.fam
    out.shape, out.strides = a.shape, None  # keeps a [n, 1] -> [n] view; the copy is C-contiguous
    return out


def empty_like_family(ref, name, shape, dtype):
    """A new C-contiguous CUDA array on ref's device, made by ref's library."""
    shape = tuple(shape)
    dtype = np.dtype(dtype)
    fam = ref.fam
    # Other producers' outputs are made by CuPy or PyTorch; bfloat16 ones by PyTorch only.
    if fam not in ("torch", "cupy", "numba", "tensorflow") or (dtype == BFLOAT16 and fam not in ("torch", "tensorflow")):
        for candidate in ("torch",) if dtype == BFLOAT16 else ("cupy", "torch"):
            try:
                __import__(candidate)
                fam = candidate
                break
            except ImportError:
                continue
        else:
            raise UnsupportedError(
                f"cannot allocate the outputs for CUDA arrays of type {type(ref.obj).__module__}."
                f"{type(ref.obj).__name__}: install CuPy or PyTorch, or pass CuPy/PyTorch/Numba arrays"
            )
    if fam == "torch":
        import torch

        obj = torch.empty(shape, dtype=_torch_dtype(torch, dtype), device=torch.device("cuda", ref.device))
        ptr = obj.data_ptr()
    elif fam == "cupy":
        import cupy

        with cupy.cuda.Device(ref.device):
            obj = cupy.empty(shape, dtype=dtype)
        ptr = obj.data.ptr
    elif fam == "tensorflow":
        obj, ptr = tensorflow_empty(f"GPU:{ref.device}", shape, dtype)
    else:
        from numba import cuda

        with cuda.gpus[ref.device]:
            obj = cuda.device_array(shape, dtype=dtype)
        ptr = obj.__cuda_array_interface__["data"][0]
    return Array(name, obj, ptr, shape, dtype, None, ref.device, ref.stream, fam, obj)


def tensorflow_empty(device, shape, dtype):
    """(tensor, data pointer) of a new, unshared TensorFlow tensor on device ('GPU:0'), which the library writes.

    TensorFlow's own allocator, not CuPy's or PyTorch's: by default TensorFlow
    holds nearly all of a GPU's memory from its start (unless
    tf.config.experimental.set_memory_growth), so other libraries' allocations
    there fail. The pointer comes through DLPack, whose export waits for the
    device (see parse_dlpack): no TensorFlow kernel is still using the memory
    that its allocator hands out again.
    """
    import tensorflow as tf

    with tf.device(device):
        obj = tf.raw_ops.Empty(shape=tf.constant(shape, tf.int32), dtype=tf.as_dtype(dtype_name(dtype)), init=False)
    return obj, parse_dlpack_capsule("output", tf.experimental.dlpack.to_dlpack(obj))[0]


def empty_host(ref, name, shape, dtype):
    """A new host array: a torch tensor when ref came from torch (or for bfloat16), else NumPy.

    Large ones (an R x M gradient) are made over reused memory (see _OutputPool).
    """
    shape = tuple(shape)
    dtype = np.dtype(dtype)
    torch_out = (ref is not None and ref.fam == "torch") or dtype == BFLOAT16
    nbytes = dtype.itemsize
    for s in shape:
        nbytes *= s
    if nbytes >= _POOL_MIN_BYTES and dtype != BFLOAT16:
        obj = _pool.array(shape, dtype, nbytes)
        if torch_out:
            import torch

            obj = torch.from_numpy(obj)
            return Array(name, obj, obj.data_ptr(), shape, dtype, None, None, None, "torch", obj)
        return Array(name, obj, obj.ctypes.data, shape, dtype, None, None, None, "numpy", obj)
    if torch_out:
        import torch

        obj = torch.empty(shape, dtype=_torch_dtype(torch, dtype))
        return Array(name, obj, obj.data_ptr(), shape, dtype, None, None, None, "torch", obj)
    obj = np.empty(shape, dtype=dtype)
    return Array(name, obj, obj.ctypes.data, shape, dtype, None, None, None, "numpy", obj)


# Outputs of at least this many bytes come from the pool; smaller ones are
# cheap to allocate (malloc reuses its heap for them).
_POOL_MIN_BYTES = 1 << 20


class _OutputPool:
    """Host memory of large outputs, reused once every array over it is gone.

    A fresh R x M gradient pays for its memory on every call: the kernel maps
    and zeroes each page when the library first writes it, which at
    R = M = 4096 (64 MiB) costs about as much as the library's own pass.
    Training steps free the previous step's gradient before (or while)
    making the next one, so a freed block is kept and handed out again.

    An output is a view of a NumPy array over a block (``np.frombuffer``; a
    torch output is ``torch.from_numpy`` of one): every later view of it,
    NumPy or torch, holds that array (NumPy collapses view chains to it), so
    the block comes back only when the last of them is collected. At most ``keep`` free blocks are kept, the oldest dropped
    first; ``clear()`` (``npairs.empty_cache()``) drops them all.
    """

    def __init__(self, keep=4):
        self.keep = keep
        self._free = {}  # nbytes -> [blocks], in the order their sizes were first freed
        self._count = 0
        # Reentrant: a finalizer (release) may run during a collection inside
        # take, on the same thread.
        self._lock = threading.RLock()

    def array(self, shape, dtype, nbytes):
        block = self._take(nbytes)
        if block is None:
            # An anonymous mapping, not a NumPy array: NumPy would collapse the
            # views' bases to an array block, past flat. Huge pages, as NumPy
            # asks for its own large arrays, make the first touch cheaper.
            block = mmap.mmap(-1, nbytes)
            if hasattr(mmap, "MADV_HUGEPAGE"):
                block.madvise(mmap.MADV_HUGEPAGE)
        flat = np.frombuffer(block, dtype=dtype)  # every view of it, NumPy or torch, holds flat (its base)
        weakref.finalize(flat, self._release, block).atexit = False
        return flat.reshape(shape)

    def _take(self, nbytes):
        with self._lock:
            blocks = self._free.get(nbytes)
            if not blocks:
                return None
            self._count -= 1
            block = blocks.pop()
            if not blocks:
                del self._free[nbytes]
            return block

    def _release(self, block):
        with self._lock:
            if self.keep <= 0:
                return
            if self._count >= self.keep:
                oldest = next(iter(self._free))
                self._free[oldest].pop()
                self._count -= 1
                if not self._free[oldest]:
                    del self._free[oldest]
            self._free.setdefault(len(block), []).append(block)
            self._count += 1

    def clear(self):
        with self._lock:
            self._free.clear()
            self._count = 0

    def free_bytes(self):
        """Bytes held by free blocks (for the tests and the README's memory note)."""
        with self._lock:
            return sum(n * len(blocks) for n, blocks in self._free.items())


_pool = _OutputPool()


def release_outputs():
    """Drops the free blocks of the output pool (npairs.empty_cache)."""
    _pool.clear()


def stream_of(a):
    """The cudaStream_t (an int; None = legacy default) the caller's work on a is ordered on."""
    if a.fam == "torch":
        import torch

        s = torch.cuda.current_stream(torch.device("cuda", a.device)).cuda_stream
        return int(s) or None
    s = a.stream
    if s is None or s == 1:  # 1: cudaStreamLegacy, the same as NULL
        return None
    return int(s)  # 2 is cudaStreamPerThread, which the runtime accepts as a handle
