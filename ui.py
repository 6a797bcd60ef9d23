"""Streamlit glue shared by the pages: URL state, parameter widgets, cached library calls.

URL state: each widget's key is its query-parameter name. On a session's first run the
URL is decoded and validated by attn.state (refused values get a notice and the widget
keeps its default); after the widgets run, the URL is rewritten from their values.
We do this ourselves rather than with `bind="query-params"` because Streamlit's binding
drops an invalid value silently, and users must be told when a link was not understood.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import pickle
import sys
import threading
import time
import urllib.parse

import streamlit as st

from attn import limits, masks
from attn.cache import BoundedCache
from attn.masks import MAX_N
from attn import rules
from attn.presets import PARAMS, PATTERN_INFO, PICKABLE, default_params
from attn.state import (INT_MAX, decode_keys, encode_view, format_int_list, near_miss_notices, parse_choice,
                        parse_int_list, view_parsers)
from attn.text import markdown_literal, share_text

# Box zoom, pan and reset stay; zoom in/out and autoscale repeat them and widened the toolbar over titles.
PLOT_CONFIG_BASE = {"displaylogo": False, "modeBarButtonsToRemove": ["zoomIn2d", "zoomOut2d", "autoScale2d"]}
# The camera button's format (sidebar choice); its size: attn.figures.SLIDE_PX and slide_image_options.
IMAGE_FORMATS = ("png", "svg")
# URL keys of the whole app (read once by app.py), which any page's link may carry.
APP_URL_KEYS = {"present": parse_choice(("1", "0"), "Presenter view"), "img_fmt": parse_choice(IMAGE_FORMATS, "Figure format")}


# The app's pages, in menu order: (script, title, icon, url_path, what a card on the home page says).
# The home page is the default, served at "/" only (a default page's url_path answers "Page not found").
PAGES = [
    ("app_pages/home.py", "Home", ":material/home:", None,
     "What this is, in one live example."),
    ("app_pages/lessons.py", "Lessons", ":material/school:", "lessons",
     "Three guided lessons, step by step: predict the answer, then let the lab compute it; take a handout home."),
    ("app_pages/mask_explorer.py", "Mask Explorer", ":material/grid_on:", "explorer",
     "Any pattern as a matrix, from 8 to 131,072 tokens, or as the blocks a kernel runs; compare two."),
    ("app_pages/receptive_field.py", "Receptive Field", ":material/hub:", "receptive-field",
     "How far information travels through L layers, for one pattern or a real model's layer stack."),
    ("app_pages/model_attention.py", "Model Attention", ":material/smart_toy:", "model",
     "A real language model reads a document under your mask: attention maps, loss, perplexity, retrieval."),
    ("app_pages/benchmark.py", "Benchmark", ":material/timer:", "benchmark",
     "Real masked attention through four backends: time, memory and FLOP/s as N grows."),
    ("app_pages/serving_cost.py", "Serving Cost", ":material/memory:", "serving-cost",
     "KV cache and VRAM of real models at long context under each design, against real GPUs."),
]


# Always on. A metric's value shrinks with its column instead of ending in "…" (533,063,6… in a
# third of a 1,024-pixel window); its label wraps onto a second line instead, as does "Presenter view".
BASE_CSS = """<style>
[data-testid="stMetric"] { container-type: inline-size; }
[data-testid="stMetricValue"], [data-testid="stMetricValue"] * { font-size: min(2.25rem, 15cqi) !important; }
[data-testid="stMetricLabel"] *, .st-key-present [data-testid="stWidgetLabel"] * {
  white-space: normal !important; overflow: visible !important; }
</style>"""

# The box of a square matrix or a picture (ui.plot): as tall as the width it is given needs (its plot's
# height is `aspect` times its width), at most `most` px. The block holding it is the size container,
# so 100cqi is the width of the column the figure is drawn in.
SQUARE_BOX_CSS = """
[data-testid="stVerticalBlock"]:has(> [data-testid="stLayoutWrapper"] > .st-key-{box}) {{ container-type: inline-size; }}
[data-testid="stLayoutWrapper"]:has(> .st-key-{box}) {{
  flex: 0 0 min({most}px, calc({aspect} * 100cqi + {extra}px)) !important; overflow: hidden !important; }}
