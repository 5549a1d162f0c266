/**
 * Bandwidth h of the Gaussian kernel (MATH §9): fixed, Silverman's rule, the adaptive rule
 * h_n = h_0 n^{−1/(d+4)}, or leave-one-out cross-validation of Q̂ over a grid.
 */
import { kernelWeightedValue } from './kernels';

export type BandwidthRule =
  | { rule: 'fixed'; h: number }
  | { rule: 'silverman' }
  | { rule: 'adaptive'; h0: number }
  | { rule: 'cv'; grid: number[]; voidWeight?: number; voidValue?: number };

/**
 * σ̂ = mean over dimensions of the sample standard deviation (n − 1 denominator) of the keys.
 */
export function meanStd(keys: ArrayLike<number>, n: number, d: number): number {
  if (n < 2) throw new RangeError(`meanStd needs at least 2 keys, got ${n}`);
  let total = 0;
  for (let j = 0; j < d; j++) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += keys[i * d + j];
    mean /= n;
    let ss = 0;
    for (let i = 0; i < n; i++) {
      const x = keys[i * d + j] - mean;
      ss += x * x;
    }
    total += Math.sqrt(ss / (n - 1));
  }
  return total / d;
}

/** Silverman: h = σ̂ (4 / ((d + 2) n))^{1/(d+4)}. */
export function silvermanBandwidth(keys: ArrayLike<number>, n: number, d: number): number {
  return meanStd(keys, n, d) * Math.pow(4 / ((d + 2) * n), 1 / (d + 4));
}

/** Adaptive: h_n = h_0 n^{−1/(d+4)}, shrinking as memory grows. */
export function adaptiveBandwidth(h0: number, n: number, d: number): number {
  if (!(h0 > 0)) throw new RangeError(`h0 must be > 0, got ${h0}`);
  return h0 * Math.pow(Math.max(1, n), -1 / (d + 4));
}

/**
 * Leave-one-out mean squared error of Q̂ (Gaussian kernel, all other cases, void case with
 * κ∅ / q∅) for each h in the grid. O(n² d) once for the distances, O(n²) per grid point.
 */
export function leaveOneOutErrors(
  keys: ArrayLike<number>,
  values: ArrayLike<number>,
  n: number,
  d: number,
  grid: number[],
  voidWeight = 0,
  voidValue = 0,
): Float64Array {
  const dist2 = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      let s = 0;
      for (let t = 0; t < d; t++) {
        const x = keys[i * d + t] - keys[j * d + t];
        s += x * x;
      }
      dist2[i * n + j] = s;
      dist2[j * n + i] = s;
    }
  }
  const errs = new Float64Array(grid.length);
  const k = new Float64Array(n - 1);
  const q = new Float64Array(n - 1);
  grid.forEach((h, g) => {
    if (!(h > 0)) throw new RangeError(`bandwidth grid entries must be > 0, got ${h}`);
    let sse = 0;
    for (let i = 0; i < n; i++) {
      let c = 0;
      for (let j = 0; j < n; j++) {
        if (j === i) continue;
        k[c] = Math.exp(-dist2[i * n + j] / (2 * h * h));
        q[c] = values[j];
        c++;
      }
      const e = kernelWeightedValue(k, q, voidWeight, voidValue).value - values[i];
      sse += e * e;
    }
    errs[g] = sse / n;
  });
  return errs;
}

/** The grid point with the lowest leave-one-out error (the first on ties). */
export function crossValidatedBandwidth(
  keys: ArrayLike<number>,
  values: ArrayLike<number>,
  n: number,
  d: number,
  grid: number[],
  voidWeight = 0,
  voidValue = 0,
): { h: number; errors: Float64Array } {
  if (grid.length === 0) throw new RangeError('the bandwidth grid is empty');
  const errors = leaveOneOutErrors(keys, values, n, d, grid, voidWeight, voidValue);
  let best = 0;
  for (let g = 1; g < grid.length; g++) if (errors[g] < errors[best]) best = g;
  return { h: grid[best], errors };
}

/** Apply a rule to the current memory contents. */
export function chooseBandwidth(rule: BandwidthRule, keys: ArrayLike<number>, values: ArrayLike<number>, n: number, d: number): number {
  switch (rule.rule) {
    case 'fixed':
      if (!(rule.h > 0)) throw new RangeError(`h must be > 0, got ${rule.h}`);
      return rule.h;
    case 'silverman':
      return silvermanBandwidth(keys, n, d);
    case 'adaptive':
      return adaptiveBandwidth(rule.h0, n, d);
    case 'cv':
      return crossValidatedBandwidth(keys, values, n, d, rule.grid, rule.voidWeight, rule.voidValue).h;
    default:
      throw new RangeError(`unknown bandwidth rule ${JSON.stringify(rule)}`);
  }
}
