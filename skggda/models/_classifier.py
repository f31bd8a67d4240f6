"""A reproducible skorch classifier and the paper's training recipe."""

from __future__ import annotations

import inspect
import threading
from contextlib import contextmanager
from numbers import Integral

import numpy as np
import torch
from skorch import NeuralNet, NeuralNetClassifier
from sklearn.utils import check_random_state

from ._callbacks import OneCycleSchedule
from ._mlp import MLP
from ._resnet import ResNet18

_DIM_PARAMS = ("n_features", "n_classes", "in_channels")
# torch's RNG is global to the process: seeded fits in concurrent threads
# (joblib's threading backend, Dask thread workers) would interleave their
# draws, so they take turns.
_SEEDED_FIT_LOCK = threading.RLock()


class SeededNeuralNetClassifier(NeuralNetClassifier):
    """skorch's ``NeuralNetClassifier`` with a ``random_state`` and inferred input sizes.

    * ``random_state`` seeds weight initialisation, batch shuffling and dropout
      inside :func:`torch.random.fork_rng`: fits are repeatable and the
      caller's global torch RNG is left exactly as it was. ``None`` uses the
      global RNG as skorch does.
    * Modules whose constructor takes ``n_features`` / ``n_classes`` /
      ``in_channels`` (such as :class:`~skggda.models.MLP` and
      :class:`~skggda.models.ResNet18`) get them from the training data unless
      they are set with ``module__...``.
    * Floating inputs are cast to the module's dtype, so float64 arrays work.

    All other parameters are skorch's; see :class:`skorch.NeuralNetClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.models import MLP, SeededNeuralNetClassifier
    >>> X = np.random.RandomState(0).normal(size=(64, 4))
    >>> y = (X[:, 0] > 0).astype(np.int64)
    >>> net = SeededNeuralNetClassifier(MLP, max_epochs=2, train_split=None,
    ...                                 verbose=0, random_state=0).fit(X, y)
    >>> net.predict_proba(X).shape
    (64, 2)
    """

    def __init__(self, module, *args, random_state=None, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.random_state = random_state

    @contextmanager
    def _seeded(self):
        if self.random_state is None:
            yield
            return
        seed = self.random_state
        if not isinstance(seed, Integral):
            seed = int(check_random_state(seed).randint(np.iinfo(np.int32).max))
        cuda = str(self.device).startswith("cuda") and torch.cuda.is_available()
        with _SEEDED_FIT_LOCK, torch.random.fork_rng(devices=None if cuda else []):
            torch.manual_seed(int(seed))
            yield

    def _infer_module_dims(self, X, y):
        """Record ``n_features`` / ``n_classes`` the module needs but was not given."""
        wanted = _missing_dim_params(self.module, super().get_params_for("module"))
        dims = {}
        shape = None if isinstance(X, dict) else _input_shape(X)
        if y is None:
            y = getattr(X, "y", None)  # skggda's reader datasets carry their targets
        if "n_features" in wanted and shape is not None:
            dims["n_features"] = int(np.prod(shape[1:]))
        if "n_classes" in wanted and y is not None:
            dims["n_classes"] = _count_classes(y, self.classes)
        if "in_channels" in wanted and shape is not None and len(shape) == 4:
            dims["in_channels"] = int(shape[1])
        self.module_dims_ = dims

    def get_params_for(self, prefix):
        params = super().get_params_for(prefix)
        if prefix == "module":
            for key, value in getattr(self, "module_dims_", {}).items():
                params.setdefault(key, value)
        return params

    def fit(self, X, y=None, **fit_params):
        X, y = _as_arrays(X), _as_targets(y)
        self._infer_module_dims(X, y)
        with self._seeded():
            if not self.warm_start or not self.initialized_:
                self.initialize()
            NeuralNet.partial_fit(self, X, y, _routing_method="fit", **fit_params)
        return self

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        X, y = _as_arrays(X), _as_targets(y)
        if not self.initialized_:
            self._infer_module_dims(X, y)
        with self._seeded():
            return super().partial_fit(X, y, classes=classes, **fit_params)

    def infer(self, x, **fit_params):
        return super().infer(_cast_floats(x, self.module_), **fit_params)

    def forward_iter(self, X, training=False, device="cpu"):
        # DataLoader iterators draw a base seed from the global RNG even without
        # shuffling; isolate prediction from the caller's RNG stream.
        with torch.random.fork_rng(devices=[]):
            yield from super().forward_iter(_as_arrays(X), training=training, device=device)


def _missing_dim_params(module, given):
    if isinstance(module, torch.nn.Module):
        return set()
    try:
        signature = inspect.signature(module)
    except (TypeError, ValueError):
        return set()
    return {name for name in _DIM_PARAMS if name in signature.parameters} - set(given)


def _input_shape(X):
    """``(n_samples, ...)`` of an array or of a Dataset of ``(x, y)`` items (read from the first)."""
    if isinstance(X, torch.utils.data.Dataset) and not hasattr(X, "shape"):
        return (len(X), *np.shape(X[0][0]))
    return np.shape(X)


def _count_classes(y, classes):
    if classes is not None:
        return len(classes)
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        return int(y.max()) + 1 if y.size else 1
    return len(np.unique(y))


def _as_arrays(X):
    """pandas objects to numpy (skorch would turn a DataFrame into a dict of columns)."""
    if hasattr(X, "to_numpy") and not isinstance(X, torch.Tensor):
        X = X.to_numpy()
    if isinstance(X, np.ndarray) and not X.flags.writeable:
        # pandas hands out read-only views; torch wants writable memory
        X = X.copy()
    return X


def _as_targets(y):
    y = _as_arrays(y)
    if isinstance(y, np.ndarray) and np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64, copy=False)
    return y


