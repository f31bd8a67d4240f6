"""
Which patients drive a disease-progression model?
=================================================

scikit-learn's diabetes data: 442 patients, ten baseline measurements, and a
measure of disease progression one year later. Two regressors are
attributed:

* a :class:`~sklearn.linear_model.Ridge` fitted with scikit-learn and
  attributed as it is: skggda converts it to an equivalent torch module whose
  training objective includes Ridge's L2 penalty, and computes exact
  influence functions;
* a small neural net trained by skggda (:func:`~skggda.models.make_regressor`),
  attributed with TracIn.

Groups of eight similar patients (Gradient K-Means on the loss gradients)
are scored by their effect on the test error. Removing the most helpful
groups and retraining must raise the test RMSE more than removing as many
patients at random: that is the retraining score, with its random baseline.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.model_selection import train_test_split

from skggda import GradKMeansGrouper, InfluenceAttributor, TracInAttributor
from skggda.metrics import removal_score
from skggda.models import make_regressor

X, y = load_diabetes(return_X_y=True)
y = (y - y.mean()) / y.std()  # one target scale for both models
X, X_test, y, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

ridge = Ridge(alpha=0.1).fit(X, y)  # fitted by scikit-learn: attributed as it is
net = make_regressor((32,), max_epochs=40, lr=1e-2, batch_size=32, random_state=0)
attributors = {
    "Ridge, influence": InfluenceAttributor(
        ridge, solver="exact", grouper=GradKMeansGrouper(group_size=8, random_state=0)),
    "MLP, TracIn": TracInAttributor(
        net, grouper=GradKMeansGrouper(group_size=8, random_state=0), random_state=0),
}

# %%
# Remove the most helpful 5-30% of the patients, whole groups in score order,
# and retrain: the Ridge by scikit-learn itself, the net with its recipe.
fractions = [0.05, 0.1, 0.2, 0.3]
fig, ax = plt.subplots(figsize=(6, 4))
for name, attr in attributors.items():
    attr.fit(X, y)
    scores = attr.score_groups(X_test, y_test)
    result = removal_score(attr.estimator_, X, y, X_test, y_test, scores, attr.labels_,
                           most_important=True, fractions=fractions, n_seeds=1,
                           random_state=0)
    print(f"{name}\n{result.as_table()}\n")
    (line,) = ax.plot(100 * np.array(fractions), result.accuracy, "o-",
                      label=f"{name}: most helpful first")
    ax.plot(100 * np.array(fractions), result.random_accuracy, "--",
            color=line.get_color(), label=f"{name}: at random")
    ax.axhline(result.full_accuracy, color=line.get_color(), lw=0.5)
ax.set_xlabel("training patients removed (%)")
ax.set_ylabel("test RMSE after retraining")
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# The most helpful and most harmful groups of the Ridge model: their mean
# (standardised) progression and body-mass index, against the training mean.
attr = attributors["Ridge, influence"]
scores = attr.score_groups(X_test, y_test)
bmi = X[:, 2]
for title, group in [("most helpful", scores.argmax()), ("most harmful", scores.argmin())]:
    members = attr.labels_ == group
    print(f"{title}: score {scores[group]:+.4f}, {members.sum()} patients, "
          f"progression {y[members].mean():+.2f} (all: {y.mean():+.2f}), "
          f"bmi {bmi[members].mean():+.3f} (all: {bmi.mean():+.3f})")
plt.show()
