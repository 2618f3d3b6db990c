"""``python -m simulator schedule``: print, export and check schedules."""

import subprocess
import sys
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.parallel.pipeline import get_schedule
from simulator.scenario.schedule_file import load_csv
from tests import REPO


def _cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["schedule", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_grid_timeline_bubble_and_memory(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _cli(capsys, "zb-h1", "--stages", "4", "--microbatches", "8")
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("rank ")]
    assert rows[3][2:5] == ["3F0", "3B0", "3F1"]  # the action grid, rank x step
    # the unit-time timeline: rank 0 waits (p-1) T_B for its first B
    assert rows[4][2:11] == ["0F0", "0F1", "0F2", "0F3", ".", ".", ".", "0B0", "0W0"]
    assert "bubble on this timeline: 0.1111; closed form: 0.1111" in out
    assert "(from F to its W): 4 4 4 4" in out


def test_chunk_stashes_are_also_given_in_stages_worth(capsys: pytest.CaptureFixture) -> None:
    # interleaved's 11 chunk stashes on rank 0 are 5.5 stages' worth: less than GPipe's 8
    code, out, _ = _cli(capsys, "interleaved", "-p", "4", "-m", "8", "-v", "2")
    assert code == 0
    assert (
        "(from F to its BW): 11 9 7 5 (chunk stashes, each 1/2 of a stage's: "
        "5.5 4.5 3.5 2.5 stages' worth)" in out
    )


def test_times_change_the_timeline(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _cli(capsys, "zb-h2", "-p", "4", "-m", "8", "--times", "1", "1", "0.5")
    assert code == 0
    assert "T_W = 1/2" in out
    assert "closed form: 0.1304" in out  # (p-1)(T_F+T_B-2T_W) = 3 over 8*2.5 + 3


def test_csv_round_trip_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_file = tmp_path / "zbv.csv"
    code, _, _ = _cli(capsys, "zbv", "-p", "2", "-m", "4", "-v", "2", "--csv", str(out_file))
    assert code == 0
    assert load_csv(out_file).ranks == get_schedule("zbv")(2, 4, 2).ranks
    code, out, _ = _cli(capsys, "--validate", str(out_file), "-p", "2", "-m", "4", "-v", "2")
    assert code == 0
    assert "ok: the schedule is complete and can run" in out
    assert "closed form: none" in out


MALFORMED = {
    "missing backward": ("0F0,0F1,0B0\n,1F0,1B0,1F1,1B1\n", "rank 0, step 1"),
    "B before F": ("0F0,0B0\n1B0,1F0\n", "rank 1, step 0"),
    "stage on two ranks": ("0F0,0B0,1F1,1B1\n1F0,1B0,0F1,0B1\n", "rank 1, step 0"),
    "dependency cycle": ("0F0,0B0,0F1,0B1\n1F1,1B1,1F0,1B0\n", "rank 0, step 1"),
    "unreadable cell": ("0F0,0X0\n", "rank 0, step 1"),
    "huge numbers": ("0F0,999999999999B0\n", "no rank runs stage 1"),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_files_exit_2_with_one_error(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text, where = MALFORMED[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    code, out, err = _cli(capsys, "--validate", str(path))
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("error: ") == 1
    assert where in err.splitlines()[0]


def test_usage_mistakes_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = _cli(capsys, "1f1b")
    assert code == 2 and "give --stages and --microbatches" in err
    assert _cli(capsys, "--validate", str(tmp_path / "missing.csv"))[0] == 2
    path = tmp_path / "two.csv"
    path.write_text("0F0,0B0\n1F0,1B0\n")
    code, _, err = _cli(capsys, "--validate", str(path), "--stages", "3")
    assert code == 2 and "2 rank rows but --stages is 3" in err
    code, _, err = _cli(capsys, "interleaved", "-p", "4", "-m", "6", "-v", "2")
    assert code == 2 and "multiple of 4" in err


def test_the_real_command_line(tmp_path: Path) -> None:
    path = tmp_path / "cycle.csv"
    path.write_text(MALFORMED["dependency cycle"][0])
    done = subprocess.run(
        [sys.executable, "-m", "simulator", "schedule", "--validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: schedule 'file:cycle.csv': deadlock at rank 0, step 1")


def _fails(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """The command exits 2 with one ``error:`` line and prints nothing else."""
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and out == "", (code, out)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("1f1b", "-p", "1000000", "-m", "4"),
            "--stages = 1,000,000 is over the limit max_stages = 4,096; if you mean it, raise the "
            "limit with --max-stages N",
        ),
        (("interleaved", "-p", "4", "-m", "4", "-v", "5000"), "--stages * --chunks = 20,000"),
        (("1f1b", "-p", "4", "-m", "100000"), "--microbatches = 100,000 is over the limit"),
        (("1f1b", "-p", "4000", "-m", "4000"), "is over the limit max_events = 10,000,000"),
        (("1f1b", "-p", "10", "-m", "4", "--max-stages", "8"), "over the limit max_stages = 8"),
        (("1f1b", "-p", "4", "-m", "4", "--max-stages", "0"), "--max-stages must be an integer"),
    ],
)
def test_sizes_past_a_limit_fail_at_once(capsys, argv, message) -> None:
    assert message in _fails(capsys, *argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("1f1b", "-p", "4", "-m", "8", "-v", "0"), "--chunks must be an integer >= 1, got 0"),
        (("1f1b", "-p", "0", "-m", "8"), "--stages must be an integer >= 1, got 0"),
        (("1f1b", "-p", "4", "-m", "-1"), "--microbatches must be an integer >= 1, got -1"),
        (
            ("zb-h1", "-p", "4", "-m", "8", "--times", "-1", "1", "1"),
            "--times T_F must be a number in [0.001, 1000], got -1.0",
        ),
        (("zb-h1", "-p", "4", "-m", "8", "--times", "1", "nan", "1"), "--times T_B must be"),
        (("zb-h1", "-p", "4", "-m", "8", "--times", "1", "1", "inf"), "--times T_W must be"),
        (("zb-h1", "-p", "4", "-m", "8", "--times", "1e-9", "1", "1"), "got 1e-09"),
    ],
)
def test_flags_are_checked_like_scenario_keys(capsys, argv, message) -> None:
    assert message in _fails(capsys, *argv)


def test_csv_into_a_missing_folder_is_an_error(tmp_path: Path, capsys) -> None:
    err = _fails(capsys, "1f1b", "-p", "2", "-m", "2", "--csv", str(tmp_path / "no" / "x.csv"))
    assert "the folder" in err and "does not exist" in err
    err = _fails(capsys, "1f1b", "-p", "2", "-m", "2", "--csv", str(tmp_path))
    assert f"cannot write --csv {str(tmp_path)!r}" in err


def test_validate_reads_bounded_utf8_files(tmp_path: Path, capsys) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"0F0,0B0\n\xe91F0\n")
    assert "is not UTF-8 text (byte 0xe9 at offset 8)" in _fails(capsys, "--validate", str(latin))
    assert "is not a regular file" in _fails(capsys, "--validate", "/dev/zero")
    big = tmp_path / "big.csv"
    big.write_text("0F0,0B0\n")
    err = _fails(capsys, "--validate", str(big), "--max-file-bytes", "4")
    assert "= 8 is over the limit max_file_bytes = 4" in err


def test_grids_too_large_to_read_are_summarised(capsys) -> None:
    code, out, _ = _cli(capsys, "1f1b", "-p", "4", "-m", "8", "--times", "1", "1", "0.999")
    assert code == 0
    assert "(4 ranks x 32,989 columns: too large to read, not printed" in out
    assert "bubble on this timeline" in out
