"""npairs.torch: modules against an eager PyTorch formulation, and gradcheck."""

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
F = torch.nn.functional

import npairs  # noqa: E402
import npairs.torch as nt  # noqa: E402

REDUCTIONS = ("none", "sum", "sum_over_batch_size")


def eager(labels, a, b, *, tau=1.0, weight=None, reduction="sum_over_batch_size", reg_lambda=0.0,
          column_labels=None, multilabel=False):
    """logits = a @ b.T / tau; soft-target cross-entropy against the row-normalised label-equality matrix."""
    logits = a @ b.T / tau
    cols = labels if column_labels is None else column_labels
    if multilabel:
        T = labels.to(logits.dtype) @ cols.to(logits.dtype).T
    else:
        T = (labels.reshape(-1, 1) == cols.reshape(1, -1)).to(logits.dtype)
    T = T / T.sum(1, keepdim=True)
    rows = F.cross_entropy(logits, T, reduction="none")
    if weight is not None:
        rows = rows * weight
    if reduction == "none":
        return rows
    loss = rows.sum() if reduction == "sum" else rows.sum() / rows.shape[0]
    if reg_lambda:
        loss = loss + 0.25 * reg_lambda * ((a * a).sum(1).mean() + (b * b).sum(1).mean())
    return loss


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)


def make(R=11, M=None, D=6, classes=4, dtype=torch.float64, seed=0, multilabel=False):
    g = torch.Generator().manual_seed(seed)
    M = R if M is None else M
    if multilabel:
        labels = (torch.rand(R, classes, generator=g) < 0.4).to(dtype)
        labels[torch.arange(R), torch.randint(0, classes, (R,), generator=g)] = 1
    else:
        labels = torch.randint(0, classes, (R,), generator=g)
    a = torch.randn(R, D, generator=g, dtype=dtype)
    b = torch.randn(M, D, generator=g, dtype=dtype)
    w = torch.rand(R, generator=g, dtype=dtype) + 0.5
    return labels, a, b, w


