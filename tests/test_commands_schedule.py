"""``python -m simulator schedule``: print, export and check schedules."""

import subprocess
import sys
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.parallel.pipeline import get_schedule, load_csv


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
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: schedule 'file:cycle.csv': deadlock at rank 0, step 1")
