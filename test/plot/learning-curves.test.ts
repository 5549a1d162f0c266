import { describe, expect, it } from 'vitest';
import { meanBand, movingAverage, trainWindow } from '../../lib/agent/plots';
import { chartLayout, chartPrims } from '../../lib/plot/chart';
import { studentTQuantile } from '../../lib/stats/index';

describe('learning-curve helpers', () => {
  it('the moving average starts at the first full window (no spike from one or two games)', () => {
    const xs = [1, 0, 0, 0, 1, 1, 0, 1];
    const ma = movingAverage(xs, 3);
    expect(ma.slice(0, 2).every(Number.isNaN)).toBe(true);
    for (let i = 2; i < xs.length; i++) expect(ma[i]).toBeCloseTo((xs[i] + xs[i - 1] + xs[i - 2]) / 3, 12);
    expect(trainWindow(150)).toBe(15);
    expect(trainWindow(10)).toBe(5);
    expect(trainWindow(5000)).toBe(50);
  });

  it('mean over seeds with the 95 % t band, matched by x; no band from one seed', () => {
    const b = meanBand(
      [
        [1, 2, 3],
        [1, 2],
        [2, 3],
      ],
      [
        [0.2, 0.4, 0.6],
        [0.3, 0.5],
        [0.9, 0.7],
      ],
    );
    expect(b.x).toEqual([1, 2, 3]);
    expect(b.n).toEqual([2, 3, 2]);
    const ref = (v: number[]) => {
      const m = v.reduce((a, c) => a + c, 0) / v.length;
      const sd = Math.sqrt(v.reduce((a, c) => a + (c - m) ** 2, 0) / (v.length - 1));
      const h = (studentTQuantile(0.975, v.length - 1) * sd) / Math.sqrt(v.length);
      return [m, Math.max(0, m - h), Math.min(1, m + h)];
    };
    const cols = [[0.2, 0.3], [0.4, 0.5, 0.9], [0.6, 0.7]];
    cols.forEach((v, i) => {
      const [m, lo, hi] = ref(v);
      expect(b.y[i]).toBeCloseTo(m, 12);
      expect(b.lo[i]).toBeCloseTo(lo, 12);
      expect(b.hi[i]).toBeCloseTo(hi, 12);
    });
    const one = meanBand([[5]], [[0.5]]);
    expect(one.y).toEqual([0.5]);
    expect(Number.isNaN(one.lo[0])).toBe(true);
  });

  it('yInset keeps a curve at yMin above the x axis, and markers mark every point', () => {
    const spec = { title: 't', xLabel: 'x', yLabel: 'y', yMin: 0, yMax: 1, series: [{ name: 's', x: [0, 1, 2], y: [0, 0, 1], markers: true }] };
    const plain = chartLayout(spec);
    const inset = chartLayout({ ...spec, yInset: 6 });
    expect(plain.y.scale(0)).toBeCloseTo(plain.plot.y + plain.plot.h, 9);
    expect(inset.y.scale(0)).toBeCloseTo(inset.plot.y + inset.plot.h - 6, 9);
    expect(inset.y.scale(1)).toBeCloseTo(inset.plot.y + 6, 9);
    const dots = chartPrims({ ...spec, yInset: 6 }).filter((p) => p.t === 'dot' && p.cls === 'marker');
    expect(dots.length).toBe(3);
    expect(chartPrims({ ...spec, series: [{ ...spec.series[0], markers: false }] }).filter((p) => p.t === 'dot' && p.cls === 'marker').length).toBe(0);
  });
});
