#!/usr/bin/env python3
"""Dumps SciPy's values for the statistics in lib/stats (test/fixtures/stats-scipy.json).

The vitest file test/stats/stats.test.ts compares memq's own implementations with them.
Regenerate with:  python3 scripts/stats_reference.py > test/fixtures/stats-scipy.json
(SciPy >= 1.7 and NumPy; the committed file was made with SciPy 1.17.1.)
"""
import json

import numpy as np
from scipy import stats

rng = np.random.default_rng(20261202)
out = {"scipy": __import__("scipy").__version__, "t_quantile": [], "t_cdf": [], "welch": [], "mean_ci": []}
for df in [1, 2, 3, 4, 5, 7.5, 9, 10, 29, 100, 1000]:
    for p in [0.6, 0.9, 0.95, 0.975, 0.995, 0.9995]:
        out["t_quantile"].append({"df": df, "p": p, "q": float(stats.t.ppf(p, df))})
for df in [1, 2.5, 4, 12, 60]:
    for t in [-8.0, -2.3, -0.4, 0.0, 0.7, 1.96, 3.1, 25.0]:
        out["t_cdf"].append({"df": df, "t": t, "cdf": float(stats.t.cdf(t, df))})
for i in range(12):
    na, nb = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    a = rng.normal(rng.uniform(0, 1), rng.uniform(0.05, 0.4), na).round(4)
    b = rng.normal(rng.uniform(0, 1), rng.uniform(0.05, 0.4), nb).round(4)
    r = stats.ttest_ind(a, b, equal_var=False)
    va, vb = a.var(ddof=1) / na, b.var(ddof=1) / nb
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    diff = a.mean() - b.mean()
    out["welch"].append({"a": a.tolist(), "b": b.tolist(), "t": float(r.statistic), "p": float(r.pvalue),
                         "df": float(df), "lo": float(diff - half), "hi": float(diff + half)})
for i in range(8):
    n = int(rng.integers(2, 12))
    x = rng.uniform(0, 1, n).round(4)
    lo, hi = stats.t.interval(0.95, n - 1, loc=x.mean(), scale=stats.sem(x))
    out["mean_ci"].append({"x": x.tolist(), "lo": float(lo), "hi": float(hi)})
print(json.dumps(out, indent=1))
