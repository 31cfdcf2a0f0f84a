"""MSDS1 / MSDS2: bit-exact with the official renderings, seeded factors, the dataset file."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from rgbench.data import msds
from rgbench.io import load_npz

FIXTURE = Path(__file__).parent / "data" / "msds_official_sha256.json"


def sha256(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def official() -> dict:
    return json.loads(FIXTURE.read_text())


def test_renderings_equal_the_official_code_bit_for_bit(official: dict) -> None:
    """The fixture's SHA-256s come from the official generators run on these factors."""
    entries = official["images"]
    assert len(entries) >= 30 and {e["variant"] for e in entries} == {"msds1", "msds2"}
    factors = np.array([e["factors"] for e in entries], dtype=np.float64)
    expected = [e["sha256"] for e in entries]
    assert [sha256(image) for image in msds.render(factors)] == expected
    assert [sha256(image) for image in msds.render_with_pillow(factors)] == expected
    # The fixture covers the rotate fast paths (0, 90, 180 degrees) and canvas clipping.
    angles = factors[..., 2]
    assert {0.0, 90.0, 180.0} <= set(angles.ravel().tolist())
    assert factors[..., :2].min() == -1 and factors[..., 0].max() == 25


def test_factor_layout_is_the_official_label_layout(official: dict) -> None:
    """Official labels[i, j] = [x, y, angle, r, g, b] of sprite k = 4 i + j (the angle column
    is left out: the official run was given the angle at rotate(), its label column saw 0)."""
    for entry in official["images"]:
        factors = np.array(entry["factors"], dtype=np.float64)
        labels = np.array(entry["official_labels"]).reshape(msds.SPRITES, 6)
        assert np.array_equal(labels[:, [0, 1, 3, 4, 5]], factors[:, [0, 1, 3, 4, 5]]), entry["note"]


def test_first_default_images_are_the_fixture_ones(official: dict) -> None:
    """The fixture's first tuples are what the default config's generator draws, and a
    smaller dataset is a prefix of a larger one."""
    for variant in ("msds1", "msds2"):
        drawn = msds.seeded_factors(variant, 3, [2020, msds.VARIANTS[variant], 0])
        assert np.array_equal(drawn, msds.seeded_factors(variant, 2 * msds.BLOCK + 5,
                                                         [2020, msds.VARIANTS[variant], 0])[:3])
        stored = [e["factors"] for e in official["images"] if e["note"].startswith(f"config seed 2020 {variant}")]
        assert np.array_equal(drawn, np.array(stored[:3], dtype=np.float64))


@pytest.mark.parametrize("variant,seed", [("msds1", 11), ("msds2", 12)])
def test_numpy_renderer_equals_pillow_on_random_factors(variant: str, seed: int) -> None:
    factors = msds.draw_factors(variant, 150, np.random.default_rng(seed))
    assert np.array_equal(msds.render(factors, chunk=64), msds.render_with_pillow(factors))


