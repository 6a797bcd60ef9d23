"""attn.kv against hand-computed values from the published configs."""

import json

import pytest

from attn import kv
from attn.cli import main

GiB, MiB = 2**30, 2**20


def test_parameter_counts_match_the_published_totals():
    for key, published in kv.PUBLISHED_PARAMS.items():
        assert kv.PRESETS[key].params == published, key


# (model, context, KV bytes of its own design, KV bytes with full attention), bf16, batch 1.
# Per token and layer: 2 · kv_heads · head_dim · 2 B.
HAND = [
    # Mistral 7B v0.1: 2·8·128·2 = 4096 B per layer, 32 layers = 128 KiB per token; window 4096.
    ("mistral-7b-v0.1", 2048, 2048 * 128 * 1024, 2048 * 128 * 1024),
    ("mistral-7b-v0.1", 4096, 512 * MiB, 512 * MiB),
    ("mistral-7b-v0.1", 32768, 512 * MiB, 4 * GiB),
    ("mistral-7b-v0.1", 131072, 512 * MiB, 16 * GiB),
    ("mistral-7b-v0.3", 32768, 4 * GiB, 4 * GiB),
    ("llama-3.1-8b", 131072, 16 * GiB, 16 * GiB),
    # Gemma 2 9B: 2·8·256·2 = 8 KiB per layer; 21 local (4096) + 21 global layers.
    ("gemma-2-9b", 2048, 42 * 8192 * 2048, 42 * 8192 * 2048),
    ("gemma-2-9b", 8192, 21 * 8192 * (8192 + 4096), 42 * 8192 * 8192),
    ("gemma-2-9b", 131072, 21 * 8192 * (131072 + 4096), 42 * 8192 * 131072),
    # Qwen2.5 7B: 2·4·128·2·28 = 56 KiB per token.
    ("qwen2.5-7b", 32768, 56 * 1024 * 32768, 56 * 1024 * 32768),
    # Mistral Small 3: 2·8·128·2·40 = 160 KiB per token.
    ("mistral-small-3-24b", 32768, 5 * GiB, 5 * GiB),
]


@pytest.mark.parametrize("key, context, own, full", HAND)
def test_kv_bytes_by_hand(key, context, own, full):
    m = kv.PRESETS[key]
    assert kv.kv_bytes(m, context) == own
    assert kv.kv_bytes(m, context, design=kv.Design("full")) == full
    r = kv.report(m, context)
    assert (r["kv_bytes"], r["kv_bytes_full"]) == (own, full)
    assert r["weights_bytes"] == 2 * kv.PUBLISHED_PARAMS[key]


def test_per_token_figures_from_the_issue():
    m = kv.PRESETS["mistral-7b-v0.1"]
    assert kv.kv_bytes_per_token_layer(m) * m.layers == 128 * 1024
    assert kv.report(m, 32768)["kv_bytes_per_token"] == 16 * 1024  # 512 MiB / 32768 tokens


@pytest.mark.parametrize("key", list(kv.PRESETS))
def test_batch_and_dtype_scale_linearly(key):
    m = kv.PRESETS[key]
    one = kv.kv_bytes(m, 10_000)
    assert kv.kv_bytes(m, 10_000, batch=8) == 8 * one
    assert kv.kv_bytes(m, 10_000, kv_dtype="fp8") * 2 == one
    assert kv.weights_bytes(m, "int4") * 4 == kv.weights_bytes(m, "bf16")


def test_window_larger_than_context_saves_nothing():
    m = kv.PRESETS["mistral-7b-v0.1"]
    for t in (1, 100, 4095, 4096):
        assert kv.kv_saving(m, t) == 0
        assert kv.kv_bytes(m, t) == kv.kv_bytes(m, t, design=kv.Design("full"))
    assert kv.kv_saving(m, 8192) == 0.5


def test_designs_applied_to_a_full_model():
    m = kv.PRESETS["llama-3.1-8b"]  # 32 layers, 128 KiB per token
    per_layer = 4096
    t = 65536
    assert kv.kv_bytes(m, t, design=kv.Design("sliding", window=1024)) == 32 * per_layer * 1024
    # hybrid: layers 4, 8, …, 32 global (8 of them), 24 with window 1024
    assert kv.kv_bytes(m, t, design=kv.Design("hybrid", window=1024, every=4)) == per_layer * (8 * t + 24 * 1024)
    assert kv.kv_bytes(m, t, design=kv.Design("sinks", window=1020, sinks=4)) == 32 * per_layer * 1024
    assert kv.kv_bytes(m, t, design=kv.Design("chunked", chunk=8192, every=4)) == per_layer * (8 * t + 24 * 8192)
    assert kv.kv_bytes(m, t, design=kv.Design("chunked", chunk=8192)) == 32 * per_layer * 8192
    assert kv.layer_caps(m, kv.Design("hybrid", window=7, every=4))[:4] == (7, 7, 7, None)


