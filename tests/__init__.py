"""The test suite; its folders mirror the packages of ``simulator``."""

from dataclasses import replace
from pathlib import Path

from simulator.hardware import ClusterSpec

#: the repository root (scenarios/, notebooks/, README.md)
REPO = Path(__file__).resolve().parents[1]
#: the documentation pages (what ``mkdocs.yml`` builds into a site)
DOCS = REPO / "docs"


def doc(page: str) -> str:
    """The text of a documentation page, e.g. ``doc("scenarios.md")``."""
    return (DOCS / page).read_text()


def slowed(cluster: ClusterSpec, slowdown: float) -> ClusterSpec:
    """``cluster`` with devices whose compute runs ``1 + slowdown`` times slower beside
    its own asynchronous collectives (``overlap_slowdown``)."""
    return cluster.with_every_node(
        lambda n: replace(n, device=replace(n.device, overlap_slowdown=slowdown))
    )
