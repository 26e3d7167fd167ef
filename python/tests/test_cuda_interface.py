"""The pure-Python side of the CUDA array path: __cuda_array_interface__ and
DLPack parsing, routing to the CUDA backend, device checks.

The fake arrays carry made-up device pointers, so every test that would hand
them to the library runs only when no CUDA device is present (the context
creation then fails first, with BackendUnavailableError).
"""

import ctypes

import numpy as np
import pytest

import npairs
from npairs import _arrays

no_cuda = pytest.mark.skipif(npairs.backend_available("cuda"),
                             reason="a CUDA device is present; fake device pointers must not reach it")


class FakeCudaArray:
    """Something with __cuda_array_interface__ (version 3), like a CuPy or Numba array."""

    def __init__(self, shape, typestr="<f4", ptr=0xDEAD0000, strides=None, stream=None, mask=None, version=3,
                 device=None):
        self.__cuda_array_interface__ = {
            "shape": tuple(shape), "typestr": typestr, "data": (ptr, False), "strides": strides,
            "version": version, "stream": stream,
        }
        if mask is not None:
            self.__cuda_array_interface__["mask"] = mask
        if device is not None:
            self.__dlpack_device__ = lambda: (_arrays.KDL_CUDA, device)


def test_parse_cuda_array_interface():
    a = _arrays.wrap("y_pred", FakeCudaArray((3, 5), "<f8", ptr=0x1000, stream=0x77))
    assert a.on_cuda and a.device == 0 and a.ptr == 0x1000 and a.shape == (3, 5)
    assert a.dtype == np.float64 and a.c_contiguous() and a.stream == 0x77
    assert _arrays.stream_of(a) == 0x77


def test_device_from_dlpack_device():
    a = _arrays.wrap("y_pred", FakeCudaArray((2, 2), device=3))
    assert a.device == 3


@pytest.mark.parametrize("stream,expected", [(None, None), (1, None), (2, 2), (0xABC, 0xABC)])
def test_streams(stream, expected):
    assert _arrays.stream_of(_arrays.wrap("x", FakeCudaArray((2, 2), stream=stream))) == expected


def test_stream_zero_is_rejected():
    with pytest.raises(npairs.InvalidArgumentError, match="stream 0"):
        _arrays.wrap("y_pred", FakeCudaArray((2, 2), stream=0))


def test_strides():
    c = _arrays.wrap("x", FakeCudaArray((3, 4), "<f4", strides=(16, 4)))
    f = _arrays.wrap("x", FakeCudaArray((3, 4), "<f4", strides=(4, 12)))
    col = _arrays.wrap("x", FakeCudaArray((3, 1), "<i8", strides=(8, 800)))
    assert c.c_contiguous() and not f.c_contiguous() and col.c_contiguous()
    col.reshape_view((3,))
    assert col.shape == (3,) and col.strides == (8,) and col.c_contiguous()


def test_masked_arrays_unsupported():
    with pytest.raises(npairs.UnsupportedError, match="y_pred"):
        _arrays.wrap("y_pred", FakeCudaArray((2, 2), mask=object()))


def test_malformed_interface():
    bad = FakeCudaArray((2, 2))
    del bad.__cuda_array_interface__["typestr"]
    with pytest.raises(npairs.InvalidArgumentError, match="y_pred.__cuda_array_interface__"):
        _arrays.wrap("y_pred", bad)


@no_cuda
def test_cuda_arrays_route_to_the_cuda_backend():
    with pytest.raises(npairs.BackendUnavailableError) as info:
        npairs.npairs_loss(np.array([0, 1]), FakeCudaArray((2, 2)))
    assert info.value.status == 5 and "CUDA" in str(info.value)
    with pytest.raises(npairs.BackendUnavailableError):
        npairs.npairs_embeddings_loss(FakeCudaArray((2,), "<i8"), FakeCudaArray((2, 3)), FakeCudaArray((2, 3)))


def test_cuda_arrays_with_cpu_backend():
    with pytest.raises(npairs.InvalidArgumentError, match="backend='cpu'.*y_pred.*CUDA"):
        npairs.npairs_loss(np.array([0, 1]), FakeCudaArray((2, 2)), backend="cpu")


def test_arrays_on_two_devices():
    with pytest.raises(npairs.InvalidArgumentError, match="anchors.*device 0.*positives.*device 1"):
        npairs.npairs_embeddings_loss([0, 1], FakeCudaArray((2, 3), device=0), FakeCudaArray((2, 3), device=1))


