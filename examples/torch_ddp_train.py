"""Trains an embedding network with DistributedDataParallel and the N-pairs loss of the global batch.

Each process (rank) draws its own shard of every batch: two noisy views
(anchor and positive) of some of 8 classes. DistributedNpairsEmbeddingsLoss
makes every rank's positives negatives for every other rank's anchors, so
the ranks together train exactly as one process would on the concatenated
batch; DDP averages the gradients. Rank 0 prints the global loss (no extra
collective: ``loss_fn.global_loss``) and the retrieval accuracy; every rank
exits non-zero if training did not help.

With --clip the loss is CLIP's (DistributedClipLoss: both directions over
the global batch, the views' classes as labels) on L2-normalised embeddings,
with a learnable logit scale that DDP trains with the network.

Run on 2 CPU processes:
  NPAIRS_LIBRARY=build/release/libnpairs.so torchrun --nproc_per_node=2 examples/torch_ddp_train.py [--clip]
(or set RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT yourself, as torchrun does).
"""

import argparse
import math
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from npairs.torch import DistributedClipLoss, DistributedNpairsEmbeddingsLoss


class Embedder(torch.nn.Module):
    """The embedding network; with clip, L2-normalised outputs and open_clip's learnable logit_scale (its log)."""

    def __init__(self, clip):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
        self.clip = clip
        if clip:
            self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, x):
        return torch.nn.functional.normalize(self.net(x), dim=1) if self.clip else self.net(x)


def make_shard(centers, classes_per_rank, noise, generator):
    labels = torch.randint(0, centers.shape[0], (classes_per_rank,), generator=generator)
    def view():
        return centers[labels] + noise * torch.randn(classes_per_rank, centers.shape[1], generator=generator)
    return labels, view(), view()


def retrieval_accuracy(model, centers, noise, generator):
    with torch.no_grad():
        labels = torch.arange(centers.shape[0])
        a = centers + noise * torch.randn(centers.shape, generator=generator)
        p = centers + noise * torch.randn(centers.shape, generator=generator)
        nearest = (model(a) @ model(p).T).argmax(dim=1)
        return (labels[nearest] == labels).double().mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", action="store_true", help="CLIP's loss with a learnable logit scale")
    clip = parser.parse_args().clip
    dist.init_process_group("gloo")  # env:// rendezvous: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    rank = dist.get_rank()
    torch.manual_seed(0)  # the same initial model on every rank (DDP also broadcasts rank 0's)
    centers = torch.randn(8, 32, generator=torch.Generator().manual_seed(1))
    data = torch.Generator().manual_seed(100 + rank)  # each rank its own shards
    model = DistributedDataParallel(Embedder(clip))
    loss_fn = DistributedClipLoss(backend="cpu") if clip else DistributedNpairsEmbeddingsLoss(reg_lambda=0.002,
                                                                                              backend="cpu")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    noise = 1.5
    accuracy_before = retrieval_accuracy(model.module, centers, noise, torch.Generator().manual_seed(2))
    losses = []
    for step in range(200):
        labels, a, p = make_shard(centers, 4 + rank, noise, data)  # unequal shards
        if clip:
            loss = loss_fn(model(a), model(p), model.module.logit_scale.exp(), labels=labels)
        else:
            loss = loss_fn(labels, model(a), model(p))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss_fn.global_loss)
        if step % 50 == 0 and rank == 0:
            print(f"step {step:3d}  global loss {loss_fn.global_loss:.4f}")
    accuracy_after = retrieval_accuracy(model.module, centers, noise, torch.Generator().manual_seed(2))
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    if rank == 0:
        scale = f"; logit scale {1 / 0.07:.2f} -> {model.module.logit_scale.exp().item():.2f}" if clip else ""
        print(f"mean global loss {first:.4f} -> {last:.4f}; "
              f"retrieval accuracy {accuracy_before:.2f} -> {accuracy_after:.2f}" + scale)
    dist.destroy_process_group()
    return 0 if last < 0.9 * first and accuracy_after > accuracy_before + 0.2 else 1


if __name__ == "__main__":
    sys.exit(main())
