import { describe, expect, it } from 'vitest';
import { klImprove, klImproveAsync } from '../../lib/index';
import { TestRng, testSeed } from '../helpers/rng';
import { refKlRow } from './reference';

// Tolerances: policy abs 1e-6 + rel 1e-5; value rel 1e-5 of max(1, |V|) (float32 outputs of a
// float64-accumulated log-sum-exp).
const seed = testSeed();

function check(
  lp: Float32Array, q: Float32Array, rows: number, cols: number, alpha: number, rowLengths: Int32Array | undefined,
  res: { policy: Float32Array; value: Float32Array },
) {
  for (let r = 0; r < rows; r++) {
    const len = rowLengths ? rowLengths[r] : cols;
    const ref = refKlRow(Array.from(lp.subarray(r * cols, r * cols + len)), Array.from(q.subarray(r * cols, r * cols + len)), alpha);
    if (ref.value === -Infinity) expect(res.value[r]).toBe(-Infinity);
    else expect(Math.abs(res.value[r] - ref.value)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(ref.value)));
    let sum = 0;
    for (let c = 0; c < cols; c++) {
      const got = res.policy[r * cols + c];
      const want = c < len ? ref.policy[c] : 0;
      expect(Math.abs(got - want), `row ${r} col ${c}`).toBeLessThanOrEqual(1e-6 + 1e-5 * want);
      sum += got;
    }
    if (ref.value !== -Infinity) expect(sum).toBeCloseTo(1, 5);
  }
}

describe('klImprove (MATH §5) against the float64 reference', () => {
  it('random rows, -inf priors, ragged rows, several temperatures', async () => {
    const rng = new TestRng(seed ^ 0x3);
    for (const [rows, cols] of [[1, 1], [5, 3], [64, 17], [300, 40]]) {
      for (const alpha of [0.05, 1, 30]) {
        const lp = new Float32Array(rows * cols).map(() => (rng.next() < 0.2 ? -Infinity : Math.log(rng.next() + 1e-3)));
        const q = new Float32Array(rows * cols).map(() => rng.normal() * 2);
        const rl = Int32Array.from({ length: rows }, () => rng.int(cols + 1));
        for (const rowLengths of [undefined, rl]) {
          const res = klImprove({ logPrior: lp, q, rows, cols, alpha, rowLengths });
          check(lp, q, rows, cols, alpha, rowLengths, res);
          const a = await klImproveAsync({ logPrior: lp, q, rows, cols, alpha, rowLengths });
          expect(Array.from(a.policy)).toEqual(Array.from(res.policy));
        }
      }
    }
  });

  it('stable for |Q/alpha| up to 1e4 (and the greedy limit alpha = 0)', () => {
    const rows = 4, cols = 5;
    const lp = new Float32Array(rows * cols).fill(Math.log(0.2));
    const q = Float32Array.from([1e4, -1e4, 5e3, 1e4 - 1, 0, -1e4, -1e4, -9999, -1e4, -1e4, 3, 3, 3, 3, 3, 1e4, 1e4, 0, 0, 0]);
    for (const alpha of [1, 1e-3 * 10]) {
      const res = klImprove({ logPrior: lp, q, rows, cols, alpha });
      for (const v of res.policy) expect(Number.isFinite(v)).toBe(true);
      for (const v of res.value) expect(Number.isFinite(v)).toBe(true);
      check(lp, q, rows, cols, alpha, undefined, res);
    }
    const g = klImprove({ logPrior: lp, q, rows, cols, alpha: 0 });
    check(lp, q, rows, cols, 0, undefined, g);
    expect(g.policy[0]).toBe(1);
    expect(Array.from(g.policy.subarray(15, 20))).toEqual([0.5, 0.5, 0, 0, 0]);
  });

  it('alpha -> infinity gives the prior; mu = 0 gives pi = 0; no support gives V = -inf', () => {
    const lp = Float32Array.from([Math.log(0.7), Math.log(0.3), -Infinity, -Infinity, -Infinity, -Infinity]);
    const q = Float32Array.from([0, 5, 100, 1, 2, 3]);
    const res = klImprove({ logPrior: lp, q, rows: 2, cols: 3, alpha: 1e7 });
    expect(res.policy[0]).toBeCloseTo(0.7, 5);
    expect(res.policy[1]).toBeCloseTo(0.3, 5);
    expect(res.policy[2]).toBe(0);
    expect(res.value[1]).toBe(-Infinity);
    expect(Array.from(res.policy.subarray(3))).toEqual([0, 0, 0]);
  });

  it('bad input: a clear TypeError/RangeError naming the argument', () => {
    const ok = { logPrior: new Float32Array(6), q: new Float32Array(6), rows: 2, cols: 3, alpha: 1 };
    expect(() => klImprove({ ...ok, logPrior: [0, 0] as any })).toThrow(/logPrior must be a Float32Array/);
    expect(() => klImprove({ ...ok, q: new Float32Array(5) })).toThrow(RangeError);
    expect(() => klImprove({ ...ok, q: new Float32Array(5) })).toThrow(/q\.length must be rows\*cols/);
    expect(() => klImprove({ ...ok, alpha: -1 })).toThrow(/alpha must be a finite number >= 0/);
    expect(() => klImprove({ ...ok, alpha: NaN })).toThrow(RangeError);
    expect(() => klImprove({ ...ok, rows: 1.5 })).toThrow(/rows must be an integer/);
    expect(() => klImprove({ ...ok, logPrior: Float32Array.from([0, 0, NaN, 0, 0, 0]) })).toThrow(/logPrior\[2\]/);
    expect(() => klImprove({ ...ok, q: Float32Array.from([0, Infinity, 0, 0, 0, 0]) })).toThrow(/q\[1\] must be finite/);
    expect(() => klImprove({ ...ok, rowLengths: [1, 4] })).toThrow(/rowLengths\[1\] must be in \[0, cols=3\]/);
    expect(() => klImprove({ ...ok, rowLengths: [1] })).toThrow(/rowLengths.length must equal rows/);
  });
});
