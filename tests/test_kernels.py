"""Every attention backend against a float64 reference computed independently from the dense mask."""

import shutil

import numpy as np
import pytest
import torch

from attn import kernels as K
from attn import masks as M
from attn.presets import split_evenly
from attn.render import dense_numpy, mask_stats, tile_overview

RULES = {
    "sliding_window_1": lambda n: M.sliding_window(1),
    "sliding_window_37": lambda n: M.sliding_window(37),
    "sliding_window_ge_n": lambda n: M.sliding_window(n + 5),
    "local_global": lambda n: M.local_global(16, sorted({0, n // 2})),
    "bigbird": lambda n: M.bigbird(8, [0], 2, 3, 16, n),
    "dilated": lambda n: M.dilated(32, 3),
    "chunked": lambda n: M.chunked(64),
    "sinks": lambda n: M.sinks(2, 16),
    "document": lambda n: M.document(split_evenly(n, 3)),
    "causal": lambda n: M.causal(),
    "no_key_rows": lambda n: M.not_mask(M.causal()),  # the last query has no allowed key
}
SIZES = [1, 17, 128, 300]
HEADS = [(2, 2), (4, 2)]  # (query heads, kv heads): plain and grouped-query
ATOL = {torch.float32: 1e-5, torch.bfloat16: 3e-2}


# Tests check values, not speed: one torch thread (conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def reference(q, k, v, allowed: np.ndarray) -> np.ndarray:
    """float64 attention, head by head; query head h reads kv head h // (H / H_kv).
    A row with no allowed key gives zeros (the behaviour every backend promises)."""
    q, k, v = (t.double().numpy() for t in (q, k, v))
    b, h, n, d = q.shape
    groups = h // k.shape[1]
    out = np.zeros_like(q)
    for head in range(h):
        kh, vh = k[:, head // groups], v[:, head // groups]  # (B, N, d)
        s = q[:, head] @ kh.transpose(0, 2, 1) / np.sqrt(d)  # (B, N, N)
        s = np.where(allowed, s, -np.inf)
        m = s.max(axis=-1, keepdims=True)
        e = np.where(allowed, np.exp(s - np.where(np.isfinite(m), m, 0.0)), 0.0)
        z = e.sum(axis=-1, keepdims=True)
        out[:, head] = (e / np.where(z > 0, z, 1.0)) @ vh
    return out


def inputs(n, heads, kv_heads, batch=1, d=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, n, d, generator=g).to(dtype)
    k = torch.randn(batch, kv_heads, n, d, generator=g).to(dtype)
    v = torch.randn(batch, kv_heads, n, d, generator=g).to(dtype)
    return q, k, v


def allowed_of(rule, n) -> np.ndarray:
    return dense_numpy(rule, n).astype(bool)


# ------------------------------------------------ every pattern, every size ---
@pytest.mark.parametrize("heads, kv_heads", HEADS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", list(RULES))
def test_dense_backends_equal_reference(name, n, heads, kv_heads):
    rule = RULES[name](n)
    q, k, v = inputs(n, heads, kv_heads)
    ref = reference(q, k, v, allowed_of(rule, n))
    for backend in ("naive", "sdpa_mask"):
        out = K.attention(backend, q, k, v, rule)
        assert out.shape == q.shape and out.dtype == q.dtype, backend
        assert not torch.isnan(out).any(), backend
        np.testing.assert_allclose(out.double().numpy(), ref, atol=ATOL[torch.float32], rtol=0, err_msg=backend)


@pytest.mark.parametrize("name", list(RULES))
def test_eager_flex_equals_reference(name):
    # Eager flex runs the same BlockMask and mask_mod without a C++ compile per case
    # (each takes seconds; compiled flex is covered below on a few rules, with and
    # without GQA). It still traces each new mask_mod (about a second), so it runs at
    # one size with a partial last block, with GQA.
    n = 300
    rule = RULES[name](n)
    q, k, v = inputs(n, 4, 2)
    out = K.attention("flex", q, k, v, rule, compiled=False)
    assert out.shape == q.shape and not torch.isnan(out).any()
    np.testing.assert_allclose(out.numpy(), reference(q, k, v, allowed_of(rule, n)), atol=ATOL[torch.float32], rtol=0)


@pytest.mark.parametrize("n", SIZES)
def test_sdpa_causal_is_causal_attention_whatever_the_rule(n):
    q, k, v = inputs(n, 4, 2)
    out = K.attention("sdpa_causal", q, k, v, M.sliding_window(3))
    ref = reference(q, k, v, allowed_of(M.causal(), n))
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5, rtol=0)
    assert K.computed_rule("sdpa_causal", M.sliding_window(3)).label == "causal"


def test_bfloat16_backends_within_tolerance():
    n, rule = 300, M.local_global(16, [0, 150])
    q, k, v = inputs(n, 4, 2, dtype=torch.bfloat16)
    ref = reference(q, k, v, allowed_of(rule, n))  # float64 from the same bf16 values
    for backend in ("naive", "sdpa_mask"):
        out = K.attention(backend, q, k, v, rule)
        assert out.dtype == torch.bfloat16
        np.testing.assert_allclose(out.double().numpy(), ref, atol=ATOL[torch.bfloat16], rtol=0, err_msg=backend)
    out = K.attention("flex", q, k, v, rule, compiled=False)
    np.testing.assert_allclose(out.double().numpy(), ref, atol=ATOL[torch.bfloat16], rtol=0)


# --------------------------------------------------------- compiled flex ---
COMPILED_CASES = [
    # (rule, n, batch, heads, kv heads), N = 300 = 2·128 + 44 (a partial last block):
    # a window crossing block edges, with GQA; the strict upper triangle, whose last
    # row has no key at all, without GQA. (Each is a C++ compile of several seconds
    # on a cold cache, so they are few.)
    (lambda n: M.sliding_window(37), 300, 2, 4, 2),
    (lambda n: M.not_mask(M.causal()), 300, 1, 2, 2),
]


@pytest.mark.parametrize("make, n, batch, heads, kv_heads", COMPILED_CASES)
def test_compiled_flex_equals_reference(make, n, batch, heads, kv_heads):
    rule = make(n)
    q, k, v = inputs(n, heads, kv_heads, batch=batch)
    out = K.attention("flex", q, k, v, rule)
    np.testing.assert_allclose(out.numpy(), reference(q, k, v, allowed_of(rule, n)), atol=1e-5, rtol=0)
    if shutil.which("g++") or shutil.which("gcc") or shutil.which("c++"):
        # With a C++ compiler present the compiled path must really have run, not the fallback.
        assert K.flex_mode() == "compiled"


def test_recompile_limit_drops_graphs_and_compiles_again(monkeypatch):
    # The graphs of COMPILED_CASES again (inductor's cache has their kernels by now),
    # traced afresh so that the second one is a new entry.
    torch._dynamo.reset()
    K.attention("flex", *inputs(300, 4, 2, batch=2), M.sliding_window(37))
    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda real=torch._dynamo.reset: resets.append(1) or real())
    rule = M.not_mask(M.causal())
    q, k, v = inputs(300, 2, 2)
    with torch._dynamo.config.patch(recompile_limit=1):
        out = K.attention("flex", q, k, v, rule)  # a second graph: over the limit of 1
    assert resets == [1] and K.flex_mode() == "compiled"
    np.testing.assert_allclose(out.numpy(), reference(q, k, v, allowed_of(rule, 300)), atol=1e-5, rtol=0)


def test_flex_falls_back_to_eager_with_a_reason(monkeypatch):
    from torch._inductor.exc import InvalidCxxCompiler

    def broken(*args, **kwargs):
        raise InvalidCxxCompiler()

    monkeypatch.setattr(K, "_compiled_flex", lambda: broken)
    monkeypatch.setattr(K, "_FLEX_STATE", {})
    rule, n = M.sinks(2, 5), 40
    q, k, v = inputs(n, 2, 1)
    out = K.attention("flex", q, k, v, rule)
    assert K.flex_mode().startswith("eager: InvalidCxxCompiler: No working C++ compiler found")
    np.testing.assert_allclose(out.numpy(), reference(q, k, v, allowed_of(rule, n)), atol=1e-5, rtol=0)


# ------------------------------------------------------ fully masked rows ---
def test_rows_without_keys_are_zero_in_every_backend():
    rule, n = M.not_mask(M.causal()), 17  # query i sees keys > i; query 16 sees nothing
    q, k, v = inputs(n, 2, 2)
    assert allowed_of(rule, n).sum(axis=1)[-1] == 0
    prep = K.prepare("naive", rule, n)
    assert prep.empty_rows is not None and prep.empty_rows[:, 0].nonzero().flatten().tolist() == [16]
    for backend in ("naive", "sdpa_mask"):
        out = K.attention(backend, q, k, v, rule)
        assert torch.equal(out[:, :, -1], torch.zeros_like(out[:, :, -1])), backend
        assert out[:, :, :-1].abs().sum() > 0
    out = K.attention("flex", q, k, v, rule, compiled=False)
    assert torch.equal(out[:, :, -1], torch.zeros_like(out[:, :, -1]))


def test_naive_without_fixup_would_give_nan():
    # Why the fix-up exists: softmax over a row of -inf is NaN.
    rule, n = M.not_mask(M.causal()), 5
    q, k, v = inputs(n, 1, 1)
    raw = K.naive_attention(q, k, v, rule.dense(n), empty_rows=None)
    assert torch.isnan(raw[0, 0, -1]).all() and not torch.isnan(raw[0, 0, :-1]).any()


# -------------------------------------------------------------- blocks ---
def test_block_mask_pairs_by_hand():
    # W = 37, N = 300 (blocks of 128, 128, 44): the 3 diagonal blocks and the 2 below them.
    bm = K.build_block_mask(M.sliding_window(37), 300, block=128)
    assert K.block_mask_pairs(bm, 300) == 128 * 128 * 2 + 128 * 128 + 44 * 128 + 44 * 44
    # W = 256, N = 2048: query block i touches blocks i-2 .. i: 1 + 2 + 14·3 = 45 blocks.
    bm = K.build_block_mask(M.sliding_window(256), 2048, block=128)
    assert K.block_mask_pairs(bm, 2048) == 45 * 128 * 128
    # The CPU's blocks of 64: query block i touches i-4 .. i: 1 + 2 + 3 + 4 + 28·5 = 150 blocks.
    bm = K.build_block_mask(M.sliding_window(256), 2048, device="cpu")
    assert bm.BLOCK_SIZE == (64, 64) and K.flex_block("cpu") == 64 and K.flex_block("cuda") == 128
    assert K.block_mask_pairs(bm, 2048) == 150 * 64 * 64


@pytest.mark.parametrize("block", [64, 128])
@pytest.mark.parametrize("n", [1, 17, 64, 300, 1000])
@pytest.mark.parametrize("name", sorted(RULES))
def test_block_mask_from_tiles_equals_flex_own_builder(name, n, block):
    # The CPU path builds BlockMasks from exact tile counts; flex's create_block_mask is the reference.
    from torch.nn.attention.flex_attention import create_block_mask

    rule = RULES[name](n)
    ref = create_block_mask(rule.mask_mod, None, None, n, n, device="cpu", BLOCK_SIZE=block, _compile=False)
    got = K.block_mask_from_tiles(rule, n, block)
    assert got.BLOCK_SIZE == ref.BLOCK_SIZE and got.seq_lengths == ref.seq_lengths == (n, n)
    assert torch.equal(got.to_dense(), ref.to_dense())
    for num, idx, ref_num, ref_idx in ((got.kv_num_blocks, got.kv_indices, ref.kv_num_blocks, ref.kv_indices),
                                       (got.full_kv_num_blocks, got.full_kv_indices, ref.full_kv_num_blocks,
                                        ref.full_kv_indices)):  # fmt: skip
        assert torch.equal(num, ref_num)  # partial blocks, then full ones, per query block
        for row, count in enumerate(num[0, 0].tolist()):
            assert sorted(idx[0, 0, row, :count].tolist()) == sorted(ref_idx[0, 0, row, :count].tolist())


def test_cpu_block_masks_come_from_tiles_and_predicate_rules_from_flex():
    from attn.rules import custom_rule

    assert K.build_block_mask(M.sliding_window(8), 64).kv_indices.dtype == torch.int32
    rule = custom_rule("q >= k and (q - k) % 3 == 0")
    bm = K.build_block_mask(rule, 200, block=64)
    dense = torch.from_numpy(dense_numpy(rule, 200))
    blocks = torch.nn.functional.pad(dense, (0, 56, 0, 56)).reshape(4, 64, 4, 64).any(3).any(1)
    assert torch.equal(bm.to_dense()[0, 0].bool(), blocks)


@pytest.mark.parametrize("block", [64, 128])
@pytest.mark.parametrize("name", ["sliding_window_37", "local_global", "bigbird", "dilated", "document"])
def test_block_mask_matches_exact_tile_counts(name, block):
    n = 300
    rule = RULES[name](n)
    bm = K.build_block_mask(rule, n, block=block)
    ov = tile_overview(rule, n, tile_size=block)
    assert K.block_mask_pairs(bm, n) == int(ov.areas[ov.counts > 0].sum())
    assert int(bm.to_dense().sum()) == int((ov.counts > 0).sum())
    if block == 128:  # the explorer's "blocks run" counts flex's default blocks
        assert int(bm.to_dense().sum()) == mask_stats(rule, n).blocks_touched


# ---------------------------------------------------------- input checks ---
@pytest.mark.parametrize("slab_pairs", [1, 299, 300, 301, 4096, 1 << 24])
@pytest.mark.parametrize("name", sorted(RULES))
def test_dense_mask_built_in_slabs_matches_the_reference(name, slab_pairs):
    n = 300
    rule = RULES[name](n)
    assert K.dense_slab_rows(n, slab_pairs) == min(n, max(1, slab_pairs // n))
    np.testing.assert_array_equal(K.dense_mask(rule, n, slab_pairs=slab_pairs).numpy(), dense_numpy(rule, n))


def test_dense_backends_run_past_the_explorer_dense_limit():
    # Views stop drawing dense matrices at DENSE_MAX_N; kernels are limited by memory only.
    n = M.DENSE_MAX_N + 100
    rule = M.sliding_window(8)
    dense = K.dense_mask(rule, n)
    assert dense.shape == (n, n) and int(dense.sum()) == mask_stats(rule, n).allowed_pairs
    rows = dense[[0, 7, 8, n - 1]]
    for row, qi in zip(rows, (0, 7, 8, n - 1)):
        assert torch.equal(torch.nonzero(row).flatten(), torch.arange(max(0, qi - 7), qi + 1))


def test_dense_masks_refuse_what_memory_cannot_hold(monkeypatch):
    monkeypatch.setattr(K, "available_bytes", lambda device: 2**30)
    with pytest.raises(ValueError, match=r"N = 40000 needs 1\.6 GiB, and this cpu has 1\.0 GiB free\. Use the flex"):
        K.dense_mask(M.sliding_window(8), 40000)
    with pytest.raises(ValueError, match="Use the flex backend"):
        K.prepare("sdpa_mask", M.sliding_window(8), 40000, cached=False)
    # naive's two (B, H, N, N) score tensors: 2 · 1 · 4 · 8192² · 4 bytes = 2 GiB.
    q, k, v = inputs(8192, 4, 4, d=8)
    with pytest.raises(ValueError, match=r"naive attention at N = 8192 holds 2\.0 GiB of scores, and this cpu has 1\.0 GiB"):
        K.attention("naive", q, k, v, M.sliding_window(8))


def test_bad_inputs_raise_plain_value_errors():
    q, k, v = inputs(8, 3, 2)
    with pytest.raises(ValueError, match="multiple of the 2 kv heads"):
        K.attention("naive", q, k, v, M.causal())
    q, k, v = inputs(8, 2, 2)
    with pytest.raises(ValueError, match="Unknown backend 'flash'"):
        K.attention("flash", q, k, v, M.causal())
    with pytest.raises(ValueError, match="4-D"):
        K.attention("naive", q[0], k[0], v[0], M.causal())
    with pytest.raises(ValueError, match="defined for N = 5"):
        K.attention("naive", q, k, v, M.document([2, 3]))
    with pytest.raises(ValueError, match="Unknown dtype"):
        K.check_dtype("int8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            K.check_device("cuda")


def test_cache_tells_apart_rules_with_one_name():
    # MaskRule equality ignores mask_mod, so the cache key must include it.
    n = 24
    a = M.MaskRule("custom", (), M.sliding_window(3).mask_mod)
    b = M.MaskRule("custom", (), M.causal().mask_mod)
    q, k, v = inputs(n, 2, 2)
    out_a = K.attention("sdpa_mask", q, k, v, a)
    out_b = K.attention("sdpa_mask", q, k, v, b)
    np.testing.assert_allclose(out_a.numpy(), reference(q, k, v, allowed_of(M.sliding_window(3), n)), atol=1e-5)
    np.testing.assert_allclose(out_b.numpy(), reference(q, k, v, allowed_of(M.causal(), n)), atol=1e-5)


def test_masks_are_cached_and_bounded():
    K.clear_caches()
    rule, n = M.chunked(8), 32
    q, k, v = inputs(n, 2, 2)
    K.attention("flex", q, k, v, rule, compiled=False)
    K.attention("flex", q, k, v, rule, compiled=False)
    info = K._cached_block_mask.cache_info()
    assert info.hits == 1 and info.misses == 1 and info.maxsize is not None
    assert K._cached_dense.cache_info().maxsize is not None


# ------------------------------------------------------------------ GPU ---
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("name", ["sliding_window_37", "local_global", "bigbird", "document", "no_key_rows"])
def test_gpu_backends_bf16(name):
    n = 300
    rule = RULES[name](n)
    q, k, v = inputs(n, 4, 2, d=64, dtype=torch.bfloat16)
    ref = reference(q, k, v, allowed_of(rule, n))
    for backend in ("naive", "sdpa_mask", "flex"):
        out = K.attention(backend, q.cuda(), k.cuda(), v.cuda(), rule)
        assert out.is_cuda and out.dtype == torch.bfloat16
        np.testing.assert_allclose(out.cpu().double().numpy(), ref, atol=3e-2, rtol=0, err_msg=backend)
    out = K.attention("sdpa_causal", q.cuda(), k.cuda(), v.cuda(), rule)
    np.testing.assert_allclose(
        out.cpu().double().numpy(), reference(q, k, v, allowed_of(M.causal(), n)), atol=3e-2, rtol=0
    )


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("name", sorted(RULES))
def test_gpu_dense_mask_built_on_the_device_in_slabs(name):
    # Past DENSE_MAX_N the dense backends build the mask on the GPU; every rule's mask_mod must run there.
    n = 1000
    rule = RULES[name](n)
    dense = K.dense_mask(rule, n, "cuda", slab_pairs=7 * n)
    assert dense.is_cuda
    np.testing.assert_array_equal(dense.cpu().numpy(), dense_numpy(rule, n))


@pytest.mark.gpu
@cuda
def test_gpu_available_bytes_counts_the_allocators_cache():
    torch.cuda.empty_cache()
    before = K.available_bytes("cuda")
    x = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    assert before - K.available_bytes("cuda") >= 2**30 - 2**25
    del x  # torch keeps the block reserved: the driver does not see it free, the allocator does
    assert torch.cuda.mem_get_info()[0] < before - 2**29
    assert abs(K.available_bytes("cuda") - before) < 2**26
