#!/usr/bin/env bash
# memq on a GPU machine, end to end, from the repository root (no Node, no network needed):
#   1. configure + build with CMake (Release, CUDA on, sm_90 by default),
#   2. run the C++ tests (the CUDA ones compare every kernel with its CPU twin),
#   3. benchmark memq's fused search (native/bench/bench_cuda.cpp) against PyTorch
#      (bench/gpu/torch_baseline.py: torch.mm + torch.topk) at equal precision,
#   4. merge both into bench/results/gpu-<device>-<date>.json and print the table.
#
#   bash bench/gpu/run.sh                  # the full grid of the issue (about 10-20 minutes on an H100)
#   MEMQ_BENCH_QUICK=1 bash bench/gpu/run.sh   # N = 1M only, no largest-memory run
# Environment: MEMQ_BUILD_DIR (build-gpu), MEMQ_CUDA_ARCH (90), MEMQ_BENCH_REPS (5),
# MEMQ_BENCH_N / _D / _B / _M / _DTYPE (comma lists), MEMQ_SKIP_TORCH=1, MEMQ_SKIP_TESTS=1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

say() { printf '\n== %s\n' "$*"; }
die() { printf 'bench/gpu/run.sh: %s\n' "$*" >&2; exit 1; }

# ---- tools ---------------------------------------------------------------------------------
command -v cmake >/dev/null || die "cmake not found (need >= 3.18)"
if ! command -v nvcc >/dev/null; then
  if [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="/usr/local/cuda/bin:$PATH"
  else die "nvcc not found (put the CUDA toolkit's bin/ on PATH)"; fi
fi
command -v python3 >/dev/null || die "python3 not found"
command -v nvidia-smi >/dev/null || die "nvidia-smi not found: is this a GPU machine with a driver?"
nvidia-smi -L >/dev/null 2>&1 || die "nvidia-smi sees no GPU"
export CUDACXX="${CUDACXX:-$(command -v nvcc)}"

build="${MEMQ_BUILD_DIR:-build-gpu}"
arch="${MEMQ_CUDA_ARCH:-90}"
reps="${MEMQ_BENCH_REPS:-5}"
if [ "${MEMQ_BENCH_QUICK:-0}" = 1 ]; then def_n=1000000; largest=""; else def_n=1000000,10000000; largest="--largest"; fi
bn="${MEMQ_BENCH_N:-$def_n}"; bd="${MEMQ_BENCH_D:-128,768}"; bb="${MEMQ_BENCH_B:-1,64,1024}"
bm="${MEMQ_BENCH_M:-32,1024}"; bt="${MEMQ_BENCH_DTYPE:-float32,bf16}"

gpu_name="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)"
device_tag="$(printf '%s' "$gpu_name" | tr '[:upper:]' '[:lower:]' | sed -e 's/nvidia//g' -e 's/[^a-z0-9]\{1,\}/-/g' -e 's/^-//' -e 's/-$//')"
date_tag="$(date -u +%Y-%m-%d)"
out_dir="$root/bench/results"
out="$out_dir/gpu-${device_tag}-${date_tag}.json"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"
say "GPU: $gpu_name; nvcc: $(nvcc --version | tail -n1); cmake: $(cmake --version | head -n1)"

# ---- build ---------------------------------------------------------------------------------
say "configure + build ($build, sm_$arch)"
if ! cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMEMQ_CUDA=ON -DMEMQ_TESTS=ON \
     -DCMAKE_CUDA_ARCHITECTURES="$arch" >"$work/configure.log" 2>&1; then
  cat "$work/configure.log" >&2
  die "CMake configuration failed"
fi
grep -E 'memq:' "$work/configure.log" || true
grep -q 'memq: CUDA enabled' "$work/configure.log" || die "CMake did not enable CUDA (see the configure output above)"
cmake --build "$build" -j"$(nproc)"
[ -x "$build/bench_cuda" ] || die "$build/bench_cuda was not built"

# ---- tests ---------------------------------------------------------------------------------
tests="not run"
if [ "${MEMQ_SKIP_TESTS:-0}" != 1 ]; then
  say "C++ tests (ctest: the CUDA tests and the CPU twins they compare with)"
  if (cd "$build" && ctest --output-on-failure --timeout 900 -R 'test_cuda_|test_kernels'); then tests="passed"; else tests="FAILED"; fi
  say "CUDA tests (summary)"
  for t in "$build"/test_cuda_*; do
    [ -x "$t" ] || continue
    "$t" >"$work/$(basename "$t").log" 2>&1 || true
    grep -E 'SKIPPED|FAIL|device:|passed' "$work/$(basename "$t").log" || true
  done
  if cat "$work"/test_cuda_*.log 2>/dev/null | grep -q 'SKIPPED'; then
    tests="$tests (CUDA tests SKIPPED: no device visible to the tests)"
  fi
  echo "tests: $tests"
fi

# ---- benchmarks ----------------------------------------------------------------------------
say "memq bench (bench_cuda)"
memq_rc=0
"$build/bench_cuda" --out "$work/memq.json" --n "$bn" --d "$bd" --b "$bb" --m "$bm" --dtype "$bt" \
  --reps "$reps" $largest | tee "$work/memq.log" || memq_rc=$?
[ "$memq_rc" = 0 ] || echo "bench_cuda exited with status $memq_rc (continuing with the PyTorch baseline)" >&2

torch_arg=()
if [ "${MEMQ_SKIP_TORCH:-0}" != 1 ]; then
  if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    say "PyTorch baseline (torch.mm + torch.topk)"
    py_dtypes="$bt"
    if python3 "$here/torch_baseline.py" --out "$work/torch.json" --n "$bn" --d "$bd" --b "$bb" --m "$bm" \
         --dtype "$py_dtypes" --reps "$reps" | tee "$work/torch.log"; then
      torch_arg=(--torch "$work/torch.json")
    else
      echo "torch_baseline.py failed: the results will have memq rows only" >&2
    fi
  else
    echo "PyTorch with CUDA not available: the results will have memq rows only" >&2
  fi
fi

say "results"
[ -f "$work/memq.json" ] || die "bench_cuda wrote no results (status $memq_rc); see its output above"
python3 "$here/merge.py" --memq "$work/memq.json" ${torch_arg[@]+"${torch_arg[@]}"} --tests "$tests" --out "$out"
echo "results: $out"
case "$tests" in FAILED*) die "tests failed (benchmarks ran anyway; see above)";; esac
[ "$memq_rc" = 0 ] || die "bench_cuda failed with status $memq_rc"
grep -q '"self_test": "passed"' "$work/memq.json" || die "the CUDA self-test failed (see $out)"
