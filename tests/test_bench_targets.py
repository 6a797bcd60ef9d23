"""The benchmark targets computed from result files: hand-made rows with known ratios and slopes."""

import json

from attn import bench_targets as T
from attn import cli

GPU = dict(device="cuda", dtype="bfloat16", batch=1, heads=16, head_dim=128, device_name="NVIDIA H200", torch="2.13.0")
SW = "sliding_window(window=4096)"


def row(backend, n, rule=SW, status="ok", time_ms=1.0, peak_bytes=1000, useful_tflops_s=1.0, date="2026-12-01T10:00:00",
        reason=None, **setup):
    return dict(GPU, **setup, backend=backend, n=n, rule=rule, status=status, time_ms=time_ms, peak_bytes=peak_bytes,
                useful_tflops_s=useful_tflops_s, date=date, reason=reason)


def by_name(targets, words):
    (t,) = [t for t in targets if words in t.name]
    return t


def gpu_runs(flex_65k_ms=1.5, causal_65k_ms=10.0, sdpa_16k_ms=4.0, flex_16k_ms=1.0, flex_mem_exp=1.0):
    ns = [1024, 4096, 16384, 65536]
    sw = []
    for n in ns:
        sw.append(row("flex", n, time_ms=flex_65k_ms if n == 65536 else (flex_16k_ms if n == 16384 else 0.1),
                      peak_bytes=int(100 * n**flex_mem_exp), useful_tflops_s=300.0))
        sw.append(row("sdpa_causal", n, useful_tflops_s=400.0 if n != 65536 else 600.0))
        if n <= 16384:
            sw.append(row("sdpa_mask", n, time_ms=sdpa_16k_ms if n == 16384 else 0.5, peak_bytes=n * n * 3))
        else:
            sw.append(row("sdpa_mask", n, status="oom", time_ms=None, reason="out of memory: CUDA out of memory"))
    causal = [row("flex", n, rule="causal", time_ms=causal_65k_ms if n == 65536 else 1.0) for n in ns]
    return [("kernels_gpu_sliding_window.json", sw), ("kernels_gpu_causal.json", causal)]


def test_gpu_targets_met_with_the_figures_they_come_from():
    targets = T.gpu_targets(gpu_runs())
    t = by_name(targets, "20% of flex causal")
    assert (t.status, t.measured) == ("met", "0.15×")  # 1.5 ms / 10 ms
    assert "flex 1.5 ms, flex 10 ms at N = 65,536" in t.detail and "kernels_gpu_causal.json" in t.detail
    t = by_name(targets, "3× faster than sdpa_mask")
    assert (t.status, t.measured) == ("met", "4.00×")  # 4 ms / 1 ms
    t = by_name(targets, "slope ≤ 1.1")
    assert (t.status, t.measured) == ("met", "1.00") and "N = 1k…64k" in t.detail
    t = by_name(targets, "sdpa_mask peak memory")
    assert t.status == "info" and t.measured == "2.00"
    assert "largest N that ran 16,384; at N = 65,536: oom (out of memory: CUDA out of memory)" in t.detail
    t = by_name(targets, "60% of sdpa_causal")
    # 300 / 400 at 16k, 300 / 600 at 64k: the lowest share decides.
    assert (t.status, t.measured) == ("missed", "50% (lowest)") and "at N = 65,536" in t.detail
    assert "checked at N = 16k, 64k" in t.detail


def test_gpu_targets_missed():
    targets = T.gpu_targets(gpu_runs(flex_65k_ms=3.0, sdpa_16k_ms=2.5, flex_mem_exp=1.5))
    assert by_name(targets, "20% of flex causal").measured == "0.30×"
    assert by_name(targets, "20% of flex causal").status == "missed"
    assert (by_name(targets, "3× faster").status, by_name(targets, "3× faster").measured) == ("missed", "2.50×")
    assert (by_name(targets, "slope ≤ 1.1").status, by_name(targets, "slope ≤ 1.1").measured) == ("missed", "1.50")


def test_no_gpu_run_says_so():
    for t in T.gpu_targets([]):
        assert t.status == "no data" and "no recorded run with this setup" in t.detail
    # Another setup (8 heads) does not count.
    runs = [(name, [dict(r, heads=8) for r in rows]) for name, rows in gpu_runs()]
    assert {t.status for t in T.gpu_targets(runs)} == {"no data"}


def test_a_size_that_did_not_run_is_named():
    sw, causal = gpu_runs()
    sw = (sw[0], [r for r in sw[1] if not (r["backend"] == "flex" and r["n"] == 65536)])
    t = by_name(T.gpu_targets([sw, causal]), "20% of flex causal")
    assert t.status == "no data" and t.detail.startswith("flex was not run at N = 65,536")
    causal = (causal[0], [dict(r, status="skipped", reason="would take about 40 s on this GPU, time cap 30 s")
                          if r["n"] == 65536 else r for r in causal[1]])
    t = by_name(T.gpu_targets([gpu_runs()[0], causal]), "20% of flex causal")
    assert t.detail.startswith("flex at N = 65,536: skipped (would take about 40 s")


def test_causal_run_from_another_device_is_not_compared():
    sw, causal = gpu_runs()
    causal = (causal[0], [dict(r, device_name="NVIDIA H100 80GB HBM3") for r in causal[1]])
    assert by_name(T.gpu_targets([sw, causal]), "20% of flex causal").status == "no data"


