"""Learns embeddings with the N-pairs loss: a small MLP maps noisy points of
8 classes to 16-d embeddings; each batch holds two views of every sampled
class (anchor and positive), and npairs.torch.NpairsEmbeddingsLoss trains the
network through the library's own gradients. Prints the loss and the
nearest-positive retrieval accuracy; exits non-zero if training did not help.

Run: NPAIRS_LIBRARY=build/release/libnpairs.so python3 examples/torch_train.py
"""

import sys

import torch

from npairs.torch import NpairsEmbeddingsLoss


def make_batch(centers, classes_per_batch, noise, generator):
    labels = torch.randperm(centers.shape[0], generator=generator)[:classes_per_batch]
    def view():
        return centers[labels] + noise * torch.randn(classes_per_batch, centers.shape[1], generator=generator)
    return labels, view(), view()


def retrieval_accuracy(model, centers, noise, generator):
    with torch.no_grad():
        labels, a, p = make_batch(centers, centers.shape[0], noise, generator)
        ea, ep = model(a), model(p)
        nearest = (ea @ ep.T).argmax(dim=1)
        return (labels[nearest] == labels).double().mean().item()


def main():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    classes, width, noise = 8, 32, 1.5
    centers = torch.randn(classes, width, generator=generator)
    model = torch.nn.Sequential(torch.nn.Linear(width, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
    loss_fn = NpairsEmbeddingsLoss(reg_lambda=0.002, backend="cpu")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    accuracy_before = retrieval_accuracy(model, centers, noise, generator)
    losses = []
    for step in range(400):
        labels, a, p = make_batch(centers, classes, noise, generator)
        loss = loss_fn(labels, model(a), model(p))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 100 == 0:
            print(f"step {step:3d}  loss {loss.item():.4f}")
    accuracy_after = retrieval_accuracy(model, centers, noise, generator)
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    print(f"mean loss {first:.4f} -> {last:.4f}; retrieval accuracy {accuracy_before:.2f} -> {accuracy_after:.2f}")
    return 0 if last < 0.7 * first and accuracy_after > accuracy_before else 1


if __name__ == "__main__":
    sys.exit(main())
