"""Every limit the lab enforces, stated once.

A workshop sends 30–60 people to one server within a minute. These bounds keep any one
request from holding the machine for long or filling its memory. The modules that
enforce them import them from here (masks.MAX_N is limits.MAX_N, and so on), the Streamlit
config's upload size is checked against UPLOAD_MB by tests/test_limits.py, and the README's
"Limits" table is printed from `python -m attn limits`.

Figures in the comments were measured on the 2-core CPU this project is developed on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# ------------------------------------------------------------------ masks ---
MAX_N = 131_072  # tokens of any mask: explorer, receptive field, kernels (128k)
DENSE_MAX_N = 16_384  # an N×N boolean matrix drawn or exported (256 MiB); the kernels stop at free memory instead
CUSTOM_MAX_N = 8_192  # custom rules are evaluated pair by pair: 0.6–1.3 s here at 8192, 15–40 s at 16384
GRID_MAX_N = 128  # cells drawn one by one; beyond, the exact tile overview
EXPORT_MAX_N = 4_096  # JSON/CSV/NPY of a full mask (16M cells)
BIGBIRD_MAX_RANDOM_BLOCKS = 64  # BigBird uses 2-3; 131,072 took 22 s and 2.9 GB for one 256-token view
PARAM_MAX = MAX_N * 8  # any other integer parameter of a pattern (window, seed, block, …)
TILES_MAX = 4_096  # exact tile counts held as a T×T grid (4,096²: 128 MiB of int64); the app draws at most 1,024
BLOCKS_TOUCHED_MAX = 8_192  # blocks a side counted in strips, never held (blocks of 16 at 128k: 2–17 s here)

# ------------------------------------------------------- receptive field ---
MAX_LAYERS = 64
REACH_MATRIX_MAX_N = 1_024  # the boolean composition costs N³ per layer

# ----------------------------------------------------- documents, model ---
DOC_CHARS = 20_000  # characters of pasted or uploaded text
# Streamlit refuses larger uploads before our code sees them: server.maxUploadSize in
# .streamlit/config.toml (whole MB; 20,000 characters of UTF-8 are at most 80 kB).
UPLOAD_MB = 1


@dataclass(frozen=True)
class ModelLimits:
    """Largest model inputs served, so that one request cannot hold the model for minutes.

    CPU figures (2 cores, fp32 eager): a 512-token forward takes about 1 s and returns
    30 x 9 x 512 x 512 attention weights (283 MB as float32); 1024 tokens take 3-4 s.
    """

    doc_chars: int = DOC_CHARS
    loss_tokens: int = 2048  # tokens of one loss / perplexity forward
    map_tokens: int = 512  # tokens for attention maps (memory grows as N²)
    influence_tokens: int = 512  # tokens for a gradient (forward + backward)
    new_tokens: int = 64  # tokens of a greedy continuation
    encoder_tokens: int = 256  # all-MiniLM-L6-v2 was trained on 256-token inputs


MODEL_CPU = ModelLimits()
MODEL_GPU = ModelLimits(loss_tokens=8192, map_tokens=2048, influence_tokens=2048)
PROBE_MAX_TRIALS = 8  # facts per cell of the retrieval probe (the number of stock facts)
PROBE_MAX_DISTANCE = 1_536  # tokens of filler between fact and question

# ----------------------------------------------------------------- sweeps ---
BENCH_CPU_MAX_N = 4_096  # a 2-core CPU runs every backend up to here within about a minute
BENCH_MAX_SIZES = 10  # sequence lengths in one benchmark sweep
BENCH_ROW_TIME_S = 60.0  # one (backend, N) row on CPU: larger sizes are skipped with the reason
BENCH_MAX_HEADS = 64
BENCH_MAX_DOCUMENTS = 64  # packed documents per sequence in a document-masking sweep

# ---------------------------------------------------------- heavy requests ---
JOB_WAIT_S = 600.0  # longest wait in the line for the model / kernels before giving up
JOB_RUN_S = 300.0  # longest one request may run; multi-forward work (sweeps, probes) stops here
WORKERS_GPU = 1  # heavy jobs at once on a GPU (one model, one device)
WORKERS_CPU_DEFAULT = 1  # on a CPU; ATTN_WORKERS overrides it
# Torch threads per CPU job: chosen per job by attn.jobs.threads_for_job (all cores on an idle
# machine, one when anything competes); ATTN_TORCH_THREADS fixes the number instead.
# glibc malloc arenas of the server process (MALLOC_ARENA_MAX, set by `make run` and attn.server):
# glibc gives threads arenas of their own, up to 8 per core, and memory freed in one is not reused by
# another. 30 sessions asking at once (a script thread each): peak RSS 2.84 GiB with the default,
# 1.71 GiB with 2 (load test, measured here).
MALLOC_ARENAS = 2
OTHER_LOAD_FOR_ONE_THREAD = 0.3  # cores busy elsewhere above which a job runs on one thread

# ------------------------------------------------------------------ caches ---
# One process-wide LRU cache holds every page's computed results (attn.cache.BoundedCache).
CACHE_MAX_ENTRIES = 256
CACHE_MAX_BYTES = 512 << 20  # 512 MiB of pickled results; the model itself is ~540 MB besides
CACHE_VALUE_MAX_BYTES = 64 << 20  # a larger single result is returned but not kept

# ------------------------------------------------------------ text inputs ---
URL_TEXT_CHARS = 500  # a free-text URL parameter is cut here
URL_LIST_ITEMS = 64  # items of a comma list in a URL parameter
RULE_CHARS = 500  # a custom mask rule; longer text is refused before it is parsed


def table() -> list[dict]:
    """Every limit as rows (name, value, what it bounds), for the CLI and the README."""
    rows = []
    for name, value in globals().items():
        if name.isupper() and isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append({"name": name, "value": value})
    for prefix, lim in (("MODEL_CPU", MODEL_CPU), ("MODEL_GPU", MODEL_GPU)):
        rows += [{"name": f"{prefix}.{k}", "value": v} for k, v in asdict(lim).items()]
    return rows
