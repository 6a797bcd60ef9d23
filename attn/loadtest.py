"""`python -m attn loadtest`: a class opening the Model Attention page at the same moment.

K browser sessions (Playwright contexts in one headless Chromium) open the page against one
local server, each asking for its own attention maps (by default session i uses window
W + i, so no two share a cached result and every session costs a real forward pass).
A session is complete when its three maps (masked, full, the 30 × 9 head grid) are drawn for
its own mask; an exception box, an error message or a timeout counts as an error.
Reported: completed sessions, p50/p95/max latency from opening the page, the errors, and the
server's peak resident memory (VmHWM of the server process, read from /proc).

Loopback only and bounded: at most MAX_SESSIONS sessions, each with a time limit.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import math
import os
import platform
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import masks
from .jobs import cpu_ticks, proc_stat
from .presets import PATTERN_INFO, default_params
from .state import encode_view

MAX_SESSIONS = 60
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# Checked inside the page once a second (no round trip per check): "done" once the three maps are drawn,
# the first titled with this session's own mask; an error's text once an exception or error box shows.
STATE_JS = """(want) => {
  const ex = document.querySelector('[data-testid="stException"]');
  if (ex) return 'exception: ' + ex.innerText.slice(0, 300);
  for (const a of document.querySelectorAll('[data-testid="stAlertContentError"]')) return 'error: ' + a.innerText.slice(0, 300);
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
  const titles = plots.map((g) => (g._fullLayout && g._fullLayout.title && g._fullLayout.title.text) || '');
  if (plots.length >= 3 && titles[0].includes(want) && titles.some((t) => t.includes('All 30 layers'))) return 'done';
  return false;
}"""
POLL_MS = 1000


@dataclass(frozen=True)
class LoadConfig:
    sessions: int = 30
    tokens: int = 256
    doc: str = "contract"
    pattern: str = "sliding_window"
    params: tuple = ()  # (name, value) pairs; for --rule: rule, rule_params, causal
    vary_window: bool = True  # session i adds i to the window: no two sessions share a cached result
    url: str | None = None  # a running server (loopback only); None starts one
    timeout_s: float = 300.0  # per session, from opening the page
    arrive_over_s: float = 60.0  # sessions open evenly spread over this time ("a class within a minute"); 0 = all at once
    # In a class every browser runs on its own laptop; here 30 Chromium tabs share the server's 2 cores.
    # They run at this lower priority (nice) so that the server gets the CPU it would have; the CPU
    # they use is still reported (browser_cpu_s). 0 = same priority as the server.
    browser_nice: int = 10
    chromium: str = CHROMIUM
    log_path: str = "test-artifacts/loadtest-server.log"


@dataclass
class LoadReport:
    sessions: int
    completed: int
    errors: list[str]
    latencies_s: list[float]
    p50_s: float | None
    p95_s: float | None
    max_s: float | None
    wall_s: float
    server_peak_rss_bytes: int | None
    browser_nice: int
    server_cpu_s: float | None  # CPU time the server used during the run
    browser_cpu_s: float | None  # CPU time Chromium used: on this one machine the browsers compete with the server
    arrive_over_s: float
    tokens: int
    pattern: str
    cpu_count: int | None = field(default_factory=os.cpu_count)
    machine: str = field(default_factory=platform.node)
    date: str = field(default_factory=lambda: datetime.datetime.now().isoformat(timespec="seconds"))

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(values, q: float) -> float | None:
    """The q-th percentile (0–100) by the nearest-rank method: an observed value, never interpolated."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def check_config(cfg: LoadConfig) -> None:
    if not isinstance(cfg.sessions, int) or not 1 <= cfg.sessions <= MAX_SESSIONS:
        raise ValueError(f"The number of sessions must be between 1 and {MAX_SESSIONS}, got {cfg.sessions!r}.")
    if not 16 <= cfg.tokens <= 512:
        raise ValueError(f"Tokens must be between 16 and 512 (the attention-map limit on CPU), got {cfg.tokens}.")
    if not 0 <= cfg.browser_nice <= 19:
        raise ValueError(f"The browsers' nice value must be between 0 and 19, got {cfg.browser_nice}.")
    if not 0 <= cfg.arrive_over_s <= 600:
        raise ValueError(f"Arrivals must be spread over 0 to 600 s, got {cfg.arrive_over_s}.")
    if not 1 <= cfg.timeout_s <= 3600:
        raise ValueError(f"The per-session timeout must be between 1 and 3600 s, got {cfg.timeout_s}.")
    if cfg.url is not None:
        host = urllib.parse.urlsplit(cfg.url).hostname or ""
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"The load test runs against this machine only (127.0.0.1 or localhost), not {host!r}.")
    if cfg.vary_window and "window" not in PATTERN_INFO[cfg.pattern].params:
        raise ValueError(f"{cfg.pattern} has no window to vary per session; pass --same.")
    if not os.path.exists(cfg.chromium):
        raise ValueError(f"No Chromium at {cfg.chromium}: install Debian's 'chromium' package (make browser).")


