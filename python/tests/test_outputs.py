"""Where outputs go: caller-given arrays (grad_out=, grads_out=), in place, and reused memory (issue 11).

The data pointers that reach the library are read from the npairs_loss
call itself (conftest's library_calls), so that a hidden copy shows.
"""

import gc

import numpy as np
import pytest

import npairs
from npairs import _arrays
from npairs_reference import assert_matches, loss_and_grads, targets_from_labels

R, M, D = 600, 700, 8  # an R x M float32 gradient is over the pool's 1 MiB threshold
rng = np.random.default_rng(11)
LABELS = rng.integers(0, 50, size=R)
COLUMNS = np.concatenate([np.arange(50), rng.integers(0, 50, size=M - 50)])
S = rng.standard_normal((R, M)).astype(np.float32)
A = rng.standard_normal((R, D))
P = rng.standard_normal((M, D))


def test_grad_out_is_what_the_library_writes(library_calls):
    out = np.full_like(S, np.nan)
    loss, grad = npairs.npairs_loss(LABELS, S, column_labels=COLUMNS, return_grad=True, grad_out=out)
    assert grad is out
    (call,) = library_calls
    assert call.grads.similarity == out.ctypes.data and call.problem.similarity == S.ctypes.data
    ref_loss, ref_dS, _, _ = loss_and_grads(targets_from_labels(LABELS, COLUMNS), S)
    assert_matches(loss, ref_loss, np.float32)
    assert_matches(out, ref_dS, np.float32)


def test_grad_out_over_y_pred_computes_in_place(library_calls):
    S2 = S.copy()
    expected = npairs.npairs_loss(LABELS, S, column_labels=COLUMNS, temperature=0.7, return_grad=True)
    loss, grad = npairs.npairs_loss(LABELS, S2, column_labels=COLUMNS, temperature=0.7, return_grad=True,
                                    grad_out=S2)
    assert grad is S2 and library_calls[-1].grads.similarity == library_calls[-1].problem.similarity == S2.ctypes.data
    assert loss == expected[0] and np.array_equal(S2, expected[1])


def test_grads_out_of_embeddings(library_calls):
    ga, gp = np.empty_like(A), np.empty_like(P)
    loss, (dA, dP) = npairs.npairs_embeddings_loss(LABELS, A, P, column_labels=COLUMNS, reg_lambda=0.1,
                                                   return_grads=True, grads_out=(ga, None))
    assert dA is ga and dP is not gp
    assert library_calls[0].grads.anchors == ga.ctypes.data
    ref = loss_and_grads(targets_from_labels(LABELS, COLUMNS), A=A, P=P, reg_lambda=0.1)
    assert_matches(dA, ref[2], np.float64)
    assert_matches(dP, ref[3], np.float64)


@pytest.mark.parametrize("out,message", [
    (np.empty((R, M), np.float64), "dtype float64"),
    (np.empty((R, M + 1), np.float32), r"shape \[600, 701\]"),
    (np.empty((M, R), np.float32).T, "not C-contiguous"),
    ([[0.0] * M] * R, "got list"),
])
def test_a_wrong_grad_out_is_named(library_calls, out, message):
    with pytest.raises(npairs.InvalidArgumentError, match=f"grad_out must be a C-contiguous.*{message}"):
        npairs.npairs_loss(LABELS, S, column_labels=COLUMNS, return_grad=True, grad_out=out)
    assert not library_calls


def test_grad_out_errors_leave_it_untouched(library_calls):
    read_only = np.zeros_like(S)
    read_only.flags.writeable = False
    with pytest.raises(npairs.InvalidArgumentError, match="not writable"):
        npairs.npairs_loss(LABELS, S, column_labels=COLUMNS, return_grad=True, grad_out=read_only)
    out = np.zeros_like(S)
    with pytest.raises(npairs.InvalidArgumentError, match="return_grad is False"):
        npairs.npairs_loss(LABELS, S, column_labels=COLUMNS, grad_out=out)
    overlapping = np.zeros((R + M, D))
    with pytest.raises(npairs.InvalidArgumentError, match=r"grads_out\[0\] overlaps anchors"):
        npairs.npairs_embeddings_loss(LABELS, overlapping[:R], overlapping[R:], column_labels=COLUMNS,
                                      return_grads=True, grads_out=(overlapping[R - 1:2 * R - 1], None))
    with pytest.raises(npairs.InvalidArgumentError, match="grads_out must be a pair"):
        npairs.npairs_embeddings_loss(LABELS, A, P, column_labels=COLUMNS, return_grads=True, grads_out=(out,))
    assert not library_calls and not out.any()


def test_a_freed_gradients_memory_is_reused_and_a_held_one_never(library_calls):
    npairs.empty_cache()
    first = npairs.npairs_loss(LABELS, S, column_labels=COLUMNS, return_grad=True)[1]
    view = first[10:20]  # a view keeps the whole block
    del first
    gc.collect()
    second = npairs.npairs_loss(LABELS, S, column_labels=COLUMNS, return_grad=True)[1]
    held = library_calls[0].grads.similarity
    assert library_calls[1].grads.similarity != held
    expected = second.copy()
    del second, view
    gc.collect()
    third = npairs.npairs_loss(LABELS, S, column_labels=COLUMNS, return_grad=True)[1]
    assert library_calls[2].grads.similarity in (held, library_calls[1].grads.similarity)
    assert np.array_equal(third, expected)
    del third
    gc.collect()
    assert _arrays._pool.free_bytes() >= S.nbytes
    npairs.empty_cache()
    assert _arrays._pool.free_bytes() == 0


def test_torch_outputs_come_from_the_pool_and_views_hold_them(library_calls):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    import npairs.torch as nt

    npairs.empty_cache()
    St = torch.from_numpy(S).requires_grad_()
    labels, columns = torch.from_numpy(LABELS), torch.from_numpy(COLUMNS)
    (grad,) = torch.autograd.grad(nt.npairs_loss(labels, St, column_labels=columns), [St])
    assert grad.data_ptr() == library_calls[0].grads.similarity  # the library's output, handed out as it is
    row = grad[3]
    del grad
    gc.collect()
    (grad,) = torch.autograd.grad(nt.npairs_loss(labels, St, column_labels=columns), [St])
    assert library_calls[1].grads.similarity != library_calls[0].grads.similarity  # row still holds it
    assert torch.equal(row, grad[3])
