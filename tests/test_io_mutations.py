"""Mutated files: whatever hypothesis does to a saved file's bytes or manifest, load
returns an estimator or raises UnsafeFileError, and nothing else (issue 19)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator

from skggda import RandomGrouper, TracInAttributor
from skggda.io import UnsafeFileError, load, save

from conftest import make_problem, tiny_net
from hostile import pack, unpack

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

NODE_KINDS = ["float", "list", "tuple", "set", "dict", "ref", "tensor", "array", "scalar",
              "torch_dtype", "type", "function", "random_state", "object", "net", "bogus"]


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A saved TracIn attributor with a net, its file's bytes, and its scores."""
    X, y, _, _ = make_problem(n=32, n_features=3, n_classes=3, seed=3)
    net = FrozenEstimator(tiny_net(hidden=(4,), epochs=1).fit(X, y))
    attr = TracInAttributor(net, grouper=RandomGrouper(group_size=4), random_state=0).fit(X, y)
    path = tmp_path_factory.mktemp("original") / "tracin.skggda"
    save(attr, path)
    return path.read_bytes(), X, y, attr.score_groups(X, y)


def load_bytes(data, folder):
    path = folder / "mutated.skggda"
    path.write_bytes(data)
    return load(path)


@settings(max_examples=150)
@given(st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1,
                max_size=4), st.sampled_from(["replace", "insert", "delete", "truncate"]))
def test_a_file_with_mutated_bytes_scores_as_before_or_is_refused(
        original, tmp_path, edits, how):
    data, X, y, scores = original
    data = bytearray(data)
    for position, value in edits:
        if not data:
            break
        position %= len(data)
        if how == "replace":
            data[position] = value
        elif how == "insert":
            data.insert(position, value)
        elif how == "delete":
            del data[position]
        else:
            del data[position:]
    try:
        loaded = load_bytes(bytes(data), tmp_path)
    except UnsafeFileError:
        return
    # only bytes nothing depends on changed (a ZIP timestamp): the very same scores
    np.testing.assert_array_equal(loaded.score_groups(X, y), scores)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8) | st.sampled_from(NODE_KINDS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["kind", "items", "type", "name", "id", "tensor", "dtype", "shape",
                         "state", "value", "params", "fitted"]), inner, max_size=4),
    max_leaves=8)


def places(node, found=None):
    """Every (container, key) in a JSON tree."""
    found = [] if found is None else found
    if isinstance(node, dict):
        for key, value in node.items():
            found.append((node, key))
            places(value, found)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.append((node, index))
            places(value, found)
    return found


@settings(max_examples=200)
@given(st.data())
def test_a_redigested_manifest_mutation_loads_or_is_refused_and_nothing_else(
        original, tmp_path, data):
    file_bytes, X, y, scores = original
    manifest, payload = unpack(file_bytes)
    spots = places(manifest["root"])
    container, key = spots[data.draw(st.integers(0, len(spots) - 1), label="place")]
    container[key] = data.draw(json_values, label="value")
    try:
        loaded = load_bytes(pack(manifest, payload), tmp_path)  # a consistent digest
    except UnsafeFileError:
        return
    assert isinstance(loaded, TracInAttributor)


@settings(max_examples=60)
@given(st.integers(0, 1 << 30), st.integers(1, 255))
def test_a_signed_file_with_any_mutated_byte_is_refused(original, tmp_path, position, flip):
    data, X, y, _ = original
    signed = tmp_path / "signed.skggda"
    save(load_bytes(data, tmp_path), signed, key=b"k")
    manifest, payload = unpack(signed.read_bytes())
    content = bytearray(payload)
    content[position % len(content)] ^= flip
    mutated = tmp_path / "mutated.skggda"
    mutated.write_bytes(pack(manifest, bytes(content)))  # re-digested, not re-signed
    with pytest.raises(UnsafeFileError, match="not signed with this key"):
        load(mutated, key=b"k")