def test_cuda_shapes_checked_in_python():
    with pytest.raises(npairs.InvalidArgumentError, match="y_pred.*2-D"):
        npairs.npairs_loss(np.array([0, 1]), FakeCudaArray((4,)))
    with pytest.raises(npairs.InvalidArgumentError, match="y_true.*3 labels"):
        npairs.npairs_loss(FakeCudaArray((3,), "<i4"), FakeCudaArray((2, 2)))


def test_cuda_dtypes_checked_in_python():
    with pytest.raises(npairs.InvalidDTypeError, match="y_pred.*complex64"):
        npairs.npairs_loss(np.array([0, 1]), FakeCudaArray((2, 2), "<c8"))
    with pytest.raises(npairs.InvalidDTypeError, match="y_true"):
        npairs.npairs_loss(FakeCudaArray((2,), "<f4"), FakeCudaArray((2, 2)))


def test_foreign_cuda_arrays_are_not_converted():
    # No library known to copy it: a clear error rather than a wrong read.
    with pytest.raises(npairs.InvalidArgumentError, match="y_pred.*C-contiguous"):
        npairs.npairs_loss(np.array([0, 1]), FakeCudaArray((2, 2), "<f4", strides=(4, 8)))
    with pytest.raises(npairs.InvalidArgumentError, match="anchors.*float64"):
        npairs.npairs_embeddings_loss([0, 1], FakeCudaArray((2, 2), "<f4"), FakeCudaArray((2, 2), "<f8"))


# ---------------------------------------------------------------------------
# DLPack


def test_dlpack_capsule_of_a_numpy_array():
    if not hasattr(np.ndarray, "__dlpack__"):
        pytest.skip("this NumPy has no __dlpack__")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)[:, 1:]
    ptr, shape, dtype, strides, device = _arrays.parse_dlpack_capsule("x", x.__dlpack__())
    assert ptr == x.ctypes.data and shape == (3, 3) and dtype == np.float32
    assert strides == x.strides and device == (_arrays.KDL_CPU, 0)
    y = np.arange(5, dtype=np.int64)
    ptr, shape, dtype, strides, device = _arrays.parse_dlpack_capsule("y", y.__dlpack__())
    assert ptr == y.ctypes.data and shape == (5,) and dtype == np.int64
    assert strides in (None, (8,))


_PyCapsule_New = ctypes.pythonapi.PyCapsule_New
_PyCapsule_New.restype = ctypes.py_object
_PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]


class FakeDLPackCudaArray:
    """A DLPack-only producer (no __cuda_array_interface__) of a CUDA tensor, e.g. JAX."""

    def __init__(self, shape, code=2, bits=32, device=1, ptr=0xBEEF0000):
        self._shape = (ctypes.c_int64 * len(shape))(*shape)
        self._managed = _arrays.DLManagedTensor()
        t = self._managed.dl_tensor
        t.data = ptr
        t.device = _arrays.DLDevice(_arrays.KDL_CUDA, device)
        t.ndim = len(shape)
        t.dtype = _arrays.DLDataType(code, bits, 1)
        t.shape = self._shape
        t.byte_offset = 64
        self.device = device
        self.streams = []

    def __dlpack_device__(self):
        return (_arrays.KDL_CUDA, self.device)

    def __dlpack__(self, stream=None):
        self.streams.append(stream)
        return _PyCapsule_New(ctypes.addressof(self._managed), b"dltensor", None)


def test_parse_dlpack_cuda_array():
    x = FakeDLPackCudaArray((4, 6), device=1)
    a = _arrays.wrap("y_pred", x)
    assert a.on_cuda and a.device == 1 and a.shape == (4, 6) and a.dtype == np.float32
    assert a.ptr == 0xBEEF0000 + 64 and a.c_contiguous()
    assert x.streams == [1] and _arrays.stream_of(a) is None


def test_dlpack_dtypes():
    assert _arrays.wrap("y_pred", FakeDLPackCudaArray((2, 2), code=4, bits=16)).dtype == _arrays.BFLOAT16
    assert _arrays.wrap("y_pred", FakeDLPackCudaArray((2, 2), code=2, bits=16)).dtype == np.float16
    for code, bits in [(4, 32), (2, 8), (5, 64), (2, 12)]:  # bfloat32, float8, complex, 12 bits: none of ours
        with pytest.raises(npairs.InvalidDTypeError, match=f"y_pred.*code {code}, bits {bits}"):
            _arrays.wrap("y_pred", FakeDLPackCudaArray((2, 2), code=code, bits=bits))