def test_newest_matching_run_is_used():
    old = [row("flex", 2048, SW, time_ms=30.0, date="2026-11-01", **dict(device="cpu", dtype="float32", heads=8, head_dim=64)),
           row("sdpa_mask", 2048, SW, time_ms=60.0, date="2026-11-01", **dict(device="cpu", dtype="float32", heads=8, head_dim=64))]
    new = [dict(r, time_ms=r["time_ms"] / (3 if r["backend"] == "flex" else 1), date="2026-11-20") for r in old]
    for r in old + new:
        r["rule"] = "sliding_window(window=256)"
    (t,) = T.cpu_targets([("kernels_a.json", new), ("kernels_b.json", old)])
    assert (t.status, t.measured) == ("met", "0.17×") and "kernels_a.json" in t.detail
    (t,) = T.cpu_targets([("kernels_b.json", old)])
    assert (t.status, t.measured) == ("missed", "0.50×")


def test_recorded_cpu_runs_one_result_per_processor():
    runs = T.load_runs("assets/bench")
    targets = T.cpu_targets(runs)
    assert len(targets) >= 2  # the AMD EPYC and the Intel Xeon runs
    for t in targets:
        file = t.detail.split("(")[1].split(":")[0]
        rows = dict(runs)[file]
        time = {r["backend"]: r["time_ms"] for r in rows if r["n"] == 2048}
        ratio = time["flex"] / time["sdpa_mask"]
        assert t.measured == f"{ratio:.2f}×" and t.status == ("met" if ratio <= 0.3 else "missed")
        assert rows[0]["device_name"] in t.name


def test_the_run_with_more_repeats_is_used():
    cpu = dict(device="cpu", dtype="float32", heads=8, head_dim=64, device_name="cpu (X, 2 threads)")
    quick = [row("flex", 2048, "sliding_window(window=256)", time_ms=20.0, date="2026-12-02", repeats=10, **cpu),
             row("sdpa_mask", 2048, "sliding_window(window=256)", time_ms=40.0, date="2026-12-02", repeats=10, **cpu)]
    dedicated = [dict(r, repeats=30, date="2026-12-01", time_ms=r["time_ms"] * (0.5 if r["backend"] == "flex" else 1))
                 for r in quick]
    (t,) = T.cpu_targets([("kernels_quick.json", quick), ("kernels_dedicated.json", dedicated)])
    assert (t.status, t.measured) == ("met", "0.25×") and "kernels_dedicated.json" in t.detail


def test_cli_targets(tmp_path, capsys):
    for name, rows in gpu_runs():
        (tmp_path / name).write_text(json.dumps(rows))
    (tmp_path / "kernels_broken.json").write_text("{")  # unreadable files are left out
    assert cli.main(["targets", "--dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [t["status"] for t in out] == ["no data", "met", "met", "met", "info", "missed"]
    assert cli.main(["targets", "--dir", str(tmp_path)]) == 0
    assert "[met] GPU: flex ≥ 3× faster than sdpa_mask at N = 16,384 (sliding window 4096): 4.00×" in capsys.readouterr().out


def test_cli_targets_bad_folder(capsys):
    assert cli.main(["targets", "--dir", "/no/such/folder"]) == 2
    assert "No such folder" in capsys.readouterr().err


def test_a_missed_cpu_target_says_what_the_register_block_experiment_measured(tmp_path):
    cpu = dict(device="cpu", dtype="float32", heads=8, head_dim=64, device_name="cpu (X, 2 threads)")
    runs = [("kernels_x.json", [row("flex", 2048, "sliding_window(window=256)", time_ms=16.0, **cpu),
                                row("sdpa_mask", 2048, "sliding_window(window=256)", time_ms=40.0, **cpu)])]
    experiment = [{"register_block": f"{m}×16", "rows": m, "stock": m == 1, "ratio": ratio, "device_name": name,
                   "date": "2026-12-01T13:00:00"}
                  for m, ratio, name in [(1, 0.41, "cpu (X, 2 threads)"), (8, 0.27, "cpu (X, 2 threads)"),
                                         (16, 0.24, "cpu (X, 2 threads)"), (16, 0.1, "cpu (Y, 2 threads)")]]
    (tmp_path / "flex_cpu_register_block.json").write_text(json.dumps(experiment))
    (tmp_path / "flex_cpu_register_block_broken.json").write_text("[")
    blocks = T.load_register_blocks(str(tmp_path))
    assert len(blocks) == 4 and {b["file"] for b in blocks} == {"flex_cpu_register_block.json"}
    (t,) = T.cpu_targets(runs, blocks)
    assert (t.status, t.measured) == ("missed", "0.40×")
    # Its own CPU's rows only (Y's 0.1 is another processor), the best of them.
    assert t.detail.endswith("a 1×16 register block (0.41× in that experiment); recompiled with 16×16, the same "
                             "blocks gave 0.24× (flex_cpu_register_block.json, 2026-12-01)")
    (t,) = T.cpu_targets(runs)  # no experiment: no note
    assert "register" not in t.detail
    met = [(name, [dict(r, time_ms=r["time_ms"] / 2) if r["backend"] == "flex" else r for r in rows]) for name, rows in runs]
    assert "register" not in T.cpu_targets(met, blocks)[0].detail  # a met target needs no why
