"""skggda.models: the MLP, the seeded skorch classifier and the training recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skggda.models import MLP, CheckpointRecorder, SeededNeuralNetClassifier, make_classifier

from conftest import make_problem


def test_mlp_without_hidden_layers_is_logistic_regression():
    module = MLP(n_features=5, n_classes=3)
    assert len(module.body) == 0
    assert isinstance(module.head, torch.nn.Linear)
    assert (module.head.in_features, module.head.out_features) == (5, 3)


def test_mlp_flattens_image_inputs():
    module = MLP(n_features=2 * 4 * 4, n_classes=3, hidden_layer_sizes=(7,))
    assert module(torch.zeros(5, 2, 4, 4)).shape == (5, 3)


def test_mlp_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation='swish' is not one of"):
        MLP(3, 2, activation="swish")


def test_make_classifier_follows_the_paper_recipe():
    net = make_classifier((50, 50), random_state=0)
    assert isinstance(net, SeededNeuralNetClassifier)
    assert net.optimizer is torch.optim.Adam
    assert net.optimizer__weight_decay == 4e-4
    assert net.batch_size == 128
    assert net.train_split is None
    assert isinstance(net.criterion(), torch.nn.CrossEntropyLoss)
    assert [name for name, _ in net.callbacks] == ["one_cycle"]


def test_one_cycle_schedule_rises_then_anneals():
    X, y, _, _ = make_problem(n=256)
    rates = CheckpointRecorder()
    net = make_classifier((4,), max_epochs=6, lr=0.05, batch_size=32, random_state=0,
                          callbacks=[("rates", rates)]).fit(X, y)
    lr = rates.learning_rates_
    assert len(lr) == 6
    assert max(lr) <= 0.05
    assert np.argmax(lr) not in (0, 5)
    assert lr[-1] < lr[0]
    assert net.history[-1, "train_loss"] < net.history[0, "train_loss"]


def test_training_is_repeatable_and_leaves_global_rng_alone():
    X, y, _, _ = make_problem(n=128)
    state = torch.random.get_rng_state()
    first = make_classifier((6,), max_epochs=3, random_state=4).fit(X, y)
    second = clone(first).fit(X, y)
    first.predict_proba(X)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    other = make_classifier((6,), max_epochs=3, random_state=5).fit(X, y)
    assert not np.allclose(first.predict_proba(X), other.predict_proba(X))


def test_dimensions_are_inferred_at_every_fit():
    X, y, _, _ = make_problem(n=64, n_features=6, n_classes=3)
    net = make_classifier((4,), max_epochs=1, random_state=0).fit(X, y)
    assert net.module_.head.out_features == 3
    net.fit(X[:, :4], y % 2)
    assert net.module_.body[0].in_features == 4
    assert net.module_.head.out_features == 2


def test_explicit_module_dimensions_win():
    X, y, _, _ = make_problem(n=64, n_classes=2)
    net = make_classifier((4,), max_epochs=1, random_state=0, module__n_classes=5).fit(X, y)
    assert net.module_.head.out_features == 5


def test_float64_and_pandas_inputs():
    pd = pytest.importorskip("pandas")
    X, y, _, _ = make_problem(n=64)
    frame = pd.DataFrame(X.astype(np.float64), columns=[f"f{i}" for i in range(X.shape[1])])
    net = make_classifier((4,), max_epochs=1, random_state=0).fit(frame, pd.Series(y))
    assert net.predict_proba(frame).shape == (64, 2)
    assert net.predict_proba(X.astype(np.float64)).shape == (64, 2)


def test_checkpoint_recorder_keeps_cpu_copies_per_epoch():
    X, y, _, _ = make_problem(n=64)
    recorder = CheckpointRecorder()
    net = make_classifier((4,), max_epochs=3, random_state=0,
                          callbacks=[("ckpt", recorder)]).fit(X, y)
    assert len(recorder.checkpoints_) == 3
    final = net.module_.state_dict()
    for key, value in recorder.checkpoints_[-1].items():
        assert value.device.type == "cpu"
        assert torch.equal(value, final[key].cpu())
    assert not torch.equal(recorder.checkpoints_[0]["head.weight"], final["head.weight"])
