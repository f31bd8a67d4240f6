"""Fidelity benchmark: the linear datamodeling score (LDS) under dattri's MNIST-10 protocol.

Protocol (dattri's benchmark, "MNIST-10"): 5,000 training and 500 test images
(``load_mnist(n_train=5000, n_test=500, random_state=0)``, flattened), two
models -- logistic regression (784 -> 10, ``make_classifier(())``) and an MLP
784-128-64-10 -- and 50 random halves of the training set. One net is trained
per half with the recipe below (the same seed for every half, so halves
differ by their data only) and the loss of every test image recorded; an
attribution's LDS is the mean over test images of the Spearman correlation,
over the 50 halves, between the summed scores of the kept points and the
negative test loss (:func:`skggda.metrics.lds_from_retrainings`).
Group LDS draws the halves as unions of Grad-K-Means groups (sizes 16, 64,
256) and sums the per-point attributions of each group.

Recipe (fixed): Adam with one-cycle learning rate peaking at ``lr``,
batches of 128, 10 epochs; LR: ``lr=3e-2``, weight decay 1e-3; MLP:
``lr=3e-3``, weight decay 1e-4. The attributed net is the same recipe
trained on all 5,000 images with the same seed.

Damping / regularisation is tuned per method on a small grid, as dattri
did: the value with the best LDS on the *tune* half of the test images
(even positions) wins, and the table reports the LDS on the other half
(odd positions, held out) and on all points (tuned on them too, as dattri).
LiSSA and CG solve one system per test image with Hessian-vector products
over the training set, which a 2-core CPU cannot do for 500 images within
the time of a run: they are scored on the first ``--expensive-test`` images
(default 100), and every row also reports its LDS on those images.

Cost: seconds of ``fit`` + ``attribute(X_test, y_test)`` for the 500 test
images (the expensive rows: extrapolated from their test subset), as a ratio
to L, one forward + backward epoch over the 5,000 training images (batches
of 512), timed in the same run before every method (the fastest is used).
TRAK's cost includes training its ensemble; TracIn over all checkpoints
excludes the training its checkpoints come from.

Retrainings and attribution matrices are cached under ``--output`` (default
``benchmarks/out/fidelity``): a rerun only computes what is missing.

Influence ensembles (issue 22): ``ekfac-m<M>`` is EK-FAC averaged over ``M``
nets trained with independent seeds (``InfluenceAttributor(n_models=M)``; its
first net is the attributed one, so ``ekfac-m1`` is ``ekfac``), ``ekfac-all``
fits EK-FAC at every epoch's checkpoint weighted by its learning rate
(``checkpoints="all"``), ``ekfac-m<M>-all`` both. Their cost includes every
training; the ``trainings`` column states each row's cost in trainings of the
attributed net (fit + attribute seconds over its training seconds, plus the
attributed net's own training for the methods that attribute it frozen), and
``lds_vs_cost.png`` plots LDS against it.

``--dataset heloc`` runs the same protocol on a tabular set: 4,000 HELOC
training rows and 500 test rows (``load_heloc``, drawn with seed 0), an MLP
50-50 (``mlp``, ANN-S) with Adam at a one-cycle peak of 3e-3, weight decay
4e-4, batches of 128, 10 epochs (pass ``--n-subsets 40`` for issue 22's 40
halves); its cache and report go to ``--output`` (default
``benchmarks/out/fidelity_heloc``).

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_fidelity.py --data-home ../shared/data
    PYTHONPATH=. python benchmarks/bench_fidelity.py --models lr --methods exact cg --n-subsets 10
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import InvalidParameterError

from skggda import GradKMeansGrouper, InfluenceAttributor, TracInAttributor, TRAKAttributor
from skggda.datasets import load_heloc, load_mnist
from skggda.metrics import datamodel_retrainings, lds_from_retrainings
from skggda.metrics._datamodels import DatamodelRetrainings, random_subsets
from skggda.models import make_classifier

from _fidelity_report import DATASET, ENSEMBLES, PROJECTIONS, format_report, plot, targets

RECIPES = {
    "lr": dict(hidden=(), lr=3e-2, weight_decay=1e-3),
    "mlp": dict(hidden=(128, 64), lr=3e-3, weight_decay=1e-4),
}
#: The tabular counterpart (``--dataset heloc``): ANN-S on 4,000 HELOC rows.
HELOC_RECIPES = {"mlp": dict(hidden=(50, 50), lr=3e-3, weight_decay=4e-4)}
EPOCHS, BATCH = 10, 128
DAMPINGS = [1e-3, 1e-2, 1e-1]
PROJECTED = tuple(f"ekfac-{kind}r{r}" for kind in ("", "random-") for r in PROJECTIONS)
METHODS = ("tracin-last", "tracin-all", "fisher", "exact", "cg", "lissa", "ekfac", "kfac",
           *PROJECTED, "trak-1", "trak-10", *ENSEMBLES)
#: Methods whose damping is applied at solve time: the grid re-solves, it does not refit.
RESOLVE_ONLY = {"fisher", "exact", "trak-1", "trak-10", "ekfac", "kfac", *PROJECTED,
                *ENSEMBLES}


# -- timing: the one place that measures (swap for a shared harness) ----------------


def epoch_seconds(module, X, y, batch_size=512, repeats=3):
    """L: the fastest of ``repeats`` forward + backward epochs (mean cross-entropy)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(X), batch_size):
            module.zero_grad(set_to_none=True)
            F.cross_entropy(module(torch.from_numpy(X[i:i + batch_size])),
                            torch.from_numpy(y[i:i + batch_size])).backward()
        best = min(best, time.perf_counter() - start)
    module.zero_grad(set_to_none=True)
    return best


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@contextmanager
def eigendecomposed_dense_solves():
    """Exact-Hessian solves through one eigendecomposition per Hessian.

    ``InfluenceAttributor(solver="exact")`` used to solve ``(H + damping I) x = v``
    by least squares per block of 64 test images (minutes per block at
    p = 7,850 on this CPU). It now eigendecomposes the Hessian once in
    ``fit`` and solves every block and damping from the factor, so this
    context no longer patches anything; it stays so the call sites read the same.
    """
    yield


