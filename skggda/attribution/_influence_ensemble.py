"""Influence ensembles: several trainings, or every checkpoint of one (issue 22).

``InfluenceAttributor(n_models=M, checkpoints=...)`` fits the chosen solver
once per net -- M nets trained with independent seeds, or the net at every
recorded epoch -- as single attributors that share the ensemble's groups and
training arrays, and combines their scores: the mean over models, the
learning-rate-weighted sum over checkpoints.
"""

from __future__ import annotations

import torch
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from .. import _engine
from ..models._resolve import default_classifier, prepare_net, train, training_recipe
from ..utils._inputs import training_inputs
from ..utils._seeding import derive_seeds
from ..utils._targets import fit_targets_for
from ._checkpoints import recorded_checkpoints

#: Parameters read when scoring: an ensemble's members take them from the ensemble.
SCORING_PARAMS = ("property", "damping", "lissa_depth", "lissa_repeat", "lissa_scale",
                  "lissa_batch_size", "cg_max_iter", "batch_size", "n_jobs", "verbose")


class EnsembleMembers:
    """The members of an influence ensemble: training, checkpoints, and their scores."""

    def _fit_ensemble(self, X, y, seed):
        self._seed = seed
        self._state = self._kfac = self._group_store = None
        self._hessian_eigenvalues = self._hessian_eigenvectors = None
        # member 0 is this attributor's own net and seed; member m >= 1 is the single
        # attributor with random_state r_m = derive_seeds(seed, n_models - 1)[m - 1]:
        # its net trained from derive_seeds(r_m, 3)[0] (replacing the net's own
        # random_state, so that the members differ), its solver seeded as that one's
        seeds = [(None, seed)] + [tuple(int(s) for s in derive_seeds(int(r), 3)[[0, 2]])
                                  for r in derive_seeds(seed, self.n_models - 1)]
        with self._stage("training"):
            self.estimators_ = [self.estimator_] + self._train_members(
                X, y, [net_seed for net_seed, _ in seeds[1:]])
        members = []
        with self._stage("members"):
            for net, (_, member_seed) in zip(self.estimators_, seeds):
                for weighted_net, weight in self._checkpoint_nets(net):
                    member = self._member(weighted_net)
                    member._fit_single(X, y, member_seed)
                    members.append((member, weight / self.n_models))
        self._members = members

    def _train_members(self, X, y, net_seeds):
        """The nets of members ``1..n_models-1``, trained on all the data (joblib jobs)."""
        # a frozen net's recipe is refused in _check_params; a scikit-learn model's is
        # refitted by scikit-learn
        template = training_recipe(default_classifier() if self.estimator is None
                                   else self.estimator)
        n_classes = len(self.classes_) if hasattr(self, "classes_") else None
        return Parallel(n_jobs=self.n_jobs)(
            delayed(_train_member)(template, X, y, net_seed, n_classes,
                                   self._training_callbacks())
            for net_seed in net_seeds)

    def _checkpoint_nets(self, net):
        """``(net, weight)`` per checkpoint: the final net (``"last"``) or a copy of the
        net at each recorded epoch, weighted by that epoch's mean learning rate."""
        if self.checkpoints == "last":
            return [(net, 1.0)]
        return [(_net_at(net, state), float(rate)) for state, rate in recorded_checkpoints(net)]

    def _member(self, net):
        """A single attributor (``n_models=1``, ``"last"``) on ``net``, sharing this one's
        groups, targets and training data (the same arrays, not copies)."""
        member = clone(self).set_params(estimator=FrozenEstimator(net), grouper=None,
                                        n_models=1, checkpoints="last")
        member.estimator_ = net
        for name in ("labels_", "groups_", "n_groups_", "classes_", "n_features_in_",
                     "feature_names_in_", "_preprocessor", "_X_fit", "_y_fit"):
            if name in self.__dict__:
                setattr(member, name, self.__dict__[name])
        member.timings_ = {}
        return member

    def _ensemble(self):
        """``(member, weight)`` pairs of an ensemble or checkpoint fit, else ``None``.

        The members read the parameters that apply at scoring time (the damping, the
        solvers' settings, the property) from this attributor, as a single fit does:
        ``set_params(damping=...)`` after ``fit`` re-solves every member.
        """
        members = getattr(self, "_members", None)
        if members is not None:
            params = {name: getattr(self, name) for name in SCORING_PARAMS}
            for member, _ in members:
                member.__dict__.update(params)
        return members


def _train_member(template, X, y, seed, n_classes, callbacks):
    """One ensemble member's net, trained on all of ``(X, y)`` from ``seed`` (a joblib job).

    The seed replaces the recipe's own ``random_state``: members differ by it.
    """
    recipe = clone(template)
    if "random_state" in recipe.get_params(deep=False):
        recipe.set_params(random_state=seed)
    net = prepare_net(recipe, seed, callbacks, n_classes=n_classes)
    return train(net, *training_inputs(X, fit_targets_for(net, y)))


def _net_at(net, state):
    """A fitted copy of the skorch ``net`` with the module weights ``state`` (a checkpoint).

    Built from the recipe without its callbacks (no history, no recorded
    checkpoints: it is never trained), so that saving it holds the recipe and the
    weights only.
    """
    # copies, as clone makes them (skorch's bookkeeping is not a parameter)
    params = {name: clone(value, safe=False) for name, value
              in net.get_params(deep=False).items()
              if not name.startswith("_") and name != "callbacks"}
    twin = type(net)(**{**params, "callbacks": "disable"})
    for name in ("classes_inferred_", "module_dims_"):  # what sizes the module
        if hasattr(net, name):
            setattr(twin, name, getattr(net, name))
    with torch.random.fork_rng(devices=[]):  # building the module draws weights
        twin.initialize()
    device = _engine.module_device(net.module_)
    twin.module_.to(device=device, dtype=_engine.module_dtype(net.module_))
    twin.module_.load_state_dict({k: v.to(device) for k, v in state.items()})
    twin.module_.train(net.module_.training)
    return twin
