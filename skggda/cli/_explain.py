"""``skggda explain DATA --target COLUMN``: which groups of my training rows help or hurt?

Reads a CSV or Parquet file, preprocesses it (impute, one-hot encode, expand
dates, scale), splits off a validation set, trains a model (the default net,
or scikit-learn's: ``_models.py``), groups the training rows, attributes a
validation property to the groups and writes a report folder:
``groups.csv``, ``members.csv``, ``explanations.csv`` (the groups behind the
validation rows the model gets most wrong), ``report.html`` and, with
``--verify``, ``verification.csv`` (:mod:`._explanations`). The
folder is written into a temporary sibling and renamed at the end, so a
failed run leaves nothing behind. Problems with the input are usage errors:
one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from tqdm.auto import tqdm

from ..experiments import GridConfig
from ..experiments._config import GROUPERS
from ..experiments._grid import make_attributor, make_grouper, task_config
from ..inspection import group_report
from ..properties import resolve_property
from ._explanations import (
    explain_worst,
    verification_frame,
    verification_sentence,
    verify,
)
from ._html import display_rows, render_page
from ._models import MODEL_CHOICES, make_model, train_model, validation_summary
from ._types import positive_fraction, positive_ints
from ._table import (
    UsageError,
    check_classes,
    check_columns,
    feature_columns,
    infer_task,
    make_preprocessor,
    model_inputs,
    read_table,
    readable_names,
    target_values,
)

ATTRIBUTORS = ("tracin", "fisher", "lissa", "trak")
#: The default property per task. With a noisy validation set the mean loss is
#: dominated by its mislabeled rows (confidently wrong, so large gradients) and
#: points the attribution the wrong way; the smooth accuracy saturates on them.
#: On HELOC with 10% flipped labels the 10% lowest-scoring groups of 16 held
#: 0.44x the base rate of flipped rows with the loss and 2.66x with the accuracy
#: (three seeds, benchmarks/bench_explain.py).
DEFAULT_PROPERTY = {"classification": "accuracy", "regression": "loss"}
_PROPERTY_TEXT = {"accuracy": "validation accuracy (smooth)", "margin": "validation margin",
                  "loss": "validation loss", "prediction": "mean validation prediction"}
DEFAULT_GROUP_SIZE = 16
#: Stages of the progress bar besides the training epochs.
_STAGES = ("read", "preprocess", "group", "attribute", "report", "explain")


def build_parser() -> argparse.ArgumentParser:
    """The options of ``skggda explain``."""
    parser = argparse.ArgumentParser(
        prog="skggda explain",
        description="Which groups of my training rows help or hurt my model? Reads a CSV or "
        "Parquet table, trains a model on it, attributes its validation performance to "
        "groups of training rows and writes groups.csv, members.csv and report.html.")
    add = parser.add_argument
    add("data", help="CSV (.csv, .tsv) or Parquet (.parquet) file")
    add("--target", required=True, metavar="COLUMN", help="the column to predict")
    add("--task", choices=("auto", "classification", "regression"), default="auto",
        help="auto: classification for text, booleans and at most 20 distinct integers, "
        "regression for other numbers (default: %(default)s)")
    add("--drop", nargs="+", default=[], metavar="COLUMN",
        help="columns that are not model inputs (identifiers, leaks)")
    add("--valid", metavar="FILE", help="validation table (default: split off --valid-size)")
    add("--valid-size", type=positive_fraction, default=0.2,
        help="share of rows held out for validation, stratified by class (default: %(default)s)")
    add("--model", choices=MODEL_CHOICES, default="net",
        help="net: two hidden layers of 50 (the paper's ANN-S); scikit-learn's "
        "LogisticRegression (logreg, classification), Ridge (ridge, regression) or "
        "MLPClassifier / MLPRegressor (mlp, layers of 50) (default: %(default)s)")
    add("--epochs", type=positive_ints, default=40,
        help="training epochs of net and mlp (default: %(default)s)")
    add("--lr", type=float, default=1e-2,
        help="peak learning rate of net (default: %(default)s)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--group-by", metavar="COLUMN",
                     help="your own groups: one per value of COLUMN (not a model input)")
    how.add_argument("--grouper", choices=sorted(GROUPERS), default="grad",
                     help="grad: K-Means on loss gradients; repr: on the net's hidden "
                     "representations; kmeans: on the features; random (default: %(default)s)")
    add("--group-size", type=positive_ints, default=None,
        help=f"rows per group for --grouper; 1 scores every row (default: {DEFAULT_GROUP_SIZE})")
    add("--attributor", choices=ATTRIBUTORS, default="tracin",
        help="tracin: about one training epoch; fisher: influence with a projected Fisher; "
        "lissa: influence, slow (the paper's 4,000 Hessian-vector products); trak: trains "
        "10 more nets (default: %(default)s)")
    add("--property", choices=sorted(_PROPERTY_TEXT), default=None,
        help="what is attributed on the validation set: accuracy and margin for "
        "classification, prediction for regression, loss for both (default: accuracy for "
        "classification, loss for regression)")
    add("--top", type=positive_ints, default=10,
        help="groups shown per table (default: %(default)s)")
    add("--worst", type=positive_ints, default=10,
        help="validation rows with the highest loss whose most harmful and helpful training "
        "groups are listed in explanations.csv and the report (default: %(default)s)")
    add("--verify", action="store_true",
        help="check the attribution by retraining: without the 5%% and 10%% of training rows "
        "in the most harmful groups, without random groups of the same size, and without "
        "removal, --verify-seeds times each; writes verification.csv")
    add("--verify-seeds", type=positive_ints, default=3,
        help="retraining seeds of --verify: it trains 5 models per seed (default: %(default)s)")
    add("--output", default="skggda_explain", help="report folder (default: %(default)s)")
    add("--overwrite", action="store_true", help="replace an existing report folder")
    add("--seed", type=int, default=0, help="seeds the split, the net and the grouping")
    add("--device", default="cpu", help="torch device (default: %(default)s)")
    add("--quiet", action="store_true", help="no progress bar")
    return parser


@dataclass
class Data:
    """The user's table, checked and split into model-ready training and validation parts."""

    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray
    rows: np.ndarray  # each training row's position in the file
    valid_rows: np.ndarray  # each validation row's position in its file
    groups: np.ndarray | None
    feature_names: list
    classes: np.ndarray | None  # the label of each class index in y (classification)
    target_scale: tuple | None  # (mean, sd) that standardized y (regression)
    notes: list = field(default_factory=list)

    def original_targets(self):
        """The training targets as in the file: labels, or the unstandardized numbers."""
        if self.classes is not None:
            return self.classes[self.y_train]
        mean, sd = self.target_scale
        return self.y_train * sd + mean


