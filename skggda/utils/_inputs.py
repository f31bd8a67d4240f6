"""Inputs as the attributed model takes them, when a Pipeline preprocesses them.

An estimator may be a :class:`~sklearn.pipeline.Pipeline` whose last step
is the attributed model: its other steps (the *preprocessor*) take the raw
data -- a DataFrame with strings or missing values, say -- and validate it
themselves, so the attributor only records its features
(``skip_check_array``); what the preprocessor outputs is checked as the
model's numeric input.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import check_array


def preprocessing_pipeline(estimator):
    """The Pipeline inside ``estimator`` (itself or frozen), if it has steps before the model."""
    model = estimator.estimator if isinstance(estimator, FrozenEstimator) else estimator
    return model if isinstance(model, Pipeline) and len(model.steps) > 1 else None


def raw_input_checks(preprocessed):
    """``validate_data`` keywords for the raw ``X``: a preprocessor validates its own input."""
    if preprocessed:
        return {"skip_check_array": True}
    return {"allow_nd": True, "dtype": np.float32}


def model_input(preprocessor, X):
    """``X`` through the fitted ``preprocessor`` (if any), as dense float32."""
    if preprocessor is None:
        return X
    X = preprocessor.transform(X)
    if sparse.issparse(X):
        X = X.toarray()  # the engine streams dense batches
    return check_array(X, allow_nd=True, dtype=np.float32)