# -- data, nets, retrainings ----------------------------------------------------------


def load(data_home):
    if DATASET["name"] == "heloc":
        d = load_heloc(data_home=data_home, random_state=0)
        rng = np.random.RandomState(0)
        train = rng.choice(len(d.y_train), 4000, replace=False)
        test = rng.choice(len(d.y_test), 500, replace=False)
        return (d.X_train[train].astype(np.float32), d.y_train[train],
                d.X_test[test].astype(np.float32), d.y_test[test])
    d = load_mnist(data_home=data_home, n_train=5000, n_test=500, random_state=0, flatten=True)
    return d.X_train, d.y_train, d.X_test, d.y_test


def recipes():
    return HELOC_RECIPES if DATASET["name"] == "heloc" else RECIPES


def recipe(model, seed=0):
    spec = recipes()[model]
    return make_classifier(spec["hidden"], lr=spec["lr"], max_epochs=EPOCHS, batch_size=BATCH,
                           weight_decay=spec["weight_decay"], random_state=seed)


def cached_retrainings(path, model, X, y, X_test, y_test, labels, n_subsets, n_jobs):
    """The retraining table for ``labels``' groups, from ``path`` or computed and saved."""
    if path.exists():
        table = DatamodelRetrainings(**np.load(path))
        if table.n_subsets == n_subsets:
            return table
    subsets = random_subsets(int(labels.max()) + 1, n_subsets, 0.5, random_state=0)
    print(f"  retraining {n_subsets} subsets -> {path.name}", flush=True)
    seconds, table = timed(lambda: datamodel_retrainings(
        recipe(model), X, y, X_test, y_test, labels, subsets=subsets, n_jobs=n_jobs,
        random_state=0))
    print(f"  ... {seconds:.0f} s", flush=True)
    np.savez(path, subsets=table.subsets, actual=table.actual, full=table.full)
    return table


# -- the methods ------------------------------------------------------------------------


