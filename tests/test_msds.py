"""MSDS1 / MSDS2 generators: determinism, sprite layout and factor statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rgbench.data.msds import CELL, SPRITES, generate, generate_dataset
from rgbench.io import load_npz


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a, fa = generate("msds1", 8, seed=5)
    b, fb = generate("msds1", 8, seed=5)
    c, _ = generate("msds1", 8, seed=6)
    assert a.tobytes() == b.tobytes() and np.array_equal(fa, fb)
    assert a.tobytes() != c.tobytes()


def test_chunking_does_not_change_the_bytes() -> None:
    a, _ = generate("msds2", 10, seed=1, chunk=3)
    b, _ = generate("msds2", 10, seed=1, chunk=10)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("variant", ["msds1", "msds2"])
def test_sixteen_sprites_drawn_in_their_cells(variant: str) -> None:
    images, factors = generate(variant, 50, seed=0)
    assert images.shape == (50, 32, 32, 3) and images.dtype == np.uint8
    assert factors.shape == (50, SPRITES, 6)
    for sprite in range(SPRITES):
        row, col = divmod(sprite, 4)
        x, y = factors[:, sprite, 0], factors[:, sprite, 1]
        # centre = cell centre + integer jitter in {-1, 0, 1}
        assert set(np.unique(x - (col * CELL + 4))) <= {-1.0, 0.0, 1.0}
        assert set(np.unique(y - (row * CELL + 4))) <= {-1.0, 0.0, 1.0}
        # the four pixels around the centre are fully covered: exactly the sprite colour
        for n in range(50):
            cx, cy = int(x[n]), int(y[n])
            patch = images[n, cy - 1:cy + 1, cx - 1:cx + 1].reshape(-1, 3)
            colour = factors[n, sprite, 3:].astype(np.uint8)
            assert (patch == colour).all()
    # black background: a pixel centre farther than 4.5 px (semi-major axis 3.5 plus the
    # anti-aliasing ramp) from every sprite centre is exactly 0
    centres = np.arange(32) + 0.5
    dx = centres[None, None, :, None] - factors[:, None, None, :, 0]
    dy = centres[None, :, None, None] - factors[:, None, None, :, 1]
    far = (np.hypot(dx, dy) > 4.5).all(axis=-1)
    assert far.sum() > 50 * 100
    assert (images[far] == 0).all()


def test_msds1_colour_shared_angles_independent() -> None:
    _, factors = generate("msds1", 2000, seed=1)
    colour = factors[..., 3:]
    spread = colour.max(axis=1) - colour.min(axis=1)  # per image, per channel
    assert spread.max() <= 64  # base + offsets in [-32, 32]
    base_estimate = colour.mean(axis=1)
    assert 10 <= base_estimate.min() and base_estimate.max() <= 245
    assert abs(colour.mean() - 127.5) < 3
    angle = factors[..., 2]
    assert angle.min() >= 0 and angle.max() < 180
    # independent angles: within-image spread is as wide as the marginal
    assert np.median(angle.max(axis=1) - angle.min(axis=1)) > 150


def test_msds2_angle_shared_colours_independent() -> None:
    _, factors = generate("msds2", 2000, seed=1)
    angle = factors[..., 2]
    assert (angle.max(axis=1) - angle.min(axis=1)).max() < 45
    assert angle.min() >= 0 and angle.max() < 225
    colour = factors[..., 3:]
    assert colour.min() == 0 and colour.max() == 255
    assert np.median(colour.max(axis=1) - colour.min(axis=1)) > 200
    assert abs(colour.mean() - 127.5) < 3


def test_dataset_file_and_bad_variant(tmp_path: Path) -> None:
    generate_dataset("msds1", 6, 4, seed=0, output_npz=tmp_path / "m.npz")
    data = load_npz(tmp_path / "m.npz")
    assert data["train_images"].shape == (6, 32, 32, 3) and data["test_images"].shape == (4, 32, 32, 3)
    assert data["factor_names"].tolist() == ["x", "y", "angle", "r", "g", "b"]
    assert data["train_images"].tobytes() != data["test_images"][:4].tobytes()
    with pytest.raises(ValueError, match="msds3"):
        generate_dataset("msds3", 2, 2, seed=0, output_npz=tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
