"""The register-block experiment (attn/bench_flex_cpu.py): it must really compile flex with the
asked-for micro-GEMM, stay exact, and leave torch's own template as it found it."""

import pytest
import torch._inductor.kernel.flex.flex_cpu  # noqa: F401  (imports the template in torch's order)
from torch._inductor.codegen import cpp_flex_attention_template as template
from torch._inductor.codegen import cpp_micro_gemm

from attn import bench_flex_cpu, kernels


def test_taller_register_block_is_compiled_exact_and_undone(monkeypatch):
    blockings = []
    real = cpp_micro_gemm.CppMicroGemmFP32Vec

    def spy(*args, **kwargs):
        blockings.append(args[5])  # register_blocking, as micro_gemm_define passes it
        return real(*args, **kwargs)

    monkeypatch.setattr(cpp_micro_gemm, "CppMicroGemmFP32Vec", spy)
    stock = template.CppFlexAttentionTemplate.micro_gemm_define
    # N = 130: the last query tile has 2 rows, fewer than the 8-row block (the tail path).
    (row,) = bench_flex_cpu.measure((8,), n=130, window=48, heads=2, head_dim=64, repeats=5)

    assert {(b.block_m, b.block_n) for b in blockings} == {(8, 16)}  # both GEMMs, 8 rows, none stock
    assert row["register_block"] == "8×16" and not row["stock"]
    assert row["max_err_vs_naive"] < 1e-5
    assert row["flex_ms"] > 0 and row["sdpa_mask_ms"] > 0
    assert row["ratio"] == pytest.approx(row["flex_ms"] / row["sdpa_mask_ms"], rel=0.01)  # times are rounded to µs
    assert template.CppFlexAttentionTemplate.micro_gemm_define is stock
    assert kernels.flex_mode() == "compiled"


@pytest.mark.parametrize("args, message", [
    (["--rows", "x"], "--rows must be whole numbers separated by commas, got 'x'"),
    (["--rows", "0,4"], "--rows must each be within 1..32, got '0,4'"),
    (["--n", "0"], "--n must be within 1..8,192"),
    (["--repeats", "2"], "--repeats at least 5"),
])
def test_bad_arguments_are_refused_before_anything_compiles(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench_flex_cpu.main(args)
    assert e.value.code == 2 and message in capsys.readouterr().err
