/**
 * Statistics for experiment tables: means with Student-t confidence intervals over seeds,
 * Welch's unequal-variance t-test, and bootstrap intervals (over seeds and over the games
 * inside each seed) for the relative improvement of one agent over another and for a paired
 * difference on the same games.
 *
 * Everything here is plain float64 JavaScript with no dependencies. The special functions are
 * the textbook ones (log-gamma by Lanczos, the regularised incomplete beta by its continued
 * fraction, evaluated with the modified Lentz method); the tests compare them with values
 * dumped by SciPy.
 */
import { Mulberry32 } from '../policy/rng';

/** Arithmetic mean (NaN for an empty sample). */
export function mean(xs: ArrayLike<number>): number {
  if (xs.length === 0) return NaN;
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i];
  return s / xs.length;
}

/** Sample variance with the n − 1 denominator (NaN below two values). */
export function sampleVariance(xs: ArrayLike<number>): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const m = mean(xs);
  let s = 0;
  for (let i = 0; i < n; i++) s += (xs[i] - m) ** 2;
  return s / (n - 1);
}

// ---------------------------------------------------------------------------------------------
// Special functions

const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];

/** log Γ(x) for x > 0 (Lanczos, g = 7; relative error ~1e-15). */
export function logGamma(x: number): number {
  if (!(x > 0)) throw new RangeError(`logGamma: x must be > 0, got ${x}`);
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const z = x - 1;
  let a = LANCZOS[0];
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += LANCZOS[i] / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the incomplete beta function (modified Lentz). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 10000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) return h;
  }
  return h;
}

/** The regularised incomplete beta function I_x(a, b), for a, b > 0 and 0 ≤ x ≤ 1. */
export function regularizedBeta(x: number, a: number, b: number): number {
  if (!(a > 0) || !(b > 0)) throw new RangeError(`regularizedBeta: a and b must be > 0, got ${a}, ${b}`);
  if (!(x >= 0 && x <= 1)) throw new RangeError(`regularizedBeta: x must be in [0, 1], got ${x}`);
  if (x === 0 || x === 1) return x;
  const lnFront = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log1p(-x);
  // The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise.
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(lnFront) * betaContinuedFraction(a, b, x)) / a;
  return 1 - (Math.exp(lnFront) * betaContinuedFraction(b, a, 1 - x)) / b;
}

/** P(T ≤ t) for Student's t with df > 0 degrees of freedom (df may be fractional: Welch). */
export function studentTCdf(t: number, df: number): number {
  if (!(df > 0)) throw new RangeError(`studentTCdf: df must be > 0, got ${df}`);
  if (Number.isNaN(t)) return NaN;
  if (t === Infinity) return 1;
  if (t === -Infinity) return 0;
  const x = df / (df + t * t);
  const tail = 0.5 * regularizedBeta(x, df / 2, 0.5); // P(T > |t|)
  return t > 0 ? 1 - tail : tail;
}