def test_shortcut_equals_the_exact_band_arithmetic() -> None:
    """trunc(c * S) with the near-integer fallback == Pillow's order of operations per band."""
    factors = msds.draw_factors("msds2", 64, np.random.default_rng(3))
    angles, colours = factors[..., 2].ravel(), factors[..., 3:].reshape(-1, 3)
    # Angles on a coarse grid give many exact-integer band values: the fallback is used.
    angles[::3] = np.round(angles[::3] / 15) * 15
    tiles = msds.rotated_tiles(angles, colours)
    geometry = msds._TileGeometry(msds.inverse_affine(angles))
    tile, pixel = np.nonzero(geometry.inside)
    scales = np.concatenate([colours, np.full((len(colours), 1), 255)], axis=1)
    exact = np.stack([msds._truncate(geometry.interpolate(scales[tile, band], tile, pixel)) for band in range(4)],
                     axis=1)
    alpha = exact[:, 3:]
    partial = (alpha > 0) & (alpha < 255)
    exact[:, :3] = np.where(partial, np.minimum(255, 255 * exact[:, :3] // np.maximum(alpha, 1)), exact[:, :3])
    assert np.array_equal(tiles[tile, pixel], exact)
    assert not tiles[~geometry.inside].any()


def test_ellipse_mask_and_rotation_matrix_follow_pillow() -> None:
    from PIL import Image, ImageDraw

    tile = Image.new("RGBA", (8, 8), (255, 255, 255, 0))
    ImageDraw.Draw(tile).ellipse(msds.ELLIPSE_BOX, (10, 20, 30, 255))
    assert np.array_equal(np.asarray(tile)[..., 3] // 255, msds.ELLIPSE) and msds.ELLIPSE.sum() == 17
    angles = np.random.default_rng(0).random(2000) * 225
    matrices = msds.inverse_affine(angles)
    for angle, matrix in zip(angles.tolist(), matrices.tolist()):
        theta = -math.radians(angle % 360.0)
        cos, sin = round(math.cos(theta), 15), round(math.sin(theta), 15)
        assert matrix == [cos, sin, cos * -4.0 + sin * -4.0 + 0.0 + 4.0,
                          round(-math.sin(theta), 15), cos, round(-math.sin(theta), 15) * -4.0 + cos * -4.0 + 4.0]


def test_same_seed_same_bytes_other_seed_other_bytes_any_chunk() -> None:
    a, fa = msds.generate("msds1", 40, seed=5, chunk=7)
    b, fb = msds.generate("msds1", 40, seed=5, chunk=40)
    c, _ = msds.generate("msds1", 40, seed=6)
    assert a.tobytes() == b.tobytes() and np.array_equal(fa, fb)
    assert a.tobytes() != c.tobytes()


def test_sprite_positions_are_the_grid_corners_plus_jitter() -> None:
    factors = msds.draw_factors("msds2", 500, np.random.default_rng(2))
    column, row = msds.sprite_cells()
    assert column.tolist()[:5] == [0, 0, 0, 0, 1] and row.tolist()[:5] == [0, 1, 2, 3, 0]
    dx, dy = factors[..., 0] - 8 * column, factors[..., 1] - 8 * row
    assert set(np.unique(dx)) == set(np.unique(dy)) == {-1.0, 0.0, 1.0}
    assert abs(float(np.mean(dx == 0)) - 1 / 3) < 0.02


def test_msds1_colour_shared_angles_independent() -> None:
    factors = msds.draw_factors("msds1", 4000, np.random.default_rng(1))
    colour = factors[..., 3:]
    assert np.array_equal(colour, np.round(colour))
    spread = colour.max(axis=1) - colour.min(axis=1)  # per image and channel: offsets in -32..32
    assert spread.max() <= 64 and np.median(spread) > 50
    assert colour.min() >= 0 and colour.max() <= 255 and abs(colour.mean() - 127.5) < 2
    angle = factors[..., 2]
    assert angle.min() >= 0 and angle.max() < 180
    assert np.median(angle.max(axis=1) - angle.min(axis=1)) > 150  # independent per sprite
    assert len(np.unique(angle)) == angle.size  # a continuous factor


def test_msds2_angle_shared_colours_independent() -> None:
    factors = msds.draw_factors("msds2", 4000, np.random.default_rng(1))
    angle = factors[..., 2]
    assert (angle.max(axis=1) - angle.min(axis=1)).max() < 45
    assert angle.min() >= 0 and angle.max() < 225 and angle.max() > 200  # not reduced mod 180
    colour = factors[..., 3:]
    assert colour.min() == 0 and colour.max() == 255
    assert np.median(colour.max(axis=1) - colour.min(axis=1)) > 200
    assert abs(colour.mean() - 127.5) < 2


def test_dataset_file_bad_variant_and_bad_factors(tmp_path: Path) -> None:
    msds.generate_dataset("msds1", 6, 4, seed=0, output_npz=tmp_path / "m.npz")
    data = load_npz(tmp_path / "m.npz")
    assert data["train_images"].shape == (6, 32, 32, 3) and data["test_images"].dtype == np.uint8
    assert data["train_factors"].shape == (6, 16, 6) and data["train_factors"].dtype == np.float64
    assert data["factor_names"].tolist() == ["x", "y", "angle", "r", "g", "b"]
    assert np.array_equal(msds.render(data["test_factors"]), data["test_images"])
    assert data["train_images"][:4].tobytes() != data["test_images"].tobytes()  # independent streams
    with pytest.raises(ValueError, match="msds3"):
        msds.generate_dataset("msds3", 2, 2, seed=0, output_npz=tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
    factors = data["train_factors"].copy()
    factors[0, 5, 0] += 3
    with pytest.raises(ValueError, match="positions"):
        msds.render(factors)
    with pytest.raises(ValueError, match="colours"):
        msds.render(np.where(np.arange(6) == 3, 256.0, data["train_factors"]))
    with pytest.raises(ValueError, match=r"\(n, 16, 6\)"):
        msds.render(data["train_factors"][:, :8])
