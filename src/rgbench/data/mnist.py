"""MNIST: fetch (official mirrors or a local directory), verify, parse IDX, cache.

Each file is checked by the SHA-256 of its *decompressed* payload, so a recompressed
but identical copy passes and a truncated or altered one fails with a message that
names the file and says how to fix it. All four files are verified before any output
is written, so a failure leaves nothing half-done behind.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rgbench.io import save_npz_atomic, write_bytes_atomic
from rgbench.runtime import get_logger

log = get_logger("mnist")

# SHA-256 of the decompressed payloads of the official files.
OFFICIAL_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MNIST_FILES = tuple(OFFICIAL_SHA256)

# Tried in turn; the first that serves a file with the right checksum wins.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
LOCAL_FIX = "set mnist_source to a directory holding the four MNIST files (.gz or raw), e.g. --config mnist_source=DIR"


class MnistError(RuntimeError):
    """A MNIST file is missing, corrupt or not what it claims to be."""


def decompress(data: bytes, name: str) -> bytes:
    """Gunzip ``data`` if it is gzip, else return it; a broken archive names the file."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as error:
        raise MnistError(
            f"{name}: the gzip archive is truncated or corrupt ({error}); "
            f"replace the file with an intact copy, or {LOCAL_FIX}"
        ) from error


def parse_idx(payload: bytes, name: str) -> np.ndarray:
    """Parse an IDX image (magic 2051) or label (magic 2049) payload into uint8 arrays."""
    if len(payload) < 8:
        raise MnistError(f"{name}: only {len(payload)} bytes, too short for an IDX header")
    magic, count = struct.unpack(">II", payload[:8])
    if magic == IMAGE_MAGIC:
        if len(payload) < 16:
            raise MnistError(f"{name}: truncated IDX image header")
        rows, cols = struct.unpack(">II", payload[8:16])
        expected = 16 + count * rows * cols
        shape: tuple[int, ...] = (count, rows, cols)
        offset = 16
    elif magic == LABEL_MAGIC:
        expected = 8 + count
        shape = (count,)
        offset = 8
    else:
        raise MnistError(
            f"{name}: wrong magic number {magic} (expected {IMAGE_MAGIC} for images or "
            f"{LABEL_MAGIC} for labels); this is not an MNIST IDX file"
        )
    if len(payload) != expected:
        raise MnistError(f"{name}: {len(payload)} bytes but the IDX header implies {expected}; "
                         "the file is truncated or padded")
    return np.frombuffer(payload, dtype=np.uint8, offset=offset).reshape(shape).copy()


def expected_magic(name: str) -> int:
    return IMAGE_MAGIC if "images" in name else LABEL_MAGIC


def verify_payload(payload: bytes, name: str, expected_sha256: str | None) -> np.ndarray:
    """Check the payload's hash (when one is expected) and structure; return the array."""
    array = parse_idx(payload, name)
    magic = struct.unpack(">I", payload[:4])[0]
    if magic != expected_magic(name):
        raise MnistError(f"{name}: holds {'images' if magic == IMAGE_MAGIC else 'labels'} "
                         "but its name says otherwise")
    if expected_sha256 is not None:
        digest = hashlib.sha256(payload).hexdigest()
        if digest != expected_sha256:
            raise MnistError(
                f"{name}: SHA-256 of the decompressed payload is {digest}, expected "
                f"{expected_sha256}; the file is corrupt or not the official MNIST file. "
                f"Replace it with an intact copy, or {LOCAL_FIX}"
            )
    return array


def read_manifest(directory: Path) -> dict[str, str]:
    """Read a ``SHA256SUMS`` file (``<hex>  <name>`` lines; ``#`` comments allowed)."""
    manifest = directory / "SHA256SUMS"
    if not manifest.exists():
        raise MnistError(f"{manifest}: missing; mnist_checksums=manifest needs a SHA256SUMS file "
                         "in the MNIST directory")
    sums: dict[str, str] = {}
    for line in manifest.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, filename = line.split()[:2]
        sums[filename.lstrip("*").removesuffix(".gz")] = digest.lower()
    return sums


def expected_checksums(checksums: str, directory: Path | None) -> dict[str, str]:
    if checksums == "official":
        return dict(OFFICIAL_SHA256)
    if checksums == "manifest":
        if directory is None:
            raise MnistError("mnist_checksums=manifest needs mnist_source to be a directory")
        sums = read_manifest(directory)
        missing = [name for name in MNIST_FILES if name not in sums]
        if missing:
            raise MnistError(f"{directory / 'SHA256SUMS'}: no checksum for {missing}")
        return sums
    raise ValueError(f"mnist_checksums must be 'official' or 'manifest', got {checksums!r}")


def check_source(directory: Path, expected: dict[str, str] | None = None) -> None:
    """Fail at once, naming the file and the fix, unless ``directory`` holds all four
    files and (when ``expected`` is given) each decompresses to the expected SHA-256.

    The workflow calls this while it builds the DAG, so bad data stops a run before any
    job starts (about a second for full MNIST)."""
    if not directory.is_dir():
        raise MnistError(f"mnist_source {str(directory)!r} is neither 'download' nor an existing directory; "
                         f"{LOCAL_FIX}")
    for name in MNIST_FILES:
        if not (directory / f"{name}.gz").exists() and not (directory / name).exists():
            raise MnistError(f"{directory / name}[.gz]: missing; put the four MNIST files in {directory} "
                             "or set mnist_source to the directory that holds them")
    if expected is not None:
        for name in MNIST_FILES:
            verify_payload(read_local(directory, name), str(directory / name), expected[name])


