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
    assert (doc["op"], doc["algorithm"], doc["devices"]) == ("all_reduce", "auto", 8)
    (row,) = doc["results"]
    assert set(row) == {"bytes", "time_s", "algbw_gbs", "busbw_gbs", "algorithm", "channels"}
    assert (row["algorithm"], row["channels"]) == ("ring", 1)  # 1 GB: bandwidth-bound
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
    assert "broadcast, algorithm auto, 5 devices" in out
    expected = closed_forms.binomial_broadcast(5, 4000, 1e-6, 1 / 100e9) * 1e6
    last = out.splitlines()[-1].split()
    assert last[-2:] == ["tree", f"{expected:.3f}"]  # what auto ran, and its closed form


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


def _busbw(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    status, out, _ = run(capsys, *argv, "--json")
    assert status == 0
    return json.loads(out)["results"][0]


def test_a_ring_per_nic_stripes_across_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    """Two DGX A100 nodes: NCCL runs one ring per HDR NIC, so a 1 GB all-reduce sees
    about 8 x 24 GB/s; one ring through one NIC gets one NIC's worth."""
    common = ("--preset", "dgx-a100", "--nodes", "2", "--devices", "16", "--bytes", "1e9")
    striped = _busbw(capsys, *common)
    single = _busbw(capsys, *common, "--algorithm", "ring", "--channels", "1")
    assert (striped["algorithm"], striped["channels"]) == ("ring", 8)
    assert 7.0 < striped["busbw_gbs"] / single["busbw_gbs"] < 8.5
    assert abs(striped["busbw_gbs"] / 192 - 1) < 0.15  # NVIDIA's measured 192 GB/s
    hierarchical = _busbw(capsys, *common, "--algorithm", "hierarchical")
    assert hierarchical["busbw_gbs"] < striped["busbw_gbs"]


def test_fewer_nics_share_their_bandwidth(capsys: pytest.CaptureFixture[str]) -> None:
    common = ("--devices", "16", "--bytes", "1e9", "--algorithm", "ring")
    eight, four = _busbw(capsys, *common), _busbw(capsys, *common, "--nics", "4")
    assert (eight["channels"], four["channels"]) == (8, 4)
    assert four["busbw_gbs"] == pytest.approx(eight["busbw_gbs"] / 2, rel=0.05)


def test_auto_picks_per_size_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    sweep = ("--devices", "16", "--min-bytes", "1e3", "--max-bytes", "1e9", "--factor", "1000")
    status, out, _ = run(capsys, *sweep, "--json")
    assert status == 0
    ran = [(r["algorithm"], r["channels"]) for r in json.loads(out)["results"]]
    # latency-bound and in between: NCCL's tree (its few hops across two nodes);
    # bandwidth-bound: a ring per NIC
    assert ran == [("tree", 8), ("tree", 8), ("ring", 8)]
    status, out, _ = run(capsys, *sweep)
    assert [line.split()[-3:-1] for line in out.splitlines()[-1:]] == [["ring", "x8"]]


def test_one_a100_node_is_in_the_nccl_tests_range(capsys: pytest.CaptureFixture[str]) -> None:
    row = _busbw(capsys, "--preset", "a100-node", "--devices", "8", "--bytes", "1e9")
    assert 200 <= row["busbw_gbs"] <= 235


@pytest.mark.parametrize("op", ["scatter", "gather", "broadcast", "reduce", "all_to_all"])
def test_every_op_runs_with_its_default(capsys: pytest.CaptureFixture[str], op: str) -> None:
    row = _busbw(capsys, "--op", op, "--devices", "12", "--bytes", "1200000")
    assert row["time_s"] > 0


def test_a_thousand_devices_run(capsys: pytest.CaptureFixture[str]) -> None:
    row = _busbw(capsys, "--devices", "1000", "--bytes", "1e9", "--algorithm", "ring")
    # 125 nodes, a ring per NIC: 1998 steps of 125 kB each through one NIC
    assert row["channels"] == 8
    hop = 8e-6 + 1e9 / 8000 / 24e9
    assert row["time_s"] == pytest.approx(1998 * hop, rel=1e-6)


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
        (("--bandwidth-gbs", "0"), "--bandwidth-gbs must be finite and > 0"),
        (("--bandwidth-gbs", "inf"), "--bandwidth-gbs must be finite and > 0"),
        (("--latency-us", "nan"), "--latency-us finite and >= 0"),
        (("--bytes", "1e300"), "--bytes must be at most 1e+15 bytes"),
        (("--bytes", "inf"), "--bytes must be a whole number of bytes"),
        (
            ("--min-bytes", "1e3", "--max-bytes", "1e9", "--factor", "1.000001"),
            "more than the limit of 200",
        ),
        (("--factor", "nan", "--min-bytes", "1", "--max-bytes", "8"), "--factor must be a number"),
        (("--devices", "100000"), "at most 4096"),
        (("--channels", "0"), "--channels must be 1 to 64"),
        (("--nodes", "0"), "--nodes must be 1 to"),
        (("--nics", "9"), "nics_per_node must be 1 to devices_per_node (8), got 9"),
        (("--nics", "2", "--bandwidth-gbs", "10"), "use one"),
        (("--algorithm", "naive", "--channels", "2"), "naive all_reduce runs one channel"),
        (("--root", "-1"), "--root must be a rank of the group"),
        (("--preset", "tpu"), "unknown cluster preset 'tpu'"),
        (("--devices", "1"), "at least 2"),
        (("--op", "reduce", "--root", "9"), "root must be a rank of the group"),
        (("--op", "reduce", "--algorithm", "ring"), "choose one of: auto, tree, naive"),
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
