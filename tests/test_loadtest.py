"""`python -m attn loadtest`: its pieces against hand-worked values, and a small real run (the CI version)."""

from __future__ import annotations

import sys
import urllib.parse

import pytest

from web import ARTIFACTS

from attn import loadtest
from attn.loadtest import LoadConfig, check_config, map_url, percentile, session_urls, shared_url
from attn.state import decode_view

CI_SESSIONS = 5
RSS_BOUND_BYTES = 3 * 2**30  # the bound for 30 sessions; 5 must stay well inside it


def test_percentile_is_nearest_rank():
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == 5.0  # ceil(0.95 × 5) = 5th smallest
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([7.0], 95) == 7.0 and percentile([], 50) is None


def test_sessions_ask_for_distinct_maps_that_the_page_understands():
    cfg = LoadConfig(sessions=4, tokens=128, params=(("window", 40),), chromium=sys.executable)
    urls = session_urls(cfg, "http://127.0.0.1:8501")
    assert [want for _, want in urls] == ["window=40", "window=41", "window=42", "window=43"]
    for i, (url, _) in enumerate(urls):
        parts = urllib.parse.urlsplit(url)
        assert parts.path == "/model"
        query = dict(urllib.parse.parse_qsl(parts.query))
        assert query["tokens"] == "128" and query["view"] == "Attention maps"
        values, notices = decode_view(query, n_min=16, extra={"tokens": int, "doc": str, "view": str})
        assert notices == [] and values["pattern"] == "sliding_window" and values["window"] == 40 + i


def test_warm_sessions_open_on_maps_nobody_asks_for():
    cfg = LoadConfig(sessions=4, tokens=128, params=(("window", 40),), chromium=sys.executable)
    url, want = shared_url(cfg, "http://127.0.0.1:8501")
    assert want == "window=44" and want not in [w for _, w in session_urls(cfg, "http://127.0.0.1:8501")]
    assert dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))["window"] == "44"
    assert map_url(cfg, "http://x", 2)[1:] == ("window=42", 42)


def test_a_truncated_rule_label_never_ends_inside_a_number():
    lengths = [10] * 10 + [28]  # label "document(lengths=[10,10,…" is cut at 40 characters, inside a "10"
    cfg = LoadConfig(sessions=1, tokens=128, pattern="document", params=(("lengths", lengths),), vary_window=False,
                     mode="cold", chromium=sys.executable)
    [(_, want)] = session_urls(cfg, "http://x")
    assert want == "document(lengths=[10,10,10,10,10,10,10,"


def test_the_server_job_lines_are_read_back_from_the_log():
    from attn.jobs import job_log_line

    log = "\n".join([
        "  Local URL: http://127.0.0.1:8501",
        job_log_line("attention_maps", 0.1, 1.25, 2, 0, 1000.0),  # before the measured run: not counted
        job_log_line("attention_maps", 4.5, 2.5, 1, 3, 1001.0),
        job_log_line("token_losses", 0.25, 0.75, None, 0, 1002.0),
        job_log_line("attention_maps", 9.0, 1.5, 1, 0, 1003.0),
    ])
    jobs = loadtest.server_jobs(log, since_epoch=1000.5)
    assert jobs["count"] == 3
    assert (jobs["waited_p50_s"], jobs["waited_max_s"]) == (4.5, 9.0)
    assert (jobs["ran_p50_s"], jobs["ran_p95_s"], jobs["ran_max_s"]) == (1.5, 2.5, 2.5)
    assert loadtest.server_jobs("", 0)["count"] == 0


STATE_PAGE = """<html><body>{plots}</body></html>"""