def load_data(args, bar):
    """Read, check, split and preprocess; every input problem is a UsageError."""
    notes = []
    frame = _read_checked(args, notes)
    task = infer_task(frame[args.target]) if args.task == "auto" else args.task
    _check_property(args.property, task)
    columns = feature_columns(frame, {args.target, *args.drop, args.group_by})
    if columns.datetime:
        notes.append(f"dates in {', '.join(columns.datetime)} are read as days since 1970, "
                     f"month and weekday (and hour, when times are given).")
    groups = _group_values(frame, args.group_by) if args.group_by else None
    _step(bar, "preprocess")
    train, valid = _split(frame, task, args, notes)
    if args.valid:
        check_columns(valid, columns.features, "a feature of the training file", args.valid)
    X_train, X_valid, names = _preprocess(train, valid, columns)
    y_train, y_valid, classes, scale = _encode_targets(train[args.target], valid[args.target],
                                                       task, args.target)
    if scale is not None:
        notes.append(f"{args.target} is standardized for training (mean {scale[0]:.4g}, sd "
                     f"{scale[1]:.4g}): scores are in units of the standardized target.")
    return Data(task, X_train, y_train, X_valid, y_valid, train.index.to_numpy(),
                valid.index.to_numpy(),
                None if groups is None else groups.loc[train.index].to_numpy(),
                names, classes, scale, notes)


def _check_property(name, task):
    tasks = resolve_property(name).tasks if name is not None else {task}
    if task not in tasks:
        raise UsageError(f"--property {name} is for {' and '.join(sorted(tasks))} targets, "
                         f"not {task}.")


def _read_checked(args, notes):
    """The table, its named columns checked, rows without a target left out."""
    frame = read_table(args.data)
    for option, names in (("--target", [args.target]), ("--drop", args.drop),
                          ("--group-by", [args.group_by] if args.group_by else [])):
        check_columns(frame, names, option, args.data)
    if args.group_by == args.target:
        raise UsageError("--group-by names the target column: the groups must be something else.")
    if args.group_by and args.group_size is not None:
        raise UsageError("--group-size goes with --grouper; --group-by takes your groups as "
                         "they are.")
    return _drop_missing_target(frame, args.target, notes)


def _preprocess(train, valid, columns):
    """``(X_train, X_valid, feature_names)``, the preprocessor fitted on the training rows."""
    preprocessor = make_preprocessor(columns)
    X_train = preprocessor.fit_transform(model_inputs(train, columns)).astype(np.float32)
    try:
        X_valid = preprocessor.transform(model_inputs(valid, columns)).astype(np.float32)
    except (ValueError, TypeError) as error:  # e.g. text in a column that is numeric in training
        raise UsageError(f"the validation rows do not fit the training columns: "
                         f"{error}") from error
    return X_train, X_valid, readable_names(preprocessor)


