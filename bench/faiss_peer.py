#!/usr/bin/python3
# FAISS peer of bench/retrieval.ts (run by it as a subprocess; Debian's python3-faiss): the same
# keys and queries, read from float32 files; exact flat L2 search and the scalar quantisers
# (SQfp16, SQ8) on all cores. Prints one JSON object: faiss version and build, and per index and
# batch size the best seconds per call (one warm-up, >= 2 calls and >= min_s seconds) and the ids.
#   faiss_peer.py KEYS QUERIES N D BS M [MIN_S]
import json, sys, time

import faiss
import numpy as np

keys_f, q_f, n, d, bs, m = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
min_s = float(sys.argv[7]) if len(sys.argv) > 7 else 1.0
bs = [int(x) for x in bs.split(",")]
keys = np.fromfile(keys_f, dtype=np.float32).reshape(n, d)
qs = np.fromfile(q_f, dtype=np.float32).reshape(-1, d)

def build(kind):
    if kind == "IndexFlatL2":
        ix = faiss.IndexFlatL2(d)
    else:
        qt = faiss.ScalarQuantizer.QT_fp16 if kind == "SQfp16" else faiss.ScalarQuantizer.QT_8bit
        ix = faiss.IndexScalarQuantizer(d, qt, faiss.METRIC_L2)
        ix.train(keys)
    ix.add(keys)
    return ix

out = {"version": faiss.__version__, "omp_threads": faiss.omp_get_max_threads(), "rows": []}
try:
    out["compile_options"] = faiss.get_compile_options()
except Exception as e:  # older builds
    out["compile_options"] = "unknown (%s)" % e
for kind in ["IndexFlatL2", "SQfp16", "SQ8"]:
    t0 = time.perf_counter()
    ix = build(kind)
    build_s = time.perf_counter() - t0
    for b in bs:
        q = np.ascontiguousarray(qs[:b])
        ix.search(q, m)
        best, reps, t_start = 1e30, 0, time.perf_counter()
        while reps < 2 or time.perf_counter() - t_start < min_s:
            t1 = time.perf_counter()
            _, ids = ix.search(q, m)
            best = min(best, time.perf_counter() - t1)
            reps += 1
        out["rows"].append({"index": kind, "b": b, "s": best, "reps": reps, "build_s": build_s, "ids": ids.astype(int).ravel().tolist()})
print(json.dumps(out))
