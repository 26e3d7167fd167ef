"""npairs.torch.DistributedNpairsEmbeddingsLoss on gloo: 2, 3 and 4 processes spawned here, loopback only.

Each test spawns one process group and runs many cases in it (spawning is
the slow part); the ranks send back their losses and gradients, and the
parent compares them with the float64 reference (npairs_reference) on the
concatenated batch. Every process group and every join is bounded in time,
so a rank that hangs fails the test instead of stalling the suite.
"""

import datetime
import multiprocessing
import os
import pathlib
import queue as queue_module
import subprocess
import sys
import tempfile

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed")
dist = pytest.importorskip("torch.distributed", reason="torch.distributed is not available")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("this PyTorch has no torch.distributed with gloo", allow_module_level=True)

import npairs_reference as ref  # noqa: E402

STRATEGIES = ("all_gather", "ring")
GROUP_TIMEOUT_S = 60  # a collective that waits longer fails on its rank
JOIN_TIMEOUT_S = 240  # the whole spawned run, cases included
EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "torch_ddp_train.py"


# ---------------------------------------------------------------------------
# Spawning


def _worker(rank, world, init_file, task, cases, results):
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=GROUP_TIMEOUT_S))
    out = []
    for case in cases:
        try:
            out.append(("ok", task(rank, world, case)))
        except Exception as e:  # the parent checks which cases must raise
            out.append(("error", type(e).__name__, str(e)))
    results.put((rank, out))
    dist.destroy_process_group()


