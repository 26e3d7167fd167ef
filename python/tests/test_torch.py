"""npairs.torch: modules against an eager PyTorch formulation, and gradcheck."""

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
F = torch.nn.functional

import numpy as np  # noqa: E402

import npairs  # noqa: E402
import npairs.torch as nt  # noqa: E402
from npairs_reference import assert_matches  # noqa: E402

REDUCTIONS = ("none", "sum", "sum_over_batch_size")


def label_matches(labels, column_labels, multilabel, dtype):
    """G_ij = [l_i == c_j], or Y Y'^T of multi-hot rows (not normalised); the columns' labels default to the rows'."""
    cols = labels if column_labels is None else column_labels
    if multilabel:
        return labels.to(dtype) @ cols.to(dtype).T
    return (labels.reshape(-1, 1) == cols.reshape(1, -1)).to(dtype)


def eager(labels, a, b, *, tau=1.0, weight=None, reduction="sum_over_batch_size", reg_lambda=0.0,
          column_labels=None, multilabel=False):
    """logits = a @ b.T / tau; soft-target cross-entropy against the row-normalised label-equality matrix."""
    logits = a @ b.T / tau
    T = label_matches(labels, column_labels, multilabel, logits.dtype)
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


def match(got, expected, dtype=torch.float64):
    """The project's tolerances (float32 1e-5, float64 1e-12 relative; see assert_matches)."""
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert_matches(got.detach().cpu().double().numpy(), expected.detach().cpu().double().numpy(),
                   np.float32 if dtype == torch.float32 else np.float64)


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
    match(ours, ref.detach(), dtype)
    up = torch.randn(ours.shape, dtype=dtype)
    ours.backward(up)
    ref.backward(up)
    match(S1.grad, S2.grad, dtype)


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
    match(ours, ref.detach(), dtype)
    up = torch.randn(ours.shape, dtype=dtype)
    ours.backward(up)
    ref.backward(up)
    match(a1.grad, a2.grad, dtype)
    match(b1.grad, b2.grad, dtype)


def test_multilabel_module_matches_eager():
    labels, a, b, w = make(seed=3, multilabel=True)
    S1 = (a @ b.T).requires_grad_()
    S2 = S1.detach().clone().requires_grad_()
    ours = nt.NpairsMultilabelLoss(reduction="sum")(labels, S1, w)
    ref = eager(labels, S2, torch.eye(S2.shape[1], dtype=S2.dtype), weight=w, reduction="sum", multilabel=True)
    match(ours, ref.detach())
    ours.backward()
    ref.backward()
    match(S1.grad, S2.grad)


def test_column_labels():
    g = torch.Generator().manual_seed(4)
    col = torch.randint(0, 3, (9,), generator=g)
    labels = col[torch.randint(0, 9, (5,), generator=g)]
    a = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    ours = nt.NpairsEmbeddingsLoss(reg_lambda=0.1)(labels, a, b, column_labels=col)
    ref = eager(labels, a, b, reg_lambda=0.1, column_labels=col)
    match(ours, ref)


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
    match(nt.NpairsLoss()(labels, S, 0.5), 0.5 * nt.NpairsLoss()(labels, S))


def test_functional_api_returns_torch_tensors():
    labels, a, b, _ = make(seed=10, dtype=torch.float32)
    S = a @ b.T
    loss, grad = npairs.npairs_loss(labels, S, return_grad=True)
    assert isinstance(loss, torch.Tensor) and isinstance(grad, torch.Tensor)
    assert loss.dtype == torch.float32 and grad.shape == S.shape
    ref = npairs.npairs_loss(labels.numpy(), S.numpy())
    assert_matches(loss.item(), ref, np.float32)


def test_errors_surface_as_npairs_errors():
    labels, a, b, _ = make(seed=11)
    with pytest.raises(npairs.InvalidArgumentError, match="labels"):
        nt.NpairsLoss()(labels[:3], a @ b.T)
    with pytest.raises(npairs.InvalidArgumentError, match="reg_lambda"):
        nt.NpairsEmbeddingsLoss(reg_lambda=0.002, reduction="none")
    with pytest.raises(npairs.InvalidDTypeError, match="similarity"):
        nt.NpairsLoss()(labels, (a @ b.T).to(torch.complex64))


def test_module_repr():
    assert "temperature=0.5" in repr(nt.NpairsLoss(temperature=0.5))
    assert "reg_lambda=0.0," in repr(nt.NpairsEmbeddingsLoss())  # no L2 term unless asked for
    assert "reg_lambda=0.002" in repr(nt.NpairsEmbeddingsLoss(reg_lambda=0.002))


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
        match(g, c)


