"""npairs.select_hard_classes and npairs.torch.HardClassBatchSampler (issue 13).

select_hard_classes is checked against a plain-loop Python reference of the
greedy rule written from npairs.h (every step recomputes each candidate's
largest inner product with the selected classes; the highest wins; ties go
to the smallest key(seed, step, index)), on every tie case; the sampler's
batches for their shape, validity, epoch length and sharding.
"""

import numpy as np
import pytest
import torch

import npairs
import npairs._mining
from npairs.torch import HardClassBatchSampler

MASK = (1 << 64) - 1


def mix(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def key(seed, step, c):
    return mix(mix(mix(seed) ^ step) ^ c)


def reference(e, n, seed):
    e = np.asarray(e, dtype=np.float64)
    selected = []
    for step in range(n):
        best = None
        for c in range(len(e)):
            if c in selected:
                continue
            score = max((float(np.dot(e[c], e[s])) for s in selected), default=-np.inf)
            if best is None or score > best[0] or (score == best[0] and key(seed, step, c) < key(seed, step, best[1])):
                best = (score, c)
        selected.append(best[1])
    return selected


def integers(shape, seed, span=3):
    return np.random.default_rng(seed).integers(-span, span + 1, size=shape).astype(np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C,D,n", [(1, 1, 1), (23, 4, 1), (23, 4, 2), (23, 4, 23), (60, 7, 17)])
@pytest.mark.parametrize("seed", [0, 5, 2**64 - 1])
def test_matches_the_reference(dtype, C, D, n, seed):
    e = integers((C, D), C * 31 + D)  # exact inner products: the ties are exact too
    got = npairs.select_hard_classes(e.astype(dtype), n, seed=seed)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64
    assert got.tolist() == reference(e, n, seed)


def test_random_float64_embeddings():
    e = np.random.default_rng(1).normal(size=(80, 9))
    assert npairs.select_hard_classes(e, 30, seed=3).tolist() == reference(e, 30, 3)


def test_all_equal_and_duplicated_classes():
    equal = np.ones((15, 3))
    assert npairs.select_hard_classes(equal, 15, seed=9).tolist() == reference(equal, 15, 9)
    base = integers((5, 4), 2)
    duplicated = np.concatenate([base, base, base])
    for n in (1, 2, 6, 15):
        assert npairs.select_hard_classes(duplicated, n, seed=1).tolist() == reference(duplicated, n, 1)


def test_deterministic_and_seeded():
    e = np.random.default_rng(2).normal(size=(500, 16)).astype(np.float32)
    a = npairs.select_hard_classes(e, 40, seed=11)
    assert (npairs.select_hard_classes(e, 40, seed=11) == a).all()
    assert len(set(a.tolist())) == 40
    firsts = {int(npairs.select_hard_classes(e, 1, seed=s)[0]) for s in range(20)}
    assert len(firsts) >= 15


def test_torch_tensors_in_torch_out():
    e = torch.from_numpy(integers((30, 5), 4))
    got = npairs.select_hard_classes(e, 10, seed=2)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
    assert got.tolist() == reference(e.numpy(), 10, 2)
    assert npairs.select_hard_classes(e.t().contiguous().t(), 10, seed=2).tolist() == got.tolist()


@pytest.mark.skipif(not (torch.cuda.is_available() and npairs.backend_available("cuda")), reason="needs a CUDA GPU")
def test_cuda_tensors_match_the_cpu():
    e = integers((5000, 12), 8)
    cpu = npairs.select_hard_classes(e, 64, seed=4)
    gpu = npairs.select_hard_classes(torch.from_numpy(e).cuda(), 64, seed=4)
    assert gpu.is_cuda and gpu.cpu().tolist() == cpu.tolist()
    assert npairs.select_hard_classes(e, 64, seed=4, backend="cuda").tolist() == cpu.tolist()


@pytest.mark.parametrize(
    "args,error",
    [
        ((None, 2), npairs.InvalidArgumentError),
        ((np.ones(5), 2), npairs.InvalidArgumentError),
        ((np.ones((0, 3)), 1), npairs.InvalidArgumentError),
        ((np.ones((4, 0)), 1), npairs.InvalidArgumentError),
        ((np.ones((4, 3)), 0), npairs.InvalidArgumentError),
        ((np.ones((4, 3)), 5), npairs.InvalidArgumentError),
        ((np.ones((4, 3)), 2.0), npairs.InvalidArgumentError),
        ((np.ones((4, 3)), True), npairs.InvalidArgumentError),
        ((np.ones((4, 3)), 2, -1), npairs.InvalidArgumentError),
        ((np.ones((4, 3)), 2, 2**64), npairs.InvalidArgumentError),
        ((np.ones((4, 3)), 2, 0, "tpu"), npairs.InvalidArgumentError),
        ((np.ones((4, 3), dtype=np.float16), 2), npairs.InvalidDTypeError),
        ((np.ones((4, 3), dtype=np.complex64), 2), npairs.InvalidDTypeError),
    ],
)
def test_bad_arguments_raise_before_the_call(monkeypatch, args, error):
    def no_call():
        raise AssertionError("the library was reached")

    monkeypatch.setattr(npairs._mining._lib, "function", lambda name: no_call())
    with pytest.raises(error):
        npairs.select_hard_classes(*args)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e200])
