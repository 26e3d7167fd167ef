"""Time and peak memory of the N-pairs loss + backward across ranks (issue #14), against world size.

For a fixed global batch (N anchors and N positives, D wide, float32, labels
with two pairs per class), each configuration runs in its own process group
of W spawned ranks (gloo on 127.0.0.1 with CPU tensors; NCCL on GPUs with
--backend nccl): the two strategies of npairs.torch.DistributedNpairsEmbeddingsLoss
and the peer a user writes today, open_clip's: all_gather with gradient
(torch.distributed.nn.functional.all_gather), the logits against every
positive, and torch's cross_entropy with the row-normalised label targets.
Every rank times loss + backward (median of --repeats after --warmup), and
its peak memory: on the CPU the resident growth of its process over the
first step (the peak resident size, VmHWM reset just before, minus the
resident size before; inputs made before), on CUDA torch.cuda.max_memory_allocated over the step. The table
gives rank 0's figures and the slowest rank's median.

With --symmetric, CLIP's loss (issue #15): image and text features with
labels 0..N-1 and a learnable logit scale (its gradient included), through
npairs.torch.DistributedClipLoss (both strategies), beside open_clip's
ClipLoss written out: all_gather with gradient of both features and the two
cross-entropies of the logits, with local_loss=False ("peer": every rank
the N x N logits, open_clip's default) and local_loss=True ("peer_local":
this rank's rows against every column, in each direction).

Run: NPAIRS_LIBRARY=build/release/libnpairs.so PYTHONPATH=python python3 bench/distributed.py \\
       --batch 4096 --dim 128 --worlds 1,2 --json out.json
"""

import argparse
import datetime
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time

METHODS = ("all_gather", "ring", "peer")
SYMMETRIC_METHODS = ("all_gather", "ring", "peer", "peer_local")


def _resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_resident():
    """Linux: the peak resident size (VmHWM) starts again from the current one."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_resident_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _peer_loss(labels, anchors, positives, temperature):
    """open_clip's ClipLoss pattern with N-pairs targets: the returned value times the world size, as DDP wants."""
    import torch
    import torch.distributed as dist
    import torch.distributed.nn.functional as dist_fn
    import torch.nn.functional as F

    world = dist.get_world_size()
    every_positive = torch.cat(dist_fn.all_gather(positives))
    every_label = torch.cat([t.contiguous() for t in dist_fn.all_gather(labels)])
    targets = (labels[:, None] == every_label[None, :]).to(anchors.dtype)
    targets = targets / targets.sum(1, keepdim=True)
    logits = anchors @ every_positive.T / temperature
    return F.cross_entropy(logits, targets, reduction="sum") * (world / every_positive.shape[0])


def _clip_peer_loss(image, text, logit_scale, local):
    """open_clip's ClipLoss(gather_with_grad=True, local_loss=local) with labels 0..N-1 (equal shards)."""
    import torch
    import torch.distributed as dist
    import torch.distributed.nn.functional as dist_fn
    import torch.nn.functional as F

    every_image, every_text = torch.cat(dist_fn.all_gather(image)), torch.cat(dist_fn.all_gather(text))
    scale = logit_scale.exp()
    if local:
        labels = torch.arange(image.shape[0], device=image.device) + dist.get_rank() * image.shape[0]
        return (F.cross_entropy(scale * image @ every_text.T, labels) +
                F.cross_entropy(scale * text @ every_image.T, labels)) / 2
    logits = scale * every_image @ every_text.T
    labels = torch.arange(logits.shape[0], device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _rank(rank, world, init_file, config, results):
    import torch
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(config["threads"])
    cuda = config["backend"] == "nccl"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group(config["backend"], init_method="file://" + init_file, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=600))
    from npairs.torch import DistributedClipLoss, DistributedNpairsEmbeddingsLoss

    n, dim = config["batch"] // world, config["dim"]
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    g = torch.Generator().manual_seed(rank)
    labels = (torch.arange(n) + rank * n) // 2
    anchors = torch.randn(n, dim, generator=g).div_(dim ** 0.5).to(device).requires_grad_()
    positives = torch.randn(n, dim, generator=g).div_(dim ** 0.5).to(device).requires_grad_()
    labels = labels.to(device)
    method = config["method"]
    logit_scale = torch.tensor(2.3, device=device, requires_grad=True)
    if config["symmetric"]:
        if method.startswith("peer"):
            def step():
                return _clip_peer_loss(anchors, positives, logit_scale, method == "peer_local")
        else:
            loss_fn = DistributedClipLoss(strategy=method, workspace_limit=0)

            def step():
                return loss_fn(anchors, positives, logit_scale.exp())
    elif method == "peer":
        def step():
            return _peer_loss(labels, anchors, positives, 0.1)
    else:
        loss_fn = DistributedNpairsEmbeddingsLoss(temperature=0.1, strategy=method)

        def step():
            return loss_fn(labels, anchors, positives)

    def run():
        anchors.grad = positives.grad = logit_scale.grad = None
        step().backward()
        if cuda:
            torch.cuda.synchronize()

    dist.barrier()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        _reset_peak_resident()
        before = _resident_bytes()
    run()
    peak = (torch.cuda.max_memory_allocated() if cuda else _peak_resident_bytes()) - before
    for _ in range(config["warmup"]):
        run()
    times = []
    for _ in range(config["repeats"]):
        dist.barrier()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    results.put((rank, statistics.median(times), peak))
    dist.destroy_process_group()


def measure(world, config):
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "rendezvous")
        procs = [ctx.Process(target=_rank, args=(r, world, init_file, config, results)) for r in range(world)]
        for p in procs:
            p.start()
        got = dict((rank, (t, m)) for rank, t, m in (results.get(timeout=1800) for _ in range(world)))
        for p in procs:
            p.join()
    return dict(world=world, method=config["method"], symmetric=config["symmetric"], batch=config["batch"],
                dim=config["dim"],
                median_ms=1e3 * max(t for t, _ in got.values()), rank0_ms=1e3 * got[0][0],
                rank0_peak_mib=got[0][1] / 2**20)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096, help="global batch N")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--worlds", default="1,2", help="world sizes, comma-separated")
    parser.add_argument("--methods", help="comma-separated (default: every method of the loss)")
    parser.add_argument("--symmetric", action="store_true", help="CLIP's loss with a learnable logit scale")
    parser.add_argument("--backend", default="gloo", choices=("gloo", "nccl"))
    parser.add_argument("--threads", type=int, default=1, help="torch (and libnpairs) threads per rank")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    rows = []
    methods = args.methods.split(",") if args.methods else SYMMETRIC_METHODS if args.symmetric else METHODS
    loss = "symmetric" if args.symmetric else "n-pairs"
    print("| W | loss | method | N | D | median ms (slowest rank) | rank 0 peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for world in (int(w) for w in args.worlds.split(",")):
        for method in methods:
            config = dict(method=method, batch=args.batch, dim=args.dim, backend=args.backend, threads=args.threads,
                          repeats=args.repeats, warmup=args.warmup, symmetric=args.symmetric)
            row = measure(world, config)
            rows.append(row)
            print(f"| {world} | {loss} | {method} | {row['batch']} | {row['dim']} | {row['median_ms']:.1f} | "
                  f"{row['rank0_peak_mib']:.1f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(argv=sys.argv, date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                           load=os.getloadavg(), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
