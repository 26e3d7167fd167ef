"""workspace_limit: streamed calls against the float64 reference, the limit reaching the library, bad limits."""

import ctypes
import json

import numpy as np
import pytest

import npairs
from npairs import _core, _lib
import npairs_reference as ref

DTYPES = (np.float32, np.float64)
R, M, D, CLASSES = 301, 277, 12, 23
# A few KiB: far below the 64 whole rows that the library's plan wants before
# it uses blocks of whole rows (src/tiled_loss.cpp), so these calls run in
# tiles of columns; a quarter of the unlimited workspace gives blocks of
# whole rows. Each test checks with npairs_workspace_size that its limit is
# below the unlimited workspace and that the streamed call fits it.
COLUMN_TILE_LIMIT = 6 * 1024
ROW_BLOCK_LIMIT = 256 * 1024  # about a hundred whole rows of the torch cases


def workspace_of(call, limit=None):
    """The workspace npairs_workspace_size reports for a recorded npairs_loss call with backend='cpu':
    on this thread's cached CPU context, the one that ran it, under its limit as the call left it (limit
    None), or on a fresh context under `limit` (0: none)."""
    ctx = _core.context(_lib.BACKEND_CPU) if limit is None else _core.Context(_lib.BACKEND_CPU, 0)
    if limit is not None:
        ctx.set_workspace_limit(limit)
    size = ctypes.c_size_t()
    _core.check(_lib.load().npairs_workspace_size(ctx.handle, ctypes.byref(call.options), ctypes.byref(call.problem),
                                                  ctypes.byref(call.grads) if call.grads is not None else None,
                                                  ctypes.byref(size)))
    if limit is not None:
        ctx.close()
    return size.value


def case(kind, dtype, *, columns):
    """(targets, column targets or None, anchors, positives, weights) in dtype, and the reference's
    target matrix T. kind: 'labels' or 'multilabels' (the embeddings form), 'multilabels-similarity'
    (the similarity form, S = anchors @ positives.T). columns: M != R, with column targets."""
    rng = np.random.default_rng(ref.seed("workspace", kind, columns))
    cols = M if columns else R
    multilabel = kind.startswith("multilabels")

    def draw(n):
        return ref.random_multilabels(rng, n, CLASSES, 0.15) if multilabel else ref.random_labels(rng, n, CLASSES)

    targets = draw(R)
    column_targets = None
    if columns:
        # Every row has a positive: the first columns hold each class once.
        column_targets = draw(cols)
        column_targets[:CLASSES] = np.eye(CLASSES) if multilabel else np.arange(CLASSES)
    A = (rng.standard_normal((R, D)) * 0.7).astype(dtype)
    P = (rng.standard_normal((cols, D)) * 0.7).astype(dtype)
    weights = (rng.random(R) + 0.5).astype(dtype)
    T = (ref.targets_from_multilabels if multilabel else ref.targets_from_labels)(targets, column_targets)
    return targets, column_targets, A, P, weights, T


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,reduction,columns", [
    ("labels", "sum_over_batch_size", False),
    ("labels", "sum", True),
    ("multilabels", "sum_over_batch_size", True),
    ("multilabels-similarity", "none", False),
    ("multilabels-similarity", "sum", True),
])
@pytest.mark.parametrize("pieces", ["row blocks", "column tiles"])
def test_streamed_matches_reference(library_calls, dtype, kind, reduction, columns, pieces):
    targets, column_targets, A, P, weights, T = case(kind, dtype, columns=columns)
    tau = 0.35
    similarity = kind.endswith("similarity")
    if similarity:
        S = (A.astype(np.float64) @ P.astype(np.float64).T).astype(dtype)
        expected_loss, expected_dS, _, _ = ref.loss_and_grads(T, S=S, temperature=tau, weights=weights,
                                                              reduction=reduction)
        unlimited = npairs.npairs_multilabel_loss(targets, S, weights, reduction=reduction, temperature=tau,
                                                  column_labels=column_targets, backend="cpu", return_grad=True)
    else:
        reg = 0.0 if reduction == "none" else 0.02
        expected_loss, _, expected_dA, expected_dP = ref.loss_and_grads(T, A=A, P=P, temperature=tau, weights=weights,
                                                                        reduction=reduction, reg_lambda=reg)
        unlimited = npairs.npairs_embeddings_loss(targets, A, P, reg_lambda=reg, temperature=tau,
                                                  reduction=reduction, column_labels=column_targets,
                                                  sample_weight=weights, backend="cpu", return_grads=True)
    whole = workspace_of(library_calls[-1], 0)
    limit = whole // 4 if pieces == "row blocks" else COLUMN_TILE_LIMIT
    assert limit < whole  # the call cannot run in one piece
    if similarity:
        loss, dS = npairs.npairs_multilabel_loss(targets, S, weights, reduction=reduction, temperature=tau,
                                                 column_labels=column_targets, backend="cpu",
                                                 workspace_limit=limit, return_grad=True)
        got, expected = [loss, dS], [expected_loss, expected_dS]
    else:
        loss, (dA, dP) = npairs.npairs_embeddings_loss(targets, A, P, reg_lambda=reg, temperature=tau,
                                                       reduction=reduction, column_labels=column_targets,
                                                       sample_weight=weights, backend="cpu",
                                                       workspace_limit=limit, return_grads=True)
        got, expected = [loss, dA, dP], [expected_loss, expected_dA, expected_dP]
    assert 0 < workspace_of(library_calls[-1]) <= limit  # the call ran under the limit
    for g, e in zip(got, expected):
        assert np.asarray(g).dtype == dtype
        ref.assert_matches(g, e, dtype)
    # The same results as the unlimited call, to rounding.
    for g, u in zip(got, [unlimited[0], unlimited[1]] if similarity else [unlimited[0], *unlimited[1]]):
        ref.assert_matches(g, u, dtype)


