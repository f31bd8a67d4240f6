"""Numerical faults and interrupted work: clear errors, and a fitted estimator survives.

A diverging training, a frozen net with NaN weights, a property that does
not depend on the parameters and inputs that overflow the net all raise a
``ValueError`` that says so. Half-precision nets accumulate in float32;
float64 nets work throughout. Ctrl-C during ``fit`` or ``score_groups``
leaves a fitted estimator as it was.
"""

from __future__ import annotations

import copy
import os
import signal

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback
from sklearn.frozen import FrozenEstimator

from skggda import (GradKMeansGrouper, InfluenceAttributor, ReprKMeansGrouper,
                    TracInAttributor, TRAKAttributor)
from skggda.properties import MeanLoss

from conftest import deep_state, make_problem, tiny_net


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_problem(n=60, n_features=3, seed=3)
    return X, y


@pytest.fixture(scope="module")
def net(data):
    return tiny_net(hidden=(4,), epochs=2).fit(*data)


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own SIGINT handler during each test, as in a fresh interpreter.

    skggda aborts a fit on Ctrl-C only under that handler (a custom or ignoring
    handler stays in charge): something earlier in a full CI run left another
    one installed, and the Ctrl-C tests then saw skorch end training quietly.
    """
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def fitted(data, net):
    return TracInAttributor(FrozenEstimator(net), n_components=8, random_state=0).fit(*data)


def diverging_net():
    return tiny_net(hidden=(4,), epochs=3).set_params(lr=1e30)


def refit_fails(estimator, new_estimator, error, X, y, match=None):
    """Refit with ``estimator=new_estimator``, expect ``error``, put the old net back."""
    original = estimator.estimator
    estimator.set_params(estimator=new_estimator)
    with pytest.raises(error, match=match):
        estimator.fit(X, y)
    estimator.set_params(estimator=original)


# -- numerical faults -------------------------------------------------------------


def test_diverging_training_names_the_epoch_and_keeps_the_previous_fit(data, fitted):
    X, y = data
    scores, before = fitted.score_groups(X, y), deep_state(fitted)
    refit_fails(fitted, diverging_net(), ValueError, X, y,
                match=r"Training diverged at epoch \d: .*Lower the learning rate")
    assert deep_state(fitted) == before
    np.testing.assert_array_equal(fitted.score_groups(X, y), scores)


def _diverging_recipe(net):
    """A fitted net whose training recipe diverges (what TRAK's members are trained with)."""
    net = copy.deepcopy(net)
    net.lr = 1e30
    return FrozenEstimator(net)


@pytest.mark.parametrize("make", [
    lambda net: TracInAttributor(diverging_net()),
    lambda net: GradKMeansGrouper(n_groups=2, estimator=diverging_net()),
    lambda net: TRAKAttributor(_diverging_recipe(net), n_models=1),
], ids=["attributor", "grouper", "trak-member"])
def test_every_trained_net_is_checked_for_divergence(data, net, make):
    with pytest.raises(ValueError, match="Training diverged at epoch"):
        make(net).fit(*data)


def test_frozen_net_with_nan_weights_is_refused(data, net):
    broken = copy.deepcopy(net)
    with torch.no_grad():
        broken.module_.head.bias[0] = float("nan")
    with pytest.raises(ValueError, match="parameter 'head.bias' holds NaN or inf"):
        InfluenceAttributor(FrozenEstimator(broken)).fit(*data)


@pytest.mark.parametrize("fn", [
    lambda module, X, y: torch.tensor(1.0),
    lambda module, X, y: 0.0 * module(X).sum(),
], ids=["constant", "zero-gradient"])
def test_property_that_does_not_depend_on_the_parameters(data, net, fn):
    X, y = data
    attr = TracInAttributor(FrozenEstimator(net), property=fn).fit(X, y)
    with pytest.raises(ValueError, match="does not depend on the attributed parameters"):
        attr.score_groups(X, y)


def test_net_trained_on_one_class_has_nothing_to_attribute(data):
    X, _ = data
    attr = TracInAttributor(tiny_net(hidden=(4,), epochs=1)).fit(X, np.zeros(len(X), int))
    with pytest.raises(ValueError, match="does not depend on the attributed parameters"):
        attr.score_groups()


@pytest.mark.parametrize("make", [
    lambda net: TracInAttributor(net),
    lambda net: InfluenceAttributor(net, n_components=4),
])
def test_inputs_that_overflow_the_net(data, net, make):
    X, y = data
    with pytest.raises(ValueError, match="not finite"):
        make(FrozenEstimator(net)).fit(X * 1e30, y).score_groups()


def _as(net, dtype):
    net = copy.deepcopy(net)
    net.module_.to(dtype)
    return FrozenEstimator(net)


@pytest.mark.parametrize("dtype,rtol", [(torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
@pytest.mark.parametrize("make", [
    lambda net: TracInAttributor(net, n_components=8, random_state=0),
    lambda net: InfluenceAttributor(net, n_components=8, fisher="empirical", damping=1.0,
                                    random_state=0),
])
def test_half_precision_sums_are_accumulated_in_float32(data, net, dtype, rtol, make):
    X, y = data
    X = np.tile(X * 30, (20, 1))  # 1,200 samples with gradients in the hundreds
    y = np.tile(y, 20)
    half = _as(net, dtype)
    # the same (rounded) weights in float32: only the arithmetic differs
    reference = _as(half.estimator, torch.float32)
    one_group = np.zeros(len(y))
    scores = make(half).fit(X, y, groups=one_group).score_groups(X[:20], y[:20])
    expected = make(reference).fit(X, y, groups=one_group).score_groups(X[:20], y[:20])
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores, expected, rtol=rtol)


def test_half_precision_group_gradients_do_not_overflow(data, net):
    X, y = data
    X, y = np.tile(X * 30, (20, 1)), np.tile(y, 20)
    attr = TracInAttributor(_as(net, torch.float16)).fit(X, y, groups=np.zeros(len(y)))
    assert np.isfinite(attr.attribute(X[:3], y[:3])).all()


@pytest.mark.parametrize("make", [
    lambda net: TracInAttributor(net),
    lambda net: TracInAttributor(net, n_components=8, random_state=0),
    lambda net: InfluenceAttributor(net, n_components=8, random_state=0),
    lambda net: InfluenceAttributor(net, solver="exact"),
    lambda net: InfluenceAttributor(net, solver="cg", damping=1.0),
    lambda net: InfluenceAttributor(net, solver="lissa", lissa_depth=5, lissa_repeat=1,
                                    random_state=0),
    lambda net: TRAKAttributor(net, n_models=2, n_components=8, random_state=0),
    lambda net: TracInAttributor(net, grouper=GradKMeansGrouper(n_groups=3, random_state=0)),
    lambda net: TracInAttributor(net, grouper=ReprKMeansGrouper(n_groups=3, random_state=0)),
])
def test_float64_nets_work_end_to_end(data, net, make):
    X, y = data
    attr = make(_as(net, torch.float64)).fit(X, y)
    scores, rows = attr.score_groups(X[:10], y[:10]), attr.attribute(X[:10], y[:10])
    assert np.isfinite(scores).all() and np.isfinite(rows).all()
    np.testing.assert_allclose(rows.mean(0), scores, rtol=1e-4, atol=1e-6)


def test_float64_scores_match_float32(data, net):
    X, y = data
    scores = TracInAttributor(_as(net, torch.float64)).fit(X, y).score_groups(X, y)
    np.testing.assert_allclose(scores, TracInAttributor(FrozenEstimator(net)).fit(X, y)
                               .score_groups(X, y), rtol=1e-4, atol=1e-7)


# -- interrupted work -------------------------------------------------------------


class CtrlC(Callback):
    """Press Ctrl-C (send SIGINT to this process) at the end of an epoch."""

    def on_epoch_end(self, net, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)


class Fails(Callback):
    def on_epoch_end(self, net, **kwargs):
        raise RuntimeError("disk full")


def _with_callback(callback):
    return tiny_net(hidden=(4,), epochs=2, callbacks=[("cb", callback())])


def _frozen_with_callback(callback):
    """A fitted net whose recipe (TRAK's members) carries ``callback``."""
    net = tiny_net(hidden=(4,), epochs=2).fit(*make_problem(n=60, n_features=3, seed=3)[:2])
    net.callbacks = [("cb", callback())]
    return FrozenEstimator(net)


@pytest.mark.parametrize("make,interrupted", [
    (lambda net: TracInAttributor(net, n_components=8, random_state=0), _with_callback),
    (lambda net: TRAKAttributor(net, n_models=2, n_components=8, random_state=0),
     _frozen_with_callback),
    (lambda net: TracInAttributor(net, grouper=GradKMeansGrouper(n_groups=3, random_state=0)),
     _with_callback),
    (lambda net: GradKMeansGrouper(n_groups=3, estimator=net, random_state=0), _with_callback),
], ids=["tracin", "trak-members", "attributor-with-grouper", "grouper"])
@pytest.mark.parametrize("callback,error", [(CtrlC, KeyboardInterrupt), (Fails, RuntimeError)],
                         ids=["ctrl-c", "error"])
def test_interrupted_refit_leaves_the_fitted_estimator_unchanged(data, make, interrupted,
                                                                 callback, error):
    X, y = data
    estimator = make(tiny_net(hidden=(4,), epochs=2)).fit(X, y)
    before = deep_state(estimator)
    refit_fails(estimator, interrupted(callback), error, X, y)
    assert deep_state(estimator) == before
    if hasattr(estimator, "score_groups"):
        assert np.isfinite(estimator.score_groups(X, y)).all()


def test_a_callback_raising_keyboard_interrupt_still_stops_training_early(data):
    # skorch's EarlyStopping ends training this way: not an interruption of the fit
    class Stop(Callback):
        def on_epoch_end(self, net, **kwargs):
            raise KeyboardInterrupt

    attr = TracInAttributor(tiny_net(hidden=(4,), epochs=5, callbacks=[("stop", Stop())]))
    attr.fit(*data)
    assert len(attr.estimator_.history) == 1


class InterruptibleLoss(MeanLoss):
    """The mean loss, until ``interrupt`` is set: then Ctrl-C in the middle of a pass."""

    def __init__(self):
        self.interrupt = False

    def terms(self, output, y, loss_fn):
        if self.interrupt:
            raise KeyboardInterrupt
        return super().terms(output, y, loss_fn)


@pytest.mark.parametrize("method", ["score_groups", "attribute"])
@pytest.mark.parametrize("make", [
    lambda net, prop: TracInAttributor(net, property=prop),
    lambda net, prop: InfluenceAttributor(net, property=prop, n_components=8, random_state=0),
])
def test_interrupted_scoring_leaves_the_estimator_unchanged(data, net, method, make):
    X, y = data
    prop = InterruptibleLoss()
    attr = make(FrozenEstimator(net), prop).fit(X, y, groups=np.arange(len(y)) % 4)
    expected = getattr(attr, method)(X, y)
    prop.interrupt = True
    before = deep_state(attr)
    with pytest.raises(KeyboardInterrupt):
        getattr(attr, method)(X, y)
    assert deep_state(attr) == before
    prop.interrupt = False
    np.testing.assert_array_equal(getattr(attr, method)(X, y), expected)
