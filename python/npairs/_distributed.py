"""The N-pairs loss of a batch sharded across the ranks of a torch.distributed process group (issue #14).

Each rank holds a shard of the global batch: its labels, anchors and
positives. Its rows are its own anchors; its columns are the positives of
every rank, with their labels, so the loss of every rank's rows together is
the loss of the concatenated batch. Two strategies bring the columns to the
rows:

- ``"all_gather"``: the positives and their labels are gathered (padded to
  the largest shard, as gloo and NCCL gather equal sizes), this rank's rows
  against all of them are one rectangular library call with column targets
  (streamed under ``workspace_limit``), and the gradient of the gathered
  positives goes back to their owners by a reduce-scatter (sum).
- ``"ring"`` (Inf-CL): blocks of positives (with their labels) travel
  around the ring of ranks with batch_isend_irecv, the next block in flight
  while this one is computed; the forward pass merges each block's per-row
  statistics (npairs_block_stats: running max, sum of exponentials, target
  terms), the backward pass sends the blocks around again and each block's
  gradient on with it to its owner (npairs_block_gradients from the final
  statistics), so no rank holds more than its own rows and two blocks.

Faults. Before any collective whose shapes depend on the data, the ranks
agree on a status with one fixed-size all_gather: every rank's own argument
check, shard size and metadata (width, dtype, device, multi-label width,
options). After the library call they agree again (that exchange also
carries the loss shares, which gives ``global_loss`` at no extra cost), so a
failing rank never leaves the others waiting in a collective: every rank
raises the same error, naming the rank.
"""

from __future__ import annotations

import ctypes

import torch
import torch.distributed as dist
from torch import nn

from . import _arrays, _core, _lib
from . import errors
from . import torch as _nt

_STRATEGIES = ("all_gather", "ring")
_NAMES = {
    "targets": "labels",
    "column_targets": "labels",
    "similarity": "similarity",
    "anchors": "anchors",
    "positives": "positives",
    "sample_weight": "sample_weight",
}
_DTYPES = ("float16", "bfloat16", "float32", "float64")
_REDUCTION_CODES = {"none": 0, "sum": 1, "sum_over_batch_size": 2}

# Exceptions travel between ranks as an index into this tuple (0: none; the
# last entry stands for any exception that is not an NpairsError), with
# their message as bytes.
_ERROR_CLASSES = (None, errors.InvalidArgumentError, errors.InvalidDTypeError, errors.InvalidValueError,
                  errors.UnsupportedError, errors.OutOfMemoryError, errors.BackendUnavailableError,
                  errors.DeviceError, errors.InternalError, errors.NpairsError, RuntimeError)
_MESSAGE_BYTES = 400


def _error_code(error):
    if error is None:
        return 0
    for code, cls in enumerate(_ERROR_CLASSES[1:-1], start=1):
        if type(error) is cls:
            return code
    return len(_ERROR_CLASSES) - 1


def _message_of(error):
    text = str(error) if isinstance(error, errors.NpairsError) else f"{type(error).__name__}: {error}"
    data = text.encode("utf-8", "replace")
    if len(data) > _MESSAGE_BYTES:
        data = data[:_MESSAGE_BYTES - 3] + "...".encode()
    return data


