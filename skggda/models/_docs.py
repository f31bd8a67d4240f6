"""The nets' and recipes' shared parameter descriptions, one entry a name.

Filled by ``skggda.utils._docstrings.fill_doc`` where an entry's body is
``%(name)s``: the seeded skorch nets (``random_state``, the start of
``**kwargs``) and the training recipes
(``device``) describe these alike; a description that differs is written
out where it stands.
"""

from ..utils._docstrings import fill_doc

NET_DOCS = {
    # the seeded skorch nets' (SeededNeuralNetClassifier, SeededNeuralNetRegressor)
    "random_state": """
    Seeds weight initialisation, batch shuffling and dropout inside
    :func:`torch.random.fork_rng`, leaving the global torch RNG as it
    was. ``None`` uses the global RNG, as skorch does.
    """,
    "kwargs": """
    Any other parameter of the skorch net class (``criterion``, ``lr``,
    ``max_epochs``, ``callbacks``, ``module__...``, ...).
    """,
    # the training recipes' (make_classifier, make_regressor, make_resnet_classifier,
    # make_text_classifier)
    "device": """
    Torch device of training (``"cuda"`` trains on the GPU; attribution
    then runs there too).
    """,
}

fill_net_doc = fill_doc(NET_DOCS)
