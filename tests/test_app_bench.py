"""Benchmark page through AppTest: a small live CPU run, checked rows, bad input."""

import json
from pathlib import Path

from streamlit.testing.v1 import AppTest

from attn import bench_figures as bf

PAGE = Path(__file__).resolve().parent.parent / "app_pages" / "benchmark.py"


def open_page(**query):
    at = AppTest.from_file(str(PAGE), default_timeout=600)
    at.query_params.update(query)
    return at.run()


def test_small_live_run_checks_every_backend():
    at = open_page(ns="256,512", window="64", heads="2", kvh="1", hd="32")
    assert not at.exception and not at.error
    at.button[0].click().run()
    assert not at.exception and not at.error
    rows = at.session_state["_bench_rows"]
    assert {(r["backend"], r["n"]) for r in rows} == {(b, n) for b in ("naive", "sdpa_mask", "sdpa_causal", "flex")
                                                      for n in (256, 512)}
    assert all(r["status"] == "ok" for r in rows), [(r["backend"], r["n"], r["reason"]) for r in rows]
    # GQA (2 query heads on 1 KV head): every backend's output equals the naive reference.
    assert all(r["check_ok"] for r in rows if r["backend"] not in ("naive", "sdpa_causal"))
    # Useful FLOPs count allowed pairs exactly: sliding window 64 at N = 256 has Σ min(q+1, 64) pairs.
    flex256 = next(r for r in rows if r["backend"] == "flex" and r["n"] == 256)
    assert flex256["useful_flops"] == 4 * 1 * 2 * 32 * sum(min(q + 1, 64) for q in range(256))
    titles = [c.key for c in at.get("plotly_chart")]
    assert {"live_time", "live_mem", "live_tflops"} <= set(titles)
    assert all(row["why"] == "every size ran" for row in bf.largest_n(rows))
    # The live table heads each number with its unit and says why a dense backend has no compile time.
    live = next(d for d in at.dataframe if len(d.value) == len(rows))
    config = json.loads(live.proto.columns)
    assert config["time_ms"]["label"] == "median (ms)" and config["peak_bytes"]["label"] == "peak (bytes)"
    assert "None for the dense backends" in config["compile_ms"]["help"]
    # Bytes and N group their thousands (276,824,064), times keep 3 decimals; the downloads keep full precision.
    assert config["peak_bytes"]["type_config"] == {"type": "number", "format": "localized"}
    assert config["time_ms"]["type_config"]["format"] == "%.3f" and "type_config" not in config["backend"]
    assert live.value["compile_ms"].isna().tolist() == [r["backend"] != "flex" for r in rows]


def test_bad_settings_are_messages():
    at = open_page(ns="256,999999", heads="0", dtype="float8", backends="naive,magic")
    assert not at.exception
    notices = " ".join(w.value for w in at.warning)
    for key in ("ns", "heads", "dtype", "backends"):
        assert f"Ignored URL parameter {key}" in notices
    at = open_page(heads="8", kvh="3")
    assert not at.exception and any("divisible" in e.value or "multiple" in e.value for e in at.error), \
        [e.value for e in at.error]
    # No run with bad settings, but the recorded runs and targets (independent of them) stay on the page.
    assert not [b for b in at.button if b.label == "Run the benchmark"]
    assert any(h.value == "Recorded runs" for h in at.subheader)
    assert any("The benchmark's targets" in m.value for m in at.markdown)
    at = open_page(ns="", backends="")
    assert not at.exception and at.error and any(h.value == "Recorded runs" for h in at.subheader)


def test_slope_fit():
    assert abs(bf.loglog_slope([1, 2, 4, 8], [3, 12, 48, 192]) - 2) < 1e-9
    assert bf.loglog_slope([5], [1]) is None


def test_log_n_axes_are_ticked_at_the_measured_sizes():
    rows = [{"backend": b, "n": n, "status": "ok", "time_ms": n / 100, "peak_bytes": n * 10, "useful_tflops_s": 1.0,
             "executed_tflops_s": 2.0} for b in ("naive", "flex") for n in (512, 1024, 131072)]
    for fig in (bf.growth_figure(rows, "time_ms", "t", "ms"), bf.throughput_figure(rows, "t")):
        assert list(fig.layout.xaxis.tickvals) == [512, 1024, 131072]
        assert list(fig.layout.xaxis.ticktext) == ["512", "1k", "128k"]
    assert bf.n_tick(1536) == "1,536"  # not a whole number of k: written out


def test_throughput_legend_has_one_entry_per_backend_for_both_its_lines():
    rows = [{"backend": b, "n": n, "status": "ok", "useful_tflops_s": 1.0, "executed_tflops_s": 2.0}
            for b in ("naive", "sdpa_mask", "sdpa_causal", "flex") for n in (512, 1024)]
    fig = bf.throughput_figure(rows, "t")
    assert len(fig.data) == 8 and [t.name for t in fig.data if t.showlegend is not False] == [
        "naive", "sdpa_mask", "sdpa_causal", "flex"]
    for t in fig.data:  # each executed line goes with its backend's entry
        assert t.legendgroup == t.name.split(" ")[0] and ("executed" in t.name) == (t.line.dash == "dot")
    assert "dotted: executed" in fig.layout.legend.title.text


