"""Safe output names, output folders checked before a run, bounded UTF-8 input files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import LimitError, OutputError, ScenarioError
from simulator.scenario.limits import Limits
from simulator.scenario.paths import MAX_STEM, SAFE, file_stem, prepare_output_dir, read_text

NAMES = st.text(
    st.characters(blacklist_categories=["Cs"]), max_size=200
)  # any text a scenario or a Python caller could use as a name


@settings(max_examples=300, derandomize=True)
@given(NAMES)
def test_a_stem_is_a_short_plain_file_name(name: str) -> None:
    stem = file_stem(name)
    assert 0 < len(stem) <= MAX_STEM
    assert set(stem) <= SAFE | {"%", "~"}
    assert "/" not in stem and "\\" not in stem and not stem.startswith(".")
    assert stem not in (".", "..") and not stem.endswith(".")
    assert file_stem(name) == stem  # stable


@settings(max_examples=300, derandomize=True)
@given(NAMES, NAMES)
def test_different_names_keep_different_stems(a: str, b: str) -> None:
    if a != b:
        assert file_stem(a) != file_stem(b)


def test_examples() -> None:
    assert file_stem("tp2-pp2") == "tp2-pp2"
    assert file_stem("1f1b v=2") == "1f1b%20v%3D2"
    assert file_stem("a/b") == "a%2Fb"
    assert file_stem("..") == "%2E%2E" and file_stem(".") == "%2E"
    assert file_stem("../../etc/passwd") == "%2E.%2F..%2Fetc%2Fpasswd"
    assert file_stem("CON") == "%43ON" and file_stem("nul.txt") == "%6Eul.txt"
    assert file_stem("é") == "%C3%A9" and file_stem("%") == "%25" and file_stem("") == "%"
    long = file_stem("x" * 300)
    assert len(long) == MAX_STEM and long.startswith("x" * 71 + "~")
    assert file_stem("x" * 300) != file_stem("x" * 301)


def test_output_folder_is_created_and_written(tmp_path: Path) -> None:
    out = prepare_output_dir(tmp_path / "a" / "b")
    assert out.is_dir() and list(out.iterdir()) == []  # the probe file is gone
    assert prepare_output_dir(out) == out  # an existing folder is fine


def test_output_folder_problems_are_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="is a file; choose another --out folder"):
        prepare_output_dir(a_file)
    with pytest.raises(OutputError, match="a part of the path is a file"):
        prepare_output_dir(a_file / "sub")
    with pytest.raises(OutputError, match="cannot write to output folder"):
        prepare_output_dir(tmp_path / ("n" * 300))  # a name longer than the file system allows


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_an_unwritable_parent_is_found_before_the_run(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write to output folder"):
            prepare_output_dir(locked / "out")
    finally:
        locked.chmod(0o700)


def test_read_text_reads_utf8(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("name = 'ü'\n", encoding="utf-8")
    assert read_text(path, "scenario file") == "name = 'ü'\n"


def test_read_text_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    def fails(path: Path, message: str, limits: Limits | None = None) -> None:
        with pytest.raises(ScenarioError) as err:
            read_text(path, "scenario file", limits, ScenarioError)
        assert message in str(err.value) and "\n" not in str(err.value)

    fails(tmp_path / "missing.toml", "does not exist")
    fails(tmp_path, "is a folder, not a file")
    fails(Path("/dev/zero"), "is not a regular file")
    latin = tmp_path / "latin.toml"
    latin.write_bytes("name = 'é'".encode("latin-1"))
    fails(latin, "is not UTF-8 text (byte 0xe9 at offset 8); save it as UTF-8")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    fails(fifo, "is not a regular file")  # and does not block waiting for a writer


def test_read_text_has_a_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"0F0," * 100)
    with pytest.raises(LimitError, match=r"the size of schedule file .* = 400 is over the limit"):
        read_text(path, "schedule file", Limits(max_file_bytes=399))
    assert len(read_text(path, "schedule file", Limits(max_file_bytes=400))) == 400