.st-key-{box} {{ overflow: hidden !important; }}"""

PRESENTER_CSS = """<style>
.stMainBlockContainer { max-width: 100% !important; padding-left: 2rem; padding-right: 2rem; }
.stMainBlockContainer p, .stMainBlockContainer li, .stMainBlockContainer label { font-size: 1.45rem !important; }
.stMainBlockContainer h1 { font-size: 3.2rem !important; }
.stMainBlockContainer h2, .stMainBlockContainer h3 { font-size: 2.3rem !important; }
.stMainBlockContainer [data-testid="stMetricValue"], .stMainBlockContainer [data-testid="stMetricValue"] * {
  font-size: min(3rem, 15cqi) !important; line-height: 1.2 !important; }
.stMainBlockContainer [data-testid="stMetricLabel"] p { font-size: 1.4rem !important; }
.stMainBlockContainer [data-testid="stMetricDelta"] * { font-size: 1.2rem !important; }
.stMainBlockContainer input, .stMainBlockContainer textarea, .stMainBlockContainer [data-baseweb="select"] * {
  font-size: 1.3rem !important; }
.stMainBlockContainer [data-testid="stSliderThumbValue"] { font-size: 1.2rem !important; top: -2rem !important; }
</style>"""


@st.cache_resource
def job_queue():
    """The process's one line for heavy work (model forwards, kernel runs): 1 worker on a GPU,
    ATTN_WORKERS (default 1) on a CPU."""
    import os

    import torch

    from attn.jobs import JobQueue

    if torch.cuda.is_available():
        return JobQueue(limits.WORKERS_GPU)
    try:
        workers = int(os.environ.get("ATTN_WORKERS") or limits.WORKERS_CPU_DEFAULT)
    except ValueError:
        workers = limits.WORKERS_CPU_DEFAULT
    return JobQueue(max(1, workers))


@st.cache_resource
def result_cache() -> BoundedCache:
    """Every page's computed results, in one LRU bounded in entries and bytes (attn/limits.py)."""
    return BoundedCache(limits.CACHE_MAX_ENTRIES, limits.CACHE_MAX_BYTES, limits.CACHE_VALUE_MAX_BYTES)


_running_label = threading.local()  # a queued cached call's spinner text, shown by in_line once its turn comes


def cached(spinner: str | None = None, queued: bool = False):
    """Like st.cache_data (shared by all sessions, a copy per caller), but bounded in bytes as well as
    entries, and computed once when many sessions ask at the same moment. Arguments whose name starts
    with "_" (progress callbacks) are not part of the key. queued=True: the function waits in the line
    (in_line), which shows the spinner only once it runs, so a waiting page shows its place instead."""

    def wrap(fn):
        signature = inspect.signature(fn)
        name = (fn.__code__.co_filename, fn.__qualname__)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            key = (name, tuple((k, v) for k, v in bound.arguments.items() if not k.startswith("_")))
            try:
                hash(key)
            except TypeError:  # unhashable arguments (lists, arrays) are keyed by their pickle
                key = (name, pickle.dumps(key[1], protocol=pickle.HIGHEST_PROTOCOL))
            cache = result_cache()
            compute = functools.partial(fn, *args, **kwargs)
            if queued:
                _running_label.text = spinner
                try:
                    return cache.get_or_compute(key, compute)
                finally:
                    _running_label.text = None
            if spinner and key not in cache:
                with st.spinner(spinner):
                    return cache.get_or_compute(key, compute)
            return cache.get_or_compute(key, compute)

        return run

    return wrap


def session_gone() -> bool:
    """True once this script's browser session has closed: its queued work is dropped."""
    from streamlit.runtime import Runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    if ctx is None or not Runtime.exists():
        return False  # not under a server (AppTest, scripts): nobody to lose
    return not Runtime.instance().is_active_session(ctx.session_id)


