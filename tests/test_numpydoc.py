"""Every public name documents each of its parameters, returns and attributes (numpydoc).

numpydoc's own validation runs over every name in the ``__all__`` of the
public modules and over the public methods and properties of the public
classes: those they define or inherit from skggda's own bases (what they
inherit from scikit-learn, skorch or torch is documented there). Each object
spells out its own parameters in its source (tests/test_docstring_consistency.py
keeps shared descriptions in step).
"""

from __future__ import annotations

import importlib
import inspect

import pytest
from numpydoc.docscrape import ClassDoc
from numpydoc.validate import validate

PUBLIC_MODULES = ["skggda", "skggda.models", "skggda.metrics", "skggda.datasets",
                  "skggda.properties", "skggda.experiments", "skggda.inspection",
                  "skggda.utils", "skggda.io"]

# PR01/PR02: parameters missing from or unknown to the docstring; PR04/PR07: an
# entry without a type or description; PR10: a malformed entry; RT01/RT03: no
# Returns section, or a return value without a description; GL08: no docstring.
CHECKED = {"PR01", "PR02", "PR04", "PR07", "PR10", "RT01", "RT03", "GL08"}


def _own_members(cls):
    """``(name, member)``: public methods and properties ``cls`` defines or inherits
    from skggda classes."""
    seen = set()
    for klass in cls.__mro__:
        if not klass.__module__.startswith("skggda"):
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(member, (classmethod, staticmethod)):
                member = member.__func__
            if inspect.isfunction(member) or isinstance(member, property):
                yield name, member


def public_objects():
    """``{dotted name: object}`` of the public API (constants are documented where
    they are defined)."""
    found = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                found[f"{module_name}.{name}"] = obj
            if inspect.isclass(obj):
                found.update((f"{module_name}.{name}.{member_name}", member)
                             for member_name, member in _own_members(obj))
    return found


PUBLIC = public_objects()


@pytest.mark.parametrize("name", list(PUBLIC))
def test_numpydoc_validation(name):
    errors = [f"{code}: {message}" for code, message in validate(name)["errors"]
              if code in CHECKED]
    assert not errors, f"{name}:\n" + "\n".join(errors)


@pytest.mark.parametrize("name", [name for name, obj in PUBLIC.items() if inspect.isclass(obj)])
def test_every_attribute_is_described(name):
    # only the Attributes the docstring lists, not the properties numpydoc adds
    doc = ClassDoc(PUBLIC[name], config={"show_class_members": False})
    bare = [entry.name for entry in doc["Attributes"] if not "".join(entry.desc).strip()]
    assert not bare, f"{name}: attributes without a description: {bare}"


@pytest.mark.parametrize("name", list(PUBLIC))
def test_no_template_placeholder_is_left(name):
    assert "%(" not in (PUBLIC[name].__doc__ or ""), f"{name} holds a template placeholder"
