"""Property functions: what the attribution is about.

GGDA attributes a *property* ``g(theta)`` of the trained model to groups of
training data (paper section 3): the mean test loss (default), the loss on
one class, the mean margin, a smooth accuracy surrogate, a fairness gap
between two subgroups, a regressor's mean prediction, or any function of
the model. Margins, accuracies and class losses are defined for classifiers
only; attributors refuse them for regressors when they are fitted.

Every attributor takes ``property=`` (a name, a :class:`Property` or a
callable) and follows one sign convention: **a higher score means the group
helps the property** -- removing it is predicted to make the property worse
(a loss goes up, an accuracy goes down). Internally each property is turned
into a *badness* (the property itself when lower is better, its negative
otherwise), and a group's score is the predicted increase of the badness
when the group is removed.

Most properties are weighted sums of per-sample terms ``sum_i w_i h(x_i, y_i)``;
for those, :meth:`~skggda.TracInAttributor.attribute` gives one row per
evaluation sample (the row of sample ``i`` attributes ``h(x_i, y_i)``).
"""

from __future__ import annotations

import numpy as np
import torch

from ._engine import BatchedForward
from .models._loss import PerSampleLoss

#: Rows of the evaluation data on the device at a time in :func:`property_terms`.
_PROPERTY_BATCH = 4096

__all__ = [
    "ClassLoss",
    "FairnessGap",
    "Margin",
    "MeanLoss",
    "MeanPrediction",
    "Property",
    "SmoothAccuracy",
]


class EvaluationData:
    """What a property may look at besides the net's outputs.

    The four parameters are kept as attributes of the same names.

    Parameters
    ----------
    X : ndarray
        The evaluation inputs.
    y : ndarray
        Their labels, encoded as class indices (int); for a regressor, the
        float targets.
    classes : ndarray or None
        The original label of every class index; ``None`` for a regressor.
    losses : ndarray or None
        Per-sample losses, when the property asked for them
        (``needs_losses``).

    Examples
    --------
    The weights of a class loss read the labels and the classes:

    >>> import numpy as np
    >>> from skggda.properties import ClassLoss, EvaluationData
    >>> data = EvaluationData(np.zeros((4, 2)), np.array([0, 1, 1, 0]), np.array(["a", "b"]))
    >>> ClassLoss("b").weights(data).tolist()
    [0.0, 0.5, 0.5, 0.0]
    """

    def __init__(self, X, y, classes, losses=None):
        self.X, self.y, self.classes, self.losses = X, y, classes, losses


class Property:
    """A weighted sum of per-sample terms ``sum_i w_i h(output_i, y_i)``.

    Subclasses define :meth:`terms` (``h`` on a batch of net outputs and
    encoded labels, given the net's per-sample loss ``loss_fn``) and, when
    the weights are not ``1 / n``, :meth:`weights`. ``greater_is_better``
    says which way is good. (The built-in properties define the private
    ``_terms`` and ``_weights`` instead, so that :meth:`terms` and
    :meth:`weights` are documented once, here.)

    Examples
    --------
    >>> import torch
    >>> from skggda.properties import Property
    >>> class Confidence(Property):
    ...     greater_is_better = True
    ...     def terms(self, output, y, loss_fn):
    ...         return torch.softmax(output, 1).max(1).values
    >>> Confidence().sign
    -1.0
    """

    greater_is_better = False
    #: Whether one row per evaluation sample (``attribute``) is meaningful.
    per_sample = True
    #: Whether :meth:`weights` needs the per-sample losses on the evaluation data.
    needs_losses = False
    #: Whether the property is a function of the whole evaluation set (``value``)
    #: rather than a weighted sum of per-sample ``terms``.
    whole_data = False
    #: The models it is defined for: "classification", "regression" or both.
    tasks = frozenset({"classification", "regression"})

    def terms(self, output, y, loss_fn):
        """The per-sample terms ``h`` on a batch; subclasses define them.

        Parameters
        ----------
        output : torch.Tensor of shape (batch, ...)
            The net's outputs on a batch of evaluation samples.
        y : torch.Tensor of shape (batch,)
            Their labels as class indices (a regressor's float targets).
        loss_fn : callable
            The net's per-sample training loss, ``loss_fn(output, y) -> (batch,)``.

        Returns
        -------
        terms : torch.Tensor of shape (batch,)
            The per-sample term ``h`` of every sample of the batch.
        """
        return self._terms(output, y, loss_fn)

    def _terms(self, output, y, loss_fn):  # pragma: no cover - abstract
        raise NotImplementedError

    def weights(self, data: EvaluationData) -> np.ndarray:
        """The weights ``w_i`` of the terms (``1 / n``, a mean, unless the property
        weighs its samples otherwise).

        Parameters
        ----------
        data : EvaluationData
            The evaluation data the property is computed on.

        Returns
        -------
        weights : ndarray of shape (n_samples,)
            The weight ``w_i`` of every evaluation sample's term.
        """
        return self._weights(data)

    def _weights(self, data):
        return np.full(len(data.y), 1.0 / max(len(data.y), 1))

    @property
    def sign(self) -> float:
        """``+1`` when lower is better (badness = property), else ``-1``."""
        return -1.0 if self.greater_is_better else 1.0

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class MeanLoss(Property):
    """The mean of the net's training loss over the evaluation data (the default).

    Examples
    --------
    >>> from skggda.properties import MeanLoss
    >>> MeanLoss().greater_is_better
    False
    """

    def _terms(self, output, y, loss_fn):
        """The net's training loss of every sample."""
        return loss_fn(output, y)


