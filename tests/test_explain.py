"""``skggda explain`` and ``skggda.inspection.group_report``, on small tables in tmp_path."""

from __future__ import annotations

import base64
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from conftest import DATA_DIR, make_problem, tiny_net  # noqa: E402
from skggda import RandomGrouper, TracInAttributor  # noqa: E402
from skggda.cli import main  # noqa: E402
from skggda.inspection import group_report  # noqa: E402
from skggda.cli._table import DatetimeParts, infer_task  # noqa: E402

FAST = ["--quiet", "--epochs", "2"]
GROUP_COLUMNS = ["group", "size", "score", "label", "label_share", "accuracy",
                 "distinguishing_features"]


def small_table(n=200, seed=0):
    """Numbers, text categories, missing values, ISO dates and a region per row."""
    rng = np.random.RandomState(seed)
    age = rng.normal(40, 10, n)
    color = rng.choice(["red", "green", "blue"], n)
    label = np.where(age / 10 + 2 * (color == "red") + rng.normal(0, 1, n) > 4.7, "yes", "no")
    dates = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.randint(0, 365, n), unit="D")
    frame = pd.DataFrame({"age": age, "income": rng.lognormal(10, 0.5, n), "color": color,
                          "signup": dates.strftime("%Y-%m-%d"), "region": rng.choice(["N", "S"], n),
                          "label": label})
    frame.loc[rng.rand(n) < 0.1, "age"] = np.nan
    frame.loc[rng.rand(n) < 0.1, "color"] = None
    frame.loc[rng.rand(n) < 0.05, "signup"] = None
    return frame


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "table.csv"
    small_table().to_csv(path, index=False)
    return path


def explain(*argv):
    return main(["explain", *map(str, argv)])


def leftovers(folder):
    """Everything in ``folder`` but the input tables: what a failed run left behind."""
    return sorted(p.name for p in folder.iterdir() if p.suffix not in (".csv", ".parquet"))


# ----------------------------------------------------------------------- end to end


def test_explain_writes_groups_members_and_page(table, tmp_path, capsys):
    out = tmp_path / "report"
    assert explain(table, "--target", "label", "--group-size", "16", "--output", out, *FAST) == 0
    groups = pd.read_csv(out / "groups.csv")
    members = pd.read_csv(out / "members.csv")
    assert list(groups.columns) == GROUP_COLUMNS
    assert groups["score"].is_monotonic_increasing  # most harmful first
    assert set(groups["label"]) <= {"yes", "no"}
    # 80% of the 200 rows train; each appears once, numbered by its position in the file
    assert len(members) == 160 and members["row"].is_unique and members["row"].between(0, 199).all()
    assert members["row"].is_monotonic_increasing
    assert groups["size"].sum() == 160
    assert (members["group"].value_counts().sort_index()
            == groups.set_index("group")["size"].sort_index()).all()
    printed = capsys.readouterr().out
    assert "Most harmful groups" in printed and "Most helpful groups" in printed
    assert "dates in signup are read as days since 1970" in printed


def test_distinguishing_features_have_readable_names(table, tmp_path):
    out = tmp_path / "report"
    explain(table, "--target", "label", "--output", out, *FAST)
    features = pd.read_csv(out / "groups.csv")["distinguishing_features"].dropna()
    names = {entry.rsplit(" ", 2)[0] for text in features for entry in text.split("; ")}
    readable = {"age", "age is missing", "income", "color=red", "color=green", "color=blue",
                "color=(missing)", "signup (days)", "signup (month)", "signup (weekday)",
                "signup is missing", "region=N", "region=S"}
    assert names and names <= readable