def test_check_value():
    A = torch.tensor([[1.0, 1], [1, -1], [-1, 1], [-1, -1]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    loss = nt.NpairsLoss()(labels, A @ A.T)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and loss.dtype == torch.float64
    assert abs(loss.item() - 1.253856022085945) <= 1e-15
    assert abs(nt.NpairsEmbeddingsLoss(reg_lambda=0)(labels, A, A).item() - 1.253856022085945) <= 1e-15


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_similarity_module_matches_eager(dtype, reduction, weighted):
    labels, a, b, w = make(dtype=dtype, seed=1)
    tau = 0.5
    S1 = (a @ b.T).requires_grad_()
    S2 = S1.detach().clone().requires_grad_()
    weight = w if weighted else None
    ours = nt.NpairsLoss(temperature=tau, reduction=reduction)(labels, S1, weight)
    ref = eager(labels, S2, torch.eye(S2.shape[1], dtype=dtype), tau=tau, weight=weight, reduction=reduction)
    assert ours.dtype == dtype and ours.shape == ref.shape
    torch.testing.assert_close(ours, ref.detach(), **tol(dtype))
    up = torch.randn(ours.shape, dtype=dtype)
    ours.backward(up)
    ref.backward(up)
    torch.testing.assert_close(S1.grad, S2.grad, **tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("multilabel", [False, True])
def test_embeddings_module_matches_eager(dtype, reduction, multilabel):
    labels, a, b, w = make(dtype=dtype, seed=2, multilabel=multilabel)
    reg = 0.0 if reduction == "none" else 0.02
    a1, b1 = a.clone().requires_grad_(), b.clone().requires_grad_()
    a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    module = nt.NpairsEmbeddingsLoss(reg_lambda=reg, temperature=0.8, reduction=reduction, multilabel=multilabel)
    ours = module(labels, a1, b1, w)
    ref = eager(labels, a2, b2, tau=0.8, weight=w, reduction=reduction, reg_lambda=reg, multilabel=multilabel)
    torch.testing.assert_close(ours, ref.detach(), **tol(dtype))
    up = torch.randn(ours.shape, dtype=dtype)
    ours.backward(up)
    ref.backward(up)
    torch.testing.assert_close(a1.grad, a2.grad, **tol(dtype))
    torch.testing.assert_close(b1.grad, b2.grad, **tol(dtype))


def test_multilabel_module_matches_eager():
    labels, a, b, w = make(seed=3, multilabel=True)
    S1 = (a @ b.T).requires_grad_()
    S2 = S1.detach().clone().requires_grad_()
    ours = nt.NpairsMultilabelLoss(reduction="sum")(labels, S1, w)
    ref = eager(labels, S2, torch.eye(S2.shape[1], dtype=S2.dtype), weight=w, reduction="sum", multilabel=True)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-10, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(S1.grad, S2.grad, rtol=1e-10, atol=1e-12)


def test_column_labels():
    g = torch.Generator().manual_seed(4)
    col = torch.randint(0, 3, (9,), generator=g)
    labels = col[torch.randint(0, 9, (5,), generator=g)]
    a = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    ours = nt.NpairsEmbeddingsLoss(reg_lambda=0.1)(labels, a, b, column_labels=col)
    ref = eager(labels, a, b, reg_lambda=0.1, column_labels=col)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_similarity(reduction):
    labels, a, b, w = make(R=6, seed=5)
    S = (a @ b.T).requires_grad_()
    w = w.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda s, w: nt.npairs_loss(labels, s, w, reduction=reduction, temperature=0.7), (S, w))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_embeddings(reduction):
    g = torch.Generator().manual_seed(6)
    col = torch.randint(0, 3, (7,), generator=g)
    labels = col[torch.randint(0, 7, (5,), generator=g)]
    a = torch.randn(5, 3, dtype=torch.float64, generator=g).requires_grad_()
    b = torch.randn(7, 3, dtype=torch.float64, generator=g).requires_grad_()
    w = (torch.rand(5, dtype=torch.float64, generator=g) + 0.5).requires_grad_()
    reg = 0.0 if reduction == "none" else 0.3
    assert torch.autograd.gradcheck(
        lambda a, b, w: nt.npairs_embeddings_loss(labels, a, b, w, column_labels=col, reg_lambda=reg,
                                                  temperature=1.3, reduction=reduction), (a, b, w))


def test_gradcheck_multilabel():
    labels, a, b, _ = make(R=5, seed=7, multilabel=True)
    S = (a @ b.T).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: nt.npairs_multilabel_loss(labels, s, reduction="sum"), (S,))


def test_only_some_inputs_need_grad():
    labels, a, b, w = make(seed=8)
    b.requires_grad_()
    loss = nt.NpairsEmbeddingsLoss()(labels, a, b)
    loss.backward()
    assert a.grad is None and b.grad is not None
    with torch.no_grad():
        assert nt.NpairsLoss()(labels, a @ b.T).grad_fn is None


def test_scalar_sample_weight():
    labels, a, b, _ = make(seed=9)
    S = a @ b.T
    torch.testing.assert_close(nt.NpairsLoss()(labels, S, 0.5), 0.5 * nt.NpairsLoss()(labels, S))


def test_functional_api_returns_torch_tensors():
    labels, a, b, _ = make(seed=10, dtype=torch.float32)
    S = a @ b.T
    loss, grad = npairs.npairs_loss(labels, S, return_grad=True)
    assert isinstance(loss, torch.Tensor) and isinstance(grad, torch.Tensor)
    assert loss.dtype == torch.float32 and grad.shape == S.shape
    ref = npairs.npairs_loss(labels.numpy(), S.numpy())
    assert loss.item() == pytest.approx(float(ref), rel=1e-7)


def test_errors_surface_as_npairs_errors():
    labels, a, b, _ = make(seed=11)
    with pytest.raises(npairs.InvalidArgumentError, match="labels"):
        nt.NpairsLoss()(labels[:3], a @ b.T)
    with pytest.raises(npairs.InvalidArgumentError, match="reg_lambda"):
        nt.NpairsEmbeddingsLoss(reduction="none")
    with pytest.raises(npairs.InvalidDTypeError, match="similarity"):
        nt.NpairsLoss()(labels, (a @ b.T).to(torch.complex64))


def test_module_repr():
    assert "temperature=0.5" in repr(nt.NpairsLoss(temperature=0.5))
    assert "reg_lambda=0.002" in repr(nt.NpairsEmbeddingsLoss())


cuda = pytest.mark.skipif(not (torch.cuda.is_available() and npairs.backend_available("cuda")),
                          reason="needs a CUDA device and libnpairs built with CUDA")


@cuda
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cuda_matches_cpu(reduction):
    labels, a, b, w = make(R=37, D=16, seed=12)
    reg = 0.0 if reduction == "none" else 0.01
    results = []
    for device in ("cpu", "cuda"):
        x, y = a.to(device).requires_grad_(), b.to(device).requires_grad_()
        loss = nt.NpairsEmbeddingsLoss(reg_lambda=reg, reduction=reduction)(labels.to(device), x, y, w.to(device))
        assert loss.device.type == device
        loss.sum().backward()
        results.append([t.detach().cpu() for t in (loss, x.grad, y.grad)])
    for c, g in zip(*results):
        torch.testing.assert_close(g, c, rtol=1e-10, atol=1e-12)


@cuda
def test_cuda_on_a_side_stream():
    labels, a, b, _ = make(R=64, D=32, seed=13, dtype=torch.float32)
    S = (a @ b.T).cuda()
    expected = nt.NpairsLoss()(labels.cuda(), S)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = nt.NpairsLoss()(labels.cuda(), S)
    stream.synchronize()
    torch.testing.assert_close(got, expected)


@cuda
def test_cuda_host_labels_are_staged():
    labels, a, b, _ = make(R=9, seed=14)
    S = (a @ b.T).cuda()
    torch.testing.assert_close(nt.NpairsLoss()(labels, S).cpu(), nt.NpairsLoss()(labels, S.cpu()))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_non_tensor_labels_and_weights(reduction):
    labels, a, b, w = make(seed=15)
    S1 = (a @ b.T).requires_grad_()
    S2 = S1.detach().clone().requires_grad_()
    ours = nt.NpairsLoss(reduction=reduction)(labels.numpy(), S1, 0.5)
    ref = nt.NpairsLoss(reduction=reduction)(labels, S2, torch.full((S2.shape[0],), 0.5, dtype=S2.dtype))
    torch.testing.assert_close(ours, ref)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(S1.grad, S2.grad)


@pytest.mark.parametrize("shape", [(), (6, 1)])
@pytest.mark.parametrize("reduction", ["none", "sum_over_batch_size"])
def test_gradcheck_weight_shapes(shape, reduction):
    labels, a, b, _ = make(R=6, seed=16)
    S = (a @ b.T).requires_grad_()
    w = (torch.rand(shape, dtype=torch.float64) + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(lambda s, w: nt.npairs_loss(labels, s, w, reduction=reduction), (S, w))


def test_repeated_backward_accumulates_unchanged_gradients():
    # backward with grad_output 1 hands out the saved gradient itself: a second
    # backward through the retained graph must still see it unscaled and unmodified.
    labels, a, b, _ = make()
    sim = (a @ b.T).requires_grad_()
    loss = nt.NpairsLoss()(labels, sim)
    loss.backward(retain_graph=True)
    first = sim.grad.clone()
    loss.backward(retain_graph=True)
    torch.testing.assert_close(sim.grad, 2 * first)
    (3 * loss).backward()
    torch.testing.assert_close(sim.grad, 5 * first)