class ClassLoss(MeanLoss):
    """The mean loss over the evaluation samples of one class.

    Parameters
    ----------
    label : object
        The class, as it appears in ``y``.

    Examples
    --------
    >>> from skggda.properties import ClassLoss
    >>> ClassLoss("Bad")
    ClassLoss(label='Bad')
    """

    tasks = frozenset({"classification"})

    def __init__(self, label):
        self.label = label

    def _weights(self, data):
        """``1 / n_label`` on the samples of class ``label``, 0 elsewhere."""
        mask = np.asarray(data.classes)[data.y] == self.label
        if not mask.any():
            raise ValueError(f"The evaluation data has no sample of class {self.label!r}.")
        return mask / mask.sum()


def _logits(output, loss_fn):
    """The class logits behind ``output`` (log-probabilities for ``NLLLoss`` nets)."""
    return loss_fn.logits(output) if hasattr(loss_fn, "logits") else output


def _margin(output, y):
    """TRAK's margin ``z_y - logsumexp_{c != y} z_c`` (= log p_y - log(1 - p_y))."""
    correct = output.gather(1, y[:, None]).squeeze(1)
    others = output.scatter(1, y[:, None], float("-inf"))
    return correct - torch.logsumexp(others, dim=1)


def _error_probability(output, y):
    """``1 - p_y`` computed without cancellation: ``exp(logsumexp_{c != y} z - logsumexp z)``."""
    others = output.scatter(1, y[:, None], float("-inf"))
    return torch.exp(torch.logsumexp(others, dim=1) - torch.logsumexp(output, dim=1))


def _prediction(output, y):
    """A regressor's prediction: the output, summed over the outputs of a multi-target model."""
    return output.reshape(output.shape[0], -1).sum(1)


class Margin(Property):
    """The mean classification margin ``log p_y - log(1 - p_y)`` (higher is better).

    Examples
    --------
    >>> import torch
    >>> from skggda.properties import Margin
    >>> float(Margin().terms(torch.tensor([[2.0, 0.0]]), torch.tensor([0]), None))
    2.0
    """

    greater_is_better = True
    tasks = frozenset({"classification"})

    def _terms(self, output, y, loss_fn):
        """Every sample's margin ``log p_y - log(1 - p_y)``."""
        return _margin(_logits(output, loss_fn), y)


