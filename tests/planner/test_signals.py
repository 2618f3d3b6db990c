"""Real signals on real processes: ``sweep`` and ``plan`` with two worker processes, stopped
with SIGTERM, SIGINT or SIGKILL, leave no process of theirs behind, and say what they kept.

Each test starts ``python -m simulator`` as a subprocess, waits until its pool's workers
are running simulations, sends the signal, and then looks in ``/proc`` for every process
that descended from it (Linux only).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import REPO

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads the process table in /proc (Linux)"
)

#: Runs of many seconds each (the most steps a scenario may ask for without raising its
#: limit): the workers are still busy when the signal comes, on a fast core or a busy machine.
SLOW = """
name = "slow"
[cluster]
preset = "toy"
[model]
kind = "mlp"
layers = 4
width = 64
[training]
global_batch = 16
steps = 10000
[[strategy]]
name = "one"
"""


def _stat(pid: int) -> tuple[int, str] | None:
    """``(parent pid, state)`` of a live process, None when it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]
    return None if state in ("Z", "X") else (int(ppid), state)


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _stat(int(entry.name))):
            parents[int(entry.name)] = info[0]
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def start(tmp_path: Path, *argv: str) -> tuple[subprocess.Popen, set[int]]:
    """Start the command and wait until two worker processes run; the process and them."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator", *argv, "--quiet", "--out", str(tmp_path / "out")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(workers := descendants(process.pid)) < 2:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.1)
    time.sleep(0.5)  # they have their first tasks
    return process, workers


def gone_within(pids: set[int], seconds: float) -> set[int]:
    """The processes of ``pids`` still alive after ``seconds`` (at most)."""
    deadline = time.monotonic() + seconds
    while (alive := {p for p in pids if _stat(p)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def sweep(tmp_path: Path) -> tuple[subprocess.Popen, set[int]]:
    (tmp_path / "slow.toml").write_text(SLOW)
    return start(tmp_path, "sweep", "slow.toml", "--vary", "seed=1,2,3,4,5,6", "--workers", "2")


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_stop_the_sweep_and_say_what_was_kept(tmp_path, sig, status):
    process, workers = sweep(tmp_path)
    process.send_signal(sig)
    _, err = process.communicate(timeout=30)
    assert process.returncode == status, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    name = signal.Signals(sig).name
    assert lines[0].startswith(f"interrupted by {name}: ") and " of 6 runs finished; " in lines[0]
    assert not gone_within(workers, 10)


def test_sigkill_of_a_sweep_leaves_no_worker_behind(tmp_path):
    process, workers = sweep(tmp_path)
    process.kill()
    process.wait(timeout=10)
    assert not gone_within(workers, 10)


def test_sigkill_of_a_plan_leaves_no_worker_behind(tmp_path):
    process, workers = start(
        tmp_path, "plan", "--model", "gpt3-small", "--exhaustive", "--workers", "2"
    )
    process.kill()
    process.wait(timeout=10)
    assert not gone_within(workers, 10)
