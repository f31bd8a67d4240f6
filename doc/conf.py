"""Sphinx configuration for the skggda documentation."""

import os
import warnings

import skggda

project = "skggda"
author = "skggda developers"
copyright = "2026, skggda developers"
release = skggda.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# Offline builds: each project's inventory ships in _inventories (see the
# script there), listing the names these docs cite.
intersphinx_mapping = {
    name: (uri, os.path.join("_inventories", f"{name}.inv"))
    for name, uri in {
        "sklearn": "https://scikit-learn.org/stable",
        "numpy": "https://numpy.org/doc/stable",
        "torch": "https://docs.pytorch.org/docs/stable",
        "skorch": "https://skorch.readthedocs.io/en/stable",
    }.items()
}

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
}
# Examples read real data from SKGGDA_DATA when it is set, else fall back.
os.environ.setdefault("SKGGDA_DOCS_BUILD", "1")
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")

html_theme = "pydata_sphinx_theme"
html_theme_options = {"navigation_with_keys": False}
exclude_patterns = ["_build", "_inventories", "auto_examples/*.ipynb"]
templates_path = ["_templates"]