class SmoothAccuracy(Property):
    """A differentiable accuracy: the mean of ``sigmoid(margin / temperature)``.

    As the temperature goes to 0 this tends to the accuracy.

    Parameters
    ----------
    temperature : float, default=1.0
        Scale of the margins before the sigmoid (positive): the lower, the
        closer to the accuracy and the steeper the surrogate.

    Examples
    --------
    >>> import torch
    >>> from skggda.properties import SmoothAccuracy
    >>> acc = SmoothAccuracy(temperature=0.01)
    >>> output, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    >>> float(acc.terms(output, y, None).mean())
    0.5
    """

    greater_is_better = True
    tasks = frozenset({"classification"})

    def __init__(self, temperature=1.0):
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        self.temperature = temperature

    def _terms(self, output, y, loss_fn):
        """``sigmoid(margin / temperature)`` of every sample."""
        return torch.sigmoid(_margin(_logits(output, loss_fn), y) / self.temperature)


class MeanPrediction(Property):
    """A regressor's mean prediction over the evaluation data.

    With the default ``greater_is_better=True`` a group scores high when it
    pushes the predictions up (removing it is predicted to lower them);
    pass ``False`` to attribute a quantity to keep low (a predicted cost).
    The prediction is the module's output (its sum over the outputs of a
    multi-target model).

    Parameters
    ----------
    greater_is_better : bool, default=True
        Orientation: ``True`` when higher predictions are good, ``False``
        for a quantity to keep low.

    Examples
    --------
    >>> import torch
    >>> from skggda.properties import MeanPrediction
    >>> MeanPrediction().terms(torch.tensor([[1.5], [2.5]]), None, None).tolist()
    [1.5, 2.5]
    """

    tasks = frozenset({"regression"})

    def __init__(self, greater_is_better=True):
        self.greater_is_better = greater_is_better

    def _terms(self, output, y, loss_fn):
        """Every sample's prediction."""
        return _prediction(output, y)


class FairnessGap(Property):
    """The absolute gap in mean loss between two subgroups of the evaluation data.

    ``|mean loss on A - mean loss on B|`` (lower is better): groups that help
    close the gap score high.

    Parameters
    ----------
    mask : array-like of bool, or callable
        Membership of subgroup A for every evaluation sample (B is the
        rest), or a function ``X -> mask`` evaluated on the data passed to
        ``score_groups``.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.properties import FairnessGap
    >>> gap = FairnessGap(mask=np.array([True, True, False, False]))
    >>> gap.per_sample
    False
    """

    per_sample = False
    needs_losses = True

    def __init__(self, mask):
        self.mask = mask

    def subgroup(self, data):
        """Membership of subgroup A, checked against the evaluation data.

        Parameters
        ----------
        data : EvaluationData
            The evaluation data; a callable ``mask`` is evaluated on its ``X``.

        Returns
        -------
        mask : ndarray of bool of shape (n_samples,)
            ``True`` for the samples of subgroup A.

        Raises
        ------
        ValueError
            When the mask's shape does not match the data or a subgroup is empty.
        """
        mask = self.mask(data.X) if callable(self.mask) else self.mask
        mask = np.asarray(mask, dtype=bool)
        n = len(data.y)
        if mask.shape != (n,):
            raise ValueError(
                f"FairnessGap mask has shape {mask.shape} but the evaluation data has "
                f"{n} samples."
            )
        if mask.all() or not mask.any():
            raise ValueError("FairnessGap needs evaluation samples in both subgroups.")
        return mask

    def _terms(self, output, y, loss_fn):
        """The net's training loss of every sample."""
        return loss_fn(output, y)

    def _weights(self, data):
        """``±1 / n_A`` on A, ``∓1 / n_B`` on B, signed as the gap is."""
        mask = self.subgroup(data)
        gap = data.losses[mask].mean() - data.losses[~mask].mean()
        direction = 1.0 if gap >= 0 else -1.0  # d|gap| = sign(gap) d(gap)
        return direction * np.where(mask, 1.0 / mask.sum(), -1.0 / (~mask).sum())


class _CallableProperty(Property):
    """A property given as ``fn(module, X, y) -> scalar tensor`` on the whole data."""

    per_sample = False
    whole_data = True

    def __init__(self, fn, greater_is_better=False):
        self.fn = fn
        self.greater_is_better = greater_is_better

    def value(self, module, X, y):
        return self.fn(module, X, y)

    def __repr__(self):
        name = getattr(self.fn, "__name__", repr(self.fn))
        return f"make_property({name}, greater_is_better={self.greater_is_better})"


