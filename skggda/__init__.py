"""skggda: Generalized Group Data Attribution for scikit-learn and PyTorch.

Groupers partition the training set; attributors score each group's effect
on a model property (by default the mean test loss) at a cost that scales
with the number of groups. Group size 1 is classical per-point attribution.
"""

from .attribution import InfluenceAttributor, TracInAttributor, TRAKAttributor
from .grouping import GradKMeansGrouper, KMeansGrouper, RandomGrouper, ReprKMeansGrouper

__version__ = "0.1.0.dev0"

__all__ = [
    "GradKMeansGrouper",
    "InfluenceAttributor",
    "KMeansGrouper",
    "RandomGrouper",
    "ReprKMeansGrouper",
    "TRAKAttributor",
    "TracInAttributor",
    "__version__",
]
