"""The test suite; its folders mirror the packages of ``simulator``."""

from pathlib import Path

#: the repository root (scenarios/, notebooks/, README.md)
REPO = Path(__file__).resolve().parents[1]
