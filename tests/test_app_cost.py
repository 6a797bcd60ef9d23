"""Serving Cost page through AppTest: numbers shown against attn.kv and hand-computed values."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from attn import kv

PAGE = Path(__file__).resolve().parent.parent / "app_pages" / "serving_cost.py"
GiB = 2**30


def open_page(**query):
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.query_params.update(query)
    return at.run()


def metric(at, label):
    return next(m for m in at.metric if m.label == label).value


def text(at):
    return " ".join(m.value for m in at.markdown)


def test_defaults_show_mistral_at_32k():
    at = open_page()
    assert not at.exception and not at.error and not at.warning
    assert metric(at, "KV cache") == "512 MiB"  # 32 layers × 4096 tokens × 4 KiB
    assert metric(at, "KV cache per token") == "16 KiB"
    assert metric(at, "Weights") == kv.size_text(2 * kv.PUBLISHED_PARAMS["mistral-7b-v0.1"])
    # weights + 512 MiB + the 1 GiB allowance
    assert metric(at, "VRAM total") == kv.size_text(2 * kv.PUBLISHED_PARAMS["mistral-7b-v0.1"] + 512 * 2**20 + GiB)
    assert "60% from 10,240 tokens" in text(at) and "80% from 20,480 tokens" in text(at)
    assert len(at.get("plotly_chart")) == 4


def test_url_opens_gemma_with_batch_and_fit_table():
    at = open_page(model="gemma-2-9b", ctx="8192", batch="2", overhead="0")
    assert not at.exception and not at.warning
    assert at.selectbox(key="model").value == "gemma-2-9b"
    assert metric(at, "KV cache") == kv.size_text(2 * 21 * 8192 * (8192 + 4096))  # 3.94 GiB
    assert "never exceed 50%" in text(at)
    old = open_page(model="gemma2-9b", ctx="8192")  # the name the Receptive Field page once used
    assert not old.warning and old.selectbox(key="model").value == "gemma-2-9b"
    df = at.dataframe[0].value
    h100 = df[df["GPU"] == "H100 80 GB"].iloc[0]
    assert h100["memory (driver)"] == "79.6 GiB"  # 81,559 MiB, what its driver reports
    budget = 81_559 * 2**20 - 2 * kv.PUBLISHED_PARAMS["gemma-2-9b"]  # 79.65 GiB, as the H100's driver reports
    per_seq_8k = 21 * 8192 * (8192 + 4096)
    assert h100["largest batch at 8k"] == budget // per_seq_8k
    assert h100["largest batch, full attention"] == budget // (42 * 8192 * 8192)
    assert not at.info  # 8192 is within Gemma 2's trained context
    assert open_page(model="gemma-2-9b", ctx="16384").info  # beyond it: a notice, numbers still shown


def test_design_switch_changes_the_numbers():
    at = open_page(model="llama-3.1-8b", ctx="65536")
    assert metric(at, "KV cache") == "8 GiB"
    at.selectbox(key="design").set_value("hybrid").run()
    at.number_input(key="window").set_value(1024).run()
    at.number_input(key="every").set_value(4).run()
    assert not at.exception
    assert metric(at, "KV cache") == kv.size_text(4096 * (8 * 65536 + 24 * 1024))
    assert at.query_params["design"] == "hybrid" and at.query_params["every"] == "4"


def test_bad_url_values_get_notices_and_defaults():
    at = open_page(model="gpt-9", ctx="12345", batch="-3", overhead="nan", design="<script>", window="x")
    assert not at.exception
    notices = " ".join(w.value for w in at.warning)
    for key in ("model", "ctx", "batch", "overhead", "design"):
        assert f"Ignored URL parameter {key}" in notices
    assert metric(at, "KV cache") == "512 MiB"  # the defaults are shown


def test_custom_model_errors_are_messages():
    at = open_page(model="custom", c_layers="4", c_qh="8", c_kvh="16", c_hd="64", c_params="1")
    assert not at.exception
    assert any("cannot exceed" in e.value for e in at.error)
    at = open_page(model="custom", c_layers="4", c_qh="8", c_kvh="2", c_hd="64", c_params="1", c_windows="64, full")
    assert any("2 entries but the model has 4 layers" in e.value for e in at.error)
    # The sidebar's error, and the main area says it again (presenter view folds the sidebar away).
    assert len(at.error) == 1 and any("fixed: The window list has 2 entries" in i.value for i in at.main.info), \
        [i.value for i in at.main.info]
    at.text_input(key="c_windows").set_value("64, full, 64, full").run()
    assert not at.error and not at.exception
    # 2 KV heads × 64 × 2 × 2 B = 512 B per layer per token; at 32768: 2 layers × 64 + 2 × 32768 tokens
    assert metric(at, "KV cache") == kv.size_text(512 * (2 * 64 + 2 * 32768))


def test_a_saving_just_short_of_all_is_not_rounded_to_100_percent():
    # Llama 3.1 8B: 32 layers × 8 KV heads × 128 dims × (K + V) × 2 bytes = 128 KiB a token, so
    # 1,048,576 tokens hold 128 GiB; a 4,096-token window keeps 512 MiB: 1 − 1/256 = 99.6% saved.
    at = open_page(model="llama-3.1-8b", design="sliding", ctx="1048576")
    assert not at.exception and not at.error
    kv_metric = next(m for m in at.metric if m.label == "KV cache")
    assert kv_metric.value == "512 MiB" and kv_metric.delta == "-99.6% vs full"
    assert "(99.6% saved)" in text(at)


def test_hybrid_with_no_global_layer_is_the_sliding_window():
    # The sidebar offers "every k-th layer global (0: none)": 0 must compute, as a window in every layer.
    at = open_page(model="llama-3.1-8b", ctx="32768", design="hybrid", window="4096", every="0")
    assert not at.exception and not at.error
    # 32 layers × 4,096 tokens × 2 × 8 KV heads × 128 × 2 bytes = 512 MiB
    assert metric(at, "KV cache") == kv.size_text(32 * 4096 * 2 * 8 * 128 * 2) == "512 MiB"
    assert "32 of 32 layers keep at most 4,096 tokens" in text(at)
