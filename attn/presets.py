"""What each pattern is: its parameters with defaults, and a short explanation with sources.

Shared by the CLI, the pages and the URL state, so that a parameter is named once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .masks import CUSTOM, PATTERNS


@dataclass(frozen=True)
class ParamSpec:
    name: str  # keyword of attn.masks.build
    label: str
    kind: str  # "int", "bool", "int_list", "text"
    default: object
    minimum: int = 0
    help: str = ""


PARAMS = {
    "window": ParamSpec("window", "Window W", "int", 8, 1, "Sliding: a token sees itself and W-1 before. Band: |q-k| <= W//2."),
    "dilation": ParamSpec("dilation", "Dilation d", "int", 2, 1, "Keep every d-th key of the window."),
    "global_tokens": ParamSpec("global_tokens", "Global tokens", "int_list", (0,), 0, "Token indices, e.g. 0, 17"),
    "random_blocks": ParamSpec("random_blocks", "Random blocks r", "int", 2, 0, "Random key blocks per query block."),
    "seed": ParamSpec("seed", "Seed", "int", 0, 0, "Seed of the random block draws."),
    "block": ParamSpec("block", "Block size", "int", 4, 1, "Tokens per BigBird block."),
    "stride": ParamSpec("stride", "Stride", "int", 8, 1, "Local span and step of the strided keys."),
    "chunk": ParamSpec("chunk", "Chunk size C", "int", 16, 1, "Tokens per chunk."),
    "sinks": ParamSpec("sinks", "Sink tokens S", "int", 4, 0, "First S tokens always visible."),
    "prefix": ParamSpec("prefix", "Prefix length P", "int", 16, 0, "Tokens everyone sees (bidirectional prefix)."),
    "lengths": ParamSpec("lengths", "Document lengths", "int_list", (20, 28, 16), 1, "Comma list; must add up to N."),
    "causal": ParamSpec("causal", "Causal (AND with k <= q)", "bool", True),
    # A custom rule (attn.rules): the formula, and its named integer parameters as "W=16, S=4".
    "rule": ParamSpec("rule", "Rule", "text", "q >= k and q - k < W", 0,
                      "A condition on q (query) and k (key); checked against a whitelist, never executed."),
    "rule_params": ParamSpec("rule_params", "Rule parameters", "text", "W=8", 0, "Whole numbers, e.g. W=16, S=4"),
}


@dataclass(frozen=True)
class PatternInfo:
    name: str
    title: str
    params: tuple[str, ...]
    what: str
    used_by: str
    cost: str
    defaults: tuple[tuple[str, object], ...] = ()  # overrides of PARAMS defaults

    def default(self, param: str):
        return dict(self.defaults).get(param, PARAMS[param].default)


PATTERN_INFO = {
    p.name: p
    for p in [
        PatternInfo(
            "full",
            "Full (bidirectional)",
            (),
            "Every token attends to every token, before and after it.",
            "Encoders: BERT (Devlin et al. 2019, arXiv:1810.04805), ViT.",
            "N² pairs: memory and compute grow with the square of the length.",
        ),
        PatternInfo(
            "causal",
            "Causal",
            (),
            "A token attends to itself and every earlier token, never to the future.",
            "Decoder language models: GPT (Radford et al. 2018), Llama, Qwen.",
            "N(N+1)/2 pairs: half of full attention, still quadratic.",
        ),
        PatternInfo(
            "sliding_window",
            "Sliding window (causal)",
            ("window",),
            "A token attends to itself and the W-1 tokens before it. Masked where "
            "(k > q) or (q - k >= W). Information still travels further, one window per layer.",
            "Mistral 7B v0.1 (Jiang et al. 2023, arXiv:2310.06825) with W = 4096; the local layers of Gemma 2.",
            "About N·W pairs: linear in N for a fixed window; the KV cache holds only W tokens per layer.",
        ),
        PatternInfo(
            "band",
            "Band (bidirectional window)",
            ("window",),
            "A token attends to neighbours on both sides: |q - k| <= W // 2, so W+1 keys for even W "
            "(W//2 before, itself, W//2 after).",
            "Longformer's local attention (Beltagy et al. 2020, arXiv:2004.05150).",
            "About N·(W+1) pairs, linear in N.",
        ),
        PatternInfo(
            "dilated",
            "Dilated window",
            ("window", "dilation", "causal"),
            "Inside the window, only every d-th key: (q - k) % d == 0. The same number of pairs covers a span d times wider.",
            "Longformer's dilated sliding window on some heads (Beltagy et al. 2020).",
            "About N·W/d pairs; the gaps make the kernel's memory access strided.",
            (("window", 16), ("dilation", 2)),
        ),
        PatternInfo(
            "local_global",
            "Local + global (Longformer)",
            ("window", "global_tokens", "causal"),
            "A local window, plus a few global tokens that attend to everything and that everything attends to "
            "(their row and column are full). Any two tokens are at most two hops apart through a global token.",
            "Longformer ([CLS] and question tokens global; Beltagy et al. 2020), ETC (Ainslie et al. 2020, arXiv:2004.08483).",
            "About N·W + 2·N·G pairs for G global tokens.",
            (("causal", False),),
        ),
        PatternInfo(
            "bigbird",
            "BigBird (window + global + random)",
            ("window", "global_tokens", "random_blocks", "seed", "block", "causal"),
            "Local window and global tokens as in Longformer, plus r random key blocks per query block. "
            "Draws are seeded and distinct (one per stratum of the eligible blocks), so a link reproduces the same mask.",
            "BigBird (Zaheer et al. 2020, arXiv:2007.14062); google/bigbird-roberta, BigBird-Pegasus.",
            "About N·(W + G + r·block) pairs, linear in N; computed in blocks on hardware.",
            (("causal", False),),
        ),
        PatternInfo(
            "strided",
            "Strided (Sparse Transformer)",
            ("stride",),
            "The two heads of the Sparse Transformer's strided pattern combined: the previous `stride` tokens, "
            "plus every token a multiple of `stride` back. Causal.",
            "Sparse Transformer (Child et al. 2019, arXiv:1904.10509); GPT-3 alternated dense and locally banded sparse layers.",
            "About N·(stride + N/stride) pairs: O(N√N) for stride ≈ √N.",
        ),
        PatternInfo(
            "chunked",
            "Chunked / block-local",
            ("chunk", "causal"),
            "The sequence is cut into chunks of C tokens; a token attends only inside its own chunk "
            "(q // C == k // C). Nothing crosses a chunk boundary, however many layers: models interleave global layers.",
            "Llama 4 (Meta 2025): chunked attention with 8192-token chunks in 3 of every 4 layers.",
            "About N·C/2 pairs (causal); the KV cache holds at most C tokens per chunked layer.",
        ),
        PatternInfo(
            "sinks",
            "Attention sinks + window",
            ("sinks", "window"),
            "A sliding window plus the first S tokens, which stay visible forever. Models dump attention on the first "
            "tokens; keeping them lets a windowed model stream far past its window without collapsing.",
            "StreamingLLM (Xiao et al. 2023, arXiv:2309.17453), typically 4 sink tokens.",
            "About N·(W + S) pairs; cache of W + S tokens.",
        ),
        PatternInfo(
            "prefix_lm",
            "Prefix-LM",
            ("prefix",),
            "The first P tokens (the prompt or input) attend to each other in both directions; the rest is causal. "
            "Rule: k < P or k <= q.",
            "UniLM (Dong et al. 2019, arXiv:1905.03197), T5's prefix-LM objective (Raffel et al. 2020), UL2.",
            "Causal cost plus the upper-right part of the prefix block, P(P-1)/2 pairs more.",
        ),
        PatternInfo(
            "document",
            "Document masking (packed sequences)",
            ("lengths", "causal"),
            "Several documents packed into one sequence; a token attends only within its own document, "
            "so packing does not leak one document into another.",
            "Llama 3 (Grattafiori et al. 2024, arXiv:2407.21783) masks across documents in packed sequences.",
            "Sum of each document's causal cost: far below one N-token causal mask.",
            (("lengths", (20, 28, 16)),),
        ),
    ]
}
# A rule the user writes (attn.rules): pickable on every page, but not one of masks.PATTERNS.
PATTERN_INFO[CUSTOM] = PatternInfo(
    CUSTOM,
    "Custom rule (write your own)",
    ("rule", "rule_params", "causal"),
    "Your own mask as a condition on q (query position) and k (key position), e.g. "
    "`q >= k and (q - k) % 4 == 0`: whole numbers, named parameters, + - * // %, abs/min/max, comparisons, "
    "and/or/not. It is parsed against a whitelist and turned into tensor operations; nothing you type is executed.",
    "FlexAttention and attention-gym users write mask_mod predicates the same way (PyTorch blog, 2024).",
    "Counted exactly from the rule, for N up to 8,192.",
    (("causal", False),),
)
PICKABLE = (*PATTERNS, CUSTOM)

assert tuple(PATTERN_INFO) == PICKABLE


def default_params(pattern: str, n: int | None = None) -> dict:
    """A pattern's default parameters; document lengths are stretched to add up to n."""
    info = PATTERN_INFO[pattern]
    out = {p: info.default(p) for p in info.params}
    if "lengths" in out and n is not None:
        out["lengths"] = split_evenly(n, 3)
    return out


