#!/usr/bin/env python3
"""Times the N-pairs loss with its gradients through libnpairs' Python package
and through what a user would pick instead, on the same cases in one run.

Systems (each runs in its own worker process, so that the thread pools of
PyTorch, TensorFlow, OpenMP and OpenBLAS never compete):

  c-api           the same library call through the C API (ctypes), with its
                  context and outputs made once, before the timed calls, on
                  every core (threads 0, as the NumPy API): the baseline of
                  the Python packages' overhead (issue 11: within 1.3x)
  c-api-torch     the same with torch.get_num_threads() threads, the count
                  npairs.torch runs the library with: npairs-torch's baseline
  npairs          npairs.npairs_loss(labels, S, return_grad=True), or
                  npairs.npairs_embeddings_loss(labels, A, P, reg_lambda=0,
                  return_grads=True): NumPy arrays on the CPU, torch CUDA
                  tensors (through __cuda_array_interface__) on a GPU
  npairs-torch    npairs.torch.NpairsLoss / NpairsEmbeddingsLoss(reg_lambda=0)
                  with torch.autograd.grad, as in a PyTorch training step
  npairs-torch-none      the same with reduction='none' (per-row losses,
                  backward of their sum)
  npairs-torch-weighted  the same (default reduction) with a sample_weight
                  that requires grad, dL/dw included
                  (both are to stay within 1.3x of npairs-torch: issue 16)
  torch-eager     logits = S (or A @ P.T); F.cross_entropy(logits, T) with T
                  the row-normalised label-equality matrix, built per call;
                  torch.autograd.grad
  torch-compile   the same function through torch.compile(dynamic=False)
                  (the first, compiling call is reported apart)
  tfa-eager       tfa.losses.npairs_loss under tf.GradientTape (S = A P^T
  tfa-function    for embeddings), eagerly and inside a tf.function;
                  tensorflow-cpu only, so CPU only
  torch-gemms     (embeddings cases) the three GEMMs alone in PyTorch:
                  A @ P.T, dS @ P, dS.T @ A: PyTorch's own BLAS ceiling

Cases: similarity input (loss + dL/dS) and embeddings input (loss + dL/dA +
dL/dP), R = M rows, int64 labels with R/2 classes (each twice), float32,
the default reduction (mean over rows), temperature 1. The clip input
(--inputs clip; systems c-api, npairs, npairs-torch, torch-eager,
torch-compile) is CLIP's loss over a similarity S with a learnable
logit_scale s (14.3) and labels 0..R-1: the symmetric loss (SPEC section 5)
with temperature 1/s, loss + dL/dS + dL/ds; the torch systems compute it as
open_clip's ClipLoss does, (cross_entropy(s S, arange) +
cross_entropy(s S^T, arange)) / 2. Each figure is the
median of --repeats calls after --warmup untimed ones (with --rounds N, the
median of N such medians, every system run in turn in each round); CUDA
calls are followed by torch.cuda.synchronize(). Every system's loss and gradient norms
are checked against npairs'.

Running it (CPU; Python 3.9-3.11, which tensorflow-addons needs):

  cmake --preset release && cmake --build --preset release -j
  python3.11 -m venv /tmp/peers-venv
  /tmp/peers-venv/bin/pip install torch numpy matplotlib \\
      "tensorflow-cpu~=2.15.0" tensorflow-addons     # TFA needs TF < 2.16
  /tmp/peers-venv/bin/python bench/peers.py --json /tmp/peers-cpu.json \\
      --plot bench/peers-cpu.png

The library is build/release/libnpairs.so unless NPAIRS_LIBRARY names one
(the JSON records the OpenBLAS each worker loaded and the core it chose: the
wheel's scipy-openblas32 picks this processor's kernels, where an older
system OpenBLAS may run generic ones; build with -DNPAIRS_BLAS=scipy-openblas
to time the wheel's BLAS);
the package is imported from python/ next to this script. A system whose
packages are missing (TFA, torch.compile) is recorded with the reason and
skipped. On a GPU: --device cuda (default rows 4096,16384,32768, D = 512;
TFA is skipped with tensorflow-cpu).

Output: a table of medians, the ratios to npairs (time / npairs' time, so
> 1 means npairs is faster), --json FILE with every figure, the machine and
the versions, and --plot FILE, a PNG of time against batch size, one line
per system and backend, one panel per input.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SYSTEMS = ["c-api", "c-api-torch", "npairs", "npairs-torch", "npairs-torch-none", "npairs-torch-weighted",
           "torch-eager", "torch-compile", "tfa-eager", "tfa-function", "torch-gemms"]
# system: (its baseline, what it is, the target of time / baseline time)
VARIANTS = {
    "npairs": ("c-api", "the NumPy API's overhead, issue 11", 1.3),
    "npairs-torch": ("c-api-torch", "npairs.torch's overhead, issue 11", 1.3),
    "npairs-torch-none": ("npairs-torch", "reduction 'none', issue 16", 1.3),
    "npairs-torch-weighted": ("npairs-torch", "weights that require grad, issue 16", 1.3),
}
INPUTS = ["similarity", "embeddings", "clip"]
CLIP_SYSTEMS = ("c-api", "npairs", "npairs-torch", "torch-eager", "torch-compile")
CLIP_LOGIT_SCALE = 14.3


# ---------------------------------------------------------------------------
# Worker side: one system, every case


def make_case(rows, dim, input_kind):
    """Deterministic float32 data: similarities in [-1, 1), or unit-length embeddings."""
    import numpy as np

    rng = np.random.default_rng(12345 + rows)
    labels = (np.arange(rows) % max(1, rows // 2)).astype(np.int64)
    if input_kind == "clip":  # unit embeddings' cosine similarities: CLIP's logits before the scale
        labels = np.arange(rows, dtype=np.int64)
    if input_kind in ("similarity", "clip"):
        s = rng.random((rows, rows), dtype=np.float32)  # float32 throughout: GPU sizes are large
        s *= 2
        s -= 1
        return labels, {"similarity": s}
    out = {}
    for name in ("anchors", "positives"):
        x = rng.standard_normal((rows, dim), dtype=np.float32)
        out[name] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return labels, out


def soft_targets(torch, labels, dtype):
    """The row-normalised label-equality matrix, as a PyTorch user builds it."""
    t = (labels[:, None] == labels[None, :]).to(dtype)
    return t / t.sum(1, keepdim=True)


class Runner:
    """Builds, for one system, a zero-argument call computing loss + gradients."""

    def __init__(self, system, device):
        self.system = system
        self.device = device
        self.sync = lambda: None
        if system.startswith("npairs") or system.startswith("c-api"):
            os.environ.setdefault("NPAIRS_LIBRARY", os.path.join(REPO, "build", "release", "libnpairs.so"))
            sys.path.insert(0, os.path.join(REPO, "python"))
        if system == "c-api" and device == "cuda":
            raise RuntimeError("c-api times host arrays on the CPU backend only")
        if system.startswith("torch") or system.startswith("npairs-torch") or system == "c-api-torch" \
                or device == "cuda":
            import torch

            self.torch = torch
            if device == "cuda":
                self.sync = torch.cuda.synchronize
        if system.startswith("tfa"):
            if device == "cuda":
                raise RuntimeError("TFA runs on the CPU only here (tensorflow-cpu)")
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import warnings

            warnings.filterwarnings("ignore")
            import tensorflow as tf
            import tensorflow_addons as tfa

            self.tf, self.tfa = tf, tfa
        if system == "torch-compile" and not hasattr(self.torch, "compile"):
            raise RuntimeError(f"torch {self.torch.__version__} has no torch.compile")

    def versions(self):
        v = {"python": platform.python_version()}
        import numpy

        v["numpy"] = numpy.__version__
        if hasattr(self, "torch"):
            v["torch"] = self.torch.__version__
            v["torch_threads"] = self.torch.get_num_threads()
        if hasattr(self, "tf"):
            v["tensorflow"] = self.tf.__version__
            v["tensorflow_addons"] = self.tfa.__version__
        if self.system.startswith("npairs") or self.system.startswith("c-api"):
            import npairs

            from npairs import _config

            v["npairs"] = npairs.library_version()
            v["libnpairs"] = npairs.library_path()
            v["blas"] = dict(_config._library()[0]).get("BLAS")  # the OpenBLAS loaded and the core it chose
        return v

    def call(self, input_kind, labels, data):
        """(call, outputs): call() returns (loss, [gradients]) for this system."""
        return getattr(self, "_" + self.system.replace("-", "_"))(input_kind, labels, data)

    def _tensors(self, labels, data, grad):
        torch = self.torch
        lab = torch.from_numpy(labels).to(self.device)
        ts = {k: torch.from_numpy(v).to(self.device).requires_grad_(grad) for k, v in data.items()}
        return lab, ts

    def _c_api(self, input_kind, labels, data, threads=0):
        """One npairs_loss call through ctypes: structs, context and outputs made here, once."""
        import ctypes

        import numpy as np
        from npairs import _lib

        lib = _lib.load()
        ctx = _lib.npairs_context()
        assert lib.npairs_context_create(_lib.BACKEND_CPU, 0, ctypes.byref(ctx)) == 0
        assert lib.npairs_context_set_threads(ctx, threads) == 0
        opts = _lib.Options()
        lib.npairs_options_init(ctypes.byref(opts))
        prob = _lib.Problem()
        lib.npairs_problem_init(ctypes.byref(prob))
        prob.rows, prob.dtype = len(labels), _lib.F32
        prob.labels, prob.label_dtype = labels.ctypes.data, _lib.I64
        grads = _lib.Gradients()
        lib.npairs_gradients_init(ctypes.byref(grads))
        loss = np.zeros((), np.float32)
        outputs = {}
        if input_kind == "embeddings":
            prob.anchors, prob.positives = data["anchors"].ctypes.data, data["positives"].ctypes.data
            prob.dim = data["anchors"].shape[1]
            names = ("anchors", "positives")
            for n in names:
                outputs[n] = np.zeros_like(data[n])
        else:
            prob.similarity = data["similarity"].ctypes.data
            names = ("similarity",)
            outputs["similarity"] = np.zeros_like(data["similarity"])
            if input_kind == "clip":
                opts.temperature = 1.0 / CLIP_LOGIT_SCALE
                opts.flags |= _lib.FLAG_SYMMETRIC
                names += ("temperature",)
                outputs["temperature"] = np.zeros(1, np.float32)
        for n in names:
            setattr(grads, n, outputs[n].ctypes.data)
        args = (ctx, ctypes.byref(opts), ctypes.byref(prob), None, loss.ctypes.data, ctypes.byref(grads))
        self._keep = (ctx, opts, prob, grads, labels, data)

        def call():
            status = lib.npairs_loss(*args)
            if status:
                raise RuntimeError(f"npairs_loss: {_lib.last_error()}")
            if input_kind == "clip":  # dL/ds from dL/dtau, as the other systems report it (tau = 1/s)
                return loss, [outputs["similarity"], -outputs["temperature"] / CLIP_LOGIT_SCALE**2]
            return loss, [outputs[n] for n in names]

        return call

    def _c_api_torch(self, input_kind, labels, data):
        return self._c_api(input_kind, labels, data, threads=self.torch.get_num_threads())

    def _npairs(self, input_kind, labels, data):
        import npairs

        if self.device == "cuda":  # device arrays: torch CUDA tensors
            labels, data = self._tensors(labels, data, grad=False)
        if input_kind == "clip":
            S = data["similarity"]

            def call():
                loss, g, gtau = npairs.npairs_loss(labels, S, symmetric=True, temperature=1.0 / CLIP_LOGIT_SCALE,
                                                   return_grad=True, return_temperature_grad=True)
                return loss, [g, -gtau / CLIP_LOGIT_SCALE**2]
        elif input_kind == "similarity":
            S = data["similarity"]

            def call():
                loss, g = npairs.npairs_loss(labels, S, return_grad=True)
                return loss, [g]
        else:
            A, P = data["anchors"], data["positives"]

            def call():
                loss, (ga, gp) = npairs.npairs_embeddings_loss(labels, A, P, reg_lambda=0.0, return_grads=True)
                return loss, [ga, gp]

        return call

    def _autograd_call(self, loss_of, inputs):
        torch = self.torch

        def call():
            loss = loss_of()
            return loss.detach(), list(torch.autograd.grad(loss, inputs))

        return call

    def _npairs_torch(self, input_kind, labels, data, reduction="sum_over_batch_size", weighted=False):
        import npairs.torch as nt

        torch = self.torch
        lab, ts = self._tensors(labels, data, grad=True)
        weight = torch.ones(len(labels), device=self.device, requires_grad=True) if weighted else None
        extra = [weight] if weighted else []

        def total(loss):  # 'none': the backward of the per-row losses' mean, the default's value
            return loss.sum() / loss.shape[0] if reduction == "none" else loss

        if input_kind == "clip":
            scale = torch.tensor(CLIP_LOGIT_SCALE, device=self.device, requires_grad=True)
            return self._autograd_call(
                lambda: nt.npairs_loss(lab, ts["similarity"], symmetric=True, temperature=scale.reciprocal()),
                [ts["similarity"], scale])
        if input_kind == "similarity":
            module = nt.NpairsLoss(reduction=reduction)
            return self._autograd_call(lambda: total(module(lab, ts["similarity"], weight)),
                                       [ts["similarity"]] + extra)
        module = nt.NpairsEmbeddingsLoss(reg_lambda=0.0, reduction=reduction)
        return self._autograd_call(lambda: total(module(lab, ts["anchors"], ts["positives"], weight)),
                                   [ts["anchors"], ts["positives"]] + extra)

    def _npairs_torch_none(self, input_kind, labels, data):
        return self._npairs_torch(input_kind, labels, data, reduction="none")

    def _npairs_torch_weighted(self, input_kind, labels, data):
        return self._npairs_torch(input_kind, labels, data, weighted=True)

    def _torch_loss(self, input_kind):
        torch = self.torch
        import torch.nn.functional as F

        def similarity_loss(s, labels):
            return F.cross_entropy(s, soft_targets(torch, labels, s.dtype))

        def embeddings_loss(a, p, labels):
            return similarity_loss(a @ p.T, labels)

        def clip_loss(s, scale, labels):  # open_clip's ClipLoss, given the image-text similarities
            logits = scale * s
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

        return {"similarity": similarity_loss, "embeddings": embeddings_loss, "clip": clip_loss}[input_kind]

    def _torch_eager(self, input_kind, labels, data, fn=None):
        lab, ts = self._tensors(labels, data, grad=True)
        fn = fn or self._torch_loss(input_kind)
        inputs = [ts["anchors"], ts["positives"]] if input_kind == "embeddings" else [ts["similarity"]]
        if input_kind == "clip":
            inputs.append(self.torch.tensor(CLIP_LOGIT_SCALE, device=self.device, requires_grad=True))
        return self._autograd_call(lambda: fn(*inputs, lab), inputs)

    def _torch_compile(self, input_kind, labels, data):
        return self._torch_eager(input_kind, labels, data,
                                 fn=self.torch.compile(self._torch_loss(input_kind), dynamic=False))

    def _torch_gemms(self, input_kind, labels, data):
        _, ts = self._tensors(labels, data, grad=False)
        A, P = ts["anchors"], ts["positives"]

        def call():
            S = A @ P.T
            return S.sum(), [S @ P, S.T @ A]

        return call

    def _tfa(self, input_kind, labels, data, compiled):
        tf, tfa = self.tf, self.tfa
        lab = tf.constant(labels)
        inputs = [tf.constant(data["similarity"])] if input_kind == "similarity" else [
            tf.constant(data["anchors"]), tf.constant(data["positives"])]

        def step(lab, *inputs):
            with tf.GradientTape() as tape:
                for x in inputs:
                    tape.watch(x)
                s = inputs[0] if len(inputs) == 1 else tf.matmul(inputs[0], inputs[1], transpose_b=True)
                loss = tfa.losses.npairs_loss(lab, s)
            return loss, tape.gradient(loss, list(inputs))

        step_fn = tf.function(step) if compiled else step

        def call():
            loss, grads = step_fn(lab, *inputs)
            return loss, grads

        return call

    def _tfa_eager(self, input_kind, labels, data):
        return self._tfa(input_kind, labels, data, compiled=False)

    def _tfa_function(self, input_kind, labels, data):
        return self._tfa(input_kind, labels, data, compiled=True)


def to_float(x):
    return float(x.item() if hasattr(x, "item") else x)


def norm(x):
    import numpy as np

    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    elif hasattr(x, "numpy"):
        x = x.numpy()
    return float(np.linalg.norm(np.asarray(x, dtype=np.float64)))


def worker(args):
    runner = Runner(args.worker, args.device)
    results = []
    for rows in args.rows:
        for input_kind in args.inputs:
            if args.worker == "torch-gemms" and input_kind != "embeddings":
                continue  # GEMMs alone: the embeddings cases' ceiling
            if input_kind == "clip" and args.worker not in CLIP_SYSTEMS:
                continue
            rec = {"system": args.worker, "device": args.device, "input": input_kind, "rows": rows,
                   "dim": args.dim if input_kind == "embeddings" else 0}
            try:
                labels, data = make_case(rows, args.dim, input_kind)
                call = runner.call(input_kind, labels, data)
                start = time.perf_counter()
                loss, grads = call()
                runner.sync()
                rec["first_call_ms"] = 1e3 * (time.perf_counter() - start)
                for _ in range(args.warmup):
                    call()
                    runner.sync()
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    loss, grads = call()
                    runner.sync()
                    times.append(1e3 * (time.perf_counter() - start))
                rec.update(median_ms=statistics.median(times), min_ms=min(times), times_ms=times,
                           loss=to_float(loss), grad_norms=[norm(g) for g in grads])
            except Exception as e:  # recorded, and the other cases go on
                rec["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            results.append(rec)
            print(f"peers: {args.worker} {input_kind} R={rows}: "
                  + (f"{rec['median_ms']:.3f} ms" if "median_ms" in rec else rec["error"]), file=sys.stderr, flush=True)
    return {"versions": runner.versions(), "results": results}


# ---------------------------------------------------------------------------
# Driver side: one worker per system, then the table, the JSON and the plot


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_worker(system, args):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out = tmp.name
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", system, "--worker-out", out,
           "--device", args.device, "--rows", ",".join(map(str, args.rows)), "--dim", str(args.dim),
           "--inputs", ",".join(args.inputs), "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    print(f"peers: running {system} ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=args.timeout)
        stderr = proc.stderr
        if proc.returncode == 0:
            with open(out) as f:
                return json.load(f)
    except subprocess.TimeoutExpired as e:
        stderr = f"timed out after {e.timeout} s"
    finally:
        if os.path.exists(out):
            os.unlink(out)
    lines = [line for line in (stderr or "").splitlines() if line.strip() and not line.startswith("peers:")]
    why = lines[-1][:300] if lines else "worker failed"
    print(f"peers: {system} skipped: {why}", file=sys.stderr, flush=True)
    return {"versions": {}, "error": why, "results": []}


def combine_rounds(rounds):
    """One record per case: the median of the rounds' medians (round_medians_ms keeps each)."""
    by_case = {}
    for results in rounds:
        for r in results:
            by_case.setdefault((r["system"], r["input"], r["rows"]), []).append(r)
    combined = []
    for recs in by_case.values():
        timed = [r for r in recs if "median_ms" in r]
        if not timed:
            combined.append(recs[0])
            continue
        rec = dict(timed[0])
        rec["round_medians_ms"] = [r["median_ms"] for r in timed]
        rec["median_ms"] = statistics.median(rec["round_medians_ms"])
        rec["min_ms"] = min(r["min_ms"] for r in timed)
        rec["times_ms"] = [t for r in timed for t in r["times_ms"]]
        combined.append(rec)
    return combined


