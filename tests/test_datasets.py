"""skggda.datasets: real loaders (skipped without the data folder), parsers on
tiny files written here, missing-file errors, data-folder resolution, fallbacks."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from skggda.datasets import (
    load_heloc,
    load_mnist,
    load_qnli_dev,
    load_tabular_fallback,
)
from skggda.datasets._fallbacks import make_heloc_like
from skggda.datasets._home import get_data_home
from skggda.datasets._heloc import HELOC_FEATURE_NAMES

#: The real data: SKGGDA_DATA if set, else ../shared/data next to the repository.
DATA_DIR = Path(
    os.environ.get("SKGGDA_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
HELOC_CSV = "heloc/heloc_dataset_v1.csv"
QNLI_TSV = "qnli/dev.tsv"
MNIST_GZ = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
LAYOUT = {"X_train", "X_test", "y_train", "y_test", "feature_names", "target_names", "DESCR"}


def _require(*relatives):
    for rel in relatives:
        if not (DATA_DIR / rel).is_file():
            pytest.skip(f"real data absent: {DATA_DIR / rel} (set SKGGDA_DATA to the data folder)")


# --------------------------------------------------------------------------- real HELOC


@pytest.fixture(scope="module")
def heloc():
    _require(HELOC_CSV)
    return load_heloc(data_home=DATA_DIR, return_frame=True)


def test_heloc_shapes_and_types(heloc):
    assert heloc.X_train.shape == (7896, 23)
    assert heloc.X_test.shape == (1975, 23)
    assert heloc.y_train.shape == (7896,) and heloc.y_test.shape == (1975,)
    assert heloc.X_train.dtype == np.float32 and heloc.y_train.dtype == np.int64
    assert heloc.feature_names == HELOC_FEATURE_NAMES
    assert heloc.target_names == ["Good", "Bad"]
    assert set(heloc) == LAYOUT | {"frame_train", "frame_test"}
    assert "not redistributed" in heloc.DESCR or "does not redistribute" in heloc.DESCR


def test_heloc_standardised_with_train_statistics(heloc):
    np.testing.assert_allclose(heloc.X_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(heloc.X_train.std(0), 1, atol=1e-4)
    # the test part is scaled with the training statistics: close to, not exactly, 0/1
    assert np.abs(heloc.X_test.mean(0)).max() < 0.1
    assert np.abs(heloc.X_test.mean(0)).max() > 1e-4


def test_heloc_drops_all_minus9_rows():
    _require(HELOC_CSV)
    raw = load_heloc(data_home=DATA_DIR, standardize=False)
    X = np.vstack([raw.X_train, raw.X_test])
    assert X.shape == (9871, 23)
    assert not np.all(X == -9, axis=1).any()
    assert (X == -9).any()  # isolated -9 cells remain: only all -9 rows go
    assert np.array_equal(X, np.rint(X)) and X.min() == -9


def test_heloc_deterministic_and_seeded(heloc):
    again = load_heloc(data_home=DATA_DIR, random_state=0)
    np.testing.assert_array_equal(again.X_train, heloc.X_train)
    np.testing.assert_array_equal(again.y_test, heloc.y_test)
    other = load_heloc(data_home=DATA_DIR, random_state=1)
    assert not np.array_equal(other.X_train, heloc.X_train)


def test_heloc_class_balance(heloc):
    # 5,136 Bad / 4,735 Good after dropping the all -9 rows; stratified split
    assert np.bincount(heloc.y_train).tolist() == [3788, 4108]
    assert np.bincount(heloc.y_test).tolist() == [947, 1028]


def test_heloc_frames_match_arrays(heloc):
    frame = heloc.frame_train
    assert frame.shape == (7896, 24)
    np.testing.assert_array_equal(frame[HELOC_FEATURE_NAMES].to_numpy(), heloc.X_train)
    np.testing.assert_array_equal(frame["RiskPerformance"].to_numpy(), heloc.y_train)
    # the index is the row in the CSV file, so the two parts are disjoint
    assert not set(frame.index) & set(heloc.frame_test.index)


def test_heloc_found_through_env_var(monkeypatch, heloc):
    monkeypatch.setenv("SKGGDA_DATA", str(DATA_DIR))
    np.testing.assert_array_equal(load_heloc().y_train, heloc.y_train)


# --------------------------------------------------------------------------- real QNLI


@pytest.fixture(scope="module")
def qnli():
    _require(QNLI_TSV)
    return load_qnli_dev(data_home=DATA_DIR)


def test_qnli_shapes_and_pairs(qnli):
    assert qnli.X_train.shape == (4370, 2) and qnli.X_test.shape == (1093, 2)
    assert len(qnli.y_train) + len(qnli.y_test) == 5463
    assert qnli.X_train.dtype == object
    assert all(isinstance(s, str) and s for s in qnli.X_train.ravel())
    assert qnli.X_train[:, 0].tolist()[0].endswith("?")  # first column: the question
    # QUOTE_NONE keeps quote characters inside the text
    assert any('"' in s for s in np.concatenate([qnli.X_train, qnli.X_test]).ravel())


def test_qnli_labels(qnli):
    assert qnli.y_train.dtype == np.int64
    assert set(np.unique(qnli.y_train)) == {0, 1}
    assert qnli.target_names == ["not_entailment", "entailment"]
    # 2,702 entailment / 2,761 not_entailment in the file
    assert (qnli.y_train == 1).sum() + (qnli.y_test == 1).sum() == 2702
    assert abs(qnli.y_train.mean() - qnli.y_test.mean()) < 0.01


# --------------------------------------------------------------------------- real MNIST


@pytest.fixture(scope="module")
def mnist():
    _require(*(f"mnist/{name}" for name in MNIST_GZ))
    return load_mnist(data_home=DATA_DIR)


@pytest.mark.slow
def test_mnist_full(mnist):
    assert mnist.X_train.shape == (60000, 1, 28, 28) and mnist.X_test.shape == (10000, 1, 28, 28)
    assert mnist.X_train.dtype == np.float32 and mnist.y_train.dtype == np.int64
    assert mnist.X_train.min() == 0 and mnist.X_train.max() == 1
    assert np.bincount(mnist.y_train).tolist()[:2] == [5923, 6742]
    assert np.bincount(mnist.y_test, minlength=10).min() > 800


@pytest.mark.slow
def test_mnist_subset_and_flatten(mnist):
    sub = load_mnist(data_home=DATA_DIR, n_train=500, n_test=100, flatten=True, random_state=3)
    assert sub.X_train.shape == (500, 784) and sub.X_test.shape == (100, 784)
    assert np.bincount(sub.y_train, minlength=10).min() >= 40  # stratified: ~50 per digit
    # a subset is made of rows of the full set, same pixels and labels
    row = np.flatnonzero((mnist.X_train.reshape(60000, -1) == sub.X_train[0]).all(1))
    assert len(row) >= 1 and mnist.y_train[row[0]] == sub.y_train[0]


# --------------------------------------------------------------------------- tiny files


def _write_idx(path, array, magic):
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_mnist(tmp_path):
    rng = np.random.RandomState(0)
    (tmp_path / "mnist").mkdir()
    for part, n in (("train", 60), ("t10k", 30)):
        images = rng.randint(0, 256, size=(n, 28, 28))
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        _write_idx(tmp_path / f"mnist/{part}-images-idx3-ubyte.gz", images, 2051)
        _write_idx(tmp_path / f"mnist/{part}-labels-idx1-ubyte.gz", np.arange(n) % 10, 2049)
    return tmp_path


def test_mnist_parser_on_tiny_files(tiny_mnist):
    data = load_mnist(data_home=tiny_mnist)
    assert data.X_train.shape == (60, 1, 28, 28) and data.X_test.shape == (30, 1, 28, 28)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.X_train[0, 0, 0, 0] == 0 and data.X_train[0, 0, 0, 1] == 1
    assert data.y_train.tolist() == (np.arange(60) % 10).tolist()
    flat = load_mnist(data_home=tiny_mnist, flatten=True)
    np.testing.assert_array_equal(flat.X_train, data.X_train.reshape(60, 784))


def test_mnist_subsets_are_seeded_and_stratified(tiny_mnist):
    a = load_mnist(data_home=tiny_mnist, n_train=20, n_test=10, random_state=0)
    b = load_mnist(data_home=tiny_mnist, n_train=20, n_test=10, random_state=0)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert np.bincount(a.y_train).tolist() == [2] * 10
    assert np.bincount(a.y_test).tolist() == [1] * 10
    c = load_mnist(data_home=tiny_mnist, n_train=20, random_state=1)
    assert not np.array_equal(a.X_train, c.X_train)
    assert len(load_mnist(data_home=tiny_mnist, n_train=3).y_train) == 3  # too few to stratify


@pytest.mark.parametrize("n_train", [0, 61, 2.5, "10"])
def test_mnist_bad_subset_size(tiny_mnist, n_train):
    with pytest.raises(ValueError, match=f"n_train must be .* got {n_train!r}"):
        load_mnist(data_home=tiny_mnist, n_train=n_train)


@pytest.mark.parametrize("damage", ["magic", "truncated", "not_gzip", "count"])
def test_mnist_corrupt_files(tiny_mnist, damage):
    path = tiny_mnist / "mnist/train-images-idx3-ubyte.gz"
    images = np.zeros((60, 28, 28))
    if damage == "magic":
        _write_idx(path, images, 2049)
        match = "magic number 2049, expected 2051"
    elif damage == "truncated":
        with gzip.open(path, "wb") as f:
            f.write(struct.pack(">4I", 2051, 60, 28, 28) + bytes(100))
        match = "truncated or corrupt"
    elif damage == "not_gzip":
        path.write_bytes(b"not a gzip file at all")
        match = "not a readable gzip file"
    else:
        _write_idx(path, images[:59], 2051)
        match = "59 images .* but 60 labels"
    with pytest.raises(ValueError, match=match) as info:
        load_mnist(data_home=tiny_mnist)
    assert "train-images-idx3-ubyte.gz" in str(info.value)


def _write_heloc(path, n=40, n_empty=5, seed=0):
    rng = np.random.RandomState(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(["RiskPerformance", *HELOC_FEATURE_NAMES])]
    for i in range(n + n_empty):
        values = [-9] * 23 if i < n_empty else rng.randint(-9, 100, size=23).tolist()
        lines.append(",".join(["Bad" if i % 2 else "Good", *map(str, values)]))
    path.write_text("\n".join(lines) + "\n")


def test_heloc_parser_on_tiny_file(tmp_path):
    _write_heloc(tmp_path / HELOC_CSV)
    data = load_heloc(data_home=tmp_path, standardize=False, return_frame=True)
    assert set(data) == LAYOUT | {"frame_train", "frame_test"}
    assert data.X_train.shape == (32, 23) and data.X_test.shape == (8, 23)
    assert not np.all(np.vstack([data.X_train, data.X_test]) == -9, axis=1).any()
    # "Bad" (odd rows of the file) is 1; the frame index is the row in the file
    np.testing.assert_array_equal(data.y_train, data.frame_train.index % 2)
    assert data.frame_train.index.min() >= 5  # the five all -9 rows are gone


def test_heloc_rejects_a_wrong_file(tmp_path):
    path = tmp_path / HELOC_CSV
    _write_heloc(path)
    path.write_text(path.read_text().replace("ExternalRiskEstimate", "Something"))
    with pytest.raises(ValueError, match="ExternalRiskEstimate"):
        load_heloc(data_home=tmp_path)
    _write_heloc(path)
    path.write_text(path.read_text().replace("Good", "Okay", 1))
    with pytest.raises(ValueError, match="line 2: RiskPerformance .* got 'Okay'"):
        load_heloc(data_home=tmp_path)


def test_qnli_parser_keeps_quotes(tmp_path):
    (tmp_path / "qnli").mkdir()
    rows = ["index\tquestion\tsentence\tlabel"] + [
        f'{i}\tWhat is "it" {i}?\tIt is "quoted, with \' odd quote {i}.\t'
        f'{"entailment" if i % 2 else "not_entailment"}' for i in range(20)]
    (tmp_path / QNLI_TSV).write_text("\n".join(rows) + "\n", encoding="utf-8")
    data = load_qnli_dev(data_home=tmp_path, test_size=0.25)
    assert data.X_train.shape == (15, 2) and data.X_test.shape == (5, 2)
    pair = data.X_train[0]
    i = int(pair[0].split()[-1].rstrip("?"))
    assert pair.tolist() == [f'What is "it" {i}?', f'It is "quoted, with \' odd quote {i}.']
    assert data.y_train[0] == i % 2  # entailment = 1
    (tmp_path / QNLI_TSV).write_text(rows[0] + "\n0\tq?\ts.\tmaybe\n")
    with pytest.raises(ValueError, match="got 'maybe'"):
        load_qnli_dev(data_home=tmp_path)


# --------------------------------------------------------------------------- missing files


@pytest.mark.parametrize("loader, relatives", [
    (load_heloc, [HELOC_CSV]),
    (load_qnli_dev, [QNLI_TSV]),
    (load_mnist, [f"mnist/{name}" for name in MNIST_GZ]),
])
def test_missing_files_name_the_path(tmp_path, loader, relatives):
    with pytest.raises(FileNotFoundError) as info:
        loader(data_home=tmp_path)
    message = str(info.value)
    for rel in relatives:
        assert str(tmp_path / rel) in message
    assert "SKGGDA_DATA" in message and "data_home=" in message and "skggda_data" in message
    assert not any(tmp_path.iterdir())  # nothing was created


def test_missing_file_error_says_where_the_folder_came_from(tmp_path, monkeypatch):
    monkeypatch.setenv("SKGGDA_DATA", str(tmp_path / "from_env"))
    with pytest.raises(FileNotFoundError, match="environment variable SKGGDA_DATA"):
        load_heloc()
    assert not (tmp_path / "from_env").exists()


# --------------------------------------------------------------------------- data folder


def test_data_home_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SKGGDA_DATA", raising=False)
    assert get_data_home() == tmp_path / "home" / "skggda_data"
    monkeypatch.setenv("SKGGDA_DATA", "")  # empty counts as unset
    assert get_data_home() == tmp_path / "home" / "skggda_data"
    monkeypatch.setenv("SKGGDA_DATA", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"  # the argument wins
    assert get_data_home("~/x") == tmp_path / "home" / "x"
    assert not any(tmp_path.iterdir())  # resolution creates no folder


def test_data_home_is_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert get_data_home("rel") == tmp_path / "rel"
    assert get_data_home("rel").is_absolute()


def test_data_home_rejects_other_types():
    with pytest.raises(TypeError, match="data_home must be .* got 3"):
        get_data_home(3)


# --------------------------------------------------------------------------- fallbacks


def test_heloc_like_layout_matches_load_heloc(tmp_path):
    _write_heloc(tmp_path / HELOC_CSV)
    real_layout = load_heloc(data_home=tmp_path)
    fake = make_heloc_like()
    assert set(fake) == set(real_layout) == LAYOUT
    assert fake.feature_names == real_layout.feature_names
    assert fake.target_names == real_layout.target_names
    assert fake.X_train.shape == (7896, 23) and fake.X_test.shape == (1975, 23)
    assert fake.X_train.dtype == np.float32 and fake.y_train.dtype == np.int64


def test_heloc_like_looks_like_heloc():
    data = make_heloc_like(random_state=0)
    np.testing.assert_allclose(data.X_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(data.X_train.std(0), 1, atol=1e-4)
    assert 0.45 < data.y_train.mean() < 0.6
    # special code -8 replaces a third of NetFractionInstallBurden: one repeated value
    column = data.X_train[:, HELOC_FEATURE_NAMES.index("NetFractionInstallBurden")]
    assert 0.25 < np.unique(column, return_counts=True)[1].max() / len(column) < 0.4
    accuracy = LogisticRegression().fit(data.X_train, data.y_train).score(data.X_test, data.y_test)
    assert 0.68 < accuracy < 0.78


def test_heloc_like_is_seeded():
    a, b = make_heloc_like(500, random_state=1), make_heloc_like(500, random_state=1)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert a.X_train.shape == (400, 23)
    assert not np.array_equal(a.X_train, make_heloc_like(500, random_state=2).X_train)
    with pytest.raises(ValueError, match="n_samples must be .* got 5"):
        make_heloc_like(5)


@pytest.mark.parametrize("name, n_train, n_test, n_features, n_classes", [
    ("breast_cancer", 455, 114, 30, 2),
    ("digits", 1437, 360, 64, 10),
    ("heloc_like", 7896, 1975, 23, 2),
])
def test_tabular_fallback(name, n_train, n_test, n_features, n_classes):
    data = load_tabular_fallback(name)
    assert set(data) == LAYOUT
    assert data.X_train.shape == (n_train, n_features) and data.X_test.shape == (n_test, n_features)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert len(data.target_names) == n_classes == len(np.unique(data.y_test))
    assert np.abs(data.X_train.mean(0)).max() < 1e-5


def test_tabular_fallback_unknown_name():
    with pytest.raises(ValueError, match="got 'iris'"):
        load_tabular_fallback("iris")
