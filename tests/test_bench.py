"""The kernel benchmark: FLOP counts by hand, estimates and skips, row schema, JSON/CSV, CLI."""

import csv
import datetime
import json
import subprocess
import sys

import pytest
import torch

from attn import bench as B
from attn import cli
from attn import kernels as K
from attn import masks as M
from attn.render import mask_stats

# The flex graph of tests/test_kernels.py's first compiled case (same rule and shapes),
# so the benchmark reuses inductor's cached kernel instead of compiling another.
TINY = dict(pattern="sliding_window", ns=(300,), params=(("window", 37),), batch=2, heads=4, kv_heads=2, head_dim=16)


def tiny(**kw) -> B.BenchConfig:
    return B.BenchConfig(**{**TINY, "repeats": 3, "warmup": 1, **kw})


# Tests check values, not speed: one torch thread (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ FLOPs ---
def test_flops_by_hand_sliding_window_2048():
    n, w, h, d = 2048, 256, 8, 64
    allowed = w * (w + 1) // 2 + (n - w) * w  # the first w rows see 1..w keys, the rest w
    assert mask_stats(M.sliding_window(w), n).allowed_pairs == allowed == 491648
    assert B.pair_flops(allowed, 1, h, d) == 4 * h * d * allowed
    assert B.executed_pairs("naive", n, allowed, None) == n * n
    assert B.executed_pairs("sdpa_mask", n, allowed, None) == n * n
    assert B.executed_pairs("sdpa_causal", n, allowed, None) == n * (n + 1) // 2
    # Query block i touches key blocks i-2 .. i: 1 + 2 + 14·3 = 45 blocks of 128².
    assert B._tile_pairs(M.sliding_window(w), n) == 45 * 128 * 128
    assert B.executed_pairs("flex", n, allowed, 45 * 128 * 128) == 737280
    # On a CPU flex runs blocks of 64: 1 + 2 + 3 + 4 + 28·5 = 150 blocks of 64².
    assert B._tile_pairs(M.sliding_window(w), n, 64) == 150 * 64 * 64 == 614400


def test_estimates_grow_as_each_backend_should():
    def est(backend, n, device="cpu"):
        return B.estimate_bytes(backend, B.Shape(1, 16, 16, n, 128, 2), device)

    for backend in ("naive", "sdpa_mask"):
        assert 3.5 < est(backend, 65536) / est(backend, 32768) <= 4  # N² dominates
    assert est("flex", 32768, "cuda") / est("flex", 16384, "cuda") == 2  # linear on GPU
    assert est("sdpa_causal", 32768) / est("sdpa_causal", 16384) == 2
    # naive holds two B·H·N² score copies.
    assert est("naive", 8192) > 2 * 16 * 8192**2 * 2