def _drop_missing_target(frame, target, notes):
    missing = frame[target].isna()
    if missing.all():
        raise UsageError(f"target {target!r} is empty (every value is missing).")
    if missing.any():
        notes.append(f"{int(missing.sum())} rows with no {target} are left out.")
    return frame[~missing]


def _group_values(frame, column):
    values = frame[column]
    if values.isna().any():
        raise UsageError(f"--group-by column {column!r} is missing on {int(values.isna().sum())} "
                         f"row(s): every row needs a group (fill them in or drop those rows).")
    return values.map(lambda v: v if isinstance(v, (str, int, np.integer)) else str(v))


def _split(frame, task, args, notes):
    """``(train, valid)`` frames: the ``--valid`` file, or a seeded (stratified) split."""
    if args.valid:
        valid = read_table(args.valid)
        check_columns(valid, [args.target], "--target", args.valid)
        valid = _drop_missing_target(valid, args.target, notes)
        return frame, valid
    labels = None
    if task == "classification":
        labels = target_values(frame[args.target], task, args.target)
        check_classes(labels, args.target)
    try:
        return train_test_split(frame, test_size=args.valid_size, random_state=args.seed,
                                stratify=labels)
    except ValueError as error:  # too few rows for the requested split
        raise UsageError(f"cannot split off a validation set: {error}") from error


def _encode_targets(train, valid, task, name):
    """``(y_train, y_valid, classes, scale)``: class indices, or standardized numbers.

    Regression targets are standardized with the training rows' mean and
    standard deviation: the net's recipe assumes targets of unit scale.
    """
    y_train = target_values(train, task, name).to_numpy()
    y_valid = target_values(valid, task, name).to_numpy()
    if task == "classification":
        return (*_encode_classes(y_train, y_valid), None)
    mean, sd = float(y_train.mean()), float(y_train.std())
    if not sd > 0:
        raise UsageError(f"target {name!r} is constant ({mean:g}) in the training rows: "
                         f"nothing to regress.")
    return (y_train - mean) / sd, (y_valid - mean) / sd, None, (mean, sd)


def _encode_classes(y_train, y_valid):
    """Class indices for the net; validation labels must be known from training."""
    encoder = LabelEncoder().fit(y_train)
    if len(encoder.classes_) < 2:
        raise UsageError(f"the training rows have one class ({encoder.classes_[0]!r}): "
                         f"nothing to classify.")
    unseen = sorted(set(y_valid) - set(encoder.classes_))
    if unseen:
        raise UsageError(f"the validation rows have labels the training rows lack: {unseen[:5]}.")
    return encoder.transform(y_train), encoder.transform(y_valid), encoder.classes_


def attribute(args, data, model):
    """The fitted attributor: ``--attributor`` on the frozen model, grouped as asked."""
    grouper = None if args.group_by else make_grouper(args.grouper, _group_size(args), args.seed)
    # the grid's "auto" TracIn settings, resolved as for a task that attributes a test set
    config = task_config(GridConfig(), "explain")
    attributor = make_attributor(args.attributor, FrozenEstimator(model), grouper, config,
                                 args.seed)
    attributor.set_params(property=args.property or DEFAULT_PROPERTY[data.task])
    return attributor.fit(data.X_train, data.y_train, groups=data.groups)


def _group_size(args):
    return DEFAULT_GROUP_SIZE if args.group_size is None else args.group_size


@dataclass
class Result:
    """What ``explain`` found, ready to be written and printed."""

    report: object  # pandas.DataFrame, sorted by score
    members: object  # pandas.DataFrame: row -> group
    settings: list
    notes: list
    explanations: object = None  # pandas.DataFrame: worst validation rows -> groups
    verification: object = None  # Bunch of verify_removal, with --verify


def explain(args, bar):
    """Run every stage; returns a :class:`Result`."""
    _step(bar, "read", advance=False)
    data = load_data(args, bar)
    model = make_model(args.model, data.task, args, bar)
    _step(bar, "train")
    training = train_model(model, data.X_train, data.y_train, data.notes)
    _step(bar, "group", advance=args.model != "net")  # the net advanced once per epoch
    attributor = attribute(args, data, model)
    _step(bar, "attribute")
    # the label summary counts class indices (the net's encoding); shown as labels below
    y_summary = data.y_train if data.classes is not None else data.original_targets()
    report = group_report(attributor, data.X_train, y_summary, data.feature_names,
                          X_eval=data.X_valid, y_eval=data.y_valid)
    _step(bar, "report")
    if data.classes is not None:
        report["label"] = data.classes[report["label"].to_numpy()]
    report = report.sort_values("score", kind="stable").reset_index(drop=True)
    members = _members(data, attributor)
    _step(bar, "explain")
    explanations = explain_worst(attributor, model, data, args.worst)
    verification = None
    if args.verify:
        _step(bar, "verify")
        verification = verify(attributor, data, args.verify_seeds, args.seed)
    settings = _settings(args, data, model, attributor, training)
    return Result(report, members, settings, data.notes, explanations, verification)