def split_evenly(n: int, parts: int) -> tuple[int, ...]:
    parts = max(1, min(parts, n))
    base, extra = divmod(n, parts)
    return tuple(base + (1 if i < extra else 0) for i in range(parts))


# ------------------------------------------------------------ layer stacks ---
@dataclass(frozen=True)
class StackPreset:
    name: str
    title: str
    layers: int
    spec: str  # per-layer rules, cycled; the syntax of `parse_stack`
    source: str
    n: int = 32768  # a length several windows long, where the stack's structure shows


# Values from the published model configs (config.json on the Hugging Face hub).
STACK_PRESETS = {
    p.name: p
    for p in [
        StackPreset(
            "mistral-7b-v0.1",
            "Mistral 7B v0.1: 32 × sliding window 4096",
            32,
            "sliding_window window=4096",
            "mistralai/Mistral-7B-v0.1 config: num_hidden_layers 32, sliding_window 4096",
        ),
        StackPreset(
            "gemma-2-9b",
            "Gemma 2 9B: 42 layers, sliding window 4096 / global, alternating",
            42,
            "sliding_window window=4096 | causal",
            "google/gemma-2-9b config: num_hidden_layers 42, sliding_window 4096, local layers first",
        ),
        StackPreset(
            "longformer-base",
            "Longformer base: 12 × window 512 + global token 0",
            12,
            "local_global window=512 global_tokens=0 causal=0",
            "allenai/longformer-base-4096 config: 12 layers, attention_window 512; [CLS] global",
            4096,  # the model's own maximum length
        ),
        StackPreset(
            "llama-4-scout",
            "Llama 4 Scout: 48 layers, 3 chunked (8192) then 1 global",
            48,
            "chunked chunk=8192 | chunked chunk=8192 | chunked chunk=8192 | causal",
            "meta-llama/Llama-4-Scout-17B-16E config: 48 layers, attention_chunk_size 8192, every 4th layer global",
        ),
    ]
}


