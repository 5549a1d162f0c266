import { describe, expect, it } from 'vitest';
import * as fs from 'fs';
import * as path from 'path';
import {
  bootstrapRelativeImprovement,
  meanInterval,
  pairedBootstrapDifference,
  quantileSorted,
  studentTCdf,
  studentTQuantile,
  welchTest,
  type SeedGames,
} from '../../lib/stats/index';
import { Mulberry32 } from '../../lib/policy/rng';

// Values dumped by SciPy (scripts/stats_reference.py).
const ref = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'stats-scipy.json'), 'utf8'));

const rel = (x: number, y: number) => Math.abs(x - y) / Math.max(1e-300, Math.abs(y));

describe('Student t against SciPy', () => {
  it('quantiles agree to 1e-9 relative', () => {
    for (const r of ref.t_quantile) expect(rel(studentTQuantile(r.p, r.df), r.q)).toBeLessThan(1e-9);
    for (const r of ref.t_quantile) expect(rel(studentTQuantile(1 - r.p, r.df), -r.q)).toBeLessThan(1e-9);
  });
  it('the CDF agrees to 1e-11 absolute', () => {
    for (const r of ref.t_cdf) expect(Math.abs(studentTCdf(r.t, r.df) - r.cdf)).toBeLessThan(1e-11);
  });
  it('refuses bad arguments naming them', () => {
    expect(() => studentTQuantile(1, 3)).toThrow(RangeError);
    expect(() => studentTQuantile(0.5, 0)).toThrow(/df must be > 0/);
  });
});