def make_attributor(method, model, net, damping, args):
    """An unfitted attributor for ``method`` (``net``: the fitted net, frozen inside)."""
    frozen = FrozenEstimator(net)
    lr_model = model == "lr"
    if method == "tracin-last":
        return TracInAttributor(frozen, random_state=0)
    if method == "tracin-all":  # needs the training run: the same recipe and seed
        return TracInAttributor(recipe(model), checkpoints="all", random_state=0)
    if method in ENSEMBLES:  # trains its nets: the recipe, seeded as the attributed net
        parts = method.split("-")
        n_models = int(parts[1][1:]) if parts[1].startswith("m") else 1
        return InfluenceAttributor(recipe(model), solver="ekfac", n_models=n_models,
                                   checkpoints="all" if parts[-1] == "all" else "last",
                                   damping=damping, random_state=0)
    if method.startswith("trak-"):
        return TRAKAttributor(recipe(model), n_models=int(method.split("-")[1]),
                              n_components=args.n_components, damping=damping, random_state=0)
    common = dict(damping=damping, random_state=0)
    if method == "fisher":
        return InfluenceAttributor(frozen, fisher="empirical",
                                   n_components=None if lr_model else args.n_components,
                                   **common)
    if method == "cg":
        return InfluenceAttributor(frozen, solver="cg", cg_max_iter=args.cg_max_iter, **common)
    if method in PROJECTED:  # group gradients stored in the projected space
        return InfluenceAttributor(frozen, solver="ekfac", n_components=int(method.split("r")[-1]),
                                   projection="random" if "random" in method else "eigen",
                                   **common)
    if method == "lissa":
        return InfluenceAttributor(frozen, solver="lissa", lissa_depth=args.lissa_depth,
                                   lissa_repeat=1, lissa_scale=args.lissa_scale, **common)
    return InfluenceAttributor(frozen, solver=method, **common)  # exact, ekfac, kfac


def dampings_for(method, model, args):
    if method.startswith("tracin"):
        return ["none"]
    if method == "exact" and model == "mlp" and DATASET["name"] == "mnist":
        return []  # a p x p Hessian of 109k parameters: not attempted
    if method in ("cg", "lissa"):
        return args.solver_dampings
    if method in ENSEMBLES:
        return [None if d == "default" else d if d == "auto" else float(d)
                for d in args.ensemble_dampings]
    if method in ("ekfac", "kfac", *PROJECTED):
        # None: 0.1 x each layer's mean eigenvalue (kronfluence); "auto": the mean
        # eigenvalue of the whole curvature
        return [None, "auto"] + DAMPINGS
    return DAMPINGS


def test_rows(method, model, args):
    """Indices of the test images a method is scored on."""
    return np.arange(args.expensive_test if method in ("cg", "lissa") else 500)


#: Methods whose aggregate cost (fit + score_groups of the mean test loss) is also timed.
AGGREGATE_TIMED = ("tracin-last", "fisher", "ekfac", "kfac", *PROJECTED, *ENSEMBLES)


def attribution_matrices(method, model, net, data, args, folder):
    """``{damping: run}`` over the grid, cached; ``{}`` when the method is not available.

    A run holds the ``matrix`` of the scored test images and the seconds of
    ``fit``, of ``attribute`` (extrapolated to 500 test images) and, for
    :data:`AGGREGATE_TIMED`, of ``score_groups`` of the mean test loss.
    """
    X, y, X_test, y_test = data
    rows = test_rows(method, model, args)
    out, attr = {}, None
    for damping in dampings_for(method, model, args):
        path = folder / f"{model}_{method}_{damping}.npz"
        if path.exists():
            out[damping] = {k: v[()] if v.ndim == 0 else v for k, v in np.load(path).items()}
            continue
        if args.cached_only:
            continue
        try:
            if attr is None or method not in RESOLVE_ONLY:
                attr = make_attributor(method, model, net, damping, args)
                fit_s, _ = timed(lambda: attr.fit(X, y))
                fit_s -= attr.timings_["training"] if method == "tracin-all" else 0.0
            else:
                attr.set_params(damping=damping)
        except (InvalidParameterError, ValueError) as error:
            print(f"  {method}: skipped ({error})", flush=True)
            return {}
        with warnings.catch_warnings(record=True) as caught, eigendecomposed_dense_solves():
            warnings.simplefilter("always", ConvergenceWarning)
            attribute_s, matrix = timed(lambda: attr.attribute(X_test[rows], y_test[rows]))
            aggregate_s = (timed(lambda: attr.score_groups(X_test, y_test))[0]
                           if method in AGGREGATE_TIMED else float("nan"))
        if caught:
            print(f"  {method} damping={damping}: {len(caught)} ConvergenceWarning(s): "
                  f"{caught[0].message}", flush=True)
        run = dict(matrix=matrix, fit_s=fit_s, attribute_s=attribute_s * 500 / len(rows),
                   aggregate_s=fit_s + aggregate_s, training_s=training_seconds(method, attr))
        np.savez(path, **run)
        out[damping] = run
        print(f"  {method} damping={damping}: fit {fit_s:.1f} s, attribute "
              f"{run['attribute_s']:.1f} s", flush=True)
    return out