# ---------------------------------------------------------- a real run ---
def test_tiny_run_rows_and_check():
    rows = B.run_bench(tiny(check=True))
    assert [r["backend"] for r in rows] == list(K.BACKENDS)
    by = {r["backend"]: r for r in rows}
    for r in rows:
        assert set(r) == set(B.ROW_FIELDS)
        assert r["status"] == "ok", r["reason"]
        assert r["n"] == 300 and r["dtype"] == "float32" and r["device"] == "cpu"
        assert r["device_name"].startswith("cpu (") and r["torch"] == torch.__version__
        datetime.datetime.fromisoformat(r["date"])
        assert 0 < r["time_ms_min"] <= r["time_ms"] and r["first_call_ms"] > 0 and r["peak_bytes"] > 0
        assert r["peak_method"].startswith("torch profiler")
        assert r["useful_flops"] == B.pair_flops(r["allowed_pairs"], 2, 4, 16)
        assert r["executed_flops"] == B.pair_flops(r["executed_pairs"], 2, 4, 16)
        assert r["useful_tflops_s"] == pytest.approx(r["useful_flops"] / r["time_ms"] / 1e9, rel=1e-3)
        assert r["pct_of_peak"] == pytest.approx(100 * r["executed_tflops_s"] / r["peak_tflops_s"], rel=1e-3)
        assert r["max_abs_err"] < 1e-5 and r["check_ok"] is True
    allowed = 37 * 38 // 2 + (300 - 37) * 37
    assert by["flex"]["allowed_pairs"] == by["naive"]["allowed_pairs"] == allowed
    assert by["sdpa_causal"]["allowed_pairs"] == 300 * 301 // 2 and by["sdpa_causal"]["computes"] == "causal"
    assert "causal" in by["sdpa_causal"]["check_against"]
    assert by["naive"]["executed_pairs"] == 300 * 300
    # From its BlockMask of 64 × 64 blocks (on a CPU): N = 300 is blocks of 64, 64, 64, 64, 44, and with
    # W = 37 query block i touches key blocks i-1 and i.
    assert by["flex"]["flex_block"] == 64 and by["naive"]["flex_block"] is None
    assert by["flex"]["executed_pairs"] == 64 * 64 + 3 * 2 * 64 * 64 + 44 * 64 + 44 * 44
    assert by["flex"]["block_mask_ms"] > 0 and by["flex"]["compile_ms"] >= 0 and "flex" in by["flex"]["note"]
    assert by["naive"]["dense_mask_ms"] > 0 and by["naive"]["block_mask_ms"] is None
    # naive holds the B·H·N² scores (twice); the fused kernels stay far below.
    scores = 2 * 4 * 300 * 300 * 4
    assert by["naive"]["peak_bytes"] >= 2 * scores > by["sdpa_causal"]["peak_bytes"]


def test_sweep_runs_in_ascending_order_and_dense_sizes_stop_at_the_memory_they_need():
    budget = 2 * 2**30
    cfg = B.BenchConfig("sliding_window", (20000, 17), ("naive",), (("window", 4),), heads=1, head_dim=16, repeats=1,
                        memory_budget_bytes=budget)  # fmt: skip
    rows = B.run_bench(cfg)
    assert [(r["n"], r["status"]) for r in rows] == [(17, "ok"), (20000, "skipped")]
    # The mask (N² bytes), one slab of predicate values, then two fp32 score copies and the output.
    n2 = 20000**2
    slab = 10 * K.dense_slab_rows(20000) * 20000
    assert rows[1]["estimate_bytes"] == 3 * 20000 * 16 * 4 + n2 + max(slab, n2 + 2 * n2 * 4) + 20000 * 16 * 4
    assert rows[1]["reason"] == f"needs {B._gib(rows[1]['estimate_bytes'])}, budget 2.0 GiB" == "needs 3.7 GiB, budget 2.0 GiB"


# ------------------------------------------------------------ skip paths ---
def test_tiny_memory_budget_skips_with_the_numbers():
    rows = B.run_bench(tiny(memory_budget_bytes=1000))
    assert {r["status"] for r in rows} == {"skipped"}
    for r in rows:
        assert r["reason"] == f"needs {B._gib(r['estimate_bytes'])}, budget 0 MiB"
        assert r["time_ms"] is None and r["peak_bytes"] is None


def test_skip_reason_reads_in_gib():
    # sdpa_mask at 131072, fp32: the 16 GiB bool mask, then its 64 GiB float copy.
    cfg = B.BenchConfig("sliding_window", (131072,), ("sdpa_mask",), (("window", 64),), heads=1, head_dim=16,
                        memory_budget_bytes=70 * 2**30)  # fmt: skip
    (row,) = B.run_bench(cfg)
    assert row["status"] == "skipped" and row["reason"] == "needs 80.0 GiB, budget 70.0 GiB"


