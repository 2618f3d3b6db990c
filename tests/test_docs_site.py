"""The documentation site builds without a warning: ``mkdocs build --strict``.

Strict mode fails on a broken link between pages, a page missing from the
navigation and a docstring the API reference (mkdocstrings) cannot parse, so
a change that breaks the site fails here, not when someone serves it.
"""

import os
import subprocess
import sys
from pathlib import Path

from tests import REPO


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # a notice of the theme's, not ours
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert done.returncode == 0, "\n".join(warnings) or done.stderr[-2000:]
    assert (tmp_path / "design" / "index.html").exists()
    assert (tmp_path / "reference" / "runtime" / "index.html").exists()