def test_targets_are_computed_from_the_recorded_files():
    at = open_page()
    assert not at.exception
    (listing,) = [m.value for m in at.markdown if "GPU: flex" in m.value]
    lines = [line for line in listing.splitlines() if line.startswith("- ")]
    assert len(lines) >= 5
    # assets/bench/kernels_cpu.json (AMD EPYC): flex 0.26× sdpa_mask's time at N = 2048.
    (epyc,) = [line for line in lines if "CPU: flex" in line and "AMD EPYC" in line]
    assert epyc.startswith("- :green[**met**] CPU: flex") and ": **0\\.26×**" in epyc
    assert all(line.split("]")[0] in ("- :green[**met**", "- :red[**missed**", "- :gray[**no data**", "- :blue[**info**")
               for line in lines)


def test_a_link_opens_the_blocks_flex_computes_in_the_explorer():
    import re
    from urllib.parse import parse_qsl

    at = open_page(pattern="local_global", window="32", global_tokens="0, 7", ns="512,2048")
    assert not at.exception and not at.error
    links = [m for md in at.markdown for m in re.findall(r"\]\(explorer\?([^)]*)\)", md.value)]
    assert len(links) == 1, [md.value for md in at.markdown]
    query = dict(parse_qsl(links[0]))
    # The largest N of the run, flex's CPU block size (64), and the mask's own parameters.
    assert query == {"n": "2048", "pattern": "local_global", "window": "32", "global_tokens": "0,7", "causal": "0",
                     "draw": "blocks", "kernel_block": "64"}, query
    explorer = AppTest.from_file(str(PAGE.parent / "mask_explorer.py"), default_timeout=120)
    explorer.query_params.update(query)
    explorer.run()
    assert not explorer.exception and not explorer.warning and not explorer.error
    assert "2,048 · 64×64 blocks" in json.loads(explorer.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"]


def test_document_masking_packs_near_equal_documents_at_every_n():
    """One list of lengths adds up to one N, so the page asks for a number of documents: the default
    runs as it opens, each N gets its own lengths, the link keeps the number, and the Explorer link
    carries the lengths at the N it shows."""
    import re
    from urllib.parse import parse_qsl

    at = open_page(pattern="document", ns="256,512", heads="1", kvh="1", hd="32", backends="naive,sdpa_mask")
    assert not at.exception and not at.error and not at.warning, [e.value for e in at.error]
    assert at.number_input(key="docs").value == 3 and at.query_params["docs"] == "3"
    at.number_input(key="docs").set_value(4).run()
    assert at.query_params["docs"] == "4" and "lengths" not in at.query_params
    links = [m for md in at.markdown for m in re.findall(r"\]\(explorer\?([^)]*)\)", md.value)]
    assert dict(parse_qsl(links[0]))["lengths"] == "128,128,128,128"  # N = 512 in 4
    at.button[0].click().run()
    assert not at.exception and not at.error
    rules = {(r["backend"], r["n"]): r["rule"] for r in at.session_state["_bench_rows"]}
    assert rules[("naive", 256)] == "document(lengths=[64,64,64,64], causal=True)"
    assert rules[("sdpa_mask", 512)] == "document(lengths=[128,128,128,128], causal=True)"
    assert all(r["status"] == "ok" and r.get("check_ok") in (True, None) for r in at.session_state["_bench_rows"])


def test_a_recorded_run_is_drawn_only_once_opened():
    """Drawing every recorded run's three figures and tables on each change made the page take about
    1.3 s per click; a closed run now builds nothing, and opening it draws its own file's numbers."""
    from attn import bench_targets

    runs = bench_targets.load_runs(str(PAGE.parent.parent / "assets" / "bench"))
    assert len(runs) > 1
    opened = {name for name, rows in runs if rows[0].get("device") == "cuda"}  # GPU runs open as the page does
    at = open_page()
    assert not at.exception
    kinds = ("time", "tflops", "mem")
    assert {c.key for c in at.get("plotly_chart")} == {f"{n.removesuffix('.json')}_{k}" for n in opened for k in kinds}
    name, rows = next((n, r) for n, r in runs if n not in opened)
    at.session_state[f"_rec_{name}"] = True  # what clicking its expander does
    at.run()
    assert not at.exception
    stem = name.removesuffix(".json")
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    assert {f"{stem}_{k}" for k in kinds} <= charts.keys()
    # Its time figure holds its file's medians, backend by backend.
    drawn = {t["name"].split(" ")[0]: t["y"] for t in charts[f"{stem}_time"]["data"]}
    expected = {b: [r["time_ms"] for r in rows if r["backend"] == b and r["status"] == "ok"]
                for b in {r["backend"] for r in rows}}
    assert drawn == {b: ys for b, ys in expected.items() if ys}
    # Its table is the file's rows.
    assert any(len(d.value) == len(rows) and set(d.value["backend"]) == {r["backend"] for r in rows}
               for d in at.dataframe)