class _Group:
    """The process group of a call: its size, this rank, and the device its collectives use."""

    def __init__(self, group):
        if not dist.is_available() or not dist.is_initialized():
            raise errors.InvalidArgumentError(
                "DistributedNpairsEmbeddingsLoss needs an initialised torch.distributed process group "
                "(torch.distributed.init_process_group, e.g. under torchrun)")
        self.group = group if group is not None else dist.group.WORLD
        self.size = dist.get_world_size(self.group)
        self.rank = dist.get_rank(self.group)
        self.backend = str(dist.get_backend(self.group)).lower()
        # NCCL communicates CUDA tensors only; gloo CPU tensors.
        self.device = torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" \
            else torch.device("cpu")

    def global_rank(self, rank):
        """The default group's rank of this group's `rank` (what reduce's dst and send's peer name)."""
        if self.group is dist.group.WORLD:
            return rank
        get = getattr(dist, "get_global_rank", None) or dist.distributed_c10d._get_global_rank
        return get(self.group, rank)

    def all_gather_rows(self, local):
        """[size, *local.shape]: every rank's tensor of this shape, on this device (one all_gather)."""
        out = local.new_empty((self.size,) + tuple(local.shape))
        dist.all_gather(list(out.unbind(0)), local.contiguous(), group=self.group)
        return out

    def agree(self, error, values=()):
        """Every rank's (values, error) after one fixed-size all_gather: [size, len(values)] float64 on the host.

        Raises on every rank when any rank passed an error, naming the ranks
        that failed and the first one's message (the class of the first).
        """
        row = torch.zeros(2 + len(values) + _MESSAGE_BYTES, dtype=torch.float64)
        row[0] = _error_code(error)
        if values:
            row[2:2 + len(values)] = torch.tensor([float(v) for v in values], dtype=torch.float64)
        if error is not None:
            message = _message_of(error)
            row[1] = len(message)
            row[2 + len(values):2 + len(values) + len(message)] = torch.tensor(list(message), dtype=torch.float64)
        table = self.all_gather_rows(row.to(self.device)).cpu()
        failed = [r for r in range(self.size) if table[r, 0] != 0]
        if failed:
            first = failed[0]
            length = int(table[first, 1])
            message = bytes(int(b) for b in table[first, 2 + len(values):2 + len(values) + length]).decode(
                "utf-8", "replace")
            others = f" (ranks {', '.join(map(str, failed))} failed)" if len(failed) > 1 else ""
            text = f"rank {first} of the process group: {message}{others}"
            cls = _ERROR_CLASSES[int(table[first, 0])]
            exc = cls(text) if not issubclass(cls, errors.NpairsError) else cls(text, cls.status)
            raise exc from error
        return table[:, 2:2 + len(values)]


class _Shard:
    """This rank's inputs, checked as the library's Python layer checks a call, before any data collective."""

    def __init__(self, cfg, labels, anchors, positives, sample_weight):
        for name, x in (("anchors", anchors), ("positives", positives)):
            if not torch.is_tensor(x):
                raise errors.InvalidArgumentError(f"{name} must be a torch tensor, got {type(x).__name__}")
        if anchors.ndim == 2 and positives.ndim == 2 and anchors.shape[0] != positives.shape[0]:
            raise errors.InvalidArgumentError(
                f"anchors has {anchors.shape[0]} rows but positives has {positives.shape[0]}: a rank's shard "
                "holds one positive per anchor")
        p = _core._prepare(targets=labels, column_targets=None, multilabel=cfg.multilabel, embeddings=True,
                           similarity=None, anchors=anchors, positives=positives, sample_weight=sample_weight,
                           grad_loss=None, reduction=cfg.reduction, temperature=cfg.temperature, reg_lambda=0.0,
                           backend=cfg.backend, names=_NAMES, host_half_as_float32=True,
                           weights_as_grad_loss=False)
        self.rows, self.dim, self.classes = p.R, p.D, p.K
        self.dtype = _arrays._torch_dtype(torch, p.out_dtype)
        self.dtype_code = _DTYPES.index(_arrays.dtype_name(p.out_dtype))
        self.device = anchors.device
        if self.device != positives.device:
            raise errors.InvalidArgumentError(
                f"anchors is on {anchors.device} but positives is on {positives.device}; put them on one device")
        # The columns' targets as they travel: int64 labels, or multi-hot rows in the compute dtype.
        targets = torch.as_tensor(labels, device=self.device)
        self.column_targets = targets.reshape(self.rows, self.classes).to(self.dtype) if cfg.multilabel \
            else targets.reshape(-1).to(torch.int64)


