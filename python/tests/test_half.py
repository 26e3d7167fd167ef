"""float16 (NumPy, PyTorch) and bfloat16 (PyTorch): NPAIRS_F16 and NPAIRS_BF16.

The CUDA backend computes them; on the CPU backend the NumPy-style API raises
UnsupportedError before any call, naming the argument and saying what to do
(npairs.torch computes them in float32 there: see test_torch). Mixed with
other floats they promote as NumPy does (and PyTorch, for bfloat16). On a GPU
the results are compared with the float64 reference of the same (rounded)
inputs, to half-precision tolerances.
"""

import numpy as np
import pytest

import npairs
from npairs import _arrays, _core, _lib
from npairs_reference import loss_and_grads, random_labels, targets_from_labels

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
cuda = pytest.mark.skipif(not npairs.backend_available("cuda"),
                          reason="needs a CUDA device and libnpairs built with CUDA")
torch_cuda = pytest.mark.skipif(
    torch is None or not torch.cuda.is_available() or not npairs.backend_available("cuda"),
    reason="needs PyTorch with CUDA, a CUDA device and libnpairs built with CUDA",
)

LABELS = np.array([0, 0, 1, 1])
POINTS = np.array([[1.0, 1], [1, -1], [-1, 1], [-1, -1]])
UNSUPPORTED_F16 = r"is float16, which the CPU backend does not compute: cast it to float32, or pass CUDA arrays"
UNSUPPORTED_BF16 = r"is bfloat16, which the CPU backend does not compute: cast it to float32, or pass CUDA arrays"
# Half outputs, and logits stored in the dtype: tolerances relative to the
# largest reference magnitude of each output.
RTOL = {"float16": 2e-2, "bfloat16": 8e-2}


def assert_close(got, expected, rtol):
    if torch is not None and isinstance(got, torch.Tensor):
        got = got.detach().cpu().double().numpy()
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def unit_rows(rng, n, d):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------------------
# CPU: unsupported in the NumPy-style API, with a hint


@pytest.mark.parametrize("backend", ["auto", "cpu"])
def test_float16_on_cpu_is_unsupported(backend):
    S = (POINTS @ POINTS.T).astype(np.float16)
    with pytest.raises(npairs.UnsupportedError, match="y_pred " + UNSUPPORTED_F16) as info:
        npairs.npairs_loss(LABELS, S, backend=backend)
    assert info.value.status == _lib.ERROR_UNSUPPORTED and isinstance(info.value, NotImplementedError)
    with pytest.raises(npairs.UnsupportedError, match="anchors " + UNSUPPORTED_F16):
        npairs.npairs_embeddings_loss(LABELS, POINTS.astype(np.float16), POINTS.astype(np.float16),
                                      return_grads=True, backend=backend)


@needs_torch
def test_bfloat16_on_cpu_is_unsupported():
    A = torch.tensor(POINTS, dtype=torch.bfloat16)
    with pytest.raises(npairs.UnsupportedError, match="y_pred " + UNSUPPORTED_BF16):
        npairs.npairs_loss(torch.tensor(LABELS), A @ A.T)
    with pytest.raises(npairs.UnsupportedError, match="y_pred " + UNSUPPORTED_F16):
        npairs.npairs_loss(torch.tensor(LABELS), (A @ A.T).half(), return_grad=True)


# ---------------------------------------------------------------------------
# Promotion


def test_promotion_rules():
    f16, f32, f64, bf16 = np.dtype("float16"), np.dtype("float32"), np.dtype("float64"), _arrays.BFLOAT16
    assert _core._promote(f16, f16) == f16 and _core._promote(f16, f32) == f32 and _core._promote(f64, f16) == f64
    assert _core._promote(bf16, bf16) == bf16
    assert _core._promote(bf16, f16) == f32 and _core._promote(f16, bf16) == f32
    assert _core._promote(bf16, f32) == f32 and _core._promote(f64, bf16) == f64


def test_float16_with_float32_promotes_to_float32():
    rng = np.random.default_rng(0)
    labels = random_labels(rng, 9, 3)
    A = unit_rows(rng, 9, 5).astype(np.float16)
    P = unit_rows(rng, 9, 5).astype(np.float32)
    loss, (dA, dP) = npairs.npairs_embeddings_loss(labels, A, P, return_grads=True)
    assert loss.dtype == np.float32 and dA.dtype == np.float32 and dP.dtype == np.float32
    e_loss, (e_dA, e_dP) = npairs.npairs_embeddings_loss(labels, A.astype(np.float32), P, return_grads=True)
    assert loss == e_loss and np.array_equal(dA, e_dA) and np.array_equal(dP, e_dP)


def test_float16_weights_follow_the_logits():
    S = POINTS @ POINTS.T
    w = np.array([0.5, 1, 2, 1], dtype=np.float16)
    assert npairs.npairs_loss(LABELS, S, w) == npairs.npairs_loss(LABELS, S, w.astype(np.float64))


@needs_torch
@pytest.mark.parametrize("other,expected", [("float16", "float32"), ("float32", "float32"), ("float64", "float64")])
def test_bfloat16_promotion(other, expected):
    rng = np.random.default_rng(1)
    labels = torch.tensor(random_labels(rng, 8, 3))
    A = torch.tensor(unit_rows(rng, 8, 4)).bfloat16()
    P = torch.tensor(unit_rows(rng, 8, 4)).to(getattr(torch, other))
    loss, (dA, dP) = npairs.npairs_embeddings_loss(labels, A, P, return_grads=True)
    want = getattr(torch, expected)
    assert loss.dtype == want and dA.dtype == want and dP.dtype == want
    e_loss, (e_dA, e_dP) = npairs.npairs_embeddings_loss(labels, A.to(want), P.to(want), return_grads=True)
    assert torch.equal(loss, e_loss) and torch.equal(dA, e_dA) and torch.equal(dP, e_dP)