class _Tables(HTMLParser):
    """Cell texts of every table by id, and the sources of the images."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self._table, self._cell = {}, [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._table is not None:
            self._table[-1].append(self._cell)
            self._cell = None
        elif tag == "table":
            self._table = None


def test_report_page_lists_the_top_groups_of_groups_csv(table, tmp_path):
    out = tmp_path / "report"
    explain(table, "--target", "label", "--top", "3", "--output", out, *FAST)
    groups = pd.read_csv(out / "groups.csv")
    page = _Tables()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    harmful, helpful = page.tables["harmful"], page.tables["helpful"]
    assert harmful[0][:3] == ["group", "size", "score"]
    assert [int(row[0]) for row in harmful[1:]] == groups["group"].head(3).tolist()
    assert [int(row[0]) for row in helpful[1:]] == groups["group"].iloc[::-1].head(3).tolist()
    assert [row[3] for row in harmful[1:]] == groups["label"].head(3).tolist()


def test_report_page_embeds_two_png_plots(table, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "report"
    explain(table, "--target", "label", "--output", out, *FAST)
    page = _Tables()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert len(page.images) == 2
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix):]).startswith(b"\x89PNG")


def test_report_page_without_matplotlib_says_so(table, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    out = tmp_path / "report"
    explain(table, "--target", "label", "--output", out, *FAST)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "matplotlib is not installed" in html and "<img" not in html


def test_group_by_uses_the_columns_groups(table, tmp_path):
    out = tmp_path / "report"
    explain(table, "--target", "label", "--group-by", "region", "--output", out, *FAST)
    groups = pd.read_csv(out / "groups.csv")
    members = pd.read_csv(out / "members.csv")
    assert sorted(groups["group"]) == ["N", "S"]
    region = pd.read_csv(table)["region"]
    assert (members["group"].to_numpy() == region[members["row"]].to_numpy()).all()
    # the grouping column is not a model input, so it does not describe its groups
    assert not groups["distinguishing_features"].str.contains("region").any()


def test_valid_file_is_the_validation_set(table, tmp_path):
    valid = tmp_path / "valid.csv"
    small_table(n=60, seed=1).to_csv(valid, index=False)
    out = tmp_path / "report"
    explain(table, "--target", "label", "--valid", valid, "--output", out, *FAST)
    assert len(pd.read_csv(out / "members.csv")) == 200  # every row of the file trains
    assert "60 validation rows" in (out / "report.html").read_text(encoding="utf-8")


def test_parquet_input(tmp_path):
    pytest.importorskip("pyarrow")
    frame = small_table()
    frame["signup"] = pd.to_datetime(frame["signup"])  # a real datetime column
    path = tmp_path / "table.parquet"
    frame.to_parquet(path)
    out = tmp_path / "report"
    assert explain(path, "--target", "label", "--output", out, *FAST) == 0
    assert len(pd.read_csv(out / "members.csv")) == 160


def test_regression_target_end_to_end(table, tmp_path, capsys):
    out = tmp_path / "report"
    assert explain(table, "--target", "income", "--output", out, *FAST) == 0
    groups = pd.read_csv(out / "groups.csv")
    assert list(groups.columns) == ["group", "size", "score", "target_mean", "target_std",
                                    "distinguishing_features"]
    income = pd.read_csv(table)["income"]
    members = pd.read_csv(out / "members.csv")
    first = groups.iloc[0]
    rows = members.loc[members["group"] == first["group"], "row"]
    # summaries in the file's units, although the net trains on the standardized target
    assert first["target_mean"] == pytest.approx(income[rows].mean())
    printed = capsys.readouterr().out
    assert "income (regression)" in printed and "validation RMSE" in printed
    assert "income is standardized for training" in printed


@pytest.mark.parametrize("model, target, kind", [
    ("logreg", "label", "LogisticRegression"), ("ridge", "income", "Ridge"),
    ("mlp", "label", "MLPClassifier"), ("mlp", "income", "MLPRegressor"),
])
def test_scikit_learn_models(model, target, kind, table, tmp_path, capsys):
    out = tmp_path / "report"
    assert explain(table, "--target", target, "--model", model, "--output", out, *FAST) == 0
    assert f"{model} ({kind}" in capsys.readouterr().out
    groups = pd.read_csv(out / "groups.csv")
    assert groups["size"].sum() == 160 and np.isfinite(groups["score"]).all()


def test_per_row_scores_with_group_size_one(table, tmp_path):
    out = tmp_path / "report"
    explain(table, "--target", "label", "--group-size", "1", "--grouper", "random",
            "--output", out, *FAST)
    groups = pd.read_csv(out / "groups.csv")
    assert len(groups) == 160 and (groups["size"] == 1).all()


def test_existing_report_folder_needs_overwrite(table, tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as info:
        explain(table, "--target", "label", "--output", out, *FAST)
    assert info.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert explain(table, "--target", "label", "--output", out, "--overwrite", *FAST) == 0
    assert sorted(p.name for p in out.iterdir()) == ["explanations.csv", "groups.csv", "members.csv",
                                                     "report.html"]
    assert leftovers(tmp_path) == ["report"]  # no staging or old folder left beside it


def test_failure_while_writing_leaves_nothing(table, tmp_path, monkeypatch):
    from skggda.cli import _explain

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(_explain, "render_page", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        explain(table, "--target", "label", "--output", tmp_path / "report", *FAST)
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------- bad input


def _write(tmp_path, frame, name="bad.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


BAD_INPUTS = {
    "missing target": (lambda f: f, ["--target", "outcome"], "has no column 'outcome' (--target)"),
    "one class": (lambda f: f.assign(label="yes"), ["--target", "label"],
                  "target 'label' has a single class ('yes')"),
    "empty column": (lambda f: f.assign(notes=np.nan), ["--target", "label"],
                     "column 'notes' is empty (every value is missing)"),
    "group-by with gaps": (lambda f: f.assign(region=f["region"].where(f.index != 7)),
                           ["--target", "label", "--group-by", "region"],
                           "--group-by column 'region' is missing on 1 row(s)"),
    "unknown drop": (lambda f: f, ["--target", "label", "--drop", "id"],
                     "has no column 'id' (--drop)"),
    "group-by target": (lambda f: f, ["--target", "label", "--group-by", "label"],
                        "--group-by names the target column"),
    "classifier for a regression": (lambda f: f, ["--target", "income", "--model", "logreg"],
                                    "--model logreg is for classification, but target 'income'"),
    "regressor for classes": (lambda f: f, ["--target", "label", "--model", "ridge"],
                              "--model ridge is for regression, but target 'label'"),
    "property of the other task": (lambda f: f, ["--target", "income", "--property", "accuracy"],
                                   "--property accuracy is for classification targets"),
    "constant number": (lambda f: f.assign(income=3.5), ["--target", "income"],
                        "target 'income' is constant (3.5)"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_one_line_usage_error_and_writes_nothing(case, tmp_path, capsys):
    change, argv, message = BAD_INPUTS[case]
    path = _write(tmp_path, change(small_table()))
    with pytest.raises(SystemExit) as info:
        explain(path, *argv, "--output", tmp_path / "report", *FAST)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("skggda explain: error: ")
    assert leftovers(tmp_path) == []


def test_valid_file_without_a_feature_is_a_usage_error(table, tmp_path, capsys):
    valid = _write(tmp_path, small_table(n=60, seed=1).drop(columns="income"), "valid.csv")
    with pytest.raises(SystemExit) as info:
        explain(table, "--target", "label", "--valid", valid, "--output", tmp_path / "report",
                *FAST)
    assert info.value.code == 2
    assert "has no column 'income' (a feature of the training file)" in capsys.readouterr().err
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("content", [None, b"", bytes(range(256)) * 20])
def test_unreadable_file_is_a_usage_error(content, tmp_path, capsys):
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as info:
        explain(path, "--target", "label", "--output", tmp_path / "report", *FAST)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"skggda explain: error: cannot read {path}") and err.count("\n") == 1
    assert not (tmp_path / "report").exists()


def test_entry_point_dispatches_explain(tmp_path):
    result = subprocess.run([sys.executable, "-m", "skggda", "explain", str(tmp_path / "x.csv"),
                             "--target", "y"], capture_output=True, text=True)
    assert result.returncode == 2 and "cannot read" in result.stderr


def test_grid_command_line_is_unchanged_and_points_to_explain(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    assert "--group-sizes" in printed and "skggda explain DATA --target COLUMN" in printed


# ------------------------------------------------------------------- the table rules


@pytest.mark.parametrize("values, task", [
    (["a", "b"], "classification"), ([True, False], "classification"),
    ([0, 1, 1], "classification"), ([1.0, 2.0, 5.0], "classification"),
    ([0.5, 1.0], "regression"), (list(range(21)), "regression"),
    (list(range(20)), "classification"),
])
def test_task_inference(values, task):
    assert infer_task(pd.Series(values + [None])) == task


def test_datetime_parts_with_hours_and_gaps():
    X = pd.DataFrame({"t": pd.to_datetime(["1970-01-01 06:00", None, "1970-01-03 00:00"])})
    parts = DatetimeParts().fit(X)
    assert parts.get_feature_names_out().tolist() == [
        "t (days)", "t (month)", "t (weekday)", "t (hour)", "t is missing"]
    out = parts.transform(X)
    assert out[0].tolist() == [0.25, 1.0, 3.0, 6.0, 0.0]
    assert np.isnan(out[1, :4]).all() and out[1, 4] == 1.0


# -------------------------------------------------------------------- group_report


@pytest.fixture(scope="module")
def fitted():
    X, y, _, _ = make_problem(n=120)
    X_eval, y_eval, _, _ = make_problem(n=40, seed=1)
    attr = TracInAttributor(tiny_net(), grouper=RandomGrouper(group_size=20), random_state=0)
    return attr.fit(X, y), X, y, X_eval, y_eval


def test_group_report_scores_equal_score_groups(fitted):
    attr, X, y, X_eval, y_eval = fitted
    report = group_report(attr, X, y, X_eval=X_eval, y_eval=y_eval)
    assert list(report.columns) == GROUP_COLUMNS
    np.testing.assert_array_equal(report["score"], attr.score_groups(X_eval, y_eval))
    np.testing.assert_array_equal(report["size"], np.bincount(attr.labels_))
    assert report["group"].tolist() == list(range(attr.n_groups_))


def test_group_report_without_evaluation_data_scores_the_training_set(fitted):
    attr, X, y, _, _ = fitted
    np.testing.assert_array_equal(group_report(attr, X)["score"], attr.score_groups())


def test_group_report_label_summary(fitted):
    attr, X, y, _, _ = fitted
    report = group_report(attr, X, y)
    for j, row in report.iterrows():
        members = y[attr.labels_ == j]
        counts = np.bincount(members, minlength=2)
        assert row["label"] == counts.argmax()
        assert row["label_share"] == pytest.approx(counts.max() / len(members))
        predicted = attr.estimator_.predict(X[attr.labels_ == j])
        assert row["accuracy"] == pytest.approx(np.mean(predicted == members))


def test_group_report_without_y_has_no_label_columns(fitted):
    attr, X, _, _, _ = fitted
    assert list(group_report(attr, X).columns) == ["group", "size", "score",
                                                   "distinguishing_features"]


def test_group_report_names_the_distinguishing_features():
    X = np.zeros((40, 3), dtype=np.float32)
    X[:20, 1] = 1.0  # feature "b" is 1 in the first half, 0 in the second
    X[:, 2] = np.random.RandomState(0).normal(size=40) * 1e-3
    y = np.arange(40) % 2
    attr = TracInAttributor(tiny_net(), random_state=0).fit(X, y, groups=np.arange(40) >= 20)
    report = group_report(attr, X, y, feature_names=["a", "b", "c"], n_features=1)
    # standardized mean difference of b: (1 - 0) / sd 0.5 = +2 in the first group
    assert report["group"].tolist() == [False, True]
    assert report["distinguishing_features"].tolist() == ["b +2.0 sd", "b -2.0 sd"]


def test_group_report_checks_rows_and_names(fitted):
    attr, X, y, _, _ = fitted
    with pytest.raises(ValueError, match="one row per training sample"):
        group_report(attr, X[:-1])
    with pytest.raises(ValueError, match="feature_names has 2 names but X has 6 columns"):
        group_report(attr, X, feature_names=["a", "b"])


def test_group_report_of_a_regressor_summarizes_targets():
    from skggda.models import make_regressor

    X, _, _, _ = make_problem(n=60)
    y = X[:, 0] * 3.0
    attr = TracInAttributor(make_regressor((8,), max_epochs=2, random_state=0),
                            grouper=RandomGrouper(group_size=20), random_state=0).fit(X, y)
    report = group_report(attr, X, y)
    assert list(report.columns) == ["group", "size", "score", "target_mean", "target_std",
                                    "distinguishing_features"]
    for j, row in report.iterrows():
        members = y[attr.labels_ == j]
        assert row["target_mean"] == pytest.approx(members.mean(), rel=1e-5)
        assert row["target_std"] == pytest.approx(members.std(), rel=1e-6)


def test_group_report_of_a_scikit_learn_model_with_text_labels():
    from sklearn.frozen import FrozenEstimator
    from sklearn.linear_model import LogisticRegression

    X, y, _, _ = make_problem(n=80)
    labels = np.array(["bad", "good"])[y]
    model = LogisticRegression().fit(X, labels)  # predicts the text labels themselves
    attr = TracInAttributor(FrozenEstimator(model), grouper=RandomGrouper(group_size=20),
                            random_state=0).fit(X, labels)
    report = group_report(attr, X, labels)
    assert set(report["label"]) <= {"bad", "good"}
    predicted = model.predict(X)
    expected = [np.mean(predicted[attr.labels_ == j] == labels[attr.labels_ == j])
                for j in range(attr.n_groups_)]
    np.testing.assert_allclose(report["accuracy"], expected)


def test_group_report_needs_pandas(fitted, monkeypatch):
    attr, X, _, _, _ = fitted
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="group_report needs pandas"):
        group_report(attr, X)


# ----------------------------------------------------------------------- real data


@pytest.mark.slow
def test_explain_on_heloc(tmp_path, capsys):
    path = DATA_DIR / "heloc" / "heloc_dataset_v1.csv"
    if not path.is_file():
        pytest.skip(f"real data absent: {path} (set SKGGDA_DATA to the data folder)")
    out = tmp_path / "heloc"
    assert explain(path, "--target", "RiskPerformance", "--group-size", "64", "--epochs", "3",
                   "--quiet", "--output", out) == 0
    groups = pd.read_csv(out / "groups.csv")
    members = pd.read_csv(out / "members.csv")
    assert len(members) == 8367 and groups["size"].sum() == 8367  # 80% of 10,459 rows
    assert set(groups["label"]) <= {"Good", "Bad"}
    assert groups["distinguishing_features"].str.contains("ExternalRiskEstimate").any()
    printed = capsys.readouterr().out
    assert "RiskPerformance (classification: Bad, Good)" in printed
