"""Raster pictures of masks (PNG), without a browser: for the CLI and slides."""

from __future__ import annotations

import base64
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


def colorscale_rgb(values: np.ndarray, scale) -> np.ndarray:
    """uint8 (..., 3): values in [0, 1] coloured by a Plotly colorscale ([[stop, "#rrggbb"], ...]),
    interpolated exactly as Plotly's heatmap does; NaN (gaps between tiles) is white."""
    stops = np.array([float(stop) for stop, _ in scale])
    colors = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for _, c in scale], dtype=float)
    filled = np.nan_to_num(np.clip(values, 0.0, 1.0), nan=0.0)
    rgb = np.stack([np.interp(filled, stops, colors[:, c]) for c in range(3)], axis=-1)
    rgb[np.isnan(values)] = 255
    return np.rint(rgb).astype(np.uint8)


def png_data_uri(rgb: np.ndarray) -> str:
    """A data: URI of the uint8 (H, W, 3) picture as PNG (what a Plotly Image trace takes as its source)."""
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
