"""Property functions: gradients against finite differences, orientation, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from torch.nn import functional as F

from skggda import TracInAttributor
from skggda.properties import (
    ClassLoss,
    FairnessGap,
    Margin,
    MeanLoss,
    SmoothAccuracy,
    make_property,
)

from conftest import make_problem, tiny_net


def margins(out, y):
    correct = out.gather(1, y[:, None]).squeeze(1)
    return correct - torch.logsumexp(out.scatter(1, y[:, None], float("-inf")), 1)


MASK = np.arange(40) % 3 == 0

# property, its value written independently, whether higher is better
CASES = {
    "loss": ("loss", lambda out, y: F.cross_entropy(out, y), False),
    "class_loss": (ClassLoss(1), lambda out, y: F.cross_entropy(out[y == 1], y[y == 1]), False),
    "margin": (Margin(), lambda out, y: margins(out, y).mean(), True),
    "accuracy": (SmoothAccuracy(0.5), lambda out, y: torch.sigmoid(margins(out, y) / 0.5).mean(),
                 True),
    "fairness": (FairnessGap(MASK), lambda out, y: (
        F.cross_entropy(out[MASK], y[MASK]) - F.cross_entropy(out[~MASK], y[~MASK])).abs(), False),
    "callable": (make_property(lambda m, X, y: F.cross_entropy(m(X), y, reduction="none").max()),
                 lambda out, y: F.cross_entropy(out, y, reduction="none").max(), False),
}


@pytest.fixture(scope="module")
def double_attr():
    X, y, _, _ = make_problem(n=120, n_classes=3, seed=2)
    net = tiny_net(hidden=(5,), epochs=5).fit(X, y)
    net.module_.double()  # finite differences need float64
    return net, X, y


@pytest.mark.parametrize("case", sorted(CASES))
def test_property_gradient_matches_finite_differences(double_attr, case):
    net, X, y = double_attr
    prop, value, greater_is_better = CASES[case]
    X_eval, y_eval, _, _ = make_problem(n=40, n_classes=3, seed=9)
    attr = TracInAttributor(FrozenEstimator(net), property=prop).fit(X, y)
    plan = attr._make_plan(net, X_eval)
    gradient = plan.flatten(attr._property_gradient(plan, X_eval, y_eval))

    module = net.module_
    params = dict(module.named_parameters())
    direction = torch.randn(plan.n_params, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)
    steps = plan.to_param_grads(plan.unflatten(direction))

    def evaluate(eps):
        shifted = {n: p.detach() + eps * steps[n] for n, p in params.items()}
        out = torch.func.functional_call(module, shifted, (torch.as_tensor(X_eval).double(),))
        return float(value(out, torch.as_tensor(y_eval)))

    finite_difference = (evaluate(1e-5) - evaluate(-1e-5)) / 2e-5
    sign = -1.0 if greater_is_better else 1.0  # gradients are of the badness
    assert float(gradient @ direction) == pytest.approx(sign * finite_difference, rel=1e-4,
                                                        abs=1e-8)


def test_orientation():
    assert not MeanLoss().greater_is_better and MeanLoss().sign == 1
    assert Margin().greater_is_better and Margin().sign == -1
    assert SmoothAccuracy().greater_is_better


def test_flipped_labels_hurt_the_accuracy_property():
    X, y, _, flipped = make_problem(n=400, noise=0.1, seed=3)
    X_test, y_test, _, _ = make_problem(n=200, seed=4)
    attr = TracInAttributor(tiny_net(hidden=(16,), epochs=30), property="accuracy",
                            random_state=0).fit(X, y)
    scores = attr.score_groups(X_test, y_test)
    assert scores[flipped].mean() < scores[~flipped].mean()


@pytest.mark.parametrize("prop", [FairnessGap(MASK), CASES["callable"][0]])
def test_attribute_needs_a_per_sample_property(double_attr, prop):
    net, X, y = double_attr
    attr = TracInAttributor(FrozenEstimator(net), property=prop).fit(X, y)
    with pytest.raises(ValueError, match="not a sum of per-sample terms"):
        attr.attribute(X[:40], y[:40])


def test_property_errors(double_attr):
    net, X, y = double_attr
    with pytest.raises(ValueError, match="no sample of class 7"):
        TracInAttributor(FrozenEstimator(net), property=ClassLoss(7)).fit(X, y).score_groups()
    with pytest.raises(ValueError, match="mask has shape \\(40,\\) but the evaluation data has 120"):
        TracInAttributor(FrozenEstimator(net), property=FairnessGap(MASK)).fit(X, y).score_groups()
    with pytest.raises(ValueError, match="temperature must be positive"):
        SmoothAccuracy(0)


def test_mask_can_be_computed_from_X(double_attr):
    net, X, y = double_attr
    by_function = TracInAttributor(FrozenEstimator(net),
                                   property=FairnessGap(lambda X: X[:, 0] > 0)).fit(X, y)
    by_array = TracInAttributor(FrozenEstimator(net),
                                property=FairnessGap(X[:, 0] > 0)).fit(X, y)
    np.testing.assert_allclose(by_function.score_groups(), by_array.score_groups())


class _Logits(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = torch.nn.Linear(6, 3)

    def forward(self, X):
        return self.dense(X)


class _Probabilities(_Logits):
    """skorch's default convention: the module outputs probabilities, the criterion is NLL."""

    def forward(self, X):
        return torch.softmax(self.dense(X), dim=-1)


@pytest.mark.parametrize("make", [
    lambda net: TracInAttributor(net, property="margin"),
    lambda net: TracInAttributor(net, property="accuracy"),
    lambda net: __import__("skggda").TRAKAttributor(net, n_models=2, random_state=0),
])
def test_margin_reads_logits_of_probability_nets(problem, make):
    # A net that outputs probabilities (NLLLoss) must score like the same net outputting logits.
    from skggda.models import SeededNeuralNetClassifier

    X, y, X_test, y_test = problem
    nets = {}
    for module, criterion in ((_Logits, torch.nn.CrossEntropyLoss),
                              (_Probabilities, torch.nn.NLLLoss)):
        # same seed, same architecture: TRAK's members start from the same weights too
        nets[module] = SeededNeuralNetClassifier(
            module, criterion=criterion, max_epochs=3, lr=0.1, train_split=None, verbose=0,
            random_state=0).fit(X, y)
    nets[_Probabilities].module_.load_state_dict(nets[_Logits].module_.state_dict())
    scores = [make(FrozenEstimator(net)).fit(X, y).score_groups(X_test, y_test)
              for net in nets.values()]
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-3, atol=1e-6)
