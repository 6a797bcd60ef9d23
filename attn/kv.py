"""Serving cost at long context: KV cache, weights and VRAM under each attention design.

Pure functions over published model dimensions. Per token and layer the KV cache holds
2 (K and V) · kv_heads · head_dim values. A layer whose attention is capped at C tokens
(a sliding window kept as a rolling buffer, sinks + window, a chunk) never holds more than
C tokens; a global layer holds the whole context. Everything here is arithmetic on those
facts, so every figure on the Serving Cost page can be checked by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# Bytes per stored value. int4 counts 4 bits only (group scales add ~3% and are left out).
DTYPE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
WEIGHT_DTYPES = ("bf16", "fp8", "int4")
KV_DTYPES = ("bf16", "fp8")
MAX_CONTEXT = 1 << 24  # 16M tokens: search bound for "largest context that fits"
MAX_LAYERS = 1024
MAX_HEADS = 1024
MAX_HEAD_DIM = 4096
MAX_BATCH = 1 << 16


def decoder_params(
    *, layers: int, hidden: int, q_heads: int, kv_heads: int, head_dim: int, intermediate: int,
    vocab: int, tied_embeddings: bool, qkv_bias: bool = False, norms_per_layer: int = 2,
) -> int:
    """Parameter count of a Llama-style decoder (gated MLP, RMSNorm, no biases except optional q/k/v)."""
    q, kv = q_heads * head_dim, kv_heads * head_dim
    attention = hidden * q + 2 * hidden * kv + q * hidden + ((q + 2 * kv) if qkv_bias else 0)
    mlp = 3 * hidden * intermediate  # gate, up, down
    per_layer = attention + mlp + norms_per_layer * hidden
    embeddings = vocab * hidden * (1 if tied_embeddings else 2)  # input table (+ separate output head)
    return layers * per_layer + hidden + embeddings  # + final norm


@dataclass(frozen=True)
class ModelSpec:
    """What a model's serving cost depends on. windows[i] caps layer i's attention (None = global)."""

    key: str
    title: str
    layers: int
    q_heads: int
    kv_heads: int
    head_dim: int
    params: int
    windows: tuple  # per layer: int tokens or None
    hidden: int = 0  # for the Mamba reference line; 0 = q_heads · head_dim
    trained_context: int | None = None
    source: str = ""

    @property
    def model_dim(self) -> int:
        return self.hidden or self.q_heads * self.head_dim


def _preset(key, title, *, layers, hidden, q_heads, kv_heads, head_dim, intermediate, vocab, tied,
            windows, trained_context, source, qkv_bias=False, norms_per_layer=2) -> ModelSpec:
    params = decoder_params(
        layers=layers, hidden=hidden, q_heads=q_heads, kv_heads=kv_heads, head_dim=head_dim,
        intermediate=intermediate, vocab=vocab, tied_embeddings=tied, qkv_bias=qkv_bias,
        norms_per_layer=norms_per_layer,
    )
    return ModelSpec(key, title, layers, q_heads, kv_heads, head_dim, params, tuple(windows), hidden,
                     trained_context, source)


# Dimensions from each model's published config.json on the Hugging Face Hub (URLs below).
# Parameter counts are computed from them; tests check the totals against the published ones.
PRESETS: dict[str, ModelSpec] = {
    m.key: m
    for m in (
        # hidden_size 4096, 32 layers, 32 heads, 8 KV heads, intermediate 14336, vocab 32000,
        # sliding_window 4096, max_position_embeddings 32768.
        _preset("mistral-7b-v0.1", "Mistral 7B v0.1 (sliding window 4096)", layers=32, hidden=4096, q_heads=32,
                kv_heads=8, head_dim=128, intermediate=14336, vocab=32000, tied=False, windows=[4096] * 32,
                trained_context=32768, source="https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json"),
        # As v0.1 but vocab 32768 and sliding_window null (full attention).
        _preset("mistral-7b-v0.3", "Mistral 7B v0.3 (full attention)", layers=32, hidden=4096, q_heads=32,
                kv_heads=8, head_dim=128, intermediate=14336, vocab=32768, tied=False, windows=[None] * 32,
                trained_context=32768, source="https://huggingface.co/mistralai/Mistral-7B-v0.3/blob/main/config.json"),
        # hidden 4096, 32 layers, 32 heads, 8 KV heads, intermediate 14336, vocab 128256, context 131072.
        _preset("llama-3.1-8b", "Llama 3.1 8B (full attention)", layers=32, hidden=4096, q_heads=32, kv_heads=8,
                head_dim=128, intermediate=14336, vocab=128256, tied=False, windows=[None] * 32,
                trained_context=131072, source="https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json"),
        # hidden 3584, 42 layers, 16 heads, 8 KV heads, head_dim 256, intermediate 14336, vocab 256000
        # (tied), sliding_window 4096 on even layers (layer_types alternate sliding/full), 4 norms per
        # layer, max_position_embeddings 8192.
        _preset("gemma-2-9b", "Gemma 2 9B (local 4096 / global, alternating)", layers=42, hidden=3584, q_heads=16,
                kv_heads=8, head_dim=256, intermediate=14336, vocab=256000, tied=True,
                windows=[4096 if i % 2 == 0 else None for i in range(42)], norms_per_layer=4,
                trained_context=8192, source="https://huggingface.co/google/gemma-2-9b/blob/main/config.json"),
        # hidden 3584, 28 layers, 28 heads, 4 KV heads, intermediate 18944, vocab 152064, q/k/v bias,
        # use_sliding_window false; 131072 tokens with YaRN (32768 native).
        _preset("qwen2.5-7b", "Qwen2.5 7B (full attention)", layers=28, hidden=3584, q_heads=28, kv_heads=4,
                head_dim=128, intermediate=18944, vocab=152064, tied=False, qkv_bias=True, windows=[None] * 28,
                trained_context=131072, source="https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json"),
        # hidden 5120, 40 layers, 32 heads, 8 KV heads, head_dim 128, intermediate 32768, vocab 131072,
        # sliding_window null, context 32768.
        _preset("mistral-small-3-24b", "Mistral Small 3 24B (full attention)", layers=40, hidden=5120, q_heads=32,
                kv_heads=8, head_dim=128, intermediate=32768, vocab=131072, tied=False, windows=[None] * 40,
                trained_context=32768,
                source="https://huggingface.co/mistralai/Mistral-Small-24B-Base-2501/blob/main/config.json"),
    )
}

# Totals as published (model cards / safetensors metadata), to check decoder_params against.
PUBLISHED_PARAMS = {
    "mistral-7b-v0.1": 7_241_732_096,
    "mistral-7b-v0.3": 7_248_023_552,
    "llama-3.1-8b": 8_030_261_248,
    "gemma-2-9b": 9_241_705_984,
    "qwen2.5-7b": 7_615_616_512,
    "mistral-small-3-24b": 23_572_403_200,
}


@dataclass(frozen=True)
class GPU:
    name: str
    memory_bytes: int


# What the driver reports (nvidia-smi / NVML "total", MiB), not the capacity as sold: a "80 GB" H100 has
# 79.65 GiB, a "141 GB" H200 140.4 GiB. Sources: Modal's table of NVML readings (H200, H100, A100;
# thundergolfer.com/blog/nvidia-gpu-memory-capacity) and nvidia-smi printouts in public GitHub issues
# (RTX 3060 12,288 MiB: geerlingguy/raspberry-pi-pcie-devices#790; RTX 4090 24,564 MiB: RLinf/RLinf#255;
# RTX 5090 32,607 MiB: noonghunna/club-3090#617). The CUDA context and the engine take some more, which
# is what the page's allowance is for.
GPUS = tuple(
    GPU(name, mib << 20)
    for name, mib in (
        ("RTX 3060 12 GB", 12_288), ("RTX 4090 24 GB", 24_564), ("RTX 5090 32 GB", 32_607),
        ("A100 80 GB", 81_920), ("H100 80 GB", 81_559), ("H200 141 GB", 143_771),
    )
)


def custom_model(*, layers: int, q_heads: int, kv_heads: int, head_dim: int, params: int,
                 windows=None, hidden: int = 0) -> ModelSpec:
    """A model entered by hand. windows: None (all global), one value for every layer, or one per layer."""
    for label, v, hi in (("Layers", layers, MAX_LAYERS), ("Query heads", q_heads, MAX_HEADS),
                         ("KV heads", kv_heads, MAX_HEADS), ("Head dim", head_dim, MAX_HEAD_DIM)):
        _check_int(label, v, 1, hi)
    if kv_heads > q_heads:
        raise ValueError(f"KV heads ({kv_heads}) cannot exceed query heads ({q_heads}).")
    if q_heads % kv_heads:
        raise ValueError(f"Query heads ({q_heads}) must be a multiple of KV heads ({kv_heads}) for grouped-query attention.")
    _check_int("Parameters", params, 1, 10**13)
    if windows is None:
        per_layer = (None,) * layers
    else:
        windows = tuple(windows)
        if len(windows) == 1:
            windows = windows * layers
        if len(windows) != layers:
            raise ValueError(f"The window list has {len(windows)} entries but the model has {layers} layers; "
                             "give one window per layer, or a single one for all.")
        per_layer = tuple(_check_window(w) for w in windows)
    return ModelSpec("custom", "Custom model", layers, q_heads, kv_heads, head_dim, params, per_layer, hidden)


def parse_windows(text: str) -> tuple | None:
    """'4096, full, 4096' -> (4096, None, 4096); 'full' or '' -> None (every layer global)."""
    items = [t.strip().lower() for t in str(text).replace(";", ",").split(",") if t.strip()]
    if len(items) > MAX_LAYERS:
        raise ValueError(f"At most {MAX_LAYERS} windows.")
    if not items or items == ["full"]:
        return None
    out = []
    for t in items:
        if t in ("full", "global", "none", "0"):
            out.append(None)
        elif t.isdigit() and len(t) <= 9:
            out.append(int(t))
        else:
            raise ValueError(f"'{t[:20]}' is not a window: write whole numbers of tokens, or 'full' for a global layer.")
    return tuple(out)


def _check_int(label, v, lo, hi):
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{label} must be a whole number from {lo:,} to {hi:,}, got {v!r}.")


def _check_window(w):
    if w is not None:
        _check_int("A window", w, 1, MAX_CONTEXT)
    return w


@dataclass(frozen=True)
class Design:
    """An attention design applied to a model's layers.

    kind: "own" (the model's published design), "full", "sliding" (window W in every layer),
    "hybrid" (window W, every k-th layer global), "sinks" (S sink tokens + window W),
    "chunked" (chunks of C tokens, optionally every k-th layer global, as Llama 4).
    """

    kind: str = "own"
    window: int = 4096
    every: int = 0  # every k-th layer global (hybrid, chunked); 0 = none
    sinks: int = 4
    chunk: int = 8192

    @property
    def label(self) -> str:
        k = self.kind
        glob = f", every {_ordinal(self.every)} layer global" if self.every else ""
        return {
            "own": "the model's own design",
            "full": "full attention in every layer",
            "sliding": f"sliding window {self.window:,} in every layer",
            "hybrid": f"sliding window {self.window:,}{glob or ', no global layer'}",
            "sinks": f"{self.sinks:,} sink tokens + window {self.window:,}",
            "chunked": f"chunks of {self.chunk:,}{glob}",
        }[k]


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


DESIGN_KINDS = ("own", "full", "sliding", "hybrid", "sinks", "chunked")


def layer_caps(model: ModelSpec, design: Design) -> tuple:
    """Per layer, the most tokens it attends to and caches (None = the whole context)."""
    if design.kind not in DESIGN_KINDS:
        raise ValueError(f"Unknown design '{design.kind}'; choose one of {', '.join(DESIGN_KINDS)}.")
    n = model.layers
    if design.kind == "own":
        return model.windows
    if design.kind == "full":
        return (None,) * n
    _check_int("Window", design.window, 1, MAX_CONTEXT)
    _check_int("Every k-th layer", design.every, 0, MAX_LAYERS)
    if design.kind == "sliding":
        return (design.window,) * n
    if design.kind == "sinks":
        _check_int("Sink tokens", design.sinks, 0, MAX_CONTEXT)
        return (design.sinks + design.window,) * n
    # every = 0: no global layer (the page's "0: none"); a hybrid of that kind is a plain sliding window.
    local = design.window
    if design.kind == "chunked":
        _check_int("Chunk", design.chunk, 1, MAX_CONTEXT)
        local = design.chunk  # worst case: the last token of a chunk attends to the whole chunk
    every = design.every
    return tuple(None if every and (i + 1) % every == 0 else local for i in range(n))


def _check_context(context: int, batch: int = 1) -> None:
    _check_int("Context", context, 1, MAX_CONTEXT)
    _check_int("Batch", batch, 1, MAX_BATCH)


def cached_tokens(caps: tuple, context: int) -> int:
    """Σ over layers of the tokens each layer keeps at this context."""
    return sum(context if c is None else min(c, context) for c in caps)


def kv_bytes_per_token_layer(model: ModelSpec, kv_dtype: str = "bf16") -> float:
    return 2 * model.kv_heads * model.head_dim * _bytes(kv_dtype)  # K and V


def kv_bytes(model: ModelSpec, context: int, batch: int = 1, kv_dtype: str = "bf16",
             design: Design = Design()) -> int:
    """KV-cache bytes for `batch` sequences of `context` tokens."""
    _check_context(context, batch)
    total = batch * cached_tokens(layer_caps(model, design), context) * kv_bytes_per_token_layer(model, kv_dtype)
    return int(math.ceil(total))


def weights_bytes(model: ModelSpec, weight_dtype: str = "bf16") -> int:
    return int(math.ceil(model.params * _bytes(weight_dtype)))


def vram_bytes(model: ModelSpec, context: int, batch: int = 1, weight_dtype: str = "bf16",
               kv_dtype: str = "bf16", design: Design = Design(), overhead_bytes: int = 0) -> int:
    """Weights + KV cache + a fixed allowance (CUDA context, activations, fragmentation)."""
    return weights_bytes(model, weight_dtype) + kv_bytes(model, context, batch, kv_dtype, design) + overhead_bytes


def attention_flops_per_token(model: ModelSpec, context: int, design: Design = Design()) -> int:
    """FLOPs of attention for one generated token: per layer and query head, q·K over the
    attended keys (2·d each) and the weighted sum of V (2·d each). Softmax left out."""
    _check_context(context)
    return 4 * model.q_heads * model.head_dim * cached_tokens(layer_caps(model, design), context)


def weight_flops_per_token(model: ModelSpec) -> int:
    """The matrix multiplies with the weights: about 2 FLOPs per parameter per token."""
    return 2 * model.params


def kv_saving(model: ModelSpec, context: int, design: Design = Design()) -> float:
    """1 − KV(design)/KV(full) at this context; the same ratio holds for attention FLOPs per token."""
    _check_context(context)
    caps = layer_caps(model, design)
    return 1.0 - cached_tokens(caps, context) / (model.layers * context)


def saving_limit(model: ModelSpec, design: Design = Design()) -> float:
    """The saving as context → ∞: the share of layers whose cache is capped."""
    caps = layer_caps(model, design)
    return sum(c is not None for c in caps) / model.layers


def context_for_saving(model: ModelSpec, target: float, design: Design = Design()) -> int | None:
    """Smallest context at which the KV saving reaches `target` (None if it never does).

    The saving never decreases with context (min(T, C)/T only falls), so bisection is exact."""
    if not 0 < target < 1:
        raise ValueError("The target saving must be between 0 and 1.")
    if saving_limit(model, design) <= target or kv_saving(model, MAX_CONTEXT, design) < target:
        return None
    lo, hi = 1, MAX_CONTEXT
    while lo < hi:
        mid = (lo + hi) // 2
        if kv_saving(model, mid, design) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass(frozen=True)
class Fit:
    gpu: str
    memory_bytes: int
    fits: bool  # at the chosen context and batch
    max_context: int | None  # None: not even one token fits; MAX_CONTEXT: no limit found (KV capped)
    unbounded: bool  # the KV stops growing (every layer capped) and the cap fits
    max_batch: int  # at the chosen context (0: not one sequence)


def fit_on(gpu: GPU, model: ModelSpec, context: int, batch: int = 1, weight_dtype: str = "bf16",
           kv_dtype: str = "bf16", design: Design = Design(), overhead_bytes: int = 0) -> Fit:
    """Largest context (at this batch) and largest batch (at this context) that fit the GPU."""
    _check_int("Overhead bytes", overhead_bytes, 0, 1 << 50)
    budget = gpu.memory_bytes - weights_bytes(model, weight_dtype) - overhead_bytes

    def kv(t, b=batch):
        return kv_bytes(model, t, b, kv_dtype, design)

    fits = kv(context) <= budget
    per_seq = kv(context, 1)
    max_batch = max(0, min(MAX_BATCH, int(budget // per_seq))) if budget > 0 else 0
    caps = layer_caps(model, design)
    if budget < kv(1):
        return Fit(gpu.name, gpu.memory_bytes, fits, None, False, max_batch)
    bounded = all(c is not None for c in caps)
    if bounded and kv(MAX_CONTEXT) <= budget:
        return Fit(gpu.name, gpu.memory_bytes, fits, MAX_CONTEXT, True, max_batch)
    lo, hi = 1, MAX_CONTEXT  # kv(lo) fits; find the largest fitting context
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if kv(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return Fit(gpu.name, gpu.memory_bytes, fits, lo, False, max_batch)


# Fixed-size state references: what "memory linear in context → constant" looks like.
def linear_attention_state_bytes(model: ModelSpec, batch: int = 1, dtype: str = "bf16") -> int:
    """Linear attention keeps, per layer and KV head, S = Σ φ(k) vᵀ (d×d) and z = Σ φ(k) (d),
    whatever the context (Katharopoulos et al., 2020, "Transformers are RNNs")."""
    d = model.head_dim
    return int(batch * model.layers * model.kv_heads * (d * d + d) * _bytes(dtype))


def mamba_state_bytes(model: ModelSpec, batch: int = 1, dtype: str = "bf16", d_state: int = 16,
                      expand: int = 2, d_conv: int = 4) -> int:
    """A Mamba (selective SSM) layer of width D keeps h ∈ R^(expand·D × d_state) and the last
    d_conv−1 inputs of its causal convolution (Gu & Dao, 2023, defaults d_state=16, expand=2, d_conv=4).
    Same depth and width as the model, for comparison."""
    inner = expand * model.model_dim
    return int(batch * model.layers * inner * (d_state + d_conv - 1) * _bytes(dtype))


def _bytes(dtype: str) -> float:
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"Unknown dtype '{dtype}'; choose one of {', '.join(DTYPE_BYTES)}.")
    return DTYPE_BYTES[dtype]


def get_model(key: str) -> ModelSpec:
    if key not in PRESETS:
        raise ValueError(f"Unknown model '{key}'; choose one of: {', '.join(PRESETS)}.")
    return PRESETS[key]


def with_windows(model: ModelSpec, windows) -> ModelSpec:
    return replace(model, windows=tuple(windows))


def report(model: ModelSpec, context: int, batch: int = 1, weight_dtype: str = "bf16", kv_dtype: str = "bf16",
           design: Design = Design(), overhead_bytes: int = 0) -> dict:
    """Everything the CLI and the page print for one setting, as plain numbers."""
    _check_int("Overhead bytes", overhead_bytes, 0, 1 << 50)
    kv = kv_bytes(model, context, batch, kv_dtype, design)
    kv_full = kv_bytes(model, context, batch, kv_dtype, Design("full"))
    weights = weights_bytes(model, weight_dtype)
    return {
        "model": model.key,
        "design": design.label,
        "context": context,
        "batch": batch,
        "weight_dtype": weight_dtype,
        "kv_dtype": kv_dtype,
        "params": model.params,
        "kv_bytes": kv,
        "kv_bytes_full": kv_full,
        "kv_bytes_per_token": kv / (context * batch),
        "kv_bytes_per_token_full": kv_full / (context * batch),
        "weights_bytes": weights,
        "overhead_bytes": overhead_bytes,
        "vram_bytes": weights + kv + overhead_bytes,
        "vram_bytes_full": weights + kv_full + overhead_bytes,
        "kv_saving": kv_saving(model, context, design),
        "vram_saving": 1 - (weights + kv + overhead_bytes) / (weights + kv_full + overhead_bytes),
        "attention_flops_per_token": attention_flops_per_token(model, context, design),
        "attention_flops_per_token_full": attention_flops_per_token(model, context, Design("full")),
        "weight_flops_per_token": weight_flops_per_token(model),
        "beyond_trained_context": bool(model.trained_context and context > model.trained_context),
    }


def size_text(b: float) -> str:
    """Bytes in binary units, 3 significant digits, never in exponent notation (1,008 MiB, 86.6 GiB)."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= scale:
            v = b / scale
            return f"{v:,.0f} {unit}" if v >= 100 else f"{v:.3g} {unit}"
    return f"{b:.0f} B"


def params_text(count: float) -> str:
    """A parameter count as model cards write it: 7.24B, 135M, 1M (a tiny custom model read "0.00B")."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= scale * 0.9995:  # 999.6M rounds to 1.00B, not "1e+03M"
            return f"{count / scale:.2f}B" if suffix == "B" else f"{count / scale:.3g}{suffix}"
    return f"{count:,.0f}"


def percent_text(x: float) -> str:
    """A share as a whole percentage, with decimals only where rounding would print 0% or 100% for
    what is neither (a 99.6% saving is not "100%", a 0.3% one is not "0%")."""
    for decimals in range(4):
        text = f"{x:.{decimals}%}"
        if x in (0, 1) or float(text[:-1]) not in (0, 100):
            return text
    return f"{'<' if x < 0.5 else '>'} {'0.001' if x < 0.5 else '99.999'}%"


def verdict(model: ModelSpec, context: int, batch: int = 1, weight_dtype: str = "bf16", kv_dtype: str = "bf16",
            design: Design = Design(), overhead_bytes: int = 0) -> list[str]:
    """The claims "sliding window cuts serving cost 60–80%" and "benefits diminish below 2048
    tokens", checked for this model and design. Plain sentences (Markdown), every number computed."""
    r = report(model, context, batch, weight_dtype, kv_dtype, design, overhead_bytes)
    caps = layer_caps(model, design)
    capped = sum(c is not None for c in caps)
    limit = saving_limit(model, design)
    lines = []
    if capped == 0:
        lines.append("This design caps no layer's cache: it saves nothing at any context.")
    else:
        t60, t80 = context_for_saving(model, 0.6, design), context_for_saving(model, 0.8, design)
        reach = [f"60% from {t60:,} tokens" if t60 else None, f"80% from {t80:,} tokens" if t80 else None]
        reach = [x for x in reach if x]
        head = f"**60–80% claim:** {capped} of {model.layers} layers keep at most {min(c for c in caps if c):,} tokens"
        if len(set(c for c in caps if c)) > 1:
            head = f"**60–80% claim:** {capped} of {model.layers} layers keep a capped cache"
        if reach:
            lines.append(f"{head}; the KV saving reaches {' and '.join(reach)}, and tends to {percent_text(limit)} "
                         "as the context grows.")
        else:
            lines.append(f"{head}, so the KV saving can never exceed {percent_text(limit)}: it never reaches 60%.")
        s2048 = kv_saving(model, 2048, design)
        smallest = min(c for c in caps if c is not None)
        if s2048 == 0:
            span = {"chunked": "chunk", "sinks": f"cap ({design.sinks:,} sinks + a {design.window:,}-token window)"}.get(
                design.kind, "window")
            lines.append(f"**Below 2,048 tokens:** nothing is saved, nor up to {smallest:,} tokens: a capped layer "
                         f"holds the whole context until it is longer than its {smallest:,}-token {span}.")
        else:
            lines.append(f"**Below 2,048 tokens:** the saving at 2,048 tokens is {percent_text(s2048)}; "
                         f"it is zero below {smallest:,} tokens.")
    lines.append(
        f"**At {context:,} tokens, batch {batch}:** KV cache {size_text(r['kv_bytes'])} vs {size_text(r['kv_bytes_full'])} "
        f"with full attention ({percent_text(r['kv_saving'])} saved); total VRAM {size_text(r['vram_bytes'])} vs "
        f"{size_text(r['vram_bytes_full'])} ({percent_text(r['vram_saving'])} saved) — the {size_text(r['weights_bytes'])} of "
        f"weights do not shrink."
    )
    attn, attn_full, w = r["attention_flops_per_token"], r["attention_flops_per_token_full"], r["weight_flops_per_token"]
    lines.append(
        f"**Compute per generated token:** attention {attn / 1e9:.3g} GFLOP vs {attn_full / 1e9:.3g} GFLOP full "
        f"({percent_text(1 - attn / attn_full)} saved); the weights cost {w / 1e9:.3g} GFLOP, so attention is "
        f"{percent_text(attn / (attn + w))} of the total ({percent_text(attn_full / (attn_full + w))} with full attention)."
    )
    return lines