def test_cpu_flex_estimate_counts_tiles_not_pairs():
    shape = B.Shape(1, 1, 1, 131072, 16, 4)
    blocks = (131072 // 64) ** 2
    inputs_and_work = 3 * shape.q_bytes + 3 * shape.q_bytes
    assert B.estimate_bytes("flex", shape, "cpu", block_mask_from_tiles=True) == inputs_and_work + 80 * blocks  # 0.3 GiB
    assert B.estimate_bytes("flex", shape, "cpu") == inputs_and_work + 10 * 131072**2  # from the predicate: 160 GiB
    assert B.estimate_bytes("flex", shape, "cuda") == inputs_and_work


def test_check_is_skipped_with_a_reason_when_the_reference_does_not_fit():
    shape = B.Shape(2, 4, 2, 300, 16, 4)
    budget = B.estimate_bytes("sdpa_causal", shape, "cpu") + 1  # the kernel fits, the naive reference not
    (row,) = B.run_bench(tiny(backends=("sdpa_causal",), check=True, memory_budget_bytes=budget))
    assert row["status"] == "ok" and row["max_abs_err"] is None and row["check_ok"] is None
    assert row["check_against"].startswith("not checked: the naive reference needs")


def test_time_cap_skips_slow_sizes():
    rows = B.run_bench(tiny(backends=("naive",), time_cap_s=1e-6))
    assert rows[0]["status"] == "skipped" and rows[0]["reason"].startswith("would take about")


@pytest.mark.parametrize("backend, assumed", [("naive", B.CPU_ASSUMED_FLOPS_S), ("flex", B.CPU_ASSUMED_FUSED_FLOPS_S),
                                              ("sdpa_causal", B.CPU_ASSUMED_FUSED_FLOPS_S)])
def test_time_cap_first_reduces_repeats(backend, assumed):
    cfg = tiny(backends=(backend,), repeats=1000)
    row = dict(executed_flops=assumed, device="cpu")  # one second per call at the assumed rate
    repeats, skip = B._plan(cfg, backend, 300, dict(row, estimate_bytes=0), 2**40, 60.0, {}, {})
    assert skip is None and repeats == 60 - (cfg.warmup + 1)
    # 30 s a call: even 3 repeats (plus warm-up and the memory call) pass the cap; skipped, with the prediction.
    repeats, skip = B._plan(cfg, backend, 300, dict(row, executed_flops=30 * assumed, estimate_bytes=0), 2**40, 60.0, {}, {})
    assert skip == "would take about 150 s on this CPU, time cap 60 s"
    gpu = dict(row, device="cuda", executed_flops=B.GPU_ASSUMED_FLOPS_S * 30)
    assert B._plan(cfg, backend, 300, dict(gpu, estimate_bytes=0), 2**40, 60.0, {}, {})[1] == \
        "would take about 150 s on this GPU, time cap 60 s"


def test_oom_is_recorded_and_larger_sizes_skipped(monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 34.00 GiB")

    monkeypatch.setattr(K, "run", oom)
    rows = B.run_bench(tiny(ns=(64, 32), backends=("sdpa_causal",)))
    assert [(r["n"], r["status"]) for r in rows] == [(32, "oom"), (64, "skipped")]
    assert rows[0]["reason"].startswith("out of memory: CUDA out of memory")
    assert rows[1]["reason"] == "ran out of memory at N = 32"


def test_other_failures_are_recorded_as_errors(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("kernel exploded\nsecond line")

    monkeypatch.setattr(K, "run", boom)
    (row,) = B.run_bench(tiny(backends=("sdpa_mask",)))
    assert row["status"] == "error" and row["reason"] == "RuntimeError: kernel exploded"


# ---------------------------------------------------------------- output ---
def test_json_and_csv_rows(tmp_path):
    rows = B.run_bench(tiny(backends=("sdpa_mask", "sdpa_causal")))
    B.write_json(rows, tmp_path / "r.json")
    assert B.read_json(tmp_path / "r.json") == rows
    B.write_csv(rows, tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == B.ROW_FIELDS
        back = list(reader)
    assert [r["backend"] for r in back] == ["sdpa_mask", "sdpa_causal"]
    assert float(back[0]["time_ms"]) == rows[0]["time_ms"] and back[0]["block_mask_ms"] == ""


# ----------------------------------------------------------------- peaks ---
def test_cpu_peak_is_computed_from_clock_and_isa():
    tflops, source = B.cpu_peak_tflops(2, 2.45, {"avx2", "fma"})
    assert tflops == pytest.approx(2 * 2.45e9 * 32 / 1e12) and "AVX2+FMA" in source
    assert B.cpu_peak_tflops(4, 3.0, {"avx512f", "avx2", "fma"})[0] == pytest.approx(4 * 3e9 * 64 / 1e12)


@pytest.mark.parametrize(
    "name, dtype, peak",
    [
        ("NVIDIA H100 80GB HBM3", "bfloat16", 989.4),
        ("NVIDIA H100 PCIe", "bfloat16", 756.0),
        ("NVIDIA H200", "bfloat16", 989.4),
        ("NVIDIA A100-SXM4-80GB", "bfloat16", 312.0),
        ("NVIDIA A100-SXM4-80GB", "float32", 19.5),
    ],
)
def test_gpu_peaks_by_device_name(monkeypatch, name, dtype, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert B.peak_tflops(torch.device("cuda"), dtype)[0] == peak


# ---------------------------------------------------------- validation ---
@pytest.mark.parametrize(
    "change, message",
    [
        (dict(backends=("flash",)), "Unknown backend 'flash'"),
        (dict(ns=(0,)), "between 1 and"),
        (dict(heads=6, kv_heads=4), "multiple of the 4 kv heads"),
        (dict(dtype="int8"), "Unknown dtype"),
        (dict(repeats=0), "repeats must be"),
        (dict(params=(("window", 0),)), "window must be at least 1"),
    ],
)
def test_bad_settings_raise_value_errors(change, message):
    with pytest.raises(ValueError, match=message):
        B.run_bench(tiny(**change))


# ------------------------------------------------------------------- CLI ---
def test_cli_bench_writes_json_and_csv(tmp_path, capsys):
    out, table = tmp_path / "out.json", tmp_path / "out.csv"
    args = ["--pattern", "sliding_window", "--window", "37", "--n", "300", "--heads", "4", "--kv-heads", "2",
            "--head-dim", "16", "--batch", "2", "--backends", "naive,sdpa_mask,sdpa_causal,flex", "--device", "cpu",
            "--dtype", "float32", "--check", "--repeats", "3", "--json", str(out), "--csv", str(table)]  # fmt: skip
    assert cli.main(["bench", *args]) == 0
    rows = json.loads(out.read_text())
    assert [row["backend"] for row in rows] == ["naive", "sdpa_mask", "sdpa_causal", "flex"]
    for row in rows:
        for key in ("backend", "n", "time_ms", "peak_bytes", "useful_flops", "executed_flops", "status"):
            assert row[key] is not None, key
        assert row["status"] == "ok" and row["max_abs_err"] < 1e-5
    assert len(table.read_text().splitlines()) == 5
    captured = capsys.readouterr()
    assert captured.out == "" and "flex" in captured.err  # rows go to the files, summaries to stderr


def test_cli_bench_json_keeps_the_rows_of_a_sweep_cut_short(tmp_path, monkeypatch):
    """A sweep stopped part-way (a lent GPU's time limit, Ctrl-C) leaves the rows it finished in --json."""
    out = tmp_path / "partial.json"
    measured = B._measure
    calls = []

    def measure_then_stop(row, *args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(row["n"])
        return measured(row, *args, **kwargs)

    monkeypatch.setattr(B, "_measure", measure_then_stop)
    args = ["bench", "--pattern", "causal", "--n", "17,40", "--heads", "2", "--head-dim", "16",
            "--backends", "naive", "--repeats", "2", "--json", str(out)]  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        cli.main(args)
    rows = json.loads(out.read_text())
    assert [(r["n"], r["backend"], r["status"]) for r in rows] == [(17, "naive", "ok")]


def test_cli_bench_resume_measures_only_what_is_missing(tmp_path, monkeypatch):
    out = tmp_path / "sweep.json"

    def args(ns="17,40", heads="2", *more):
        return ["bench", "--pattern", "causal", "--n", ns, "--heads", heads, "--head-dim", "16",
                "--backends", "naive,sdpa_causal", "--repeats", "2", "--json", str(out), *more]  # fmt: skip

    assert cli.main(args("17")) == 0
    first = json.loads(out.read_text())
    measured, calls = B._measure, []

    def counting(row, *a, **kw):
        calls.append((row["n"], row["backend"]))
        return measured(row, *a, **kw)

    monkeypatch.setattr(B, "_measure", counting)
    assert cli.main(args("17,40", "2", "--resume")) == 0
    rows = json.loads(out.read_text())
    assert calls == [(40, "naive"), (40, "sdpa_causal")]
    assert rows[:2] == first  # kept as recorded: same times, same dates
    assert [(r["n"], r["backend"], r["status"]) for r in rows[2:]] == [(40, "naive", "ok"), (40, "sdpa_causal", "ok")]

    # Another setup (3 heads) keeps nothing; an earlier out-of-memory row stops larger sizes.
    calls.clear()
    assert cli.main(args("17,40", "3", "--resume")) == 0
    assert calls == [(17, "naive"), (17, "sdpa_causal"), (40, "naive"), (40, "sdpa_causal")]
    rows = json.loads(out.read_text())
    rows[0].update(status="oom", reason="out of memory: CUDA out of memory", time_ms=None)
    out.write_text(json.dumps(rows[:1]))
    calls.clear()
    assert cli.main(args("17,40", "3", "--resume")) == 0
    rows = json.loads(out.read_text())
    assert calls == [(17, "sdpa_causal"), (40, "sdpa_causal")]
    assert (rows[2]["backend"], rows[2]["status"], rows[2]["reason"]) == ("naive", "skipped", "ran out of memory at N = 17")


@pytest.mark.parametrize("text, message", [("not json", "is not a JSON file of bench rows"),
                                           ('{"a": 1}', "is not a JSON list of bench rows")])
def test_cli_bench_resume_refuses_a_file_that_is_not_rows(tmp_path, capsys, text, message):
    out = tmp_path / "x.json"
    out.write_text(text)
    assert cli.main(["bench", "--pattern", "causal", "--n", "17", "--backends", "naive", "--json", str(out), "--resume"]) == 2
    assert message in capsys.readouterr().err and out.read_text() == text
    assert cli.main(["bench", "--pattern", "causal", "--n", "17", "--backends", "naive", "--resume"]) == 2
    assert "give --json FILE too" in capsys.readouterr().err


def test_python_m_attn_bench(tmp_path):
    # The module entry point end to end (flex left out: its first call imports and
    # compiles for seconds, covered in-process above).
    base = [sys.executable, "-m", "attn", "bench", "--pattern", "sinks", "--sinks", "2", "--window", "8",
            "--heads", "2", "--head-dim", "16", "--backends", "naive,sdpa_causal", "--repeats", "2"]  # fmt: skip
    r = subprocess.run([*base, "--n", "17,40", "--json", str(tmp_path / "o.json")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "o.json").read_text())
    assert [(x["n"], x["backend"], x["status"]) for x in rows] == [
        (17, "naive", "ok"), (17, "sdpa_causal", "ok"), (40, "naive", "ok"), (40, "sdpa_causal", "ok")
    ]  # fmt: skip


def test_cli_bench_sweep_to_stdout(capsys):
    rc = cli.main(["bench", "--pattern", "chunked", "--chunk", "8", "--n", "64, 17", "--heads", "2",
                   "--head-dim", "16", "--backends", "sdpa_mask", "--repeats", "2"])  # fmt: skip
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["n"] for r in rows] == [17, 64] and rows[0]["rule"] == "chunked(chunk=8, causal=True)"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--n", "64", "--backends", "naive,flash"], "Unknown backend 'flash'"),
        (["--n", "0"], "at least 1"),
        (["--n", "64,x"], "not a whole number"),
        (["--n", "64", "--heads", "6", "--kv-heads", "4"], "multiple of the 4 kv heads"),
        (["--n", "64", "--dtype", "double"], "Unknown dtype"),
        (["--n", "48", "--pattern", "document", "--docs", "16,16"], "add up to 32"),
    ],
)
def test_cli_bench_bad_input_exits_2(capsys, extra, message):
    args = ["bench", "--pattern", "sliding_window", "--window", "4", *extra]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cli_bench_cuda_without_cuda_exits_2(capsys):
    assert cli.main(["bench", "--pattern", "causal", "--n", "64", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_mask_command_still_takes_a_single_n(capsys):
    assert cli.main(["mask", "--pattern", "sliding_window", "--window", "2", "--n", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["mask"] == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]


# ------------------------------------------------------------------- GPU ---
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_tiny_sweep_bf16():
    cfg = B.BenchConfig("sliding_window", (1024, 2048), params=(("window", 256),), heads=4, head_dim=64,
                        dtype="bfloat16", device="cuda", repeats=5, check=True)  # fmt: skip
    rows = B.run_bench(cfg)
    for r in rows:
        assert r["status"] == "ok", r["reason"]
        assert r["peak_method"].startswith("cuda max_memory_allocated") and r["peak_bytes"] > 0
        assert r["check_ok"] is True, (r["backend"], r["max_abs_err"])
    assert rows[0]["device_name"] == torch.cuda.get_device_name()


def test_a_rule_too_fragmented_at_one_size_gives_error_rows_and_the_sweep_goes_on():
    rule = "q >= k and (q - k) % 3 == 0"  # ~q/3 separate keys in row q: beyond the exact form at N = 8,192
    cfg = tiny(pattern="custom", params=(("rule", rule),), ns=(256, 8192), backends=("sdpa_mask",), heads=1, kv_heads=1)
    rows = B.run_bench(cfg)
    assert [(r["n"], r["status"]) for r in rows] == [(256, "ok"), (8192, "error")]
    assert "too fragmented" in rows[1]["reason"] and rows[1]["time_ms"] is None
    assert rows[0]["allowed_pairs"] == sum(q // 3 + 1 for q in range(256))


def test_causal_attention_still_runs_beside_a_rule_too_fragmented_to_build():
    """sdpa_causal computes causal attention whatever the rule: a rule that cannot be built at this N makes
    only its own backends' rows errors; the causal row is measured and checked against naive causal."""
    rule = "q >= k and (q - k) % 3 == 0"
    cfg = tiny(pattern="custom", params=(("rule", rule),), ns=(8192,), backends=("sdpa_mask", "sdpa_causal"),
               heads=1, kv_heads=1, head_dim=8, repeats=1, check=True)
    mask_row, causal_row = B.run_bench(cfg)
    assert (mask_row["backend"], mask_row["status"]) == ("sdpa_mask", "error") and "too fragmented" in mask_row["reason"]
    assert (causal_row["backend"], causal_row["status"]) == ("sdpa_causal", "ok"), causal_row["reason"]
    assert causal_row["allowed_pairs"] == 8192 * 8193 // 2 and causal_row["computes"] == "causal"
    assert causal_row["check_ok"] is True and causal_row["check_against"].startswith("naive float32 (causal")


def test_a_number_of_documents_gives_near_equal_lengths_at_each_n():
    assert B.rule_for("document", 10, {"documents": 3}).param_dict["lengths"] == (4, 3, 3)
    assert B.rule_for("document", 512, {"documents": 1}).param_dict["lengths"] == (512,)
    assert B.rule_for("document", 12, {"documents": 12}).param_dict["lengths"] == (1,) * 12
    for pattern, documents, message in (("causal", 2, "Only document masking"), ("document", 0, "1 to 12 documents"),
                                        ("document", 13, "1 to 12 documents"), ("document", True, "1 to 12")):
        with pytest.raises(ValueError, match=message):
            B.rule_for(pattern, 12, {"documents": documents})
