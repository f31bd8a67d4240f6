"""``skggda explain``'s explanations of the worst validation rows and ``--verify``."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from conftest import tiny_net  # noqa: E402
from skggda import RandomGrouper, TracInAttributor  # noqa: E402
from skggda.cli._explanations import (  # noqa: E402
    EXPLANATION_COLUMNS,
    explain_worst,
    verification_sentence,
)
from sklearn.frozen import FrozenEstimator  # noqa: E402
from test_explain import FAST, explain, small_table  # noqa: E402


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify")
    path = folder / "table.csv"
    small_table().to_csv(path, index=False)
    out = folder / "report"
    assert explain(path, "--target", "label", "--group-size", "16", "--output", out,
                   "--verify", "--verify-seeds", "2", "--worst", "4", *FAST) == 0
    return out


def test_verify_writes_one_row_per_retraining(report):
    table = pd.read_csv(report / "verification.csv")
    assert list(table.columns) == ["removed", "fraction", "seed", "metric"]
    # two seeds, each: no removal, then harmful and random at 5% and 10%
    assert len(table) == 2 * 5 and table["seed"].nunique() == 2
    assert table.groupby(["removed", "fraction"]).size().to_dict() == {
        ("harmful", 0.05): 2, ("harmful", 0.1): 2, ("none", 0.0): 2, ("random", 0.05): 2,
        ("random", 0.1): 2}
    assert table["metric"].between(0, 1).all()  # validation accuracy


def test_report_says_what_verification_csv_holds(report):
    table = pd.read_csv(report / "verification.csv")
    mean = table.groupby(["removed", "fraction"])["metric"].mean()
    page = (report / "report.html").read_text()
    sentence = re.search(r"<p id='verification'>(.*?)</p>", page).group(1)
    numbers = re.findall(r"(\d+\.\d)%", sentence)
    expected = [f"{100 * mean[('none', 0.0)]:.1f}", f"{100 * mean[('harmful', 0.1)]:.1f}",
                f"{100 * mean[('random', 0.1)]:.1f}"]
    if numbers[0] == numbers[1] == expected[0]:  # "left validation accuracy at X"
        expected = expected[:1] + expected[2:]
    assert numbers == expected, sentence
    assert sentence.startswith("Removing the 10% most harmful rows")
    assert page.count("alt='Verification'") == 1


def test_without_verify_there_is_no_verification(tmp_path):
    path = tmp_path / "table.csv"
    small_table().to_csv(path, index=False)
    assert explain(path, "--target", "label", "--output", tmp_path / "r", *FAST) == 0
    assert not (tmp_path / "r" / "verification.csv").exists()
    assert "id='verification'" not in (tmp_path / "r" / "report.html").read_text()
    assert (tmp_path / "r" / "explanations.csv").exists()


def test_explanations_csv_lists_the_worst_rows_groups(report):
    explanations = pd.read_csv(report / "explanations.csv")
    groups = pd.read_csv(report / "groups.csv")
    members = pd.read_csv(report / "members.csv")
    assert list(explanations.columns) == EXPLANATION_COLUMNS
    assert explanations["valid_row"].nunique() == 4  # --worst 4
    assert not set(explanations["valid_row"]) & set(members["row"])  # validation rows only
    assert set(explanations["group"]) <= set(groups["group"])
    assert explanations.groupby(["valid_row", "side"]).size().eq(3).all()
    assert explanations.drop_duplicates("valid_row")["loss"].is_monotonic_decreasing
    page = (report / "report.html").read_text()
    assert page.count("<table id='explanations'>") == 1


def test_explain_worst_follows_the_losses_and_top_groups():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(160, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    y[:16] = 1 - y[:16]
    net = tiny_net(epochs=5).fit(X[:120], y[:120])
    attributor = TracInAttributor(FrozenEstimator(net), grouper=RandomGrouper(group_size=8),
                                  random_state=0).fit(X[:120], y[:120])
    data = SimpleNamespace(X_valid=X[120:], y_valid=y[120:], task="classification",
                           classes=np.array(["no", "yes"]), target_scale=None,
                           valid_rows=np.arange(500, 540))
    table = explain_worst(attributor, net, data, 3)
    losses = -np.log(net.predict_proba(X[120:])[np.arange(40), y[120:]])
    worst = np.argsort(-losses)[:3]
    assert table["valid_row"].drop_duplicates().tolist() == (500 + worst).tolist()
    np.testing.assert_allclose(table["loss"].drop_duplicates(), losses[worst], rtol=1e-5)
    scores = attributor.attribute(X[120:][worst], y[120:][worst])
    for i, row in enumerate(worst):
        part = table[table["valid_row"] == 500 + row]
        harmful = part[part["side"] == "harmful"]
        helpful = part[part["side"] == "helpful"]
        assert harmful["group"].tolist() == np.argsort(scores[i])[:3].tolist()
        assert helpful["group"].tolist() == np.argsort(-scores[i])[:3].tolist()
        assert set(part["label"]) == {data.classes[y[120 + row]]}


def test_verification_sentence():
    result = SimpleNamespace(metric="accuracy", fractions=np.array([0.05, 0.1]),
                             baseline=0.712, harmful=np.array([0.70, 0.72]),
                             random=np.array([0.71, 0.705]),
                             table=[{"seed": 1}, {"seed": 2}, {"seed": 3}])
    assert verification_sentence(result) == (
        "removing the 10% most harmful rows raised validation accuracy from 71.2% to 72.0%; "
        "removing random rows of the same size gave 70.5% (means over 3 retraining seeds).")
