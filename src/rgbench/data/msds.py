"""Multi-scale sprite datasets MSDS1 and MSDS2 as the RG-Flow authors render them.

The official generators (hongyehu/RG-Flow, ``code/msds/generate_msds{1,2}.py``) draw each
32x32 RGB image with Pillow: a black canvas and 16 sprites on a 4x4 grid. For the sprite
in grid column ``i`` and row ``j`` (column outer, so sprite ``k = 4 i + j``) they

1. make an 8x8 RGBA tile of transparent white and draw the ellipse box (1, 3, 7, 5) in
   the opaque sprite colour (a 17-pixel mask, :data:`ELLIPSE`),
2. rotate the tile by the sprite's angle in degrees, bicubic, about the tile centre,
3. paste it at top-left corner ``(8 i + dx, 8 j + dy)``, dx, dy in {-1, 0, 1}, with its
   own alpha as the mask, in the order k = 0..15 (neighbouring tiles overlap).

Factors (the same distributions as the official scripts, drawn here from a seeded
``numpy.random.Generator`` instead of Python's unseeded ``random``):

* MSDS1: one base colour per image, each channel uniform in 32..223; each sprite adds an
  independent integer in -32..32 per channel. Angles independent, ``u * 180``, u in [0, 1).
* MSDS2: one base angle per image ``u0 * 180``; each sprite's angle is the base plus
  ``u * 45`` (not reduced mod 180: the ellipse is off-centre in its tile, so theta and
  theta + 180 differ). Colours independent, each channel uniform in 0..255.

The factor of sprite k is ``[x, y, angle, r, g, b]`` (:data:`FACTOR_NAMES`): the paste
position (the tile's top-left corner, as the official label arrays store it), the angle
as the float64 handed to the rotation, and the colour. For the same factor values the
image equals the official one bit for bit: :func:`render_with_pillow` makes the official
Pillow calls; :func:`render` (what the pipeline uses) reproduces Pillow's arithmetic in
numpy, about twice as fast; tests check both against SHA-256s of the official code's
own renderings (tests/data/msds_official_sha256.json) and against each other.

Pillow's arithmetic, as :func:`render` follows it (Pillow 9.1 to 13, x86-64):

* ``rotate`` maps each output pixel centre back into the tile with the inverse affine
  matrix, whose entries are ``round(cos, 15)`` / ``round(sin, 15)`` of ``-radians(angle)``
  (Python's math and decimal rounding, so it is computed with them here too).
* An RGBA tile is premultiplied (RGBa), interpolated band by band with the a = -1 cubic
  (rows first, then the column, in double precision), clamped to [0, 255] and
  truncated, then un-premultiplied with integer division. Pixels mapped outside the
  tile are 0.
* ``paste`` blends each channel as DIV255(out * (255 - alpha) + in * alpha).

The tile's bands are ``c * mask``, so every band's interpolant is ``c`` times the
colour-1 interpolant S up to rounding (< 1e-12 here). :func:`render` computes S once per
pixel and takes ``trunc(c * S)``; only where ``c * S`` lies within :data:`EXACT_MARGIN`
of an integer can the rounding change the truncated value, and there it recomputes the
band in Pillow's exact order of operations.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Sequence

import numpy as np

from rgbench.io import save_npz_atomic
from rgbench.runtime import get_logger, progress

log = get_logger("msds")

IMAGE_SIZE = 32
GRID = 4
TILE = 8
SPRITES = GRID * GRID
VARIANTS = {"msds1": 1, "msds2": 2}  # variant -> stream id of its seed
FACTOR_NAMES = ("x", "y", "angle", "r", "g", "b")
ELLIPSE_BOX = (1, 3, 7, 5)  # the official ImageDraw.ellipse box
# The pixels Pillow sets for ELLIPSE_BOX (not antialiased; the same from Pillow 9.1 to 13,
# checked against ImageDraw by a test): rows 3 and 5 cover columns 2-6, row 4 columns 1-7.
ELLIPSE = np.zeros((TILE, TILE), dtype=np.int64)
ELLIPSE[3, 2:7] = ELLIPSE[5, 2:7] = ELLIPSE[4, 1:8] = 1
# Near an integer, c * S and Pillow's own evaluation may truncate differently; their
# rounding differs by < 1e-12, so this margin leaves a wide safety factor.
EXACT_MARGIN = 1e-7
BLOCK = 1024  # images per seeded block of factors


# --------------------------------------------------------------------------- factors

def sprite_cells() -> tuple[np.ndarray, np.ndarray]:
    """Grid column i and row j of sprites k = 0..15 in the official order (k = 4 i + j)."""
    return np.divmod(np.arange(SPRITES), GRID)


def draw_factors(variant: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 16, 6) float64 factors ``[x, y, angle, r, g, b]`` of ``n`` images of a variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown MSDS variant {variant!r}; expected one of {sorted(VARIANTS)}")
    i, j = sprite_cells()
    jitter = rng.integers(-1, 2, size=(n, SPRITES, 2))
    if variant == "msds1":
        base = rng.integers(0, 192, size=(n, 1, 3)) + 32
        colour = base + rng.integers(-32, 33, size=(n, SPRITES, 3))  # 0..255: no clipping needed
        angle = rng.random((n, SPRITES)) * 180.0
    else:
        base_angle = rng.random((n, 1)) * 180.0
        angle = base_angle + rng.random((n, SPRITES)) * 45.0
        colour = rng.integers(0, 256, size=(n, SPRITES, 3))
    factors = np.empty((n, SPRITES, 6), dtype=np.float64)
    factors[..., 0] = TILE * i + jitter[..., 0]
    factors[..., 1] = TILE * j + jitter[..., 1]
    factors[..., 2] = angle
    factors[..., 3:] = colour
    return factors


def seeded_factors(variant: str, n: int, seed: int | Sequence[int]) -> np.ndarray:
    """The factors of images 0..n-1 of a seeded stream: whole blocks of :data:`BLOCK` images,
    each drawn from its own generator ``[*seed, block]``, so image k depends only on the
    seed and k (a smaller dataset is a prefix of a larger one)."""
    key = [int(seed)] if np.isscalar(seed) else [int(s) for s in seed]
    blocks = [draw_factors(variant, BLOCK, np.random.default_rng([*key, block])) for block in range(-(-n // BLOCK))]
    return np.concatenate(blocks)[:n] if blocks else np.empty((0, SPRITES, 6), dtype=np.float64)


def check_factors(factors: np.ndarray) -> np.ndarray:
    """The factors as a float64 (n, 16, 6) array; a clear error on anything else."""
    factors = np.asarray(factors, dtype=np.float64)
    if factors.ndim != 3 or factors.shape[1:] != (SPRITES, 6):
        raise ValueError(f"factors must be (n, {SPRITES}, 6) [x, y, angle, r, g, b], got {factors.shape}")
    i, j = sprite_cells()
    position, colour = factors[..., :2], factors[..., 3:]
    offset = position - np.stack([TILE * i, TILE * j], axis=1)
    if not np.all(np.isin(offset, (-1.0, 0.0, 1.0))):
        raise ValueError("sprite positions must be the tile corner 8*cell + {-1, 0, 1} (sprite k = 4*column + row)")
    if not np.all((colour == np.round(colour)) & (colour >= 0) & (colour <= 255)):
        raise ValueError("sprite colours must be integers in 0..255")
    if not np.all(np.isfinite(factors[..., 2])):
        raise ValueError("sprite angles must be finite")
    return factors


# --------------------------------------------------------------------------- reference renderer

def render_with_pillow(factors: np.ndarray) -> np.ndarray:
    """(n, 32, 32, 3) uint8 images drawn with the official generators' Pillow calls."""
    from PIL import Image, ImageDraw

    factors = check_factors(factors)
    images = np.empty((len(factors), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for n, image_factors in enumerate(factors):
        canvas = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (0, 0, 0))
        for x, y, angle, r, g, b in image_factors.tolist():
            tile = Image.new("RGBA", (TILE, TILE), (255, 255, 255, 0))
            ImageDraw.Draw(tile).ellipse(ELLIPSE_BOX, (int(r), int(g), int(b), 255))
            tile = tile.rotate(angle, resample=Image.Resampling.BICUBIC)
            canvas.paste(tile, (int(x), int(y)), mask=tile)
        images[n] = np.asarray(canvas)
    return images


# --------------------------------------------------------------------------- numpy renderer

def inverse_affine(angles: np.ndarray) -> np.ndarray:
    """(m, 6) inverse affine matrices of ``Image.rotate`` on an 8x8 tile, as Pillow builds them.

    cos and sin come from Python's math and are rounded with Python's ``round(x, 15)`` as
    Pillow does (numpy's vectorised versions may differ in the last bit); the degree to
    radian conversion is one multiplication by pi / 180 in both.
    """
    centre = TILE / 2
    theta = (-np.radians(np.asarray(angles, dtype=np.float64) % 360.0)).tolist()
    cos = np.array([round(value, 15) for value in map(math.cos, theta)], dtype=np.float64)
    sin = np.array([round(value, 15) for value in map(math.sin, theta)], dtype=np.float64)
    minus_sin = -sin  # round(-x, 15) == -round(x, 15)
    out = np.empty((len(theta), 6), dtype=np.float64)
    out[:, 0], out[:, 1], out[:, 3], out[:, 4] = cos, sin, minus_sin, cos
    # Pillow: a * x + b * y + c at the negated centre, then the centre added back.
    out[:, 2] = ((cos * -centre + sin * -centre) + 0.0) + centre
    out[:, 5] = ((minus_sin * -centre + cos * -centre) + 0.0) + centre
    return out


def _cubic(v1, v2, v3, v4, d):
    """Pillow's a = -1 cubic through v1..v4 at offset d from v2, in its order of operations."""
    return v2 + d * ((-v1 + v3) + d * ((2 * (v1 - v2) + v3 - v4) + d * (((-v1 + v2) - v3) + v4)))


def _row_coefficients() -> np.ndarray:
    """(TILE, TILE + 1, 4) integer cubic coefficients of every mask row for each x floor.

    Entry [r, f + 1] holds (p1, p2, p3, p4) of row r for taps f - 1 .. f + 2 (clamped to
    the tile), so the row's interpolant at fraction d is p1 + d (p2 + d (p3 + d p4)).
    """
    table = np.zeros((TILE, TILE + 1, 4), dtype=np.int64)
    for floor in range(-1, TILE):
        taps = np.clip(np.arange(floor - 1, floor + 3), 0, TILE - 1)
        v1, v2, v3, v4 = (ELLIPSE[:, t] for t in taps)
        table[:, floor + 1] = np.stack([v2, -v1 + v3, 2 * (v1 - v2) + v3 - v4, -v1 + v2 - v3 + v4], axis=1)
    return table


ROW_COEFFICIENTS = _row_coefficients()
_PIXEL_CENTRES = np.arange(TILE, dtype=np.float64) + 0.5


class _TileGeometry:
    """Where each output pixel of each rotated tile samples the source tile."""

    def __init__(self, matrices: np.ndarray) -> None:
        a = matrices[:, :, None, None]
        xo, yo = _PIXEL_CENTRES[None, :], _PIXEL_CENTRES[:, None]  # (x along the last axis)
        xin = (a[:, 0] * xo + a[:, 1] * yo) + a[:, 2]
        yin = (a[:, 3] * xo + a[:, 4] * yo) + a[:, 5]
        shape = xin.shape
        self.inside = ((xin >= 0.0) & (xin < TILE) & (yin >= 0.0) & (yin < TILE)).reshape(len(matrices), -1)
        xs, ys = xin - 0.5, yin - 0.5
        fx, fy = np.floor(xs), np.floor(ys)
        self.dx = (xs - fx).reshape(shape[0], -1)
        self.dy = (ys - fy).reshape(shape[0], -1)
        # Outside pixels are discarded; clamp their floors so the table lookups stay valid.
        self.fx = np.clip(fx, -1, TILE - 1).astype(np.int64).reshape(shape[0], -1)
        self.fy = np.clip(fy, -1, TILE - 1).astype(np.int64).reshape(shape[0], -1)

    def interpolate(self, scale: np.ndarray, tile: np.ndarray, pixel: np.ndarray) -> np.ndarray:
        """Pillow's bicubic value, in its exact order of operations, of a band equal to
        ``scale * mask`` at the given (tile, pixel) entries (``scale`` one value per entry)."""
        fx, fy, dx, dy = (a[tile, pixel] for a in (self.fx, self.fy, self.dx, self.dy))
        p = ROW_COEFFICIENTS[:, fx + 1] * np.asarray(scale, dtype=np.int64)[:, None]  # (TILE, entries, 4): exact
        rows = (p[..., 0] + dx * (p[..., 1] + dx * (p[..., 2] + dx * p[..., 3]))).astype(np.float64)
        taps = [np.take_along_axis(rows, np.clip(fy + t, 0, TILE - 1)[None], axis=0)[0] for t in (-1, 0, 1, 2)]
        return _cubic(*taps, dy)


def _truncate(values: np.ndarray) -> np.ndarray:
    """Pillow's clamp to [0, 255] then truncation toward zero."""
    return np.clip(values, 0.0, 255.0).astype(np.int64)


def rotated_tiles(angles: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(m, 64, 4) uint16 RGBA tiles after ``rotate`` (un-premultiplied, as ``paste`` reads them)."""
    geometry = _TileGeometry(inverse_affine(angles))
    unit = _unit_interpolant(geometry).ravel()
    scales = np.concatenate([colours, np.full((len(colours), 1), 255)], axis=1).astype(np.float64)  # RGBa
    # Only pixels with S > 0 can be non-zero in any band (c * S <= 0 truncates to 0).
    covered = np.flatnonzero(unit > 0.0)
    tile, pixel = np.divmod(covered, TILE * TILE)
    values = unit[covered, None] * scales[tile]  # (covered, 4)
    bands = _truncate(values)
    near = np.abs(values - np.rint(values)) < EXACT_MARGIN
    near &= values > 0.5
    if near.any():
        entry, band = np.nonzero(near)
        bands[entry, band] = _truncate(geometry.interpolate(scales[tile[entry], band], tile[entry], pixel[entry]))
    alpha = bands[:, 3:]
    partial = np.flatnonzero((alpha[:, 0] > 0) & (alpha[:, 0] < 255))
    bands[partial, :3] = np.minimum(255, (255 * bands[partial, :3]) // alpha[partial])
    out = np.zeros((len(scales) * TILE * TILE, 4), dtype=np.uint16)
    out[covered] = bands
    return out.reshape(len(scales), TILE * TILE, 4)


def _unit_interpolant(geometry: _TileGeometry) -> np.ndarray:
    """S: the interpolant of a colour-1 band at every pixel (0 outside the source tile).

    Only mask rows 3, 4, 5 are non-zero and rows 3 and 5 are equal, so two row
    interpolants (row 3 and row 4) and the clamped tap rows give every column tap.
    """
    fx, dx = geometry.fx + 1, geometry.dx
    rows = {}
    for r in (3, 4):
        p = ROW_COEFFICIENTS[r]
        rows[r] = p[fx, 0] + dx * (p[fx, 1] + dx * (p[fx, 2] + dx * p[fx, 3]))
    zero = np.zeros_like(dx)
    taps = []
    for t in (-1, 0, 1, 2):
        row = np.clip(geometry.fy + t, 0, TILE - 1)
        taps.append(np.where(row == 4, rows[4], np.where((row == 3) | (row == 5), rows[3], zero)))
    return np.where(geometry.inside, _cubic(*taps, geometry.dy), 0.0)


def _div255(value: np.ndarray) -> np.ndarray:
    value = value + 128
    return ((value >> 8) + value) >> 8


def render(factors: np.ndarray, chunk: int = 512,
           progress_callback: Callable[[int], None] | None = None) -> np.ndarray:
    """(n, 32, 32, 3) uint8 images, bit-identical to :func:`render_with_pillow`.

    Rendering is per image, so ``chunk`` (images per vectorised batch) never changes the bytes.
    """
    factors = check_factors(factors)
    n = len(factors)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    column, row = sprite_cells()
    # Each tile goes into a 10 x 10 frame at its jitter (+1), so that sprite k of every image
    # lands on the same canvas slice; a canvas padded by one pixel takes frames at -1 .. 33
    # (the border is cut off, as Pillow clips). Alpha 0 leaves a pixel unchanged
    # (DIV255(255 v) = v), so the frame's empty margin blends as a no-op.
    frame_size, padded = TILE + 2, IMAGE_SIZE + 2
    for start in range(0, n, chunk):
        part = factors[start:start + chunk]
        m = len(part)
        tiles = rotated_tiles(part[..., 2].ravel(), part[..., 3:].reshape(-1, 3)).reshape(m * SPRITES, TILE, TILE, 4)
        jitter_x = (part[..., 0] - TILE * column).astype(np.int64).ravel() + 1
        jitter_y = (part[..., 1] - TILE * row).astype(np.int64).ravel() + 1
        frames = np.zeros((m * SPRITES, frame_size, frame_size, 4), dtype=np.uint16)
        for oy in range(3):
            for ox in range(3):
                chosen = np.flatnonzero((jitter_y == oy) & (jitter_x == ox))
                frames[chosen, oy:oy + TILE, ox:ox + TILE] = tiles[chosen]
        frames = frames.reshape(m, SPRITES, frame_size, frame_size, 4)
        canvas = np.zeros((m, padded, padded, 3), dtype=np.uint16)
        for k in range(SPRITES):
            top, left = TILE * row[k], TILE * column[k]  # frame corner in padded coordinates
            under = canvas[:, top:top + frame_size, left:left + frame_size]
            alpha = frames[:, k, ..., 3:]
            # out * (255 - alpha) + in * alpha + 128 <= 65153: no uint16 overflow
            under[...] = _div255(under * (255 - alpha) + frames[:, k, ..., :3] * alpha)
        images[start:start + m] = canvas[:, 1:-1, 1:-1]
        if progress_callback is not None:
            progress_callback(m)
    return images


# --------------------------------------------------------------------------- datasets

def generate(variant: str, n: int, seed: int | Sequence[int], chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of ``variant`` and their factors; image k depends only on the seed and k."""
    factors = seeded_factors(variant, n, seed)
    with progress(total=n, desc=f"{variant} render", unit="img") as bar:
        images = render(factors, chunk=chunk, progress_callback=bar.update)
    return images, factors


def generate_dataset(variant: str, n_train: int, n_test: int, seed: int, output_npz: str | os.PathLike) -> None:
    """Write ``{train,test}_images`` (uint8 (N, 32, 32, 3)) and ``{train,test}_factors``
    ((N, 16, 6) float64, :data:`FACTOR_NAMES`); train and test use independent streams
    derived from ``seed`` and the variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown MSDS variant {variant!r}; expected one of {sorted(VARIANTS)}")
    from PIL import __version__ as pillow_version

    arrays = {}
    for split, n, stream in (("train", n_train, 0), ("test", n_test, 1)):
        images, factors = generate(variant, n, seed=[seed, VARIANTS[variant], stream])
        arrays[f"{split}_images"], arrays[f"{split}_factors"] = images, factors
        log.info("%s %s: %d images", variant, split, n)
    save_npz_atomic(output_npz, **arrays, factor_names=np.array(FACTOR_NAMES),
                    renderer=np.array(f"numpy emulation of Pillow's rotate/paste (checked against Pillow "
                                      f"{pillow_version})"))
