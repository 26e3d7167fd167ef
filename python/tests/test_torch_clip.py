"""CLIP's loss through npairs.torch: symmetric=True, a temperature tensor that requires grad, ClipLoss.

Against plain PyTorch (open_clip's formula, and test_torch's soft-target
cross-entropy over rows and columns), gradcheck (finite differences, the
temperature included), and the errors raised before the library call.
"""

import math

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
F = torch.nn.functional

import npairs  # noqa: E402
import npairs.torch as nt  # noqa: E402
from test_torch import label_matches, make, match  # noqa: E402

needs_custom_op = pytest.mark.skipif(
    nt._torch_ops is None,
    reason=f"PyTorch {torch.__version__} has no torch.library.custom_op (2.4+): the compiled path is not there",
)


def open_clip_loss(image, text, logit_scale, labels=None):
    """open_clip's ClipLoss (one device): (cross_entropy(S, arange) + cross_entropy(S.T, arange)) / 2."""
    logits = logit_scale * image @ text.T
    labels = torch.arange(image.shape[0]) if labels is None else labels
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def symmetric_eager(labels, a, b, *, tau, reduction="sum_over_batch_size", multilabel=False, column_labels=None):
    """Rows' and columns' soft-target cross-entropies of a @ b.T / tau, averaged (SPEC section 5), plain PyTorch."""
    logits = a @ b.T / tau
    G = label_matches(labels, column_labels, multilabel, logits.dtype)
    rows = F.cross_entropy(logits, G / G.sum(1, keepdim=True), reduction="none")
    columns = F.cross_entropy(logits.T, (G / G.sum(0, keepdim=True)).T, reduction="none")
    if reduction == "sum":
        return (rows.sum() + columns.sum()) / 2
    return (rows.mean() + columns.mean()) / 2


def features(R=9, D=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(R, D, generator=g, dtype=dtype))
    text = F.normalize(torch.randn(R, D, generator=g, dtype=dtype))
    return image, text


def leaves(*xs):
    return [x.detach().clone().requires_grad_() for x in xs]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("logit_scale", ["module", "given"])
def test_clip_loss_equals_open_clip(dtype, logit_scale):
    image, text = features(dtype=dtype, seed=1)
    module = nt.ClipLoss(logit_scale=14.3).to(dtype)  # its parameter in the features' dtype
    i1, t1 = leaves(image, text)
    i2, t2 = leaves(image, text)
    if logit_scale == "module":
        ours = module(i1, t1)
        scale_param = module.logit_scale
    else:  # open_clip's call: the model's logit_scale parameter, exponentiated
        scale_param = torch.tensor(math.log(14.3), dtype=dtype, requires_grad=True)
        ours = module(i1, t1, scale_param.exp())
    log_scale = scale_param.detach().clone().requires_grad_()
    ref = open_clip_loss(i2, t2, log_scale.exp())
    match(ours, ref.detach().to(ours.dtype), dtype)
    ours.backward()
    ref.backward()
    match(i1.grad, i2.grad, dtype)
    match(t1.grad, t2.grad, dtype)
    match(scale_param.grad, log_scale.grad, scale_param.dtype)  # the parameter's own dtype


def test_clip_loss_fixed_scale_and_labels():
    image, text = features(R=8, seed=2)
    labels = torch.tensor([0, 1, 2, 2, 3, 4, 5, 6])  # a duplicated text: two positives for images 2 and 3
    module = nt.ClipLoss(logit_scale=20.0, learnable=False).double()
    assert not list(module.parameters()) and "logit_scale" in dict(module.named_buffers())
    i1, t1 = leaves(image, text)
    i2, t2 = leaves(image, text)
    ours = module(i1, t1, labels=labels)
    ref = symmetric_eager(labels, i2, t2, tau=1 / module.logit_scale.exp())  # 20, as the buffer holds it
    match(ours, ref.detach())
    ours.backward()
    ref.backward()
    match(i1.grad, i2.grad)
    match(t1.grad, t2.grad)
    assert "logit_scale=20" in repr(module)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduction", ["sum", "sum_over_batch_size"])
