"""CelebA at 32 x 32 from a user-supplied directory (never downloaded by the pipeline).

The directory holds the aligned face images (``img_align_celeba/*.jpg`` as distributed,
178 x 218 JPEGs, or the images directly). When ``list_eval_partition.txt`` is present
(beside the images or one level up) its split is used as the RG-Flow code uses it
(torchvision's ``CelebA(split='train' | 'test')``): partition 0 is the training set,
partition 2 the test set, and partition 1 is not used; the experiment holds its own
seeded validation split out of the training set. Without the file, the last
``test_fraction`` of the sorted file names is the test set.

Preprocessing follows RG-Flow's celeba32 transform: CenterCrop 148 (the box left 15,
top 35, right 163, bottom 183 of a 178 x 218 image) then Resize 32 (bilinear,
antialiased, on the PIL image). The random horizontal flip is a training-time
augmentation (:func:`random_flip`), not baked into the cache; the official code also
flips test images at random, the test BPD here is taken on the unflipped images.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from rgbench.io import save_npz_atomic
from rgbench.runtime import get_logger, progress

log = get_logger("celeba")

CROP = 148
SIZE = 32
EXTENSIONS = {".jpg", ".jpeg", ".png"}


def find_images(celeba_dir: str | os.PathLike) -> tuple[Path, list[str]]:
    """The image folder and its sorted image file names; a clear error when empty."""
    root = Path(celeba_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"celeba_dir {root} is not a directory; point rgflow.celeba_dir at the "
                                "folder holding img_align_celeba/ (or the images themselves)")
    folder = root / "img_align_celeba" if (root / "img_align_celeba").is_dir() else root
    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in EXTENSIONS)
    if not names:
        raise FileNotFoundError(f"no .jpg/.png images found in {folder}")
    return folder, names


def read_partition(root: Path, folder: Path) -> dict[str, int] | None:
    for candidate in (folder / "list_eval_partition.txt", root / "list_eval_partition.txt",
                      folder.parent / "list_eval_partition.txt"):
        if candidate.exists():
            split = {}
            for line in candidate.read_text().split("\n"):
                parts = line.split()
                if len(parts) == 2:
                    split[parts[0]] = int(parts[1])
            return split
    return None


def preprocess(path: str | os.PathLike) -> np.ndarray:
    """One image -> uint8 (32, 32, 3): CenterCrop 148 then Resize 32 (bilinear, antialiased)."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    with Image.open(path) as image:
        image = image.convert("RGB")
        if min(image.size) < CROP:
            raise ValueError(f"{path} is {image.size[0]}x{image.size[1]}; CelebA images must be at least "
                             f"{CROP} px on each side for the {CROP} px centre crop")
        image = TF.center_crop(image, [CROP, CROP])
        image = TF.resize(image, [SIZE, SIZE], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
        return np.asarray(image, dtype=np.uint8).copy()


def build_cache(celeba_dir: str | os.PathLike, output_npz: str | os.PathLike, limit: int | None = None,
                test_fraction: float = 0.1) -> dict[str, int]:
    """Write ``train_images`` / ``test_images`` (uint8 (N, 32, 32, 3)) and ``*_names``."""
    root = Path(celeba_dir)
    folder, names = find_images(root)
    partition = read_partition(root, folder)
    if partition is not None:
        test = [n for n in names if partition.get(n) == 2]
        train = [n for n in names if partition.get(n) == 0]
    else:
        n_test = max(1, int(round(len(names) * test_fraction))) if len(names) > 1 else 0
        train, test = names[:len(names) - n_test], names[len(names) - n_test:]
    if limit is not None:
        train, test = train[:limit], test[:max(1, limit // 10)]
    if not train or not test:
        raise ValueError(f"CelebA in {folder}: need both train and test images, got {len(train)} / {len(test)}")
    arrays = {}
    for split, chosen in (("train", train), ("test", test)):
        images = np.empty((len(chosen), SIZE, SIZE, 3), dtype=np.uint8)
        for i, name in enumerate(progress(chosen, desc=f"celeba {split}")):
            images[i] = preprocess(folder / name)
        arrays[f"{split}_images"] = images
        arrays[f"{split}_names"] = np.array(chosen)
    save_npz_atomic(output_npz, **arrays)
    log.info("CelebA cache %s: %d train, %d test", output_npz, len(train), len(test))
    return {"train": len(train), "test": len(test)}


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each (B, H, W, C) image left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], generator=generator, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(2), images)