@cuda
def test_cuda_on_a_side_stream():
    labels, a, b, _ = make(R=64, D=32, seed=13, dtype=torch.float32)
    S = (a @ b.T).cuda()
    expected = nt.NpairsLoss()(labels.cuda(), S)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = nt.NpairsLoss()(labels.cuda(), S)
    stream.synchronize()
    match(got, expected, torch.float32)


@cuda
def test_cuda_host_labels_are_staged():
    labels, a, b, _ = make(R=9, seed=14)
    S = (a @ b.T).cuda()
    match(nt.NpairsLoss()(labels, S).cpu(), nt.NpairsLoss()(labels, S.cpu()))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_non_tensor_labels_and_weights(reduction):
    labels, a, b, w = make(seed=15)
    S1 = (a @ b.T).requires_grad_()
    S2 = S1.detach().clone().requires_grad_()
    ours = nt.NpairsLoss(reduction=reduction)(labels.numpy(), S1, 0.5)
    ref = nt.NpairsLoss(reduction=reduction)(labels, S2, torch.full((S2.shape[0],), 0.5, dtype=S2.dtype))
    match(ours, ref)
    ours.sum().backward()
    ref.sum().backward()
    match(S1.grad, S2.grad)


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
    match(sim.grad, 2 * first)
    (3 * loss).backward()
    match(sim.grad, 5 * first)


# ---------------------------------------------------------------------------
# Double backward: refused with a clear error, never a silently dropped term


def test_gradient_penalty_raises_where_plain_pytorch_has_a_second_order_term():
    g = torch.Generator().manual_seed(17)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    x = torch.randn(6, 5, dtype=torch.float64, generator=g).requires_grad_()
    W = torch.randn(4, 5, dtype=torch.float64, generator=g).requires_grad_()

    def penalty(loss_of_similarity):
        emb = x @ W.T
        loss = loss_of_similarity(emb @ emb.T)
        (dx,) = torch.autograd.grad(loss, x, create_graph=True)
        return dx.pow(2).sum()

    # In plain PyTorch the penalty reaches W through dL/dS as well: that is the term that was dropped.
    (plain,) = torch.autograd.grad(penalty(lambda s: eager(labels, s, torch.eye(6, dtype=s.dtype))), W)
    assert plain.abs().max() > 0
    with pytest.raises(npairs.UnsupportedError, match="double backward.*create_graph=True"):
        penalty(lambda s: nt.NpairsLoss()(labels, s))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_double_backward_through_a_matmul_raises(reduction, weighted):
    labels, a, b, w = make(R=6, seed=18)
    a.requires_grad_()
    b.requires_grad_()
    w.requires_grad_(weighted)
    loss = nt.NpairsLoss(reduction=reduction)(labels, a @ b.T, w).sum()
    with pytest.raises(npairs.UnsupportedError, match="double backward"):
        torch.autograd.grad(loss, a, create_graph=True)
    with pytest.raises(npairs.UnsupportedError, match="double backward"):
        torch.autograd.gradgradcheck(lambda a, b: nt.npairs_embeddings_loss(labels, a, b, reduction=reduction).sum(),
                                     (a, b))
    (first,) = torch.autograd.grad(nt.NpairsLoss(reduction=reduction)(labels, a @ b.T, w).sum(), a)  # no graph: fine
    assert first.grad_fn is None


# ---------------------------------------------------------------------------
# The top-level (NumPy-style) API given tensors that require grad


def test_top_level_api_hands_autograd_tensors_to_npairs_torch():
    labels, a, b, w = make(seed=19, multilabel=False)
    multi = make(seed=19, multilabel=True)[0]
    cases = [
        (lambda s, x, y: npairs.NpairsLoss(temperature=0.7)(labels, s, w),
         lambda s, x, y: nt.NpairsLoss(0.7)(labels, s, w)),
        (lambda s, x, y: npairs.npairs_loss(labels, s, reduction="sum"),
         lambda s, x, y: nt.npairs_loss(labels, s, reduction="sum")),
        (lambda s, x, y: npairs.NpairsMultilabelLoss()(multi, s), lambda s, x, y: nt.NpairsMultilabelLoss()(multi, s)),
        (lambda s, x, y: npairs.NpairsEmbeddingsLoss(reg_lambda=0.01)(labels, x, y),
         lambda s, x, y: nt.NpairsEmbeddingsLoss(reg_lambda=0.01)(labels, x, y)),
    ]
    for top, ours in cases:
        results = []
        for fn in (top, ours):
            x, y = a.clone().requires_grad_(), b.clone().requires_grad_()
            s = x @ y.T
            loss = fn(s, x, y)
            assert loss.grad_fn is not None
            loss.backward()
            results.append((loss.detach(), x.grad, y.grad))
        for got, expected in zip(*results):
            assert torch.equal(got, expected)
    with torch.no_grad():
        assert npairs.NpairsLoss()(labels, (a @ b.T).requires_grad_()).grad_fn is None


