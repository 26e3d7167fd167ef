"""torch.compile and CUDA graphs: npairs.torch's custom op (PyTorch >= 2.4) traced with no graph break.

Compiled results are compared with the eager npairs.torch call and with
test_torch's plain-PyTorch formula. Most cases compile with backend
"aot_eager" (dynamo and AOTAutograd, which is where a graph break or a
wrong fake kernel shows); one trains a module with inductor. The capture
hooks of the library call (reserve outside capture, deferred checks inside)
are checked on a CPU context, where the library accepts both; graph capture
itself needs a GPU.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")

import npairs  # noqa: E402
import npairs.torch as nt  # noqa: E402
from npairs import _core, _lib  # noqa: E402
from test_torch import eager, make, match  # noqa: E402

needs_custom_op = pytest.mark.skipif(
    nt._torch_ops is None,
    reason=f"PyTorch {torch.__version__} has no torch.library.custom_op (2.4+): npairs.torch uses its "
           "autograd.Function there, which torch.compile cannot trace",
)
cuda = pytest.mark.skipif(not (torch.cuda.is_available() and npairs.backend_available("cuda")),
                          reason="no CUDA device (or libnpairs built without CUDA)")


def losses(case, reduction, weight):
    """(loss of labels, a, b, w as npairs.torch computes it, the same as test_torch.eager computes it)."""
    reg = 0.01 if case.startswith("embeddings") and reduction != "none" else 0.0
    multilabel = "multilabel" in case
    kw = dict(temperature=0.7, reduction=reduction)
    ours = {
        "similarity": lambda y, a, b, w: nt.npairs_loss(y, a @ b.T, w, **kw),
        "similarity_module": lambda y, a, b, w: nt.NpairsLoss(**kw)(y, a @ b.T, w),
        "multilabel": lambda y, a, b, w: nt.npairs_multilabel_loss(y, a @ b.T, w, **kw),
        "multilabel_module": lambda y, a, b, w: nt.NpairsMultilabelLoss(**kw)(y, a @ b.T, w),
        "embeddings": lambda y, a, b, w: nt.npairs_embeddings_loss(y, a, b, w, reg_lambda=reg, **kw),
        "embeddings_module": lambda y, a, b, w: nt.NpairsEmbeddingsLoss(reg, **kw)(y, a, b, w),
        "embeddings_multilabel": lambda y, a, b, w: nt.NpairsEmbeddingsLoss(reg, multilabel=True, **kw)(y, a, b, w),
    }[case]

    def reference(y, a, b, w):
        weights = w if torch.is_tensor(w) else None if w is None else torch.full((a.shape[0],), float(w), dtype=a.dtype)
        return eager(y, a, b, tau=0.7, weight=weights, reduction=reduction, reg_lambda=reg, multilabel=multilabel)

    def scalar(fn):  # reduction 'none': an upstream gradient that is not all ones
        def loss(y, a, b, w):
            out = fn(y, a, b, w)
            return (out * torch.linspace(0.5, 1.5, out.shape[0], dtype=out.dtype)).sum() if out.ndim else out
        return loss

    return scalar(ours), scalar(reference)


def inputs(case, weight, R=11, M=None, D=6, seed=0):
    labels, a, b, w = make(R=R, M=M, D=D, seed=seed, multilabel="multilabel" in case)
    return labels, a, b, {"requires_grad": w, "none": None, "number": 2.0}[weight]


def step(fn, labels, a, b, w):
    """The loss and the gradients of a, b (and of w when it is a tensor) after one backward."""
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    w = w.clone().requires_grad_() if torch.is_tensor(w) else w
    loss = fn(labels, a, b, w)
    loss.backward()
    return [loss.detach(), a.grad, b.grad] + ([w.grad] if torch.is_tensor(w) else [])


def counting(backend="aot_eager"):
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    return CompileCounterWithBackend(backend)


CASES = ("similarity", "similarity_module", "multilabel", "multilabel_module", "embeddings", "embeddings_module",
         "embeddings_multilabel")
SETTINGS = (("none", "requires_grad"), ("sum_over_batch_size", "none"), ("sum", "number"))


@needs_custom_op
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("reduction,weight", SETTINGS)
def test_fullgraph_compile_gives_the_eager_numbers(case, reduction, weight):
    ours, reference = losses(case, reduction, weight)
    data = inputs(case, weight)
    counter = counting()
    compiled = step(torch.compile(ours, fullgraph=True, backend=counter), *data)  # fullgraph: a break raises
    assert counter.frame_count > 0
    for got, expected, independent in zip(compiled, step(ours, *data), step(reference, *data)):
        match(got, expected)
        match(got, independent)


@needs_custom_op
@pytest.mark.parametrize("case", ["similarity_module", "multilabel", "embeddings_module"])
def test_dynamic_shapes_compile_once(case):
    ours, reference = losses(case, "sum_over_batch_size", "number")
    counter = counting()
    compiled = torch.compile(ours, fullgraph=True, dynamic=True, backend=counter)
    compiles = []
    for R, D, seed in ((11, 6, 1), (17, 9, 2)):
        data = inputs(case, "number", R=R, D=D, seed=seed)
        for got, expected, independent in zip(step(compiled, *data), step(ours, *data), step(reference, *data)):
            match(got, expected)
            match(got, independent)
        compiles.append(counter.frame_count)
    assert compiles[0] > 0 and compiles[1] == compiles[0]  # the second size reused the first graph


@needs_custom_op
def test_no_graph_break_by_explain():
    labels, a, b, w = make(seed=3)

    def fn(labels, a, b, w):
        return nt.npairs_loss(labels, a @ b.T, w) + nt.npairs_embeddings_loss(labels, a, b, reg_lambda=0.002)

    explanation = torch._dynamo.explain(fn)(labels, a.requires_grad_(), b.requires_grad_(), w)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def op_arguments(case, reduction, need, weight_grad, column_labels=False, R=9, M=None):
    """Arguments of npairs::loss as npairs.torch passes them (threads, workspace_limit -1: the defaults)."""
    labels, a, b, w = make(R=R, M=M, D=5, seed=4, multilabel="multilabel" in case)
    embeddings = case.startswith("embeddings")
    columns = None
    if column_labels:
        columns = labels[torch.arange(b.shape[0]) % R]
    similarity = None if embeddings else (a @ b.T).requires_grad_(need)
    anchors, positives = (a.requires_grad_(need), b.requires_grad_(need)) if embeddings else (None, None)
    weight = w.requires_grad_(weight_grad)
    reg = 0.01 if embeddings and reduction != "none" else 0.0
    return (labels, columns, weight, similarity, anchors, positives, None, "multilabel" in case, embeddings,
            reduction, 0.7, reg, "auto", -1, -1, False, need and not embeddings, need and embeddings,
            need and embeddings, weight_grad, False)


@needs_custom_op
@pytest.mark.parametrize("case,reduction,need,weight_grad,column_labels", [
    ("similarity", "sum_over_batch_size", True, False, False),
    ("similarity", "none", True, True, False),
    ("similarity", "sum", False, True, True),
    ("multilabel", "sum_over_batch_size", True, True, False),
    ("embeddings", "sum_over_batch_size", True, True, False),
    ("embeddings", "none", True, False, True),
    ("embeddings_multilabel", "sum", True, False, False),
])
def test_opcheck(case, reduction, need, weight_grad, column_labels):
    args = op_arguments(case, reduction, need, weight_grad, column_labels, M=13 if column_labels else None)
    results = torch.library.opcheck(torch.ops.npairs.loss.default, args)
    assert results and all(v == "SUCCESS" for v in results.values()), results


@needs_custom_op
def test_a_module_trains_compiled_by_inductor_as_in_eager():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(10, 5, dtype=torch.float64, generator=g)
    y = x + 0.1 * torch.randn(10, 5, dtype=torch.float64, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Linear(5, 4, dtype=torch.float64)
            self.loss = nt.NpairsEmbeddingsLoss(reg_lambda=0.002, temperature=0.5)

        def forward(self, labels, x, y):
            return self.loss(labels, self.embed(x), self.embed(y))

    torch.manual_seed(6)
    models = [Model(), Model()]
    models[1].load_state_dict(models[0].state_dict())
    torch._dynamo.reset()
    runs = [models[0], torch.compile(models[1], fullgraph=True, backend="inductor")]
    trained = []
    for model, run in zip(models, runs):
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        losses_seen = []
        for _ in range(2):
            opt.zero_grad()
            loss = run(labels, x, y)
            loss.backward()
            opt.step()
            losses_seen.append(loss.detach())
        trained.append((losses_seen, [p.detach().clone() for p in model.parameters()]))
    (eager_losses, eager_params), (compiled_losses, compiled_params) = trained
    assert not torch.equal(eager_params[0], models[0].embed.weight.new_zeros(4, 5))
    for got, expected in zip(compiled_losses + compiled_params, eager_losses + eager_params):
        match(got, expected)
    assert not torch.equal(eager_losses[0], eager_losses[1])  # the first step changed the model


# ---------------------------------------------------------------------------
# CUDA graphs


def host_problem(R=37, seed=7):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, R)
    return labels, rng.standard_normal((R, R))


def test_capture_hooks_reserve_then_defer_checks(library_calls):
    # The library call's side of CUDA graphs, on a CPU context (which accepts both): a call outside capture
    # reserves its workspace; a captured one allocates nothing (it fails first when too little is reserved)
    # and passes NPAIRS_FLAG_DEFER_CHECKS.
    labels, S = host_problem()
    npairs.empty_cache()  # a fresh context: nothing reserved
    try:
        with pytest.raises(npairs.UnsupportedError, match="outside capture first"):
            _core.compute(targets=labels, similarity=S, want_grads=("similarity",), capturing=True)
        assert not library_calls
        plain = _core.compute(targets=labels, similarity=S, want_grads=("similarity",), reserve_workspace=True)
        assert _core.context(_lib.BACKEND_CPU).reserved > 0
        captured = _core.compute(targets=labels, similarity=S, want_grads=("similarity",), capturing=True)
        assert [c.options.flags for c in library_calls] == [0, _lib.FLAG_DEFER_CHECKS]
        assert plain[0] == captured[0] and np.array_equal(plain[1]["similarity"], captured[1]["similarity"])
    finally:
        npairs.empty_cache()


def test_lowering_the_workspace_limit_forgets_the_reserve():
    labels, S = host_problem(seed=8)
    npairs.empty_cache()
    try:
        _core.compute(targets=labels, similarity=S, want_grads=("similarity",), reserve_workspace=True)
        ctx = _core.context(_lib.BACKEND_CPU)
        ctx.set_workspace_limit(64)
        assert ctx.reserved <= 64
    finally:
        npairs.empty_cache()


@cuda
@needs_custom_op
def test_reduce_overhead_step_on_cuda_matches_eager():
    labels, a, b, w = make(R=64, D=16, seed=9)
    labels, w = labels.cuda(), w.cuda()
    ours, reference = losses("embeddings_module", "sum_over_batch_size", "requires_grad")
    torch._dynamo.reset()
    compiled = torch.compile(ours, fullgraph=True, mode="reduce-overhead")
    for _ in range(4):  # warm-up runs, then captured graphs replayed
        got = step(compiled, labels, a.cuda(), b.cuda(), w)
        for x, expected in zip(got, step(ours, labels, a.cuda(), b.cuda(), w)):
            match(x.clone(), expected)


@cuda
def test_captured_forward_replays_new_inputs():
    labels, a, b, _ = make(R=48, D=8, seed=10)
    labels, S = labels.cuda(), (a @ b.T).cuda()
    loss_fn = nt.NpairsLoss(reduction="none")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        loss_fn(labels, S)  # warm-up outside capture: reserves the workspace
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = loss_fn(labels, S)
    for scale in (1.0, 0.5):
        S.copy_((a @ b.T).cuda() * scale)
        graph.replay()
        torch.cuda.synchronize()
        match(out.cpu(), eager(labels.cpu(), a * scale, b, reduction="none"))