def set_cpu_threads() -> int | None:
    """On a CPU, torch threads for the job about to run (attn.jobs.threads_for_job: all cores on an idle
    machine, one when anything competes). ATTN_TORCH_THREADS fixes the number instead. Returns the
    number chosen (None on a GPU)."""
    import os

    import torch

    from attn.jobs import other_cpu_load, threads_for_job

    if torch.cuda.is_available():
        return None
    fixed = os.environ.get("ATTN_TORCH_THREADS", "")
    queue = job_queue()
    if fixed.isdigit() and int(fixed) > 0:
        n = int(fixed)
    else:  # the 0.1 s load sample only when it can change the answer (one worker, nobody waiting)
        alone = queue.workers == 1 and queue.waiting == 0
        n = threads_for_job(os.cpu_count() or 1, queue.workers, queue.waiting, other_cpu_load() if alone else None)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def run_interrupted() -> bool:
    """True when the browser asked this script run to stop or rerun (a click, a new setting, a closed tab).

    Streamlit notices such a request only at the script's next `st.*` call, and a request waiting in
    line makes none: without this check a "Leave the line" click would wait for the line to move.
    Reads Streamlit's request state; should that internal name change, this returns False and the
    request is noticed at the next redraw instead."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    state = getattr(getattr(ctx, "script_requests", None), "_state", None)
    return getattr(state, "name", "CONTINUE") in ("RERUN", "STOP")


def leave_line_now() -> bool:
    return session_gone() or run_interrupted()


LEFT_LINE = "_left_line"  # session flag: this user pressed "Leave the line"
_WAITS = itertools.count()  # a key for each wait's "Leave the line" button


def left_line() -> bool:
    """This user pressed "Leave the line" and has not asked to run anything since."""
    return bool(st.session_state.get(LEFT_LINE))


def join_line() -> None:
    """An explicit request (a Run button) puts a user who left back into the line."""
    st.session_state[LEFT_LINE] = False


def in_line(fn, *args, what: str = "the model", **kwargs):
    """Run heavy work in its turn in the process-wide line. While waiting, the user sees their place
    and a button to leave; a closed session leaves by itself. Work that reports progress is stopped
    after limits.JOB_RUN_S. Leaving, waiting too long or running too long raise Cancelled."""
    from attn.jobs import Cancelled, deadline

    if left_line():
        raise Cancelled("You left the line. Press “Join the line again” to run it.")
    box = st.empty()
    shown = {}

    def on_wait(position: int) -> None:
        # Redrawn only when the place changes: a class of 30 waiting must not flood the server and the
        # browsers with identical updates every time the line is polled.
        if shown.get("position") == position:
            return
        if not shown:  # the button is drawn once per wait; a run may wait more than once, and a key only once
            with box.container():
                shown["text"] = st.empty()
                st.button("Leave the line", key=f"_leave_line_{next(_WAITS)}", on_click=st.session_state.__setitem__,
                          args=(LEFT_LINE, True))
        shown["position"] = position
        shown["text"].info(f"{what[0].upper() + what[1:]} is busy with other people's requests: you are number "
                           f"**{position}** in line. Your result appears here when it is your turn.", icon=":material/hourglass_top:")

    if kwargs.get("progress") is not None:
        kwargs["progress"] = deadline(kwargs["progress"], limits.JOB_RUN_S)
    asked = time.monotonic()
    try:
        # poll_s: how soon a closed session or a "Leave" is noticed; a freed slot wakes the next at once.
        with job_queue().slot(on_wait=on_wait, cancelled=leave_line_now, timeout_s=limits.JOB_WAIT_S, poll_s=1.0):
            box.empty()
            threads = set_cpu_threads()
            started = time.monotonic()
            try:
                label = getattr(_running_label, "text", None)
                if label:
                    with st.spinner(label):
                        return fn(*args, **kwargs)
                return fn(*args, **kwargs)
            finally:
                log_job(getattr(fn, "__name__", "job"), started - asked, time.monotonic() - started, threads)
    finally:
        box.empty()


def log_job(name: str, waited_s: float, ran_s: float, threads: int | None) -> None:
    """One line per job in the server's log: what a class waited for, seen from the server
    (`python -m attn loadtest` reads these lines beside the browsers' latencies)."""
    from attn.jobs import job_log_line

    print(job_log_line(name, waited_s, ran_s, threads, job_queue().waiting, time.time()), file=sys.stderr, flush=True)


def rejoin_button() -> None:
    """After a user left the line: the way back in."""
    if left_line() and st.button("Join the line again", type="primary"):
        join_line()
        st.rerun()


def presenter() -> bool:
    return bool(st.session_state.get("present"))


# The page's width as the browser draws it, so that figure titles wrap where the column ends rather
# than at the narrowest column the app could be drawn in (at 1,400 px a two-line title took three).
# The server cannot know a width, so a script-only component measures the main column and the
# window (in 20-px steps, on load and on resize) and sends them when they differ from what the server
# holds (its `data`), which reruns the page once. It is mounted after the page has run (app.py), so
# its rerun never cuts a first run short (an interrupted first run lost the link's settings), and a
# link's notices outlive that rerun (load_url_keys). Until it reports, and in AppTest, NARROWEST_PX.
_PAGE_WIDTH_JS = """
export default function (component) {
  const { setStateValue, data } = component;
  const main = document.querySelector('.stMainBlockContainer');
  if (!main) return;
  // The observer outlives this call (it fires as the page's height changes too), so it compares with
  // the last width sent as well as with what the server held when it drew the page.
  const held = JSON.stringify(data || {});
  window.__maskLabWidthHeld = held;  // what the page's last run knew; tests wait for it (web.wait_idle)
  const measure = () => {
    const s = getComputedStyle(main);
    const inner = main.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
    const seen = {main_px: Math.floor(inner / 20) * 20, window_px: Math.floor(window.innerWidth / 20) * 20};
    const text = JSON.stringify(seen);
    if (seen.main_px > 0 && text !== held && text !== window.__maskLabWidthSent) {
      window.__maskLabWidthSent = text;
      setStateValue('width', seen);
    }
  };
  if (window.__maskLabWidth) window.__maskLabWidth.disconnect();
  window.__maskLabWidth = new ResizeObserver(measure);
  window.__maskLabWidth.observe(main);
  measure();
}
"""
_page_width = st.components.v2.component("mask_lab_page_width", js=_PAGE_WIDTH_JS)
_PROBE_KEY = "_page_width_probe"  # the component's own state (dropped in a run that does not mount it)
PAGE_WIDTH = "_page_width"  # {"main_px", "window_px"}: the last width the browser reported
_PROBE_RERUN, _RUN_BY_PROBE = "_probe_rerun", "_run_by_probe"


def _width_reported() -> None:
    st.session_state[PAGE_WIDTH] = dict(st.session_state[_PROBE_KEY].get("width") or {})
    st.session_state[_PROBE_RERUN] = True


def begin_run() -> None:
    """Note whether this run is the width probe's (its callback runs before the script): app.py, first."""
    st.session_state[_RUN_BY_PROBE] = st.session_state.pop(_PROBE_RERUN, False)


def run_by_probe() -> bool:
    return bool(st.session_state.get(_RUN_BY_PROBE))


def page_width_probe() -> None:
    """Mount the width probe: app.py, in the sidebar (its empty element takes no room), after the page."""
    _page_width(key=_PROBE_KEY, data=st.session_state.get(PAGE_WIDTH) or {}, on_width_change=_width_reported,
                height=0)


def column_px(wide: bool) -> int:
    """How wide a figure is drawn: across the page (`wide`) or in a half-width column, as measured by the
    probe; before it has reported, the narrowest such a figure could be (figures.NARROWEST_PX)."""
    from attn.figures import column_px as px

    width = st.session_state.get(PAGE_WIDTH) or {}
    return px(width.get("main_px"), width.get("window_px"), wide, presenter())


def prepare(fig, wide: bool = False):
    """The figure as it will be shown: presenter styling, and a title wrapped to fit the column it is
    drawn in (column_px: a half-width one, or the page's width when `wide`). A cached figure
    stays as it was: presenter_style copies, and fit_title copies when it has to change one."""
    from attn.figures import colorbar_below, fit_title, presenter_style

    own = presenter()  # whether fig is already this call's copy
    if own:
        fig = presenter_style(fig)
    if not wide:  # a half-width column: a square's colour bar goes under it, not beside
        moved = colorbar_below(fig, copy=not own)
        own, fig = own or moved is not fig, moved
    return fit_title(fig, column_px(wide), copy=not own)


def plot(fig, key: str | None = None, filename: str = "figure", wide: bool = False, prepared: bool = False) -> None:
    """Every figure goes through here: prepare() (unless the page did, to align figures side by side),
    and the modebar camera downloads it at slide resolution in the format chosen in the sidebar."""
    # The download's scale keeps the narrowest column (not the measured one): a square's box may be
    # narrower than column_px says (a container's padding), and its download must still be 1080 tall.
    from attn.figures import NARROWEST_PX, box_fit, slide_image_options

    if not prepared:
        fig = prepare(fig, wide)
    fmt = st.session_state.get("img_fmt", "png")
    config = PLOT_CONFIG_BASE | {
        "toImageButtonOptions": {"format": fmt, "filename": filename}
        | slide_image_options(fig, narrowest_px=NARROWEST_PX[presenter(), wide])
    }
    fit = box_fit(fig)
    if key and fit is not None:
        # A square matrix (or a picture) is as tall as its figure's width allows, at most its set height:
        # in a narrow column a fixed height left a blank band under the square (314 px on Home at 1,024
        # px). Only the browser knows the width, so CSS sizes the box (100cqi: the column's width) and
        # the chart fills it; Streamlit fixes the box's height (a flex basis) unless told otherwise.
        box = f"square_{key}"
        css = SQUARE_BOX_CSS.format(box=box, most=fig.layout.height, aspect=round(fit[0], 4), extra=fit[1])
        st.html(f"<style>{css}</style>")
        with st.container(key=box, height=fig.layout.height, border=False):
            st.plotly_chart(fig, width="stretch", height="stretch", config=config, key=key)
        return
    st.plotly_chart(fig, width="stretch", config=config, key=key)


def plot_side_by_side(figs, keys, filenames) -> None:
    """Two figures in two columns, prepared together so that plots under titles of different lengths
    start level (figures.align_tops)."""
    from attn.figures import align_tops

    for col, fig, key, filename in zip(st.columns(len(figs)), align_tops([prepare(f) for f in figs]), keys, filenames):
        with col:
            plot(fig, key=key, filename=filename, prepared=True)


def global_url_params() -> dict:
    """Settings that belong to the whole app rather than a page (kept in every page's link)."""
    out = {}
    if presenter():
        out["present"] = "1"
    if st.session_state.get("img_fmt", "png") != "png":
        out["img_fmt"] = st.session_state["img_fmt"]
    return out


def url_query() -> dict[str, list[str]]:
    """The link's parameters, each with all its values: decode_keys says when a key is repeated."""
    return {key: st.query_params.get_all(key) for key in st.query_params}


def load_url_state(page: str, n_min: int = 8, extra=None) -> list[str]:
    """Seed a mask view's widgets from the URL once per session and page; returns notices for refused values."""
    return load_url_keys(page, view_parsers(n_min, extra))


def load_url_keys(page: str, parsers: dict, quiet=(), synonyms=None) -> list[str]:
    """Seed widgets from the URL once per session and page; returns notices for refused values
    and near-miss keys. quiet: keys this page may see in a link but does not read now;
    synonyms: {another page's key: this page's key}, hinted like a near miss."""
    flag, held = f"_url_loaded_{page}", f"_url_notices_{page}"
    if st.session_state.get(flag):
        # Notices concern the link as opened; they go once the user acts (the width probe's rerun is no act).
        if run_by_probe():
            return st.session_state.get(held, [])
        st.session_state.pop(held, None)
        return []
    query = url_query()
    values, notices = decode_keys(query, parsers)
    notices += near_miss_notices(query, set(parsers) | set(APP_URL_KEYS), quiet, synonyms)
    for key, value in values.items():
        st.session_state[key] = value
    st.session_state[flag] = True
    st.session_state[held] = notices
    return notices


def write_url_keys(values: dict) -> str:
    """Put these settings (and only these) into the URL; returns the shareable link."""
    params = {k: ("1" if v else "0") if isinstance(v, bool) else str(v) for k, v in values.items() if v is not None}
    params |= global_url_params()
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)
    base = (st.context.url or "http://localhost:8501/").split("?")[0]
    return base + "?" + urllib.parse.urlencode(params)


