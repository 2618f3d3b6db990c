"""``python -m simulator mesh``: flags checked like scenario keys, sizes within the limit."""

from __future__ import annotations

import pytest

from simulator.cli import main


def _cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(["mesh", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_devices_and_groups(capsys) -> None:
    code, out, _ = _cli(capsys, "--dp", "2", "--tp", "2", "--pp", "2")
    assert code == 0
    assert "2 x 2 x 2 (dp x tp x pp) = 8 devices on 1 node(s)" in out
    assert "devices [0, 1]: inside node 0" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("--dp", "1000", "--tp", "1000", "--pp", "1000"),
            "--dp * --cp * --tp * --pp = 1,000,000,000 is over the limit max_devices = 65,536; "
            "if you mean it, raise the limit with --max-devices N",
        ),
        (("--dp", "4", "--max-devices", "2"), "= 4 is over the limit max_devices = 2"),
        (("--nodes", "0"), "--nodes must be an integer in [1, 1e+09], got 0"),
        (("--dp", "0"), "--dp must be an integer >= 1, got 0"),
        (("--tp", "-2"), "--tp must be an integer >= 1, got -2"),
        (("--order", "tp-tp-pp"), "order 'tp-tp-pp' must name each of tp, dp and pp once"),
    ],
)
def test_bad_flags_exit_2_with_one_line(capsys, argv, message) -> None:
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err, err


def test_a_raised_limit_lets_a_large_mesh_through(capsys) -> None:
    code, out, _ = _cli(capsys, "--dp", "4", "--max-devices", "4")
    assert code == 0 and "= 4 devices" in out
