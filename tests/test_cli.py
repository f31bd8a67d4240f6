"""The command line, end to end on tiny configurations in a temporary folder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from skggda.cli import main

TINY = ["--quiet", "--epochs", "3", "--n-train", "120", "--cleanlab-folds", "0"]


def test_noisy_label_grid_writes_tables_and_files(tmp_path, capsys):
    out = tmp_path / "results"
    code = main(TINY + ["--group-sizes", "1", "8", "--groupers", "grad", "random",
                        "--output", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Noisy-label detection" in printed and "baseline: random order 0.500" in printed
    rows = list(csv.DictReader((out / "records.csv").open()))
    # per-point once, then one row per grouper at group size 8
    assert sorted((r["grouper"], r["group_size"]) for r in rows) == [
        ("grad", "8"), ("none", "1"), ("random", "8")]
    assert all(0 <= float(r["value"]) <= 1 for r in rows)
    assert all(float(r["runtime_s"]) > 0 for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert {s["metric"] for s in summary} == {"auc"}
    # the attributed net's test accuracy is on record (bundled data: well above chance)
    assert all(0.8 < s["full_accuracy"] <= 1 for s in summary)
    assert "the attributed net's test accuracy" in printed


def test_pruning_task_with_two_attributors_and_a_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "prune"
    code = main(TINY + ["--tasks", "pruning", "--attributors", "tracin", "fisher",
                        "--group-sizes", "16", "--groupers", "random", "--output", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Dataset pruning" in printed and "random removal" in printed
    assert len(list(out.glob("pruning_accuracy_at_*pct.png"))) == 3
    rows = list(csv.DictReader((out / "records.csv").open()))
    assert {r["metric"] for r in rows} == {"accuracy@25%", "accuracy@50%", "accuracy@75%"}
    assert {r["attributor"] for r in rows} == {"tracin", "fisher"}


def test_grid_retrains_the_baselines_once_per_seed_and_task(monkeypatch):
    from skggda.experiments import GridConfig, run_grid
    from skggda.metrics import _removal

    calls = []
    real = _removal._fit_and_score
    monkeypatch.setattr(_removal, "_fit_and_score", lambda *a, **k: calls.append(1) or real(*a, **k))
    config = GridConfig(tasks=("pruning",), groupers=("random",), group_sizes=(1, 8, 16),
                        epochs=1, n_train=60)
    records = run_grid(config, progress=False)
    assert len({(r.grouper, r.group_size) for r in records}) == 3
    # 1 + 3 baseline retrainings, then 3 scored removals per cell
    assert len(calls) == (1 + 3) + 3 * 3
    assert len({r.baseline for r in records if r.metric == "accuracy@50%"}) == 1


def test_stratified_pruning_keeps_the_class_balance(tmp_path, capsys):
    from skggda.experiments._grid import load_dataset
    from skggda.cli._grid import build_parser, config_from_args

    out = tmp_path / "strat"
    argv = TINY + ["--tasks", "pruning", "--group-sizes", "16", "--groupers", "grad",
                   "--stratify", "--output", str(out)]
    assert main(argv) == 0
    assert "stratified random removal" in capsys.readouterr().out
    _, y_train, _, _ = load_dataset(config_from_args(build_parser().parse_args(argv)))
    share = (y_train == 0).mean()
    rows = list(csv.DictReader((out / "records.csv").open()))
    for row in rows:  # class 0's share of what was kept, at every fraction and group size
        assert abs(float(row["kept_class_share"].split("/")[0]) - share) < 0.02
        assert row["stratified"] == "True"


@pytest.mark.parametrize("argv,message", [
    (["--noise", "1.5"], "must be in [0, 1)"),
    (["--group-sizes", "0"], "must be a positive integer"),
    (["--dataset", "imagenet"], "invalid choice: 'imagenet'"),
    (["--attributors", "shapley"], "invalid choice: 'shapley'"),
])
def test_bad_options_exit_with_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--damping", "-1"], "damping must be a number >= 0, got -1.0."),
    (["--seeds", "-3"], "seeds must be integers in [0, 2**32), got (-3,)."),
    (["--lr", "0"], "lr must be a positive number, got 0.0."),
    (["--n-jobs", "0"], "n_jobs must be None or a non-zero integer (joblib), got 0."),
    (["--device", "gpu9"], "device='gpu9' is not a torch device"),
])
def test_bad_config_values_are_one_line_usage_errors(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--quiet", "--output", str(tmp_path)] + argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("skggda: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_internal_value_error_is_not_a_usage_error(monkeypatch, tmp_path):
    # a ValueError from inside the library is a bug to report, not a bad option
    def broken(config, progress):
        raise ValueError("internal: shapes do not match")

    monkeypatch.setattr("skggda.cli._grid.run_grid", broken)
    with pytest.raises(ValueError, match="internal: shapes do not match"):
        main(["--quiet", "--output", str(tmp_path)])


def test_internal_error_exits_1_with_a_traceback(tmp_path):
    # what the console script does: sys.exit(main()), with the library failing inside
    code = ("import sys, skggda.cli as cli, skggda.cli._grid as grid\n"
            "def broken(config, progress):\n"
            "    raise ValueError('internal: shapes do not match')\n"
            "grid.run_grid = broken\n"
            f"sys.exit(cli.main(['--quiet', '--output', {str(tmp_path)!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("ValueError: internal: shapes do not match")


def test_missing_dataset_names_the_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--quiet", "--dataset", "heloc", "--data-home", str(tmp_path),
              "--output", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "heloc_dataset_v1.csv" in err and "SKGGDA_DATA" in err


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "skggda", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("skggda ")


def test_images_through_resnet(tmp_path, capsys):
    code = main(["--quiet", "--dataset", "cifar_like", "--model", "resnet18", "--resnet-width",
                 "4", "--n-train", "64", "--epochs", "1", "--group-sizes", "1", "16",
                 "--groupers", "grad", "--cleanlab-folds", "0", "--output", str(tmp_path)])
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "records.csv").open()))
    assert [r["n_groups"] for r in rows] == ["64", "4"]


def test_qnli_needs_the_text_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--quiet", "--dataset", "qnli", "--output", str(tmp_path)])
    assert info.value.code == 2
    assert "qnli data set goes with model='text'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, model, lr, epochs", [
    ([], "ann-s", 1e-2, 40),
    (["--model", "text"], "text", 5e-5, 2),
    (["--paper-recipe"], "ann-s", 1e-3, 300),
    (["--paper-recipe", "--model", "text"], "text", 2e-5, 3),
    (["--paper-recipe", "--epochs", "7"], "ann-s", 1e-3, 7),
    (["--lr", "0.5", "--model", "text"], "text", 0.5, 2),
    (["--batch-size", "16"], "ann-s", 1e-2, 40),
])
def test_training_recipe_per_model(argv, model, lr, epochs):
    # The pretrained text encoder must never get the from-scratch rate of 1e-2 by default.
    from skggda.cli._grid import build_parser, config_from_args
    from skggda.experiments._grid import make_net

    config = config_from_args(build_parser().parse_args(argv))
    assert config.model == model
    net = make_net(config, seed=0)  # not initialized: the text encoder is not loaded
    assert (net.lr, net.max_epochs) == (lr, epochs)
    assert net.batch_size == (16 if "--batch-size" in argv else 32 if model == "text" else 128)


def test_unknown_recipe_is_a_clear_error():
    from skggda.experiments import GridConfig
    from skggda.experiments._grid import make_net

    with pytest.raises(ValueError, match="recipe must be 'short' or 'paper'"):
        make_net(GridConfig(recipe="fast"), seed=0)


def test_exact_and_cg_influence_as_ground_truth_rows(tmp_path, capsys):
    # cg and the explicit Hessian solve the same system: damped enough to be positive
    # definite, they agree.
    out = tmp_path / "solvers"
    # a logistic regression: its explicit Hessian is small (the MLP's 4,252 x 4,252
    # eigendecomposition alone took 40 s)
    code = main(TINY + ["--model", "lr", "--attributors", "cg", "exact", "fisher",
                        "--n-components", "none", "--damping", "1.0", "--group-sizes", "1",
                        "--output", str(out)])
    assert code == 0
    rows = {r["attributor"]: float(r["value"]) for r in csv.DictReader((out / "records.csv").open())}
    assert set(rows) == {"cg", "exact", "fisher"}
    assert rows["cg"] == pytest.approx(rows["exact"], abs=1e-3)


def _auc_records(seeds_per_size):
    from skggda.experiments import GridRecord

    return [GridRecord("noisy", "digits", "ann-s", "tracin", "grad", size, seed, "auc",
                   0.7 + 0.1 * seed, 90, 0.1, 0.2, 1.0, full_accuracy=0.9)
            for size, n_seeds in seeds_per_size.items() for seed in range(n_seeds)]


def test_single_seed_tables_say_one_seed_instead_of_zero_error():
    from skggda.experiments import format_tables, summarize

    table = format_tables(summarize(_auc_records({1: 1, 16: 1})))
    assert "±" not in table
    assert "(value / runtime s, 1 seed)" in table
    assert "0.700 / 0.3" in table


def test_mixed_seed_counts_mark_the_single_seed_cells():
    from skggda.experiments import format_tables, summarize

    table = format_tables(summarize(_auc_records({1: 1, 16: 2})))
    assert "(value ± s.e. / runtime s)" in table
    assert "0.700 (1 seed) / 0.3" in table and "0.750±0.050 / 0.3" in table
    assert "±0.000" not in table


def test_single_seed_grid_from_the_command_line_prints_no_zero_error(tmp_path, capsys):
    assert main(TINY + ["--group-sizes", "1", "8", "--groupers", "random",
                        "--output", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "1 seed" in printed and "±" not in printed


def test_single_seed_removal_result_prints_no_zero_error():
    import numpy as np

    from skggda.metrics._removal import RemovalResult

    result = RemovalResult(np.array([0.5]), np.array([0.7]), np.array([0.0]),
                           np.array([0.72]), np.array([0.0]), 0.74, 0.0,
                           np.array([[0.5, 0.5]]), 1, False)
    table = result.as_table()
    assert "±" not in table and "(1 seed)" in table.splitlines()[0]
    assert table.splitlines()[2].split() == ["50%", "70.0%", "72.0%"]
