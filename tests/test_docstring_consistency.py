"""Shared descriptions stay in step: each object spells out its own parameters (issue 21),
and where several describe the same parameter, attribute or return alike, they must
keep doing so (scikit-learn's ``assert_docstring_consistency``).

The lists below are the entries that are meant to read the same in every member of
a family; an entry left out differs on purpose (a different default, or a meaning
that depends on the estimator: ``random_state`` draws different things).
"""

from __future__ import annotations

import warnings

import pytest

from skggda import (GradKMeansGrouper, InfluenceAttributor, KMeansGrouper, RandomGrouper,
                    ReprKMeansGrouper, TracInAttributor, TRAKAttributor)
from skggda.metrics import (
    datamodel_retrainings,
    group_leave_one_out,
    linear_datamodeling_score,
    make_lds_scorer,
    make_removal_scorer,
    removal_baselines,
    removal_score,
)
from skggda.models import (
    make_classifier,
    make_regressor,
    make_resnet_classifier,
    make_text_classifier,
)

assert_docstring_consistency = pytest.importorskip(
    "sklearn.utils._testing").assert_docstring_consistency

FAMILIES = {
    "attributors": ([TracInAttributor, InfluenceAttributor, TRAKAttributor],
                    {"include_params": ["batch_size", "grouper", "param_subset", "property",
                                        "verbose"],
                     "include_attrs": ["classes_", "grouper_", "groups_", "labels_",
                                       "n_features_in_", "n_groups_"]}),
    "kmeans-groupers": ([KMeansGrouper, ReprKMeansGrouper, GradKMeansGrouper],
                        {"include_params": ["algorithm", "group_size", "max_iter", "n_groups",
                                            "n_jobs", "tol", "verbose"],
                         "include_attrs": ["inertia_", "labels_", "n_features_in_",
                                           "n_groups_", "n_iter_"]}),
    "net-groupers": ([ReprKMeansGrouper, GradKMeansGrouper],
                     {"include_params": True, "include_attrs": True}),
    "groupers": ([RandomGrouper, KMeansGrouper, ReprKMeansGrouper, GradKMeansGrouper],
                 {"include_params": ["group_size", "n_groups"],
                  "include_attrs": ["labels_", "n_features_in_", "n_groups_"]}),
    "removal": ([removal_score, removal_baselines],
                {"include_params": ["X_test", "estimator", "metric", "n_jobs", "n_seeds",
                                    "stratify", "y", "y_test"]}),
    "datamodels": ([group_leave_one_out, datamodel_retrainings, linear_datamodeling_score],
                   {"include_params": ["X_test", "estimator", "labels", "n_jobs", "n_seeds",
                                       "property", "y", "y_test"]}),
    "recipes": ([make_classifier, make_regressor, make_resnet_classifier, make_text_classifier],
                {"include_params": ["device", "random_state", "verbose"]}),
    "scorers": ([make_removal_scorer, make_lds_scorer],
                {"include_params": ["random_state"]}),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_shared_entries_read_the_same(family):
    objects, entries = FAMILIES[family]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn marks the helper experimental
        assert_docstring_consistency(objects, **entries)
