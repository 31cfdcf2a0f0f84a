"""The reference MNIST classifier: a small CNN that is the yardstick for every sample.

No pretrained weights may be downloaded, so the pipeline trains this network itself
(experiment ``reference_classifier``) and every generative model is judged through it:
its class probabilities give recognisability and conditional accuracy, its
penultimate-layer features give an MNIST analogue of FID.

The weights file carries its own architecture config, and a SHA-256 checksum is saved
beside it; :func:`load_reference_classifier` refuses a file whose checksum does not
match, so a sample-quality number can never silently come from other weights.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rgbench.io import file_sha256, write_bytes_atomic, write_text_atomic

IMAGE_SIZE = 28
NUM_CLASSES = 10
# MNIST training-set pixel mean / std on [0, 1]; fixed so the classifier's input
# scaling never depends on which images a caller happens to pass.
PIXEL_MEAN = 0.1307
PIXEL_STD = 0.3081


@dataclass
class ReferenceConfig:
    channels1: int
    channels2: int
    hidden: int
    dropout: float


class ReferenceCNN(nn.Module):
    """LeNet-class CNN: two 5x5 conv blocks (BN, ReLU, max-pool), a hidden layer, 10 logits.

    ``features`` is the hidden layer after its ReLU: the representation used for FID.
    """

    def __init__(self, config: ReferenceConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2 = config.channels1, config.channels2
        self.conv1 = nn.Conv2d(1, c1, 5, bias=False)  # 28 -> 24, pool -> 12
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 5, bias=False)  # 12 -> 8, pool -> 4
        self.bn2 = nn.BatchNorm2d(c2)
        self.fc1 = nn.Linear(c2 * 4 * 4, config.hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.fc2 = nn.Linear(config.hidden, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.features(x)))


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 28, 28) or (N, 32, 32) images -> normalised (N, 1, 28, 28) float32.

    uint8 images are read as 0..255; float (or other integer) images must lie in
    [0, 1]; bool images are ink (True) on background (False).

    32x32 images (the RGM's resolution) are resized back with the same antialiased
    bilinear filter the data layer used to make them.
    """
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 3 or array.shape[1] != array.shape[2] or array.shape[1] not in (28, 32):
        raise ValueError(f"expected images of shape (N, 28, 28) or (N, 32, 32), got {array.shape}")
    if array.dtype == np.bool_:  # binary samples: True is ink
        array = array.astype(np.float32)
    if array.dtype == np.uint8:
        x = torch.from_numpy(array.astype(np.float32) / 255.0)
    elif np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer):
        x = torch.from_numpy(array.astype(np.float32))
        if not torch.isfinite(x).all():
            raise ValueError("images contain NaN or infinite values")
        low, high = float(x.min()), float(x.max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise ValueError(f"float images must lie in [0, 1] (uint8 for 0..255), got range [{low:.3g}, {high:.3g}]")
    else:
        raise TypeError(f"unsupported image dtype {array.dtype}")
    x = x.unsqueeze(1)
    if x.shape[-1] != IMAGE_SIZE:
        x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False, antialias=True)
    return normalise(x)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by an integer offset in [-max_shift, max_shift] (zero fill).

    Draws from torch's global RNG unless ``generator`` is given, so a resumed training
    run (which restores the global RNG state) sees the same shifts.
    """
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    background = (0.0 - PIXEL_MEAN) / PIXEL_STD
    padded = F.pad(x, (max_shift,) * 4, value=background)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).to(x.device)
    rows = offsets[0].view(n, 1, 1) + torch.arange(h, device=x.device).view(1, h, 1)
    cols = offsets[1].view(n, 1, 1) + torch.arange(w, device=x.device).view(1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded[batch, 0, rows, cols].unsqueeze(1)


def outlier_images(n: int, device: torch.device | str = "cpu",
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` non-digit images in [0, 1], shape (n, 1, 28, 28), from three noise families.

    Used for outlier exposure: trained to give them a uniform class distribution, the
    classifier stops calling pixel noise an "8" with 99% confidence (plain CNNs do), so
    ``recognisable_fraction`` means something for weak generators. The families, drawn
    per image: uniform pixel noise; binary noise of random density; smooth blobs
    (7x7 noise upsampled and thresholded into stroke-like shapes). The
    independent-pixel baselines are deliberately *not* among them, so their scores
    check the classifier on noise it was never shown.
    """
    g = dict(generator=generator)
    uniform = torch.rand(n, 1, IMAGE_SIZE, IMAGE_SIZE, **g)
    density = 0.02 + 0.48 * torch.rand(n, 1, 1, 1, **g)
    binary = (torch.rand(n, 1, IMAGE_SIZE, IMAGE_SIZE, **g) < density).float()
    coarse = F.interpolate(torch.rand(n, 1, 7, 7, **g), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear",
                           align_corners=False)
    level = 0.3 + 0.4 * torch.rand(n, 1, 1, 1, **g)
    blobs = ((coarse - level) * 5).clamp(0, 1)
    family = torch.randint(0, 3, (n, 1, 1, 1), **g)
    images = torch.where(family == 0, uniform, torch.where(family == 1, binary, blobs))
    return images.to(device)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixels -> the classifier's input scale."""
    return (x - PIXEL_MEAN) / PIXEL_STD