describe('intervals and tests against SciPy', () => {
  it('the t interval of a mean', () => {
    for (const r of ref.mean_ci) {
      const ci = meanInterval(r.x);
      expect(Math.abs(ci.lo - r.lo)).toBeLessThan(1e-10);
      expect(Math.abs(ci.hi - r.hi)).toBeLessThan(1e-10);
    }
    const one = meanInterval([0.4]);
    expect(one.mean).toBe(0.4);
    expect(Number.isNaN(one.lo)).toBe(true);
  });
  it("Welch's t-test: statistic, df, p-value and the interval of the difference", () => {
    for (const r of ref.welch) {
      const w = welchTest(r.a, r.b);
      expect(rel(w.t, r.t)).toBeLessThan(1e-10);
      expect(rel(w.df, r.df)).toBeLessThan(1e-10);
      expect(Math.abs(w.p - r.p)).toBeLessThan(1e-10);
      expect(Math.abs(w.lo - r.lo)).toBeLessThan(1e-10);
      expect(Math.abs(w.hi - r.hi)).toBeLessThan(1e-10);
    }
  });
  it('Welch with zero variance on both sides is the degenerate test, and needs two values a side', () => {
    expect(welchTest([1, 1], [1, 1]).p).toBe(1);
    expect(welchTest([1, 1], [0, 0]).p).toBe(0);
    expect(() => welchTest([1], [1, 2])).toThrow(/at least 2 values/);
    expect(() => welchTest([1, NaN], [1, 2])).toThrow(/a\[1\] must be finite/);
  });
  it('quantiles interpolate like NumPy', () => {
    expect(quantileSorted([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantileSorted([0, 10], 0.25)).toBe(2.5);
    expect(quantileSorted([5], 0.9)).toBe(5);
  });
});

/**
 * The exact two-stage bootstrap distribution of a per-seed-mean statistic, by enumerating every
 * equally likely draw (seeds with replacement, then games inside each drawn seed). Returns the
 * list of resampled seed means (one per equally likely draw).
 */
function exactSeedMeans(groups: number[][]): number[] {
  const S = groups.length;
  let draws: { sum: number }[] = [{ sum: 0 }];
  for (let i = 0; i < S; i++) {
    const next: { sum: number }[] = [];
    for (const d of draws) {
      for (let s = 0; s < S; s++) {
        const g = groups[s];
        const G = g.length;
        // every ordered game draw of length G
        const idx = new Array(G).fill(0);
        for (;;) {
          let m = 0;
          for (const k of idx) m += g[k];
          next.push({ sum: d.sum + m / G });
          let p = 0;
          while (p < G && ++idx[p] === G) idx[p++] = 0;
          if (p === G) break;
        }
      }
    }
    draws = next;
  }
  return draws.map((d) => d.sum / S);
}

function exactCdf(values: number[], x: number, strict: boolean): number {
  let c = 0;
  for (const v of values) if (strict ? v < x - 1e-12 : v <= x + 1e-12) c++;
  return c / values.length;
}

describe('bootstrap intervals against the exact bootstrap distribution', () => {
  it('relative improvement: the percentile ends are quantiles of the exact two-stage distribution', () => {
    const a = [
      [1, 0.5],
      [1, 0],
    ];
    const b = [
      [0, 1],
      [0.5, 0.25],
    ];
    const ea = exactSeedMeans(a);
    const eb = exactSeedMeans(b);
    const ratios: number[] = [];
    for (const x of ea) for (const y of eb) if (y !== 0) ratios.push(x / y - 1);
    const r = bootstrapRelativeImprovement(a, b, { resamples: 20000, seed: 3 });
    expect(r.estimate).toBeCloseTo(0.625 / 0.4375 - 1, 12);
    // A quantile q of the exact distribution satisfies P(X < q) ≤ 0.025 ≤ P(X ≤ q); Monte Carlo
    // error over 20,000 resamples: allow 0.006 on each side (> 4 standard errors).
    expect(exactCdf(ratios, r.lo, true)).toBeLessThanOrEqual(0.025 + 0.006);
    expect(exactCdf(ratios, r.lo, false)).toBeGreaterThanOrEqual(0.025 - 0.006);
    expect(exactCdf(ratios, r.hi, true)).toBeLessThanOrEqual(0.975 + 0.006);
    expect(exactCdf(ratios, r.hi, false)).toBeGreaterThanOrEqual(0.975 - 0.006);
    // The share of draws with a zero baseline is counted, not hidden.
    const zeroShare = eb.filter((y) => y === 0).length / eb.length;
    expect(Math.abs(r.undefinedResamples / r.resamples - zeroShare)).toBeLessThan(0.01);
  });

  it('paired difference: interval ends and the p-value against exact enumeration', () => {
    const a = [
      [1, 1, 0],
      [1, 0, 1],
    ];
    const b = [
      [0, 1, 0],
      [1, 0, 0],
    ];
    const d = a.map((g, s) => g.map((x, k) => x - b[s][k]));
    const exact = exactSeedMeans(d);
    const r = pairedBootstrapDifference(a, b, { resamples: 20000, seed: 5 });
    expect(r.estimate).toBeCloseTo(2 / 3 - 1 / 3, 12);
    expect(exactCdf(exact, r.lo, true)).toBeLessThanOrEqual(0.025 + 0.006);
    expect(exactCdf(exact, r.lo, false)).toBeGreaterThanOrEqual(0.025 - 0.006);
    expect(exactCdf(exact, r.hi, false)).toBeGreaterThanOrEqual(0.975 - 0.006);
    const pExact = Math.min(1, 2 * Math.min(exactCdf(exact, 0, false), 1 - exactCdf(exact, 0, true)));
    expect(Math.abs(r.p - pExact)).toBeLessThan(0.015);
  });

  it('a paired difference that holds on every game has p = 0; identical agents have p = 1', () => {
    const rng = new Mulberry32(9);
    const b: SeedGames = Array.from({ length: 5 }, () => Array.from({ length: 40 }, () => (rng.next() < 0.3 ? 1 : 0)));
    const a: SeedGames = b.map((g) => Array.from(g, (x) => x + 0.5));
    expect(pairedBootstrapDifference(a, b, { resamples: 1000 }).p).toBe(0);
    expect(pairedBootstrapDifference(b, b, { resamples: 1000 }).p).toBe(1);
  });

  it('is reproducible from its seed and refuses mismatched games', () => {
    const a = [[1, 0, 1, 1]];
    const b = [[0, 0, 1, 0]];
    expect(bootstrapRelativeImprovement(a, b, { seed: 4 })).toEqual(bootstrapRelativeImprovement(a, b, { seed: 4 }));
    expect(() => pairedBootstrapDifference([[1, 0]], [[1]])).toThrow(/same games/);
    expect(() => bootstrapRelativeImprovement([], b)).toThrow(/at least one seed/);
  });
});
