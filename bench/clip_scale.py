"""CLIP's symmetric loss at the logit scales CLIP trains at, against the same
non-symmetric call: the NumPy API, loss + dL/dS (+ dL/dtau), float32.

The logits are those of CLIP: unit image and text embeddings whose matching
pairs are close (S_ii large, the rest small), times a logit scale 1/tau;
labels 0..R-1. A large scale (CLIP's is clamped at 100) puts most columns far
below the rows' largest logits, which is where the library's CPU pass needs
more than one exp per element (ColumnShiftLimit in src/row_math.hpp).

Usage:
  NPAIRS_LIBRARY=build/cpu-only/libnpairs.so PYTHONPATH=python python bench/clip_scale.py \
      [--rows 2048] [--dim 64] [--scales 14.3,30,50,100] [--repeats 7] [--threads 1]
Prints one line per scale: the medians of both calls and their ratio.
"""
import argparse
import numpy as np

import npairs
from keras_jax import median_seconds  # bench/: the same timing


def clip_logits(rows, dim, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((rows, dim))
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts = images + 0.5 * rng.standard_normal((rows, dim))
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    return (images @ texts.T).astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--scales", default="14.3,30,50,100")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    similarity = clip_logits(args.rows, args.dim)
    labels = np.arange(args.rows, dtype=np.int32)
    grad = np.empty_like(similarity)
    for scale in (float(s) for s in args.scales.split(",")):
        def call(symmetric):
            return lambda: npairs.npairs_loss(labels, similarity, temperature=1.0 / scale, symmetric=symmetric,
                                              return_grad=True, return_temperature_grad=True, grad_out=grad,
                                              threads=args.threads)
        rows_only = 1e3 * median_seconds(call(False), 3, args.repeats)
        both = 1e3 * median_seconds(call(True), 3, args.repeats)
        print(f"R={args.rows} scale={scale:g}: symmetric {both:.1f} ms, non-symmetric {rows_only:.1f} ms, "
              f"ratio {both / rows_only:.2f}", flush=True)


if __name__ == "__main__":
    main()
