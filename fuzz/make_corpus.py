#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/npairs_fuzzer.cpp into fuzz/corpus/: one
valid call of each kind (labels or multi-labels; similarity or embeddings;
square or with column targets; every reduction; gradients, in place too;
R = 0; a problem large enough for the threaded row pass; symmetric, with
dL/dtau), from which the
fuzzer mutates into the invalid ones. Each seed is the harness's byte layout:
one byte per decision, in the order the harness reads them, then one byte per
data element. Usage: python3 fuzz/make_corpus.py
"""
import os

# Decision values (see the pick() lists in npairs_fuzzer.cpp).
SOBS, NONE, SUM = 0, 1, 2  # options.reduction
F32, F64 = 0, 1  # problem.dtype
I32, I64 = 0, 1  # problem.label_dtype
LABELS, MULTILABELS = 0, 5  # targets
SIMILARITY, EMBEDDINGS = 0, 4  # logits
TEMPERATURE = {1.0: 0, 0.5: 1, 2.0: 2}
REG_LAMBDA = {0.0: 0, 0.002: 2}
FLAGS = {0: 0, "symmetric": 3}  # options.flags


def size(n):
    """The size byte of n: 0..40, or one of the larger sizes the harness knows."""
    return n if n <= 40 else 246 + [64, 200].index(n)


def value(x):
    """The data byte of a value: 0, +-1, 0.5, 2, or k/16 in [-8, 8)."""
    special = {0.0: 0, 1.0: 1, -1.0: 2, 0.5: 3, 2.0: 4}
    return special[x] if x in special else int(round(x * 16)) + 128


def seed(rows, labels=None, column_labels=None, multilabels=None, column_multilabels=None,
         classes=0, similarity=None, anchors=None, positives=None, dim=0, cols=0, dtype=F64,
         label_dtype=I64, reduction=SOBS, temperature=1.0, reg_lambda=0.0, threads=1,
         weights=None, grad_loss=None, loss=True, grads="", in_place=False, flags=0):
    out = [0, 0, 0, threads, 0]  # CPU, device 0, *out given, threads, no stream call
    out += [0, reduction, TEMPERATURE[temperature], REG_LAMBDA[reg_lambda], FLAGS[flags]]  # options
    out += [0, 0, size(rows), 1 if cols else 0] + ([size(cols)] if cols else [])  # problem and ctx given
    out += [dtype, label_dtype, size(classes), size(dim)]
    column_targets = column_labels is not None or column_multilabels is not None
    out += [LABELS if labels is not None else MULTILABELS, 1 if column_targets else 0]
    out += [SIMILARITY if similarity is not None else EMBEDDINGS, 0]
    out += [(weights is not None) | (grad_loss is not None) << 1 | (not loss) << 2 | bool(grads) << 3]
    out += [("S" in grads) | ("A" in grads) << 1 | ("P" in grads) << 2 | ("T" in grads) << 3, 1 if in_place else 0]
    out += [x & 0xFF for x in (labels or []) + (column_labels or [])]
    for data in (multilabels, column_multilabels, similarity, anchors, positives, weights, grad_loss):
        out += [value(x) for x in data or []]
    out += [0, 0, 0]  # options, problem and grads of exactly their size
    return bytes(out)


def points(n, d, k=0):
    """n points of d coordinates in [-2, 2), varied through k."""
    return [((7 * i + 3 * j + k) % 64 - 32) / 16 for i in range(n) for j in range(d)]


SPEC_POINTS = [1.0, 1.0, 1.0, -1.0, -1.0, 1.0, -1.0, -1.0]  # SPEC section 1's check value
SEEDS = {
    "labels-embeddings-spec-check-value": seed(
        4, labels=[0, 0, 1, 1], anchors=SPEC_POINTS, positives=SPEC_POINTS, dim=2, grads="AP"),
    "labels-similarity-f32": seed(
        4, labels=[0, 0, 1, 1], similarity=points(4, 4), dtype=F32, label_dtype=I32, reduction=SUM),
    "labels-similarity-none-weights-in-place": seed(
        5, labels=[2, 0, 2, 1, 0], similarity=points(5, 5), reduction=NONE, temperature=0.5,
        weights=[1.0, 0.5, 2.0, 0.0, 1.0], grad_loss=[1.0, -1.0, 0.5, 2.0, 1.0], grads="S", in_place=True),
    "labels-columns-embeddings-l2": seed(
        3, cols=5, labels=[0, 1, 1], column_labels=[1, 0, 2, 1, 0], anchors=points(3, 3),
        positives=points(5, 3, 1), dim=3, dtype=F32, reg_lambda=0.002, grad_loss=[2.0], grads="SAP"),
    "multilabels-similarity-none": seed(
        4, multilabels=[1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.0], classes=2, similarity=points(4, 4),
        reduction=NONE, grads="S"),
    "multilabels-columns-embeddings": seed(
        2, cols=3, multilabels=[1.0, 0.0, 0.0, 2.0], column_multilabels=[0.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        classes=2, anchors=points(2, 2), positives=points(3, 2, 5), dim=2, dtype=F32, temperature=2.0,
        grads="AP"),
    "labels-columns-similarity-symmetric-temperature": seed(
        3, cols=4, labels=[0, 1, 1], column_labels=[1, 0, 1, 0], similarity=points(3, 4), temperature=0.5,
        reduction=SUM, grad_loss=[2.0], grads="ST", flags="symmetric"),
    "multilabels-embeddings-symmetric": seed(
        3, multilabels=[1.0, 0.0, 1.0, 1.0, 0.0, 1.0], classes=2, anchors=points(3, 2), positives=points(3, 2, 4),
        dim=2, dtype=F32, grads="APT", flags="symmetric"),
    "empty-rows": seed(0, labels=[], anchors=[], positives=[], dim=4, grads="AP"),
    "threaded-row-pass": seed(
        200, labels=[i % 4 for i in range(200)], anchors=points(200, 2), positives=points(200, 2, 9), dim=2,
        threads=3, grads="A"),
}

if __name__ == "__main__":
    corpus = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(corpus, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SEEDS)} seeds to {corpus}")