def test_same_limit_is_bitwise_reproducible():
    targets, column_targets, A, P, weights, _ = case("multilabels", np.float32, columns=True)
    runs = [npairs.npairs_embeddings_loss(targets, A, P, column_labels=column_targets, sample_weight=weights,
                                          backend="cpu", workspace_limit=COLUMN_TILE_LIMIT, return_grads=True)
            for _ in range(2)]
    assert runs[0][0] == runs[1][0]
    for g0, g1 in zip(runs[0][1], runs[1][1]):
        assert np.array_equal(g0, g1)


def test_limit_reaches_the_library(limit_settings):
    targets, _, A, P, _, _ = case("labels", np.float64, columns=False)
    S = A @ P.T
    assert npairs.get_workspace_limit() == 0
    try:
        npairs.set_workspace_limit(1 << 20)
        assert npairs.get_workspace_limit() == 1 << 20
        npairs.npairs_loss(targets, S)
        assert limit_settings == [1 << 20]
        npairs.npairs_loss(targets, S)  # unchanged: the context is not asked again
        assert limit_settings == [1 << 20]
        npairs.npairs_embeddings_loss(targets, A, P, workspace_limit=4096)  # per call
        npairs.NpairsLoss(workspace_limit=8192)(targets, S)
        npairs.npairs_multilabel_loss(np.eye(5)[targets % 5], S, workspace_limit=0)  # 0: no limit for this call
        assert limit_settings == [1 << 20, 4096, 8192, 0]
    finally:
        npairs.set_workspace_limit(0)
    npairs.npairs_loss(targets, S, workspace_limit=np.int64(512 * 1024))  # NumPy integers are integers
    npairs.npairs_loss(targets, S)
    assert limit_settings[-2:] == [512 * 1024, 0]  # back to none


def test_too_small_limit_raises_out_of_memory_naming_it():
    targets, _, A, P, _, _ = case("labels", np.float64, columns=False)
    expected = npairs.npairs_embeddings_loss(targets, A, P, backend="cpu")
    with pytest.raises(npairs.OutOfMemoryError, match=r"workspace limit \(100 bytes\) is below the smallest "
                                                      r"workspace this call can use \(\d+ bytes\)") as info:
        npairs.npairs_embeddings_loss(targets, A, P, backend="cpu", workspace_limit=100)
    assert isinstance(info.value, MemoryError) and info.value.status == _lib.ERROR_OUT_OF_MEMORY
    with pytest.raises(npairs.OutOfMemoryError, match=r"\(200 bytes\)"):
        npairs.NpairsMultilabelLoss(workspace_limit=200)(np.eye(5)[targets % 5], A @ P.T)
    # The context stays usable, with the same result as before.
    assert npairs.npairs_embeddings_loss(targets, A, P, backend="cpu") == expected


@pytest.mark.parametrize("value", [-1, 1.5, "4096", True, 2**64])
def test_bad_limits_raise_before_any_call(library_calls, limit_settings, value):
    targets, _, A, P, _, _ = case("labels", np.float64, columns=False)
    calls = [
        lambda: npairs.npairs_loss(targets, A @ P.T, workspace_limit=value),
        lambda: npairs.npairs_multilabel_loss(np.eye(5)[targets % 5], A @ P.T, workspace_limit=value),
        lambda: npairs.npairs_embeddings_loss(targets, A, P, workspace_limit=value),
        lambda: npairs.NpairsLoss(workspace_limit=value),
        lambda: npairs.NpairsMultilabelLoss(workspace_limit=value),
        lambda: npairs.NpairsEmbeddingsLoss(workspace_limit=value),
        lambda: npairs.set_workspace_limit(value),
    ]
    for call in calls:
        with pytest.raises(npairs.InvalidArgumentError, match="workspace_limit must be an integer number of bytes"):
            call()
    assert library_calls == [] and limit_settings == []
    assert npairs.get_workspace_limit() == 0


@pytest.mark.parametrize("cls,args", [
    (npairs.NpairsLoss, ()),
    (npairs.NpairsMultilabelLoss, ()),
    (npairs.NpairsEmbeddingsLoss, ()),
])
def test_config_round_trip(cls, args):
    assert cls().get_config()["workspace_limit"] is None  # the package-level setting
    loss = cls(workspace_limit=65536, threads=1)
    config = loss.get_config()
    assert config["workspace_limit"] == 65536
    json.dumps(config)
    again = cls.from_config(config)
    assert again == loss and again.workspace_limit == 65536
    assert "workspace_limit=65536" in repr(loss)