def test_bad_values_are_reported_by_the_library(bad):
    e = np.ones((6, 3))
    e[4, 1] = bad
    with pytest.raises(npairs.InvalidValueError, match="class_embeddings row 4"):
        npairs.select_hard_classes(e, 2)


# ---------------------------------------------------------------------------
# HardClassBatchSampler


def dataset_labels(classes=40, per_class=6, seed=0):
    labels = np.repeat(np.arange(classes) * 3 + 100, per_class)  # arbitrary class ids
    return np.random.default_rng(seed).permutation(labels)


def check_batches(sampler, labels, batches):
    assert len(batches) == len(sampler)
    for batch in batches:
        assert len(batch) == sampler.n_classes * sampler.per_class
        assert len(set(batch)) == len(batch), "an example repeats"
        assert all(0 <= i < len(labels) for i in batch)
        classes = [labels[i] for i in batch]
        assert len(set(classes)) == sampler.n_classes
        for c in set(classes):
            assert classes.count(c) == sampler.per_class


def test_random_batches_before_the_first_update():
    labels = dataset_labels()
    sampler = HardClassBatchSampler(labels, n_classes=8, per_class=3, seed=1)
    batches = list(sampler)
    assert len(sampler) == len(labels) // 24
    check_batches(sampler, labels, batches)
    assert list(sampler) == batches, "the same epoch draws the same batches"
    sampler.set_epoch(1)
    assert list(sampler) != batches


def paired_embeddings(classes):
    """Class k's embedding near class k ^ 1's, the pairs far apart."""
    angles = np.repeat(np.linspace(0, 2 * np.pi, classes // 2, endpoint=False), 2)
    angles[1::2] += 0.01
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def test_mined_batches_after_an_update_hold_the_confusable_pairs():
    labels = dataset_labels(classes=40)
    sampler = HardClassBatchSampler(labels, n_classes=8, per_class=2, seed=3)
    sampler.update(paired_embeddings(40))
    batches = list(sampler)
    check_batches(sampler, labels, batches)
    for batch in batches:
        rows = {int(np.searchsorted(sampler.classes, labels[i])) for i in batch}
        assert all(r ^ 1 in rows for r in rows), f"mined classes {sorted(rows)} are not complete pairs"


def test_pool_callable_torch_embeddings_and_dataloader():
    labels = dataset_labels(classes=30, per_class=4)
    calls = []

    def embed():
        calls.append(1)
        return torch.from_numpy(paired_embeddings(30)).float()

    sampler = HardClassBatchSampler(labels, n_classes=6, pool=12, seed=0, class_embeddings=embed, refresh_every=2,
                                    batches_per_epoch=5)
    dataset = torch.utils.data.TensorDataset(torch.arange(len(labels)))
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler)
    batches = [b[0].tolist() for b in loader]
    assert len(batches) == 5 and len(calls) == 3  # batches 0, 2 and 4
    check_batches(sampler, labels, batches)


def test_shards_give_each_rank_its_own_classes():
    labels = dataset_labels(classes=41)
    seen = []
    for rank in range(3):
        sampler = HardClassBatchSampler(labels, n_classes=4, rank=rank, world_size=3, seed=7)
        classes = {labels[i] for batch in sampler for i in batch}
        assert classes <= set(sampler.classes[sampler.rank_classes])
        seen.append(set(sampler.rank_classes.tolist()))
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])
    assert set().union(*seen) == set(range(41))


def test_classes_with_too_few_examples_are_left_out():
    labels = np.array([0, 0, 0, 1, 2, 2, 2, 3, 3, 3, 4])
    sampler = HardClassBatchSampler(labels, n_classes=3, per_class=3)
    assert sorted(sampler.classes[sampler.rank_classes].tolist()) == [0, 2, 3]
    check_batches(sampler, labels, list(sampler))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(n_classes=0),
        dict(n_classes=41),
        dict(n_classes=4, per_class=0),
        dict(n_classes=4, per_class=7),
        dict(n_classes=4, pool=3),
        dict(n_classes=4, seed=-1),
        dict(n_classes=4, rank=3, world_size=3),
        dict(n_classes=4, class_embeddings=np.ones((40, 2))),
        dict(n_classes=4, batches_per_epoch=0),
    ],
)
def test_sampler_bad_arguments(kwargs):
    with pytest.raises(npairs.InvalidArgumentError):
        HardClassBatchSampler(dataset_labels(classes=40), **kwargs)


def test_sampler_bad_update_and_labels():
    sampler = HardClassBatchSampler(dataset_labels(classes=40), n_classes=4)
    with pytest.raises(npairs.InvalidArgumentError, match="shape"):
        sampler.update(np.ones((39, 2)))
    with pytest.raises(npairs.InvalidArgumentError):
        HardClassBatchSampler(np.ones((4, 2), dtype=np.int64), n_classes=1)
    with pytest.raises(npairs.InvalidArgumentError):
        HardClassBatchSampler(np.linspace(0, 1, 10), n_classes=1)


def test_the_example_runs_and_prints_both_recalls():
    import os
    import pathlib
    import re
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root / "python") + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run([sys.executable, str(root / "examples" / "hard_class_mining.py"), "--quick"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("random", "mined"):
        match = re.search(rf"Recall@1 {name} class batches: ([0-9.]+)", result.stdout)
        assert match, result.stdout
        assert 0.0 <= float(match.group(1)) <= 1.0
