"""Hostile files: every crafted file is refused at load with UnsafeFileError, and the
refusal starts no process, writes no file and takes bounded memory (issue 19).

The files are crafted from estimators skggda saved (tests/hostile.py lists the
attacks); each is loaded in a forked child under an address-space limit, watched by
an audit hook (tests/hostile_runner.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator

from sklearn.linear_model import LogisticRegression

from skggda import (InfluenceAttributor, KMeansGrouper, RandomGrouper, TracInAttributor,
                    TRAKAttributor)
from skggda.io import UnsafeFileError, load, save

from conftest import make_problem, tiny_net
from hostile import ATTACKS, pack, unpack

HERE = Path(__file__).resolve().parent
#: Resident memory a refusal may take beyond 10 times the file's size: the
#: allocator's granularity (a refusal of a sound-sized file measures 0-4 KiB).
SLACK = 1 << 20


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_problem(n=48, n_features=3, n_classes=3, seed=7)
    return X, y


@pytest.fixture(scope="module")
def bases(data, tmp_path_factory):
    """Sound files of the kinds the attacks start from: attributors of each family, a grouper."""
    X, y = data
    folder = tmp_path_factory.mktemp("bases")
    net = FrozenEstimator(tiny_net(hidden=(4,), epochs=2).fit(X, y))
    estimators = {
        "tracin": TracInAttributor(net, grouper=RandomGrouper(group_size=4), random_state=0),
        "kmeans": KMeansGrouper(n_groups=4, random_state=0),
        "ekfac": InfluenceAttributor(net, solver="ekfac", random_state=0),
        "ekfac-projected": InfluenceAttributor(net, solver="ekfac", n_components=16,
                                               projection="random", random_state=0),
        "trak": TRAKAttributor(tiny_net(hidden=(4,), epochs=1), n_models=2, n_components=4,
                               random_state=0),
        "converted": TracInAttributor(LogisticRegression(max_iter=50)),
    }
    paths = {}
    for kind, estimator in estimators.items():
        paths[kind] = folder / f"{kind}.skggda"
        save(estimator.fit(X, y), paths[kind])
    return paths


@pytest.fixture(scope="module")
def reports(bases, tmp_path_factory):
    """Every attack's file, loaded in a watched child: ``{name: report}``."""
    folder = tmp_path_factory.mktemp("hostile")
    paths = []
    for name, (kind, attack, _) in ATTACKS.items():
        manifest, payload = unpack(bases[kind].read_bytes())
        paths.append(folder / f"{name}.skggda")
        paths[-1].write_bytes(attack(manifest, payload))
    workdir = tmp_path_factory.mktemp("cwd")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
    warmups = ",".join(str(p) for p in bases.values())
    result = subprocess.run([sys.executable, str(HERE / "hostile_runner.py"), warmups,
                             *map(str, paths)], capture_output=True, text=True, env=env,
                            cwd=workdir, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(workdir.iterdir()) == []  # nothing written where the loads ran
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {Path(r["path"]).stem: r for r in lines}


def test_there_are_at_least_30_distinct_attacks():
    assert len(ATTACKS) >= 30


@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_hostile_file_is_refused_with_the_documented_error(reports, name):
    report = reports[name]
    assert report["error"] is not None, f"{name} loaded"
    assert report["unsafe_file_error"], f"{report['error']}: {report['message']}"
    assert re.search(ATTACKS[name][2], report["message"]), report["message"]


@pytest.mark.parametrize("name", list(ATTACKS))
def test_a_hostile_file_starts_nothing_writes_nothing_and_takes_little_memory(reports, name):
    report = reports[name]
    assert report["events"] == []
    assert report["peak"] <= 10 * report["size"] + SLACK, \
        f"{report['peak'] / 2**20:.1f} MiB for a {report['size'] / 2**10:.0f} KiB file"


# -- keys -------------------------------------------------------------------------------


@pytest.fixture
def signed(data, tmp_path):
    X, y = data
    path = tmp_path / "signed.skggda"
    save(KMeansGrouper(n_groups=3, random_state=0).fit(X), path, key=b"team secret")
    return path


def test_a_signed_file_round_trips_with_its_key(data, signed):
    X, _ = data
    loaded = load(signed, key=b"team secret")
    np.testing.assert_array_equal(loaded.predict(X), load(signed).predict(X))
    assert load(signed, key="team secret").n_groups_ == 3  # a str key is its UTF-8 bytes


def test_a_wrong_key_is_refused(signed):
    with pytest.raises(UnsafeFileError, match="not signed with this key"):
        load(signed, key=b"another secret")


def test_an_unsigned_file_is_refused_when_a_key_is_expected(data, tmp_path):
    X, _ = data
    save(KMeansGrouper(n_groups=3, random_state=0).fit(X), tmp_path / "plain.skggda")
    with pytest.raises(UnsafeFileError, match="not signed"):
        load(tmp_path / "plain.skggda", key=b"team secret")


def test_a_signed_file_edited_and_redigested_is_refused(signed):
    manifest, payload = unpack(signed.read_bytes())
    manifest["root"]["state"]["items"].append(["verbose", 3])
    signed.write_bytes(pack(manifest, payload))  # a consistent SHA-256, the old signature
    load(signed)  # the digest alone cannot tell
    with pytest.raises(UnsafeFileError, match="not signed with this key"):
        load(signed, key=b"team secret")


# -- what the caller may open -----------------------------------------------------------


def test_trusted_params_open_a_refused_parameter(data, bases, tmp_path):
    manifest, payload = unpack(bases["tracin"].read_bytes())
    from hostile import attribute, first

    attribute(first(manifest["root"], "net"), "iterator_valid__num_workers")[1] = 0
    path = tmp_path / "workers.skggda"
    path.write_bytes(pack(manifest, payload))
    with pytest.raises(UnsafeFileError, match="iterator_valid__num_workers"):
        load(path)
    loaded = load(path, trusted_params=["iterator_valid__num_workers"])
    assert loaded.estimator_.iterator_valid__num_workers == 0
    X, y = data
    np.testing.assert_array_equal(loaded.score_groups(X, y), load(bases["tracin"]).score_groups(X, y))


def test_a_missing_file_is_the_callers_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.skggda")


def test_devices_in_the_file_are_not_obeyed(data, bases, tmp_path):
    manifest, payload = unpack(bases["kmeans"].read_bytes())
    from hostile import attribute

    attribute(manifest["root"], "device")[1] = "cuda:7"
    path = tmp_path / "device.skggda"
    path.write_bytes(pack(manifest, payload))
    assert load(path).device == "cpu"
    assert load(path, device="meta").device == "meta"  # the caller's choice