def property_terms(prop, net, X, y_encoded, classes):
    """``(value, terms)`` of a property for a fitted skorch ``net`` on ``(X, y)``.

    ``value`` is the property itself (not the badness); ``terms`` the
    per-sample terms ``h`` (``None`` for whole-data properties).
    """
    module = net.module_
    device = next(module.parameters()).device
    dtype = next(module.parameters()).dtype
    X, y_encoded = np.asarray(X), np.asarray(y_encoded)
    loss_fn = PerSampleLoss(net.criterion_)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            if prop.whole_data:
                # the function reads the whole set on the device (its contract); the
                # module inside it runs _PROPERTY_BATCH rows at a time
                X_t = torch.as_tensor(X, device=device, dtype=dtype)
                y_t = torch.as_tensor(y_encoded, device=device)
                return float(prop.value(BatchedForward(module, _PROPERTY_BATCH), X_t, y_t)), None
            terms, losses = [], []
            # batch by batch: only one batch of X_test is on the device at a time
            for start in range(0, len(X), _PROPERTY_BATCH):
                X_t = torch.as_tensor(X[start:start + _PROPERTY_BATCH], device=device,
                                      dtype=dtype)
                y_t = torch.as_tensor(y_encoded[start:start + _PROPERTY_BATCH], device=device)
                output = module(X_t)
                terms.append(prop.terms(output, y_t, loss_fn).double())
                if prop.needs_losses:
                    losses.append(loss_fn(output, y_t).double())
            terms = torch.cat(terms).cpu().numpy()
            losses = torch.cat(losses).cpu().numpy() if prop.needs_losses else None
    finally:
        module.train(was_training)
    weights = prop.weights(EvaluationData(X, y_encoded, classes, losses))
    return float(weights @ terms), terms  # FairnessGap's weights carry the gap's sign


def make_property(fn, *, greater_is_better=False):
    """A property from a function of the model and the evaluation data.

    Parameters
    ----------
    fn : callable
        ``fn(module, X, y) -> scalar tensor``, differentiable in the module's
        parameters. ``X`` and ``y`` are the evaluation data as tensors on the
        module's device (the whole set at once; ``y`` holds class indices).
        ``module`` is the net's module behind a wrapper that runs each call
        a batch of rows at a time (the activations of the whole set are
        never held at once); it is an ``nn.Module`` with the same parameters
        and reads every other attribute from the net's module.
    greater_is_better : bool, default=False
        Orientation: ``False`` for losses and gaps, ``True`` for accuracies.

    Returns
    -------
    property : Property
        The property, for an attributor's ``property`` parameter; it is a
        function of the whole evaluation set (no per-sample rows).

    Examples
    --------
    >>> import torch.nn.functional as F
    >>> from skggda.properties import make_property
    >>> worst_loss = make_property(
    ...     lambda module, X, y: F.cross_entropy(module(X), y, reduction="none").max())
    >>> worst_loss.greater_is_better
    False
    """
    return _CallableProperty(fn, greater_is_better)


_NAMED = {"loss": MeanLoss, "margin": Margin, "accuracy": SmoothAccuracy,
          "prediction": MeanPrediction}


def resolve_property(spec) -> Property:
    """A :class:`Property` from an attributor's ``property`` parameter."""
    if isinstance(spec, Property):
        return spec
    if isinstance(spec, str):
        if spec not in _NAMED:
            raise ValueError(f"property={spec!r} is not one of {sorted(_NAMED)}.")
        return _NAMED[spec]()
    if callable(spec):
        return make_property(spec)
    raise TypeError(f"property must be a name, a Property or a callable, got {spec!r}.")


def check_property_task(spec, *, regression):
    """Refuse a property that is undefined for the model's task (``ValueError``)."""
    prop = resolve_property(spec)
    task = "regression" if regression else "classification"
    if task not in prop.tasks:
        names = sorted(name for name, cls in _NAMED.items() if task in cls.tasks)
        model = "a regressor" if regression else "a classifier"
        raise ValueError(
            f"property={spec!r} is defined for {' and '.join(sorted(prop.tasks))} only, but "
            f"the estimator is {model}; use one of {names}, a Property or a callable."
        )
