"""
Dataset pruning with group attributions
=======================================

Remove the least important training points -- whole groups in score order --
retrain, and compare test accuracy with removing the same number of points
at random. Every removal result carries that random baseline and the
accuracy without removal: an order that does no better than random removal
is no evidence of a good attribution.

Attributions of a test loss tend to rank whole classes together, so a third
run prunes with ``stratify=True``: the same share of every class, each in its
groups' score order (its random baseline is stratified too).
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.frozen import FrozenEstimator

from skggda import GradKMeansGrouper, TracInAttributor
from skggda.datasets import load_tabular_fallback
from skggda.metrics import removal_score
from skggda.models import make_classifier

data = load_tabular_fallback("digits")
X, y, X_test, y_test = data.X_train, data.y_train, data.X_test, data.y_test
recipe = make_classifier((64,), max_epochs=15, lr=1e-2, random_state=0)
net = recipe.fit(X, y)

fractions = [0.25, 0.5, 0.75]
results = {}
for name, grouper in [("per point", None), ("Grad-K-Means, 32", GradKMeansGrouper(32))]:
    attr = TracInAttributor(FrozenEstimator(net), grouper=grouper, random_state=0).fit(X, y)
    scores = attr.score_groups(X_test, y_test)
    results[name] = removal_score(recipe, X, y, X_test, y_test, scores, attr.labels_,
                                  most_important=False, fractions=fractions, n_seeds=2,
                                  random_state=0)
    print(name)
    print(results[name].as_table())
    print("kept class shares at 50%:", np.round(results[name].kept_class_share[1], 2))
results["Grad-K-Means, 32, stratified"] = removal_score(
    recipe, X, y, X_test, y_test, scores, attr.labels_, most_important=False,
    fractions=fractions, stratify=True, n_seeds=2, random_state=0)
print(results["Grad-K-Means, 32, stratified"].as_table())

# %%
fig, ax = plt.subplots(figsize=(6, 4))
x = np.arange(len(fractions))
for offset, (name, result) in zip([-0.3, -0.1, 0.1], results.items()):
    ax.bar(x + offset, 100 * result.accuracy, 0.2, yerr=100 * result.accuracy_sem, label=name)
baseline = next(iter(results.values()))
ax.bar(x + 0.3, 100 * baseline.random_accuracy, 0.2, yerr=100 * baseline.random_accuracy_sem,
       label="random removal", color="grey")
stratified = results["Grad-K-Means, 32, stratified"]
ax.scatter(x + 0.1, 100 * stratified.random_accuracy, marker="_", s=300, color="k", zorder=3,
           label="stratified random removal")
ax.axhline(100 * baseline.full_accuracy, color="k", ls="--", lw=1, label="no removal")
ax.set(xticks=x, xticklabels=[f"{f:.0%}" for f in fractions], xlabel="training points removed",
       ylabel="test accuracy (%)", title="Pruning the least important points")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()
