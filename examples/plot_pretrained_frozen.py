"""
Attributing a pretrained net
============================

A net trained elsewhere is passed as
:class:`~sklearn.frozen.FrozenEstimator`: the attributor uses it as is (no
retraining, and it survives ``clone``). Here influence functions with a
projected Fisher attribute the test loss of a pretrained digits classifier
to groups of its training data, and the most helpful and most harmful groups
are shown.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.frozen import FrozenEstimator

from skggda import GradKMeansGrouper, InfluenceAttributor
from skggda.datasets import load_tabular_fallback
from skggda.models import make_classifier

data = load_tabular_fallback("digits")
X, y, X_test, y_test = data.X_train, data.y_train, data.X_test, data.y_test
pretrained = make_classifier((64,), max_epochs=20, lr=1e-2, random_state=0).fit(X, y)
before = pretrained.predict_proba(X_test)

attr = InfluenceAttributor(FrozenEstimator(pretrained), grouper=GradKMeansGrouper(16),
                           n_components=128, random_state=0).fit(X, y)
scores = attr.score_groups(X_test, y_test)
assert np.array_equal(before, pretrained.predict_proba(X_test))  # not retrained

# %%
# The groups' images: averages of their members (the digits data is 8 x 8).
order = np.argsort(scores)
fig, axes = plt.subplots(2, 6, figsize=(9, 3.4))
for row, (title, picks) in enumerate([("most helpful", order[::-1][:6]),
                                      ("most harmful", order[:6])]):
    for ax, group in zip(axes[row], picks):
        members = attr.labels_ == group
        ax.imshow(X[members].mean(0).reshape(8, 8), cmap="gray_r")
        labels = np.bincount(y[members], minlength=10)
        ax.set_title(f"{scores[group]:+.3f}\nlabels {labels.argmax()}"
                     f"{'' if labels.max() == members.sum() else ' (mixed)'}", fontsize=8)
        ax.axis("off")
    axes[row, 0].text(-12, 4, title, rotation=90, va="center", fontsize=9)
fig.suptitle("Influence of groups of 16 training digits on the test loss")
fig.tight_layout()
plt.show()
