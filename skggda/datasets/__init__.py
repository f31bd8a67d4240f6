"""Data sets: the paper's real data from a local folder, and offline stand-ins.

The real data (FICO HELOC, MNIST, GLUE QNLI) are never shipped with skggda:
the loaders read them from a data folder (the ``data_home`` argument, else
the environment variable ``SKGGDA_DATA``, else ``~/skggda_data``) and say
which file they miss. The fallbacks need no file.
"""

from ._fallbacks import load_tabular_fallback
from ._heloc import load_heloc
from ._mnist import load_mnist
from ._qnli import load_qnli_dev

__all__ = [
    "load_heloc",
    "load_mnist",
    "load_qnli_dev",
    "load_tabular_fallback",
]
