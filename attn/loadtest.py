"""`python -m attn loadtest`: a class opening the Model Attention page and asking for maps at once.

K browser sessions (Playwright contexts in one headless Chromium) against one local server.
Two ways to run them:

- "warm" (the default, what a class does): every session opens the page within `arrive_over_s`
  (all showing the same default maps), and once all are open each sets its own window within
  `ask_over_s` (session i uses window W + i, so no two share a cached result and every one costs
  a real forward pass). The latency is from setting the window to the maps drawn; the opening
  times are reported beside it.
- "cold": each session opens the URL of its own maps; the latency is from opening the page. Every
  session then also pays for loading Streamlit and Plotly (about 7 s of CPU per tab, measured), on
  the server's own cores: in a class that work happens on the students' laptops.

A request is complete when its three maps (masked, full, the 30 × 9 head grid) are drawn for its
own mask; an exception box, an error message or a timeout counts as an error.
Reported: completed sessions, p50/p95/max latency, the errors, the server's peak resident memory
(VmHWM of the server process, read from /proc), and the CPU the server, the browsers and the whole
machine used.

Loopback only and bounded: at most MAX_SESSIONS sessions, each with a time limit.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import math
import os
import platform
import re
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import masks
from .bench import cpu_model
from .jobs import cpu_ticks, proc_stat
from .presets import PARAMS, PATTERN_INFO, default_params
from .state import encode_view

MAX_SESSIONS = 60
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
MODES = ("warm", "cold")
# Checked inside the page once a second (no round trip per check): "done" once the three maps are drawn,
# the masked map and the head grid both titled with this session's own mask ("window=40" must not match
# "window=401"); an error's text once an exception or error box shows.
STATE_JS = """(want) => {
  const ex = document.querySelector('[data-testid="stException"]');
  if (ex) return 'exception: ' + ex.innerText.slice(0, 300);
  for (const a of document.querySelectorAll('[data-testid="stAlertContentError"]')) return 'error: ' + a.innerText.slice(0, 300);
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
  const titles = plots.map((g) => (g._fullLayout && g._fullLayout.title && g._fullLayout.title.text) || '');
  const names = (t) => { const i = t.indexOf(want); return i >= 0 && !/[0-9]/.test(t.charAt(i + want.length)); };
  const grid = titles.find((t) => t.includes('All 30 layers'));
  if (plots.length >= 3 && names(titles[0]) && grid && names(grid)) return 'done';
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
    mode: str = "warm"  # "warm": open the page, then ask for one's own maps; "cold": open one's own maps' URL
    timeout_s: float = 300.0  # per session and step (opening, asking)
    arrive_over_s: float = 60.0  # sessions open evenly spread over this time ("a class within a minute"); 0 = all at once
    ask_over_s: float = 60.0  # warm mode: once all are open, they ask evenly spread over this time; 0 = all at once
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
    browser_cpu_s: float | None  # CPU time of the Chromium processes alive at the end (closed tabs' processes are gone)
    machine_cpu_s: float  # CPU time of the whole machine (/proc/stat): server, browsers, driver, everything
    arrive_over_s: float
    tokens: int
    pattern: str
    mode: str = "warm"
    ask_over_s: float | None = None  # warm mode only
    # Warm mode: opening the page (its shared default maps drawn), per session; the latencies above are the asks.
    open_latencies_s: list[float] | None = None
    open_p95_s: float | None = None
    # The server's own view of the heavy work during the run (its "attn job:" log lines; None for --url):
    # how many jobs, how long they waited in line and how long they ran.
    server_jobs: dict | None = None
    cpu_count: int | None = field(default_factory=os.cpu_count)
    # The processor matters: the same cold run gave p95 66 s on a 2-core AMD EPYC, 19-42 s on a 2-core Xeon.
    cpu_model: str = field(default_factory=cpu_model)
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
    if cfg.mode not in MODES:
        raise ValueError(f"The mode must be one of {', '.join(MODES)}, got {cfg.mode!r}.")
    if not 0 <= cfg.ask_over_s <= 600:
        raise ValueError(f"Asks must be spread over 0 to 600 s, got {cfg.ask_over_s}.")
    if cfg.vary_window and "window" not in PATTERN_INFO[cfg.pattern].params:
        raise ValueError(f"{cfg.pattern} has no window to vary per session; pass --same.")
    if cfg.mode == "warm" and not cfg.vary_window:
        raise ValueError("In warm mode each session asks for its own window once the page is open; "
                         "with the same maps for every session (--same, --rule) use --mode cold.")
    if not os.path.exists(cfg.chromium):
        raise ValueError(f"No Chromium at {cfg.chromium}: install Debian's 'chromium' package (make browser).")


def map_url(cfg: LoadConfig, base: str, offset: int) -> tuple[str, str, int | None]:
    """(URL of the model page showing the maps, text their titles must contain, the window) with the
    window raised by `offset` where the pattern has one."""
    params = default_params(cfg.pattern, cfg.tokens) | dict(cfg.params)
    if "window" in params:
        params["window"] = int(params["window"]) + offset
    rule = masks.build(cfg.pattern, cfg.tokens, **params)  # refuses bad parameters before any browser starts
    state = {"n": cfg.tokens, "pattern": cfg.pattern, **params}
    query = encode_view(state, ()) | {"doc": cfg.doc, "tokens": str(cfg.tokens), "view": "Attention maps"}
    # A truncated label must not end inside a number (the page checks that no digit follows).
    want = f"window={params['window']}" if "window" in params else rule.label[:40].rstrip("0123456789")
    return base.rstrip("/") + "/model?" + urllib.parse.urlencode(query), want, params.get("window")


def session_urls(cfg: LoadConfig, base: str) -> list[tuple[str, str]]:
    """(URL, text the maps' titles must contain) of each session's own maps."""
    return [map_url(cfg, base, i if cfg.vary_window else 0)[:2] for i in range(cfg.sessions)]


def shared_url(cfg: LoadConfig, base: str) -> tuple[str, str]:
    """The maps every session sees on opening in warm mode (and the warm-up's): a window no session asks for."""
    return map_url(cfg, base, cfg.sessions if cfg.vary_window else 0)[:2]


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


JOB_LINE = re.compile(r"attn job: (\S+) waited ([0-9.]+) s, ran ([0-9.]+) s, .* at ([0-9.]+)$")


def server_jobs(log_text: str, since_epoch: float) -> dict:
    """Count and wait/run percentiles of the jobs the server logged (ui.log_job) since `since_epoch`."""
    waited, ran = [], []
    for line in log_text.splitlines():
        m = JOB_LINE.search(line)
        if m and float(m.group(4)) >= since_epoch:
            waited.append(float(m.group(2)))
            ran.append(float(m.group(3)))
    return {"count": len(ran), "waited_p50_s": percentile(waited, 50), "waited_p95_s": percentile(waited, 95),
            "waited_max_s": max(waited, default=None), "ran_p50_s": percentile(ran, 50),
            "ran_p95_s": percentile(ran, 95), "ran_max_s": max(ran, default=None)}


def machine_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (/proc/stat: user, nice, system, irq, softirq;
    not idle, iowait, or time the hypervisor gave to others). Counts processes that have exited too."""
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _describe(e: Exception, timeout_s: float) -> str:
    if type(e).__name__ == "TimeoutError":
        return f"timeout: no maps after {timeout_s:.0f} s"
    return f"{type(e).__name__}: {str(e)[:200]}"


@dataclass
class _Outcome:
    open_s: float | None = None  # opening the page until its maps were drawn
    ask_s: float | None = None  # warm mode: setting the window until the new maps were drawn
    error: str | None = None


async def _wait_maps(page, want: str, timeout_s: float) -> str | None:
    """Wait until the page shows maps titled `want`; None, or the error the page shows instead."""
    handle = await page.wait_for_function(STATE_JS, arg=want, polling=POLL_MS, timeout=max(1.0, timeout_s) * 1000)
    outcome = await handle.json_value()
    return None if outcome == "done" else outcome


async def _open(browser, url: str, want: str, timeout_s: float, out: _Outcome):
    """A new browser context opens `url`; out.open_s or out.error is set. Returns the context and page."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    start = time.monotonic()
    try:
        await page.goto(url, timeout=timeout_s * 1000)
        out.error = await _wait_maps(page, want, timeout_s - (time.monotonic() - start))
    except Exception as e:  # noqa: BLE001  (a crashed page or closed browser is this session's error)
        out.error = _describe(e, timeout_s)
    if out.error is None:
        out.open_s = time.monotonic() - start
    else:
        out.error = "opening: " + out.error
    return context, page


async def _ask(page, window: int, want: str, timeout_s: float, out: _Outcome) -> None:
    """Type the session's own window into the page's Window box and press Enter, as a student would;
    out.ask_s (from the key press to the new maps) or out.error is set."""
    box = page.get_by_label(PARAMS["window"].label, exact=True)
    start = time.monotonic()
    try:
        await box.fill(str(window), timeout=timeout_s * 1000)
        start = time.monotonic()
        await box.press("Enter")
        out.error = await _wait_maps(page, want, timeout_s)
    except Exception as e:  # noqa: BLE001
        out.error = _describe(e, timeout_s)
    if out.error is None:
        out.ask_s = time.monotonic() - start
    else:
        out.error = "asking: " + out.error


async def _cold_session(browser, url: str, want: str, timeout_s: float, delay_s: float) -> _Outcome:
    await asyncio.sleep(delay_s)
    out = _Outcome()
    context, _ = await _open(browser, url, want, timeout_s, out)
    await context.close()
    return out


async def _warm_session(browser, cfg: LoadConfig, base: str, i: int, all_open, contexts: list) -> _Outcome:
    """Open the page (its shared maps) at i × the arrival gap; once every session is open, set window W + i
    at i × the asking gap."""
    open_url, open_want = shared_url(cfg, base)
    _, want, window = map_url(cfg, base, i)
    await asyncio.sleep(i * _gap(cfg.arrive_over_s, cfg.sessions))
    out = _Outcome()
    context, page = await _open(browser, open_url, open_want, cfg.timeout_s, out)
    contexts.append(context)  # open tabs stay open, as in a class, until every session is done
    all_open.arrived()
    await all_open.wait()
    if out.error is None:
        await asyncio.sleep(i * _gap(cfg.ask_over_s, cfg.sessions))
        await _ask(page, window, want, cfg.timeout_s, out)
    return out


class _Gate:
    """Opens once `count` sessions have arrived (whether or not their page opened)."""

    def __init__(self, count: int):
        self.left, self.event = count, asyncio.Event()

    def arrived(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.event.set()

    async def wait(self) -> None:
        await self.event.wait()


def _gap(over_s: float, count: int) -> float:
    return over_s / (count - 1) if count > 1 else 0.0


async def _drive(cfg: LoadConfig, base: str, warm_up_only: bool = False) -> tuple[list[_Outcome], float, float]:
    """(per-session outcomes, wall seconds, Chromium CPU seconds). warm_up_only: one session opens the
    shared maps (the one-off model load and the first forward are not what a class waits for)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=cfg.chromium, headless=True, args=CHROMIUM_ARGS)
        contexts: list = []
        try:
            keeper = asyncio.create_task(_keep_low(cfg.chromium, cfg.browser_nice)) if cfg.browser_nice else None
            before = cpu_seconds(chromium_pids(cfg.chromium))
            start = time.monotonic()
            try:
                if warm_up_only:
                    url, want = shared_url(cfg, base)
                    sessions = [_cold_session(browser, url, want, cfg.timeout_s, 0.0)]
                elif cfg.mode == "cold":
                    gap = _gap(cfg.arrive_over_s, cfg.sessions)
                    sessions = [_cold_session(browser, url, want, cfg.timeout_s, i * gap)
                                for i, (url, want) in enumerate(session_urls(cfg, base))]
                else:
                    gate = _Gate(cfg.sessions)
                    sessions = [_warm_session(browser, cfg, base, i, gate, contexts) for i in range(cfg.sessions)]
                results = await asyncio.gather(*sessions)
            finally:
                if keeper:
                    keeper.cancel()
            wall = time.monotonic() - start
            return results, wall, cpu_seconds(chromium_pids(cfg.chromium)) - before
        finally:
            for context in contexts:
                await context.close()
            await browser.close()


def run_loadtest(cfg: LoadConfig, warm: bool = True) -> LoadReport:
    """Start a server (unless cfg.url), warm the model with one session that opens the shared maps,
    then run the sessions."""
    from .server import running_server

    check_config(cfg)
    session_urls(cfg, "http://127.0.0.1")  # bad pattern parameters fail here, before anything starts

    def measure(base: str, pid: int | None, log: Path | None) -> LoadReport:
        if warm:
            [first], _, _ = asyncio.run(_drive(cfg, base, warm_up_only=True))
            if first.error:
                raise RuntimeError(f"The warm-up session failed: {first.error}")
        server_before = cpu_seconds([pid]) if pid else None
        machine_before = machine_cpu_seconds()
        since = time.time()
        results, wall, browser_cpu = asyncio.run(_drive(cfg, base))
        asked = [r.ask_s if cfg.mode == "warm" else r.open_s for r in results]
        latencies = [t for t in asked if t is not None]
        opened = [r.open_s for r in results if r.open_s is not None]
        return LoadReport(
            sessions=cfg.sessions, completed=len(latencies), errors=[r.error for r in results if r.error],
            latencies_s=[round(t, 3) for t in latencies],
            p50_s=percentile(latencies, 50), p95_s=percentile(latencies, 95), max_s=max(latencies, default=None),
            wall_s=round(wall, 3), server_peak_rss_bytes=peak_rss_bytes(pid) if pid else None,
            server_cpu_s=round(cpu_seconds([pid]) - server_before, 2) if pid else None,
            browser_cpu_s=round(browser_cpu, 2), machine_cpu_s=round(machine_cpu_seconds() - machine_before, 2),
            arrive_over_s=cfg.arrive_over_s, browser_nice=cfg.browser_nice, tokens=cfg.tokens, pattern=cfg.pattern,
            mode=cfg.mode, ask_over_s=cfg.ask_over_s if cfg.mode == "warm" else None,
            open_latencies_s=[round(t, 3) for t in opened] if cfg.mode == "warm" else None,
            open_p95_s=percentile(opened, 95) if cfg.mode == "warm" else None,
            server_jobs=server_jobs(log.read_text(errors="replace"), since) if log else None,
        )

    if cfg.url:
        return measure(cfg.url, None, None)
    with running_server(Path(cfg.log_path), timeout=120) as (base, proc):
        return measure(base, proc.pid, Path(cfg.log_path))
