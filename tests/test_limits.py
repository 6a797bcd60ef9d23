"""Every limit lives in attn/limits.py, and every module enforces that value (not a copy of it)."""

import tomllib
from pathlib import Path

import pytest

from attn import bench, limits, masks, model, reach, rules, state
from attn.presets import PARAMS, STACK_PRESETS, build_stack

REPO = Path(__file__).resolve().parent.parent


def test_streamlit_upload_limit_is_the_stated_one():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == limits.UPLOAD_MB
    # The largest accepted document, 4 bytes per character in the worst UTF-8 case, fits the upload limit.
    assert limits.DOC_CHARS * 4 <= limits.UPLOAD_MB * 10**6


def test_every_server_start_caps_malloc_arenas_at_the_stated_number():
    import re

    run = re.search(r"^run:.*\n\t(.*)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert f"MALLOC_ARENA_MAX={limits.MALLOC_ARENAS} " in run and "streamlit run app.py" in run
    from attn.server import running_server

    with running_server(REPO / "test-artifacts" / "streamlit-arenas.log", timeout=120) as (_, proc):
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
    assert f"MALLOC_ARENA_MAX={limits.MALLOC_ARENAS}".encode() in environ  # the load test's and browser tests' server


def test_modules_use_the_limits_module():
    assert masks.MAX_N == limits.MAX_N and masks.DENSE_MAX_N == limits.DENSE_MAX_N
    assert reach.MAX_LAYERS == limits.MAX_LAYERS and reach.MATRIX_MAX_N == limits.REACH_MATRIX_MAX_N
    assert rules.CUSTOM_MAX_N == limits.CUSTOM_MAX_N and rules.MAX_RULE_CHARS == limits.RULE_CHARS
    assert model.CPU_LIMITS is limits.MODEL_CPU and model.GPU_LIMITS is limits.MODEL_GPU
    assert state.MAX_TEXT == limits.URL_TEXT_CHARS and bench.CPU_TIME_CAP_S == limits.BENCH_ROW_TIME_S


def test_sequence_length_limit():
    masks.check_n(limits.MAX_N)
    with pytest.raises(ValueError, match=f"between 1 and {limits.MAX_N}"):
        masks.check_n(limits.MAX_N + 1)
    with pytest.raises(ValueError, match=f"between 1 and {limits.MAX_N}"):
        masks.build("sliding_window", limits.MAX_N + 1, window=4)


def test_layer_limit():
    rule = masks.sliding_window(4)
    assert reach.reach_of_token(rule, 256, 255, limits.MAX_LAYERS).sets.shape == (limits.MAX_LAYERS, 256)
    for bad in (0, limits.MAX_LAYERS + 1):
        with pytest.raises(ValueError, match="number of layers"):
            reach.reach_of_token(rule, 256, 255, bad)


def test_document_size_limit():
    model.check_text("x" * limits.DOC_CHARS)
    with pytest.raises(ValueError, match=f"limit is {limits.DOC_CHARS:,}"):
        model.check_text("x" * (limits.DOC_CHARS + 1))


def test_custom_rule_limits():
    with pytest.raises(ValueError):
        rules.custom_rule("q >= k" + " " * limits.RULE_CHARS, 16)
    with pytest.raises(ValueError, match=f"{limits.CUSTOM_MAX_N:,}"):
        rules.custom_rule("q >= k", limits.CUSTOM_MAX_N + 1)


def test_sweep_size_limit():
    ns = tuple(range(64, 64 * (limits.BENCH_MAX_SIZES + 2), 64))
    cfg = bench.BenchConfig(pattern="causal", ns=ns, backends=("naive",))
    with pytest.raises(ValueError, match=f"at most {limits.BENCH_MAX_SIZES} sequence lengths"):
        bench.validate(cfg)
    bench.validate(bench.BenchConfig(pattern="causal", ns=ns[: limits.BENCH_MAX_SIZES], backends=("naive",)))
    with pytest.raises(ValueError, match=f"At most {limits.BENCH_MAX_HEADS} heads"):
        bench.validate(bench.BenchConfig(pattern="causal", ns=(64,), backends=("naive",),
                                         heads=2 * limits.BENCH_MAX_HEADS, kv_heads=2 * limits.BENCH_MAX_HEADS))


def test_probe_limits():
    with pytest.raises(ValueError, match=f"between 1 and {limits.PROBE_MAX_TRIALS}"):
        model.retrieval_grid((32,), (16,), limits.PROBE_MAX_TRIALS + 1)
    with pytest.raises(ValueError, match=f"between 0 and {limits.PROBE_MAX_DISTANCE}"):
        model.retrieval_grid((32,), (limits.PROBE_MAX_DISTANCE + 1,), 1)


def test_url_text_is_cut_at_the_limit():
    assert len(state.parse_param(PARAMS["rule"], "q" * (limits.URL_TEXT_CHARS * 3))) == limits.URL_TEXT_CHARS


def test_a_stack_deeper_than_the_layer_limit_is_refused():
    stack = build_stack(STACK_PRESETS["mistral-7b-v0.1"].spec, limits.MAX_LAYERS + 1, 256, "deep")
    with pytest.raises(ValueError, match="number of layers"):
        reach.reach_of_token(stack, 256, 255, limits.MAX_LAYERS + 1)


def test_limits_table_lists_every_limit():
    names = {row["name"] for row in limits.table()}
    assert {"MAX_N", "MAX_LAYERS", "DOC_CHARS", "UPLOAD_MB", "BENCH_MAX_SIZES", "JOB_RUN_S", "JOB_WAIT_S",
            "CACHE_MAX_BYTES", "CACHE_MAX_ENTRIES", "MODEL_CPU.map_tokens"} <= names


def test_every_probe_trial_has_its_own_fact():
    assert len(model.PROBE_FACTS) >= limits.PROBE_MAX_TRIALS
    assert len({key for key, _ in model.PROBE_FACTS}) == len(model.PROBE_FACTS)