def test_attention_flops_per_token():
    m = kv.PRESETS["mistral-7b-v0.1"]
    # 4 · 32 heads · 128 · (32 layers · 4096 keys)
    assert kv.attention_flops_per_token(m, 32768) == 4 * 32 * 128 * 32 * 4096
    assert kv.attention_flops_per_token(m, 32768, kv.Design("full")) == 4 * 32 * 128 * 32 * 32768
    assert kv.weight_flops_per_token(m) == 2 * 7_241_732_096


def test_context_for_saving_matches_a_scan():
    m = kv.custom_model(layers=3, q_heads=4, kv_heads=2, head_dim=8, params=10**6, windows=(64, None, 16))
    for target in (0.1, 0.3, 0.5, 0.6):
        expected = next((t for t in range(1, 20000) if kv.kv_saving(m, t) >= target), None)
        assert kv.context_for_saving(m, target) == expected
    assert kv.saving_limit(m) == pytest.approx(2 / 3)
    assert kv.context_for_saving(m, 0.7) is None
    mistral = kv.PRESETS["mistral-7b-v0.1"]
    assert kv.context_for_saving(mistral, 0.6) == 10240  # 1 − 4096/T ≥ 0.6  ⇔  T ≥ 2.5 · 4096
    assert kv.context_for_saving(mistral, 0.8) == 20480


def test_largest_context_and_batch_on_a_gpu():
    llama = kv.PRESETS["llama-3.1-8b"]
    h100 = next(g for g in kv.GPUS if g.name.startswith("H100"))
    budget = 81_559 * MiB - 2 * 8_030_261_248  # the 79.65 GiB an H100 80GB's driver reports
    fit = kv.fit_on(h100, llama, 32768)
    assert fit.max_context == budget // (128 * 1024) and not fit.unbounded
    assert fit.max_batch == budget // (4 * GiB) and fit.fits
    # one token more than the largest context does not fit
    assert kv.vram_bytes(llama, fit.max_context + 1) > h100.memory_bytes >= kv.vram_bytes(llama, fit.max_context)
    small = next(g for g in kv.GPUS if g.name.startswith("RTX 3060"))
    assert kv.fit_on(small, llama, 1024).max_context is None  # 16 GB of weights on a 12 GiB card
    assert kv.fit_on(small, llama, 1024, weight_dtype="int4").max_context > 0
    mistral = kv.PRESETS["mistral-7b-v0.1"]  # every layer capped: the cache stops growing
    assert kv.fit_on(h100, mistral, 32768).unbounded


def test_fixed_state_references():
    m = kv.PRESETS["mistral-7b-v0.1"]
    assert kv.linear_attention_state_bytes(m) == 32 * 8 * (128 * 128 + 128) * 2
    assert kv.mamba_state_bytes(m) == 32 * (2 * 4096) * (16 + 3) * 2
    assert kv.mamba_state_bytes(m, batch=3) == 3 * kv.mamba_state_bytes(m)


def test_verdict_states_computed_numbers():
    m = kv.PRESETS["mistral-7b-v0.1"]
    text = " ".join(kv.verdict(m, 32768))
    assert "60% from 10,240 tokens" in text and "80% from 20,480 tokens" in text
    assert "512 MiB vs 4 GiB" in text and "(88% saved)" in text
    assert "nothing is saved" in text
    gemma = " ".join(kv.verdict(kv.PRESETS["gemma-2-9b"], 8192))
    assert "never exceed 50%" in gemma
    assert "saves nothing" in " ".join(kv.verdict(kv.PRESETS["llama-3.1-8b"], 8192))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layers=0, q_heads=8, kv_heads=8, head_dim=64, params=10**9), "Layers"),
        (dict(layers=4, q_heads=8, kv_heads=16, head_dim=64, params=10**9), "cannot exceed"),
        (dict(layers=4, q_heads=8, kv_heads=3, head_dim=64, params=10**9), "multiple"),
        (dict(layers=4, q_heads=8, kv_heads=8, head_dim=-1, params=10**9), "Head dim"),
        (dict(layers=4, q_heads=8, kv_heads=8, head_dim=64, params=0), "Parameters"),
        (dict(layers=4, q_heads=8, kv_heads=8, head_dim=64, params=10**9, windows=(1, 2, 3)), "3 entries"),
        (dict(layers=4, q_heads=8, kv_heads=8, head_dim=64, params=10**9, windows=(0,)), "window"),
    ],
)
def test_custom_model_refuses_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kv.custom_model(**kwargs)


