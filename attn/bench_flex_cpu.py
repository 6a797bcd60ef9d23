"""Why flex misses its CPU target on some processors: the register block of torch's CPU flex kernel.

torch 2.13 compiles flex_attention on a CPU into a C++ template
(torch/_inductor/codegen/cpp_flex_attention_template.py). Both of its matrix products, q·kᵀ
and p·v, go through a micro-GEMM with a register block of 1 row × 16 columns, fixed in
`CppFlexAttentionTemplate.micro_gemm_define`. Each query row then reloads (and for q·kᵀ,
re-reduces) the same key tile, so the kernel runs at about half the FLOP rate of SDPA's CPU
kernel.

This experiment recompiles flex with taller register blocks (4, 8 and 16 rows by default) in the same process
as sdpa_mask, checks every output against naive attention, and records the times. It does not
change the `flex` backend: the benchmark measures flex as torch ships it, because that is what a
user of flex gets. It patches a private torch class for the length of one measurement, so it is
pinned to the torch in requirements.txt; `python -m attn.bench_flex_cpu` says so if that class
has changed.

Run: python -m attn.bench_flex_cpu --json assets/bench/flex_cpu_register_block.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import statistics
import warnings

import torch

from . import kernels as K
from . import masks
from .bench import device_name, kernel_times_ms

STOCK_ROWS = 1  # torch 2.13's register block: 1 row × 16 columns
COLUMNS = 16  # one AVX-512 vector of fp32; kept as torch has it
ROUNDS = 5
MAX_ROWS = 32  # 32 accumulator rows already exceed AVX-512's 32 vector registers
MAX_N = 8192  # the naive reference holds N² scores per head


@contextlib.contextmanager
def register_block(rows: int):
    """Compile flex on the CPU with a micro-GEMM register block of `rows` × 16 (1 = torch's own).

    Compiled graphs and inductor's caches are dropped on entry and exit, so each block size is
    compiled afresh and nothing compiled here outlives the block."""
    import torch._inductor.kernel.flex.flex_cpu  # noqa: F401  (imports the template in the right order)
    from torch._inductor.codegen import cpp_flex_attention_template as template
    from torch._inductor.codegen.cpp_gemm_template import CppTemplateKernel, parallel_num_threads
    from torch._inductor.codegen.cpp_micro_gemm import CppMicroGemmFP32Vec
    from torch._inductor.virtualized import V

    cls = template.CppFlexAttentionTemplate
    stock = cls.micro_gemm_define

    def micro_gemm_define(self, kernel_name: str) -> str:
        # The same two micro-GEMMs torch defines (fp32, accumulate in fp32), with `rows` rows.
        def gemm(suffix: str, transpose_b: bool):
            return CppMicroGemmFP32Vec(kernel_name + suffix, self.input_dtype, self.input_dtype, self.accumulate_dtype,
                                       self.accumulate_dtype, template.GemmBlocking(rows, COLUMNS, 1), 1, True,
                                       transpose_b)

        with V.set_graph_handler(V.graph):
            kernel = CppTemplateKernel("cpp_micro_gemm", parallel_num_threads())
            return (gemm("_kernel_micro_gemm", False).codegen_define(kernel)
                    + gemm("_kernel_micro_gemm_transpose_b", True).codegen_define(kernel))

    def forget():
        torch._dynamo.reset()
        K.clear_caches()

    forget()
    try:
        # In-process compiling: a pool of compile workers would share the 2 cores with the timing.
        with torch._inductor.config.patch(force_disable_caches=True, compile_threads=1), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*force_disable_caches.*")
            if rows != STOCK_ROWS:
                cls.micro_gemm_define = micro_gemm_define
            yield
    finally:
        cls.micro_gemm_define = stock
        forget()


def measure(rows_list=(STOCK_ROWS, 4, 8, 16), n: int = 2048, window: int = 256, heads: int = 8, head_dim: int = 64,
            repeats: int = 30, seed: int = 0) -> list[dict]:
    """One row per register block: flex's median time, sdpa_mask's median time measured right after
    it (the reference, in the same run), their ratio, and flex's max error against naive."""
    device = torch.device("cpu")
    rule = masks.sliding_window(window)
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, heads, n, head_dim, generator=g) for _ in range(3))  # (B, H, N, d)
    dense = K.prepare("naive", rule, n)
    reference = K.run(dense, q, k, v)
    sdpa = K.prepare("sdpa_mask", rule, n)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    out = []
    for rows in rows_list:
        with register_block(rows):
            flex = K.prepare("flex", rule, n)
            for _ in range(3):  # the first call compiles
                result = K.run(flex, q, k, v)
            if K.flex_mode() != "compiled":
                raise RuntimeError(f"flex did not compile ({K.flex_mode()}); nothing to compare")
            K.run(sdpa, q, k, v)
            # Alternate the two in rounds, so that both see the same load on a noisy machine.
            flex_times, sdpa_times = [], []
            for _ in range(ROUNDS):
                flex_times += kernel_times_ms(lambda: K.run(flex, q, k, v), device, max(1, repeats // ROUNDS))
                sdpa_times += kernel_times_ms(lambda: K.run(sdpa, q, k, v), device, max(1, repeats // ROUNDS))
        flex_ms, sdpa_ms = statistics.median(flex_times), statistics.median(sdpa_times)
        out.append({
            "register_block": f"{rows}×{COLUMNS}", "rows": rows, "stock": rows == STOCK_ROWS,
            "rule": rule.name, "n": n, "heads": heads, "head_dim": head_dim, "dtype": "float32", "repeats": len(flex_times),
            "flex_ms": round(flex_ms, 3), "sdpa_mask_ms": round(sdpa_ms, 3), "ratio": round(flex_ms / sdpa_ms, 4),
            "max_err_vs_naive": float((result - reference).abs().max()),
            "device_name": device_name(device), "torch": torch.__version__, "date": date,
        })
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m attn.bench_flex_cpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="1,4,8,16", help="register-block rows to compile, comma list (1 = torch's own)")
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--json", help="write the rows here")
    a = p.parse_args(argv)
    try:
        rows_list = tuple(int(r) for r in a.rows.split(","))
    except ValueError:
        p.error(f"--rows must be whole numbers separated by commas, got {a.rows!r}")
    if not all(1 <= r <= MAX_ROWS for r in rows_list):
        p.error(f"--rows must each be within 1..{MAX_ROWS}, got {a.rows!r}")
    if not 1 <= a.n <= MAX_N or a.repeats < ROUNDS:
        p.error(f"--n must be within 1..{MAX_N:,} and --repeats at least {ROUNDS}, got {a.n} and {a.repeats}")
    try:
        rows = measure(rows_list, n=a.n, repeats=a.repeats)
    except (ImportError, AttributeError, TypeError) as e:
        raise SystemExit(f"This experiment patches torch {torch.__version__}'s CPU flex template, which has "
                         f"changed: {e}. It was written for the torch in requirements.txt.")
    for r in rows:
        print(f"register block {r['register_block']:>5}: flex {r['flex_ms']:7.2f} ms, sdpa_mask {r['sdpa_mask_ms']:7.2f} ms, "
              f"ratio {r['ratio']:.2f}, max error vs naive {r['max_err_vs_naive']:.1e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