def spawn(world, task, cases):
    """[rank][case] -> ('ok', value) or ('error', class name, message), from `world` spawned processes."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        procs = [ctx.Process(target=_worker, args=(r, world, init_file, task, cases, results)) for r in range(world)]
        for p in procs:
            p.start()
        got = {}
        try:
            for _ in range(world):
                rank, out = results.get(timeout=JOIN_TIMEOUT_S)
                got[rank] = out
        except queue_module.Empty:
            pass
        finally:
            for p in procs:
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
                    p.join()
    missing = sorted(set(range(world)) - set(got))
    assert not missing, f"ranks {missing} gave no result within {JOIN_TIMEOUT_S} s (hung or crashed)"
    return [got[r] for r in range(world)]


# ---------------------------------------------------------------------------
# Cases: a global batch, cut into shards by `sizes`


def make_case(sizes, *, dtype="float64", multilabel=False, reduction="sum_over_batch_size", temperature=1.0,
              reg_lambda=0.0, weights=None, strategy="all_gather", workspace_limit=0, dim=5, classes=4,
              symmetric=False, tau="number"):
    """weights: None, 'tensor' (constants) or 'grad' (weights that require grad). tau: 'number', or 'tensor' (an
    nn.Parameter: its gradient is checked too)."""
    rng = np.random.default_rng(ref.seed(sizes, dtype, multilabel, reduction, temperature, reg_lambda, weights,
                                         strategy, workspace_limit, symmetric, tau))
    n = sum(sizes)
    labels = ref.random_multilabels(rng, n, classes) if multilabel else ref.random_labels(rng, n, classes)
    return dict(sizes=list(sizes), dtype=dtype, multilabel=multilabel, reduction=reduction, temperature=temperature,
                reg_lambda=reg_lambda, weights=weights, strategy=strategy, workspace_limit=workspace_limit,
                symmetric=symmetric, tau=tau,
                labels=labels, anchors=rng.standard_normal((n, dim)), positives=rng.standard_normal((n, dim)),
                weight=rng.uniform(0.5, 2.0, n), grad=rng.standard_normal(n))


def _shard(rank, case):
    start = sum(case["sizes"][:rank])
    return slice(start, start + case["sizes"][rank])


def run_loss(rank, world, case, group=None):
    """This rank's loss, global_loss and the gradients of its inputs after backward (upstream: 1, or case['grad']);
    with a tensor temperature its gradient, and in float64 the central difference of global_loss in it."""
    from npairs.torch import DistributedNpairsEmbeddingsLoss

    dtype = getattr(torch, case["dtype"])
    rows = _shard(rank, case)
    labels = torch.as_tensor(case["labels"][rows])
    anchors = torch.tensor(case["anchors"][rows], dtype=dtype, requires_grad=True)
    positives = torch.tensor(case["positives"][rows], dtype=dtype, requires_grad=True)
    weight = None
    if case["weights"] is not None:
        weight = torch.tensor(case["weight"][rows], dtype=dtype, requires_grad=case["weights"] == "grad")
    tensor_tau = case["tau"] == "tensor"

    def loss_fn_at(temperature):
        return DistributedNpairsEmbeddingsLoss(reg_lambda=case["reg_lambda"], temperature=temperature,
                                               reduction=case["reduction"], multilabel=case["multilabel"],
                                               strategy=case["strategy"], workspace_limit=case["workspace_limit"],
                                               group=group, symmetric=case["symmetric"])

    tau = torch.nn.Parameter(torch.tensor(case["temperature"], dtype=dtype)) if tensor_tau else case["temperature"]
    loss_fn = loss_fn_at(tau)
    loss = loss_fn(labels, anchors, positives, weight)
    upstream = torch.tensor(case["grad"][rows], dtype=dtype) if case["reduction"] == "none" \
        else torch.ones((), dtype=dtype)
    loss.backward(upstream)
    out = dict(loss=loss.detach().numpy(), global_loss=loss_fn.global_loss, anchors=anchors.grad.numpy(),
               positives=positives.grad.numpy(),
               weight=None if weight is None or weight.grad is None else weight.grad.numpy())
    if tensor_tau:
        out["temperature"] = tau.grad.numpy()
        if dtype == torch.float64:
            h = 1e-5 * case["temperature"]
            with torch.no_grad():
                ends = []
                for t in (case["temperature"] + h, case["temperature"] - h):
                    shifted = loss_fn_at(t)
                    shifted(labels, anchors, positives, weight)
                    ends.append(shifted.global_loss)
            out["fd_temperature"] = (ends[0] - ends[1]) / (2 * h)
    return out


def _cross_entropy(z, T):
    """loss_i = logsumexp_j z_ij - sum_j T_ij z_ij and dloss_i/dz_ij = softmax(z_i)_j - T_ij, in float64 NumPy
    (max-shifted; a zero target contributes nothing)."""
    m = z.max(1, keepdims=True)
    e = np.exp(z - m)
    total = e.sum(1, keepdims=True)
    lse = m[:, 0] + np.log(total[:, 0])
    return lse - np.where(T != 0, T * z, 0.0).sum(1), e / total - T


def symmetric_expected(case, world):
    """SPEC section 5's symmetric loss of the concatenated batch, written here in float64 NumPy: the global loss
    and, per rank, the value it must return (world x its anchors' rows and its positives' columns, each direction
    weighted 1/2 and divided by N for 'sum_over_batch_size', plus its share of the L2 term) and its gradients
    (those of the sum over ranks: world x the global ones; the temperature's: dL/dtau of the global loss)."""
    labels, A, P, tau = case["labels"], case["anchors"], case["positives"], case["temperature"]
    n, reg = sum(case["sizes"]), case["reg_lambda"]
    if case["multilabel"]:
        G = labels @ labels.T  # G' = Y Y^T as well: the columns' targets are its rows, normalised
        T, Tc = G / G.sum(1, keepdims=True), G.T / G.T.sum(1, keepdims=True)
    else:
        same = (labels[:, None] == labels[None, :]).astype(np.float64)
        T, Tc = same / same.sum(1, keepdims=True), same.T / same.T.sum(1, keepdims=True)
    z = A @ P.T / tau
    rows, dz_rows = _cross_entropy(z, T)
    cols, dz_cols = _cross_entropy(z.T, Tc)
    r = 1.0 / n if case["reduction"] == "sum_over_batch_size" else 1.0
    per_sample = 0.5 * r * (rows + cols) + 0.25 * reg * (np.sum(A * A, 1) + np.sum(P * P, 1)) / n
    dz = 0.5 * r * (dz_rows + dz_cols.T)
    dA = dz @ P / tau + 0.5 * reg * A / n
    dP = dz.T @ A / tau + 0.5 * reg * P / n
    dtau = -np.sum(dz * z) / tau
    out = [dict(loss=world * per_sample[_shard(q, case)].sum(), anchors=world * dA[_shard(q, case)],
                positives=world * dP[_shard(q, case)], temperature=dtau) for q in range(world)]
    return per_sample.sum(), out


def expected(case, world):
    """The float64 reference on the concatenated batch: what each rank must return, and its gradients."""
    if case["symmetric"]:
        return symmetric_expected(case, world)
    T = ref.targets_from_multilabels(case["labels"]) if case["multilabel"] else ref.targets_from_labels(case["labels"])
    A, P, n = case["anchors"], case["positives"], sum(case["sizes"])
    w = case["weight"] if case["weights"] is not None else None
    none = case["reduction"] == "none"
    kw = dict(A=A, P=P, temperature=case["temperature"], reduction=case["reduction"], reg_lambda=case["reg_lambda"])
    loss, dS, dA, dP = ref.loss_and_grads(T, weights=w, grad_loss=case["grad"] if none else None, **kw)
    dtau = ref.temperature_grad(dS, A @ P.T, case["temperature"])  # with a tensor temperature: the global one
    unweighted = ref.loss_and_grads(T, A=A, P=P, temperature=case["temperature"], reduction="none")[0]
    r = 1.0 / n if case["reduction"] == "sum_over_batch_size" else 1.0
    out = []
    for rank in range(world):
        rows = _shard(rank, case)
        if none:
            mine, grad_w = loss[rows], case["grad"][rows] * unweighted[rows]
            scale = 1.0
        else:
            weighted = unweighted[rows] * (1.0 if w is None else w[rows])
            l2 = 0.25 * case["reg_lambda"] * (np.sum(A[rows] ** 2) + np.sum(P[rows] ** 2)) / n
            mine, grad_w = world * (r * weighted.sum() + l2), world * r * unweighted[rows]
            # The gradients reaching a rank's inputs are those of the sum over ranks of the values returned.
            scale = world
        out.append(dict(loss=mine, anchors=scale * dA[rows], positives=scale * dP[rows], weight=grad_w,
                        temperature=dtau))
    return loss, out


def check_case(case, world, per_rank):
    global_loss, want = expected(case, world)
    values = [per_rank[r] for r in range(world)]
    for rank, (got, exp) in enumerate(zip(values, want)):
        assert got[0] == "ok", f"rank {rank}: {got[1:]}"
        got = got[1]
        for name in ("loss", "anchors", "positives"):
            ref.assert_matches(got[name], exp[name], case["dtype"])
        if case["weights"] == "grad":
            ref.assert_matches(got["weight"], exp["weight"], case["dtype"])
        if case["reduction"] != "none":
            ref.assert_matches(got["global_loss"], global_loss, case["dtype"])
        if case["tau"] == "tensor":
            ref.assert_matches(got["temperature"], exp["temperature"], case["dtype"])
            if "fd_temperature" in got:  # central differences of the global loss, h = 1e-5 tau
                np.testing.assert_allclose(got["temperature"], got["fd_temperature"], rtol=1e-6, atol=1e-9)
    if case["reduction"] != "none":  # the mean over ranks is the loss of the concatenated batch
        ref.assert_matches(np.mean([v[1]["loss"] for v in values]), global_loss, case["dtype"])
    if case["symmetric"] or case["tau"] == "tensor":
        check_against_one_process(case, world, [v[1] for v in values])


def check_against_one_process(case, world, values):
    """The ranks' gradients equal the single-process call on the concatenated batch (npairs.torch, symmetric as
    the case), in the case's dtype: world x its rows for the embeddings, its dL/dtau for the temperature."""
    from npairs.torch import npairs_embeddings_loss

    dtype = getattr(torch, case["dtype"])
    A = torch.tensor(case["anchors"], dtype=dtype, requires_grad=True)
    P = torch.tensor(case["positives"], dtype=dtype, requires_grad=True)
    tau = torch.tensor(case["temperature"], dtype=dtype, requires_grad=True)
    w = torch.tensor(case["weight"], dtype=dtype) if case["weights"] is not None else None
    loss = npairs_embeddings_loss(torch.as_tensor(case["labels"]), A, P, w, reg_lambda=case["reg_lambda"],
                                  temperature=tau, reduction=case["reduction"], multilabel=case["multilabel"],
                                  symmetric=case["symmetric"])
    loss.backward()
    for rank, got in enumerate(values):
        rows = _shard(rank, case)
        ref.assert_matches(got["anchors"], world * A.grad[rows].numpy(), case["dtype"])
        ref.assert_matches(got["positives"], world * P.grad[rows].numpy(), case["dtype"])
        if case["tau"] == "tensor":
            ref.assert_matches(got["temperature"], tau.grad.numpy(), case["dtype"])
        ref.assert_matches(got["global_loss"], float(loss.detach()), case["dtype"])


def run_task(rank, world, case):
    """The case's task (run_loss, run_fault, run_ddp) on this rank."""
    return globals()[case["task"]](rank, world, case)


# Every case of a world size, run in one spawned process group (spawning is the slow part); the tests read
# their own cases' results.
CASES = {2: [], 3: [], 4: []}
_RESULTS = {}


def results_of(world, cases):
    """[rank][i] for these cases (which CASES[world] holds), spawning the world's group on first use."""
    if world not in _RESULTS:
        _RESULTS[world] = spawn(world, run_task, CASES[world])
    index = [next(i for i, c in enumerate(CASES[world]) if c is case) for case in cases]
    return [[_RESULTS[world][r][i] for i in index] for r in range(world)]


def register(world, task, cases):
    for case in cases:
        case["task"] = task
    CASES[world].extend(cases)
    return cases


def run_cases(world, cases):
    results = results_of(world, cases)
    for i, case in enumerate(cases):
        described = {k: case[k] for k in ("sizes", "dtype", "multilabel", "reduction", "temperature", "reg_lambda",
                                          "weights", "strategy", "workspace_limit", "symmetric", "tau")}
        try:
            check_case(case, world, [results[r][i] for r in range(world)])
        except AssertionError as e:
            raise AssertionError(f"case {described}: {e}") from None


def cases_for(sizes, strategies=STRATEGIES):
    """Every reduction, labels and multi-labels, f32 and f64, weights, temperature and L2, on these shards."""
    cases = []
    for strategy in strategies:
        for dtype in ("float64", "float32"):
            for multilabel in (False, True):
                for reduction in ref.REDUCTIONS:
                    cases.append(make_case(sizes, dtype=dtype, multilabel=multilabel, reduction=reduction,
                                           strategy=strategy))
            cases.append(make_case(sizes, dtype=dtype, reduction="sum_over_batch_size", temperature=0.3,
                                   reg_lambda=0.01, weights="grad", strategy=strategy))
            cases.append(make_case(sizes, dtype=dtype, multilabel=True, reduction="sum", temperature=2.5,
                                   reg_lambda=0.002, weights="tensor", strategy=strategy))
            cases.append(make_case(sizes, dtype=dtype, reduction="none", temperature=0.5, weights="grad",
                                   strategy=strategy))
    return cases


# ---------------------------------------------------------------------------
# Losses and gradients against one process on the concatenated batch


TWO_RANKS = register(2, "run_loss", cases_for([6, 6]) + cases_for([7, 3]) + [
    # Streamed: a workspace limit that makes the rectangular call cut its columns into tiles.
    make_case([9, 4], strategy=s, workspace_limit=2048, reduction=red, reg_lambda=reg, weights="grad")
    for s in STRATEGIES for red, reg in (("sum_over_batch_size", 0.01), ("none", 0.0))])
THREE_RANKS = register(3, "run_loss", cases_for([4, 1, 5]))
FOUR_RANKS = register(4, "run_loss", cases_for([3, 0, 4, 2]))


# Issue #15: CLIP's symmetric loss of the global batch and a learnable temperature (an nn.Parameter), against
# symmetric_expected (float64 NumPy), central differences in the temperature and one process on the whole batch.


def symmetric_cases(sizes, strategies=STRATEGIES):
    """Labels ('sum_over_batch_size', L2) and multi-labels ('sum'), f64 and f32, both strategies."""
    cases = []
    for strategy in strategies:
        for dtype in ("float64", "float32"):
            cases.append(make_case(sizes, dtype=dtype, temperature=0.3, reg_lambda=0.01, strategy=strategy,
                                   symmetric=True, tau="tensor"))
            cases.append(make_case(sizes, dtype=dtype, multilabel=True, reduction="sum", temperature=1.7,
                                   strategy=strategy, symmetric=True, tau="tensor"))
    return cases


SYMMETRIC_TWO_RANKS = register(2, "run_loss", symmetric_cases([6, 6]) + symmetric_cases([7, 3]) + [
    make_case([9, 4], strategy=s, workspace_limit=2048, temperature=0.4, reg_lambda=0.01, symmetric=True,
              tau="tensor") for s in STRATEGIES] + [
    # A learnable temperature without symmetric (with weights), and symmetric at a fixed temperature.
    make_case([7, 3], strategy=s, temperature=0.6, weights="tensor", tau="tensor") for s in STRATEGIES] + [
    make_case([5, 2], strategy=s, multilabel=True, temperature=0.8, symmetric=True) for s in STRATEGIES])
SYMMETRIC_THREE_RANKS = register(3, "run_loss", symmetric_cases([4, 1, 5]) + symmetric_cases([3, 0, 4]))


def test_symmetric_and_a_learnable_temperature_on_two_ranks():
    run_cases(2, SYMMETRIC_TWO_RANKS)


def test_symmetric_and_a_learnable_temperature_on_three_ranks_with_an_empty_shard():
    run_cases(3, SYMMETRIC_THREE_RANKS)


def test_two_ranks_equal_and_unequal_shards():
    run_cases(2, TWO_RANKS)


def test_three_ranks_unequal_shards():
    run_cases(3, THREE_RANKS)


def test_four_ranks_with_an_empty_shard():
    run_cases(4, FOUR_RANKS)


def _positive_on_another_rank(strategy):
    """Class 9's two pairs sit on different ranks: each such anchor's other positive is only on the other rank."""
    case = make_case([4, 4], strategy=strategy, reduction="sum")
    case["labels"] = np.array([9, 0, 1, 2, 9, 0, 1, 3])
    return case


def run_in_subgroup(rank, world, case):
    """Ranks 0 and 2 of 3 compute the case in a group of their own (group=); rank 1 only joins new_group."""
    group = dist.new_group([0, 2])
    if rank == 1:
        return None
    return run_loss(rank // 2, 2, case, group=group)


SUBGROUP = register(3, "run_in_subgroup", [make_case([3, 5], strategy=s, reduction="sum", reg_lambda=0.01)
                                           for s in STRATEGIES])


def test_a_process_group_other_than_the_default_one():
    results = results_of(3, SUBGROUP)
    for i, case in enumerate(SUBGROUP):
        assert results[1][i] == ("ok", None), results[1][i]
        check_case(case, 2, [results[0][i], results[2][i]])


OTHER_RANK = register(2, "run_loss", [_positive_on_another_rank(s) for s in STRATEGIES])


def test_class_whose_other_positive_is_on_another_rank():
    run_cases(2, OTHER_RANK)


# ---------------------------------------------------------------------------
# DistributedClipLoss: open_clip's ClipLoss(gather_with_grad=True, local_loss=False) across ranks


def _open_clip_loss(image, text, scale):
    """open_clip's formula with its gathering: both cross-entropies of the gathered logits (equal shards)."""
    import torch.distributed.nn.functional as dist_fn
    import torch.nn.functional as F

    every_image, every_text = torch.cat(dist_fn.all_gather(image)), torch.cat(dist_fn.all_gather(text))
    logits = scale * every_image @ every_text.T
    target = torch.arange(logits.shape[0])
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def run_clip(rank, world, case):
    """DistributedClipLoss's value and gradients on this rank (its own logit_scale parameter, or a scale passed
    in), and with case['peer'] those of open_clip's formula on the same shard."""
    from npairs.torch import DistributedClipLoss

    rows = _shard(rank, case)
    out = {}
    for method in ("npairs", "open_clip") if case["peer"] else ("npairs",):
        image = torch.tensor(case["anchors"][rows], requires_grad=True)
        text = torch.tensor(case["positives"][rows], requires_grad=True)
        log_scale = torch.tensor(np.log(1.0 / case["temperature"]), dtype=torch.float64, requires_grad=True)
        if method == "open_clip":
            loss = _open_clip_loss(image, text, log_scale.exp())
        else:
            loss_fn = DistributedClipLoss(logit_scale=1.0 / case["temperature"], strategy=case["strategy"]).double()
            labels = torch.as_tensor(case["labels"][rows]) if case["labels_given"] else None
            if case["own_scale"]:  # its float32 parameter, made float64 and set to the case's exact scale
                log_scale = loss_fn.logit_scale
                with torch.no_grad():
                    log_scale.fill_(np.log(1.0 / case["temperature"]))
                loss = loss_fn(image, text, labels=labels)
            else:
                loss = loss_fn(image, text, log_scale.exp(), labels=labels)
        loss.backward()
        out[method] = dict(loss=float(loss.detach()), image=image.grad.numpy(), text=text.grad.numpy(),
                           log_scale=float(log_scale.grad))
    return out


def clip_case(sizes, strategy, *, labels_given=False, own_scale=False):
    case = make_case(sizes, strategy=strategy, temperature=0.2, symmetric=True, tau="tensor", classes=3)
    if not labels_given:
        case["labels"] = np.arange(sum(sizes))
    return dict(case, labels_given=labels_given, own_scale=own_scale, peer=not labels_given and len(set(sizes)) == 1)


CLIP_CASES = register(2, "run_clip", [clip_case(sizes, s, **kw) for s in STRATEGIES for sizes, kw in (
    ([5, 5], {}), ([5, 5], dict(own_scale=True)), ([6, 3], dict(labels_given=True)))])


def test_distributed_clip_loss_is_open_clips_global_loss():
    results = results_of(2, CLIP_CASES)
    for i, case in enumerate(CLIP_CASES):
        global_loss, want = symmetric_expected(case, 2)
        for rank in range(2):
            status, got = results[rank][i]
            assert status == "ok", (case["sizes"], case["strategy"], got)
            mine = got["npairs"]
            # Every rank returns the global loss; the features get world x the global gradient (open_clip's
            # gather with gradient sums the ranks' gradients); the scale, dL/dlog(scale) = -tau dL/dtau.
            ref.assert_matches(mine["loss"], global_loss, "float64")
            ref.assert_matches(mine["image"], want[rank]["anchors"], "float64")
            ref.assert_matches(mine["text"], want[rank]["positives"], "float64")
            ref.assert_matches(mine["log_scale"], -case["temperature"] * want[rank]["temperature"], "float64")
            if case["peer"]:
                for name in ("loss", "image", "text", "log_scale"):
                    ref.assert_matches(mine[name], got["open_clip"][name], "float64")


# ---------------------------------------------------------------------------
# Faults: every rank raises, naming the rank, and none hangs


def run_fault(rank, world, case):
    from npairs.torch import DistributedNpairsEmbeddingsLoss

    fault, strategy = case["fault"], case["strategy"]
    dtype = torch.float32 if fault == "dtype" and rank == 1 else torch.float64
    dim = 6 if fault == "dim" and rank == 1 else 4
    n = 3 + rank
    g = torch.Generator().manual_seed(rank)
    anchors = torch.randn(n, dim, generator=g, dtype=dtype, requires_grad=True)
    positives = torch.randn(n, dim, generator=g, dtype=dtype, requires_grad=fault != "requires_grad" or rank != 1)
    multilabel = fault in ("no_positive", "negative", "classes", "symmetric_no_positive")
    if multilabel:
        labels = torch.ones(n, 4 if fault == "classes" and rank == 1 else 3, dtype=dtype)
        if rank == 1:
            labels[1] = 0.0 if fault in ("no_positive", "symmetric_no_positive") else labels[1]
            labels[2, 0] = -1.0 if fault == "negative" else labels[2, 0]
    else:
        labels = torch.arange(n - (1 if fault == "labels" and rank == 2 else 0))
    # Issue #15: the symmetric loss and a tensor temperature.
    symmetric = fault.startswith("symmetric") and not (fault == "symmetric_disagrees" and rank == 2)
    temperature = 0.5 if fault == "temperature" and rank == 2 else 1.0
    if fault.startswith("tensor_temperature"):
        value = -1.0 if fault == "tensor_temperature_value" and rank == 2 else 0.7
        temperature = torch.tensor(value, dtype=dtype, requires_grad=fault != "tensor_temperature_grad" or rank != 1)
    reduction = "sum" if fault == "reduction" and rank == 0 else \
        "none" if fault in ("symmetric_none", "tensor_temperature_none") else "sum_over_batch_size"
    weight = torch.ones(n, dtype=dtype) if fault == "symmetric_weights" and rank == 1 else None
    loss_fn = DistributedNpairsEmbeddingsLoss(multilabel=multilabel, strategy=strategy, temperature=temperature,
                                              reduction=reduction, symmetric=symmetric)
    loss = loss_fn(labels, anchors, positives, weight)
    loss.sum().backward()
    return float(loss.sum())


FAULTS = {  # fault: (error class, words the message must contain)
    "no_positive": ("InvalidValueError", ["rank 1", "no positive"]),
    "negative": ("InvalidValueError", ["rank", "negative"]),
    "dim": ("InvalidArgumentError", ["rank 1", "embedding width"]),
    "dtype": ("InvalidArgumentError", ["rank 1", "dtype", "float32"]),
    "classes": ("InvalidArgumentError", ["rank 1", "multi-label width"]),
    "temperature": ("InvalidArgumentError", ["rank 2", "temperature"]),
    "reduction": ("InvalidArgumentError", ["rank", "reduction"]),
    "labels": ("InvalidArgumentError", ["rank 2", "labels"]),
    "requires_grad": ("InvalidArgumentError", ["rank 1", "require grad"]),
    "symmetric_weights": ("InvalidArgumentError", ["rank 1", "symmetric=True takes no sample_weight"]),
    "symmetric_disagrees": ("InvalidArgumentError", ["rank 2", "symmetric"]),
    "symmetric_no_positive": ("InvalidValueError", ["rank 1", "row 1 has no positive"]),
    "symmetric_none": ("InvalidArgumentError", ["symmetric=True needs a scalar reduction"]),  # each rank's own
    "tensor_temperature_grad": ("InvalidArgumentError", ["rank 1", "whether the temperature requires grad"]),
    "tensor_temperature_value": ("InvalidArgumentError", ["rank 2", "temperature", "-1"]),
    "tensor_temperature_none": ("UnsupportedError", ["rank 0", "scalar reduction", "ranks 0, 1, 2 failed"]),
}


FAULT_CASES = register(3, "run_fault", [dict(fault=f, strategy=s) for s in STRATEGIES for f in FAULTS] +
                       [dict(fault="none", strategy=s) for s in STRATEGIES])


def test_faults_raise_on_every_rank_without_hanging():
    cases = FAULT_CASES
    results = results_of(3, cases)
    for i, case in enumerate(cases):
        if case["fault"] == "none":  # the group still works after the faults
            assert all(results[rank][i][0] == "ok" for rank in range(3)), [results[r][i] for r in range(3)]
            continue
        cls, words = FAULTS[case["fault"]]
        for rank in range(3):
            got = results[rank][i]
            assert got[0] == "error" and got[1] == cls, f"{case} on rank {rank}: {got}"
            for word in words:
                assert word in got[2], f"{case} on rank {rank}: {word!r} not in {got[2]!r}"


# ---------------------------------------------------------------------------
# DistributedDataParallel: 2 ranks train as one process on the global batch


def _model(dtype):
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4)).to(dtype)


