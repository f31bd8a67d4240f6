"""Noisy-label detection: attribution-based detectors beside cleanlab, same nets, same flips.

For every data set, share of flipped labels and seed, one net is trained on
the flipped labels with the experiment grid's recipe (``GridConfig``'s
"short" recipe: HELOC with ANN-S, 40 epochs at a peak of 1e-2; MNIST with the
MLP 150 x 3 on ``--mnist-n-train`` images, ``--mnist-epochs`` epochs, batches
of 128), recording its checkpoints. Every detector ranks the training points
(lowest first) and is scored by :func:`skggda.metrics.noisy_label_auc`:

* ``test/last``, ``test/all/r1024`` -- TracIn of the mean test loss (the
  paper's detector), final weights, or every epoch's checkpoint with
  gradients projected to ``--n-components`` dimensions;
* ``self/last/r1024``, ``self/all/r1024`` -- minus TracIn self-influence
  (Pruthi et al.) on projected gradients, final weights or all checkpoints;
* ``<detector>@g`` -- the same, on Grad-K-Means groups of ``g`` points
  (group scores of the test-loss detectors are the sums of their members');
* ``cleanlab`` -- ``cleanlab.rank.get_label_quality_scores`` on 5-fold
  out-of-sample probabilities of the same recipe (5 trainings);
* ``label_issues/self``, ``label_issues/oof``, ``label_issues/combined`` --
  the three methods of :func:`skggda.metrics.label_issue_scores`: TracIn
  self-influence over all checkpoints (projected to ``--n-components``; the
  same scores as ``self/all/r1024``), the loss of the given label under the
  same 5-fold probabilities cleanlab rates (so cleanlab and ``oof`` share
  their 5 trainings), and the rank average of the two; ``label_issues/oof@3``
  is the out-of-fold loss with 3 folds (3 trainings on two thirds of the
  rows), ``label_issues/combined@3`` its rank average with self-influence.
  ``label_issues/combined@3`` is what ``label_issue_scores(method="auto")``
  runs (``cv=None``: 3 folds). ``--label-issues-only`` skips the test-loss detectors and groups.

Cost: seconds of attribution (or of cleanlab's trainings and scoring), also
as a ratio to the net's own training, which every detector but cleanlab
needs anyway. Results (JSON per run) go to ``--output``.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_noisy.py --datasets heloc mnist \\
        --noise 0.1 0.2 --seeds 0 1 2 --data-home ../shared/data
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from sklearn.frozen import FrozenEstimator

from _harness import timed
from skggda import GradKMeansGrouper, TracInAttributor
from skggda.experiments import GridConfig
from skggda.experiments._grid import load_dataset
from skggda.metrics import flip_labels
from skggda.experiments._baselines import CLEANLAB_MISSING
from skggda.experiments._grid import make_net
from skggda.metrics import noisy_label_auc
from skggda.metrics._label_issues import oof_loss_scores, rank_average


def config_for(dataset, args):
    if dataset == "heloc":
        return GridConfig(dataset="heloc", model="ann-s", data_home=args.data_home)
    return GridConfig(dataset="mnist", model="mlp", n_train=args.mnist_n_train,
                      epochs=args.mnist_epochs, batch_size=128, data_home=args.data_home)


def detector_scores(config, seed, X, y, X_test, y_test, group_sizes, n_components,
                    label_issues_only=False):
    """``({name: (scores, labels, seconds)}, training seconds)`` for one noisy training set."""
    recorded = TracInAttributor(make_net(config, seed), checkpoints="all",
                                n_components=n_components, random_state=seed)
    fit_s, _ = timed(lambda: recorded.fit(X, y))
    training_s = recorded.timings_["training"]
    if label_issues_only:
        seconds, scores = timed(recorded.self_influence)
        return ({f"self/all/r{n_components}": (-scores, np.arange(len(y)), seconds + fit_s)},
                training_s)
    frozen = FrozenEstimator(recorded.estimator_)
    exact = TracInAttributor(frozen, random_state=seed).fit(X, y)
    last_s, last = timed(lambda: TracInAttributor(frozen, n_components=n_components,
                                                  random_state=seed).fit(X, y))
    points, r = np.arange(len(y)), f"r{n_components}"
    out = {}
    for name, attr, extra, kinds in (("last", exact, 0.0, ("test",)),
                                     (f"last/{r}", last, last_s, ("self",)),
                                     (f"all/{r}", recorded, fit_s - training_s,
                                      ("test", "self"))):
        for kind in kinds:
            call = ((lambda a: a.score_groups(X_test, y_test)) if kind == "test"
                    else (lambda a: -a.self_influence()))
            seconds, scores = timed(lambda: call(attr))
            out[f"{kind}/{name}"] = (scores, points, seconds + extra)
    for size in group_sizes:  # test-loss scores are linear: groups sum their members'
        grouping_s, grouper = timed(lambda: GradKMeansGrouper(
            group_size=size, estimator=frozen, random_state=seed).fit(X, y))
        labels = grouper.labels_
        for name in [n for n in out if n.startswith("test") and "@" not in n]:
            scores, _, seconds = out[name]
            sums = np.bincount(labels, weights=scores, minlength=labels.max() + 1)
            out[f"{name}@{size}"] = (sums, labels, seconds + grouping_s)
    return out, training_s


def run_one(dataset, noise, seed, args, data, folder):
    config = config_for(dataset, args)
    X, y_clean, X_test, y_test = data
    y, flipped = flip_labels(y_clean, noise, random_state=seed)
    detectors, training_s = detector_scores(config, seed, X, y, X_test, y_test,
                                            args.group_sizes, args.n_components,
                                            args.label_issues_only)
    detectors.update(label_issue_detectors(config, seed, X, y, args.cleanlab_folds,
                                           detectors[f"self/all/r{args.n_components}"]))
    rows = [dict(detector=name, auc=noisy_label_auc(scores, labels, flipped), seconds=seconds)
            for name, (scores, labels, seconds) in detectors.items()]
    return dict(dataset=dataset, noise=noise, seed=seed, training_s=training_s, rows=rows,
                n_components=args.n_components)


def label_issue_detectors(config, seed, X, y, n_folds, self_detector):
    """cleanlab and :func:`~skggda.metrics.label_issue_scores`' methods, as detectors.

    cleanlab rates the same out-of-fold probabilities whose given-label loss
    is ``label_issues/oof``: both cost the same ``n_folds`` trainings. Every
    score is negated (lowest first = most likely flipped, as for attributions).
    """
    points, out = np.arange(len(y)), {}
    self_scores, _, self_s = self_detector  # already negated: -self-influence
    out["label_issues/self"] = (self_scores, points, self_s)
    oof_s, (losses, proba) = timed(lambda: oof_loss_scores(
        make_net(config, seed), X, y, cv=n_folds, random_state=seed, return_proba=True))
    out["label_issues/oof"] = (-losses, points, oof_s)
    out["label_issues/combined"] = (-rank_average(-self_scores, losses), points, self_s + oof_s)
    three_s, three = timed(lambda: oof_loss_scores(make_net(config, seed), X, y, cv=3,
                                                   random_state=seed))
    out["label_issues/oof@3"] = (-three, points, three_s)
    out["label_issues/combined@3"] = (-rank_average(-self_scores, three), points,
                                      self_s + three_s)
    try:
        from cleanlab.rank import get_label_quality_scores

        rating_s, quality = timed(lambda: get_label_quality_scores(np.asarray(y), proba))
        out["cleanlab"] = (quality, points, oof_s + rating_s)
    except ImportError:
        print(CLEANLAB_MISSING)
    return out


def summarize(runs):
    """Mean and standard error per (data set, noise, detector)."""
    table = defaultdict(list)
    for run in runs:
        for row in run["rows"]:
            table[(run["dataset"], run["noise"], row["detector"])].append(
                (row["auc"], row["seconds"], row["seconds"] / run["training_s"]))
    out = []
    for (dataset, noise, detector), values in sorted(table.items()):
        auc = np.array([v[0] for v in values])
        sem = auc.std(ddof=1) / np.sqrt(len(auc)) if len(auc) > 1 else 0.0
        out.append(dict(dataset=dataset, noise=noise, detector=detector, auc=auc.mean(),
                        sem=sem, seconds=np.mean([v[1] for v in values]),
                        per_training=np.mean([v[2] for v in values]), n_seeds=len(auc)))
    return out


def print_summary(summary):
    print(f"{'data':<7}{'noise':>6} {'detector':<16}{'AUC':>8}{'s.e.':>7}{'seconds':>9}"
          f"{'/training':>10}")
    for r in summary:
        print(f"{r['dataset']:<7}{r['noise']:>6.2f} {r['detector']:<16}{r['auc']:>8.3f}"
              f"{r['sem']:>7.3f}{r['seconds']:>9.2f}{r['per_training']:>10.2f}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--datasets", nargs="+", choices=("heloc", "mnist"), default=["heloc", "mnist"])
    add("--noise", nargs="+", type=float, default=[0.1, 0.2])
    add("--seeds", nargs="+", type=int, default=[0, 1, 2])
    add("--group-sizes", nargs="*", type=int, default=[16])
    add("--n-components", type=int, default=1024,
        help="projection of the self-influence detectors and of TracIn over all "
        "checkpoints (exact self-influence forms every per-sample gradient: on HELOC over "
        "all checkpoints it took longer than cleanlab's 5 trainings)")
    add("--cleanlab-folds", type=int, default=5)
    add("--label-issues-only", action="store_true",
        help="only self-influence over all checkpoints, cleanlab and label_issue_scores' "
        "methods (no test-loss detectors, no groups)")
    add("--mnist-n-train", type=int, default=5000)
    add("--mnist-epochs", type=int, default=20)
    add("--data-home", default=None)
    add("--output", default="benchmarks/out/noisy")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    runs = []
    for dataset in args.datasets:
        data = load_dataset(config_for(dataset, args))
        for noise in args.noise:
            for seed in args.seeds:
                path = folder / f"{dataset}_{noise}_{seed}.json"
                run = json.loads(path.read_text()) if path.exists() else None
                if run is None or run.get("n_components") != args.n_components:
                    run = run_one(dataset, noise, seed, args, data, folder)
                    path.write_text(json.dumps(run, default=float))
                runs.append(run)
                print(f"done {path.name}", flush=True)
    summary = summarize(runs)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    print_summary(summary)


if __name__ == "__main__":
    main()
