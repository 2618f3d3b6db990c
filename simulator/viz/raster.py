"""Blocks narrower than a pixel or two, painted as pixels instead of drawn as shapes.

A Gantt chart of a large run has thousands of blocks on each row -- 512
micro-batches of forwards and backwards, a collective after every layer --
most of them a pixel wide or less. Drawn one by one they cost the most of
the picture and show nothing a pixel does not: the renderer blends what
falls into a pixel anyway. A :class:`Raster` paints such blocks into one
strip of pixels per lane, each pixel the blend of the colours that cover it,
weighted by how much of it they cover (and transparent where nothing does),
and the chart shows the strip as an image. Blocks wide enough to see stay
shapes, with their hatching and labels. A chart with no narrow block has no
strip, and is drawn exactly as before.
"""

from __future__ import annotations

from typing import Any

import matplotlib.colors as mcolors
import numpy as np
from matplotlib.axes import Axes

#: blocks narrower than this many pixels are painted
NARROW_PX = 2.0


class Raster:
    """Strips of ``width_px`` pixels over ``span`` units of the time axis, one per lane
    (a lane is its ``(bottom, height)`` on the y axis)."""

    def __init__(self, width_px: float, span: float) -> None:
        self.width_px = max(1, round(width_px))
        self.px_per_unit = self.width_px / span
        self.span = span
        self.lanes: dict[tuple[float, float], list[tuple[float, float, Any]]] = {}

    def narrow(self, w: float) -> bool:
        """Whether a block ``w`` units wide is painted, not drawn."""
        return w * self.px_per_unit < NARROW_PX

    def add(self, x: float, w: float, y: float, h: float, colour: Any) -> None:
        self.lanes.setdefault((y, h), []).append((x, w, colour))

    def __bool__(self) -> bool:
        return bool(self.lanes)

    def draw(self, ax: Axes, zorder: float = 1.5) -> None:
        """Show every lane's strip on ``ax`` (below the shapes' labels)."""
        for (y, h), blocks in self.lanes.items():
            ax.imshow(self._strip(blocks), extent=(0, self.span, y, y + h), aspect="auto",
                      interpolation="nearest", origin="lower", zorder=zorder)  # fmt: skip

    def _strip(self, blocks: list[tuple[float, float, Any]]) -> np.ndarray:
        """One lane's pixels (RGBA, 1 x width): each the colours over it, weighted by the
        fraction of it they cover."""
        x, w, colours = zip(*blocks, strict=True)
        a = np.asarray(x) * self.px_per_unit
        b = a + np.asarray(w) * self.px_per_unit
        known: dict[Any, tuple[float, float, float]] = {}  # a few colours, many blocks
        rgb = np.array([known.get(c) or known.setdefault(c, mcolors.to_rgb(c)) for c in colours])
        first = np.floor(a).astype(np.int64)
        paint = np.zeros((self.width_px + 2, 3))
        cover = np.zeros(self.width_px + 2)
        for k in range(int(NARROW_PX) + 2):  # a narrow block touches at most this many pixels
            pixel = first + k
            part = np.clip(np.minimum(b, pixel + 1) - np.maximum(a, pixel), 0.0, 1.0)
            inside = (part > 0) & (pixel >= 0) & (pixel < self.width_px)
            np.add.at(paint, pixel[inside], rgb[inside] * part[inside, None])
            np.add.at(cover, pixel[inside], part[inside])
        paint, cover = paint[: self.width_px], cover[: self.width_px]
        out = np.zeros((1, self.width_px, 4))
        shown = cover > 0
        out[0, shown, :3] = paint[shown] / cover[shown, None]
        out[0, :, 3] = np.minimum(cover, 1.0)
        return out
