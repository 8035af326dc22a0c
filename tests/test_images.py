import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from allmlp.data.images import DataError, black_level, load_images, random_crop_flip, read_cifar_batch, read_idx
from conftest import write_idx


@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
    array = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    path = write_idx(tmp_path / "x-idx3-ubyte", array, compress)
    assert np.array_equal(read_idx(path), array)


def test_truncated_idx_names_file(tmp_path):
    path = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((4, 28, 28), np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"x-idx3-ubyte: truncated or corrupt IDX file"):
        read_idx(path)


def test_corrupt_gzip_and_bad_magic(tmp_path):
    bad_gz = tmp_path / "y.gz"
    bad_gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")[:-6])
    with pytest.raises(DataError, match="y.gz"):
        read_idx(bad_gz)
    magic = tmp_path / "z"
    magic.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(DataError, match="z: not an IDX file"):
        read_idx(magic)


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match="data file not found: .*nothing-here"):
        read_idx(tmp_path / "nothing-here")


def _write_cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
    labels = rng.integers(0, 10, n).tolist()
    path.write_bytes(pickle.dumps({b"batch_label": b"x", b"labels": labels, b"data": data}))
    return data, labels


def test_cifar_reader_and_loader(tmp_path):
    data, labels = _write_cifar_batch(tmp_path / "data_batch_1", 7, 0)
    for i in range(2, 6):
        _write_cifar_batch(tmp_path / f"data_batch_{i}", 3, i)
    _write_cifar_batch(tmp_path / "test_batch", 4, 9)
    images, read_labels = read_cifar_batch(tmp_path / "data_batch_1")
    assert images.shape == (7, 3, 32, 32) and np.array_equal(images.reshape(7, -1), data)
    assert read_labels.tolist() == labels
    splits = load_images("cifar10", tmp_path)
    assert splits["train"][0].shape == (19, 3, 32, 32) and splits["test"][1].shape == (4,)


