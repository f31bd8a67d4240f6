"""Save and load fitted groupers and attributors without pickle.

Pickle and joblib files run code when they are loaded: load them only from
sources you trust. :func:`save` writes a file that :func:`load` reads back
without running anything from it: arrays and tensors are stored with
safetensors, everything else as JSON, and every class the file names must
be trusted -- skggda's own estimators, modules, callbacks and properties,
the scikit-learn models it converts (and scalers in a pipeline before
them), and the skorch and torch classes their recipes use are;
anything else only when the caller lists it in ``trusted=``, as skops does.
Beyond the names, what a file can make the code do is bounded too: a net's
recipe must be plain data (:mod:`._recipe`), sizes must be backed by the
file's bytes, and every refusal is an :class:`UnsafeFileError`. The user
guide's "Security model" says what is and is not guaranteed.

A loaded attributor scores exactly as the saved one (``score_groups`` and
``attribute`` give the same numbers).

File format, version 1
----------------------
A ZIP archive with two uncompressed entries, back to back from its first
byte to its central directory (nothing before, between or after them):

``manifest.json``
    ``{"format": "skggda", "version": 1, "skggda_version": ..., "sha256":
    ..., "root": node}``, plus ``"hmac_sha256"`` when saved with a key.
    ``sha256`` is the SHA-256 digest of the canonical JSON of ``root``
    (sorted keys, no spaces), a newline, and the bytes of
    ``tensors.safetensors``: a corruption check (anyone can recompute it).
    ``hmac_sha256`` is the HMAC-SHA256 of the same bytes under the key: an
    authenticity check.
``tensors.safetensors``
    Every numeric array and tensor, named ``t0``, ``t1``, ...

A node is a JSON scalar (``null``, booleans, integers, strings, finite
floats) or an object with a ``kind``: ``float`` (NaN and infinities),
``list`` / ``tuple`` / ``set`` / ``frozenset`` / ``dict`` (items),
``array`` (numeric: a tensor name and a NumPy dtype; strings: their UTF-32
code points as an int32 tensor with ``"codepoints": true``; objects:
items), ``tensor``, ``scalar`` (a NumPy scalar), ``torch_dtype``,
``random_state`` (a NumPy ``RandomState``), ``type`` and ``function`` (by
``module.qualname``), ``object`` (a class name and its attributes; for a
skorch callback, its parameters only), ``net`` (a
skorch net: class name and parameters -- the recipe that rebuilds its
module and criterion -- plus, when fitted, the module's ``state_dict``, its
``classes_inferred_`` / ``module_dims_``, train/eval mode and history, per
epoch: its per-batch entries are not saved) and
``ref`` (an object seen before, by its ``id``). A scikit-learn model
attributed through :class:`~skggda.models.ConvertedModel` is saved as the
scikit-learn model, whose torch equivalent is converted again on loading.

What is saved: the estimator's parameters and all its fitted attributes,
including the training data ``_X_fit`` / ``_y_fit`` that attributors keep
(TracIn without projection and the ``"cg"`` / ``"lissa"`` solvers make a
pass over it when scoring, and ``score_groups()`` without data scores on
it); training data that was streamed (a memmap, an h5py or zarr array, a
Dataset) is read into the file, and loads as an in-memory array. Not saved: the nets' optimizer state (a loaded net has a fresh
optimizer) and fitted state of callbacks (TracIn's checkpoints are saved
by the attributor itself). Properties given as a lambda or local function
cannot be saved; module-level functions are saved by name and must be
listed in ``trusted=`` when loading.
"""

from __future__ import annotations

import os
from os import PathLike

import torch

from ._build import Builder, check_root, named_types
from ._container import load_tensors, read, write
from ._encode import Encoder
from ._trust import UnsafeFileError, UntrustedTypesError, untrusted
from ._validate import check_loaded

# UntrustedTypesError (an UnsafeFileError that lists the names) is importable from here too
__all__ = ["UnsafeFileError", "get_untrusted_types", "load", "save"]


def save(estimator, path, *, key=None):
    """Write a skggda grouper or attributor to ``path`` in the safe format.

    Parameters
    ----------
    estimator : estimator
        A grouper or attributor of skggda, fitted or not.
    path : str or path-like
        Where to write the file (conventionally ``.skggda``); overwritten if
        it exists.
    key : bytes or str, default=None
        A secret shared by the people who may write files for each other.
        When given, the file is signed with HMAC-SHA256 under it, and
        ``load(path, key=key)`` accepts it only if it was signed with the
        same key and not changed since.

    Raises
    ------
    TypeError
        When the estimator holds something that cannot be saved without
        pickle (a lambda property, a torch module instance as a net's
        ``module``, an object of an unsupported kind); the message names it.

    See Also
    --------
    load : Read the file back.

    Examples
    --------
    A fitted grouper written to a file and read back:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from skggda import RandomGrouper
    >>> from skggda.io import load, save
    >>> grouper = RandomGrouper(group_size=2, random_state=0).fit(np.zeros((5, 1)))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     save(grouper, os.path.join(folder, "grouper.skggda"))
    ...     loaded = load(os.path.join(folder, "grouper.skggda"))
    >>> loaded.labels_.tolist() == grouper.labels_.tolist()
    True
    """
    from .. import __version__

    _check_skggda_estimator(estimator)
    encoder = Encoder()
    root = encoder.encode(estimator, type(estimator).__name__)
    write(path, root, encoder.tensors, __version__, key=key)