def check_against(results, reference="npairs"):
    """Each result's loss and gradient norms, relative to npairs' on the same case."""
    ref = {(r["input"], r["rows"]): r for r in results if r["system"] == reference and "loss" in r}
    for r in results:
        base = ref.get((r["input"], r["rows"]))
        if base is None or "loss" not in r or r["system"] == "torch-gemms":
            continue
        r["loss_rel_diff"] = abs(r["loss"] - base["loss"]) / max(abs(base["loss"]), 1e-30)
        r["grad_norm_rel_diff"] = max(abs(a - b) / max(abs(b), 1e-30)
                                      for a, b in zip(r["grad_norms"], base["grad_norms"]))


def print_table(results, systems, args):
    medians = {(r["system"], r["input"], r["rows"]): r.get("median_ms") for r in results}
    shown = [s for s in systems if any(medians.get((s, i, n)) for i in args.inputs for n in args.rows)]
    width = max([12] + [len(s) + 1 for s in shown])
    print("\nmedian ms (loss + gradients), and time / npairs' time in brackets")
    print(f"{'case':<22}" + "".join(f"{s:>{width + 9}}" for s in shown))
    for input_kind in args.inputs:
        for rows in args.rows:
            label = f"{input_kind} R={rows}"
            base = medians.get(("npairs", input_kind, rows))
            cells = []
            for s in shown:
                m = medians.get((s, input_kind, rows))
                if m is None:
                    cells.append(f"{'-':>{width + 9}}")
                else:
                    ratio = f" ({m / base:5.2f}x)" if base else " " * 9
                    cells.append(f"{m:>{width}.3f}{ratio}")
            print(f"{label:<22}" + "".join(cells))
    by_case = {(r["system"], r["input"], r["rows"]): r for r in results}
    def ratio_line(s, base_system, input_kind, rows, what):
        m, base = medians.get((s, input_kind, rows)), medians.get((base_system, input_kind, rows))
        if not (m and base):
            return
        line = f"{s} {input_kind} R={rows}: {m / base:.2f}x {base_system}'s time ({what})"
        pairs = zip(by_case[(s, input_kind, rows)].get("round_medians_ms", []),
                    by_case[(base_system, input_kind, rows)].get("round_medians_ms", []))
        ratios = [a / b for a, b in pairs]
        if len(ratios) > 1:  # each round's two figures were taken minutes apart at most
            line += f"; median of the rounds' ratios {statistics.median(ratios):.2f}x"
        print(line)

    by_case = {(r["system"], r["input"], r["rows"]): r for r in results}
    for s, (base_system, what, target) in VARIANTS.items():
        for input_kind in args.inputs:
            for rows in args.rows:
                ratio_line(s, base_system, input_kind, rows, f"{what}: target <= {target}x")
    for peer in ("torch-eager", "torch-compile"):
        for input_kind in args.inputs:
            for rows in args.rows:
                ratio_line("npairs-torch", peer, input_kind, rows, "below 1: npairs.torch is ahead")
    bad = [r for r in results if r.get("loss_rel_diff", 0) > 1e-4 or r.get("grad_norm_rel_diff", 0) > 1e-3]
    for r in bad:
        print(f"CHECK: {r['system']} {r['input']} R={r['rows']}: loss differs by {r['loss_rel_diff']:.2e}, "
              f"gradient norm by {r['grad_norm_rel_diff']:.2e} (relative to npairs)")
    if not bad:
        print("check: every system's loss (1e-4) and gradient norms (1e-3) agree with npairs'")


