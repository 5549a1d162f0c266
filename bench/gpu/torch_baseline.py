#!/usr/bin/env python3
"""PyTorch baseline for bench/gpu/run.sh: torch.mm (as addmm, fused with the key norms) + torch.topk.

For each dtype (float32, bfloat16), N, d, B, M: scores = 2 q.k^T - |k|^2 (one addmm; ranking by it
is ranking by dist2, as memq's gaussian search does), then torch.topk(scores, M, largest=True,
sorted=True). When the B x N score matrix exceeds --score-budget-gib the queries are processed in
chunks (recorded in the row's note), which is what a PyTorch user would have to do.
Also measures the peak matrix-product rate (square torch.mm, per dtype) and the device-copy
bandwidth (clone of a 1 GiB tensor, read + write), and writes one JSON file.
Timing: CUDA events, median of --reps after 2 warm-ups. float32 matmuls run in full float32
(torch.backends.cuda.matmul.allow_tf32 = False, recorded), so precisions match memq's rows.
"""
import argparse
import json
import math
import sys
import time


def parse_list(s):
    return [int(x) for x in s.split(",") if x]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", default="1000000,10000000")
    ap.add_argument("--d", default="128,768")
    ap.add_argument("--b", default="1,64,1024")
    ap.add_argument("--m", default="32,1024")
    ap.add_argument("--dtype", default="float32,bf16")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--score-budget-gib", type=float, default=8.0)
    args = ap.parse_args()

    try:
        import torch
    except ImportError:
        print("torch_baseline: PyTorch is not installed", file=sys.stderr)
        return 3
    if not torch.cuda.is_available():
        print("torch_baseline: torch.cuda.is_available() is False", file=sys.stderr)
        return 3
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    dtypes = {"float32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

    def timed(fn, reps):
        fn()
        fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(reps):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        times.sort()
        return times[len(times) // 2]

    # Copy bandwidth: clone 1 GiB (read + write).
    x = torch.empty(1 << 28, dtype=torch.float32, device=dev)
    x.fill_(1.0)
    best = min(timed(lambda: x.clone(), 1) for _ in range(5))
    copy_gbps = 2 * x.numel() * 4 / (best * 1e-3) / 1e9
    del x
    torch.cuda.empty_cache()

    # Peak matrix-product rate per dtype.
    mm_peak = {}
    for name in args.dtype.split(","):
        dt = dtypes[name]
        s = 8192
        a = torch.randn(s, s, device=dev, dtype=dt)
        b = torch.randn(s, s, device=dev, dtype=dt)
        ms = min(timed(lambda: torch.mm(a, b), 3) for _ in range(3))
        mm_peak[name] = 2 * s ** 3 / (ms * 1e-3) / 1e12
        del a, b
        torch.cuda.empty_cache()
    print(f"torch: copy {copy_gbps:.0f} GB/s; mm peak " +
          ", ".join(f"{k} {v:.1f} TFLOP/s" for k, v in mm_peak.items()), flush=True)

    rows = []
    budget = args.score_budget_gib * (1 << 30)
    print(f"{'dtype':8} {'N':>10} {'d':>5} {'B':>5} {'M':>5} {'ms':>10} {'queries/s':>12} note", flush=True)
    for name in args.dtype.split(","):
        dt = dtypes[name]
        esize = torch.tensor([], dtype=dt).element_size()
        for n in parse_list(args.n):
            for d in parse_list(args.d):
                try:
                    keys = torch.randn(n, d, device=dev, dtype=dt)
                    neg_kn = -(keys.float() ** 2).sum(1).to(dt).unsqueeze(0)  # 1 x N, broadcast by addmm
                except torch.cuda.OutOfMemoryError as e:
                    for b in parse_list(args.b):
                        for m in parse_list(args.m):
                            rows.append(dict(dtype=name, n=n, d=d, b=b, m=m, ms=None, qps=None,
                                             note=f"error: keys do not fit: {e}".splitlines()[0]))
                    torch.cuda.empty_cache()
                    continue
                for b in parse_list(args.b):
                    q = torch.randn(b, d, device=dev, dtype=dt)
                    chunk = max(1, min(b, int(budget // (n * esize))))
                    for m in parse_list(args.m):
                        def run():
                            for i in range(0, b, chunk):
                                s = torch.addmm(neg_kn, q[i:i + chunk], keys.t(), beta=1, alpha=2)
                                torch.topk(s, m, dim=1, largest=True, sorted=True)
                        note = "" if chunk >= b else f"queries in chunks of {chunk}"
                        try:
                            ms = timed(run, args.reps)
                            row = dict(dtype=name, n=n, d=d, b=b, m=m, ms=ms, qps=b / (ms * 1e-3), note=note)
                        except torch.cuda.OutOfMemoryError as e:
                            row = dict(dtype=name, n=n, d=d, b=b, m=m, ms=None, qps=None,
                                       note=f"error: out of memory: {e}".splitlines()[0])
                            torch.cuda.empty_cache()
                        rows.append(row)
                        msv = row["ms"] if row["ms"] is not None else math.nan
                        qv = row["qps"] if row["qps"] is not None else math.nan
                        print(f"{name:8} {n:>10} {d:>5} {b:>5} {m:>5} {msv:>10.3f} {qv:>12.0f} {row['note']}", flush=True)
                    del q
                del keys, neg_kn
                torch.cuda.empty_cache()

    out = dict(impl="torch", torch_version=torch.__version__, device=props.name,
               allow_tf32=torch.backends.cuda.matmul.allow_tf32, copy_gbps=copy_gbps, mm_peak_tflops=mm_peak,
               time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), rows=rows)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
