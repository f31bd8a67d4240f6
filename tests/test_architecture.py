"""The package floors: a package imports only packages on its floor or below.

The imports are read from the source with ``ast``, at module level and
inside functions, relative (``from ..models import X``) and absolute
(``import skggda.models``), so an import moved into a function to dodge a
cycle still counts. doc/architecture.rst explains the floors.
"""

import ast
from pathlib import Path

import pytest

import skggda

ROOT = Path(skggda.__file__).parent

#: Each unit of the package (a subpackage, a top-level module, or ``skggda``
#: itself: the facade in ``skggda/__init__.py``) and its floor.
FLOORS = {
    "_engine": 0,
    "utils": 1,
    "datasets": 1,
    "models": 2,
    "properties": 3,
    "attribution": 4,
    "grouping": 4,
    "skggda": 5,
    "metrics": 5,
    "io": 5,
    "experiments": 6,
    "inspection": 6,
    "cli": 7,
    "__main__": 7,
}


def units_on_disk(root=ROOT):
    """The subpackages and top-level modules of ``root``, by name."""
    packages = {p.parent.name for p in root.glob("*/__init__.py")}
    modules = {p.stem for p in root.glob("*.py") if p.stem != "__init__"}
    return packages | modules


def module_name(path, root=ROOT):
    """``(dotted name, is_package)`` of a source file under ``root``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def unit_of(name, units):
    """The unit a dotted name under ``skggda`` belongs to (``skggda`` for the facade)."""
    parts = name.split(".")
    if len(parts) > 1 and parts[1] in units:
        return parts[1]
    return "skggda"


def imported_names(source, module, is_package):
    """``(line, dotted name)`` of every skggda import in ``source``, at any depth.

    ``from skggda import models`` names ``skggda.models``; ``from skggda
    import __version__`` names ``skggda.__version__`` (the facade).
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def import_edges(root=ROOT):
    """``(unit, imported unit, file, line)`` for every import across units."""
    units = units_on_disk(root)
    edges = []
    for path in sorted(root.rglob("*.py")):
        module, is_package = module_name(path, root)
        unit = unit_of(module, units)
        for line, name in imported_names(path.read_text(), module, is_package):
            if name.split(".")[0] != "skggda":
                continue
            target = unit_of(name, units)
            if target != unit:
                edges.append((unit, target, path.relative_to(root.parent), line))
    return edges


def cycles(edges):
    """The unit cycles of an import graph, each as the list of units along it."""
    graph = {}
    for unit, target, *_ in edges:
        graph.setdefault(unit, set()).add(target)
    found, state = [], {}

    def visit(unit, path):
        state[unit] = "open"
        for target in sorted(graph.get(unit, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[unit] = "done"

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [unit])
    return found


def test_every_unit_has_a_floor():
    assert units_on_disk() - FLOORS.keys() == set()


def test_no_unit_imports_a_higher_floor():
    violations = [f"{file}:{line}: {unit} (floor {FLOORS.get(unit)}) imports {target} "
                  f"(floor {FLOORS.get(target)})"
                  for unit, target, file, line in import_edges()
                  if FLOORS.get(target, float("inf")) > FLOORS.get(unit, -1)]
    assert violations == []


def test_no_package_cycle():
    assert cycles(import_edges()) == []


def test_utils_imports_only_the_engine():
    assert {target for unit, target, *_ in import_edges() if unit == "utils"} <= {"_engine"}


# the reader itself: the imports it must see, on a small package written to tmp_path

def write(root, relative, text):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def tiny_package(tmp_path):
    root = tmp_path / "skggda"
    write(root, "__init__.py", "from .attribution import A\n__version__ = '0'\n")
    write(root, "attribution/__init__.py", "from ._base import A\n")
    write(root, "attribution/_base.py", "class A:\n    pass\n")
    write(root, "models/__init__.py", "")
    write(root, "utils/__init__.py", "")
    write(root, "cli.py", "")
    return root


@pytest.mark.parametrize("source, expected", [
    ("from ..models import X\n", "models"),
    ("from ..models._resolve import fit_or_freeze\n", "models"),
    ("from .. import models\n", "models"),
    ("import skggda.models._resolve\n", "models"),
    ("from skggda.models import X\n", "models"),
    ("from skggda import cli\n", "cli"),
    ("from .. import __version__\n", "skggda"),
    ("def f():\n    from ..models import X\n", "models"),
    ("class C:\n    def f(self):\n        if True:\n            import skggda.models\n", "models"),
])
def test_reader_sees_every_import_form(tiny_package, source, expected):
    write(tiny_package, "utils/_helpers.py", source)
    assert [(u, t) for u, t, *_ in import_edges(tiny_package)
            if u == "utils"] == [("utils", expected)]


def test_reader_ignores_imports_within_a_unit_and_other_libraries(tiny_package):
    write(tiny_package, "models/_net.py", "import numpy\nfrom . import _x\nfrom ._y import z\n")
    assert [e[:2] for e in import_edges(tiny_package) if e[0] == "models"] == []


def test_cycle_is_found(tiny_package):
    write(tiny_package, "attribution/_base.py", "from ..models import X\n")
    write(tiny_package, "models/_net.py", "def f():\n    from ..attribution import A\n")
    assert cycles(import_edges(tiny_package)) == [["attribution", "models", "attribution"]]


# -- the public API (issue 21): what users call, at most 60 names ------------------------

PUBLIC_NAMESPACES = ["skggda", "skggda.attribution", "skggda.grouping", "skggda.metrics",
                     "skggda.models", "skggda.datasets", "skggda.inspection", "skggda.io",
                     "skggda.properties", "skggda.experiments", "skggda.utils"]


def public_objects():
    """Every object a public namespace exports (``__all__``), counted once however many
    namespaces re-export it; ``__version__`` is not an API name."""
    import importlib

    objects = {}
    for name in PUBLIC_NAMESPACES:
        module = importlib.import_module(name)
        for export in module.__all__:
            if export != "__version__":
                objects.setdefault(id(getattr(module, export)), f"{name}.{export}")
    return sorted(objects.values())


def test_public_api_has_at_most_60_names():
    names = public_objects()
    assert len(names) <= 60, f"{len(names)} public names: {names}"


def test_every_public_package_is_counted():
    packages = {p.name for p in ROOT.iterdir()
                if p.is_dir() and (p / "__init__.py").exists() and not p.name.startswith("_")}
    counted = {name.split(".")[1] for name in PUBLIC_NAMESPACES if "." in name}
    assert packages - {"cli"} <= counted, packages - counted
