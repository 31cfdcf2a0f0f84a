"""Figures embedded in the page: as drawn, or as small copies for the card thumbnails.

The page is one self-contained file, so every image is a base64 data URI. Figures are
embedded byte for byte; a card's thumbnail is a downscaled copy reduced to a 256-colour
palette (plots have few colours, and the copy is a fifth of the full figure's size).
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
from pathlib import Path

from PIL import Image


def data_uri(path: str | os.PathLike) -> str:
    mime = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
    payload = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:{mime};base64,{payload}"


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) in pixels of an image file."""
    with Image.open(path) as image:
        return image.size


def thumbnail_uri(path: str | os.PathLike, width: int, height: int | None = None) -> tuple[str, int, int]:
    """A PNG data URI of the figure fitted into ``width`` x ``height`` px (default: half
    as high as wide), with its size. Transparency is flattened onto white."""
    height = height or max(1, width // 2)
    with Image.open(path) as image:
        image.load()
        rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    flat.thumbnail((width, height), Image.Resampling.LANCZOS)
    small = flat.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    small.save(buffer, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"), *small.size