@no_cuda
def test_dlpack_cuda_arrays_route_to_the_cuda_backend():
    with pytest.raises(npairs.BackendUnavailableError):
        npairs.npairs_loss(FakeDLPackCudaArray((3,), code=0, bits=64), FakeDLPackCudaArray((3, 3)))


def test_torch_cuda_tensors_are_cuda_arrays():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device for torch")
    t = torch.ones(3, 3, device="cuda", requires_grad=True)
    a = _arrays.wrap("y_pred", t)
    assert a.on_cuda and a.fam == "torch" and a.ptr == t.data_ptr()


# ---------------------------------------------------------------------------
# The whole CUDA route, with host memory behind the fake device arrays and a
# CPU context standing in for the CUDA one: checks what reaches the library.


def _fake_view(a, stream=None, device=None):
    a = np.ascontiguousarray(a)
    f = FakeCudaArray(a.shape, a.dtype.str, ptr=a.ctypes.data, stream=stream, device=device)
    f.base = a  # keeps the memory alive
    return f


@pytest.fixture
def fake_cuda(monkeypatch):
    from npairs import _core, _lib

    class FakeContext:
        backend = _lib.BACKEND_CUDA

        def __init__(self):
            self.owner = _core.Context(_lib.BACKEND_CPU, 0)
            self.handle = self.owner.handle
            self.calls = []
            self.streams = []

        def set_stream(self, stream):
            self.streams.append(stream)

        def set_workspace_limit(self, limit):
            self.owner.set_workspace_limit(limit)

    ctx = FakeContext()

    def context(backend, device=0):
        ctx.calls.append((backend, device))
        return ctx

    def empty(ref, name, shape, dtype):
        arr = np.full(shape, np.nan, dtype=dtype)
        return _arrays.Array(name, arr, arr.ctypes.data, shape, dtype, None, ref.device, ref.stream, ref.fam, arr)

    monkeypatch.setattr(_core, "context", context)
    monkeypatch.setattr(_arrays, "empty_like_family", empty)
    return ctx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_route_similarity(fake_cuda, dtype):
    from npairs import _lib

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 7)
    S = rng.standard_normal((7, 7)).astype(dtype)
    w = rng.random(7).astype(dtype)
    expected_loss, expected_grad = npairs.npairs_loss(labels, S, w, return_grad=True)
    expected_none = npairs.npairs_loss(labels, S, 0.5, reduction="none")
    fake_cuda.calls.clear()
    fake_cuda.streams.clear()
    loss, grad = npairs.npairs_loss(_fake_view(labels.reshape(-1, 1), device=2), _fake_view(S, stream=0x77, device=2),
                                    _fake_view(w, device=2), return_grad=True)
    assert loss.dtype == dtype and grad.dtype == dtype
    assert loss == expected_loss and np.array_equal(grad, expected_grad)
    assert fake_cuda.streams == [0x77]
    assert fake_cuda.calls == [(_lib.BACKEND_CUDA, 2)]
    loss = npairs.npairs_loss(_fake_view(labels, device=2), _fake_view(S, device=2), 0.5, reduction="none")
    np.testing.assert_array_equal(loss, expected_none)


def test_cuda_route_float16_reaches_the_library(fake_cuda):
    # The CPU context standing in answers UNSUPPORTED for NPAIRS_F16: the
    # float16 arrays went through the CUDA route unconverted.
    from npairs import _lib

    S = np.eye(3, dtype=np.float16)
    with pytest.raises(npairs.UnsupportedError, match="F16"):
        npairs.npairs_loss(_fake_view(np.arange(3), device=1), _fake_view(S, device=1), 0.5, return_grad=True)
    assert fake_cuda.calls == [(_lib.BACKEND_CUDA, 1)]


def test_cuda_route_embeddings_with_host_labels(fake_cuda):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 5)
    A = rng.standard_normal((5, 4))
    P = rng.standard_normal((5, 4))
    e_loss, (e_dA, e_dP) = npairs.npairs_embeddings_loss(labels, A, P, reg_lambda=0.1, return_grads=True,
                                                         grad_loss=2.0)
    fake_cuda.streams.clear()
    loss, (dA, dP) = npairs.npairs_embeddings_loss(labels, _fake_view(A), _fake_view(P), reg_lambda=0.1,
                                                   return_grads=True, grad_loss=2.0)
    assert loss == e_loss and np.array_equal(dA, e_dA) and np.array_equal(dP, e_dP)
    assert fake_cuda.streams == [None]