class DistributedNpairsEmbeddingsLoss(nn.Module):
    """The N-pairs loss of the global batch, each rank passing its shard: ``loss_fn(labels, anchors, positives)``.

    ``DistributedNpairsEmbeddingsLoss(reg_lambda=0.0, temperature=1.0, reduction="sum_over_batch_size",
    multilabel=False, group=None, strategy="all_gather", backend="auto", workspace_limit=0)``.

    ``forward(labels, anchors, positives, sample_weight=None)`` takes this
    rank's shard: labels [R_r] (or multi-hot [R_r, K] with
    ``multilabel=True``), anchors and positives [R_r, D], and optional
    weights of its rows. Shard sizes may differ between ranks.

    Semantics:

    - Rows are this rank's anchors; columns are the positives of every rank,
      with their labels (a class whose only positive is on another rank is
      fine).
    - The gradient that reaches each rank's inputs is that of the sum over
      ranks of the values returned (what
      ``torch.distributed.nn.functional.all_gather`` gives autograd); every
      rank must call backward, as for any collective.
    - Scalar reductions ('sum', 'sum_over_batch_size') return this rank's
      share of the global-batch loss times the world size, so that the mean
      over ranks is the loss of the concatenated batch, L2 term included
      (``0.25 * reg_lambda * (mean |a|^2 + mean |p|^2)`` over the global
      batch), and under DistributedDataParallel, which averages gradients,
      training equals one process training on the concatenated batch.
      'none' returns this rank's rows' losses, equal to those rows of the
      single-process result.
    - ``global_loss`` (a float, after each forward) is the loss of the
      concatenated batch for the scalar reductions (None for 'none'); it
      rides on the status exchange that the call makes anyway.

    strategy: ``"all_gather"`` (the positives gathered on every rank; the
    gradients of the gathered positives reduce-scattered to their owners)
    or ``"ring"`` (Inf-CL: blocks of positives travel around the ring, so no
    rank holds them all; its block calls run on CPU tensors and on float32
    or float64 CUDA tensors: 16-bit CUDA tensors raise UnsupportedError on
    every rank in this version). group: a
    torch.distributed process group (None: the default one): gloo with CPU
    tensors, NCCL with CUDA tensors.
    workspace_limit: bytes of library workspace per call (0: none; None:
    npairs.get_workspace_limit()).

    Any rank's invalid data (a row without a positive among all columns, a
    negative multi-label entry) or shards that disagree (width, dtype,
    device, multi-label width, options, whether anchors and positives need
    gradients)
    make every rank raise the same error, naming the rank; none is left
    waiting in a collective.
    """

    def __init__(self, reg_lambda=0.0, temperature=1.0, reduction="sum_over_batch_size", multilabel=False,
                 group=None, strategy="all_gather", backend="auto", workspace_limit=0):
        super().__init__()
        self._cfg = _nt._Config(bool(multilabel), True, reduction, temperature, reg_lambda, backend,
                                workspace_limit=workspace_limit)
        if strategy not in _STRATEGIES:
            raise errors.InvalidArgumentError(f"strategy must be 'all_gather' or 'ring', got {strategy!r}")
        self.reg_lambda = self._cfg.reg_lambda
        self.temperature = self._cfg.temperature
        self.reduction = self._cfg.reduction
        self.multilabel = bool(multilabel)
        self.group = group
        self.strategy = strategy
        self.backend = backend
        self.workspace_limit = self._cfg.workspace_limit
        self.global_loss = None

    def forward(self, labels, anchors, positives, sample_weight=None):
        cfg = self._cfg
        group = _Group(self.group)
        weight = _nt._weight(sample_weight, anchors)
        grad_mode = torch.is_grad_enabled()
        grad_anchors = grad_mode and torch.is_tensor(anchors) and anchors.requires_grad
        grad_positives = grad_mode and torch.is_tensor(positives) and positives.requires_grad
        shard, error = None, None
        try:
            shard = _Shard(cfg, labels, anchors, positives, weight)
            if group.backend == "nccl" and shard.device.type != "cuda":
                raise errors.InvalidArgumentError(
                    f"the process group's backend is NCCL, which communicates CUDA tensors, but anchors is on "
                    f"{shard.device}")
            if self.strategy == "ring" and shard.device.type == "cuda" and \
                    shard.dtype in (torch.float16, torch.bfloat16):
                # Before any collective, not from the first block call in the ring.
                raise errors.UnsupportedError(
                    f"strategy='ring' on CUDA tensors computes float32 and float64 in this version (CUDA column "
                    f"blocks keep 16-bit running statistics in float32), but anchors is {shard.dtype}: use float32 "
                    f"or strategy='all_gather'")
        except Exception as e:  # reported to every rank by agree
            error = e
        options = (_REDUCTION_CODES[cfg.reduction], cfg.temperature, cfg.reg_lambda, cfg.multilabel,
                   _STRATEGIES.index(self.strategy), grad_anchors, grad_positives)
        meta = (0, 0, 0, 0, 0) if shard is None else \
            (shard.rows, shard.dim, shard.dtype_code, shard.device.type == "cuda", shard.classes)
        table = group.agree(error, meta + options)
        _check_agreement(table)
        sizes = [int(n) for n in table[:, 0]]
        # Whether backward communicates, the same on every rank: the all_gather strategy's reduce-scatter
        # carries the positives' gradients; the ring's backward needs every block for either gradient.
        collective = grad_positives if self.strategy == "all_gather" else grad_anchors or grad_positives
        state = _State(cfg, group, shard, sizes, weight, collective)
        l2 = None
        if cfg.reg_lambda > 0:
            # The L2 term of the global batch is 0.25 reg (sum |a|^2 + sum |p|^2) / N over every rank's rows:
            # this rank's share times the world size, as the rest of the value returned.
            a, p = anchors.to(shard.dtype), positives.to(shard.dtype)
            l2 = 0.25 * cfg.reg_lambda * (a.pow(2).sum() + p.pow(2).sum()) * (group.size / max(state.total, 1))
            state.l2_share = float(l2.detach()) / group.size
        function = _AllGatherLoss if self.strategy == "all_gather" else _RingLoss
        loss = function.apply(state, anchors.to(shard.dtype), positives.to(shard.dtype), weight)
        self.global_loss = state.global_loss
        return loss if l2 is None else loss + l2

    def extra_repr(self):
        return f"reg_lambda={self.reg_lambda}, temperature={self.temperature}, reduction={self.reduction!r}, " \
               f"strategy={self.strategy!r}" + _nt._limit_repr(self.workspace_limit)


