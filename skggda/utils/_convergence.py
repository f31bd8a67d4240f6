"""The estimators' side of the engine's solver reports: scikit-learn's warning.

The engine knows no scikit-learn, so its iterative solvers return a
``Solution`` whose ``issues`` say why the estimate may be inaccurate; the
estimators report each issue as a :class:`~sklearn.exceptions.ConvergenceWarning`,
the type users filter on.
"""

from __future__ import annotations

import warnings

from sklearn.exceptions import ConvergenceWarning


def warn_unconverged(solution, *, stacklevel=3):
    """``solution.x``, after one ``ConvergenceWarning`` per issue in ``solution.issues``.

    Parameters
    ----------
    solution : skggda._engine.Solution
        What an engine solver returned.
    stacklevel : int, default=3
        As in :func:`warnings.warn`, counted from this function: 3 points the
        warning at the caller of the estimator method that solved.

    Returns
    -------
    x : torch.Tensor of shape (m, p)
        The estimate.
    """
    for issue in solution.issues:
        warnings.warn(issue, ConvergenceWarning, stacklevel=stacklevel)
    return solution.x
