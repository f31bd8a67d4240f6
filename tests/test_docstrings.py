"""Every public name documents itself with a runnable example (numpydoc style)."""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC_MODULES = ["skggda", "skggda.models", "skggda.metrics", "skggda.properties",
                  "skggda.datasets", "skggda.experiments", "skggda.inspection", "skggda.io"]


def public_objects():
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                yield f"{module_name}.{name}", obj


@pytest.mark.parametrize("name,obj", list(public_objects()), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_public_docstring_has_parameters_and_examples(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert doc, f"{name} has no docstring"
    assert "Examples\n--------" in doc, f"{name} has no Examples section"
    assert ">>>" in doc, f"{name}'s Examples section has no doctest"


def documented_members(obj):
    """``obj`` and, for a class, the methods and properties it defines."""
    yield obj
    if inspect.isclass(obj):
        for member in vars(obj).values():
            if callable(member) or isinstance(member, property):
                yield member


@pytest.mark.parametrize("name,obj", list(public_objects()), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_no_unfilled_placeholder(name, obj):
    """Shared descriptions (``%(name)s``, see ``skggda.utils._docstrings``) are all filled."""
    for member in documented_members(obj):
        doc = getattr(member, "__doc__", None) or ""
        assert "%(" not in doc, f"{name}: unfilled placeholder in {member!r}'s docstring"


def test_fill_doc_indents_and_refuses_unknown_names():
    from skggda.utils._docstrings import fill_doc

    fill = fill_doc({"n_jobs": "Parallel jobs.\nMore lines."})

    @fill
    def f(n_jobs=None):
        """Summary, 5% of it.

        Parameters
        ----------
        n_jobs : int, default=None
            %(n_jobs)s
        """

    assert inspect.cleandoc(f.__doc__).endswith(
        "n_jobs : int, default=None\n    Parallel jobs.\n    More lines.")
    assert "5% of it" in f.__doc__
    with pytest.raises(KeyError, match="typo"):
        @fill
        def g():
            """%(typo)s"""