def session_urls(cfg: LoadConfig, base: str) -> list[tuple[str, str]]:
    """(URL, text the masked map's title must contain) for each session."""
    out = []
    for i in range(cfg.sessions):
        params = default_params(cfg.pattern, cfg.tokens) | dict(cfg.params)
        if cfg.vary_window:
            params["window"] = int(params["window"]) + i
        rule = masks.build(cfg.pattern, cfg.tokens, **params)  # refuses bad parameters before any browser starts
        state = {"n": cfg.tokens, "pattern": cfg.pattern, **params}
        query = encode_view(state, ()) | {"doc": cfg.doc, "tokens": str(cfg.tokens), "view": "Attention maps"}
        want = f"window={params['window']}" if "window" in params else rule.label[:40]
        out.append((base.rstrip("/") + "/model?" + urllib.parse.urlencode(query), want))
    return out


def peak_rss_bytes(pid: int) -> int | None:
    """The process's peak resident set size (VmHWM), or None where /proc cannot tell."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pids) -> float:
    """User + system CPU time of these processes, from /proc (0 for ones that have gone)."""
    total = 0
    for pid in pids:
        try:
            total += cpu_ticks(pid)
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process /proc shows."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                out[int(entry.name)] = (int(proc_stat(entry.name)[1]), cmd)
            except (OSError, IndexError, ValueError):
                continue
    return out


def chromium_pids(chromium: str, ancestor: int | None = None) -> list[int]:
    """Chromium processes started by `ancestor` (default: this process), at any depth."""
    name = Path(chromium).name
    ancestor = os.getpid() if ancestor is None else ancestor
    table = _processes()

    def descends(pid: int) -> bool:
        for _ in range(64):
            pid = table.get(pid, (0, ""))[0]
            if pid == ancestor:
                return True
            if pid <= 1:
                return False
        return False

    return [pid for pid, (_, cmd) in table.items() if name in cmd.split(" ", 1)[0] and descends(pid)]


def driver_pids() -> list[int]:
    """Playwright's driver (node), started by this process: it relays every page's messages."""
    mine = os.getpid()
    return [pid for pid, (ppid, cmd) in _processes().items() if ppid == mine and "playwright" in cmd]


def lower_priority(pids, nice: int) -> None:
    """Renice every thread of these processes to `nice` (never raising one that is already lower).
    Linux keeps a nice value per thread: renicing a pid alone leaves its other threads (Chromium's
    compositor and raster threads) where they were."""
    for pid in pids:
        try:
            tids = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
        except OSError:
            continue
        for tid in tids:
            try:
                if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                    os.setpriority(os.PRIO_PROCESS, tid, nice)
            except OSError:
                continue


async def _keep_low(chromium: str, nice: int) -> None:
    # Chromium sets its renderers' priorities itself (a foreground tab gets a boost), so new and
    # changed processes are lowered again twice a second for the whole run.
    while True:
        lower_priority(chromium_pids(chromium) + driver_pids(), nice)
        await asyncio.sleep(0.5)


async def _session(browser, url: str, want: str, timeout_s: float, delay_s: float = 0.0) -> tuple[float | None, str | None]:
    await asyncio.sleep(delay_s)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    start = time.monotonic()
    try:
        await page.goto(url, timeout=timeout_s * 1000)
        left_ms = max(1.0, timeout_s - (time.monotonic() - start)) * 1000
        handle = await page.wait_for_function(STATE_JS, arg=want, polling=POLL_MS, timeout=left_ms)
        outcome = await handle.json_value()
        if outcome == "done":
            return time.monotonic() - start, None
        return None, outcome
    except Exception as e:  # noqa: BLE001  (a crashed page or closed browser is this session's error)
        if type(e).__name__ == "TimeoutError":
            return None, f"timeout: no maps after {timeout_s:.0f} s"
        return None, f"{type(e).__name__}: {str(e)[:200]}"
    finally:
        await context.close()


async def _drive(cfg: LoadConfig, base: str) -> tuple[list, float, float]:
    """(per-session results, wall seconds, Chromium CPU seconds)."""
    from playwright.async_api import async_playwright

    urls = session_urls(cfg, base)
    gap = cfg.arrive_over_s / max(1, cfg.sessions - 1) if cfg.sessions > 1 else 0.0
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=cfg.chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            keeper = asyncio.create_task(_keep_low(cfg.chromium, cfg.browser_nice)) if cfg.browser_nice else None
            before = cpu_seconds(chromium_pids(cfg.chromium))
            start = time.monotonic()
            try:
                results = await asyncio.gather(*(_session(browser, url, want, cfg.timeout_s, i * gap)
                                                 for i, (url, want) in enumerate(urls)))
            finally:
                if keeper:
                    keeper.cancel()
            wall = time.monotonic() - start
            return results, wall, cpu_seconds(chromium_pids(cfg.chromium)) - before
        finally:
            await browser.close()


def run_loadtest(cfg: LoadConfig, warm: bool = True) -> LoadReport:
    """Start a server (unless cfg.url), warm the model with one session (the one-off model load is not
    what a class waits for), then open all sessions at once."""
    from .server import running_server

    check_config(cfg)
    session_urls(cfg, "http://127.0.0.1")  # bad pattern parameters fail here, before anything starts

    def measure(base: str, pid: int | None) -> LoadReport:
        if warm:  # with a window no session uses, so that the warm-up caches nothing they ask for
            params = dict(cfg.params)
            if "window" in PATTERN_INFO[cfg.pattern].params:
                base_window = int((default_params(cfg.pattern, cfg.tokens) | params)["window"])
                params["window"] = base_window + cfg.sessions
            warm_cfg = LoadConfig(**(asdict(cfg) | {"sessions": 1, "params": tuple(params.items()), "vary_window": False}))
            [(_, error)], _, _ = asyncio.run(_drive(warm_cfg, base))
            if error:
                raise RuntimeError(f"The warm-up session failed: {error}")
        server_before = cpu_seconds([pid]) if pid else None
        results, wall, browser_cpu = asyncio.run(_drive(cfg, base))
        latencies = [t for t, err in results if err is None]
        errors = [err for _, err in results if err is not None]
        return LoadReport(
            sessions=cfg.sessions, completed=len(latencies), errors=errors, latencies_s=[round(t, 3) for t in latencies],
            p50_s=percentile(latencies, 50), p95_s=percentile(latencies, 95), max_s=max(latencies, default=None),
            wall_s=round(wall, 3), server_peak_rss_bytes=peak_rss_bytes(pid) if pid else None,
            server_cpu_s=round(cpu_seconds([pid]) - server_before, 2) if pid else None,
            browser_cpu_s=round(browser_cpu, 2), arrive_over_s=cfg.arrive_over_s, browser_nice=cfg.browser_nice,
            tokens=cfg.tokens, pattern=cfg.pattern,
        )

    if cfg.url:
        return measure(cfg.url, None)
    with running_server(Path(cfg.log_path), timeout=120) as (base, proc):
        return measure(base, proc.pid)
