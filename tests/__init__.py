"""The test suite; its folders mirror the packages of ``simulator``."""

from pathlib import Path

#: the repository root (scenarios/, notebooks/, README.md)
REPO = Path(__file__).resolve().parents[1]
#: the documentation pages (what ``mkdocs.yml`` builds into a site)
DOCS = REPO / "docs"


def doc(page: str) -> str:
    """The text of a documentation page, e.g. ``doc("scenarios.md")``."""
    return (DOCS / page).read_text()