@pytest.mark.parametrize("inputs", ["similarity", "embeddings", "multilabel"])
def test_symmetric_matches_eager_with_a_learnable_temperature(dtype, reduction, inputs):
    labels, a, b, _ = make(R=10, M=10, dtype=dtype, seed=3, multilabel=inputs == "multilabel")
    tau = torch.tensor(0.6, dtype=dtype)
    a1, b1, tau1 = leaves(a, b, tau)
    a2, b2, tau2 = leaves(a, b, tau)
    kw = dict(reduction=reduction, symmetric=True)
    if inputs == "embeddings":
        ours = nt.npairs_embeddings_loss(labels, a1, b1, temperature=tau1, **kw)
    elif inputs == "similarity":
        ours = nt.NpairsLoss(temperature=tau1, **kw)(labels, a1 @ b1.T)
    else:
        ours = nt.npairs_multilabel_loss(labels, a1 @ b1.T, temperature=tau1, **kw)
    ref = symmetric_eager(labels, a2, b2, tau=tau2, reduction=reduction, multilabel=inputs == "multilabel")
    match(ours, ref.detach(), dtype)
    ours.backward()
    ref.backward()
    for got, expected in ((a1.grad, a2.grad), (b1.grad, b2.grad), (tau1.grad, tau2.grad)):
        match(got, expected, dtype)


@pytest.mark.parametrize("weighted", [False, True])
def test_row_loss_with_a_learnable_temperature(weighted):
    """Not symmetric: dL/dtau of the rows' loss, with weights that require grad too (their path's call)."""
    labels, a, b, w = make(R=11, M=7, seed=4)
    columns = labels[torch.arange(7)]
    tau = torch.tensor(1.4, dtype=torch.float64)
    a1, b1, tau1, w1 = leaves(a, b, tau, w)
    a2, b2, tau2, w2 = leaves(a, b, tau, w)
    ours = nt.npairs_embeddings_loss(labels, a1, b1, w1 if weighted else None, column_labels=columns,
                                     temperature=tau1, reg_lambda=0.02)
    logits = a2 @ b2.T / tau2
    T = (labels.reshape(-1, 1) == columns.reshape(1, -1)).double()
    rows = F.cross_entropy(logits, T / T.sum(1, keepdim=True), reduction="none")
    ref = (rows * w2).mean() if weighted else rows.mean()
    ref = ref + 0.25 * 0.02 * ((a2 * a2).sum(1).mean() + (b2 * b2).sum(1).mean())
    match(ours, ref.detach())
    ours.backward()
    ref.backward()
    for got, expected in ((a1.grad, a2.grad), (b1.grad, b2.grad), (tau1.grad, tau2.grad)):
        match(got, expected)
    if weighted:
        match(w1.grad, w2.grad)


@pytest.mark.parametrize("symmetric", [False, True])
def test_gradcheck_with_the_temperature(symmetric):
    labels, a, b, _ = make(R=6, D=4, seed=5)
    tau = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    S = (a @ b.T).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda s, t: nt.npairs_loss(labels, s, temperature=t, symmetric=symmetric, reduction="sum"), (S, tau))
    a, b = a.requires_grad_(), b.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, y, t: nt.npairs_embeddings_loss(labels, x, y, temperature=t, symmetric=symmetric), (a, b, tau))


def test_one_library_call_per_step_and_the_temperature_pointer(library_calls):
    image, text = features(R=7, seed=6)
    i1, t1 = leaves(image, text)
    module = nt.ClipLoss()
    module(i1, t1).backward()
    assert len(library_calls) == 1  # loss, dL/dA, dL/dP and dL/dtau in the one forward call
    (call,) = library_calls
    assert call.problem.anchors == i1.data_ptr() and call.problem.positives == t1.data_ptr()
    assert call.grads.anchors and call.grads.positives and call.grads.temperature
    assert call.options.temperature == pytest.approx(0.07)


def test_a_temperature_that_needs_no_grad_is_not_differentiated(library_calls):
    labels, a, b, _ = make(R=6, seed=7)
    S = (a @ b.T).requires_grad_()
    loss = nt.npairs_loss(labels, S, temperature=torch.tensor(0.5, dtype=torch.float64))
    loss.backward()
    assert library_calls[0].grads.temperature is None and library_calls[0].options.temperature == 0.5
    assert torch.equal(loss, nt.npairs_loss(labels, S.detach(), temperature=0.5))


