"""The shared docstring paragraphs that :func:`~skggda.utils._docs.fill_doc` substitutes.

Each family is one text, in a module per part of the library: a line
``.. key`` opens a paragraph, whose text runs to the next such line
(surrounding blank lines dropped). Keys are ``family.name``; a block joins
several paragraphs under a key of its own, and a "sections" paragraph holds
whole numpydoc sections (headers included) for methods that share them.
"""

from __future__ import annotations

import re

from . import _attribution, _experiments, _grouping, _metrics, _models

_KEY = re.compile(r"^\.\. (\S+)$", re.MULTILINE)


def _parse(family, text):
    """``{family.key: paragraph}`` from ``.. key`` sections of ``text``."""
    parts = _KEY.split(text)
    return {f"{family}.{key}": body.strip("\n") for key, body in zip(parts[1::2], parts[2::2])}


def _blocks(paragraphs, **blocks):
    """Add each block ``key=[member keys]`` as the member paragraphs joined."""
    for key, members in blocks.items():
        paragraphs[key.replace("__", ".")] = "\n".join(paragraphs[m] for m in members)


def _sections(paragraphs, **sections):
    """Add each ``key={header: [member keys]}`` as whole numpydoc sections."""
    for key, headers in sections.items():
        paragraphs[key.replace("__", ".")] = "\n\n".join(
            f"{header}\n{'-' * len(header)}\n" + "\n".join(paragraphs[m] for m in members)
            for header, members in headers.items())


PARAGRAPHS = {
    **_parse("attributor", _attribution.ATTRIBUTOR),
    **_parse("grouper", _grouping.GROUPER),
    **_parse("kmeans", _grouping.KMEANS),
    **_parse("model_grouper", _grouping.MODEL_GROUPER),
    **_parse("seeded", _models.SEEDED),
    **_parse("recipe", _models.RECIPE),
    **_parse("callback", _models.CALLBACK),
    **_parse("converted", _models.CONVERTED),
    **_parse("retraining", _metrics.RETRAINING),
    **_parse("order", _metrics.ORDER),
    **_parse("noisy", _metrics.NOISY),
    **_parse("scorer", _metrics.SCORER),
    **_parse("property", _experiments.PROPERTY),
    **_parse("report", _experiments.REPORT),
    **_parse("dataset", _experiments.DATASET),
}

_blocks(
    PARAGRAPHS,
    # fitted state every attributor has (estimator_ and timings_ vary)
    attributor__fitted=["attributor.grouper_", "attributor.labels_", "attributor.groups_",
                        "attributor.n_groups_", "attributor.classes_",
                        "attributor.n_features_in_"],
    grouper__fitted=["grouper.labels_", "grouper.n_groups_"],
    grouper__fit_info=["grouper.fit_time_", "grouper.n_features_in_"],
    kmeans__fitting=["kmeans.algorithm", "kmeans.max_iter", "kmeans.tol"],
    kmeans__fitted=["kmeans.inertia_", "kmeans.n_iter_"],
    model_grouper__parameters=[
        "grouper.group_size", "grouper.n_groups", "model_grouper.estimator",
        "kmeans.fitting", "model_grouper.batch_size", "kmeans.n_jobs", "kmeans.verbose",
        "model_grouper.random_state"],
    model_grouper__attributes=[
        "grouper.fitted", "model_grouper.cluster_centers_", "model_grouper.estimator_",
        "model_grouper.classes_", "kmeans.fitted", "model_grouper.fit_time_",
        "grouper.n_features_in_"],
    grouper__data=["grouper.X", "grouper.y"],
    seeded__parameters=["seeded.module", "seeded.args", "seeded.random_state",
                        "seeded.kwargs"],
    seeded__data=["seeded.X", "seeded.y"],
    recipe__run=["recipe.device", "recipe.random_state", "recipe.verbose"],
    recipe__training=["recipe.lr", "recipe.max_epochs", "recipe.batch_size",
                      "recipe.weight_decay"],
    callback__train_begin=["callback.net", "callback.X", "callback.y", "callback.kwargs"],
    retraining__training_data=["retraining.estimator", "retraining.X", "retraining.y"],
    retraining__removal_test=["retraining.removal_X_test", "retraining.y_test"],
    retraining__property_test=["retraining.property_X_test", "retraining.y_test"],
    retraining__datamodel_data=["retraining.training_data", "retraining.property_test"],
    retraining__groups=["retraining.scores", "retraining.labels"],
    retraining__removal_data=["retraining.training_data", "retraining.removal_test",
                              "retraining.groups"],
    retraining__seeds=["retraining.n_seeds", "retraining.n_jobs", "retraining.random_state"],
    retraining__datamodel_seeds=["retraining.loo_seeds", "retraining.n_jobs",
                                 "retraining.datamodel_random_state"],
    retraining__removal_options=["retraining.seeds", "retraining.baselines",
                                 "retraining.metric"],
    retraining__subsets=["retraining.n_subsets", "retraining.subset_fraction"],
    order__groups=["order.scores", "order.labels"],
    scorer__removal=["scorer.stratify", "scorer.n_seeds", "scorer.random_state",
                     "scorer.metric"],
    dataset__split=["dataset.test_size", "dataset.split_random_state"],
    callback__batch=["callback.net", "callback.training", "callback.kwargs"],
    noisy__inputs=["noisy.scores", "noisy.labels", "noisy.is_noisy"],
    property__terms_parameters=["property.output", "property.y", "property.loss_fn"],
)

_sections(
    PARAGRAPHS,
    converted__parameters={"Parameters": ["converted.X"]},
    seeded__predict_parameters={"Parameters": ["seeded.X"]},
    seeded__classifier_parameters={"Parameters": ["seeded.parameters", "seeded.see_classifier"]},
    seeded__regressor_parameters={"Parameters": ["seeded.parameters", "seeded.see_regressor"]},
    callback__batch_parameters={"Parameters": ["callback.batch"]},
    callback__epoch_parameters={"Parameters": ["callback.net", "callback.kwargs"]},
    model_grouper__sections={"Parameters": ["model_grouper.parameters"],
                             "Attributes": ["model_grouper.attributes"]},
    property__evaluation_data_sections={"Parameters": ["property.evaluation_data"],
                                        "Attributes": ["property.evaluation_data"]},
    retraining__lds_returns={"Returns": ["retraining.lds_result"]},
    order__returns={"Returns": ["order.removed"]},
    scorer__returns={"Returns": ["scorer.scorer"]},
    property__terms_sections={"Parameters": ["property.terms_parameters"],
                              "Returns": ["property.terms"]},
    property__weights_sections={"Parameters": ["property.data"],
                                "Returns": ["property.weights"]},
)
