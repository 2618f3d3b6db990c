"""The command line's own errors: a flag argparse cannot read is one ``error:`` line too."""

import pytest

from simulator.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [
                "goodput",
                "--devices",
                "2.5",
                "--mtbf-hours",
                "1",
                "--checkpoint-s",
                "1",
                "--restart-s",
                "1",
            ],
            "error: python -m simulator goodput: argument --devices: expected an integer, got "
            "'2.5' (see python -m simulator goodput --help)",
        ),
        (["goodput"], "the following arguments are required: --devices"),
        (["mesh", "--dp", "\uff12"], "argument --dp: expected an integer, got '\uff12'"),
        (["collective", "--latency-us", "\u0661.5"], "argument --latency-us: expected a number"),
        (["nosuch"], "argument COMMAND: invalid choice: 'nosuch'"),
        (["run", "x.toml", "--max-steps", "many"], "argument --max-steps: expected an integer"),
        (
            ["schedule", "1f1b", "--stages", "\u0661"],
            "argument --stages/-p: expected an integer, got '\u0661'",
        ),
    ],
)
def test_an_unreadable_command_line_is_one_error_line(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    assert message in captured.err and "usage:" not in captured.err
    assert captured.out == ""
