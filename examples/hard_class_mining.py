"""Hard negative class mining (Sohn 2016, section 3.2) against random class batches.

A synthetic dataset with many confusable classes: Gaussian clusters whose
centres come in near pairs (a class and its twin differ by a small offset).
The same small MLP, from the same initial weights, is trained twice with
the N-pairs loss (npairs.torch.NpairsEmbeddingsLoss) for the same number of
steps: once on random class batches, once on batches whose classes are
mined by npairs.torch.HardClassBatchSampler from the current model's class
embeddings (the mean embedding of a few training examples per class,
refreshed every few steps). Each batch is N classes x 2 examples (anchor,
positive). Prints Recall@1 on held-out examples for both (nearest
neighbour by cosine similarity among the held-out set, itself excluded).

Run: NPAIRS_LIBRARY=build/release/libnpairs.so python3 examples/hard_class_mining.py [--quick]
"""

import argparse
import time

import numpy as np
import torch

import npairs
from npairs.torch import HardClassBatchSampler, NpairsEmbeddingsLoss


def make_data(pairs, width, train_per_class, test_per_class, twin_offset, noise, seed):
    """Class 2k and 2k + 1 are twins: centres twin_offset apart (per dimension), pairs far apart."""
    rng = np.random.default_rng(seed)
    centres = np.repeat(rng.normal(0.0, 1.0, size=(pairs, width)), 2, axis=0)
    centres[1::2] += rng.normal(0.0, twin_offset, size=(pairs, width))

    def draw(per_class):
        labels = np.repeat(np.arange(2 * pairs), per_class)
        x = centres[labels] + rng.normal(0.0, noise, size=(labels.size, width))
        return torch.tensor(x, dtype=torch.float32), labels

    return draw(train_per_class), draw(test_per_class)


def recall_at_1(model, x, labels):
    with torch.no_grad():
        e = torch.nn.functional.normalize(model(x), dim=1)
        s = e @ e.T
        s.fill_diagonal_(-float("inf"))
        nearest = s.argmax(dim=1).numpy()
    return float((labels[nearest] == labels).mean())


def train(mined, args, data, initial_state):
    (x_train, y_train), (x_test, y_test) = data
    model = make_model(args)
    model.load_state_dict(initial_state)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = NpairsEmbeddingsLoss(reg_lambda=0.002, backend="cpu")
    # The class embeddings for mining: each class's mean embedding over a
    # fixed few of its training examples, by the current model.
    probe = np.concatenate([np.flatnonzero(y_train == c)[: args.probe] for c in range(2 * args.pairs)])
    probe_labels = torch.as_tensor(y_train[probe])

    def class_embeddings():
        with torch.no_grad():
            e = model(x_train[probe])
        sums = torch.zeros(2 * args.pairs, e.shape[1]).index_add_(0, probe_labels, e)
        return sums / args.probe

    sampler = HardClassBatchSampler(
        y_train, n_classes=args.n_classes, per_class=2, pool=args.pool, seed=args.seed,
        class_embeddings=class_embeddings if mined else None, refresh_every=args.refresh,
        batches_per_epoch=args.steps,
    )
    for batch in sampler:
        batch = torch.as_tensor(batch)
        anchors, positives = batch[0::2], batch[1::2]
        loss = loss_fn(torch.as_tensor(y_train[anchors.numpy()]), model(x_train[anchors]), model(x_train[positives]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return recall_at_1(model, x_test, y_test)


def make_model(args):
    return torch.nn.Sequential(torch.nn.Linear(args.width, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (for the tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of torch and libnpairs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # npairs.torch follows it
    npairs.set_num_threads(args.threads)  # select_hard_classes
    args.pairs, args.width, args.n_classes, args.pool, args.probe = 150, 32, 32, None, 4
    args.steps, args.refresh, args.lr = 1500, 10, 2e-3
    if args.quick:
        args.pairs, args.steps = 40, 60
    torch.manual_seed(args.seed)
    data = make_data(args.pairs, args.width, train_per_class=20, test_per_class=10, twin_offset=0.25,
                     noise=0.35, seed=args.seed)
    initial_state = make_model(args).state_dict()
    print(f"{2 * args.pairs} classes in {args.pairs} confusable pairs; {args.steps} steps of "
          f"{args.n_classes} classes x 2 examples; seed {args.seed}")
    for name, mined in (("random", False), ("mined", True)):
        start = time.perf_counter()
        recall = train(mined, args, data, initial_state)
        print(f"Recall@1 {name} class batches: {recall:.4f} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