/** The p-quantile of Student's t with df degrees of freedom (0 < p < 1). */
export function studentTQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`studentTQuantile: p must be in (0, 1), got ${p}`);
  if (!(df > 0)) throw new RangeError(`studentTQuantile: df must be > 0, got ${df}`);
  if (p === 0.5) return 0;
  if (p < 0.5) return -studentTQuantile(1 - p, df);
  // Bracket, then bisect on the monotone CDF (60 halvings after the bracket: ~1e-15 relative).
  let lo = 0;
  let hi = 1;
  while (studentTCdf(hi, df) < p) {
    lo = hi;
    hi *= 2;
    if (hi > 1e300) return Infinity;
  }
  for (let i = 0; i < 200; i++) {
    const mid = 0.5 * (lo + hi);
    if (mid === lo || mid === hi) break;
    if (studentTCdf(mid, df) < p) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

// ---------------------------------------------------------------------------------------------
// Intervals and tests

export interface MeanInterval {
  n: number;
  mean: number;
  /** Sample standard deviation (NaN for n < 2). */
  sd: number;
  /** Lower and upper ends of the interval (NaN for n < 2: one seed gives no interval). */
  lo: number;
  hi: number;
  /** hi − mean. */
  halfWidth: number;
  level: number;
}

function checkSample(name: string, xs: ArrayLike<number>): void {
  for (let i = 0; i < xs.length; i++) {
    if (!Number.isFinite(xs[i])) throw new RangeError(`${name}[${i}] must be finite, got ${xs[i]}`);
  }
}

function checkLevel(level: number): void {
  if (!(level > 0 && level < 1)) throw new RangeError(`level must be in (0, 1), got ${level}`);
}

/** Mean with the Student-t confidence interval (the usual interval over seeds). */
export function meanInterval(xs: ArrayLike<number>, level = 0.95): MeanInterval {
  checkSample('xs', xs);
  checkLevel(level);
  const n = xs.length;
  const m = mean(xs);
  const sd = Math.sqrt(sampleVariance(xs));
  if (n < 2) return { n, mean: m, sd, lo: NaN, hi: NaN, halfWidth: NaN, level };
  const half = (studentTQuantile(0.5 + level / 2, n - 1) * sd) / Math.sqrt(n);
  return { n, mean: m, sd, lo: m - half, hi: m + half, halfWidth: half, level };
}

export interface WelchResult {
  /** mean(a) − mean(b). */
  diff: number;
  t: number;
  /** Welch–Satterthwaite degrees of freedom. */
  df: number;
  /** Two-sided p-value of H0: equal means. */
  p: number;
  /** Confidence interval of the difference. */
  lo: number;
  hi: number;
  level: number;
}

/**
 * Welch's t-test (unequal variances) of mean(a) − mean(b), two-sided, with the interval of
 * the difference. Needs two values on each side. Where both samples have zero variance the
 * test is degenerate: p is 1 for equal means and 0 otherwise, and the interval is the point.
 */
export function welchTest(a: ArrayLike<number>, b: ArrayLike<number>, level = 0.95): WelchResult {
  checkSample('a', a);
  checkSample('b', b);
  checkLevel(level);
  if (a.length < 2 || b.length < 2) {
    throw new RangeError(`welchTest needs at least 2 values per sample, got ${a.length} and ${b.length}`);
  }
  const va = sampleVariance(a) / a.length;
  const vb = sampleVariance(b) / b.length;
  const diff = mean(a) - mean(b);
  const se2 = va + vb;
  if (se2 === 0) {
    return { diff, t: diff === 0 ? 0 : Math.sign(diff) * Infinity, df: NaN, p: diff === 0 ? 1 : 0, lo: diff, hi: diff, level };
  }
  const se = Math.sqrt(se2);
  const df = (se2 * se2) / ((va * va) / (a.length - 1) + (vb * vb) / (b.length - 1));
  const t = diff / se;
  const p = Math.min(1, 2 * studentTCdf(-Math.abs(t), df));
  const half = studentTQuantile(0.5 + level / 2, df) * se;
  return { diff, t, df, p, lo: diff - half, hi: diff + half, level };
}

/** The q-quantile of sorted values, linear between order statistics (NumPy's default). */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const h = (n - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

/** Per-seed results of one agent on one split: outcomes[s][g] is game g of seed s (e.g. 0/1). */
export type SeedGames = ArrayLike<number>[];

export interface BootstrapOptions {
  /** Number of bootstrap resamples (default 10,000). */
  resamples?: number;
  /** Interval level (default 0.95). */
  level?: number;
  /** RNG seed, so that a table is reproducible (default 1). */
  seed?: number;
}

export interface BootstrapInterval {
  /** The statistic on the data as observed. */
  estimate: number;
  /** Percentile interval. */
  lo: number;
  hi: number;
  level: number;
  resamples: number;
  /** Resamples whose statistic was undefined (e.g. a zero baseline) and were left out. */
  undefinedResamples: number;
}

export interface PairedBootstrapResult extends BootstrapInterval {
  /** Two-sided bootstrap p-value of H0: no difference (2 × the smaller tail share, at most 1). */
  p: number;
}

function checkGroups(name: string, groups: SeedGames): void {
  if (!Array.isArray(groups) || groups.length === 0) throw new RangeError(`${name} must hold at least one seed`);
  groups.forEach((g, s) => {
    if (g.length === 0) throw new RangeError(`${name}[${s}] must hold at least one game`);
    checkSample(`${name}[${s}]`, g);
  });
}

/** Mean over seeds of each seed's mean over its games (each seed counts once). */
export function seedMean(groups: SeedGames): number {
  let s = 0;
  for (const g of groups) s += mean(g);
  return s / groups.length;
}

/** Draws a two-stage resample: seeds with replacement, then games with replacement inside each. */
function resampleSeedMean(groups: SeedGames, rng: Mulberry32): number {
  let total = 0;
  for (let i = 0; i < groups.length; i++) {
    const g = groups[rng.int(groups.length)];
    let s = 0;
    for (let j = 0; j < g.length; j++) s += g[rng.int(g.length)];
    total += s / g.length;
  }
  return total / groups.length;
}

function percentileInterval(stats: number[], level: number): [number, number] {
  stats.sort((x, y) => x - y);
  return [quantileSorted(stats, (1 - level) / 2), quantileSorted(stats, (1 + level) / 2)];
}

/**
 * Relative improvement of agent A over agent B, mean(A)/mean(B) − 1, with a percentile
 * bootstrap interval that resamples seeds and, inside each seed, games (two-stage bootstrap),
 * independently for the two agents. Resamples where mean(B) is 0 are left out and counted.
 */
export function bootstrapRelativeImprovement(a: SeedGames, b: SeedGames, opts: BootstrapOptions = {}): BootstrapInterval {
  checkGroups('a', a);
  checkGroups('b', b);
  const resamples = opts.resamples ?? 10000;
  const level = opts.level ?? 0.95;
  checkLevel(level);
  if (!Number.isInteger(resamples) || resamples < 100) throw new RangeError(`resamples must be an integer >= 100, got ${resamples}`);
  const rng = new Mulberry32(opts.seed ?? 1);
  const mb = seedMean(b);
  const estimate = mb === 0 ? NaN : seedMean(a) / mb - 1;
  const stats: number[] = [];
  let undef = 0;
  for (let r = 0; r < resamples; r++) {
    const ra = resampleSeedMean(a, rng);
    const rb = resampleSeedMean(b, rng);
    if (rb === 0) undef++;
    else stats.push(ra / rb - 1);
  }
  const [lo, hi] = stats.length ? percentileInterval(stats, level) : [NaN, NaN];
  return { estimate, lo, hi, level, resamples, undefinedResamples: undef };
}

/**
 * Paired bootstrap of mean(A) − mean(B) when both agents played the same games under the same
 * seeds: a[s][g] and b[s][g] are the same game. Resamples seeds, then games inside each seed,
 * and applies the same draw to both agents, so the game-to-game variation cancels.
 */
export function pairedBootstrapDifference(a: SeedGames, b: SeedGames, opts: BootstrapOptions = {}): PairedBootstrapResult {
  checkGroups('a', a);
  checkGroups('b', b);
  if (a.length !== b.length) throw new RangeError(`a and b must hold the same seeds, got ${a.length} and ${b.length}`);
  a.forEach((g, s) => {
    if (g.length !== b[s].length) {
      throw new RangeError(`a[${s}] and b[${s}] must hold the same games, got ${g.length} and ${b[s].length}`);
    }
  });
  const resamples = opts.resamples ?? 10000;
  const level = opts.level ?? 0.95;
  checkLevel(level);
  if (!Number.isInteger(resamples) || resamples < 100) throw new RangeError(`resamples must be an integer >= 100, got ${resamples}`);
  const rng = new Mulberry32(opts.seed ?? 1);
  const estimate = seedMean(a) - seedMean(b);
  const stats: number[] = new Array(resamples);
  let below = 0;
  let above = 0;
  for (let r = 0; r < resamples; r++) {
    let total = 0;
    for (let i = 0; i < a.length; i++) {
      const s = rng.int(a.length);
      const ga = a[s];
      const gb = b[s];
      let d = 0;
      for (let j = 0; j < ga.length; j++) {
        const k = rng.int(ga.length);
        d += ga[k] - gb[k];
      }
      total += d / ga.length;
    }
    const v = total / a.length;
    stats[r] = v;
    if (v <= 0) below++;
    if (v >= 0) above++;
  }
  const [lo, hi] = percentileInterval(stats, level);
  const p = Math.min(1, (2 * Math.min(below, above)) / resamples);
  return { estimate, lo, hi, level, resamples, undefinedResamples: 0, p };
}