def _members(data, attributor):
    import pandas as pd

    members = pd.DataFrame({"row": data.rows, "group": attributor.groups_[attributor.labels_]})
    return members.sort_values("row", kind="stable").reset_index(drop=True)


def _settings(args, data, model, attributor, training):
    n_groups = attributor.n_groups_
    grouping = (f"--group-by {args.group_by}: {n_groups} groups" if args.group_by else
                f"{args.grouper}, {n_groups} groups of about {_group_size(args)} rows")
    prop = args.property or DEFAULT_PROPERTY[data.task]
    timings = attributor.timings_
    settings = [
        ("data", f"{args.data} ({len(data.y_train)} training rows, {len(data.y_valid)} "
                 f"validation rows{' from ' + args.valid if args.valid else ''})"),
        ("target", f"{args.target} ({data.task}"
                   + (f": {', '.join(map(str, data.classes))})" if data.classes is not None
                      else ")")),
        ("features", f"{data.X_train.shape[1]} after preprocessing"),
        ("model", f"{args.model} ({type(model).__name__}"
                  + (f", {args.epochs} epochs" if args.model in ("net", "mlp") else "")
                  + f"), trained in {training:.1f} s"),
        *validation_summary(model, data.X_valid, data.y_valid, data.task, data.target_scale),
    ]
    settings += [
        ("grouping", f"{grouping}, {timings['grouping']:.1f} s"),
        ("attribution", f"{args.attributor} of the {_PROPERTY_TEXT[prop]}, "
                        f"{timings['gradients'] + timings.get('scoring', 0.0):.1f} s"),
    ]
    return settings


def _step(bar, stage, advance=True):
    if bar is not None:
        if advance:
            bar.update(1)
        bar.set_postfix_str(stage)


def check_output(path, overwrite):
    """Refuse an output path that holds something, unless replacing a folder was asked."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--output {path} exists and is not a folder.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UsageError(f"--output {path} exists and is not empty; pass --overwrite to "
                         f"replace it.")


def write_report(result, path, title, top):
    """Write the report folder atomically: into a temporary sibling, renamed at the end."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        result.report.to_csv(staging / "groups.csv", index=False)
        result.members.to_csv(staging / "members.csv", index=False)
        names = ["groups.csv", "members.csv", "report.html"]
        if result.explanations is not None:
            result.explanations.to_csv(staging / "explanations.csv", index=False)
            names.insert(2, "explanations.csv")
        if result.verification is not None:
            verification_frame(result.verification).to_csv(staging / "verification.csv",
                                                            index=False)
            names.insert(-1, "verification.csv")
        page = render_page(title, result.settings, result.report, top=top, notes=result.notes,
                           explanations=result.explanations,
                           verification=result.verification)
        (staging / "report.html").write_text(page, encoding="utf-8")
        _replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [path / name for name in names]


def _replace(staging, path):
    """Move ``staging`` to ``path``; an existing folder there is removed only after the move."""
    if not path.exists():
        os.rename(staging, path)
        return
    old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(path, old)
    os.rename(staging, path)
    shutil.rmtree(old, ignore_errors=True)


def print_result(result, paths, top):
    """The run's settings and the top groups, as text on stdout."""
    for key, value in result.settings:
        print(f"{key + ':':<21}{value}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"\nMost harmful groups (lowest scores):\n{_text_table(result.report.head(top))}")
    helpful = result.report.iloc[::-1].head(top)
    print(f"\nMost helpful groups (highest scores):\n{_text_table(helpful)}")
    if result.verification is not None:
        print(f"\nVerification: {verification_sentence(result.verification)}")
    print("\nwrote " + ", ".join(map(str, paths)))


def _text_table(groups, width=60):
    header, rows = display_rows(groups)
    rows = [[cell if len(cell) <= width else cell[: width - 3] + "..." for cell in row]
            for row in rows]
    widths = [max(len(c) for c in column) for column in zip(header, *rows)]
    lines = [header] + rows
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in lines)


def main(argv=None) -> int:
    """Entry point of ``skggda explain``; returns the exit status.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after ``explain``; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success. Usage errors exit with status 2 and one line on stderr.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_output(args.output, args.overwrite)
        total = len(_STAGES) + args.verify + (args.epochs if args.model == "net" else 1)
        with tqdm(total=total, desc="explain", disable=args.quiet, leave=False) as bar:
            result = explain(args, bar)
            paths = write_report(result, args.output, f"skggda explain: {args.data}", args.top)
            bar.update(1)
    except UsageError as error:
        message = " ".join(str(error).split())
        parser.exit(2, f"skggda explain: error: {message}\n")
    print_result(result, paths, args.top)
    return 0
