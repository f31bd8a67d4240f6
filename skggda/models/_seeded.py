"""What the seeded skorch classifier and regressor share: seeding, input sizes, casts."""

from __future__ import annotations

import inspect
import threading
from contextlib import contextmanager
from numbers import Integral

import numpy as np
import torch
from skorch import NeuralNet

from ..utils._seeding import derive_seeds
from ._batch_loading import batch_loader, batchable_array, loader_options_supported

_DIM_PARAMS = ("n_features", "n_classes", "in_channels")
# torch's RNG is global to the process: seeded fits in concurrent threads
# (joblib's threading backend, Dask thread workers) would interleave their
# draws, so they take turns.
_SEEDED_FIT_LOCK = threading.RLock()


class SeededNetMixin:
    """``random_state``, inferred module sizes and dtype casts for a skorch net.

    Mixed in before a skorch net class. Subclasses say how targets are
    prepared for training (``_prepare_targets``) and how many outputs the
    module needs for them (``_count_outputs``, filled into ``n_classes``).

    Batches are read whole (:meth:`get_iterator`): one fancy index of the
    arrays per batch instead of skorch's one ``dataset[i]`` per row, with the
    same batches in the same order; ``_batch_loading = False`` (on the class
    or an instance) keeps skorch's per-row path.
    """

    #: Whether get_iterator may read whole batches (False: skorch's per-row path).
    _batch_loading = True

    def __init__(self, module, *, random_state=None, **kwargs):
        super().__init__(module, **kwargs)
        self.random_state = random_state

    @contextmanager
    def _seeded(self):
        if self.random_state is None:
            yield
            return
        seed = self.random_state
        if not isinstance(seed, Integral):
            seed = derive_seeds(seed)
        with _SEEDED_FIT_LOCK, torch.random.fork_rng(devices=None if self._on_cuda() else []):
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
            dims["n_classes"] = self._count_outputs(y)
        if "in_channels" in wanted and shape is not None and len(shape) == 4:
            dims["in_channels"] = int(shape[1])
        self.module_dims_ = dims

    def get_params_for(self, prefix):
        """skorch's parameters under ``prefix``, with the inferred module sizes.

        Parameters
        ----------
        prefix : str
            The component, e.g. ``"module"`` or ``"optimizer"``.

        Returns
        -------
        params : dict
            skorch's ``prefix__...`` parameters without the prefix; for
            ``"module"``, the sizes inferred from the training data fill in
            those not given; for the iterators of a net on CUDA,
            ``pin_memory=True`` unless given.
        """
        params = super().get_params_for(prefix)
        if prefix == "module":
            for key, value in getattr(self, "module_dims_", {}).items():
                params.setdefault(key, value)
        if prefix in ("iterator_train", "iterator_valid") and self._on_cuda():
            # batches collated in pinned memory copy to the GPU by DMA, without a
            # staging copy; unless the user said otherwise (iterator_*__pin_memory)
            params.setdefault("pin_memory", True)
        return params

    def get_iterator(self, dataset, training=False):
        """skorch's iterator over ``dataset``, reading each batch in one slice when it can.

        With torch's ``DataLoader`` as the iterator, no ``sampler``,
        ``batch_sampler`` or ``collate_fn`` option, and skorch's own
        ``Dataset`` (or a ``Subset`` of it) over numeric numpy arrays,
        memmaps, CPU tensors or a dict of them, the loader indexes the data
        once per batch with the batch's whole index list. Its ``BatchSampler``
        draws the rows from the same ``RandomSampler`` (same generator: the
        global torch RNG that ``random_state`` seeds, or
        ``iterator_*__generator``) as skorch's loader, so batches, their order
        and hence trained weights and predictions are identical to skorch's
        per-row path, which is taken for anything else.

        Parameters
        ----------
        dataset : torch Dataset
            Usually skorch's ``Dataset`` of the data, or its training or
            validation ``Subset``.
        training : bool, default=False
            Whether to use ``iterator_train`` (else ``iterator_valid``) and
            its options.

        Returns
        -------
        iterator : iterable
            The batches, each ``[X_batch, y_batch]`` of tensors.
        """
        if self._batch_loading:
            iterator, kwargs = self._iterator_options(training)
            kwargs.setdefault("batch_size", self.batch_size)
            if kwargs["batch_size"] == -1:
                kwargs["batch_size"] = len(dataset)
            loader = batch_loader(dataset, iterator, kwargs)
            if loader is not None:
                return loader
        return super().get_iterator(dataset, training=training)

    def _reads_batches(self, *training):
        """Whether the iterators of these passes may take the batched path (options only)."""
        return self._batch_loading and all(
            loader_options_supported(*self._iterator_options(train)) for train in training)

    def _iterator_options(self, training):
        """``(iterator class, its options)`` of the training or the validation pass."""
        if training:
            return self.iterator_train, self.get_params_for("iterator_train")
        return self.iterator_valid, self.get_params_for("iterator_valid")

    def _inputs(self, X, *training):
        # a memmap stays one when batches are sliced from it (a read-only one
        # would otherwise be copied whole into memory); skorch's per-row path
        # hands its rows to torch, which wants writable memory
        keep = isinstance(X, np.memmap) and batchable_array(X) and self._reads_batches(*training)
        return as_arrays(X, keep_memmap=keep)

    def _on_cuda(self):
        return str(self.device).startswith("cuda") and torch.cuda.is_available()

    def fit(self, X, y=None, **fit_params):
        """Initialise the net (unless warm-started) and train it, seeded.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...), dict or Dataset
            Inputs, as skorch takes them; pandas objects become numpy arrays.
        y : array-like of shape (n_samples,) or (n_samples, n_targets), default=None
            Targets (``None`` when ``X`` is a Dataset that holds them).
        **fit_params
            Passed on to skorch (e.g. to the module's ``forward``).

        Returns
        -------
        self : object
            The trained net.
        """
        X, y = self._training_data(X, y)
        self._infer_module_dims(X, y)
        with self._seeded():
            if not self.warm_start or not self.initialized_:
                self.initialize()
            NeuralNet.partial_fit(self, X, y, _routing_method="fit", **fit_params)
        return self

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """Train for ``max_epochs`` more epochs without re-initialising, seeded.

        The module, its optimizer and the history carry on from the last
        ``fit`` or ``partial_fit``, whatever ``warm_start`` says. Only a net
        not initialised yet is initialised first, with the module sizes
        inferred from this call's data; later calls keep those sizes.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...), dict or Dataset
            Inputs of these epochs, as skorch takes them (pandas objects
            become numpy arrays); their sizes must fit the module's.
        y : array-like of shape (n_samples,) or (n_samples, n_targets), default=None
            Targets of these epochs (``None`` when ``X`` is a Dataset that
            holds them).
        classes : array-like of shape (n_classes,), default=None
            Ignored (skorch's API); the classes come from ``y`` or from the
            net's ``classes`` parameter.
        **fit_params
            Passed on to skorch (e.g. to the module's ``forward``).

        Returns
        -------
        self : object
            The net, trained ``max_epochs`` epochs further.
        """
        X, y = self._training_data(X, y)
        if not self.initialized_:
            self._infer_module_dims(X, y)
        with self._seeded():
            return super().partial_fit(X, y, classes=classes, **fit_params)

    def infer(self, x, **fit_params):
        """The module's output on a batch, floating inputs cast to its dtype.

        Parameters
        ----------
        x : torch.Tensor or dict of torch.Tensor
            A batch of inputs.
        **fit_params
            Passed on to skorch (e.g. to the module's ``forward``).

        Returns
        -------
        output : torch.Tensor
            The module's output.
        """
        return super().infer(_cast_floats(x, self.module_), **fit_params)

    def forward_iter(self, X, training=False, device="cpu"):
        """Yield the module's output batch by batch, leaving the global RNG alone.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...), dict or Dataset
            Inputs, as skorch takes them; pandas objects become numpy arrays.
        training : bool, default=False
            Whether the module runs in training mode.
        device : str, default="cpu"
            Where the outputs are moved.

        Yields
        ------
        output : torch.Tensor
            The module's output on one batch.
        """
        # DataLoader iterators draw a base seed from the global RNG even without
        # shuffling; isolate prediction from the caller's RNG stream.
        with torch.random.fork_rng(devices=[]):
            yield from super().forward_iter(self._inputs(X, training), training=training,
                                            device=device)

    def _training_data(self, X, y):
        """``(X, y)`` of ``fit`` and ``partial_fit`` as their passes read them."""
        return self._inputs(X, *self._fit_passes()), self._prepare_targets(y)

    def _fit_passes(self):
        # training batches, and validation batches when part of the data is held out
        return (True,) if self.train_split is None else (True, False)

    def _prepare_targets(self, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def _count_outputs(self, y):  # pragma: no cover - abstract
        raise NotImplementedError


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


def as_arrays(X, keep_memmap=False):
    """pandas objects to numpy (skorch would turn a DataFrame into a dict of columns).

    Read-only arrays are copied (torch wants writable memory) unless
    ``keep_memmap`` and ``X`` is a memmap, whose batches are copied anyway.
    """
    if hasattr(X, "to_numpy") and not isinstance(X, torch.Tensor):
        X = X.to_numpy()
    if keep_memmap and isinstance(X, np.memmap):
        return X
    if isinstance(X, np.ndarray) and not X.flags.writeable:
        # pandas hands out read-only views; torch wants writable memory
        X = X.copy()
    return X


def _cast_floats(x, module):
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
    if dtype is None:
        return x
    if isinstance(x, torch.Tensor):
        return x.to(dtype) if x.is_floating_point() and x.dtype != dtype else x
    if isinstance(x, dict):
        return {k: _cast_floats(v, module) for k, v in x.items()}
    return x