# Names earlier versions used (links shared then keep working); the keys above follow the
# Hugging Face model ids, as the Serving Cost presets (attn/kv.py) do.
STACK_ALIASES = {"gemma2-9b": "gemma-2-9b", "llama4-scout": "llama-4-scout"}


def stack_preset(name: str) -> StackPreset:
    """The layer-stack preset called `name` (or an older name for it)."""
    key = STACK_ALIASES.get(name, name)
    if key not in STACK_PRESETS:
        raise ValueError(f"Unknown preset '{str(name)[:30]}'; choose one of: {', '.join(STACK_PRESETS)}.")
    return STACK_PRESETS[key]


def parse_stack(text: str, n: int | None = None, max_rules: int = 16) -> tuple:
    """'sliding_window window=128 | causal' -> rules cycled over layers.

    Each item is a pattern name followed by name=value parameters (lists as 0,5,9; booleans
    as 0/1). Parsed with a whitelist: only known patterns and parameters are accepted.
    """
    from .masks import build
    from .state import parse_param

    items = [t.strip() for t in str(text).split("|")]
    if not any(items):
        raise ValueError("The layer stack is empty: give at least one pattern, e.g. 'sliding_window window=128 | causal'.")
    if len(items) > max_rules:
        raise ValueError(f"A stack cycles at most {max_rules} rules, got {len(items)}.")
    rules = []
    for item in items:
        words = item.split()
        if not words:
            raise ValueError("Empty item between '|' in the layer stack.")
        pattern, params = words[0], default_params(words[0], n) if words[0] in PATTERN_INFO else None
        if params is None:
            raise ValueError(f"Unknown pattern '{pattern[:30]}' in the layer stack.")
        for word in words[1:]:
            name, _, value = word.partition("=")
            if name not in PATTERN_INFO[pattern].params or not value:
                allowed = ", ".join(PATTERN_INFO[pattern].params) or "none"
                raise ValueError(f"'{word[:30]}' is not a parameter of {pattern} (its parameters: {allowed}).")
            parsed = parse_param(PARAMS[name], value)
            params[name] = tuple(int(v) for v in parsed.split(",")) if PARAMS[name].kind == "int_list" else parsed
        rules.append(build(pattern, n, **params))
    return tuple(rules)


