"""Image data sets without torchvision: IDX and CIFAR-10 readers, download + checksum + cache, augmentation."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_write_bytes
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
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:  # zlib.error is no OSError: a flipped bit raises it
        raise DataError(f"{path}: corrupt or truncated gzip data ({str(err) or err.__class__.__name__})") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None


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
    expected = header + math.prod(shape) * dtype.itemsize  # exact: np.prod would overflow on a forged header
    if len(raw) != expected:
        raise DataError(f"{path}: truncated or corrupt IDX file ({len(raw)} bytes, expected {expected} "
                        f"for shape {shape})")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _numpy_dtype(*args) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:  # an object array would unpickle arbitrary elements: a CIFAR batch holds bytes only
        raise pickle.UnpicklingError("object arrays are not allowed")
    return dtype


def _latin1_bytes(text: str, encoding: str) -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, "latin1") under pickle protocol 2; no other codec is needed.
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"codec {encoding!r} is not allowed")
    return text.encode("latin1")


class _CifarUnpickler(pickle.Unpickler):
    """Builds only dicts, lists, bytes, str, numbers and numpy arrays: a crafted batch cannot run code."""

    # numpy's own array rebuilders, taken from an array's pickle so that numpy 1 and 2 module names both work.
    _reconstruct = np.zeros(0).__reduce__()[0]  # ndarray(subtype, shape, dtype) + __setstate__ with the bytes
    _frombuffer = np.zeros(1, np.uint8).__reduce_ex__(5)[0]  # pickle protocol 5: (buffer, dtype, shape, order)
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy.core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _numpy_dtype,
        ("_codecs", "encode"): _latin1_bytes,
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            qualified = f"{module}.{name}"  # repr: a crafted name may hold newlines
            raise pickle.UnpicklingError(f"refused to load {qualified!r}")
        return self.ALLOWED[module, name]


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python-pickle batch: uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    path = Path(path)
    raw = _read_bytes(path)
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as err:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({err})") from None
    except Exception as err:  # pickle raises many kinds on corrupt input
        raise DataError(f"{path}: not a CIFAR-10 python batch ({err.__class__.__name__})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 python batch (a {type(batch).__name__}, expected a dict)")
    data, labels = (batch.get(key.encode(), batch.get(key)) for key in ("data", "labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        found = f"{data.dtype} array {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: CIFAR batch 'data' is {found}, expected a uint8 array (N, 3072)")
    is_sequence = isinstance(labels, list) or isinstance(labels, np.ndarray) and labels.ndim == 1
    if not is_sequence or len(labels) != len(data):
        found = f"{len(labels)} labels" if is_sequence else f"'labels' {type(labels).__name__}"
        raise DataError(f"{path}: CIFAR batch has {len(data)} images but {found}, expected a list of {len(data)} ints")
    integers = (all(isinstance(v, int) and not isinstance(v, bool) for v in labels) if isinstance(labels, list)
                else labels.dtype.kind in "iu")
    if not integers:  # floats would be truncated to a class silently
        raise DataError(f"{path}: CIFAR batch 'labels' are not all integers")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except OverflowError:
        raise DataError(f"{path}: CIFAR batch 'labels' hold an integer beyond int64") from None
    _check_labels(path, labels, len(CIFAR_CLASSES))
    return data.reshape(-1, 3, 32, 32), labels


def _check_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    if labels.ndim != 1:
        raise DataError(f"{path}: labels have shape {labels.shape}, expected one label per image")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise DataError(f"{path}: label {int(bad[0])} out of range (the data set has {num_classes} classes, "
                        f"0..{num_classes - 1})")


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _verify_idx(path: Path, spec: IdxFile) -> None:
    if path.suffix == ".gz" and _md5(path.read_bytes()) == spec.gz_md5:
        return
    raw = _read_bytes(path)
    if spec.raw_md5 and _md5(raw) == spec.raw_md5:
        return
    raise DataError(f"{path}: checksum mismatch (expected md5 {spec.raw_md5 or spec.gz_md5}); delete it and fetch "
                    "the data set again")


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
            atomic_write_bytes(target, source.read_bytes())
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
        raise DataError(f"{archive}: checksum mismatch (expected md5 {CIFAR_TAR_MD5}); delete it and fetch again")
    # Extract next to the cache and rename when complete: a crash mid-way must not leave batches that look whole.
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        if batches.exists():
            shutil.rmtree(batches)  # an incomplete copy: the complete one returned above
        os.replace(Path(tmp) / batches.name, batches)
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
            _check_idx_images(x_path, x, spec)
            if y.dtype != np.uint8 or y.ndim != 1:
                raise DataError(f"{y_path}: IDX labels are {y.dtype} {y.shape}, expected uint8 (N,)")
            if len(x) != len(y):
                raise DataError(f"{x_path}: {len(x)} images but {y_path.name} has {len(y)} labels")
            _check_labels(y_path, y, len(spec.classes))
            splits[split] = (x.reshape(len(x), *spec.shape), y)
    return {k: (torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64)))
            for k, (x, y) in splits.items()}


def _check_idx_images(path: Path, images: np.ndarray, spec: ImageDataset) -> None:
    # Never reshape silently: 14x56 images have the right size for a 28x28 set and would train on garbage.
    channels, height, width = spec.shape
    expected = (height, width) if channels == 1 else (channels, height, width)
    if images.dtype != np.uint8 or images.shape[1:] != expected:
        raise DataError(f"{path}: IDX images are {images.dtype} {images.shape}, expected uint8 "
                        f"(N, {', '.join(map(str, expected))}) for {spec.name}")


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 standardised per channel."""
    mean = torch.tensor(mean).view(1, -1, 1, 1)
    std = torch.tensor(std).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std


def black_level(mean, std) -> torch.Tensor:
    """The value a black (0) pixel has after `normalize`: (C,)."""
    return -torch.tensor(mean) / torch.tensor(std)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Float images (B, C, H, W) resized to (B, C, size, size), bilinear as Keras' `Resizing` (as the Keras CIFAR-10
    Mixer feeds its model); 0: as is."""
    if size <= 0 or tuple(images.shape[-2:]) == (size, size):
        return images
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


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
