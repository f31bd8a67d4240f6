"""Shared docstring paragraphs of the properties, the data sets and the experiment reports."""

PROPERTY = """
.. output
output : torch.Tensor of shape (batch, ...)
    The net's outputs on a batch of evaluation samples.

.. y
y : torch.Tensor of shape (batch,)
    Their labels as class indices (a regressor's float targets).

.. loss_fn
loss_fn : callable
    The net's per-sample training loss, ``loss_fn(output, y) -> (batch,)``.

.. terms
terms : torch.Tensor of shape (batch,)
    The per-sample term ``h`` of every sample of the batch.

.. data
data : EvaluationData
    The evaluation data the property is computed on.

.. evaluation_data
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

.. weights
weights : ndarray of shape (n_samples,)
    The weight ``w_i`` of every evaluation sample's term.
"""

REPORT = """
.. records
records : list of GridRecord
    The grid's results, one per cell and seed (from :func:`run_grid`).

.. summary
summary : list of dict
    The output of :func:`summarize`.

.. folder
folder : str or path-like
    Folder the files are written to (created if missing).
"""

DATASET = """
.. data_home
data_home : str, path-like or None, default=None
    Data folder; see :func:`get_data_home` for the resolution order.

.. test_size
test_size : float, default=0.2
    Fraction of the samples held out for testing.

.. split_random_state
random_state : int, RandomState instance or None, default=0
    Controls the stratified split.
"""
