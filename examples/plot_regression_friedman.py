"""
Finding corrupted targets in a larger regression problem
========================================================

Friedman's synthetic regression benchmark (:func:`~sklearn.datasets.make_friedman1`)
with 2,000 training points, 10% of whose targets were recorded one standard
deviation too high -- a systematic error, like a unit mix-up in part of the
data (:func:`~skggda.metrics.corrupt_targets`). A net trained on them is
attributed with TracIn: groups that raise the clean test error score lowest,
and inspecting points in order of increasing score finds the corrupted ones
early. Gradient K-Means groups keep that ability as they grow; random groups
lose it.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_friedman1
from sklearn.frozen import FrozenEstimator

from skggda import GradKMeansGrouper, RandomGrouper, TracInAttributor
from skggda.metrics import corrupt_targets, detection_curve, noisy_label_auc
from skggda.models import make_regressor

X, y = make_friedman1(n_samples=2500, noise=0.5, random_state=0)
X = X.astype(np.float32)
X, X_test, y, y_test = X[:2000], X[2000:], y[:2000], y[2000:]
y_noisy, corrupted = corrupt_targets(y, 0.1, scale=1.0, direction="up", random_state=0)

# %%
# Train once, then attribute the clean test loss with several groupings of
# the frozen net.
net = make_regressor((64, 64), max_epochs=40, lr=1e-2, random_state=0).fit(X, y_noisy)

fig, (curves, summary) = plt.subplots(1, 2, figsize=(11, 4))
group_sizes = [1, 4, 16, 64]
for name, grouper_class in [("Grad-K-Means", GradKMeansGrouper), ("random", RandomGrouper)]:
    aucs = []
    for size in group_sizes:
        grouper = None if size == 1 else grouper_class(group_size=size, random_state=0)
        attr = TracInAttributor(FrozenEstimator(net), grouper=grouper).fit(X, y_noisy)
        scores = attr.score_groups(X_test, y_test)
        aucs.append(noisy_label_auc(scores, attr.labels_, corrupted))
        if size == 16:
            curves.plot(*detection_curve(scores, attr.labels_, corrupted),
                        label=f"{name}, groups of 16")
    summary.plot(group_sizes, aucs, "o-", label=name)
    print(name, dict(zip(group_sizes, np.round(aucs, 3))))
curves.plot([0, 1], [0, 1], "k:", label="random order")
curves.set_xlabel("fraction of training points inspected")
curves.set_ylabel("fraction of corrupted targets found")
curves.legend(fontsize=8)
summary.axhline(0.5, color="k", ls=":", label="random order")
summary.set_xscale("log", base=2)
summary.set_xlabel("group size")
summary.set_ylabel("detection AUC")
summary.legend(fontsize=8)
fig.tight_layout()
plt.show()