@needs_torch
def test_bfloat16_weights_follow_the_logits():
    S = torch.tensor(POINTS @ POINTS.T, dtype=torch.float32)
    w = torch.tensor([0.5, 1, 2, 1], dtype=torch.bfloat16)
    assert npairs.npairs_loss(LABELS, S, w) == npairs.npairs_loss(LABELS, S, w.float())


@needs_torch
def test_bfloat16_tensors_are_read_in_place():
    t = torch.ones(3, 4, dtype=torch.bfloat16)
    a = _arrays.wrap("x", t)
    assert a.dtype == _arrays.BFLOAT16 and a.ptr == t.data_ptr() and a.shape == (3, 4) and not a.on_cuda
    c = _arrays.wrap("x", t.T)  # not contiguous: viewed, then copied once by the conversion
    assert c.shape == (4, 3) and not c.c_contiguous()
    converted = _arrays.host("x", c.obj, _arrays.BFLOAT16)
    assert converted.ptr != t.data_ptr() and converted.obj.is_contiguous() and torch.equal(converted.obj, t.T)
    assert _arrays.dtype_name(a.dtype) == "bfloat16"


@needs_torch
def test_host_casts_to_and_from_bfloat16_are_torch_casts():
    x = np.random.default_rng(5).standard_normal((3, 5)).astype(np.float32)
    h = _arrays.host("x", x, _arrays.BFLOAT16)
    assert h.dtype == _arrays.BFLOAT16 and torch.equal(h.obj, torch.from_numpy(x).bfloat16())
    back = _arrays.host("x", h.obj, np.float32)
    assert back.dtype == np.float32 and np.array_equal(back.obj, h.obj.float().numpy())


# ---------------------------------------------------------------------------
# CUDA: against the float64 reference


@cuda
@pytest.mark.parametrize("reduction", ["none", "sum_over_batch_size"])
def test_cuda_float16_host_arrays(reduction):
    rng = np.random.default_rng(2)
    labels = random_labels(rng, 24, 5)
    S = (2 * unit_rows(rng, 24, 8) @ unit_rows(rng, 24, 8).T).astype(np.float16)
    w = (rng.random(24) + 0.5).astype(np.float16)
    loss, grad = npairs.npairs_loss(labels, S, w, reduction=reduction, temperature=0.5, backend="cuda",
                                    return_grad=True)
    assert np.asarray(loss).dtype == np.float16 and grad.dtype == np.float16
    e_loss, e_dS, _, _ = loss_and_grads(targets_from_labels(labels), S=S, temperature=0.5, weights=w,
                                        reduction=reduction)
    assert_close(loss, e_loss, RTOL["float16"])
    assert_close(grad, e_dS, RTOL["float16"])


@torch_cuda
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_cuda_torch_similarity(dtype, reduction):
    rng = np.random.default_rng(3)
    labels = random_labels(rng, 32, 6)
    column_labels = random_labels(rng, 40, 6)
    labels[:6] = column_labels[:6] = np.arange(6)  # every row has a positive column
    S = torch.tensor(2 * unit_rows(rng, 32, 8) @ unit_rows(rng, 40, 8).T, device="cuda").to(getattr(torch, dtype))
    loss, grad = npairs.npairs_loss(torch.tensor(labels, device="cuda"), S, reduction=reduction, temperature=0.5,
                                    column_labels=torch.tensor(column_labels, device="cuda"), return_grad=True)
    assert loss.dtype == S.dtype and grad.dtype == S.dtype and grad.is_cuda
    e_loss, e_dS, _, _ = loss_and_grads(targets_from_labels(labels, column_labels), S=S.double().cpu().numpy(),
                                        temperature=0.5, reduction=reduction)
    assert_close(loss, e_loss, RTOL[dtype])
    assert_close(grad, e_dS, RTOL[dtype])


@torch_cuda
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_torch_embeddings_autograd(dtype):
    import npairs.torch as nt

    rng = np.random.default_rng(4)
    labels = random_labels(rng, 48, 8)
    A = torch.tensor(unit_rows(rng, 48, 16), device="cuda").to(getattr(torch, dtype)).requires_grad_()
    P = torch.tensor(unit_rows(rng, 48, 16), device="cuda").to(getattr(torch, dtype)).requires_grad_()
    loss = nt.NpairsEmbeddingsLoss(reg_lambda=0.01, temperature=0.25)(torch.tensor(labels, device="cuda"), A, P)
    loss.backward()
    assert loss.dtype == A.dtype and A.grad.dtype == A.dtype and P.grad.dtype == A.dtype
    a, p = A.detach().double().cpu().numpy(), P.detach().double().cpu().numpy()
    e_loss, _, e_dA, e_dP = loss_and_grads(targets_from_labels(labels), A=a, P=p, temperature=0.25, reg_lambda=0.01)
    assert_close(loss, e_loss, RTOL[dtype])
    assert_close(A.grad, e_dA, RTOL[dtype])
    assert_close(P.grad, e_dP, RTOL[dtype])