@pytest.mark.browser
def test_the_page_check_wants_both_titles_and_a_whole_number(chromium_path):
    """STATE_JS against hand-made pages: 'window=4' must not match a map of window=40, the grid must
    be the new one too, and an error box is reported as such."""
    from playwright.sync_api import sync_playwright

    def plot(title):  # what the check reads: Plotly's laid-out title on a .js-plotly-plot element
        return f"<div class='js-plotly-plot' data-title='{title}'></div>"

    setup = """() => document.querySelectorAll('.js-plotly-plot').forEach(
        (g) => { g._fullLayout = {title: {text: g.dataset.title}}; })"""
    cases = [
        ([plot("Layer 0 under sliding_window(window=4)"), plot("full"), plot("All 30 layers × 9 heads: sliding_window(window=4)")], "done"),
        ([plot("Layer 0 under sliding_window(window=40)"), plot("full"), plot("All 30 layers × 9 heads: sliding_window(window=40)")], False),
        ([plot("Layer 0 under sliding_window(window=4)"), plot("full"), plot("All 30 layers × 9 heads: sliding_window(window=3)")], False),
        ([plot("Layer 0 under sliding_window(window=4)"), plot("full")], False),
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=loadtest.CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            for plots, expected in cases:
                page.set_content(STATE_PAGE.format(plots="".join(plots)))
                page.evaluate(setup)
                assert page.evaluate(loadtest.STATE_JS, "window=4") == expected, plots
            page.set_content("<div data-testid='stAlertContentError'>The model failed</div>")
            assert page.evaluate(loadtest.STATE_JS, "window=4") == "error: The model failed"
        finally:
            browser.close()


@pytest.mark.parametrize("change, message", [
    ({"sessions": 0}, "between 1 and"),
    ({"sessions": loadtest.MAX_SESSIONS + 1}, "between 1 and"),
    ({"tokens": 4096}, "Tokens must be"),
    ({"url": "http://example.com:8501"}, "this machine only"),
    ({"url": "http://10.0.0.5:8501"}, "this machine only"),
    ({"pattern": "causal"}, "no window to vary"),
    ({"vary_window": False}, "use --mode cold"),
    ({"mode": "hot"}, "mode must be one of"),
    ({"ask_over_s": 601}, "Asks must be spread"),
    ({"arrive_over_s": -1}, "spread over"),
    ({"chromium": "/nonexistent/chromium"}, "No Chromium"),
])
def test_bad_settings_are_refused(change, message):
    cfg = LoadConfig(**({"chromium": sys.executable} | change))
    with pytest.raises(ValueError, match=message):
        check_config(cfg)


def test_loopback_urls_are_accepted():
    for url in ("http://127.0.0.1:8501", "http://localhost:8501", "http://[::1]:8501"):
        check_config(LoadConfig(url=url, chromium=sys.executable))


@pytest.mark.browser
def test_five_sessions_open_then_ask_at_once_with_bounded_memory(chromium_path):
    """The CI's small load test: 5 sessions open the model page at the same moment, then all set their
    own window at the same moment (128-token maps); all complete, none errs, the server stays under the
    memory bound, and the server's own log shows one forward per ask, never two at once."""
    log = ARTIFACTS / "loadtest-server.log"
    cfg = LoadConfig(sessions=CI_SESSIONS, tokens=128, arrive_over_s=0, ask_over_s=0, timeout_s=400,
                     chromium=chromium_path, log_path=str(log))
    report = loadtest.run_loadtest(cfg)
    assert report.errors == []
    assert report.completed == CI_SESSIONS and len(report.latencies_s) == CI_SESSIONS
    assert report.open_latencies_s is not None and len(report.open_latencies_s) == CI_SESSIONS
    assert report.server_peak_rss_bytes is not None and 0 < report.server_peak_rss_bytes < RSS_BOUND_BYTES
    assert report.p50_s <= report.p95_s <= report.max_s
    assert report.machine_cpu_s >= report.server_cpu_s > 0
    assert report.cpu_model and report.cpu_model == loadtest.cpu_model()  # the processor is part of the result
    jobs = report.server_jobs
    assert jobs["count"] == CI_SESSIONS  # the warm-up's forwards come before the measured run
    assert jobs["ran_p95_s"] > 0 and jobs["waited_max_s"] >= 0


@pytest.mark.browser
def test_two_cold_sessions_open_their_own_maps(chromium_path):
    cfg = LoadConfig(sessions=2, tokens=64, mode="cold", arrive_over_s=0, timeout_s=400, chromium=chromium_path,
                     log_path=str(ARTIFACTS / "loadtest-cold-server.log"))
    report = loadtest.run_loadtest(cfg)
    assert report.errors == [] and report.completed == 2 and report.mode == "cold"
    assert report.open_latencies_s is None and report.server_jobs["count"] == 2
