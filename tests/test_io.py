"""skggda.io: a pickle-free file that scores exactly as the saved estimator, and refuses
untrusted types and damaged files before building anything."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from skggda import (GradKMeansGrouper, InfluenceAttributor, KMeansGrouper, RandomGrouper,
                    ReprKMeansGrouper, TracInAttributor, TRAKAttributor)
from skggda.io import UntrustedTypesError, get_untrusted_types, load, save
from skggda.io._container import digest
from skggda.models import SeededNeuralNetClassifier, make_regressor
from skggda.properties import ClassLoss, FairnessGap

from conftest import deep_state, make_problem, tiny_net

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data():
    X, y, _, _ = make_problem(n=48, n_features=3, n_classes=3, seed=7)
    X_test, y_test, _, _ = make_problem(n=12, n_features=3, n_classes=3, seed=8)
    return X, y, X_test, y_test


@pytest.fixture(scope="module")
def frozen(data):
    X, y, _, _ = data
    return FrozenEstimator(tiny_net(hidden=(4,), epochs=2).fit(X, y))


def round_trip(estimator, tmp_path, **load_params):
    path = tmp_path / "estimator.skggda"
    save(estimator, path)
    return load(path, **load_params)


def per_point_mean_loss(module, X, y):
    """A module-level property function: saved by name, loaded only when trusted."""
    return nn.functional.cross_entropy(module(X), y)


ATTRIBUTORS = {
    "tracin": lambda net: TracInAttributor(net, grouper=RandomGrouper(group_size=4),
                                           random_state=0),
    "tracin-projected-checkpoints": lambda net: TracInAttributor(
        tiny_net(hidden=(4,), epochs=2), checkpoints="all", n_components=6,
        random_state=np.random.RandomState(1)),
    "tracin-grad-kmeans": lambda net: TracInAttributor(
        net, grouper=GradKMeansGrouper(n_groups=5), random_state=0),
    "influence-fisher": lambda net: InfluenceAttributor(net, n_components=6,
                                                        property=ClassLoss(2), random_state=0),
    "influence-exact": lambda net: InfluenceAttributor(net, solver="exact"),
    "influence-ekfac": lambda net: InfluenceAttributor(net, solver="ekfac", random_state=0),
    "influence-cg": lambda net: InfluenceAttributor(net, solver="cg", damping=1.0),
    "influence-lissa": lambda net: InfluenceAttributor(net, solver="lissa", lissa_depth=4,
                                                       lissa_repeat=1, random_state=0),
    "trak": lambda net: TRAKAttributor(net, n_models=2, n_components=6, property="margin",
                                       random_state=0),
}


@pytest.mark.parametrize("make", ATTRIBUTORS.values(), ids=ATTRIBUTORS.keys())
def test_loaded_attributor_scores_exactly_as_the_saved_one(data, frozen, tmp_path, make):
    X, y, X_test, y_test = data
    attr = make(frozen).fit(X, y)
    loaded = round_trip(attr, tmp_path)
    assert type(loaded) is type(attr)
    np.testing.assert_array_equal(loaded.labels_, attr.labels_)
    np.testing.assert_array_equal(loaded.score_groups(X_test, y_test),
                                  attr.score_groups(X_test, y_test))
    np.testing.assert_array_equal(loaded.score_groups(), attr.score_groups())
    np.testing.assert_array_equal(loaded.attribute(X_test, y_test),
                                  attr.attribute(X_test, y_test))


SCIKIT_LEARN_AND_REGRESSION = {
    "logistic-regression": (lambda: TracInAttributor(LogisticRegression()), "classes"),
    "pipeline": (lambda: InfluenceAttributor(
        make_pipeline(StandardScaler(), LogisticRegression()), solver="exact"), "classes"),
    "mlp-classifier": (lambda: TRAKAttributor(MLPClassifier((3,), max_iter=30, random_state=0),
                                              n_models=2, random_state=0), "classes"),
    "ridge": (lambda: InfluenceAttributor(Ridge(), solver="exact"), "values"),
    "skorch-regressor": (lambda: TracInAttributor(make_regressor((3,), max_epochs=2),
                                                  random_state=0), "values"),
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("make,targets", SCIKIT_LEARN_AND_REGRESSION.values(),
                         ids=SCIKIT_LEARN_AND_REGRESSION.keys())
def test_scikit_learn_models_and_regressors_round_trip(data, tmp_path, make, targets):
    X, y, X_test, y_test = data
    if targets == "values":  # a regression target
        y, y_test = X[:, 0] * 2.0 + 0.5, X_test[:, 0] * 2.0 + 0.5
    attr = make().fit(X, y)
    loaded = round_trip(attr, tmp_path)
    # converted models compute in float64, where BLAS reductions can differ in the
    # last bit from one call to the next (memory alignment), even on one object
    np.testing.assert_allclose(loaded.score_groups(X_test, y_test),
                               attr.score_groups(X_test, y_test), rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(loaded.estimator_.predict(X_test),
                                  attr.estimator_.predict(X_test))


GROUPERS = [
    lambda net: RandomGrouper(group_size=5, random_state=0),
    lambda net: KMeansGrouper(n_groups=4, random_state=0),
    lambda net: ReprKMeansGrouper(n_groups=4, estimator=net, random_state=0),
    lambda net: GradKMeansGrouper(n_groups=4, estimator=tiny_net(hidden=(4,), epochs=1),
                                  random_state=0),
]


@pytest.mark.parametrize("make", GROUPERS, ids=["random", "kmeans", "repr", "grad"])
def test_loaded_grouper_is_the_saved_one(data, frozen, tmp_path, make):
    X, y, X_test, y_test = data
    grouper = make(frozen).fit(X, y)
    loaded = round_trip(grouper, tmp_path)
    np.testing.assert_array_equal(loaded.labels_, grouper.labels_)
    assert loaded.get_params().keys() == grouper.get_params().keys()
    if hasattr(grouper, "transform"):
        np.testing.assert_array_equal(loaded.transform(X_test, y_test),
                                      grouper.transform(X_test, y_test))
        np.testing.assert_array_equal(loaded.predict(X_test), grouper.predict(X_test))


def test_kmeans_assignment_index_round_trips(tmp_path):
    # enough groups for the approximate nearest-center index, which has state of its own
    X = np.random.RandomState(0).normal(size=(300, 3)).astype(np.float32)
    grouper = KMeansGrouper(n_groups=270, random_state=0).fit(X)
    assert grouper._index_state is not None
    loaded = round_trip(grouper, tmp_path)
    np.testing.assert_array_equal(loaded.predict(X), grouper.predict(X))


def test_unfitted_estimators_round_trip(tmp_path):
    attr = TRAKAttributor(tiny_net(), grouper=KMeansGrouper(group_size=8), n_models=3)
    assert deep_state(round_trip(attr, tmp_path)) == deep_state(attr)


def test_odd_group_labels_round_trip(data, frozen, tmp_path):
    X, y, _, _ = data
    groups = np.empty(len(y), dtype=object)
    groups[:] = [("a", 1), "b", -3, 2.5][:1] * 12 + ["b"] * 12 + [-3] * 12 + [2.5] * 12
    attr = TracInAttributor(frozen).fit(X, y.astype(str), groups=groups)
    loaded = round_trip(attr, tmp_path)
    assert list(loaded.groups_) == list(attr.groups_)
    np.testing.assert_array_equal(loaded.classes_, attr.classes_)


def test_a_shared_net_stays_shared(data, tmp_path):
    X, y, _, _ = data
    attr = TracInAttributor(tiny_net(hidden=(4,), epochs=1),
                            grouper=ReprKMeansGrouper(n_groups=3, random_state=0)).fit(X, y)
    loaded = round_trip(attr, tmp_path)
    assert loaded.grouper_.estimator_ is loaded.estimator_


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_module_dtype_is_kept(data, frozen, tmp_path, dtype):
    X, y, X_test, y_test = data
    net = copy.deepcopy(frozen.estimator)
    net.module_.to(dtype)
    attr = TracInAttributor(FrozenEstimator(net)).fit(X, y)
    loaded = round_trip(attr, tmp_path)
    assert next(loaded.estimator_.module_.parameters()).dtype == dtype
    np.testing.assert_array_equal(loaded.score_groups(X_test, y_test),
                                  attr.score_groups(X_test, y_test))


def test_loading_leaves_the_global_torch_rng_alone(data, frozen, tmp_path):
    X, y, _, _ = data
    path = tmp_path / "tracin.skggda"
    save(TracInAttributor(frozen).fit(X, y), path)
    state = torch.random.get_rng_state()
    load(path)
    assert torch.equal(torch.random.get_rng_state(), state)


# -- what cannot be saved ------------------------------------------------------------


def test_a_lambda_property_is_refused_at_save(data, frozen, tmp_path):
    X, y, _, _ = data
    attr = TracInAttributor(frozen, property=lambda module, X, y: module(X).sum()).fit(X, y)
    with pytest.raises(TypeError, match="TracInAttributor.property=<function .*lambda.*>: a "
                                        "lambda or local function cannot be saved"):
        save(attr, tmp_path / "attr.skggda")
    assert not (tmp_path / "attr.skggda").exists()


def test_a_lambda_mask_is_refused_at_save(tmp_path):
    attr = TracInAttributor(property=FairnessGap(mask=lambda X: X[:, 0] > 0))
    with pytest.raises(TypeError, match=r"TracInAttributor.property.mask=<function"):
        save(attr, tmp_path / "attr.skggda")


def test_a_function_property_needs_trust(data, frozen, tmp_path):
    X, y, X_test, y_test = data
    attr = TracInAttributor(frozen, property=per_point_mean_loss).fit(X, y)
    path = tmp_path / "attr.skggda"
    save(attr, path)
    name = f"{per_point_mean_loss.__module__}.per_point_mean_loss"
    assert get_untrusted_types(path) == [name]
    with pytest.raises(UntrustedTypesError, match=name):
        load(path)
    loaded = load(path, trusted=[name])
    np.testing.assert_array_equal(loaded.score_groups(X_test, y_test),
                                  attr.score_groups(X_test, y_test))


class TwoLayers(nn.Sequential):
    """A user-defined module: loaded only when its name is trusted."""

    def __init__(self, n_features=3, n_classes=3):
        super().__init__(nn.Linear(n_features, 5), nn.ReLU(), nn.Linear(5, n_classes))


def test_a_user_module_needs_trust(data, tmp_path):
    X, y, X_test, y_test = data
    net = SeededNeuralNetClassifier(TwoLayers, max_epochs=1, train_split=None, verbose=0,
                                    criterion=nn.CrossEntropyLoss, random_state=0)
    attr = TracInAttributor(net).fit(X, y)
    path = tmp_path / "attr.skggda"
    save(attr, path)
    name = f"{TwoLayers.__module__}.TwoLayers"
    with pytest.raises(UntrustedTypesError, match=f"names types that are not trusted: "
                                                  f"\\['{name}'\\]"):
        load(path)
    loaded = load(path, trusted=[name])
    np.testing.assert_array_equal(loaded.score_groups(X_test, y_test),
                                  attr.score_groups(X_test, y_test))


def test_a_module_instance_is_refused(data, tmp_path):
    net = SeededNeuralNetClassifier(TwoLayers(), max_epochs=1, train_split=None, verbose=0)
    with pytest.raises(TypeError, match="torch module instance.*pass the class"):
        save(TracInAttributor(net), tmp_path / "attr.skggda")


def test_only_skggda_estimators_are_saved(tmp_path):
    with pytest.raises(TypeError, match="skggda groupers and attributors, got "
                                        "SeededNeuralNetClassifier"):
        save(tiny_net(), tmp_path / "net.skggda")


# -- damaged and hostile files ---------------------------------------------------------


@pytest.fixture
def saved(data, frozen, tmp_path):
    X, y, _, _ = data
    path = tmp_path / "attr.skggda"
    save(InfluenceAttributor(frozen, n_components=4, random_state=0).fit(X, y), path)
    return path


def read_entries(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("manifest.json")), archive.read("tensors.safetensors")


def write_entries(path, manifest, payload, *, resign=False, extra=None):
    if resign:  # what an attacker would do: a consistent digest
        manifest["sha256"] = digest(manifest["root"], payload)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("tensors.safetensors", payload)
        for name, content in (extra or {}).items():
            archive.writestr(name, content)


def rename_types(manifest, old, new):
    return json.loads(json.dumps(manifest).replace(json.dumps(old), json.dumps(new)))


def test_an_edited_type_name_is_refused(saved):
    manifest, payload = read_entries(saved)
    write_entries(saved, rename_types(manifest, "torch.optim.adam.Adam", "os.system"), payload)
    with pytest.raises(ValueError, match="has been altered or is corrupt"):
        load(saved)


def test_an_untrusted_type_is_refused_before_anything_is_built(saved):
    manifest, payload = read_entries(saved)
    evil = "skggda_not_a_real_module.Payload"
    write_entries(saved, rename_types(manifest, "skggda.models._mlp.MLP", evil), payload,
                  resign=True)
    assert get_untrusted_types(saved) == [evil]
    with pytest.raises(UntrustedTypesError, match=evil):
        load(saved)
    assert "skggda_not_a_real_module" not in sys.modules


def test_a_trusted_name_that_is_not_a_class_is_refused(saved):
    manifest, payload = read_entries(saved)
    write_entries(saved, rename_types(manifest, "skggda.attribution._influence."
                                      "InfluenceAttributor", "os.getcwd"), payload, resign=True)
    with pytest.raises(ValueError, match="os.getcwd is not a class"):
        load(saved, trusted=["os.getcwd"])


def test_a_truncated_file_is_refused(saved):
    content = saved.read_bytes()
    saved.write_bytes(content[: len(content) - 200])
    with pytest.raises(ValueError, match="not a complete skggda file"):
        load(saved)


def test_an_altered_tensor_is_refused(saved):
    manifest, payload = read_entries(saved)
    payload = payload[:-4] + bytes(4)
    write_entries(saved, manifest, payload)
    with pytest.raises(ValueError, match="has been altered or is corrupt"):
        load(saved)


def test_a_truncated_tensor_is_refused_even_with_a_matching_digest(saved):
    manifest, payload = read_entries(saved)
    write_entries(saved, manifest, payload[:-8], resign=True)
    with pytest.raises(ValueError, match="unreadable tensors"):
        load(saved)


def test_extra_entries_are_refused(saved):
    manifest, payload = read_entries(saved)
    write_entries(saved, manifest, payload, extra={"payload.pkl": b"\x80\x04"})
    with pytest.raises(ValueError, match="is not a skggda file: it holds"):
        load(saved)


@pytest.mark.parametrize("content", [b"", b"\x80\x04K\x01.", b"PK\x03\x04 not really"])
def test_other_files_are_refused(tmp_path, content):
    path = tmp_path / "model.pkl"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a complete skggda file"):
        load(path)


def test_a_net_saved_on_a_gpu_loads_on_the_cpu_unless_asked(data, saved):
    _, _, X_test, y_test = data
    expected = load(saved).score_groups(X_test, y_test)
    manifest, payload = read_entries(saved)
    write_entries(saved, json.loads(json.dumps(manifest).replace('"cpu"', '"cuda"')), payload,
                  resign=True)
    loaded = load(saved)  # the file's device is not obeyed: the caller chooses
    assert loaded.estimator_.device == "cpu"
    assert next(loaded.estimator_.module_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(loaded.score_groups(X_test, y_test), expected)


def test_trusted_must_be_a_list_of_names(saved):
    with pytest.raises(TypeError, match="trusted must be a list of names"):
        load(saved, trusted="skggda.models._mlp.MLP")


# -- a fresh process, without pickle ---------------------------------------------------


FRESH_PROCESS = """
import json, pickle, sys
import joblib, numpy as np, torch
import skggda.io