class ReferenceClassifier:
    """A trained :class:`ReferenceCNN` in eval mode with numpy in, numpy out."""

    def __init__(self, model: ReferenceCNN, device: str | torch.device = "cpu", batch_size: int = 1000,
                 sha256: str | None = None) -> None:
        self.device = torch.device(device)
        self.sha256 = sha256  # of the weights file, when loaded from one
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def _run(self, images: np.ndarray, head: str) -> np.ndarray:
        x = to_input(images)
        outputs = []
        for start in range(0, len(x), self.batch_size):
            batch = x[start:start + self.batch_size].to(self.device)
            if head == "proba":
                out = torch.softmax(self.model(batch).double(), dim=1)
            else:
                out = self.model.features(batch).double()
            outputs.append(out.cpu().numpy())
        width = NUM_CLASSES if head == "proba" else self.model.config.hidden
        return np.concatenate(outputs) if outputs else np.zeros((0, width))

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """(N, 10) class probabilities (float64, rows sum to 1)."""
        return self._run(images, "proba")

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.predict_proba(images).argmax(axis=1)

    def features(self, images: np.ndarray) -> np.ndarray:
        """(N, D) penultimate-layer features (float64), D = config.hidden."""
        return self._run(images, "features")


def checksum_path(path: str | os.PathLike) -> Path:
    return Path(f"{path}.sha256")


def save_reference_classifier(model: ReferenceCNN, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> str:
    """Write the weights (with their config) atomically, then ``<path>.sha256``; return the hex digest."""
    # contiguous: the file (and its checksum) never depends on the memory format trained in
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    payload = {"config": asdict(model.config), "state_dict": state, "extra": dict(extra or {})}
    # Serialise in memory: torch.save names the zip's root folder after the file it writes,
    # so saving straight to a random temporary name would make the checksum random too.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(path, buffer.getvalue())
    digest = file_sha256(path)
    write_text_atomic(checksum_path(path), f"{digest}  {Path(path).name}\n")
    return digest


class ChecksumError(RuntimeError):
    """The reference weights do not match the checksum saved beside them."""


def load_reference_classifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> ReferenceClassifier:
    """Load the reference classifier after checking the SHA-256 saved beside the weights."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: reference classifier weights not found; run `snakemake reference_classifier`")
    sums = checksum_path(path)
    if not sums.exists():
        raise ChecksumError(f"{sums}: missing; the reference weights cannot be verified. "
                            "Re-run `snakemake reference_classifier` to retrain them")
    expected = sums.read_text().split()[0].lower()
    actual = file_sha256(path)
    if actual != expected:
        raise ChecksumError(f"{path}: SHA-256 is {actual} but {sums.name} says {expected}; the weights were "
                            "altered or truncated. Delete both files and re-run `snakemake reference_classifier`")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    model = ReferenceCNN(ReferenceConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return ReferenceClassifier(model, device=device, sha256=actual)