def load(path, trusted=None, *, key=None, trusted_params=None, device="cpu"):
    """Read an estimator written by :func:`save`, running no code from the file.

    The file is checked before anything is built: it must be one complete,
    unaltered archive (its SHA-256 digest matches; with ``key``, its
    HMAC-SHA256 signature too), name only trusted types, and describe its
    nets by a recipe of plain values. Declared sizes are checked against the
    bytes the file holds before memory is allocated (a net's module is first
    built on the ``meta`` device), and the loaded estimator must hold only
    values skggda could have saved. See the user guide's "Security model".

    Parameters
    ----------
    path : str or path-like
        The file.
    trusted : list of str, default=None
        Further names (``module.qualname``) the file may use: a user-defined
        module class, callback or property function. Only list names whose
        code you trust; :func:`get_untrusted_types` lists what a file needs.
    key : bytes or str, default=None
        The key the file was signed with (``save(..., key=key)``). When
        given, an unsigned file, or one signed with another key, is refused.
    trusted_params : list of str, default=None
        Net parameters to accept as the file states them although they can
        reach code, processes or files (``"compile"``,
        ``"iterator_train__num_workers"``, ``"callbacks"``, ...). Only for
        files whose author you trust.
    device : str, default="cpu"
        Where the loaded nets run (and the ``device`` of estimators that
        have one), whatever the file says.

    Returns
    -------
    estimator : estimator
        The estimator as it was saved.

    Raises
    ------
    UnsafeFileError
        A ``ValueError``: whatever is wrong with the file (not a skggda file,
        truncated, altered, wrong key, bytes before the archive, a recipe
        that reaches code, sizes the file does not hold, non-finite fitted
        values). No other exception escapes for any content of the file.
    UntrustedTypesError
        An :class:`UnsafeFileError`: the file names a type that is neither
        built in nor in ``trusted``.

    See Also
    --------
    save : Write the file.
    get_untrusted_types : What a file would need in ``trusted``.

    Examples
    --------
    An attributor, saved and loaded, scores as before (no pickle involved):

    >>> import os, tempfile
    >>> import numpy as np
    >>> from skggda import TracInAttributor
    >>> from skggda.io import load, save
    >>> from skggda.models import make_classifier
    >>> X = np.random.RandomState(0).normal(size=(40, 3)).astype("float32")
    >>> y = (X[:, 0] > 0).astype(int)
    >>> attr = TracInAttributor(make_classifier((4,), max_epochs=2), random_state=0).fit(X, y)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     save(attr, os.path.join(folder, "tracin.skggda"), key=b"team secret")
    ...     loaded = load(os.path.join(folder, "tracin.skggda"), key=b"team secret")
    >>> bool((loaded.score_groups(X, y) == attr.score_groups(X, y)).all())
    True
    """
    trusted = _checked_names(trusted, "trusted")
    trusted_params = _checked_names(trusted_params, "trusted_params") or ()
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {device!r}.")
    os.stat(path)  # a missing file is the caller's error (FileNotFoundError), not the file's
    try:
        root, payload = read(path, key)
        refused = untrusted(named_types(root), trusted)
        if refused:
            raise UntrustedTypesError(path, refused)
        check_root(root, trusted)
        builder = Builder(load_tensors(payload, path), trusted, trusted_params, str(device))
        estimator = builder.build(root)
        check_loaded(estimator)
    except UnsafeFileError:
        raise
    except Exception as exc:  # whatever the bytes: one documented error
        raise UnsafeFileError(f"{path} cannot be rebuilt: {type(exc).__name__}: "
                              f"{str(exc)[:300]}") from None
    return estimator


def get_untrusted_types(path):
    """The names in the file at ``path`` that :func:`load` would need in ``trusted``.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save`.

    Returns
    -------
    names : list of str
        Sorted ``module.qualname`` names; empty when the file loads as is.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from skggda import KMeansGrouper
    >>> from skggda.io import get_untrusted_types, save
    >>> grouper = KMeansGrouper(n_groups=2, random_state=0).fit(np.eye(4))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     save(grouper, os.path.join(folder, "kmeans.skggda"))
    ...     get_untrusted_types(os.path.join(folder, "kmeans.skggda"))
    []
    """
    root, _ = read(path)
    return untrusted(named_types(root))


def _checked_names(names, what):
    if names is None:
        return None
    if isinstance(names, (str, bytes, PathLike)) or not all(isinstance(t, str) for t in names):
        raise TypeError(f"{what} must be a list of names (str), got {names!r}.")
    return list(names)


def _check_skggda_estimator(estimator):
    from ..attribution import BaseAttributor
    from ..grouping import BaseGrouper

    if not isinstance(estimator, (BaseAttributor, BaseGrouper)):
        raise TypeError(f"skggda.io.save writes skggda groupers and attributors, got "
                        f"{type(estimator).__name__}.")