def build_stack(spec: str, layers: int, n: int | None = None, name: str = "custom"):
    from .masks import LayerStack

    return LayerStack(name, parse_stack(spec, n), layers)


def reach_explanations(rules) -> list[str]:
    """Why the reach of this rule or stack grows the way it does, in a few sentences."""
    names = {r.name for r in rules}
    lines = []
    if names == {"sliding_window"} and len(rules) == 1:
        w = rules[0].param_dict["window"]
        lines.append(
            f"Each layer lets information hop at most W−1 = {w - 1} positions back, and the residual stream carries what "
            f"earlier layers gathered: after l layers token q draws on min(q+1, l·(W−1)+1) tokens. Mistral 7B's "
            f"32 layers × 4096 reach 32·4095+1 = 131,041 tokens, though each layer only looks 4096 back."
        )
    if names == {"chunked"}:
        lines.append(
            "Chunked attention never crosses a chunk boundary, however many layers are stacked: only a layer of another "
            "kind connects chunks. That is why Llama 4 interleaves one global layer after every three chunked ones."
        )
    elif "chunked" in names:
        others = " and ".join(sorted(names - {"chunked"}))
        lines.append(
            f"A chunked layer never crosses a chunk boundary; in this stack the {others} layers do, so the reach still "
            "grows past the chunk (Llama 4 puts one global layer after every three chunked ones)."
        )
    if {"local_global", "bigbird"} & names:
        lines.append(
            "A global token sees everything and is seen by everything, so any two tokens are at most two hops apart "
            "through it: after two layers the whole sequence is reachable (when a global token exists in range)."
        )
    if "causal" in names and len(rules) > 1:
        lines.append(
            "One full causal layer connects a token to its whole past at once: hybrid stacks such as Gemma 2 "
            "(local 4096 / global, alternating) reach the whole context after their first global layer."
        )
    if not lines:
        lines.append("The reach grows as paths chain allowed edges across layers; each layer adds at most one hop.")
    return lines


def rule_notes(rule, n: int) -> list[str]:
    """Friendly remarks on legal but degenerate settings (a window at least as long as N, ...)."""
    p = rule.param_dict
    notes = []
    w = p.get("window")
    # A causal window reaches back w − 1 keys, so w ≥ N spans every past; a bidirectional one reaches
    # w // 2 each way (band: |q − k| ≤ w // 2), so it spans everything only once w // 2 ≥ N − 1.
    causal_window = rule.name in ("sliding_window", "sinks") or p.get("causal", False)
    if w is not None and causal_window and w >= n:
        notes.append(f"Window {w} ≥ N = {n}: every query already sees all its earlier keys; the window has no effect.")
    elif w is not None and not causal_window and w // 2 >= n - 1:
        notes.append(f"Window {w} ≥ 2·(N − 1) = {2 * (n - 1)}: |q − k| ≤ {w // 2} already spans the whole sequence; "
                     "the window has no effect.")
    if p.get("chunk", 0) >= n:
        notes.append(f"Chunk {p['chunk']} ≥ N = {n}: one chunk holds the whole sequence.")
    if rule.name == "prefix_lm" and p["prefix"] == 0:
        notes.append("Empty prefix: this is plain causal attention.")
    if rule.name == "prefix_lm" and p["prefix"] >= n:
        notes.append(f"Prefix {p['prefix']} ≥ N = {n}: the whole sequence is prefix; this is full bidirectional attention.")
    if rule.name == "sinks" and p["sinks"] == 0:
        notes.append("No sink tokens: this is a plain sliding window.")
    # The last query misses keys sinks..n−1−window; none are left once sinks + window ≥ n.
    if rule.name == "sinks" and p["sinks"] > 0 and p["window"] < n <= p["sinks"] + p["window"]:
        notes.append(f"Sinks {p['sinks']} + window {p['window']} ≥ N = {n}: every query sees its whole past; "
                     "this is plain causal attention.")
    return notes