def training_seconds(method, attr):
    """Seconds of the trainings inside an ensemble's ``fit`` (0 for the other methods)."""
    if method not in ENSEMBLES:
        return 0.0
    return attr.timings_["training"] + attr.timings_.get("gradients.training", 0.0)


def retime(method, model, net, damping, data, n_scored, args):
    """Seconds of the winning configuration and L, timed side by side now.

    ``fit`` + ``attribute`` of the ``n_scored`` first test images
    (extrapolated to 500) and, for :data:`AGGREGATE_TIMED`, ``fit`` +
    ``score_groups``, each just after timing L (fastest of 3 epochs): the
    runs that produced the matrices shared the CPU with other jobs, whose
    load changed between a method and the L it was divided by.
    """
    X, y, X_test, y_test = data
    L = epoch_seconds(net.module_, X, y)
    attr = make_attributor(method, model, net, damping, args)
    fit_s, _ = timed(lambda: attr.fit(X, y))
    fit_s -= attr.timings_["training"] if method == "tracin-all" else 0.0
    with warnings.catch_warnings(), eigendecomposed_dense_solves():
        warnings.simplefilter("ignore", ConvergenceWarning)
        attribute_s, _ = timed(lambda: attr.attribute(X_test[:n_scored], y_test[:n_scored]))
        aggregate_s = (timed(lambda: attr.score_groups(X_test, y_test))[0]
                       if method in AGGREGATE_TIMED else float("nan"))
    attribute_s *= 500 / n_scored
    return dict(L=L, seconds=fit_s + attribute_s, attribute_s=attribute_s,
                aggregate_s=fit_s + aggregate_s, training_s=training_seconds(method, attr))


def lds(matrix, table, rows):
    """LDS of the per-test-point matrix (of the images ``rows``) on ``table``'s columns."""
    if not np.isfinite(matrix).all():
        return float("nan")
    sub = DatamodelRetrainings(table.subsets, table.actual[:, rows], table.full[rows])
    return lds_from_retrainings(matrix, sub).score


def group_matrix(matrix, labels):
    """Per-point attributions summed into groups: ``(n_test, n_groups)``."""
    out = np.zeros((matrix.shape[0], int(labels.max()) + 1))
    np.add.at(out.T, labels, matrix.T)
    return out


def evaluate(method, matrices, table, rows, groups):
    """The row of ``method``: winning damping, LDS (held-out / all / expensive subset), groups."""
    position = np.arange(len(rows))
    tune, held_out = position % 2 == 0, position % 2 == 1
    grid = {d: lds(run["matrix"][tune], table, rows[tune]) for d, run in matrices.items()}
    finite = {d: v for d, v in grid.items() if np.isfinite(v)}
    if not finite:
        return dict(method=method, grid=_jsonable(grid), lds=float("nan"))
    best = max(finite, key=finite.get)
    run = matrices[best]
    matrix = run["matrix"]
    row = dict(method=method, damping=best, grid=_jsonable(grid),
               seconds=float(run["fit_s"] + run["attribute_s"]),
               attribute_s=float(run["attribute_s"]), aggregate_s=float(run["aggregate_s"]),
               training_s=float(run.get("training_s", 0.0)),
               n_test=len(rows), lds=lds(matrix[held_out], table, rows[held_out]),
               lds_all=lds(matrix, table, rows),
               lds_first100=lds(matrix[:100], table, rows[:100]))
    for size, (labels, group_table, _) in groups.items():
        row[f"lds_g{size}"] = lds(group_matrix(matrix, labels), group_table, rows)
    return row