def write_url_state(state: dict, extra_keys=()) -> str:
    """Put the view into the URL; returns the shareable link."""
    params = encode_view(state, extra_keys) | global_url_params()
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)
    base = (st.context.url or "http://localhost:8501/").split("?")[0]
    return base + "?" + urllib.parse.urlencode(params)


def share_view(link: str) -> None:
    """The page's "Share this view" expander: the link that reopens exactly this view."""
    with st.expander("Share this view", icon=":material/link:"):
        st.caption("This link reopens exactly this view, presenter view included (copy button on the right):")
        st.code(link, language=None)


def notice(message, kind: str = "error", icon: str | None = ":material/warning:") -> None:
    """A message box for text that quotes what a user typed or linked (errors, URL notices): shown as
    written, never as Markdown."""
    box = {"error": st.error, "warning": st.warning, "info": st.info}[kind]
    box(markdown_literal(message), icon=icon)


def set_default(key: str, value) -> None:
    if key not in st.session_state:
        st.session_state[key] = value


def pattern_select(prefix: str, label: str, default: str) -> str:
    key = prefix + "pattern"
    set_default(key, default)
    return st.selectbox(label, PICKABLE, key=key, format_func=lambda p: PATTERN_INFO[p].title)


def param_widgets(prefix: str, pattern: str, n: int) -> dict:
    """One widget per parameter of the pattern; returns their raw values (list params as text)."""
    values = {}
    defaults = default_params(pattern, n)
    for name in PATTERN_INFO[pattern].params:
        spec = PARAMS[name]
        key = prefix + name
        if spec.kind == "text":
            set_default(key, str(defaults[name]))
            help_text = rules.GRAMMAR_HELP if name == "rule" else spec.help
            values[name] = st.text_input(spec.label, key=key, help=help_text, max_chars=rules.MAX_RULE_CHARS)
        elif spec.kind == "int_list":
            set_default(key, format_int_list(defaults[name]))
            values[name] = st.text_input(spec.label, key=key, help=spec.help)
        elif spec.kind == "bool":
            set_default(key, bool(defaults[name]))
            values[name] = st.checkbox(spec.label, key=key, help=spec.help)
        else:
            set_default(key, int(defaults[name]))
            values[name] = st.number_input(
                spec.label, min_value=spec.minimum, max_value=INT_MAX.get(name, MAX_N), step=1, key=key, help=spec.help
            )
    return values


def rule_params(pattern: str, raw: dict) -> dict:
    """Widget values -> keyword arguments of attn.masks.build (lists parsed). Raises ValueError."""
    out = {}
    if pattern == masks.CUSTOM:  # the formula, its "W=16, S=4" parameters, and the causal flag
        for item in str(raw.get("rule_params", "")).split(","):
            if item.strip():
                name, value = rules.parse_param(item.strip())
                out[name] = value
        return out | {"rule": raw["rule"], "causal": bool(raw.get("causal"))}
    for name, value in raw.items():
        spec = PARAMS[name]
        out[name] = parse_int_list(value, spec.label.lower().rstrip("s"), spec.minimum) if spec.kind == "int_list" else value
    return out


def hashable_params(params: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in params.items()))


# The pages' percentages (attn.text.share_text: three significant digits, never a false 100%).
share = share_text
