"""skggda.models: the MLP, the seeded skorch classifier and the training recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from skggda.models import MLP, SeededNeuralNetClassifier, make_classifier
from skggda.models._callbacks import CheckpointRecorder

from conftest import make_problem, one_cycle_rates


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


def test_partial_fit_initialises_once_then_carries_on():
    X, y, _, _ = make_problem(n=64, n_features=6, n_classes=3)
    net = make_classifier((4,), max_epochs=2, random_state=0, warm_start=False)
    net.partial_fit(X, y)  # the first call initialises, with the sizes of its data
    assert net.module_.body[0].in_features == 6 and net.module_.head.out_features == 3
    module, optimizer = net.module_, net.optimizer_
    before = [p.detach().clone() for p in module.parameters()]
    net.partial_fit(X, y)  # the next carries on, whatever warm_start says
    assert net.module_ is module and net.optimizer_ is optimizer
    assert len(net.history) == 4
    assert not all(torch.equal(a, b) for a, b in zip(before, module.parameters()))
    with pytest.raises(RuntimeError):  # the sizes stay those of the first call
        net.partial_fit(X[:, :4], y)


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


# -- callbacks, value by value (mutation testing: benchmarks/TESTING.md) -----------------


def test_one_cycle_schedule_counts_training_batches_and_ends_at_its_minimum():
    # a validation split: 200 rows, 160 train -> 5 batches of 32 a epoch, 3 epochs;
    # the validation batches must not step the schedule
    from skorch.dataset import ValidSplit

    X, y, _, _ = make_problem(n=200)
    recorder = CheckpointRecorder()
    net = make_classifier((4,), max_epochs=3, lr=0.05, batch_size=32, random_state=0,
                          callbacks=[("rates", recorder)])
    net.set_params(train_split=ValidSplit(5)).fit(X, y)
    schedule = dict(net.callbacks_)["one_cycle"]
    assert schedule.scheduler_.total_steps == 15
    expected = one_cycle_rates(0.05, 15).reshape(3, 5).mean(1)
    np.testing.assert_allclose(recorder.learning_rates_, expected, rtol=1e-12)
    # the last step leaves the rate at OneCycleLR's minimum, lr / 25 / 1e4, not past it
    assert net.optimizer_.param_groups[0]["lr"] == pytest.approx(0.05 / 25 / 1e4, rel=1e-9)


def test_one_cycle_steps_from_the_rows_of_dict_inputs_and_at_least_one_batch():
    from types import SimpleNamespace

    from skggda.models._callbacks import OneCycleSchedule

    def total_steps(X, batch_size, max_epochs=3):
        param = torch.zeros(1, requires_grad=True)
        net = SimpleNamespace(train_split=None, max_epochs=max_epochs, batch_size=batch_size,
                              lr=0.1, optimizer_=torch.optim.Adam([param], lr=0.1))
        callback = OneCycleSchedule()
        callback.on_train_begin(net, X=X, y=None)
        return callback.scheduler_.total_steps

    columns = {"ids": np.zeros((100, 7)), "mask": np.ones((100, 7))}
    assert total_steps(columns, batch_size=32) == 3 * 4  # rows, not the dict's 2 keys
    assert total_steps(np.zeros((10, 2)), batch_size=32) == 3  # one batch an epoch
    assert total_steps(np.zeros((64, 2)), batch_size=32) == 3 * 2


def test_checkpoint_recorder_weights_an_epoch_without_steps_zero():
    from types import SimpleNamespace

    net = SimpleNamespace(module_=torch.nn.Linear(2, 1))
    recorder = CheckpointRecorder()
    recorder.on_train_begin(net)
    recorder.on_epoch_end(net)
    assert recorder.learning_rates_ == [0.0]
    assert torch.equal(recorder.checkpoints_[0]["weight"], net.module_.weight.detach())


def _diverging_net(loss, weight=1.0):
    from types import SimpleNamespace

    from skorch.history import History

    history = History()
    history.new_epoch()
    if loss is not None:
        history.record("train_loss", loss)
    module = torch.nn.Linear(2, 1)
    with torch.no_grad():
        module.weight.fill_(weight)
    return SimpleNamespace(history=history, module_=module, lr=0.1)


def test_divergence_check_looks_at_the_loss_and_at_the_weights():
    from skggda.models._callbacks import DivergenceCheck

    check = DivergenceCheck()
    check.on_epoch_end(_diverging_net(0.5))  # finite: nothing to say
    check.on_epoch_end(_diverging_net(None))  # no loss recorded, finite weights
    with pytest.raises(ValueError, match=r"at epoch 1: the training loss is inf\. Lower"):
        check.on_epoch_end(_diverging_net(float("inf")))  # weights still finite
    with pytest.raises(ValueError, match=r"at epoch 1: the training loss is nan\."):
        check.on_epoch_end(_diverging_net(float("nan")))
    with pytest.raises(ValueError, match=r"at epoch 1: parameter 'weight' holds NaN or inf"):
        check.on_epoch_end(_diverging_net(0.5, weight=float("nan")))  # loss still finite


@pytest.mark.parametrize("net_class", ["SeededNeuralNetClassifier", "SeededNeuralNetRegressor"])
def test_seeded_nets_take_their_options_by_keyword(net_class):
    import skggda.models

    net_class = getattr(skggda.models, net_class)
    with pytest.raises(TypeError, match="positional"):
        net_class(MLP, torch.nn.MSELoss)  # skorch's criterion, given positionally
    assert net_class(MLP, criterion=torch.nn.MSELoss).criterion is torch.nn.MSELoss