def test_corrupt_cifar_batch(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_1: not a CIFAR-10 python batch"):
        read_cifar_batch(tmp_path / "data_batch_1")


class _TouchOnUnpickle:
    """Unpickling this creates the marker file: proof that a reader ran code from a data file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_cifar_reader_runs_no_code_from_the_file(tmp_path):
    marker = tmp_path / "marker"
    payloads = [_TouchOnUnpickle(marker), {b"data": _TouchOnUnpickle(marker), b"labels": [1]}]
    for payload in payloads:
        (tmp_path / "data_batch_1").write_bytes(pickle.dumps(payload))
        with pytest.raises(DataError, match=r"data_batch_1: not a CIFAR-10 python batch \(refused to load "):
            read_cifar_batch(tmp_path / "data_batch_1")
        assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_reader_takes_every_pickle_protocol(tmp_path, protocol):
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    (tmp_path / "b").write_bytes(pickle.dumps({"data": data, "labels": [3, 9]}, protocol=protocol))
    images, labels = read_cifar_batch(tmp_path / "b")
    assert np.array_equal(images.reshape(2, -1), data) and labels.tolist() == [3, 9]


@pytest.mark.parametrize("batch, message", [
    ([1, 2], r"a list, expected a dict"),
    ({b"data": np.zeros((2, 3072), np.int64), b"labels": [0, 1]}, r"'data' is int64 array \(2, 3072\)"),
    ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, r"'data' is uint8 array \(2, 1024\)"),
    ({b"data": np.zeros((2, 3072), object), b"labels": [0, 1]}, r"object arrays are not allowed"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, r"2 images but 1 labels"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"label 10 out of range"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, -1]}, r"label -1 out of range"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 2**70]}, r"an integer beyond int64"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1.5]}, r"'labels' are not all integers"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": np.array(3)}, r"2 images but 'labels' ndarray"),
])
def test_malformed_cifar_batch_names_file_and_field(tmp_path, batch, message):
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match=r"data_batch_1: .*" + message):
        read_cifar_batch(tmp_path / "data_batch_1")


@pytest.mark.parametrize("where", ["block header", "middle"])  # zlib.error (not an OSError), CRC mismatch
def test_bit_flip_inside_gzip_names_file(tmp_path, where):
    path = write_idx(tmp_path / "x-idx3-ubyte", np.random.default_rng(0).integers(0, 256, (20, 28, 28)))
    raw = bytearray(path.read_bytes())
    raw[10 if where == "block header" else len(raw) // 2] ^= 0xFF  # byte 10: the first deflate block's header
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"x-idx3-ubyte.gz: corrupt or truncated gzip data"):
        read_idx(path)


def _fashion_folder(tmp_path, images, labels):
    for split in ("train", "t10k"):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", images)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", labels)
    return tmp_path


def test_idx_shape_of_another_data_set_is_an_error_not_a_reshape(tmp_path):
    folder = _fashion_folder(tmp_path, np.zeros((3, 14, 56), np.uint8), np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: IDX images are uint8 \(3, 14, 56\), "
                                        r"expected uint8 \(N, 28, 28\) for fashion_mnist"):
        load_images("fashion_mnist", folder)


def test_idx_label_out_of_range_names_file_and_value(tmp_path):
    folder = _fashion_folder(tmp_path, np.zeros((3, 28, 28), np.uint8), np.array([1, 12, 3], np.uint8))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: label 12 out of range"):
        load_images("fashion_mnist", folder)


def test_cifar_archive_is_extracted_whole_or_not_at_all(tmp_path, tiny_cifar, monkeypatch):
    import hashlib
    import tarfile

    from allmlp.data import images

    archive = tmp_path / "cache" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_cifar, arcname="cifar-10-batches-py")
    monkeypatch.setattr(images, "CIFAR_TAR_MD5", hashlib.md5(archive.read_bytes()).hexdigest())
    extract_all = tarfile.TarFile.extractall

    def disk_full_after_two_members(self, path, filter=None):
        for member in self.getmembers()[:3]:  # the folder and two batches
            self.extract(member, path, filter=filter)
        raise OSError("No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "extractall", disk_full_after_two_members)
    with pytest.raises(OSError, match="No space left"):
        images.fetch("cifar10", archive.parent)
    assert [p.name for p in archive.parent.iterdir()] == ["cifar-10-python.tar.gz"]  # no batches that look whole
    monkeypatch.setattr(tarfile.TarFile, "extractall", extract_all)
    batches = images.fetch("cifar10", archive.parent)
    assert sorted(p.name for p in batches.iterdir()) == sorted(p.name for p in tiny_cifar.iterdir())
    assert sorted(p.name for p in archive.parent.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_fashion_loader_from_folder(tiny_fashion):
    splits = load_images("fashion_mnist", tiny_fashion)
    assert splits["train"][0].shape == (512, 1, 28, 28) and splits["train"][0].dtype == torch.uint8
    assert splits["test"][1].shape == (256,)


def test_crop_flip_keeps_shape_and_content():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    out = random_crop_flip(images, padding=0, hflip=True, generator=torch.Generator().manual_seed(0))
    for a, b in zip(out, images):
        assert torch.equal(a, b) or torch.equal(a, b.flip(2))
    cropped = random_crop_flip(images, padding=1, hflip=False, generator=torch.Generator().manual_seed(1))
    assert cropped.shape == images.shape
    # every crop is a shifted window: its nonzero values are a subset of the image's values
    assert set(cropped[0].unique().tolist()) <= set(images[0].unique().tolist()) | {0.0}


def test_crop_padding_takes_the_fill_value_per_channel():
    images = torch.ones(8, 2, 3, 3)
    fill = black_level(mean=(0.5, 0.25), std=(0.5, 0.25))  # a black pixel after normalize: -1 in both channels
    assert torch.allclose(fill, torch.tensor([-1.0, -1.0]))
    out = random_crop_flip(images, padding=2, hflip=False, generator=torch.Generator().manual_seed(0), fill=fill)
    assert set(out.unique().tolist()) <= {1.0, -1.0}
    assert (out == -1).any()  # with padding 2 on a 3x3 image some border always shows


def test_test_time_flip_averages_the_logits_of_both_mirror_images():
    from allmlp.tasks.classification import predict

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))  # not mirror-symmetric
    images = torch.randn(5, 1, 3, 4)
    plain = predict(model, images, batch_size=2)
    both = predict(model, images, batch_size=2, hflip=True)
    assert torch.allclose(both, (plain + model(images.flip(3))) / 2, atol=1e-6)
    assert not torch.allclose(both, plain)


def test_download_leaves_the_target_whole_or_absent(tmp_path):
    from allmlp.data.cache import download

    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 1000)
    folder = tmp_path / "cache"
    folder.mkdir()
    with pytest.raises(OSError, match="could not download t.bin: file://"):
        download([(tmp_path / "missing.bin").as_uri()], folder / "t.bin")
    assert list(folder.iterdir()) == []  # no half-written or temporary file left behind
    assert download([(tmp_path / "missing.bin").as_uri(), source.as_uri()], folder / "t.bin").read_bytes() == b"x" * 1000
    assert [p.name for p in folder.iterdir()] == ["t.bin"]