_FIELDS = ("embedding width (D)", "dtype", "device type (CUDA or not)", "multi-label width (K)", "reduction",
           "temperature", "reg_lambda", "multilabel", "strategy", "whether anchors require grad",
           "whether positives require grad")


def _check_agreement(table):
    """Every rank compares every rank's metadata with rank 0's: the same error everywhere, no collective."""
    for field, column in zip(_FIELDS, range(1, table.shape[1])):
        values = table[:, column]
        for rank in range(1, table.shape[0]):
            if values[rank] != values[0]:
                def show(v):
                    if field == "dtype":
                        return _DTYPES[int(v)]
                    if field == "reduction":
                        return next(k for k, c in _REDUCTION_CODES.items() if c == int(v))
                    if field == "strategy":
                        return _STRATEGIES[int(v)]
                    flags = ("multilabel", "whether anchors require grad", "whether positives require grad",
                             "device type (CUDA or not)")
                    return repr(bool(v)) if field in flags else f"{float(v):g}"
                raise errors.InvalidArgumentError(
                    f"rank {rank}'s shard disagrees with rank 0's in its {field}: {show(values[rank])} on rank "
                    f"{rank}, {show(values[0])} on rank 0; every rank must pass the same width, dtype, device "
                    "type and options")


class _State:
    """What a distributed call knows once the ranks agree: the shards' sizes and this rank's inputs."""

    def __init__(self, cfg, group, shard, sizes, weight, collective_backward):
        self.cfg, self.group, self.shard, self.sizes = cfg, group, shard, sizes
        self.total = sum(sizes)
        self.offset = sum(sizes[:group.rank])
        self.weight = weight
        self.collective_backward = collective_backward  # agreed by every rank
        self.l2_share = 0.0
        self.global_loss = None
        # 'sum' returns world x this rank's sum; 'sum_over_batch_size' divides the global sum by N.
        self.scale = {"none": 1.0, "sum": float(group.size),
                      "sum_over_batch_size": group.size / max(self.total, 1)}[cfg.reduction]

    def row_weights(self, like):
        """The weights of this rank's rows times the reduction's scale: what the library's call is handed."""
        if self.cfg.reduction == "none":
            return None if self.weight is None else self.weight.detach()
        w = torch.full((self.shard.rows,), self.scale, dtype=like.dtype, device=like.device)
        return w if self.weight is None else w * self.weight.detach().reshape(-1).to(w)

    def finish(self, rows, error):
        """The loss returned, after every rank agreed that its call succeeded (their shares give global_loss)."""
        loss = None
        if error is None:
            w = self.row_weights(rows)
            loss = (rows * w).sum() if self.cfg.reduction != "none" else rows if w is None \
                else rows * w.reshape(-1).to(rows)
        share = float(loss.detach()) / self.group.size if loss is not None and loss.ndim == 0 else 0.0
        table = self.group.agree(error, (share + self.l2_share,))
        if self.cfg.reduction != "none":
            self.global_loss = float(table[:, 0].sum())
        return loss

    def row_grad_loss(self, grad_output):
        """The upstream gradient of each row for a library call with reduction 'none' and no weights."""
        w = self.row_weights(grad_output)
        g = grad_output.reshape(-1) if self.cfg.reduction == "none" else grad_output.reshape(())
        return (g if w is None else g * w.reshape(-1).to(g)).contiguous()

    def weight_gradient(self, grad_output, rows):
        """dL/dw of this rank's rows: the unweighted row losses times the upstream gradient and the scale."""
        if self.weight is None or not self.weight.requires_grad:
            return None
        g = grad_output * rows * (self.scale if self.cfg.reduction != "none" else 1.0)
        shape = self.weight.shape
        return (g.sum() if len(shape) == 0 else g).reshape(shape).to(self.weight.dtype)

    def padded(self, x):
        """x [R_r, ...] padded with zeros to the largest shard's rows."""
        most = max(self.sizes)
        if x.shape[0] == most:
            return x.contiguous()
        out = x.new_zeros((most,) + tuple(x.shape[1:]))
        out[:x.shape[0]] = x
        return out

    def gather(self, x):
        """Every rank's x [R_q, ...] concatenated in rank order: [N, ...]."""
        table = self.group.all_gather_rows(self.padded(x))
        if all(n == table.shape[1] for n in self.sizes):
            return table.reshape((self.total,) + tuple(x.shape[1:]))
        return torch.cat([table[q, :n] for q, n in enumerate(self.sizes)])

    def reduce_scatter(self, x):
        """The sum over ranks of x [N, ...] (rank order), each rank keeping its own rows [R_r, ...]."""
        most, group = max(self.sizes), self.group
        table = x.new_zeros((group.size, most) + tuple(x.shape[1:]))
        start = 0
        for q, n in enumerate(self.sizes):
            table[q, :n] = x[start:start + n]
            start += n
        if group.backend == "nccl":
            out = table.new_empty(table.shape[1:])
            reduce_scatter = getattr(dist, "reduce_scatter_tensor", None) or dist._reduce_scatter_base
            reduce_scatter(out, table, group=group.group)
        else:  # gloo has no reduce-scatter: one reduce per owner, the same traffic
            for q in range(group.size):
                dist.reduce(table[q], dst=group.global_rank(q), group=group.group)
            out = table[group.rank]
        return out[:self.shard.rows]


