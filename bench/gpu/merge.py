#!/usr/bin/env python3
"""Joins bench_cuda's JSON (memq) with torch_baseline.py's into one results file and prints the table.

Per (dtype, N, d, B, M): both sides' ms and queries/s, the speedup (torch ms / memq ms), and
  B = 1:    % of the measured device-copy bandwidth (memq's cudaMemcpy D2D figure, the roofline
            for reading the keys once: key bytes / time / copy bandwidth), for both sides;
  B = 1024: % of the measured matrix-product rate (torch.mm peak of the same dtype:
            2 B N d / time / peak), for both sides.
memq's float32 rows use 3xTF32 tensor-core products; their % of the float32 (SIMT) torch.mm peak
may therefore exceed 100%.
"""
import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--memq", required=True)
    ap.add_argument("--torch", required=False)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tests", default="not run")
    args = ap.parse_args()
    memq = json.load(open(args.memq))
    torch = json.load(open(args.torch)) if args.torch else None
    copy_gbps = memq.get("copy_gbps")
    peak = (torch or {}).get("mm_peak_tflops", {})
    tkey = {}
    if torch:
        for r in torch["rows"]:
            tkey[(r["dtype"], r["n"], r["d"], r["b"], r["m"])] = r

    def esize(dt):
        return 2 if dt in ("bf16", "fp16") else 4

    def pct_bw(r):
        if r.get("ms") is None or not copy_gbps:
            return None
        return 100.0 * r["n"] * r["d"] * esize(r["dtype"]) / (r["ms"] * 1e-3) / 1e9 / copy_gbps

    def pct_mm(r):
        p = peak.get(r["dtype"])
        if r.get("ms") is None or not p:
            return None
        return 100.0 * 2 * r["b"] * r["n"] * r["d"] / (r["ms"] * 1e-3) / 1e12 / p

    joined = []
    for r in memq["rows"]:
        k = (r["dtype"], r["n"], r["d"], r["b"], r["m"])
        t = tkey.get(k) if "largest" not in (r.get("note") or "") else None
        row = dict(dtype=r["dtype"], n=r["n"], d=r["d"], b=r["b"], m=r["m"],
                   memq_ms=r.get("ms"), memq_qps=r.get("qps"), memq_note=r.get("note", ""),
                   torch_ms=t.get("ms") if t else None, torch_qps=t.get("qps") if t else None,
                   torch_note=t.get("note", "") if t else "")
        row["speedup"] = (row["torch_ms"] / row["memq_ms"]) if row["torch_ms"] and row["memq_ms"] else None
        if r["b"] == 1:
            row["memq_pct_copy_bw"] = pct_bw(r)
            row["torch_pct_copy_bw"] = pct_bw(t) if t else None
        if r["b"] >= 1024:
            row["memq_pct_mm_peak"] = pct_mm(r)
            row["torch_pct_mm_peak"] = pct_mm(t) if t else None
        joined.append(row)

    out = dict(device=memq.get("device"), cc=memq.get("cc"), copy_gbps=copy_gbps, mm_peak_tflops=peak,
               torch_version=(torch or {}).get("torch_version"), torch_allow_tf32=(torch or {}).get("allow_tf32"),
               torch_copy_gbps=(torch or {}).get("copy_gbps"), largest_rows=memq.get("largest_rows"), self_test=memq.get("self_test"),
               tests=args.tests, time=(torch or {}).get("time"), rows=joined)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)

    def f(x, w, p=3):
        return f"{'-':>{w}}" if x is None else f"{x:>{w}.{p}f}"

    print(f"\nmemq vs PyTorch on {out['device']} (copy {copy_gbps or 0:.0f} GB/s; mm peak " +
          ", ".join(f"{k} {v:.0f} TFLOP/s" for k, v in peak.items()) + ")")
    print(f"{'dtype':7} {'N':>9} {'d':>4} {'B':>5} {'M':>5} | {'memq ms':>9} {'torch ms':>9} {'speedup':>7} | "
          f"{'memq q/s':>10} {'torch q/s':>10} | {'%bw memq':>8} {'%bw torch':>9} | {'%mm memq':>8} {'%mm torch':>9}  note")
    for r in joined:
        print(f"{r['dtype']:7} {r['n']:>9} {r['d']:>4} {r['b']:>5} {r['m']:>5} | {f(r['memq_ms'], 9)} "
              f"{f(r['torch_ms'], 9)} {f(r['speedup'], 7, 2)} | {f(r['memq_qps'], 10, 0)} {f(r['torch_qps'], 10, 0)} | "
              f"{f(r.get('memq_pct_copy_bw'), 8, 1)} {f(r.get('torch_pct_copy_bw'), 9, 1)} | "
              f"{f(r.get('memq_pct_mm_peak'), 8, 1)} {f(r.get('torch_pct_mm_peak'), 9, 1)}  "
              f"{(r['memq_note'] + ' ' + r['torch_note']).strip()}")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
