"""skggda: Generalized Group Data Attribution for scikit-learn and PyTorch.

Groupers partition the training set; attributors score each group's effect
on a model property (by default the mean test loss) at a cost that scales
with the number of groups. Group size 1 is classical per-point attribution.
"""

from .attribution import TracInAttributor
from .grouping import GradKMeansGrouper, KMeansGrouper, RandomGrouper, ReprKMeansGrouper

__version__ = "0.1.0.dev0"

__all__ = [
    "GradKMeansGrouper",
    "KMeansGrouper",
    "RandomGrouper",
    "ReprKMeansGrouper",
    "TracInAttributor",
    "__version__",
]