def _call(state, anchors, positives, column_targets, *, weights, want_grads, grad_loss=None):
    """This rank's rows against the given columns: one library call (reduction 'none', unweighted row losses)."""
    cfg = state.cfg
    return _nt._call(cfg, state.shard.column_targets, column_targets, weights, None, anchors, positives,
                     want_grads=want_grads, reduction="none", reg_lambda=0.0,
                     weights_as_grad_loss=grad_loss is None, grad_loss=grad_loss)


class _AllGatherLoss(torch.autograd.Function):
    """apply(state, anchors, positives, weight): this rank's value, without the L2 term."""

    @staticmethod
    def forward(ctx, state, anchors, positives, weight):
        columns = state.gather(positives.detach())
        column_targets = state.gather(state.shard.column_targets)
        scalar = state.cfg.reduction != "none"
        want = ("anchors", "positives") if scalar and any(ctx.needs_input_grad[1:3]) else ()
        rows, grads, error = None, {}, None
        try:
            # The gradients (of sum_i scale w_i loss_i) come with the loss for scalar reductions;
            # for 'none' they depend on the upstream gradient, so backward asks for them.
            rows, grads = _call(state, anchors.detach(), columns, column_targets, weights=state.row_weights(anchors),
                                want_grads=want)
        except Exception as e:  # reported to every rank by finish
            error = e
        loss = state.finish(rows, error)
        ctx.state = state
        ctx.save_for_backward(anchors, columns, column_targets, rows, grads.get("anchors"), grads.get("positives"))
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        state = ctx.state
        anchors, columns, column_targets, rows, grad_anchors, grad_columns = ctx.saved_tensors
        if state.cfg.reduction == "none":
            error = None
            try:
                _, grads = _call(state, anchors.detach(), columns, column_targets, weights=state.row_weights(anchors),
                                 want_grads=("anchors", "positives"), grad_loss=grad_output.detach().contiguous())
                grad_anchors, grad_columns = grads["anchors"], grads["positives"]
            except Exception as e:
                error = e
            if state.collective_backward:
                state.group.agree(error)
            elif error is not None:
                raise error
        else:
            g = grad_output.to(rows.dtype)
            grad_anchors = None if grad_anchors is None else grad_anchors * g
            grad_columns = None if grad_columns is None else grad_columns * g
        grad_positives = None
        if state.collective_backward:
            grad_positives = state.reduce_scatter(grad_columns)
        return None, grad_anchors if ctx.needs_input_grad[1] else None, grad_positives, \
            state.weight_gradient(grad_output, rows)


