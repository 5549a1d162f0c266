#!/usr/bin/env bash
# The transformer engine on a GPU machine (issue #20), end to end, from the repository root; no
# Node and no network needed (CMake, nvcc, Python with torch + transformers + peft):
#   1. configure + build with CMake (Release, CUDA on, sm_90 by default): the LLM tests and the
#      C++ bench only,
#   2. run test_llm_cuda (every CUDA op and a whole LoRA step against the CPU engine),
#   3. memq: LoRA training tokens/s and MFU on random models with the shapes of Qwen2.5-0.5B and
#      -1.5B at sequence 512, batch filling the device (native/bench/bench_llm_cuda.cpp), and
#      scoring (prompt once + candidates),
#   4. PyTorch + PEFT eager on the same GPU, same shapes, batch, loss and optimizer
#      (bench/gpu/llm_torch.py), merged with memq's numbers into one JSON under $OUT
#      (bench/results when $OUT is unset) and a table.
# Sized for about 10 minutes on an H100/H200 (the build is most of it).
#
#   bash bench/gpu/llm.sh
#   MEMQ_LLM_QUICK=1 bash bench/gpu/llm.sh     # a tiny model only (minutes; what a CPU-only machine can start)
# Environment: OUT, MEMQ_BUILD_DIR (build-gpu-llm), MEMQ_CUDA_ARCH (90), MEMQ_LLM_MODELS (0.5b,1.5b),
#   MEMQ_LLM_SEQ (512), MEMQ_LLM_BATCH (auto | N), MEMQ_LLM_STEPS (5), MEMQ_LLM_PRECISION (bf16 | fp32),
#   MEMQ_LLM_R (8), MEMQ_LLM_TARGETS (q_proj,v_proj), MEMQ_LLM_ATTN (sdpa | eager, PyTorch's attention),
#   MEMQ_SKIP_TORCH=1, MEMQ_SKIP_TESTS=1, MEMQ_BUILD_JOBS (nproc).
# Exit status: 0 all ran and the tests passed; 3 no usable GPU (the build and the device-free
# tests still ran; the JSON says why); 1 anything else failed (the JSON has what ran).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

say() { printf '\n== %s\n' "$*"; }
die() { printf 'bench/gpu/llm.sh: %s\n' "$*" >&2; exit 1; }

# ---- tools ---------------------------------------------------------------------------------
command -v cmake >/dev/null || die "cmake not found (need >= 3.18)"
if ! command -v nvcc >/dev/null; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"
  else die "nvcc not found (put the CUDA toolkit's bin/ on PATH)"; fi
fi
command -v python3 >/dev/null || die "python3 not found"
export CUDACXX="${CUDACXX:-$(command -v nvcc)}"
gpu_name="none"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  gpu_name="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)"
fi

build="${MEMQ_BUILD_DIR:-build-gpu-llm}"
arch="${MEMQ_CUDA_ARCH:-90}"
jobs="${MEMQ_BUILD_JOBS:-$(nproc)}"
models="${MEMQ_LLM_MODELS:-0.5b,1.5b}"
[ "${MEMQ_LLM_QUICK:-0}" = 1 ] && models=tiny
seq="${MEMQ_LLM_SEQ:-512}"; batch="${MEMQ_LLM_BATCH:-auto}"; steps="${MEMQ_LLM_STEPS:-5}"
precision="${MEMQ_LLM_PRECISION:-bf16}"; r="${MEMQ_LLM_R:-8}"; targets="${MEMQ_LLM_TARGETS:-q_proj,v_proj}"
attn="${MEMQ_LLM_ATTN:-sdpa}"

device_tag="$(printf '%s' "$gpu_name" | tr '[:upper:]' '[:lower:]' | sed -e 's/nvidia//g' -e 's/[^a-z0-9]\{1,\}/-/g' -e 's/^-//' -e 's/-$//')"
out_dir="${OUT:-$root/bench/results}"
mkdir -p "$out_dir"
out="$out_dir/llm-gpu-${device_tag:-none}-$(date -u +%Y-%m-%d).json"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
say "GPU: $gpu_name; nvcc: $(nvcc --version | tail -n1); cmake: $(cmake --version | head -n1); python: $(python3 --version 2>&1)"

# ---- build ---------------------------------------------------------------------------------
say "configure + build ($build, sm_$arch, $jobs jobs)"
t0=$(date +%s)
if ! cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMEMQ_CUDA=ON -DMEMQ_TESTS=ON \
     -DCMAKE_CUDA_ARCHITECTURES="$arch" >"$work/configure.log" 2>&1; then
  cat "$work/configure.log" >&2
  die "CMake configuration failed"
fi
grep -E 'memq:' "$work/configure.log" || true
grep -q 'memq: CUDA enabled' "$work/configure.log" || die "CMake did not enable CUDA (see the configure output above)"
cmake --build "$build" -j"$jobs" --target test_llm_cuda bench_llm_cuda
[ -x "$build/bench_llm_cuda" ] || die "$build/bench_llm_cuda was not built"
echo "build: $(( $(date +%s) - t0 )) s"

# ---- tests ---------------------------------------------------------------------------------
tests="not run"
if [ "${MEMQ_SKIP_TESTS:-0}" != 1 ]; then
  say "test_llm_cuda (the CUDA engine against the CPU engine)"
  if timeout 600 "$build/test_llm_cuda" 2>&1 | tee "$work/test_llm_cuda.log"; then tests="passed"; else tests="FAILED"; fi
  if grep -q 'SKIPPED: no CUDA device' "$work/test_llm_cuda.log"; then
    tests="$tests (device tests $(grep -m1 'SKIPPED: no CUDA device' "$work/test_llm_cuda.log" | sed 's/.*SKIPPED: /SKIPPED: /'))"
  fi
  echo "tests: $tests"
fi

# ---- memq ----------------------------------------------------------------------------------
say "memq: bench_llm_cuda ($models, seq $seq, batch $batch, $precision, LoRA r=$r on $targets)"
memq_rc=0
timeout 900 "$build/bench_llm_cuda" --out "$work/memq.json" --models "$models" --seq "$seq" --batch "$batch" \
  --steps "$steps" --precision "$precision" --r "$r" --targets "$targets" || memq_rc=$?
[ -f "$work/memq.json" ] || die "bench_llm_cuda wrote no results (status $memq_rc)"

# ---- PyTorch + PEFT, merge -------------------------------------------------------------------
say "PyTorch + PEFT (eager, attention: $attn) and the comparison"
skip=()
[ "${MEMQ_SKIP_TORCH:-0}" = 1 ] && skip=(--skip-torch)
[ "$memq_rc" = 3 ] && skip=(--skip-torch)  # no GPU: nothing to compare
timeout 900 python3 "$here/llm_torch.py" --memq "$work/memq.json" --out "$out" --steps "$steps" --attn "$attn" \
  --tests "$tests" ${skip[@]+"${skip[@]}"} || die "llm_torch.py failed (memq's numbers: $work/memq.json)"
echo "results: $out"

case "$tests" in FAILED*) die "test_llm_cuda failed (benchmarks ran anyway; see above)";; esac
if [ "$memq_rc" = 3 ]; then
  echo "bench/gpu/llm.sh: no usable CUDA device; built and ran the device-free tests only (see $out)" >&2
  exit 3
fi
[ "$memq_rc" = 0 ] || die "bench_llm_cuda failed with status $memq_rc"
grep -q '"self_test": "passed"' "$work/memq.json" || die "the LLM self-test failed (see $out)"
