"""MNIST fetching and verification: every bad input names the file and writes nothing."""

from __future__ import annotations

import gzip
import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from rgbench.data.mnist import (
    MNIST_FILES,
    OFFICIAL_SHA256,
    MnistError,
    build_cache,
    fetch_mnist,
    load_splits,
    parse_idx,
    read_manifest,
    validation_index,
)

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def copy_subset(src: Path, dst: Path, raw: bool = False) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in MNIST_FILES:
        data = (src / f"{name}.gz").read_bytes()
        if raw:
            (dst / name).write_bytes(gzip.decompress(data))
        else:
            (dst / f"{name}.gz").write_bytes(data)
    shutil.copy(src / "SHA256SUMS", dst / "SHA256SUMS")
    return dst


def test_subset_parses_with_expected_shapes(mnist_subset_dir: Path, tmp_path: Path) -> None:
    written = fetch_mnist(str(mnist_subset_dir), tmp_path / "raw", checksums="manifest")
    assert sorted(written) == sorted(MNIST_FILES)
    images = parse_idx((tmp_path / "raw" / "train-images-idx3-ubyte").read_bytes(), "x")
    labels = parse_idx((tmp_path / "raw" / "train-labels-idx1-ubyte").read_bytes(), "y")
    assert images.shape == (1500, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (1500,) and set(np.unique(labels)) == set(range(10))
    # The first training label of MNIST is a 5, the first test label a 7.
    assert labels[0] == 5
    assert parse_idx((tmp_path / "raw" / "t10k-labels-idx1-ubyte").read_bytes(), "t")[0] == 7


def test_raw_files_are_accepted_as_well_as_gzip(mnist_subset_dir: Path, tmp_path: Path) -> None:
    source = copy_subset(mnist_subset_dir, tmp_path / "src", raw=True)
    fetch_mnist(str(source), tmp_path / "out", checksums="manifest")
    assert len(list((tmp_path / "out").iterdir())) == 4


def test_subset_fails_official_checksum_naming_the_file(mnist_subset_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(MnistError, match="train-images-idx3-ubyte: SHA-256"):
        fetch_mnist(str(mnist_subset_dir), tmp_path / "out", checksums="official")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_gz_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _wrong_magic(path: Path) -> None:
    payload = bytearray(gzip.decompress(path.read_bytes()))
    payload[3] = 0x07
    path.write_bytes(gzip.compress(bytes(payload)))


def _flip_payload_byte(path: Path) -> None:
    payload = bytearray(gzip.decompress(path.read_bytes()))
    payload[5000] ^= 0x01  # one pixel changes: only the checksum can notice
    path.write_bytes(gzip.compress(bytes(payload)))


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_truncate, "truncated or corrupt"),
        (_flip_gz_byte, "train-images-idx3-ubyte"),
        (_wrong_magic, "wrong magic number"),
        (_flip_payload_byte, "SHA-256"),
        (lambda path: path.unlink(), "missing"),
    ],
    ids=["truncated-gz", "flipped-gz-byte", "wrong-magic", "flipped-payload-byte", "missing"],
)
def test_bad_input_names_the_file_and_leaves_no_output(mnist_subset_dir: Path, tmp_path: Path, corrupt, message) -> None:
    source = copy_subset(mnist_subset_dir, tmp_path / "src")
    corrupt(source / "train-images-idx3-ubyte.gz")
    output = tmp_path / "out"
    with pytest.raises(MnistError) as error:
        fetch_mnist(str(source), output, checksums="manifest")
    assert "train-images-idx3-ubyte" in str(error.value)
    assert message in str(error.value)
    assert not output.exists() or not any(output.iterdir())


def test_not_a_directory_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(MnistError, match="mnist_source"):
        fetch_mnist(str(tmp_path / "nowhere"), tmp_path / "out")


def test_manifest_parsing(mnist_subset_dir: Path) -> None:
    sums = read_manifest(mnist_subset_dir)
    assert set(sums) == set(MNIST_FILES)
    assert all(len(value) == 64 for value in sums.values())


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


def test_download_tries_mirrors_in_turn(mnist_subset_dir: Path, tmp_path: Path) -> None:
    served = copy_subset(mnist_subset_dir, tmp_path / "www" / "good")
    (tmp_path / "www" / "empty").mkdir()
    handler = lambda *a, **k: _QuietHandler(*a, directory=str(tmp_path / "www"), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        mirrors = (f"{base}/empty/", f"{base}/good/")
        fetch_mnist("download", tmp_path / "out", mirrors=mirrors, expected=read_manifest(served))
        assert len(list((tmp_path / "out").iterdir())) == 4
        with pytest.raises(MnistError, match="could not be downloaded from any mirror"):
            fetch_mnist("download", tmp_path / "out2", mirrors=(f"{base}/empty/",), expected=read_manifest(served))
        assert not (tmp_path / "out2").exists()
    finally:
        server.shutdown()


def test_validation_split_is_seeded_and_from_train_only(mnist28: Path) -> None:
    a = validation_index(1500, 100, seed=0)
    assert np.array_equal(a, validation_index(1500, 100, seed=0))
    assert not np.array_equal(a, validation_index(1500, 100, seed=1))
    assert len(np.unique(a)) == 100 and a.max() < 1500
    splits = load_splits(mnist28)
    assert len(splits.train_images) == 1400 and len(splits.val_images) == 100
    assert len(splits.test_images) == 500
    assert not set(splits.train_index) & set(a)


def test_cache_refuses_bad_val_size(mnist_subset_dir: Path, tmp_path: Path) -> None:
    fetch_mnist(str(mnist_subset_dir), tmp_path / "raw", checksums="manifest")
    with pytest.raises(ValueError, match="val_size"):
        build_cache(tmp_path / "raw", tmp_path / "c.npz", val_size=5000, seed=0)
    assert not (tmp_path / "c.npz").exists()


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="needs ../shared/data/mnist (real-data check)")
def test_official_files_match_their_checksums(tmp_path: Path) -> None:
    written = fetch_mnist(str(SHARED_MNIST), tmp_path, checksums="official")
    assert set(written) == set(OFFICIAL_SHA256)
    labels = parse_idx((tmp_path / "train-labels-idx1-ubyte").read_bytes(), "labels")
    assert np.bincount(labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
