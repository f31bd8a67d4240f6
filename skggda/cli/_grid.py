"""``skggda`` without a sub-command: a grid of GGDA experiments.

Runs a grid of GGDA experiments -- data set, model, attributors, groupers,
group sizes, tasks (noisy-label detection, retraining score, dataset
pruning) and seeds -- prints tables shaped like the paper's, and writes
``records.csv``, ``summary.json`` and one runtime-vs-fidelity plot per task
to the output folder.

With no arguments it runs the main job: a short noisy-label experiment on
data bundled with scikit-learn (no download).

``skggda explain DATA --target COLUMN`` explains a model of the user's own
table instead (:mod:`skggda.cli._explain`).
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from .. import __version__
from ..experiments import (
    GridConfig,
    format_tables,
    run_grid,
    summarize,
    write_files,
)
from ..experiments import _config as choices
from ..experiments._checks import ConfigError
from ..metrics._orders import PRUNING_ORDERS
from ._types import components, fraction, positive_ints

_DEFAULTS = GridConfig()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skggda",
        description="Generalized group data attribution experiments: which groups of "
        "training data drive a model? Without options, a short noisy-label run on "
        "bundled data.",
        epilog="For your own table: skggda explain DATA --target COLUMN "
        "(see skggda explain --help).",
    )
    add = parser.add_argument
    add("--version", action="version", version=f"skggda {__version__}")
    add("--dataset", choices=choices.DATASETS, default=_DEFAULTS.dataset,
        help="heloc, mnist and qnli (with --model text) read the data folder "
        "(--data-home / SKGGDA_DATA); the others need no file (default: %(default)s)")
    add("--model", choices=sorted(choices.MODELS), default=_DEFAULTS.model,
        help="the paper's models (default: %(default)s)")
    add("--attributors", nargs="+", choices=choices.ATTRIBUTORS,
        default=list(_DEFAULTS.attributors))
    add("--groupers", nargs="+", choices=sorted(choices.GROUPERS),
        default=list(_DEFAULTS.groupers))
    add("--group-sizes", nargs="+", type=positive_ints, default=list(_DEFAULTS.group_sizes),
        metavar="G", help="1 is per-point attribution (default: 1 4 16 64)")
    add("--tasks", nargs="+", choices=choices.TASKS, default=list(_DEFAULTS.tasks))
    add("--seeds", nargs="+", type=int, default=list(_DEFAULTS.seeds))
    add("--epochs", type=positive_ints, default=None,
        help="training epochs (default: 40, or 2 to fine-tune --model text; "
        "see --paper-recipe)")
    add("--lr", type=float, default=None,
        help="peak learning rate (default: 0.01, or 5e-5 to fine-tune --model text; "
        "see --paper-recipe)")
    add("--batch-size", type=positive_ints, default=None,
        help="training batch size (default: the paper's for the model; small subsamples "
        "of MNIST want smaller batches to get enough steps)")
    add("--paper-recipe", action="store_true",
        help="default to the paper's epochs and learning rate for the model "
        "(--epochs / --lr still win)")
    add("--noise", type=fraction, default=_DEFAULTS.noise,
        help="fraction of flipped labels for the noisy task (default: %(default)s)")
    add("--detector", choices=choices.DETECTORS, default=_DEFAULTS.detector,
        help="what the noisy task ranks training points by: the attribution of the test "
        "loss, of the training loss, or minus their self-influence (a group's over its "
        "size squared; default: %(default)s)")
    add("--checkpoints", choices=("auto", "last", "all"), default=_DEFAULTS.checkpoints,
        help="TracIn's checkpoints: the final weights, or every epoch's; auto: every "
        "epoch's (projected) for the noisy task's self-influence, else the final weights "
        "(default: %(default)s)")
    add("--cleanlab-folds", type=int, default=_DEFAULTS.cleanlab_folds, metavar="K",
        help="the noisy task's cleanlab row: label quality from K-fold out-of-sample "
        "probabilities (K trainings; 0: no row; skipped without cleanlab) "
        "(default: %(default)s)")
    add("--n-components", type=components, default=_DEFAULTS.n_components,
        help="projection for Fisher and TRAK; 'none' for no projection (default: "
        "%(default)s, the paper's HELOC value)")
    add("--damping", type=float, default=_DEFAULTS.damping,
        help="added to the curvature by the influence solvers and TRAK (default: "
        "%(default)s, the paper's LiSSA value)")
    add("--trak-models", type=positive_ints, default=_DEFAULTS.trak_models)
    add("--lissa-depth", type=positive_ints, default=_DEFAULTS.lissa_depth)
    add("--lissa-repeat", type=positive_ints, default=_DEFAULTS.lissa_repeat)
    add("--retrain-seeds", type=positive_ints, default=_DEFAULTS.retrain_seeds,
        help="retrainings per removal (default: %(default)s)")
    add("--stratify", action="store_true",
        help="removal tasks remove the same share of every class (the random baseline too)")
    add("--pruning-order", choices=PRUNING_ORDERS, default=_DEFAULTS.pruning_order,
        help="the pruning task's order: lowest scores first, or the harmful (negative) "
        "ones first, at most 5%% of the training set, then class-stratified random "
        "removal (default: %(default)s)")
    add("--n-train", type=positive_ints, default=None, help="subsample the training set")
    add("--resnet-width", type=positive_ints, default=_DEFAULTS.resnet_width,
        help="channels of ResNet-18's first stage (default: %(default)s)")
    add("--max-length", type=positive_ints, default=_DEFAULTS.max_length,
        help="tokens per text pair for --model text (default: %(default)s)")
    add("--param-subset", nargs="+", default=None, metavar="NAME",
        help="attribute only these parameters / modules (default: the last block and "
        "the head for --model text, everything otherwise)")
    add("--data-home", default=None, help="folder holding heloc/ and mnist/")
    add("--device", default="cpu", help="torch device (default: cpu)")
    add("--n-jobs", type=int, default=None, help="parallel retrainings (joblib)")
    add("--output", default="skggda_results", help="folder for CSV, JSON and plots")
    add("--quiet", action="store_true", help="no progress bars")
    return parser


def config_from_args(args) -> GridConfig:
    names = {f.name for f in fields(GridConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    for key in ("attributors", "groupers", "group_sizes", "tasks", "seeds"):
        values[key] = tuple(values[key])
    values["recipe"] = "paper" if args.paper_recipe else "short"
    values["param_subset"] = list(args.param_subset) if args.param_subset else "auto"
    return GridConfig(**values)


def main(argv) -> int:
    """Run the grid command with the arguments ``argv``; returns its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(args)
    print(f"skggda {__version__}: {', '.join(config.tasks)} on {config.dataset} "
          f"({config.model}; {', '.join(config.attributors)}; groupers "
          f"{', '.join(config.groupers)}; group sizes {list(config.group_sizes)}; "
          f"seeds {list(config.seeds)})")
    try:
        records = run_grid(config, progress=not args.quiet)
    except ConfigError as error:
        parser.exit(2, f"skggda: error: {error}\n")
    summary = summarize(records)
    print(format_tables(summary))
    paths = write_files(records, summary, args.output)
    print("\nruntime = grouping + attribution on a trained net (training is shared)")
    print("wrote " + ", ".join(str(p) for p in paths))
    if not any(p.suffix == ".png" for p in paths):
        print("(no plot: install matplotlib for the runtime-vs-fidelity figures)")
    return 0