def _jsonable(grid):
    return {str(k): (None if not np.isfinite(v) else round(float(v), 4)) for k, v in grid.items()}


# -- one model --------------------------------------------------------------------------


def run_model(model, data, args, folder):
    X, y, X_test, y_test = data
    print(f"=== {model}: training the attributed net", flush=True)
    train_s, net = timed(lambda: recipe(model).fit(X, y))
    # the first training pays one-time costs (imports, allocator): the cost in trainings
    # divides by the faster of two
    train_s = min(train_s, timed(lambda: recipe(model).fit(X, y))[0])
    accuracy = float((net.predict(X_test) == y_test).mean())
    table = cached_retrainings(folder / f"{model}_points.npz", model, X, y, X_test, y_test,
                               np.arange(len(y)), args.n_subsets, args.n_jobs)
    groups = {}
    for size in args.group_sizes:
        seconds, grouper = timed(lambda: GradKMeansGrouper(
            group_size=size, estimator=FrozenEstimator(net), random_state=0).fit(X, y))
        labels = grouper.labels_
        group_table = cached_retrainings(folder / f"{model}_groups{size}.npz", model, X, y,
                                         X_test, y_test, labels, args.n_subsets, args.n_jobs)
        groups[size] = (labels, group_table, seconds)
    if args.damping_study:
        study = damping_study(model, net, data, table, args)
        (folder / f"damping_{model}.json").write_text(json.dumps(study, indent=2))
    L = [epoch_seconds(net.module_, X, y)]
    rows = []
    for method in args.methods:
        L.append(epoch_seconds(net.module_, X, y, repeats=1))
        matrices = attribution_matrices(method, model, net, data, args, folder)
        if matrices:  # the scored test images: the first ones, as many as the matrices hold
            scored = np.arange(len(next(iter(matrices.values()))["matrix"]))
            rows.append(evaluate(method, matrices, table, scored, groups))
            if args.retime and np.isfinite(rows[-1]["lds"]):
                rows[-1].update(retime(method, model, net, rows[-1]["damping"], data,
                                       len(scored), args))
            print(f"  -> {json.dumps(rows[-1])}", flush=True)
    for row in rows:
        row["trainings"] = trainings(row, train_s)
    return dict(model=model, accuracy=accuracy, training_s=train_s, L=min(L), rows=rows,
                grouping_s={size: g[2] for size, g in groups.items()})


def trainings(row, training_s):
    """A row's cost in trainings of the attributed net: the full trainings it needs, counted
    (an ensemble's ``M``; one, the attributed net's, for the methods that attribute it
    frozen or read its checkpoints), plus its other fit + attribute seconds over the
    net's training seconds. TRAK's half-data trainings are in its seconds."""
    if row["method"] in ENSEMBLES:
        n_models = int(row["method"].split("-")[1][1:]) if "-m" in row["method"] else 1
        return n_models + (row["seconds"] - row["training_s"]) / training_s
    own = 0.0 if row["method"].startswith("trak") else 1.0
    return row["seconds"] / training_s + own


#: Automatic damping rules measured by ``--damping-study`` (issue 22): a fraction of each
#: layer's mean eigenvalue (``layer-<f>``; ``layer-0.1`` is the default, kronfluence's), a
#: fraction of the mean eigenvalue over all layers as one scalar (``global-<f>``), and the
#: fixed values of the grid for reference.
LAYER_FRACTIONS = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0)
GLOBAL_FRACTIONS = (0.1, 1.0, 3.0, 10.0)