def refuse(*args, **kwargs):
    raise AssertionError("pickle, joblib or torch.load was used")

# every unpickling entry point (the C Unpickler class cannot be patched)
pickle.load = pickle.loads = pickle._Unpickler.load = refuse
torch.load = joblib.load = refuse
attr = skggda.io.load(sys.argv[1])
X, y = np.load(sys.argv[2])["X"], np.load(sys.argv[2])["y"]
print(json.dumps({"scores": attr.score_groups(X, y).tolist(),
                  "rows": attr.attribute(X, y).tolist()}))
"""


def test_pickle_free_round_trip_in_a_fresh_process(data, frozen, tmp_path):
    X, y, X_test, y_test = data
    attr = TRAKAttributor(frozen, n_models=2, n_components=6,
                          grouper=GradKMeansGrouper(n_groups=4), random_state=0).fit(X, y)
    save(attr, tmp_path / "trak.skggda")
    np.savez(tmp_path / "test.npz", X=X_test, y=y_test)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "trak.skggda"),
         str(tmp_path / "test.npz")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=True,
    )
    out = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(out["scores"], attr.score_groups(X_test, y_test))
    np.testing.assert_array_equal(np.asarray(out["rows"], dtype=np.float32),
                                  attr.attribute(X_test, y_test))
