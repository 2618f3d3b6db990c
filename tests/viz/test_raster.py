"""Blocks too narrow to draw are painted as pixels: each pixel is the blend of the
colours over it, weighted by how much of it they cover, so the painted strip
shows exactly as much time as the blocks took."""

import matplotlib.colors as mcolors
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.viz.raster import NARROW_PX, Raster


def test_a_pixel_shows_the_blend_of_what_covers_it():
    raster = Raster(width_px=10, span=10.0)  # one unit per pixel
    raster.add(2.0, 0.5, 0.0, 1.0, "red")
    raster.add(2.5, 0.5, 0.0, 1.0, "blue")
    raster.add(5.25, 0.5, 0.0, 1.0, "green")
    (strip,) = [raster._strip(blocks) for blocks in raster.lanes.values()]
    blend = (np.array(mcolors.to_rgb("red")) + np.array(mcolors.to_rgb("blue"))) / 2
    assert strip[0, 2, :3] == pytest.approx(blend) and strip[0, 2, 3] == 1.0
    assert strip[0, 5, :3] == pytest.approx(mcolors.to_rgb("green"))
    assert strip[0, 5, 3] == pytest.approx(0.5)
    assert strip[0, [0, 1, 3, 4, 6, 7, 8, 9], 3].tolist() == [0.0] * 8


@given(
    st.lists(
        st.tuples(st.floats(0, 95), st.floats(0.01, NARROW_PX - 0.01)), min_size=1, max_size=20
    )
)
def test_the_painted_strip_covers_as_much_as_the_blocks(blocks):
    """Blocks that do not overlap: the strip's coverage adds up to their width."""
    raster = Raster(width_px=100, span=100.0)
    end = 0.0
    total = 0.0
    for x, w in sorted(blocks):
        x = max(x, end)
        if x + w > 100:
            break
        assert raster.narrow(w)
        raster.add(x, w, 0.0, 1.0, "black")
        end, total = x + w, total + w
    if raster:
        (strip,) = [raster._strip(b) for b in raster.lanes.values()]
        assert strip[0, :, 3].sum() == pytest.approx(total)
