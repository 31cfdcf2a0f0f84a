"""Multi-scale sprite datasets MSDS1 and MSDS2 (RG-Flow, seed 004), seeded and vectorised.

Each 32x32 RGB image has 16 sprites on a 4x4 grid of 8x8 cells: a horizontal pill
(ellipse ~7 px wide, ~3 px tall) rotated about its cell centre, shifted by an integer
jitter in {-1, 0, 1}, drawn with anti-aliased edges on a black background.

* MSDS1: one base colour per image, each sprite's colour = base + a small offset;
  angles independent (the fine-scale factor varies, the coarse one is shared).
* MSDS2: one base angle per image, each sprite's angle = base + [0, 45); colours
  independent (the reverse split of scales).

The factors are drawn for the whole dataset first from ``numpy.random.default_rng``
and rendering is deterministic, so the bytes depend only on the seed, not on chunking.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from rgbench.io import save_npz_atomic

IMAGE_SIZE = 32
GRID = 4
CELL = IMAGE_SIZE // GRID
SPRITES = GRID * GRID
SEMI_MAJOR = 3.5  # half of the 7 px width
SEMI_MINOR = 1.5  # half of the 3 px height
# Each sprite is rendered in a window around its cell wide enough for the jitter and
# the anti-aliasing ramp; the image is padded by MARGIN so windows never index outside.
MARGIN = 2
WINDOW = CELL + 2 * MARGIN
FACTOR_NAMES = ("x", "y", "angle", "r", "g", "b")


@dataclass(frozen=True)
class SpriteFactors:
    """Per-sprite factors, each (N, 16): centre x/y in pixels, angle in degrees, colour."""

    x: np.ndarray
    y: np.ndarray
    angle: np.ndarray
    colour: np.ndarray  # (N, 16, 3) uint8

    def stacked(self) -> np.ndarray:
        """(N, 16, 6) float32 array in FACTOR_NAMES order."""
        return np.concatenate(
            [self.x[..., None], self.y[..., None], self.angle[..., None], self.colour.astype(np.float32)], axis=-1
        ).astype(np.float32)


def _cell_centres() -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.divmod(np.arange(SPRITES), GRID)
    return cols * CELL + CELL / 2, rows * CELL + CELL / 2


def draw_factors(variant: str, n: int, rng: np.random.Generator) -> SpriteFactors:
    """Draw the factors of ``n`` images of MSDS1 or MSDS2."""
    jitter = rng.integers(-1, 2, size=(n, SPRITES, 2))
    cx, cy = _cell_centres()
    x = (cx[None, :] + jitter[..., 0]).astype(np.float32)
    y = (cy[None, :] + jitter[..., 1]).astype(np.float32)
    if variant == "msds1":
        base_colour = rng.integers(32, 224, size=(n, 1, 3))
        offset = rng.integers(-32, 33, size=(n, SPRITES, 3))
        colour = np.clip(base_colour + offset, 0, 255).astype(np.uint8)
        angle = rng.uniform(0.0, 180.0, size=(n, SPRITES))
    elif variant == "msds2":
        base_angle = rng.uniform(0.0, 180.0, size=(n, 1))
        angle = base_angle + rng.uniform(0.0, 45.0, size=(n, SPRITES))
        colour = rng.integers(0, 256, size=(n, SPRITES, 3)).astype(np.uint8)
    else:
        raise ValueError(f"unknown MSDS variant {variant!r}; expected 'msds1' or 'msds2'")
    return SpriteFactors(x=x, y=y, angle=angle.astype(np.float32), colour=colour)


def _window_coverage(dx: np.ndarray, dy: np.ndarray, angle_deg: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a rotated ellipse at pixel offsets (dx, dy).

    Uses the first-order signed distance g / |grad g| of g = (u/a)^2 + (v/b)^2 - 1,
    with a one-pixel linear ramp across the edge.
    """
    theta = np.deg2rad(angle_deg)[..., None, None]
    cos, sin = np.cos(theta), np.sin(theta)
    u = dx * cos + dy * sin
    v = -dx * sin + dy * cos
    g = (u / SEMI_MAJOR) ** 2 + (v / SEMI_MINOR) ** 2 - 1.0
    grad = 2.0 * np.sqrt((u / SEMI_MAJOR**2) ** 2 + (v / SEMI_MINOR**2) ** 2)
    distance = g / np.maximum(grad, 1e-6)
    return np.clip(0.5 - distance, 0.0, 1.0)


def render(factors: SpriteFactors, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Render images ``start:stop`` as (n, 32, 32, 3) uint8, compositing sprites in order."""
    stop = len(factors.x) if stop is None else stop
    n = stop - start
    canvas = np.zeros((n, IMAGE_SIZE + 2 * MARGIN, IMAGE_SIZE + 2 * MARGIN, 3), dtype=np.float32)
    offsets = np.arange(WINDOW, dtype=np.float32) + 0.5  # pixel centres within a window
    for sprite in range(SPRITES):
        row, col = divmod(sprite, GRID)
        top, left = row * CELL, col * CELL  # window origin in padded coordinates
        # Window pixel centre in image coordinates is (left - MARGIN + offset).
        px = left - MARGIN + offsets
        py = top - MARGIN + offsets
        dx = px[None, None, :] - factors.x[start:stop, sprite, None, None]
        dy = py[None, :, None] - factors.y[start:stop, sprite, None, None]
        alpha = _window_coverage(dx, dy, factors.angle[start:stop, sprite])[..., None]
        colour = factors.colour[start:stop, sprite].astype(np.float32)[:, None, None, :]
        window = canvas[:, top:top + WINDOW, left:left + WINDOW]
        canvas[:, top:top + WINDOW, left:left + WINDOW] = window * (1.0 - alpha) + colour * alpha
    image = canvas[:, MARGIN:MARGIN + IMAGE_SIZE, MARGIN:MARGIN + IMAGE_SIZE]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def generate(variant: str, n: int, seed: int, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Generate ``n`` images of ``variant``; returns (images uint8 (n,32,32,3), factors (n,16,6))."""
    factors = draw_factors(variant, n, np.random.default_rng(seed))
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for start in range(0, n, chunk):
        images[start:start + chunk] = render(factors, start, min(start + chunk, n))
    return images, factors.stacked()


def generate_dataset(variant: str, n_train: int, n_test: int, seed: int, output_npz: str | os.PathLike) -> None:
    """Write ``{train,test}_{images,factors}`` for one variant; train and test use
    independent streams derived from ``seed``."""
    variant_id = {"msds1": 1, "msds2": 2}.get(variant)
    if variant_id is None:
        raise ValueError(f"unknown MSDS variant {variant!r}; expected 'msds1' or 'msds2'")
    train_images, train_factors = generate(variant, n_train, seed=[seed, variant_id, 0])
    test_images, test_factors = generate(variant, n_test, seed=[seed, variant_id, 1])
    save_npz_atomic(
        output_npz,
        train_images=train_images,
        train_factors=train_factors,
        test_images=test_images,
        test_factors=test_factors,
        factor_names=np.array(FACTOR_NAMES),
    )
