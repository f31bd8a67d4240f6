"""Shared docstring paragraphs, substituted into the public docstrings at import.

A parameter or attribute that several public objects share is described
once, here, instead of in copy-paste twins that drift apart. A docstring
names a paragraph with a line that holds only ``%(key)s``; :func:`fill_doc`
replaces that line by the paragraph, indented as the line was. A paragraph
is a whole numpydoc entry (``name : type`` and its description), a
description line to put under an entry the docstring writes itself (where
defaults differ), or several entries joined (a "block", so that docstrings
listing the same entries do not repeat the same run of placeholder lines).

Only whole lines are substituted, so a ``%`` anywhere else needs no escaping,
and an unknown key raises ``KeyError`` at import time. Nothing is imported
from the rest of skggda: every module may use this one.

The paragraphs live in :mod:`._doc_paragraphs`, one dictionary per family.
"""

from __future__ import annotations

import inspect
import re
from textwrap import indent

from ._doc_paragraphs import PARAGRAPHS

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)%\((?P<key>[\w.]+)\)s[ \t]*$", re.MULTILINE)


def fill_doc(obj):
    """Substitute the shared paragraphs into ``obj``'s docstring; a decorator.

    For a class, the docstrings of the methods and properties it defines
    itself are filled too.

    Parameters
    ----------
    obj : function or class
        Whose docstring holds ``%(key)s`` lines.

    Returns
    -------
    obj : function or class
        The same object, its docstrings filled in.
    """
    obj.__doc__ = fill(obj.__doc__)
    if isinstance(obj, type):
        for member in vars(obj).values():
            if isinstance(member, (classmethod, staticmethod)):
                member = member.__func__
            if inspect.isfunction(member) or isinstance(member, property):
                member.__doc__ = fill(member.__doc__)
    return obj


def fill(doc):
    """``doc`` with every ``%(key)s`` line replaced by its paragraph (``None`` stays).

    Parameters
    ----------
    doc : str or None
        A docstring (``None`` under ``python -OO``).

    Returns
    -------
    doc : str or None
        The filled docstring.
    """
    if doc is None:
        return None
    return _PLACEHOLDER.sub(lambda match: indent(PARAGRAPHS[match["key"]], match["indent"]),
                            doc)
