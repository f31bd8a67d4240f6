"""
Choosing the group size with GridSearchCV
=========================================

Group size trades attribution fidelity for cost. Because the grouper is a
parameter of the attributor, ``GridSearchCV`` sweeps it like any other
hyperparameter; a scorer from :mod:`skggda.metrics` judges each fitted
attributor on the validation fold. Here the retraining scorer removes the
10% most important training points, retrains, and reports how much
validation accuracy dropped: the larger the drop, the better the attribution
found what matters.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV

from skggda import GradKMeansGrouper, TracInAttributor
from skggda.datasets import load_tabular_fallback
from skggda.metrics import make_removal_scorer
from skggda.models import make_classifier

data = load_tabular_fallback("breast_cancer")
X, y = data.X_train, data.y_train
net = make_classifier((50, 50), max_epochs=30, lr=1e-2, random_state=0).fit(X, y)

search = GridSearchCV(
    TracInAttributor(FrozenEstimator(net), grouper=GradKMeansGrouper(random_state=0)),
    {"grouper__group_size": [2, 8, 32, 128]},
    scoring=make_removal_scorer(0.1, most_important=True, n_seeds=2),
    cv=3,
).fit(X, y)

# %%
# Fidelity (accuracy drop) against the attribution's own cost.
results = search.cv_results_
sizes = [p["grouper__group_size"] for p in results["params"]]
cost = np.asarray(results["mean_fit_time"])
fig, ax = plt.subplots(figsize=(6, 4))
ax.errorbar(cost, 100 * results["mean_test_score"], yerr=100 * results["std_test_score"],
            marker="o", capsize=3)
for size, c, s in zip(sizes, cost, results["mean_test_score"]):
    ax.annotate(f"groups of {size}", (c, 100 * s), textcoords="offset points", xytext=(4, 4))
ax.set(xlabel="fit time: grouping + attribution (s)",
       ylabel="validation accuracy drop (points)",
       title="Removing the top 10% by group score")
fig.tight_layout()
print("best group size:", search.best_params_["grouper__group_size"])
plt.show()
