"""`python -m attn loadtest`: its pieces against hand-worked values, and a small real run (the CI version)."""

from __future__ import annotations

import sys
import urllib.parse
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_browser import ARTIFACTS, chromium_path  # noqa: E402, F401  (fixture used by name)

from attn import loadtest  # noqa: E402
from attn.loadtest import LoadConfig, check_config, percentile, session_urls  # noqa: E402
from attn.state import decode_view  # noqa: E402

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


@pytest.mark.parametrize("change, message", [
    ({"sessions": 0}, "between 1 and"),
    ({"sessions": loadtest.MAX_SESSIONS + 1}, "between 1 and"),
    ({"tokens": 4096}, "Tokens must be"),
    ({"url": "http://example.com:8501"}, "this machine only"),
    ({"url": "http://10.0.0.5:8501"}, "this machine only"),
    ({"pattern": "causal"}, "no window to vary"),
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
def test_five_sessions_at_once_complete_with_bounded_memory(chromium_path):
    """The CI's small load test: 5 sessions open the model page at the same moment, each asking for its
    own 128-token attention maps; all complete, none errs, the server stays under the memory bound."""
    cfg = LoadConfig(sessions=CI_SESSIONS, tokens=128, arrive_over_s=0, timeout_s=400, chromium=chromium_path,
                     log_path=str(ARTIFACTS / "loadtest-server.log"))
    report = loadtest.run_loadtest(cfg)
    assert report.errors == []
    assert report.completed == CI_SESSIONS and len(report.latencies_s) == CI_SESSIONS
    assert report.server_peak_rss_bytes is not None and 0 < report.server_peak_rss_bytes < RSS_BOUND_BYTES
    assert report.p50_s <= report.p95_s <= report.max_s