def damping_study(model, net, data, table, args):
    """LDS of EK-FAC (and K-FAC) on the attributed net under each damping rule: no tuning,
    so the held-out and all-points LDS read alike; one fit, one solve per rule."""
    from skggda._engine import _kfac

    X, y, X_test, y_test = data
    rows = np.arange(min(len(y_test), args.study_test))
    X_test, y_test = X_test[rows], y_test[rows]
    held_out = rows[rows % 2 == 1]
    out = {}
    for solver in ("ekfac", "kfac"):
        attr = InfluenceAttributor(FrozenEstimator(net), solver=solver, random_state=0).fit(X, y)
        values = [block.eigenvalues.double() for block in attr._kfac.blocks]
        mean = float(sum(v.sum() for v in values) / sum(v.numel() for v in values))
        rules = {**{f"layer-{f:g}": (f, None) for f in LAYER_FRACTIONS},
                 **{f"global-{f:g}": (None, f * mean) for f in GLOBAL_FRACTIONS},
                 **{f"fixed-{d:g}": (None, d) for d in DAMPINGS}}
        default = _kfac.HEURISTIC_DAMPING
        for name, (fraction, damping) in rules.items():
            try:
                _kfac.HEURISTIC_DAMPING = default if fraction is None else fraction
                matrix = attr.set_params(damping=damping).attribute(X_test, y_test)
            finally:
                _kfac.HEURISTIC_DAMPING = default
            out[f"{solver} {name}"] = dict(damping=damping, lds_all=lds(matrix, table, rows),
                                           lds=lds(matrix[held_out], table, held_out),
                                           n_test=len(rows))
            print(f"  {solver} {name:<14} damping {damping if damping is not None else 'per layer'}"
                  f": LDS {out[f'{solver} {name}']['lds']:.3f} held-out, "
                  f"{out[f'{solver} {name}']['lds_all']:.3f} all", flush=True)
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--dataset", choices=("mnist", "heloc"), default="mnist")
    add("--models", nargs="+", choices=sorted(RECIPES), default=None,
        help="default: lr and mlp (MNIST-10), mlp (HELOC)")
    add("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    add("--n-subsets", type=int, default=50)
    add("--group-sizes", nargs="*", type=int, default=[16, 64, 256])
    add("--n-components", type=int, default=2048,
        help="TRAK's projection, and the Fisher's on the MLP (the LR's Fisher is exact)")
    add("--cg-max-iter", type=int, default=30)
    add("--lissa-depth", type=int, default=300)
    add("--lissa-scale", type=float, default=50.0)
    add("--expensive-test", type=int, default=100)
    add("--solver-dampings", nargs="+", type=float, default=[1e-3, 1e-2, 1e-1],
        help="the damping grid of CG and LiSSA (each value is a new solve)")
    add("--ensemble-dampings", nargs="+", default=["default", "auto", *map(str, DAMPINGS)],
        help="the damping grid of the ensembles ('default': 0.1 x each layer's mean "
             "eigenvalue, 'auto': the whole curvature's); each value is one more solve "
             "per member")
    add("--n-jobs", type=int, default=None)
    add("--cached-only", action="store_true",
        help="report from the cached attributions only (compute none)")
    add("--retime", action="store_true",
        help="time every reported row's winning configuration again, beside its own L")
    add("--damping-study", action="store_true",
        help="measure EK-FAC / K-FAC's LDS under automatic damping rules first "
             "(damping_<model>.json)")
    add("--study-test", type=int, default=500,
        help="the damping study scores the first this many test points")
    add("--data-home", default=None)
    add("--output", default=None,
        help="default: benchmarks/out/fidelity (MNIST-10), benchmarks/out/fidelity_heloc")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    DATASET["name"] = args.dataset
    if args.models is None:
        args.models = sorted(recipes())
    if args.output is None:
        args.output = "benchmarks/out/fidelity" + ("_heloc" if args.dataset == "heloc" else "")
    torch.set_num_threads(1)  # a shared 2-core machine: one thread is fastest and steadiest
    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    data = load(args.data_home)
    for model in args.models:
        result = run_model(model, data, args, folder)
        (folder / f"results_{model}.json").write_text(json.dumps(result, indent=2, default=float))
    # the report covers every model measured in this folder (earlier runs included)
    results = [json.loads((folder / f"results_{m}.json").read_text()) for m in sorted(recipes())
               if (folder / f"results_{m}.json").exists()]
    for result in results:
        print(format_report(result, args.group_sizes), flush=True)
    print("\ntargets:")
    for name, ok in targets(results):
        print(f"  {'MET ' if ok else 'MISS'} {name}")
    path = plot(results, folder / "runtime_vs_lds.png")
    print("wrote results_*.json" + (f", {path}" if path else "") + f" under {folder}")


if __name__ == "__main__":
    main()
