"""The Keras-style loss classes: per-row sample weights and config round trips."""

import json

import numpy as np
import pytest

import npairs
from npairs_reference import REDUCTIONS, loss_and_grads, random_labels, random_multilabels, targets_from_labels, \
    targets_from_multilabels

rng = np.random.default_rng(5)
R = 9
LABELS = random_labels(rng, R, 3)
MULTI = random_multilabels(rng, R, 4)
S = rng.standard_normal((R, R))
A = rng.standard_normal((R, 4))
P = rng.standard_normal((R, 4))
W = rng.random(R)


def test_defaults_match_tensorflow_addons():
    assert npairs.NpairsLoss().get_config() == {"name": "npairs_loss", "reduction": "sum_over_batch_size",
                                                "temperature": 1.0, "backend": "auto", "threads": None,
                                                "workspace_limit": None, "symmetric": False}
    assert npairs.NpairsMultilabelLoss().name == "npairs_multilabel_loss"
    assert npairs.NpairsEmbeddingsLoss().get_config()["reg_lambda"] == 0.0  # no L2 term unless asked for
    assert npairs.NpairsLoss()(LABELS, S) == npairs.npairs_loss(LABELS, S)


@pytest.mark.parametrize("cls,args", [
    (npairs.NpairsLoss, (LABELS, S)),
    (npairs.NpairsMultilabelLoss, (MULTI, S)),
    (npairs.NpairsEmbeddingsLoss, (LABELS, A, P)),
])
@pytest.mark.parametrize("reduction", ["sum", "sum_over_batch_size", "auto"])
def test_config_round_trip(cls, args, reduction):
    loss = cls(temperature=0.6, reduction=reduction, name="my_loss")
    config = loss.get_config()
    assert isinstance(config, dict)
    json.dumps(config)  # serialisable, as Keras configs are
    again = cls.from_config(config)
    assert again.get_config() == config and again == loss
    assert again(*args) == loss(*args)
    assert again(*args, sample_weight=W) == loss(*args, sample_weight=W)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight", ["scalar", "vector", "column"])
def test_sample_weight_per_row(reduction, weight):
    w = {"scalar": 0.3, "vector": W, "column": W.reshape(-1, 1)}[weight]
    loss = npairs.NpairsLoss(temperature=0.9, reduction=reduction)(LABELS, S, sample_weight=w)
    ref, *_ = loss_and_grads(targets_from_labels(LABELS), S=S, temperature=0.9, weights=np.reshape(w, -1),
                             reduction=reduction)
    np.testing.assert_allclose(loss, ref, rtol=1e-12)


def test_keras_weighting_semantics():
    # Keras: sum_over_batch_size divides the weighted sum by the batch size, not by the weights' sum.
    per_row = npairs.NpairsLoss().call(LABELS, S)
    assert per_row.shape == (R,)
    weighted = npairs.NpairsLoss()(LABELS, S, sample_weight=W)
    np.testing.assert_allclose(weighted, np.sum(W * per_row) / R, rtol=1e-12)
    np.testing.assert_allclose(npairs.NpairsLoss(reduction="sum")(LABELS, S, W), np.sum(W * per_row), rtol=1e-12)


def test_multilabel_class_matches_reference():
    loss = npairs.NpairsMultilabelLoss(reduction="sum")(MULTI, S, W)
    ref, *_ = loss_and_grads(targets_from_multilabels(MULTI), S=S, weights=W, reduction="sum")
    np.testing.assert_allclose(loss, ref, rtol=1e-12)


def test_embeddings_class_matches_reference():
    loss = npairs.NpairsEmbeddingsLoss(reg_lambda=0.01, temperature=2.0)(LABELS, A, P, W)
    ref, *_ = loss_and_grads(targets_from_labels(LABELS), A=A, P=P, temperature=2.0, weights=W, reg_lambda=0.01)
    np.testing.assert_allclose(loss, ref, rtol=1e-12)


def test_constructor_checks():
    with pytest.raises(npairs.InvalidArgumentError, match="reduction"):
        npairs.NpairsLoss(reduction="mean_of_nothing")
    with pytest.raises(npairs.InvalidArgumentError, match="temperature"):
        npairs.NpairsMultilabelLoss(temperature=0)
    with pytest.raises(npairs.InvalidArgumentError, match="reg_lambda"):
        npairs.NpairsEmbeddingsLoss(reg_lambda=-1)
    with pytest.raises(npairs.InvalidArgumentError, match="backend"):
        npairs.NpairsLoss(backend="abacus")
    with pytest.raises(TypeError):
        npairs.NpairsLoss.from_config({"name": "x", "colour": "red"})