# ---------------------------------------------------------------------------
# The ring (Inf-CL)


def _block_call(state, anchors, block, block_targets, stats, *, rows=False, grad_loss=None, want_grads=()):
    """npairs_block_stats (grad_loss None: merges into stats; rows: returns the row losses) or
    npairs_block_gradients (returns {name: gradient}) for this rank's rows against one block of columns.

    The inputs are checked and converted by the core's _prepare, as for npairs_loss; no sample_weight
    (the rows' weights and the reduction's scale travel in grad_loss).
    """
    cfg = state.cfg
    names = dict(_NAMES, targets="multilabels", column_targets="multilabels") if cfg.multilabel else _NAMES
    p = _core._prepare(targets=state.shard.column_targets, column_targets=block_targets, multilabel=cfg.multilabel,
                       embeddings=True, similarity=None, anchors=anchors, positives=block, sample_weight=None,
                       grad_loss=grad_loss, reduction="none", temperature=cfg.temperature, reg_lambda=0.0,
                       backend=cfg.backend, names=names, host_half_as_float32=True, weights_as_grad_loss=False)
    ctx = _core.prepared_context(p, torch.get_num_threads() if cfg.threads is None else cfg.threads,
                                 _core.get_workspace_limit() if cfg.workspace_limit is None else cfg.workspace_limit)
    opts, prob = _core.call_structs(p)
    stats_ptr = _arrays.wrap("row_stats", stats).pointer()
    raise_for = _core._raiser(dict(_NAMES, **names), cfg.multilabel)
    if grad_loss is None:
        loss = _core._output(p, "loss", (p.R,)) if rows else None
        raise_for(_lib.function("npairs_block_stats")(ctx.handle, ctypes.byref(opts), ctypes.byref(prob), stats_ptr,
                                                      loss.pointer() if loss is not None else None))
        return _core._finish(loss, p.out_dtype)
    grads, gstruct = _core.gradient_outputs(p, want_grads)
    raise_for(_lib.function("npairs_block_gradients")(ctx.handle, ctypes.byref(opts), ctypes.byref(prob), stats_ptr,
                                                      p.G.pointer(), ctypes.byref(gstruct)))
    return {name: _core._finish(out, p.out_dtype) for name, out in grads.items()}


def _empty_stats(rows, like):
    """Row statistics before the first block: {-inf, 0, 0, 0} per row (npairs.h, column blocks), in the dtype the
    library computes in (float32 for 16-bit host tensors)."""
    half = like.dtype in (torch.float16, torch.bfloat16) and not like.is_cuda
    stats = like.new_zeros((rows, _lib.ROW_STATS_WIDTH), dtype=torch.float32 if half else like.dtype)
    stats[:, 0] = -float("inf")
    return stats