# ---------------------------------------------------------------------------
# Threads, library calls, copies


def test_cpu_threads_follow_torch(thread_settings):
    labels, a, b, _ = make(seed=20)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            nt.NpairsLoss()(labels, a @ b.T)
            assert thread_settings[-1] == threads
        nt.npairs_loss(labels, a @ b.T, threads=3)
        assert thread_settings[-1] == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("inputs", ["similarity", "embeddings"])
@pytest.mark.parametrize("weight", ["none", "constant", "requires_grad"])
def test_one_library_call_per_step(library_calls, reduction, inputs, weight):
    labels, a, b, w = make(seed=21)
    reg = 0.05 if inputs == "embeddings" and reduction != "none" else 0.0
    a1, b1 = a.clone().requires_grad_(), b.clone().requires_grad_()
    a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    w1, w2 = (None, None) if weight == "none" else (w.clone().requires_grad_(weight == "requires_grad"),
                                                     w.clone().requires_grad_(weight == "requires_grad"))
    if inputs == "similarity":
        ours = nt.NpairsLoss(temperature=0.6, reduction=reduction)(labels, a1 @ b1.T, w1)
        ref = eager(labels, a2 @ b2.T, torch.eye(b2.shape[0], dtype=a.dtype), tau=0.6, weight=w2, reduction=reduction)
    else:
        ours = nt.NpairsEmbeddingsLoss(reg_lambda=reg, temperature=0.6, reduction=reduction)(labels, a1, b1, w1)
        ref = eager(labels, a2, b2, tau=0.6, weight=w2, reduction=reduction, reg_lambda=reg)
    up = torch.randn(ours.shape, dtype=ours.dtype, generator=torch.Generator().manual_seed(22))
    ours.backward(up)
    ref.backward(up)
    assert len(library_calls) == 1  # backward, and dL/dw, never call the library again
    match(ours, ref.detach())
    match(a1.grad, a2.grad)
    match(b1.grad, b2.grad)
    if weight == "requires_grad":
        match(w1.grad, w2.grad)


def test_contiguous_inputs_reach_the_library_uncopied(library_calls):
    labels, a, b, w = make(seed=23, dtype=torch.float32)
    S = (a @ b.T).requires_grad_()
    nt.NpairsLoss()(labels, S, w).backward()
    nt.NpairsEmbeddingsLoss()(labels, a.requires_grad_(), b.requires_grad_(), w).backward()
    Sn, ln, wn = S.detach().numpy(), labels.numpy(), w.numpy()
    npairs.npairs_loss(ln, Sn, wn)
    sim, emb, host = (c.problem for c in library_calls)
    assert (sim.similarity, sim.labels, sim.sample_weight) == (S.data_ptr(), labels.data_ptr(), w.data_ptr())
    assert (emb.anchors, emb.positives, emb.labels) == (a.data_ptr(), b.data_ptr(), labels.data_ptr())
    assert (host.similarity, host.labels, host.sample_weight) == (Sn.ctypes.data, ln.ctypes.data, wn.ctypes.data)


def test_non_contiguous_tensors_are_copied_by_torch(library_calls, monkeypatch):
    labels, a, b, _ = make(seed=24)
    S = (a @ b.T).T.requires_grad_()  # a transposed view
    expected = nt.NpairsLoss()(labels, S.detach().contiguous())

    def no_numpy(*args, **kwargs):
        raise AssertionError("a torch tensor was converted through NumPy")

    for name in ("asarray", "ascontiguousarray", "array"):
        monkeypatch.setattr(np, name, no_numpy)
    loss = nt.NpairsLoss()(labels, S)
    loss.backward()
    monkeypatch.undo()
    assert library_calls[-1].problem.similarity != S.data_ptr()
    assert torch.equal(loss, expected)
    assert S.grad.shape == S.shape


def test_meta_tensors_are_named():
    labels = torch.tensor([0, 0, 1, 1])
    with pytest.raises(npairs.InvalidArgumentError, match="similarity is a meta tensor"):
        nt.NpairsLoss()(labels, torch.empty(4, 4, device="meta"))
    with pytest.raises(npairs.InvalidArgumentError, match="anchors is a meta tensor"):
        nt.NpairsEmbeddingsLoss()(labels, torch.empty(4, 3, device="meta"), torch.ones(4, 3))


def test_labels_none_is_named():
    with pytest.raises(npairs.InvalidArgumentError, match="labels is None"):
        nt.NpairsLoss()(None, torch.eye(4))
    with pytest.raises(npairs.InvalidArgumentError, match="multilabels is None"):
        nt.NpairsMultilabelLoss()(None, torch.eye(4))
    with pytest.raises(npairs.InvalidArgumentError, match="similarity is None"):
        nt.NpairsLoss()(torch.tensor([0, 0, 1, 1]), None)