def _ddp_batches(steps, n):
    g = torch.Generator().manual_seed(5)
    return [(torch.randint(0, 3, (n,), generator=g), torch.randn(n, 6, generator=g, dtype=torch.float64),
             torch.randn(n, 6, generator=g, dtype=torch.float64)) for _ in range(steps)]


def run_ddp(rank, world, case):
    from npairs.torch import DistributedNpairsEmbeddingsLoss

    model = torch.nn.parallel.DistributedDataParallel(_model(torch.float64))
    loss_fn = DistributedNpairsEmbeddingsLoss(reg_lambda=0.01, temperature=0.5, strategy=case["strategy"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for labels, x, y in _ddp_batches(case["steps"], case["batch"]):
        rows = slice(0, 3) if rank == 0 else slice(3, None)  # unequal shards
        loss = loss_fn(labels[rows], model(x[rows]), model(y[rows]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss_fn.global_loss)
    return dict(params=[p.detach().numpy() for p in model.parameters()], losses=losses)


def check_ranks_trained_as_one_process(cases, results, losses, model):
    """On both ranks of every case, the losses and the trained parameters are the one-process run's (float64)."""
    for i, case in enumerate(cases):
        for rank in range(2):
            status, got = results[rank][i][0], results[rank][i][1]
            assert status == "ok", (case, results[rank][i])
            np.testing.assert_allclose(got["losses"], losses, rtol=1e-12, err_msg=str(case))
            for p, q in zip(got["params"], model.parameters()):
                np.testing.assert_allclose(p, q.detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=str(case))


DDP_CASES = register(2, "run_ddp", [dict(strategy=s, steps=4, batch=8) for s in STRATEGIES])


def test_ddp_two_ranks_train_as_one_process_on_the_global_batch():
    from npairs.torch import NpairsEmbeddingsLoss

    steps, batch = 4, 8
    cases = DDP_CASES
    results = results_of(2, cases)
    model = _model(torch.float64)
    loss_fn = NpairsEmbeddingsLoss(reg_lambda=0.01, temperature=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for labels, x, y in _ddp_batches(steps, batch):
        loss = loss_fn(labels, model(x), model(y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    check_ranks_trained_as_one_process(cases, results, losses, model)


class _ClipModel(torch.nn.Module):
    """Image and text towers with open_clip's learnable logit_scale (its log), in float64."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.image, self.text = torch.nn.Linear(6, 4).double(), torch.nn.Linear(5, 4).double()
        self.logit_scale = torch.nn.Parameter(torch.tensor(np.log(1 / 0.07)))

    def forward(self, x, y):
        normalize = torch.nn.functional.normalize
        return normalize(self.image(x), dim=1), normalize(self.text(y), dim=1), self.logit_scale.exp()


def _clip_batches(steps, n):
    g = torch.Generator().manual_seed(6)
    return [(torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randn(n, 5, generator=g, dtype=torch.float64))
            for _ in range(steps)]


def run_clip_ddp(rank, world, case):
    from npairs.torch import DistributedClipLoss

    model = torch.nn.parallel.DistributedDataParallel(_ClipModel())
    loss_fn = DistributedClipLoss(strategy=case["strategy"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for x, y in _clip_batches(case["steps"], case["batch"]):
        rows = slice(0, 5) if rank == 0 else slice(5, None)  # unequal shards
        loss = loss_fn(*model(x[rows], y[rows]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return dict(params=[p.detach().numpy() for p in model.parameters()], losses=losses)


CLIP_DDP_CASES = register(2, "run_clip_ddp", [dict(strategy=s, steps=4, batch=8) for s in STRATEGIES])


def test_ddp_clip_with_a_learnable_logit_scale_trains_as_one_process():
    """The logit scale's gradient (dL/dtau through the library) trains it as one process on the global batch."""
    from npairs.torch import ClipLoss

    steps, batch = 4, 8
    results = results_of(2, CLIP_DDP_CASES)
    model, loss_fn = _ClipModel(), ClipLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for x, y in _clip_batches(steps, batch):
        loss = loss_fn(*model(x, y))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert abs(float(model.logit_scale.detach()) - np.log(1 / 0.07)) > 1e-3  # the scale did train
    check_ranks_trained_as_one_process(CLIP_DDP_CASES, results, losses, model)


# ---------------------------------------------------------------------------
# examples/torch_ddp_train.py with torchrun's environment variables


@pytest.mark.parametrize("options", [[], ["--clip"]], ids=["npairs", "clip"])
def test_ddp_example_trains_on_two_processes(options):
    package_dir = str(pathlib.Path(__file__).resolve().parents[1])
    procs = []
    with tempfile.TemporaryDirectory():
        port = _free_port()
        for rank in range(2):
            env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                       MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo",
                       PYTHONPATH=package_dir + os.pathsep + os.environ.get("PYTHONPATH", ""))
            procs.append(subprocess.Popen([sys.executable, str(EXAMPLE)] + options, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
        outputs = []
        try:
            for p in procs:
                outputs.append(p.communicate(timeout=JOIN_TIMEOUT_S)[0])
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    for rank, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"rank {rank}:\n{out}"
    assert "retrieval accuracy" in outputs[0], outputs[0]


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