def test_an_nn_parameter_temperature_is_the_modules_parameter():
    tau = torch.nn.Parameter(torch.tensor(0.9, dtype=torch.float64))
    module = nt.NpairsEmbeddingsLoss(temperature=tau, symmetric=True)
    assert list(module.parameters()) == [tau] and "temperature=tensor" in repr(module)
    labels, a, b, _ = make(R=6, seed=8)
    module(labels, a, b).backward()
    expected = leaves(tau)[0]
    symmetric_eager(labels, a, b, tau=expected).backward()
    match(tau.grad, expected.grad)


# ---------------------------------------------------------------------------
# Bad input: raised before the library call


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), float("inf")])
def test_a_temperature_tensor_must_be_positive_and_finite(library_calls, value):
    labels, a, b, _ = make(R=5, seed=9)
    with pytest.raises(npairs.InvalidArgumentError, match="temperature must be finite and greater than 0"):
        nt.npairs_loss(labels, a @ b.T, temperature=torch.tensor(value, requires_grad=True))
    assert not library_calls


@pytest.mark.parametrize("tau", [torch.ones(2), torch.ones(1, 1), torch.tensor(1)])
def test_a_temperature_tensor_must_be_one_floating_value(library_calls, tau):
    labels, a, b, _ = make(R=5, seed=10)
    with pytest.raises(npairs.InvalidArgumentError, match="temperature must be a number or a floating tensor"):
        nt.npairs_embeddings_loss(labels, a, b, temperature=tau)
    assert not library_calls


def test_symmetric_errors_are_raised_before_the_call(library_calls):
    labels, a, b, w = make(R=5, seed=11)
    with pytest.raises(npairs.InvalidArgumentError, match="symmetric=True needs a scalar reduction"):
        nt.NpairsLoss(reduction="none", symmetric=True)
    with pytest.raises(npairs.InvalidArgumentError, match="symmetric=True takes no sample_weight"):
        nt.npairs_loss(labels, a @ b.T, w, symmetric=True)
    with pytest.raises(npairs.UnsupportedError, match="a temperature that requires grad needs a scalar reduction"):
        nt.npairs_loss(labels, a @ b.T, reduction="none", temperature=torch.tensor(0.5, requires_grad=True))
    assert not library_calls


# ---------------------------------------------------------------------------
# torch.compile (the custom op)


@needs_custom_op
@pytest.mark.parametrize("dynamic", [False, True])
def test_clip_loss_compiles_without_a_graph_break(dynamic):
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    module = nt.ClipLoss(logit_scale=10.0).double()
    compiled = torch.compile(module, fullgraph=True, dynamic=dynamic, backend=counter)
    for R, seed in ((9, 12), (13, 13)):
        image, text = features(R=R, seed=seed)
        i1, t1 = leaves(image, text)
        i2, t2 = leaves(image, text)
        module.zero_grad()
        ours = compiled(i1, t1)
        ours.backward()
        scale_grad = module.logit_scale.grad.clone()
        log_scale = module.logit_scale.detach().clone().requires_grad_()
        ref = open_clip_loss(i2, t2, log_scale.exp())
        ref.backward()
        match(ours, ref.detach())
        match(i1.grad, i2.grad)
        match(t1.grad, t2.grad)
        match(scale_grad, log_scale.grad)
    assert counter.frame_count > 0


@needs_custom_op
@pytest.mark.parametrize("symmetric,need_temperature", [(True, True), (True, False), (False, True)])
def test_opcheck_with_symmetric_and_a_temperature_tensor(symmetric, need_temperature):
    labels, a, b, _ = make(R=7, D=4, seed=14)
    tau = torch.tensor(0.9, dtype=torch.float64, requires_grad=need_temperature)
    args = (labels, None, None, None, a.requires_grad_(), b.requires_grad_(), tau, False, True,
            "sum_over_batch_size", 1.0, 0.0, "auto", -1, -1, symmetric, False, True, True, False, need_temperature)
    results = torch.library.opcheck(torch.ops.npairs.loss.default, args)
    assert results and all(v == "SUCCESS" for v in results.values()), results
