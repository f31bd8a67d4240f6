"""Shared parameter descriptions, filled into docstrings at import (MNE style).

Each public object still names every parameter in its own docstring (the
``name : type`` line is written out); only a long description that several
objects share word for word is written once, in a flat dict keyed by the
parameter's name, and the docstring holds ``%(name)s`` as that entry's body.
One entry a parameter, no nested templates: the source stays readable and a
description changes in one place.
"""

from __future__ import annotations

import re
import textwrap

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)%\((?P<name>\w+)\)s[ \t]*$", re.MULTILINE)


def fill_doc(descriptions):
    """A decorator that fills each ``%(name)s`` line of a docstring from ``descriptions``.

    A placeholder stands alone on its line; the description (a string whose
    lines are not indented) takes that line's indentation. An unknown name
    raises ``KeyError`` at import, so a typo cannot reach the rendered docs.

    Parameters
    ----------
    descriptions : dict of str to str
        The shared description of each parameter, by the parameter's name.

    Returns
    -------
    decorator : callable
        Fills the ``__doc__`` of the function or class it decorates and
        returns it.
    """
    def fill(match):
        body = textwrap.dedent(descriptions[match["name"]]).strip("\n")
        return textwrap.indent(body, match["indent"])

    def decorator(obj):
        if obj.__doc__:
            obj.__doc__ = _PLACEHOLDER.sub(fill, obj.__doc__)
        return obj

    return decorator
