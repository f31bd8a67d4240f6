"""MNIST from the four standard IDX files."""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import Bunch, check_random_state

from ._home import _data_files

MNIST_FILES = {
    "train_images": "mnist/train-images-idx3-ubyte.gz",
    "train_labels": "mnist/train-labels-idx1-ubyte.gz",
    "test_images": "mnist/t10k-images-idx3-ubyte.gz",
    "test_labels": "mnist/t10k-labels-idx1-ubyte.gz",
}
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # IDX: uint8 data, 3 resp. 1 dimensions

MNIST_DESCR = """\
MNIST handwritten digits (LeCun, Cortes and Burges)
---------------------------------------------------
Source: the four standard IDX files under mnist/ in the data folder
(60,000 train / 10,000 test grey-scale images of 28 x 28 pixels).

Images are float32 in [0, 1] (pixel / 255), shape (n, 1, 28, 28), or
(n, 784) with flatten=True; labels are the digits 0-9 as int64. With n_train
or n_test, a seeded random subset is taken (stratified by digit when the
subset can hold every digit), kept in file order.
"""


def load_mnist(*, data_home=None, n_train=None, n_test=None, random_state=0, flatten=False):
    """Load MNIST from the four standard IDX files.

    Reads ``mnist/train-images-idx3-ubyte.gz``,
    ``mnist/train-labels-idx1-ubyte.gz``, ``mnist/t10k-images-idx3-ubyte.gz``
    and ``mnist/t10k-labels-idx1-ubyte.gz`` under the data folder, checking
    each header (magic number, counts, payload size).

    Parameters
    ----------
    data_home : str, path-like or None, default=None
        Data folder; see :func:`get_data_home` for the resolution order.
    n_train : int or None, default=None
        Number of training images to keep, drawn at random (stratified by
        digit when possible). ``None`` keeps all 60,000.
    n_test : int or None, default=None
        Same for the 10,000 test images.
    random_state : int, RandomState instance or None, default=0
        Controls the subsets.
    flatten : bool, default=False
        Return images of shape (n, 784) instead of (n, 1, 28, 28).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With ``X_train``, ``X_test`` (float32 in [0, 1]), ``y_train``,
        ``y_test`` (int64 digits 0-9), ``target_names`` (``["0", ..., "9"]``)
        and ``DESCR``. Subsets keep the order of the file.

    Raises
    ------
    FileNotFoundError
        If any of the four files is not in the data folder; the message
        gives the expected paths.
    ValueError
        If a file is not a valid IDX file (bad gzip stream, magic number,
        size), or image and label counts disagree.

    Examples
    --------
    >>> from skggda.datasets import load_mnist
    >>> data = load_mnist(n_train=1000, n_test=200, flatten=True)  # doctest: +SKIP
    >>> data.X_train.shape, data.y_test.shape  # doctest: +SKIP
    ((1000, 784), (200,))
    """
    paths = dict(zip(MNIST_FILES, _data_files(
        data_home, list(MNIST_FILES.values()), "MNIST", "the four MNIST IDX .gz files")))
    rng = check_random_state(random_state)
    data = Bunch(target_names=[str(d) for d in range(10)], DESCR=MNIST_DESCR)
    for part, n_keep in (("train", n_train), ("test", n_test)):
        images = _read_idx(paths[f"{part}_images"], _IMAGES_MAGIC)
        labels = _read_idx(paths[f"{part}_labels"], _LABELS_MAGIC)
        if len(images) != len(labels):
            raise ValueError(f"MNIST {part} files disagree: {len(images)} images in "
                             f"{paths[f'{part}_images']} but {len(labels)} labels in "
                             f"{paths[f'{part}_labels']}.")
        keep = _subset(labels, n_keep, rng, f"n_{part}")
        X = images[keep].astype(np.float32) / 255.0  # convert only what is kept
        data[f"X_{part}"] = X.reshape(len(X), -1) if flatten else X[:, None]
        data[f"y_{part}"] = labels[keep].astype(np.int64)
    return data


def _read_idx(path, magic):
    """uint8 array of an IDX file: (n, rows, cols) for images, (n,) for labels."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # not gzip, or truncated
        raise ValueError(f"{path} is not a readable gzip file: {exc}.") from None
    ndim = 3 if magic == _IMAGES_MAGIC else 1
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise ValueError(f"{path} is too short for an IDX header: {len(raw)} bytes.")
    found, *dims = struct.unpack(f">{1 + ndim}I", raw[:header])
    if found != magic:
        raise ValueError(f"{path} has IDX magic number {found}, expected {magic} "
                         f"({'images' if ndim == 3 else 'labels'}).")
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise ValueError(f"{path} holds {len(raw)} bytes, but its header {tuple(dims)} "
                         f"announces {expected}: the file is truncated or corrupt.")
    array = np.frombuffer(raw, np.uint8, offset=header).reshape(dims)
    if ndim == 1 and array.size and array.max() > 9:
        raise ValueError(f"{path} holds label {int(array.max())}; MNIST labels are 0-9.")
    return array


def _subset(y, n, rng, name):
    """Sorted indices of ``n`` rows of ``y``; all rows for ``None``.

    Stratified by class when every class fits on both sides of the cut,
    plain random otherwise (tiny subsets).
    """
    if n is None:
        return np.arange(len(y))
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(y):
        raise ValueError(f"{name} must be an int in [1, {len(y)}] or None, got {n!r}.")
    if n == len(y):
        return np.arange(len(y))
    counts = np.unique(y, return_counts=True)[1]
    feasible = counts.min() >= 2 and min(n, len(y) - n) >= len(counts)
    stratify = y if feasible else None
    keep, _ = train_test_split(np.arange(len(y)), train_size=int(n), stratify=stratify,
                               random_state=rng)
    return np.sort(keep)