def test_multilabel_column_targets_are_named():
    with pytest.raises(npairs.InvalidArgumentError, match="column_multilabels"):
        nt.NpairsMultilabelLoss()(torch.eye(4), torch.ones(4, 5))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_16_bit_computes_in_float32(dtype):
    labels, a, b, _ = make(R=12, seed=25, dtype=torch.float32)
    x, y = a.to(dtype).requires_grad_(), b.to(dtype).requires_grad_()
    loss = nt.NpairsEmbeddingsLoss(temperature=0.5)(labels, x, y)
    loss.backward()
    x32, y32 = x.detach().float().requires_grad_(), y.detach().float().requires_grad_()
    loss32 = nt.NpairsEmbeddingsLoss(temperature=0.5)(labels, x32, y32)
    loss32.backward()
    assert loss.dtype == dtype and x.grad.dtype == dtype and y.grad.dtype == dtype
    assert torch.equal(loss, loss32.to(dtype))
    assert torch.equal(x.grad, x32.grad.to(dtype)) and torch.equal(y.grad, y32.grad.to(dtype))


def test_cpu_autocast_bfloat16_trains():
    labels, a, b, _ = make(R=12, seed=26, dtype=torch.float32)
    layer = torch.nn.Linear(a.shape[1], 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ea, eb = layer(a), layer(b)
        loss = nt.NpairsLoss()(labels, ea @ eb.T)
    assert ea.dtype == torch.bfloat16 and loss.dtype == torch.bfloat16
    loss.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


# ---------------------------------------------------------------------------
# The README's recipes


def test_recipe_pytorch_metric_learning():
    g = torch.Generator().manual_seed(27)
    lab = torch.arange(6).repeat_interleave(2)[torch.tensor([2, 3, 0, 1, 10, 11, 4, 5, 8, 9, 6, 7])]
    emb = torch.randn(12, 5, dtype=torch.float64, generator=g)
    ours = nt.NpairsEmbeddingsLoss()(lab[0::2], F.normalize(emb[0::2]), F.normalize(emb[1::2]))
    # pytorch_metric_learning's NPairsLoss on such a batch: normalised dot products of its
    # positive pairs, cross-entropy against the pairs' identity.
    a, p = F.normalize(emb[0::2]), F.normalize(emb[1::2])
    match(ours, F.cross_entropy(a @ p.T, torch.arange(6)))


def test_recipe_open_clip():
    """python/README.md's recipe: ClipLoss with open_clip's call (the model's log scale, exponentiated)."""
    g = torch.Generator().manual_seed(28)
    image = F.normalize(torch.randn(7, 4, dtype=torch.float64, generator=g)).requires_grad_()
    text = F.normalize(torch.randn(7, 4, dtype=torch.float64, generator=g)).requires_grad_()
    model_logit_scale = torch.tensor(np.log(14.3), dtype=torch.float64, requires_grad=True)
    ours = nt.ClipLoss()(image, text, model_logit_scale.exp())
    grads = torch.autograd.grad(ours, (image, text, model_logit_scale))
    logits = model_logit_scale.exp() * image @ text.T
    labels = torch.arange(7)
    ref = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2  # open_clip's ClipLoss
    match(ours, ref.detach())
    for got, expected in zip(grads, torch.autograd.grad(ref, (image, text, model_logit_scale))):
        match(got, expected)


@pytest.mark.parametrize("inputs", ["similarity", "embeddings"])
@pytest.mark.parametrize("weighted", [False, True])
def test_none_reduction_backward_twice_through_a_retained_graph(inputs, weighted):
    labels, a, b, w = make(seed=29)
    w.requires_grad_(weighted)
    a1, b1 = a.clone().requires_grad_(), b.clone().requires_grad_()
    a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
    if inputs == "similarity":
        ours = nt.NpairsLoss(reduction="none")(labels, a1 @ b1.T, w)
        ref = eager(labels, a2 @ b2.T, torch.eye(b.shape[0], dtype=a.dtype), weight=w, reduction="none")
    else:
        ours = nt.NpairsEmbeddingsLoss(reduction="none")(labels, a1, b1, w)
        ref = eager(labels, a2, b2, weight=w, reduction="none")
    gen = torch.Generator().manual_seed(30)
    for _ in range(2):  # different upstream gradients; the second backward cannot reuse the first's buffer
        up = torch.randn(ours.shape, dtype=ours.dtype, generator=gen)
        ours.backward(up, retain_graph=True)
        ref.backward(up, retain_graph=True)
        match(a1.grad, a2.grad)
        match(b1.grad, b2.grad)
