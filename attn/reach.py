"""Receptive field: which input tokens can influence a token after L layers.

With residual connections, token q at layer l depends on itself and on every key its
layer-l rule allows at layer l-1. Going backwards from the output, the set of inputs a
token draws on after layers 1..l is

    S_l = {t};  S_{j-1} = S_j ∪ ⋃_{q ∈ S_j} allowed_j(q)   for j = l, ..., 1.

Two exact methods:
- `reach_matrix`: boolean composition of the layer masks (small N). Each step multiplies
  0/1 matrices and thresholds at once, so no power ever overflows or rounds.
- `reach_of_token`: propagation of a token's reach set using the rules' interval form
  (N up to 131072): each step turns the set's rows into key intervals and merges them
  with a difference array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .masks import LayerStack, MaskRule, check_n, uniform_stack

from .limits import MAX_LAYERS  # noqa: F401  (re-exported)
from .limits import REACH_MATRIX_MAX_N as MATRIX_MAX_N  # boolean composition costs N³ per layer


def as_stack(rule_or_stack, layers: int) -> LayerStack:
    """A per-layer stack of `layers` layers from a rule (same rule everywhere) or a stack."""
    check_layers(layers)
    if isinstance(rule_or_stack, LayerStack):
        return LayerStack(rule_or_stack.name, rule_or_stack.rules, layers)
    if isinstance(rule_or_stack, MaskRule):
        return uniform_stack(rule_or_stack, layers)
    raise ValueError("Give a mask rule or a layer stack.")


def check_layers(layers) -> None:
    if not isinstance(layers, (int, np.integer)) or isinstance(layers, bool):
        raise ValueError(f"The number of layers must be a whole number, got {layers!r}.")
    if not 1 <= layers <= MAX_LAYERS:
        raise ValueError(f"The number of layers must be between 1 and {MAX_LAYERS}, got {layers}.")


def check_token(token, n: int, what: str = "token") -> int:
    if not isinstance(token, (int, np.integer)) or isinstance(token, bool) or not 0 <= token < n:
        raise ValueError(f"The {what} must be a position from 0 to {n - 1}, got {token!r}.")
    return int(token)


# ------------------------------------------------------------ set propagation ---
def _expand(rule: MaskRule, members: np.ndarray, n: int) -> np.ndarray:
    """bool (n,): the members plus every key any member may attend to under `rule`."""
    q = np.flatnonzero(members)
    if rule.causal and len(q) == q[-1] + 1:
        return members  # already every position up to its last member: a causal rule adds nothing
    if not rule.has_intervals:
        if n > MATRIX_MAX_N * 16:
            raise ValueError(
                f"{rule.label} is known only as a predicate; its reach is computed pair by pair, up to N = {MATRIX_MAX_N * 16}."
            )
        rows = rule.allowed(torch.from_numpy(q)[:, None], torch.arange(n)[None, :])
        return members | rows.any(dim=0).numpy()
    keys = rule.row_keys(q, n)
    s = np.clip(keys.starts.ravel(), 0, n)
    e = np.clip(keys.ends.ravel(), 0, n)
    keep = e > s
    diff = np.bincount(s[keep], minlength=n + 1)[: n + 1] - np.bincount(e[keep], minlength=n + 1)[: n + 1]
    out = members | (np.cumsum(diff[:n]) > 0)
    if keys.has_progressions:
        out |= _progression_union(keys, n)
    return out


def _progression_union(keys, n: int) -> np.ndarray:
    """Union of arithmetic progressions that share one step, via a difference array per residue class."""
    step = int(keys.prog_step.flat[0])
    if not (keys.prog_step == step).all():
        raise ValueError("Progressions with different steps in one rule are not supported.")
    start = keys.prog_start.ravel()
    stop = keys.prog_stop.ravel()
    count = np.maximum(0, (stop - start + step - 1) // step)
    keep = count > 0
    start, end = start[keep], start[keep] + count[keep] * step  # first position past the last element
    rows = -(-(n + step) // step)
    size = rows * step
    diff = np.bincount(start, minlength=size)[:size] - np.bincount(np.minimum(end, size - 1), minlength=size)[:size]
    # Position p = row * step + residue: a running sum down each residue column.
    covered = np.cumsum(diff.reshape(rows, step), axis=0).ravel()[:n] > 0
    return covered


def _backward(rules: list[MaskRule], token: int, n: int) -> np.ndarray:
    """Reach set of `token` through rules[-1], ..., rules[0] (the last layer first)."""
    members = np.zeros(n, dtype=bool)
    members[token] = True
    for i in range(len(rules) - 1, -1, -1):
        grown = _expand(rules[i], members, n)
        if grown.sum() == members.sum():
            # A set that no rule of the stack can grow is final: stop early.
            if is_closed(rules, members, n):
                return members
        members = grown
    return members


def is_closed(rules, members: np.ndarray, n: int) -> bool:
    """Whether no rule (a rule, a stack's rules, or a list of rules) can add to this reach set:
    then no number of layers grows it."""
    if isinstance(rules, MaskRule):
        rules = (rules,)
    elif isinstance(rules, LayerStack):
        rules = rules.rules
    return all(_expand(r, members, n).sum() == members.sum() for r in dict.fromkeys(rules))


@dataclass(frozen=True)
class TokenReach:
    """sets: bool (L, n), row l-1 = inputs token can draw on after layers 1..l.
    causal: every layer's rule is causal, so the token's context is 0..token; otherwise a
    later position may reach it too, and its context is all n positions."""

    token: int
    n: int
    sets: np.ndarray
    causal: bool = True

    @property
    def counts(self) -> list[int]:
        return [int(c) for c in self.sets.sum(axis=1)]

    @property
    def context(self) -> int:
        """How many positions the token could draw on at all: token + 1 under causal rules, else n."""
        return self.token + 1 if self.causal else self.n

    @property
    def full_context_layer(self) -> int | None:
        """First layer after which the token draws on its whole context, or None."""
        for l, row in enumerate(self.sets, start=1):
            if row[: self.context].all():
                return l
        return None


def reach_of_token(rule_or_stack, n: int, token: int, layers: int) -> TokenReach:
    """Exact reach of one token after each of layers 1..L, at any N up to 131072."""
    check_n(n)
    stack = as_stack(rule_or_stack, layers)
    token = check_token(token, n)
    for r in set(stack.rules):
        r.check_length(n)
    rules = list(stack)
    sets = np.zeros((layers, n), dtype=bool)
    if len(stack.rules) == 1:
        # Same rule in every layer: reach after l layers is one more step from reach after l-1.
        members = np.zeros(n, dtype=bool)
        members[token] = True
        for l in range(layers):
            members = _expand(rules[0], members, n)
            sets[l] = members
    else:
        for l in range(layers):
            sets[l] = _backward(rules[: l + 1], token, n)
    return TokenReach(token, n, sets, all(r.causal for r in stack.rules))


def intervals_of(members: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True as half-open intervals [start, end)."""
    padded = np.concatenate([[False], members, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


# ---------------------------------------------------------- exact composition ---
def reach_matrix(rule_or_stack, n: int, layers: int) -> np.ndarray:
    """bool (n, n): [q, k] = output q after `layers` layers depends on input k. Small N only."""
    check_n(n)
    if n > MATRIX_MAX_N:
        raise ValueError(f"The reach matrix is composed exactly up to N = {MATRIX_MAX_N}; pick a token instead for N = {n}.")
    stack = as_stack(rule_or_stack, layers)
    eye = torch.eye(n, dtype=torch.bool)
    reach = eye.clone()
    for rule in stack:
        step = (rule.dense(n) | eye).to(torch.float32)
        # reach_new[q, k] = OR_m step[q, m] AND reach[m, k]; counts <= n < 2**24 are exact in float32.
        reach = (step @ reach.to(torch.float32)) > 0
    return reach.numpy()


@dataclass(frozen=True)
class Until:
    """How many layers until `source` can influence `target`. layers: the fewest, or None; then
    why: "later" (a causal stack and a source after the target: no depth helps), "closed" (the
    target's reach stops growing short of the source: no depth helps) or "deeper" (it still grows
    after max_layers layers)."""

    layers: int | None
    why: str | None = None


def until(rule_or_stack, n: int, source: int, target: int, max_layers: int = MAX_LAYERS) -> Until:
    """Fewest layers after which `source` can influence `target`, or why there is no such depth."""
    check_n(n)
    source = check_token(source, n, "source token")
    target = check_token(target, n, "target token")
    result = reach_of_token(rule_or_stack, n, target, max_layers)
    hits = np.flatnonzero(result.sets[:, source])
    if len(hits):
        return Until(int(hits[0]) + 1)
    if result.causal and source > target:
        return Until(None, "later")
    return Until(None, "closed" if is_closed(as_stack(rule_or_stack, max_layers), result.sets[-1], n) else "deeper")


def layers_until(rule_or_stack, n: int, source: int, target: int, max_layers: int = MAX_LAYERS) -> int | None:
    """Fewest layers after which `source` can influence `target` (None if never within max_layers)."""
    return until(rule_or_stack, n, source, target, max_layers).layers


def sliding_window_reach(q: int, layers: int, window: int) -> int:
    """Analytic reach of a causal sliding window: min(q+1, L·(W−1)+1)."""
    return min(q + 1, layers * (window - 1) + 1)