def test_class_call_streams_with_its_limit(library_calls):
    targets, _, A, P, weights, T = case("labels", np.float64, columns=False)
    loss = npairs.NpairsEmbeddingsLoss(temperature=0.5, backend="cpu", workspace_limit=COLUMN_TILE_LIMIT)(
        targets, A, P, weights)
    assert workspace_of(library_calls[-1]) <= COLUMN_TILE_LIMIT < workspace_of(library_calls[-1], 0)
    expected, _, _, _ = ref.loss_and_grads(T, A=A, P=P, temperature=0.5, weights=weights)
    ref.assert_matches(loss, expected, np.float64)


# ---------------------------------------------------------------------------
# npairs.torch


def _torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reduction", ["none", "sum_over_batch_size"])
@pytest.mark.parametrize("weight_grad", [False, True])
def test_torch_embeddings_module_with_limit(library_calls, dtype, reduction, weight_grad):
    torch = _torch()
    import npairs.torch as nt

    targets, column_targets, A, P, weights, _ = case("labels", np.float64, columns=True)
    labels, columns = torch.as_tensor(targets), torch.as_tensor(column_targets)
    results = []
    for limit in (None, COLUMN_TILE_LIMIT, ROW_BLOCK_LIMIT):
        a = torch.tensor(A, dtype=getattr(torch, dtype), requires_grad=True)
        p = torch.tensor(P, dtype=getattr(torch, dtype), requires_grad=True)
        w = torch.tensor(weights, dtype=getattr(torch, dtype), requires_grad=weight_grad)
        module = nt.NpairsEmbeddingsLoss(reg_lambda=0.0 if reduction == "none" else 0.01, temperature=0.4,
                                         reduction=reduction, backend="cpu", workspace_limit=limit)
        loss = module(labels, a, p, w, column_labels=columns)
        (loss.sum() if reduction == "none" else loss).backward()
        if limit is not None and reduction != "none":
            # Scalar reductions ask for dA and dP, whose logits are the library's own
            # scratch: the limit cuts them into pieces. ('none' asks for dL/dS, written into
            # its output buffer, so the workspace is small anyway.)
            assert workspace_of(library_calls[-1]) <= limit < workspace_of(library_calls[-1], 0)
        results.append([x.detach().numpy() for x in (loss, a.grad, p.grad, w.grad) if x is not None])
    for streamed in results[1:]:
        assert len(streamed) == len(results[0])
        for got, expected in zip(streamed, results[0]):
            ref.assert_matches(got, expected, getattr(np, dtype))


def test_torch_similarity_modules_and_functions_with_limit(limit_settings):
    torch = _torch()
    import npairs.torch as nt

    targets, _, A, P, _, _ = case("multilabels", np.float64, columns=False)
    multi = torch.as_tensor(targets)
    results = []
    for limit in (0, COLUMN_TILE_LIMIT):
        s = torch.tensor(A @ P.T, requires_grad=True)
        loss = nt.NpairsMultilabelLoss(temperature=0.3, workspace_limit=limit)(multi, s)
        loss.backward()
        results.append((loss.detach().numpy(), s.grad.numpy()))
    for got, expected in zip(results[1], results[0]):
        ref.assert_matches(got, expected, np.float64)
    labels = torch.as_tensor(ref.random_labels(np.random.default_rng(3), R, CLASSES))
    s = torch.tensor(A @ P.T, requires_grad=True)
    nt.npairs_loss(labels, s, workspace_limit=32768).backward()
    nt.NpairsLoss(workspace_limit=16384)(labels, s)
    nt.npairs_embeddings_loss(labels, torch.as_tensor(A), torch.as_tensor(P), workspace_limit=8192)
    assert limit_settings == [COLUMN_TILE_LIMIT, 32768, 16384, 8192]
    assert "workspace_limit=16384" in repr(nt.NpairsLoss(workspace_limit=16384))


def test_torch_too_small_and_bad_limits():
    torch = _torch()
    import npairs.torch as nt

    targets, _, A, P, _, _ = case("labels", np.float64, columns=False)
    labels, a, p = torch.as_tensor(targets), torch.tensor(A, requires_grad=True), torch.as_tensor(P)
    with pytest.raises(npairs.OutOfMemoryError, match=r"workspace limit \(64 bytes\)"):
        nt.NpairsEmbeddingsLoss(workspace_limit=64)(labels, a, p)
    for value in (-5, 2.0, False):
        with pytest.raises(npairs.InvalidArgumentError, match="workspace_limit"):
            nt.NpairsLoss(workspace_limit=value)
        with pytest.raises(npairs.InvalidArgumentError, match="workspace_limit"):
            nt.npairs_embeddings_loss(labels, a, p, workspace_limit=value)
    # npairs' functions hand a tensor that requires grad to npairs.torch, limit included.
    with pytest.raises(npairs.OutOfMemoryError, match=r"\(64 bytes\)"):
        npairs.npairs_embeddings_loss(labels, a, p, workspace_limit=64)