def _cast_floats(x, module):
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
    if dtype is None:
        return x
    if isinstance(x, torch.Tensor):
        return x.to(dtype) if x.is_floating_point() and x.dtype != dtype else x
    if isinstance(x, dict):
        return {k: _cast_floats(v, module) for k, v in x.items()}
    return x


def make_classifier(
    hidden_layer_sizes=(50, 50),
    *,
    activation="relu",
    lr=1e-3,
    max_epochs=30,
    batch_size=128,
    weight_decay=4e-4,
    device="cpu",
    random_state=None,
    verbose=0,
    **kwargs,
):
    """A skorch classifier with the paper's training recipe.

    Adam with weight decay, PyTorch's ``OneCycleLR`` stepped every batch
    (peaking at ``lr``), mean cross-entropy on the logits of an
    :class:`~skggda.models.MLP`, shuffled batches of 128, all training data
    used for training (``train_split=None``). Paper settings (appendix B.1.2):

    ==========  ====================  =====  ======  ============
    model       hidden_layer_sizes    lr     epochs  weight_decay
    ==========  ====================  =====  ======  ============
    LR          ``()``                0.1    200     0
    ANN-S       ``(50, 50)``          1e-3   300     4e-4
    ANN-M       ``(200, 50)``         5e-4   400     4e-4
    MNIST MLP   ``(150, 150, 150)``   1e-3   50      0
    ==========  ====================  =====  ======  ============

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(50, 50)
        ``()`` gives logistic regression.
    activation : {"relu", "tanh", "gelu"}, default="relu"
    lr : float, default=1e-3
        Peak learning rate of the one-cycle schedule.
    max_epochs : int, default=30
    batch_size : int, default=128
    weight_decay : float, default=4e-4
    device : str, default="cpu"
        ``"cuda"`` trains on the GPU; attribution then runs there too.
    random_state : int, RandomState instance or None, default=None
        Makes training repeatable without touching the global torch RNG.
    verbose : int, default=0
        skorch's per-epoch log when positive.
    **kwargs
        Any other :class:`skorch.NeuralNetClassifier` parameter, e.g.
        ``module__dropout`` or ``callbacks``.

    Returns
    -------
    SeededNeuralNetClassifier

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.models import make_classifier
    >>> X = np.random.RandomState(0).normal(size=(500, 5)).astype("float32")
    >>> y = (X[:, 0] > 0).astype("int64")
    >>> net = make_classifier((8,), max_epochs=10, lr=3e-2, random_state=0).fit(X, y)
    >>> float((net.predict(X) == y).mean()) > 0.9
    True
    """
    return paper_recipe(
        MLP, module__hidden_layer_sizes=tuple(hidden_layer_sizes),
        module__activation=activation, lr=lr, max_epochs=max_epochs, batch_size=batch_size,
        weight_decay=weight_decay, device=device, random_state=random_state, verbose=verbose,
        **kwargs,
    )


def make_resnet_classifier(
    *,
    width=64,
    lr=1e-2,
    max_epochs=50,
    batch_size=512,
    weight_decay=0.0,
    device="cpu",
    random_state=None,
    verbose=0,
    **kwargs,
):
    """A skorch classifier training :class:`~skggda.models.ResNet18` with the paper's recipe.

    Adam with PyTorch's ``OneCycleLR`` peaking at ``lr`` (paper, appendix
    B.1.2: 0.01, 50 epochs, batches of 512, no weight decay). Inputs are
    images of shape ``(n, C, H, W)``; ``C`` and the number of classes come
    from the data.

    Parameters
    ----------
    width : int, default=64
        Channels of the first stage.
    lr, max_epochs, batch_size, weight_decay, device, random_state, verbose
        As for :func:`make_classifier`.
    **kwargs
        Other :class:`skorch.NeuralNetClassifier` parameters.

    Returns
    -------
    SeededNeuralNetClassifier

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.models import make_resnet_classifier
    >>> X = np.random.RandomState(0).normal(size=(16, 1, 8, 8)).astype("float32")
    >>> y = np.arange(16) % 2
    >>> net = make_resnet_classifier(width=4, max_epochs=1, random_state=0).fit(X, y)
    >>> net.predict_proba(X).shape
    (16, 2)
    """
    return paper_recipe(
        ResNet18, module__width=width, lr=lr, max_epochs=max_epochs, batch_size=batch_size,
        weight_decay=weight_decay, device=device, random_state=random_state, verbose=verbose,
        **kwargs,
    )


def paper_recipe(module, *, lr, max_epochs, batch_size, weight_decay, device, random_state,
                 verbose, **kwargs):
    """A :class:`SeededNeuralNetClassifier` training ``module`` the paper's way.

    Adam with weight decay, one-cycle learning rate stepped every batch,
    cross-entropy on logits, shuffled batches, all data used for training.
    Extra ``callbacks`` in ``kwargs`` run before the schedule.
    """
    callbacks = list(kwargs.pop("callbacks", None) or [])
    callbacks.append(("one_cycle", OneCycleSchedule()))
    return SeededNeuralNetClassifier(
        module=module,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        optimizer__weight_decay=weight_decay,
        lr=lr,
        max_epochs=max_epochs,
        batch_size=batch_size,
        train_split=None,
        iterator_train__shuffle=True,
        callbacks=callbacks,
        device=device,
        verbose=verbose,
        random_state=random_state,
        **kwargs,
    )
