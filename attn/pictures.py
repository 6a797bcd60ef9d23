"""Raster pictures of masks (PNG), without a browser: for the CLI and slides."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from .masks import MaskRule
from .render import tile_overview

# Colours of the fraction scale at 0+, 0.25 and 1 (same as the figures' scale).
_STOPS = np.array([0.0, 0.25, 1.0])
_RGB = np.array([[0xB3, 0xD4, 0xF0], [0x5B, 0x9B, 0xD5], [0x08, 0x30, 0x6B]], dtype=float)


def fraction_rgb(fractions: np.ndarray) -> np.ndarray:
    """uint8 (T, T, 3): white for exactly 0, then pale to dark blue as the share rises."""
    rgb = np.stack([np.interp(fractions, _STOPS, _RGB[:, c]) for c in range(3)], axis=-1)
    rgb[fractions == 0] = 255
    return np.rint(rgb).astype(np.uint8)


def mask_png(rule: MaskRule, n: int, tiles: int = 512, min_side: int = 512) -> bytes:
    """PNG of the mask: one pixel block per cell (N <= tiles) or per exact tile."""
    ov = tile_overview(rule, n, tiles)
    rgb = fraction_rgb(ov.fractions)
    scale = max(1, -(-min_side // ov.tiles))
    img = Image.fromarray(rgb, "RGB").resize((ov.tiles * scale, ov.tiles * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()
