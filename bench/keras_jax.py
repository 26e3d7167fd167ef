"""Loss + gradient through npairs.keras on each Keras backend, and npairs.jax under jit, against the same loss
written in keras.ops / jax.numpy (what a user would otherwise write), in one run.

Cases, each for R = M in --sizes (float32, labels of pairs: arange(R) // 2):
  keras-<backend>   npairs.keras.NpairsLoss() vs the loss in keras.ops, value and dL/dy_pred through the
                    backend's autodiff (tf.function + GradientTape; jax.jit(value_and_grad); torch eager
                    backward), one process per KERAS_BACKEND;
  keras-tensorflow-eager  the same with an eager GradientTape (npairs.keras' DLPack path, no tf.function);
  jax               npairs.jax.npairs_loss vs the loss in jax.numpy, both jax.jit(value_and_grad).
Reports the median of --repeats timed runs after --warmup runs, and the ratio baseline / library.

Usage (libnpairs built with jax present, so that libnpairs_jax.so is next to it):
  NPAIRS_LIBRARY=build/release/libnpairs.so PYTHONPATH=python venv/bin/python bench/keras_jax.py \
      [--sizes 1024 2048 4096] [--repeats 7] [--threads N] [--json results.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")


def inputs(R, seed=0):
    rng = np.random.default_rng(seed)
    return (np.arange(R) // 2).astype(np.int32), rng.standard_normal((R, R)).astype(np.float32)


def median_seconds(step, warmup, repeats):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def keras_ops_loss(keras, y_true, y_pred):
    """The N-pairs loss (TensorFlow Addons' npairs_loss) in keras.ops."""
    ops = keras.ops
    targets = ops.cast(ops.equal(ops.expand_dims(y_true, 1), ops.expand_dims(y_true, 0)), y_pred.dtype)
    targets = targets / ops.sum(targets, axis=1, keepdims=True)
    return ops.mean(ops.logsumexp(y_pred, axis=1) - ops.sum(targets * y_pred, axis=1))


def keras_steps(backend, keras, loss_fn, labels, S, eager=False):
    """A callable computing loss_fn(labels, S) and its gradient in S, to completion, on this backend
    (TensorFlow: in a tf.function, or eagerly)."""
    if backend == "tensorflow":
        import tensorflow as tf

        y, s = tf.constant(labels), tf.constant(S)

        def step(y, s):
            with tf.GradientTape() as tape:
                tape.watch(s)
                loss = loss_fn(y, s)
            return loss, tape.gradient(loss, s)

        step = step if eager else tf.function(step)
        return lambda: [t.numpy() for t in step(y, s)]
    if backend == "jax":
        import jax

        y, s = jax.numpy.asarray(labels), jax.numpy.asarray(S)
        step = jax.jit(jax.value_and_grad(lambda s, y: loss_fn(y, s)))
        return lambda: jax.block_until_ready(step(s, y))
    import torch

    y = torch.from_numpy(labels)

    def step():
        s = torch.from_numpy(S).requires_grad_()
        loss = loss_fn(y, s)
        loss.backward()
        return loss.item(), s.grad

    return step


def run_backend(backend, sizes, warmup, repeats, threads):
    """This process's cases (KERAS_BACKEND=backend): one JSON record per case and size."""
    import keras

    import npairs
    import npairs.keras as nk

    if threads:
        npairs.set_num_threads(threads)
        if backend == "torch":  # npairs.torch follows torch's thread count (the baseline's too)
            import torch

            torch.set_num_threads(threads)

    assert keras.backend.backend() == backend
    records = []
    for eager in (False, True) if backend == "tensorflow" else (False,):
        for R in sizes:
            labels, S = inputs(R)
            library = median_seconds(keras_steps(backend, keras, nk.NpairsLoss(), labels, S, eager), warmup, repeats)
            baseline = median_seconds(keras_steps(backend, keras, lambda y, s: keras_ops_loss(keras, y, s), labels, S,
                                                  eager), warmup, repeats)
            records.append({"case": f"keras-{backend}" + ("-eager" if eager else ""), "R": R, "library_s": library,
                            "baseline_s": baseline, "baseline": "keras.ops", "threads": threads})
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        import npairs.jax as nj

        def jnp_loss(y, s):
            targets = (y[:, None] == y[None, :]).astype(s.dtype)
            targets = targets / targets.sum(1, keepdims=True)
            return jnp.mean(jax.nn.logsumexp(s, axis=1) - (targets * s).sum(1))

        for R in sizes:
            labels, S = inputs(R)
            y, s = jnp.asarray(labels), jnp.asarray(S)
            times = {}
            for name, fn in (("library", lambda s, y: nj.npairs_loss(y, s)), ("baseline", lambda s, y: jnp_loss(y, s))):
                step = jax.jit(jax.value_and_grad(fn))
                times[name] = median_seconds(lambda: jax.block_until_ready(step(s, y)), warmup, repeats)
            records.append({"case": "jax", "R": R, "library_s": times["library"], "baseline_s": times["baseline"],
                            "baseline": "jax.numpy", "threads": threads})
    return records


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--threads", type=int, default=0,
                        help="libnpairs' CPU threads (npairs.set_num_threads; and torch's on the torch backend); "
                             "0: the defaults (every core)")
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(run_backend(args.worker, args.sizes, args.warmup, args.repeats, args.threads)))
        return

    records = []
    for backend in args.backends:
        # Keras picks its backend at import: one process each.
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
        out = subprocess.run([sys.executable, __file__, "--worker", backend, "--warmup", str(args.warmup),
                              "--repeats", str(args.repeats), "--threads", str(args.threads),
                              "--sizes", *map(str, args.sizes)],
                             env=env, stdout=subprocess.PIPE, check=True, text=True).stdout
        records += json.loads(out.strip().splitlines()[-1])

    print("| case | baseline | R = M | library (ms) | baseline (ms) | baseline / library |")
    print("|---|---|---:|---:|---:|---:|")
    for r in records:
        print(f"| {r['case']} | {r['baseline']} | {r['R']} | {1e3 * r['library_s']:.1f} | "
              f"{1e3 * r['baseline_s']:.1f} | {r['baseline_s'] / r['library_s']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv, "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
