"""The README is short, starts with the two commands CI runs, and its links resolve."""

import re

from tests import REPO, doc

README = (REPO / "README.md").read_text()
#: about 350 lines: the pitch, a picture, the quick start, how it works, the
#: notebooks, where things live and links; everything else is in docs/
MAX_LINES = 350


def _quick_start_commands(text: str) -> list[str]:
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", quick, flags=re.S)


def test_quick_start_has_exactly_two_commands():
    blocks = _quick_start_commands(README)
    assert len(blocks) == 2
    assert "simulator run scenarios/quickstart.toml" in blocks[0]
    assert "pytest" in blocks[1] and ".[dev]" in blocks[1]


def test_the_site_shows_the_same_two_commands():
    assert _quick_start_commands(doc("index.md")) == _quick_start_commands(README)


def test_the_readme_stays_short():
    assert len(README.splitlines()) <= MAX_LINES


def test_every_relative_link_resolves():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if "://" not in t]
    assert local, "the README links into docs/"
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, missing


def test_the_notebook_table_lists_every_notebook():
    listed = re.findall(r"^\| \[`(\w+)`\]\(notebooks/(\w+)\.ipynb\)", README, flags=re.M)
    assert all(name == stem for name, stem in listed)
    notebooks = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
    assert [stem for _, stem in listed] == notebooks
