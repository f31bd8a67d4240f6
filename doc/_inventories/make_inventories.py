"""Write the small intersphinx inventories the docs link through.

The build machines have no internet, so instead of fetching objects.inv
from scikit-learn, NumPy, PyTorch and skorch, the docs ship inventories that
list just the names they cite, with those projects' real URLs. Run this
script after citing a new external name:

    python doc/_inventories/make_inventories.py
"""

import zlib
from pathlib import Path

HERE = Path(__file__).parent

# project: (version, [(name, role, uri relative to the project's root)])
ENTRIES = {
    "sklearn": ("1.9", [
        ("sklearn.frozen.FrozenEstimator", "py:class",
         "modules/generated/sklearn.frozen.FrozenEstimator.html#$"),
        ("sklearn.model_selection.GridSearchCV", "py:class",
         "modules/generated/sklearn.model_selection.GridSearchCV.html#$"),
        ("sklearn.pipeline.Pipeline", "py:class",
         "modules/generated/sklearn.pipeline.Pipeline.html#$"),
        ("sklearn.cluster.KMeans", "py:class",
         "modules/generated/sklearn.cluster.KMeans.html#$"),
        ("sklearn.utils.Bunch", "py:class", "modules/generated/sklearn.utils.Bunch.html#$"),
        ("sklearn.model_selection.GroupKFold", "py:class",
         "modules/generated/sklearn.model_selection.GroupKFold.html#$"),
        # cited by the set_*_request methods scikit-learn generates
        ("metadata_routing", "std:label", "metadata_routing.html#metadata-routing"),
        ("meta-estimator", "std:term", "glossary.html#term-meta-estimator"),
    ]),
    "numpy": ("2.4", [
        ("numpy.ndarray", "py:class", "reference/generated/numpy.ndarray.html#$"),
    ]),
    "torch": ("2.13", [
        ("torch.nn.Module", "py:class", "generated/torch.nn.Module.html#$"),
        ("torch.random.fork_rng", "py:function", "random.html#$"),
        ("torch.optim.lr_scheduler.OneCycleLR", "py:class",
         "generated/torch.optim.lr_scheduler.OneCycleLR.html#$"),
    ]),
    "skorch": ("1.4", [
        ("skorch.NeuralNetClassifier", "py:class", "classifier.html#skorch.classifier.$"),
        ("skorch.classifier.NeuralNetClassifier", "py:class", "classifier.html#$"),
    ]),
}


def write(project, version, entries):
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(
        f"{name} {role} {-1 if role == 'std:label' else 1} {uri} "
        f"{'Metadata Routing' if role == 'std:label' else '-'}\n"
        for name, role, uri in entries
    )
    (HERE / f"{project}.inv").write_bytes(header.encode() + zlib.compress(body.encode()))


if __name__ == "__main__":
    for project, (version, entries) in ENTRIES.items():
        write(project, version, entries)
