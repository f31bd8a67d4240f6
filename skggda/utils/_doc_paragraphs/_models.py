"""Shared docstring paragraphs of the models: seeded nets, training recipes, callbacks, converted scikit-learn models."""

SEEDED = """
.. module
module : torch.nn.Module class or instance
    The network. A class whose constructor takes ``n_features``,
    ``n_classes`` or ``in_channels`` gets them from the training data
    unless they are set with ``module__...``.

.. args
*args
    Further positional parameters of the skorch net class, after
    ``module``.

.. random_state
random_state : int, RandomState instance or None, default=None
    Seeds weight initialisation, batch shuffling and dropout inside
    :func:`torch.random.fork_rng`, leaving the global torch RNG as it
    was. ``None`` uses the global RNG, as skorch does.

.. kwargs
**kwargs
    Any other parameter of the skorch net class (``criterion``, ``lr``,
    ``max_epochs``, ``callbacks``, ``module__...``, ...).

.. see_classifier
    See :class:`skorch.NeuralNetClassifier`.

.. see_regressor
    See :class:`skorch.NeuralNetRegressor`.

.. X
X : array-like of shape (n_samples, ...), dict or Dataset
    Inputs, as skorch takes them; pandas objects become numpy arrays.

.. y
y : array-like of shape (n_samples,) or (n_samples, n_targets), default=None
    Targets (``None`` when ``X`` is a Dataset that holds them).

.. fit_params
**fit_params
    Passed on to skorch (e.g. to the module's ``forward``).

.. returns_self
Returns
-------
self : object
    The trained net.
"""

RECIPE = """
.. device
device : str, default="cpu"
    Torch device of training (``"cuda"`` trains on the GPU; attribution
    then runs there too).

.. random_state
random_state : int, RandomState instance or None, default=None
    Makes training repeatable without touching the global torch RNG.

.. verbose
verbose : int, default=0
    skorch's per-epoch log when positive.

.. lr
lr : float, default=1e-3
    Peak learning rate of the one-cycle schedule.

.. max_epochs
max_epochs : int, default=30
    Passes over the training data.

.. batch_size
batch_size : int, default=128
    Samples per optimisation step.

.. weight_decay
weight_decay : float, default=4e-4
    Adam's L2 weight decay.

.. returns
Returns
-------
net : SeededNeuralNetClassifier
    The unfitted net.
"""

CALLBACK = """
.. net
net : skorch.NeuralNet
    The net being trained.

.. X
X : array-like, default=None
    The training inputs passed to ``fit``.

.. y
y : array-like, default=None
    The training targets passed to ``fit``.

.. training
training : bool, default=None
    Whether the batch is a training batch (not a validation batch).

.. kwargs
**kwargs
    The other arguments skorch passes to the hook; unused.
"""

CONVERTED = """
.. X
X : array-like of shape (n_samples, n_features)
    Samples, as the scikit-learn model takes them.
"""