class _Ring:
    """Passes blocks (tuples of tensors, each with one row per column of the block) to the next rank."""

    def __init__(self, state):
        self.state = state
        group = state.group
        self.next = group.global_rank((group.rank + 1) % group.size)
        self.previous = group.global_rank((group.rank - 1) % group.size)

    def owner(self, step):
        """The rank whose block this rank holds at `step`."""
        return (self.state.group.rank - step) % self.state.group.size

    def start(self, block, step):
        """Sends this step's block on and receives the next step's; returns (requests, the received block)."""
        state, group = self.state, self.state.group
        incoming = state.sizes[self.owner(step + 1)]
        received = tuple(x.new_empty((incoming,) + tuple(x.shape[1:])) for x in block)
        ops = []
        if block[0].shape[0] > 0:
            ops += [dist.P2POp(dist.isend, x.contiguous(), self.next, group.group) for x in block]
        if incoming > 0:
            ops += [dist.P2POp(dist.irecv, x, self.previous, group.group) for x in received]
        return (dist.batch_isend_irecv(ops) if ops else []), received

    @staticmethod
    def finish(requests):
        for request in requests:
            request.wait()


class _RingLoss(torch.autograd.Function):
    """apply(state, anchors, positives, weight): this rank's value, without the L2 term."""

    @staticmethod
    def forward(ctx, state, anchors, positives, weight):
        ring, size = _Ring(state), state.group.size
        anchors_d = anchors.detach()
        stats = _empty_stats(state.shard.rows, anchors_d)
        block = (positives.detach(), state.shard.column_targets)
        # The row losses come with the last block that has columns (shards may be empty).
        last = max((step for step in range(size) if state.sizes[ring.owner(step)] > 0), default=None)
        rows = anchors_d.new_zeros((0,)) if last is None else None
        error = None
        for step in range(size):
            requests, received = ring.start(block, step) if step < size - 1 else ([], None)
            # A failed call leaves the ring turning (the others wait for this rank's sends); finish tells everyone.
            if error is None and block[0].shape[0] > 0:
                try:
                    rows = _block_call(state, anchors_d, block[0], block[1], stats, rows=step == last)
                except Exception as e:
                    error = e
            ring.finish(requests)
            block = received
        loss = state.finish(rows, error)
        ctx.state = state
        ctx.save_for_backward(anchors, positives, stats, rows)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        state = ctx.state
        anchors, positives, stats, rows = ctx.saved_tensors
        grad_anchors = grad_positives = None
        if state.collective_backward:
            grad_anchors, grad_positives = _ring_gradients(state, anchors.detach(), positives.detach(), stats,
                                                           state.row_grad_loss(grad_output.detach()))
        return None, grad_anchors if ctx.needs_input_grad[1] else None, \
            grad_positives if ctx.needs_input_grad[2] else None, state.weight_gradient(grad_output, rows)


def _ring_gradients(state, anchors, positives, stats, grad_loss):
    """(dL/dA, dL/dP) of this rank: each block's gradient travels on with the block, back to its owner."""
    ring, size = _Ring(state), state.group.size
    grad_anchors = anchors.new_zeros(anchors.shape)
    block = (positives, state.shard.column_targets, positives.new_zeros(positives.shape))
    error = None
    for step in range(size):
        if error is None and block[0].shape[0] > 0 and anchors.shape[0] > 0:
            try:
                grads = _block_call(state, anchors, block[0], block[1], stats, grad_loss=grad_loss,
                                    want_grads=("anchors", "positives"))
                grad_anchors += grads["anchors"]
                block[2].add_(grads["positives"])
            except Exception as e:
                error = e
        if step < size - 1:
            requests, block = ring.start(block, step)
            ring.finish(requests)
    if size > 1:  # the last block's gradient, complete, goes on to its owner; this rank's own comes back
        requests, (own,) = ring.start(block[2:], size - 1)
        ring.finish(requests)
    else:
        own = block[2]
    state.group.agree(error)
    return grad_anchors, own