def read_local(directory: Path, name: str) -> bytes:
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.exists():
            return decompress(candidate.read_bytes(), str(candidate))
    raise MnistError(f"{directory / name}[.gz]: missing; put the four MNIST files in {directory} "
                     f"or set mnist_source to the directory that holds them")


def download(name: str, expected_sha256: str, mirrors: tuple[str, ...] = MIRRORS, timeout: float = 60.0) -> bytes:
    errors = []
    for mirror in mirrors:
        url = f"{mirror}{name}.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read()
            payload = decompress(data, url)
            verify_payload(payload, url, expected_sha256)
            log.info("downloaded %s from %s", name, mirror)
            return payload
        except (urllib.error.URLError, OSError, MnistError) as error:
            errors.append(f"{url}: {error}")
            log.warning("mirror failed for %s: %s", name, error)
    raise MnistError(f"{name}: could not be downloaded from any mirror ({'; '.join(errors)}). "
                     f"Without internet access, {LOCAL_FIX}")


def fetch_mnist(source: str, output_dir: str | os.PathLike, checksums: str = "official",
                mirrors: tuple[str, ...] = MIRRORS, expected: dict[str, str] | None = None) -> dict[str, Path]:
    """Bring the four MNIST files into ``output_dir`` as verified raw IDX files.

    ``source`` is ``download`` (``mirrors`` tried in turn) or a directory. ``expected``
    ({file name: SHA-256}; the mnist_fetch rule's config hand-off) overrides the checksums
    chosen by ``checksums``. Nothing is written until all four files have passed their checks.
    """
    directory = None if source == "download" else Path(source)
    if directory is not None and not directory.is_dir():
        raise MnistError(f"mnist_source {source!r} is neither 'download' nor an existing directory; {LOCAL_FIX}")
    sums = expected if expected is not None else expected_checksums(checksums, directory)
    payloads = {}
    for name in MNIST_FILES:
        if directory is None:
            payloads[name] = download(name, sums[name], mirrors)
        else:
            payload = read_local(directory, name)
            verify_payload(payload, str(directory / name), sums[name])
            payloads[name] = payload
    written = {}
    output = Path(output_dir)
    for name, payload in payloads.items():
        write_bytes_atomic(output / name, payload)
        written[name] = output / name
    return written


def load_raw(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """Parse verified raw files into ``{train,test}_{images,labels}`` arrays."""
    directory = Path(directory)
    arrays = {name: parse_idx((directory / name).read_bytes(), str(directory / name)) for name in MNIST_FILES}
    data = {
        "train_images": arrays["train-images-idx3-ubyte"],
        "train_labels": arrays["train-labels-idx1-ubyte"],
        "test_images": arrays["t10k-images-idx3-ubyte"],
        "test_labels": arrays["t10k-labels-idx1-ubyte"],
    }
    for split in ("train", "test"):
        if len(data[f"{split}_images"]) != len(data[f"{split}_labels"]):
            raise MnistError(f"{split}: {len(data[f'{split}_images'])} images but "
                             f"{len(data[f'{split}_labels'])} labels")
    return data


def validation_index(n_train: int, val_size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded validation split taken from the training set only."""
    if not 0 <= val_size < n_train:
        raise ValueError(f"val_size must be in [0, {n_train}), got {val_size}")
    return np.sort(np.random.default_rng(seed).choice(n_train, size=val_size, replace=False)).astype(np.int64)


def build_cache(raw_dir: str | os.PathLike, output_npz: str | os.PathLike, val_size: int, seed: int) -> dict[str, np.ndarray]:
    """Cache 28x28 MNIST in original order plus the validation indices (uint8/int64)."""
    data = load_raw(raw_dir)
    data["val_index"] = validation_index(len(data["train_labels"]), val_size, seed)
    save_npz_atomic(output_npz, **data)
    return data


@dataclass
class MnistSplits:
    """The cached arrays with the train/validation split applied (original order kept)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    train_index: np.ndarray  # positions of the train split within the original 60k


def train_mask(n_train: int, val_index: np.ndarray) -> np.ndarray:
    mask = np.ones(n_train, dtype=bool)
    mask[val_index] = False
    return mask


def load_splits(cache_npz: str | os.PathLike, limit_train: int | None = None, limit_test: int | None = None) -> MnistSplits:
    """Load the 28x28 cache; ``limit_*`` keep the first N images (for quick presets)."""
    from rgbench.io import load_npz

    data = load_npz(cache_npz)
    keep = train_mask(len(data["train_labels"]), data["val_index"])
    train_index = np.flatnonzero(keep)
    if limit_train:
        train_index = train_index[:limit_train]
    test_stop = limit_test or len(data["test_labels"])
    return MnistSplits(
        train_images=data["train_images"][train_index],
        train_labels=data["train_labels"][train_index],
        val_images=data["train_images"][data["val_index"]],
        val_labels=data["train_labels"][data["val_index"]],
        test_images=data["test_images"][:test_stop],
        test_labels=data["test_labels"][:test_stop],
        train_index=train_index,
    )
