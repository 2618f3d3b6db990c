"""The named models are the papers' sizes: their parameter counts match the tables."""

import pytest

from simulator.nn import accounting, named
from simulator.nn.named import NAMED_MODELS, named_model
from simulator.planner.model_presets import MODEL_PRESETS

# Brown et al. 2020, Table 2.1 (n_params); Narayanan et al. 2021, Table 1 (billions)
PUBLISHED = {
    "gpt3-small": 125e6,
    "gpt3-medium": 350e6,
    "gpt3-large": 760e6,
    "gpt3-xl": 1.3e9,
    "gpt3-2.7b": 2.7e9,
    "gpt3-6.7b": 6.7e9,
    "gpt3-13b": 13e9,
    "gpt3-175b": 175e9,
    "megatron-1.7b": 1.7e9,
    "megatron-3.6b": 3.6e9,
    "megatron-7.5b": 7.5e9,
    "megatron-18.4b": 18.4e9,
    "megatron-39.1b": 39.1e9,
    "megatron-76.1b": 76.1e9,
    "megatron-145.6b": 145.6e9,
    "megatron-310.1b": 310.1e9,
    "megatron-529.6b": 529.6e9,
    "megatron-1t": 1008e9,
}
# mixtures of experts: total and active per token (Jiang et al. 2024, Table 1 and the released
# configurations; DeepSeek-V3's shapes without MLA, so not its published 671B)
MOES = {
    "mixtral-8x7b": (46_702_792_704, 12_879_925_248),
    "mixtral-8x22b": (140_630_071_296, 39_161_468_928),
    "deepseek-v3-like": (672_149_632_000, 38_675_510_272),
}
# the parameters of the released checkpoints (Touvron et al. 2023; Llama Team 2024), exactly
LLAMA = {
    "llama2-7b": 6_738_415_616,
    "llama2-70b": 68_976_648_192,
    "llama3-8b": 8_030_261_248,
    "llama3-70b": 70_553_706_496,
    "llama3-405b": 405_853_388_800,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_the_tables(name):
    count = NAMED_MODELS[name].config.build(0, numerics=False).num_parameters
    # Megatron-LM's eq. 2 with V = 51,200 gives its Table 1 to the digit from 39.1B up; the
    # smaller rows (1.7B: eq. 2 gives 1.65B) and GPT-3's (V = 50,257, coarser rounding)
    # are within 3%.
    big = name.startswith("megatron") and PUBLISHED[name] >= 39e9
    assert count == pytest.approx(PUBLISHED[name], rel=0.001 if big else 0.03)


@pytest.mark.parametrize("name", sorted(LLAMA))
def test_llama_parameter_counts_are_the_published_ones_exactly(name):
    config = named_model(name).config
    assert config.build(0, numerics=False).num_parameters == LLAMA[name]
    assert accounting.parameters(config) == LLAMA[name]


@pytest.mark.parametrize("name", sorted(MOES))
def test_mixture_of_experts_counts(name):
    config = named_model(name).config
    model = config.build(0, numerics=False)
    assert (model.num_parameters, model.num_active_parameters) == MOES[name]
    assert (accounting.parameters(config), accounting.active_parameters(config)) == MOES[name]


def test_the_deepseek_v3_like_model_has_its_shapes_and_no_mla():
    c = named_model("deepseek-v3-like").config
    assert (c.layers, c.hidden, c.heads, c.vocab, c.seq_len) == (61, 7168, 128, 129280, 4096)
    assert (c.experts, c.top_k, c.shared_experts, c.moe_ffn_hidden) == (256, 8, 1, 2048)
    assert (c.first_dense_layers, c.ffn_hidden, c.kv_heads) == (3, 18432, 128)  # MHA, not MLA
    assert "Multi-head latent attention is left out" in named.__doc__


def test_every_preset_is_listed_and_published_layouts_divide():
    assert set(NAMED_MODELS) == set(PUBLISHED) | set(LLAMA) | set(MOES)
    assert MODEL_PRESETS is NAMED_MODELS  # plan --model reads the same registry
    for preset in NAMED_MODELS.values():
        if preset.gpus is not None:
            assert (
                preset.tp * preset.pp <= preset.gpus and preset.gpus % (preset.tp * preset.pp) == 0
            )
            assert preset.global_batch % (preset.gpus // (preset.tp * preset.pp)) == 0


def test_an_unknown_name_lists_the_names():
    from simulator.errors import ScenarioError

    with pytest.raises(ScenarioError, match=r"unknown model 'llama4'.*llama3-70b"):
        named_model("llama4")
