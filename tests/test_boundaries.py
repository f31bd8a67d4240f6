"""Private boundaries: who may import what, and the one way to draw seeds."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import skggda
from skggda import RandomGrouper
from skggda._engine import Solution
from skggda.utils._convergence import warn_unconverged
from skggda.utils._seeding import SEED_MAX, derive_seeds, seeded_clone

PACKAGE = Path(skggda.__file__).parent


def imported_modules(path):
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module[:-9]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            name = ".".join(part for part in (base, node.module) if part)
            yield name
            yield from (f"{name}.{alias.name}" for alias in node.names)


def test_the_engine_imports_no_scikit_learn():
    for path in (PACKAGE / "_engine").glob("*.py"):
        assert not [m for m in imported_modules(path) if m.split(".")[0] == "sklearn"], path


def test_other_packages_reach_the_engine_through_its_exports():
    for path in PACKAGE.rglob("*.py"):
        if "_engine" in path.parts:
            continue
        deep = [m for m in imported_modules(path) if m.startswith("skggda._engine._")]
        assert not deep, f"{path} imports {deep}"


def test_one_module_defines_the_seed_bound():
    defining = [path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
                if "SEED_MAX =" in path.read_text()]
    assert defining == ["utils/_seeding.py"]


def test_derive_seeds_continues_the_random_state_stream():
    rng = np.random.RandomState(5)
    first, second = derive_seeds(rng, 3), derive_seeds(rng)
    expected = np.random.RandomState(5).randint(SEED_MAX, size=4)
    np.testing.assert_array_equal(np.append(first, second), expected)
    assert isinstance(second, int)


def test_seeded_clone_keeps_the_users_seed_unless_told_to_override():
    assert seeded_clone(RandomGrouper(), 7).random_state == 7
    assert seeded_clone(RandomGrouper(random_state=1), 7).random_state == 1
    assert seeded_clone(RandomGrouper(random_state=1), 7, override=True).random_state == 7


def test_seeded_clone_fills_only_unset_parameters_it_has():
    grouper = RandomGrouper(group_size=5)
    twin = seeded_clone(grouper, 3, n_groups=2, estimator="ignored: no such parameter")
    assert (twin.n_groups, twin.group_size, twin is grouper) == (2, 5, False)
    assert seeded_clone(RandomGrouper(n_groups=4), 3, n_groups=2).n_groups == 4


def test_solver_issues_become_convergence_warnings():
    x = np.zeros((1, 2))
    with pytest.warns(ConvergenceWarning, match="diverged"):
        assert warn_unconverged(Solution(x, ("LiSSA diverged.",))) is x
