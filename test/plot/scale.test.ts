import { describe, expect, it } from 'vitest';
import { formatTicks, linearScale, niceTicks } from '../../lib/plot';

describe('niceTicks', () => {
  // [min, max, maxIntervals] -> expected ticks, worked out by hand:
  // the smallest step in {1,2,5}x10^k whose extended range has <= maxIntervals intervals
  const cases: Array<[number, number, number, number, number[]]> = [
    [0, 1, 5, 0.2, [0, 0.2, 0.4, 0.6, 0.8, 1]],
    [0, 100, 5, 20, [0, 20, 40, 60, 80, 100]],
    [0, 7, 5, 2, [0, 2, 4, 6, 8]], // step 1 needs 7 intervals
    [-3, 17, 5, 5, [-5, 0, 5, 10, 15, 20]], // step 2 needs 11 (-4..18)
    [0.013, 0.087, 4, 0.05, [0, 0.05, 0.1]], // step 0.02 needs 5 (0..0.1)
    [0, 3000, 10, 500, [0, 500, 1000, 1500, 2000, 2500, 3000]],
    [0.1, 0.3, 2, 0.1, [0.1, 0.2, 0.3]], // 0.3/0.1 = 2.9999999999999996 must not round up
    [0, 0.14, 7, 0.02, [0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14]], // 0.14/0.02 = 7.000000000000001 must not add a tick
    [0.7, 1, 3, 0.1, [0.7, 0.8, 0.9, 1]], // 0.7/0.1 = 6.999999999999999 must not add a tick at 0.6
    [-1, -0.2, 4, 0.2, [-1, -0.8, -0.6, -0.4, -0.2]],
    [5, 5, 5, 0.5, [4.5, 5, 5.5]], // degenerate range widened by 10%
    [0, 0, 4, 0.5, [-1, -0.5, 0, 0.5, 1]], // widened to [-1, 1]; step 0.5 gives exactly 4
    [1e-7, 9e-7, 4, 5e-7, [0, 5e-7, 1e-6]],
    [12345, 98765, 3, 50000, [0, 50000, 100000]],
  ];
  for (const [min, max, n, step, ticks] of cases) {
    it(`(${min}, ${max}, ${n}) -> step ${step}`, () => {
      const t = niceTicks(min, max, n);
      expect(t.step).toBe(step);
      expect(t.ticks).toEqual(ticks);
      expect(t.min).toBe(ticks[0]);
      expect(t.max).toBe(ticks[ticks.length - 1]);
    });
  }

  it('random ranges: covers the data, 1/2/5 steps, at most n intervals, and the next finer step would not fit', () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const finer = (s: number) => {
      const k = Math.floor(Math.log10(s) + 1e-9);
      const m = Math.round(s / 10 ** k);
      return m === 1 ? 0.5 * 10 ** k : m === 2 ? 10 ** k : 2 * 10 ** k;
    };
    for (let i = 0; i < 500; i++) {
      const a = (rnd() - 0.5) * 10 ** Math.floor(rnd() * 8 - 3);
      const b = a + rnd() * 10 ** Math.floor(rnd() * 8 - 3);
      const n = 2 + Math.floor(rnd() * 9);
      const t = niceTicks(a, b, n);
      expect(t.min).toBeLessThanOrEqual(a + 1e-12 * Math.abs(a));
      expect(t.max).toBeGreaterThanOrEqual(b - 1e-12 * Math.abs(b));
      expect(t.ticks.length - 1).toBeLessThanOrEqual(n);
      const k = Math.floor(Math.log10(t.step) + 1e-9);
      expect([1, 2, 5]).toContain(Math.round(t.step / 10 ** k));
      const f = finer(t.step);
      if (b > a) expect(Math.ceil(b / f - 1e-9) - Math.floor(a / f + 1e-9)).toBeGreaterThan(n);
    }
  });

  it('rejects non-finite bounds', () => {
    expect(() => niceTicks(0, NaN)).toThrow();
    expect(() => niceTicks(-Infinity, 1)).toThrow();
  });
});

describe('formatTicks', () => {
  it('uses the decimals the step needs', () => {
    expect(formatTicks([0, 0.2, 0.4, 1], 0.2)).toEqual(['0.0', '0.2', '0.4', '1.0']);
    expect(formatTicks([0, 0.05, 0.1], 0.05)).toEqual(['0.00', '0.05', '0.10']);
    expect(formatTicks([-5, 0, 5], 5)).toEqual(['-5', '0', '5']);
    expect(formatTicks([0, 500, 1000], 500)).toEqual(['0', '500', '1000']);
  });
  it('abbreviates large values with k / M', () => {
    expect(formatTicks([0, 5000, 10000], 5000)).toEqual(['0', '5k', '10k']);
    expect(formatTicks([0, 2500, 5000, 7500, 10000], 2500)).toEqual(['0', '2.5k', '5.0k', '7.5k', '10.0k']);
    expect(formatTicks([0, 1e7, 2e7], 1e7)).toEqual(['0', '10M', '20M']);
  });
});

describe('linearScale', () => {
  it('maps the domain ends onto the range ends, inverted ranges too', () => {
    const s = linearScale(0, 10, 100, 300);
    expect(s(0)).toBe(100);
    expect(s(10)).toBe(300);
    expect(s(2.5)).toBe(150);
    const inv = linearScale(0, 1, 400, 50);
    expect(inv(0)).toBe(400);
    expect(inv(1)).toBe(50);
    expect(inv(0.5)).toBe(225);
  });
});
