"""``python -m simulator models`` and ``presets``: the named models and the hardware."""

from simulator.cli import main
from simulator.hardware import PRESETS


def test_models_lists_every_named_model_with_its_parameters(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, count in (
        ("llama3-8b", "8,030,261,248"),
        ("llama3-70b", "70,553,706,496"),
        ("llama3-405b", "405,853,388,800"),
        ("llama2-7b", "6,738,415,616"),
        ("gpt3-175b", "174,615,846,912"),
    ):
        (line,) = [row for row in out.splitlines() if row.startswith(f"{name} ")]
        assert count in line


def test_presets_lists_h200_and_b200_and_every_fp8_peak(capsys):
    assert {"dgx-h200", "h200-node", "dgx-b200"} <= set(PRESETS)
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert f"{name}: " in out
    assert "fp8 4500" in out and "fp8 1979" in out  # B200, H100/H200 (dense)
    assert out.count("fp8 none (no FP8 tensor cores)") == 3  # a100-node, dgx-a100, v100-node
