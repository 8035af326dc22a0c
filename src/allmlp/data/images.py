"""Image data sets without torchvision: IDX and CIFAR-10 readers, download + checksum + cache, augmentation."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .cache import cache_dir, download


class DataError(ValueError):
    """A data file is missing, truncated or corrupt; the message names the file."""


@dataclass(frozen=True)
class IdxFile:
    name: str  # file name without .gz
    gz_md5: str  # md5 of the canonical .gz download
    raw_md5: str = ""  # md5 of the uncompressed bytes, where known (other mirrors re-compress)


@dataclass(frozen=True)
class ImageDataset:
    """A registered image data set: where to get it and what it looks like."""

    name: str
    urls: tuple[str, ...]
    files: dict  # split -> (images IdxFile, labels IdxFile), or None for CIFAR
    shape: tuple[int, int, int]
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    local_copies: tuple[str, ...] = ()


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

DATASETS = {
    "fashion_mnist": ImageDataset(
        "fashion_mnist",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {"train": (IdxFile("train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                           "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
                   IdxFile("train-labels-idx1-ubyte", "25c81989df183df01b3e8a0aad5dffbe",
                           "9018921c3c673c538a1fc5bad174d6f9")),
         "test": (IdxFile("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79",
                          "8181f5470baa50b63fa0f6fddb340f0a"),
                  IdxFile("t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83cd310",
                          "15d484375f8d13e6eb1aabb0c3f46965"))},
        (1, 28, 28), FASHION_CLASSES, (0.2860,), (0.3530,),
        local_copies=("/usr/share/datasets/fashion-mnist",)),
    "mnist": ImageDataset(
        "mnist",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        {"train": (IdxFile("train-images-idx3-ubyte", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                   IdxFile("train-labels-idx1-ubyte", "d53e105ee54ea40749a09fcbcd1e9432")),
         "test": (IdxFile("t10k-images-idx3-ubyte", "9fb629c4189551a2d022fa330f9573f3"),
                  IdxFile("t10k-labels-idx1-ubyte", "ec29112dd5afa0611ce80d1b7f02629c"))},
        (1, 28, 28), tuple(str(i) for i in range(10)), (0.1307,), (0.3081,),
        local_copies=("/usr/share/datasets/mnist",)),
    "cifar10": ImageDataset(
        "cifar10",
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        {}, (3, 32, 32), CIFAR_CLASSES, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
CIFAR_TAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read ({err})") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzipped or not, into a numpy array."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: truncated or corrupt IDX file ({len(raw)} bytes, expected {expected} "
                        f"for shape {shape})")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python-pickle batch: uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    path = Path(path)
    raw = _read_bytes(path)
    try:
        batch = pickle.loads(raw, encoding="bytes")
        data = np.asarray(batch[b"data"] if b"data" in batch else batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"] if b"labels" in batch else batch["labels"], dtype=np.int64)
    except Exception as err:  # pickle raises many kinds on corrupt input
        raise DataError(f"{path}: not a CIFAR-10 python batch ({err.__class__.__name__})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f"{path}: CIFAR batch has data {data.shape} and {len(labels)} labels, "
                        f"expected (N, 3072) and N")
    return data.reshape(-1, 3, 32, 32), labels


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _verify_idx(path: Path, spec: IdxFile) -> None:
    if path.suffix == ".gz" and _md5(path.read_bytes()) == spec.gz_md5:
        return
    raw = _read_bytes(path)
    if spec.raw_md5 and _md5(raw) == spec.raw_md5:
        return
    raise DataError(f"{path}: checksum mismatch (expected md5 {spec.raw_md5 or spec.gz_md5})")


def _find_idx(folder: Path, name: str) -> Path | None:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def fetch(name: str, root: str | Path | None = None) -> Path:
    """Make data set `name` available locally (cache, system copy or download) and return its folder."""
    spec = get_dataset(name)
    folder = Path(root) if root else cache_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    if name == "cifar10":
        return _fetch_cifar(folder)
    for split in spec.files.values():
        for idx in split:
            path = _find_idx(folder, idx.name)
            if path is None:
                path = _copy_or_download(spec, idx, folder)
            _verify_idx(path, idx)
    return folder


def _copy_or_download(spec: ImageDataset, idx: IdxFile, folder: Path) -> Path:
    target = folder / f"{idx.name}.gz"
    for local in spec.local_copies:
        source = _find_idx(Path(local), idx.name)
        if source is not None:
            _verify_idx(source, idx)
            target = folder / source.name
            target.write_bytes(source.read_bytes())
            return target
    download([url + f"{idx.name}.gz" for url in spec.urls], target)
    return target


def _fetch_cifar(folder: Path) -> Path:
    batches = folder / "cifar-10-batches-py"
    if all((batches / b).is_file() for b in (*CIFAR_TRAIN_BATCHES, "test_batch")):
        return batches
    archive = folder / "cifar-10-python.tar.gz"
    if not archive.is_file():
        download(list(DATASETS["cifar10"].urls), archive)
    if _md5(archive.read_bytes()) != CIFAR_TAR_MD5:
        raise DataError(f"{archive}: checksum mismatch (expected md5 {CIFAR_TAR_MD5})")
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return batches


def get_dataset(name: str) -> ImageDataset:
    """The registered image data set `name`."""
    if name not in DATASETS:
        raise KeyError(f"unknown image data set {name!r}; available: {', '.join(DATASETS)}")
    return DATASETS[name]


def load_images(name: str, path: str | Path | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Load a data set as uint8 image tensors (N, C, H, W) and int64 labels, per split (train, test)."""
    spec = get_dataset(name)
    if name == "cifar10":
        folder = Path(path) if path else fetch(name)
        if (folder / "cifar-10-batches-py").is_dir():
            folder = folder / "cifar-10-batches-py"
        parts = [read_cifar_batch(folder / b) for b in CIFAR_TRAIN_BATCHES]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        test = read_cifar_batch(folder / "test_batch")
        splits = {"train": train, "test": test}
    else:
        folder = Path(path) if path else fetch(name)
        splits = {}
        for split, (images, labels) in spec.files.items():
            x_path, y_path = _find_idx(folder, images.name), _find_idx(folder, labels.name)
            if x_path is None or y_path is None:
                missing = images.name if x_path is None else labels.name
                raise DataError(f"data file not found: {folder / missing}(.gz)")
            x, y = read_idx(x_path), read_idx(y_path)
            if len(x) != len(y):
                raise DataError(f"{x_path}: {len(x)} images but {y_path.name} has {len(y)} labels")
            splits[split] = (x.reshape(len(x), *spec.shape), y)
    return {k: (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)))
            for k, (x, y) in splits.items()}


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 standardised per channel."""
    mean = torch.tensor(mean).view(1, -1, 1, 1)
    std = torch.tensor(std).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std


def black_level(mean, std) -> torch.Tensor:
    """The value a black (0) pixel has after `normalize`: (C,)."""
    return -torch.tensor(mean) / torch.tensor(std)


def random_crop_flip(images: torch.Tensor, padding: int, hflip: bool, generator: torch.Generator,
                     fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Random crop after padding with `fill` (per channel, e.g. `black_level`) and random horizontal flip."""
    b, c, h, w = images.shape
    if padding > 0:
        fill = torch.as_tensor(fill, dtype=images.dtype).reshape(-1, 1, 1)  # (C or 1, 1, 1)
        padded = torch.nn.functional.pad(images - fill, (padding,) * 4) + fill  # the border takes the fill value
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(b, c, h, w + 2 * padding)
        images = padded.gather(2, rows)
        cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(b, c, h, w)
        images = images.gather(3, cols)
    if hflip:
        flip = torch.rand(b, generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
    return images
