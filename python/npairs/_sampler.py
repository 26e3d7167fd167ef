"""HardClassBatchSampler: batches of N mined classes x per_class examples (npairs.torch).

Sohn 2016, section 3.2: from a large random pool of classes, N are chosen
by hard negative class mining (npairs.select_hard_classes, over the current
model's class embeddings), then per_class examples are drawn from each.
Until the first embeddings arrive, the N classes are drawn at random.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.utils.data

from ._mining import select_hard_classes
from .errors import InvalidArgumentError


def _positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _labels_array(labels):
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    a = np.asarray(labels)
    if a.ndim != 1:
        raise InvalidArgumentError(f"labels must be 1-D (one class per example), got shape {list(a.shape)}")
    if a.size and a.dtype.kind not in "iu":
        raise InvalidArgumentError(f"labels must be integers, got dtype {a.dtype}")
    return a.astype(np.int64)


def _rank_and_world_size(rank, world_size):
    if rank is None and world_size is None:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1
    world_size = _positive_int("world_size", 1 if world_size is None else world_size)
    rank = 0 if rank is None else rank
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or not 0 <= rank < world_size:
        raise InvalidArgumentError(f"rank must be an integer in [0, world_size={world_size}), got {rank!r}")
    return int(rank), world_size


class HardClassBatchSampler(torch.utils.data.Sampler):
    """Index batches of ``n_classes`` classes x ``per_class`` distinct examples each.

    labels: the class of every example of the dataset (a sequence, NumPy
    array or tensor of integers); ``classes`` lists the distinct ones,
    sorted: the rows of the class embeddings follow that order. Only
    classes with at least ``per_class`` examples are drawn.

    n_classes: N, the classes of a batch. pool: how many of this rank's
    classes are drawn at random for each batch as the mining's candidates
    (None: all of them). seed: the seed of every random choice (with the
    epoch of set_epoch and the rank). class_embeddings: a callable returning
    the current [len(classes), D] class embeddings (NumPy, CPU or CUDA
    tensor), called at the start of each epoch and every ``refresh_every``
    batches; or call update() yourself. Until embeddings are known the
    batch's classes are drawn at random.

    Sharding: with ``world_size`` ranks (given, or torch.distributed's when
    initialised) rank r draws from its own part of the classes, every
    world_size-th eligible class from the r-th, so that the ranks' batches
    never share a class. batches_per_epoch: the epoch's length (None: this
    rank's examples // (n_classes * per_class), at least 1).

    Use it as ``DataLoader(dataset, batch_sampler=sampler)``.
    """

    def __init__(
        self,
        labels,
        n_classes,
        per_class=2,
        pool=None,
        seed=0,
        *,
        class_embeddings=None,
        refresh_every=None,
        batches_per_epoch=None,
        rank=None,
        world_size=None,
        backend="auto",
    ):
        # Sampler.__init__ stores nothing, and its signature differs across torch
        # versions (data_source required in 1.13, gone in 2.x): not called.
        self.labels = _labels_array(labels)
        self.n_classes = _positive_int("n_classes", n_classes)
        self.per_class = _positive_int("per_class", per_class)
        self.pool = _positive_int("pool", pool, allow_none=True)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise InvalidArgumentError(f"seed must be a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        if class_embeddings is not None and not callable(class_embeddings):
            raise InvalidArgumentError("class_embeddings must be a callable returning the class embeddings")
        self._embed = class_embeddings
        self.refresh_every = _positive_int("refresh_every", refresh_every, allow_none=True)
        self.rank, self.world_size = _rank_and_world_size(rank, world_size)
        self.backend = backend

        self.classes, inverse, counts = np.unique(self.labels, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)])
        self._examples = [order[starts[k]:starts[k + 1]] for k in range(len(self.classes))]
        eligible = np.flatnonzero(counts >= self.per_class)
        self.rank_classes = eligible[self.rank::self.world_size]  # rows of `classes`
        if len(self.rank_classes) < self.n_classes:
            raise InvalidArgumentError(
                f"rank {self.rank} of {self.world_size} has {len(self.rank_classes)} classes with at least "
                f"per_class={self.per_class} examples, fewer than n_classes={self.n_classes}"
            )
        if self.pool is not None and self.pool < self.n_classes:
            raise InvalidArgumentError(f"pool ({self.pool}) must be at least n_classes ({self.n_classes})")
        batch = self.n_classes * self.per_class
        if batches_per_epoch is None:
            examples = int(counts[self.rank_classes].sum())
            self.batches_per_epoch = max(1, examples // batch)
        else:
            self.batches_per_epoch = _positive_int("batches_per_epoch", batches_per_epoch)
        self.epoch = 0
        self.embeddings = None

    def set_epoch(self, epoch):
        """Seeds the next epoch's draws (as DistributedSampler.set_epoch)."""
        self.epoch = int(epoch)

    def update(self, class_embeddings):
        """Sets the class embeddings, [len(classes), D], used from the next batch on."""
        shape = tuple(getattr(class_embeddings, "shape", np.shape(class_embeddings)))
        if len(shape) != 2 or shape[0] != len(self.classes):
            raise InvalidArgumentError(
                f"class_embeddings must have shape [{len(self.classes)}, dim] (one row per class of "
                f"sampler.classes), got {list(shape)}"
            )
        if not isinstance(class_embeddings, torch.Tensor):
            class_embeddings = np.asarray(class_embeddings)
        self.embeddings = class_embeddings

    def __len__(self):
        return self.batches_per_epoch

    def _mined(self, candidates, rng):
        """n_classes rows of `classes` mined from the candidate rows."""
        e = self.embeddings
        if isinstance(e, torch.Tensor):
            e = e.detach()[torch.as_tensor(candidates, device=e.device)]
        else:
            e = e[candidates]
        seed = int(rng.integers(0, 2**63))
        chosen = select_hard_classes(e, self.n_classes, seed=seed, backend=self.backend)
        if isinstance(chosen, torch.Tensor):
            chosen = chosen.cpu().numpy()
        return candidates[chosen]

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch, self.rank])
        for b in range(self.batches_per_epoch):
            if self._embed is not None and (b == 0 or (self.refresh_every and b % self.refresh_every == 0)):
                self.update(self._embed())
            candidates = self.rank_classes
            if self.pool is not None and self.pool < len(candidates):
                candidates = np.sort(rng.choice(candidates, size=self.pool, replace=False))
            if self.embeddings is None:
                rows = rng.choice(candidates, size=self.n_classes, replace=False)
            else:
                rows = self._mined(candidates, rng)
            batch = []
            for row in rows:
                batch.extend(int(i) for i in rng.choice(self._examples[row], size=self.per_class, replace=False))
            yield batch