def test_bad_context_batch_design():
    m = kv.PRESETS["qwen2.5-7b"]
    for bad in (0, -5, kv.MAX_CONTEXT + 1):
        with pytest.raises(ValueError, match="Context"):
            kv.kv_bytes(m, bad)
    with pytest.raises(ValueError, match="Batch"):
        kv.kv_bytes(m, 10, batch=0)
    with pytest.raises(ValueError, match="Every k-th layer"):
        kv.kv_bytes(m, 10, design=kv.Design("hybrid", every=-1))
    # k = 0 means no global layer: the same cache as a sliding window in every layer.
    none = kv.Design("hybrid", window=1024, every=0)
    assert kv.layer_caps(m, none) == (1024,) * m.layers
    assert kv.kv_bytes(m, 8192, design=none) == kv.kv_bytes(m, 8192, design=kv.Design("sliding", window=1024))
    assert none.label == "sliding window 1,024, no global layer"
    with pytest.raises(ValueError, match="Unknown design"):
        kv.kv_bytes(m, 10, design=kv.Design("magic"))
    with pytest.raises(ValueError, match="Unknown dtype"):
        kv.kv_bytes(m, 10, kv_dtype="fp5")
    with pytest.raises(ValueError, match="Overhead"):
        kv.report(m, 10, overhead_bytes=-1)


def test_parse_windows():
    assert kv.parse_windows("full") is None and kv.parse_windows("") is None
    assert kv.parse_windows("4096, full, 4096; global") == (4096, None, 4096, None)
    for bad in ("4k", "-3", "1e9", "99999999999"):
        with pytest.raises(ValueError):
            kv.parse_windows(bad)


def test_cli_json(capsys):
    assert main(["kv", "--model", "mistral-7b-v0.1", "--context", "32768", "--batch", "1", "--kv-dtype", "bf16",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["kv_bytes"], out["kv_bytes_full"], out["weights_bytes"]) == (512 * MiB, 4 * GiB, 2 * 7_241_732_096)
    assert main(["kv", "--model", "gemma-2-9b", "--context", "8192", "--batch", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kv_bytes"] == 2 * 21 * 8192 * (8192 + 4096)


def test_cli_list_and_errors(attn_cli):
    listed = attn_cli("kv", "--list")
    assert listed.returncode == 0 and all(k in listed.stdout for k in kv.PRESETS)
    for args, message in ((["--model", "gpt-5"], "Unknown model"), (["--model", "qwen2.5-7b", "--context", "0"], "Context"),
                          ([], "--model")):
        p = attn_cli("kv", *args)
        assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr


def test_size_text():
    assert kv.size_text(1008 * 2**20) == "1,008 MiB"
    assert kv.size_text(86.6 * 2**30) == "86.6 GiB"
    assert kv.size_text(512 * 2**20) == "512 MiB"
    assert kv.size_text(16 * 1024) == "16 KiB"
    assert kv.size_text(4112 * 2**30) == "4,112 GiB"  # thousands separated, as every other number
    assert kv.size_text(1536 * 2**30) == "1,536 GiB"
    assert kv.size_text(12) == "12 B"


@pytest.mark.parametrize("share, expected", [
    (0, "0%"), (1, "100%"), (0.875, "88%"), (0.5, "50%"),
    (1 - 1 / 256, "99.6%"), (0.9996, "99.96%"), (0.003, "0.3%"), (0.004, "0.4%"), (1e-5, "0.001%"),
    (1 - 1e-9, "> 99.999%"), (1e-9, "< 0.001%"), (-0.002, "-0.2%"),
])
def test_percent_text_never_rounds_a_part_to_none_or_all(share, expected):
    assert kv.percent_text(share) == expected


def test_sinks_verdict_names_its_cap_not_a_window():
    # 4 sinks + a 4,096 window keep 4,100 tokens: that is a cap made of two parts, not a 4,100-token window.
    lines = kv.verdict(kv.PRESETS["llama-3.1-8b"], 32768, design=kv.Design("sinks", window=4096, sinks=4))
    text = " ".join(lines)
    assert "its 4,100-token cap (4 sinks + a 4,096-token window)" in text and "4,100-token window" not in text


def test_params_text_as_model_cards_write_it():
    assert kv.params_text(7_241_732_096) == "7.24B"
    assert kv.params_text(134_515_008) == "135M"
    assert kv.params_text(1_000_000) == "1M" and kv.params_text(2_500) == "2.5K" and kv.params_text(12) == "12"
    assert kv.params_text(999_600_000) == "1.00B" and kv.params_text(999_999) == "1M" and kv.params_text(999) == "999"
