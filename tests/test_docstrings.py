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
