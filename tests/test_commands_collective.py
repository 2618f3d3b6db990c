"""``python -m simulator collective``: tables, JSON, sweeps and one-line errors."""

from __future__ import annotations

import json

import pytest

from simulator.cli import main
from simulator.comm import closed_forms


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["collective", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_json_parses_and_follows_nccl_tests(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--devices", "8", "--bytes", "1e9", "--bandwidth-gbs", "100", "--latency-us", "5")
    status, out, _ = run(capsys, *args, "--json")
    assert status == 0
    doc = json.loads(out)
    assert set(doc) == {"op", "algorithm", "devices", "results"}
    assert (doc["op"], doc["algorithm"], doc["devices"]) == ("all_reduce", "ring", 8)
    (row,) = doc["results"]
    assert set(row) == {"bytes", "time_s", "algbw_gbs", "busbw_gbs"}
    assert row["bytes"] == 10**9
    assert row["time_s"] == pytest.approx(
        closed_forms.ring_all_reduce(8, 1e9, 5e-6, 1 / 100e9), rel=1e-9
    )
    assert row["algbw_gbs"] == pytest.approx(1 / row["time_s"])
    assert row["busbw_gbs"] == pytest.approx(row["algbw_gbs"] * 2 * 7 / 8)


def test_table_shows_the_closed_form(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "--op", "broadcast", "--devices", "5", "--bytes", "4000", "--latency-us", "1"
    )
    assert status == 0
    assert "broadcast, algorithm tree, 5 devices" in out
    expected = closed_forms.binomial_broadcast(5, 4000, 1e-6, 1 / 100e9) * 1e6
    assert out.splitlines()[-1].split()[-1] == f"{expected:.3f}"


def test_sweep_multiplies_by_the_factor(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(
        capsys, "--min-bytes", "1024", "--max-bytes", "1e6", "--factor", "4", "--json"
    )
    assert status == 0
    sizes = [r["bytes"] for r in json.loads(out)["results"]]
    assert sizes == [1024 * 4**k for k in range(5)]


def test_default_cluster_is_a_dgx_a100_with_enough_nodes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(capsys, "--devices", "16", "--algorithm", "hierarchical", "--bytes", "1e8")
    assert status == 0
    assert "dgx-a100: 2 x 8" in out
    assert out.splitlines()[-1].split()[-1] != "-"  # the two-level formula applies


def test_hierarchical_beats_ring_across_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    common = ("--preset", "dgx-a100", "--nodes", "2", "--devices", "16", "--bytes", "1e9")
    times = {}
    for algorithm in ("ring", "hierarchical"):
        status, out, _ = run(capsys, *common, "--algorithm", algorithm, "--json")
        assert status == 0
        times[algorithm] = json.loads(out)["results"][0]["time_s"]
    assert times["hierarchical"] < times["ring"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--preset", "dgx-a100", "--nodes", "1", "--devices", "16"), "has 8"),
        (("--algorithm", "recursive", "--devices", "6"), "power-of-two group size"),
        (("--op", "allreduce"), "unknown collective 'allreduce'; choose one of"),
        (("--algorithm", "butterfly"), "has no algorithm 'butterfly'; choose one of"),
        (("--bytes", "-5"), "--bytes must be a whole number of bytes >= 0"),
        (("--bytes", "1e3", "--max-bytes", "1e6"), "either --bytes or --min-bytes"),
        (("--min-bytes", "1e6", "--max-bytes", "1e3"), "swap them"),
        (("--min-bytes", "1", "--max-bytes", "8", "--factor", "1"), "--factor > 1"),
        (("--preset", "dgx-a100", "--bandwidth-gbs", "10"), "use one"),
        (("--bandwidth-gbs", "0"), "--bandwidth-gbs must be > 0"),
        (("--preset", "tpu"), "unknown cluster preset 'tpu'"),
        (("--devices", "1"), "at least 2"),
        (("--op", "reduce", "--root", "9"), "root must be a rank of the group"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err