def plot(results, args, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args.inputs), figsize=(6.5 * len(args.inputs), 4.8), squeeze=False)
    for ax, input_kind in zip(axes[0], args.inputs):
        for system in SYSTEMS:
            pts = sorted((r["rows"], r["median_ms"]) for r in results
                         if r["system"] == system and r["input"] == input_kind and "median_ms" in r)
            if pts:
                style = {"linewidth": 2.5, "marker": "o"} if system.startswith("npairs") else {"marker": "s"}
                if system == "torch-gemms":
                    style = {"linestyle": ":", "marker": "x", "color": "gray"}
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"{system} ({args.device})", **style)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(args.rows, [str(r) for r in args.rows])
        ax.set_xlabel("batch size R = M")
        ax.set_ylabel("median time, loss + gradients (ms)")
        what = {"similarity": "similarity input, dL/dS", "embeddings": f"embeddings input (D={args.dim}), dL/dA + dL/dP",
                "clip": "CLIP's symmetric loss of a similarity, dL/dS + dL/dlogit_scale"}[input_kind]
        ax.set_title(what)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"peers: plot written to {path}", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--rows", help="comma-separated R = M values (default cpu 1024,2048,4096; cuda 4096,16384,32768)")
    p.add_argument("--dim", type=int, help="embedding width D (default cpu 256, cuda 512)")
    p.add_argument("--inputs", default="similarity,embeddings", help="similarity, embeddings or both (comma-separated)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of: " + ", ".join(SYSTEMS))
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--timeout", type=float, default=1800, help="seconds per system")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every system this many times, in turn; each figure is then the median of the rounds' "
                        "medians (so that a load that comes and goes hits every system alike)")
    p.add_argument("--json", help="write every figure here")
    p.add_argument("--plot", help="write a PNG plot here (matplotlib)")
    p.add_argument("--from-json", help="print the table of a --json FILE written before, and --plot it (no runs)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = p.parse_args()
    cuda = args.device == "cuda"
    args.rows = [int(r) for r in (args.rows or ("4096,16384,32768" if cuda else "1024,2048,4096")).split(",")]
    args.dim = args.dim or (512 if cuda else 256)
    args.inputs = [i for i in args.inputs.split(",") if i]
    if any(i not in INPUTS for i in args.inputs):
        p.error(f"--inputs takes {', '.join(INPUTS)}")

    if args.worker:
        data = worker(args)
        with open(args.worker_out, "w") as f:
            json.dump(data, f)
        return 0

    if args.from_json:  # e.g. a run in a venv without matplotlib, plotted by another Python
        with open(args.from_json) as f:
            report = json.load(f)
        for key in ("device", "rows", "dim", "inputs"):
            setattr(args, key, report["settings"][key])
        print_table(report["results"], list(report["systems"]), args)
        if args.plot:
            machine = report["machine"]
            plot(report["results"], args, args.plot, f"N-pairs loss + gradients, float32, {machine['cpu_model']} "
                 f"({machine['cores']} cores), {report['date'][:10]}")
        return 0

    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        p.error(f"unknown systems {unknown}; choose from {SYSTEMS}")
    if "npairs" not in systems:
        systems.insert(0, "npairs")  # the reference of every ratio
    # A SIGTERM (a `timeout`) becomes SystemExit, so that subprocess.run kills
    # the running worker on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.datetime.now(datetime.timezone.utc)
    rounds = [{s: run_worker(s, args) for s in systems} for _ in range(args.rounds)]
    workers = rounds[0]
    results = combine_rounds([[r for w in round_workers.values() for r in w["results"]] for round_workers in rounds])
    check_against(results)
    print_table(results, systems, args)
    for s, w in workers.items():
        for r in w["results"]:
            if "error" in r:
                print(f"{s} {r['input']} R={r['rows']}: {r['error']}")
        if "error" in w:
            print(f"{s}: not run: {w['error']}")

    for blas in sorted({w["versions"]["blas"] for w in workers.values() if w["versions"].get("blas")}):
        print(f"libnpairs' BLAS: {blas}")

    machine = {"cpu_model": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()}
    if cuda:
        try:
            machine["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                            capture_output=True, text=True).stdout.strip()
        except OSError:
            pass
    report = {
        "tool": "bench/peers.py",
        "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": shlex.join([sys.executable] + sys.argv),
        "machine": machine,
        "settings": {"device": args.device, "rows": args.rows, "dim": args.dim, "inputs": args.inputs,
                     "repeats": args.repeats, "warmup": args.warmup, "rounds": args.rounds},
        "systems": {s: {"versions": w["versions"], "error": w.get("error")} for s, w in workers.items()},
        "results": results,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    if args.plot:
        title = f"N-pairs loss + gradients, float32, {machine['cpu_model']} ({machine['cores']} cores)"
        if cuda:
            title = f"N-pairs loss + gradients, float32, {machine.get('gpu', 'GPU')}"
        plot(report["results"], args, args.plot, f"{title}, {report['date'][:10]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
