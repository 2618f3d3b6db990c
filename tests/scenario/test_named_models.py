"""``[model] name``: a named model from the papers, any of its keys overridden."""

import pytest

from simulator.nn.llama import LlamaConfig
from simulator.nn.named import named_model
from simulator.scenario.parse import parse_scenario
from tests.conftest import assert_run_fails


def scenario(model: dict) -> dict:
    return {
        "cluster": {"preset": "dgx-h100"},
        "model": model,
        "training": {"numerics": False, "global_batch": 8},
        "strategy": [{"name": "s", "tp": 8}],
    }


def test_a_name_loads_the_model_and_other_keys_override_it():
    model = parse_scenario(scenario({"name": "llama3-70b", "layers": 2, "seq_len": 1024})).model
    expected = named_model("llama3-70b").config
    assert isinstance(model, LlamaConfig)
    assert (model.layers, model.seq_len) == (2, 1024)
    assert (model.hidden, model.kv_heads, model.ffn_hidden, model.vocab) == (
        expected.hidden,
        expected.kv_heads,
        expected.ffn_hidden,
        expected.vocab,
    )
    assert parse_scenario(scenario({"name": "gpt3-xl", "kind": "gpt"})).model.hidden == 2048


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ('name = "llama4"', "[model] name must be one of"),
        ('name = "llama3-8b"\nkind = "gpt"', "is a 'llama' model, but kind = 'gpt'"),
        ('name = "llama3-8b"\nffn_mult = 4', "unknown key 'ffn_mult' in [model]"),
        ('name = "llama3-8b"\nkv_heads = 5', "kv_heads must divide heads"),
    ],
)
def test_bad_names_and_overrides_exit_2_with_one_line(tmp_path, capsys, model, message):
    text = f"""
[cluster]
preset = "dgx-h100"
[model]
{model}
[training]
numerics = false
global_batch = 8
[[strategy]]
name = "s"
"""
    assert_run_fails(tmp_path, capsys, text, message)
