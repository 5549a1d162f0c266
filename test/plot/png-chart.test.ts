import { writeFileSync } from 'fs';
import { describe, expect, it } from 'vitest';
import { chartLayout, gridPng, lineChartPng, lineChartSvg, PALETTE, type ChartSpec } from '../../lib/plot';
import { decodePng, dist, hexRgb, luminance, pixel, segDist, type Image, type RGB } from './helpers';

const xs = Array.from({ length: 21 }, (_, i) => i * 5);
const lineA = (x: number) => 0.2 + 0.006 * x;
const lineB = (x: number) => 0.8 - 0.005 * x; // crosses A at x = 600/11 ≈ 54.5
const spec: ChartSpec = {
  title: 'Learning curve',
  xLabel: 'episode',
  yLabel: 'success',
  yMin: 0,
  yMax: 1,
  series: [
    { name: 'A', x: xs, y: xs.map(lineA) },
    { name: 'B', x: xs, y: xs.map(lineB) },
  ],
};
const BLUE = hexRgb(PALETTE[0]);
const VERMILLION = hexRgb(PALETTE[1]);
const near = (p: RGB, c: RGB) => dist(p, c) < 60;

/** Pixel-centre distance to the polyline through (x, f(x)) for x in xs, in image pixels. */
function distToLine(L: ReturnType<typeof chartLayout>, f: (x: number) => number, px: number, py: number): number {
  const pts = xs.map((x): [number, number] => [L.x.scale(x), L.y.scale(f(x))]);
  let d = Infinity;
  for (let i = 1; i < pts.length; i++) d = Math.min(d, segDist([px + 0.5, py + 0.5], pts[i - 1], pts[i]));
  return d;
}

function countIn(img: Image, x0: number, y0: number, x1: number, y1: number, pred: (p: RGB) => boolean): number {
  let n = 0;
  [x0, y0, x1, y1] = [x0, y0, x1, y1].map(Math.round);
  for (let y = Math.max(0, y0); y < Math.min(img.height, y1); y++)
    for (let x = Math.max(0, x0); x < Math.min(img.width, x1); x++) if (pred(pixel(img, x, y))) n++;
  return n;
}

/** Is there a pixel of colour c within r pixels of (x, y) (continuous coordinates)? */
function hasColourNear(img: Image, x: number, y: number, c: RGB, r = 1.5): boolean {
  for (let py = Math.floor(y - r); py <= Math.ceil(y + r); py++)
    for (let px = Math.floor(x - r); px <= Math.ceil(x + r); px++)
      if (Math.hypot(px + 0.5 - x, py + 0.5 - y) <= r + 0.71 && near(pixel(img, px, py), c)) return true;
  return false;
}

describe('lineChartPng', () => {
  const img = decodePng(lineChartPng(spec));
  const L = chartLayout(spec);
  const { plot } = L;

  it('decodes to the requested size', () => {
    expect([img.width, img.height]).toEqual([800, 480]);
    const small = decodePng(lineChartPng({ ...spec, width: 333, height: 222 }));
    expect([small.width, small.height]).toEqual([333, 222]);
    expect(plot.w).toBeGreaterThan(0.75 * 800);
    expect(plot.h).toBeGreaterThan(0.6 * 480);
  });

  it('draws each series in its colour where the scale puts it', () => {
    expect(L.x.domain).toEqual([0, 100]);
    const X = (v: number) => plot.x + (v / 100) * plot.w;
    const Y = (v: number) => plot.y + plot.h * (1 - v);
    for (let x = 1; x < 100; x += 1.5) {
      if (Math.abs(x - 600 / 11) < 4) continue; // where B is drawn over A
      // the pixel that contains the exact point is (almost) fully inked by the 2-px line
      expect(near(pixel(img, Math.floor(X(x)), Math.floor(Y(lineA(x)))), BLUE), `A at x=${x}`).toBe(true);
      expect(near(pixel(img, Math.floor(X(x)), Math.floor(Y(lineB(x)))), VERMILLION), `B at x=${x}`).toBe(true);
    }
  });

  it('series colours appear only along their lines; elsewhere the plot is background or grid', () => {
    let stray = 0;
    let checked = 0;
    for (let y = plot.y + 2; y < plot.y + plot.h - 2; y++)
      for (let x = plot.x + 2; x < plot.x + plot.w - 2; x++) {
        const p = pixel(img, x, y);
        const dA = distToLine(L, lineA, x, y);
        const dB = distToLine(L, lineB, x, y);
        if (near(p, BLUE) && dA > 1.8) stray++;
        if (near(p, VERMILLION) && dB > 1.8) stray++;
        if (dA > 3 && dB > 3) {
          checked++;
          const neutral = Math.max(...p) - Math.min(...p) <= 2 && Math.min(...p) >= 200; // white or light grid
          if (!neutral) stray++;
        }
      }
    expect(checked).toBeGreaterThan(100_000);
    expect(stray).toBe(0);
  });

  it('title, legend and tick labels have dark text pixels; the legend shows each colour', () => {
    const dark = (p: RGB) => luminance(p) < 100;
    expect(countIn(img, 0, 0, 800, L.legendTop, dark)).toBeGreaterThan(100); // title
    expect(countIn(img, 0, L.legendTop, 800, plot.y, dark)).toBeGreaterThan(20); // legend names
    expect(countIn(img, 0, L.legendTop, 800, plot.y, (p) => near(p, BLUE))).toBeGreaterThan(20);
    expect(countIn(img, 0, L.legendTop, 800, plot.y, (p) => near(p, VERMILLION))).toBeGreaterThan(20);
    expect(countIn(img, 0, plot.y, plot.x - 6, plot.y + plot.h, dark)).toBeGreaterThan(100); // y ticks + label
    expect(countIn(img, plot.x, plot.y + plot.h + 6, 800, 480, dark)).toBeGreaterThan(100); // x ticks + label
    // the right margin and the corners stay blank
    expect(countIn(img, plot.x + plot.w + 30, plot.y, 800, plot.y + plot.h, (p) => luminance(p) < 250)).toBe(0);
  });

  it('NaN gaps break the line; an isolated point gets a marker', () => {
    const y = xs.map(lineA);
    y[8] = NaN; // x = 40
    y[9] = NaN; // x = 45
    y[14] = NaN; // x = 70 → x = 65 and 75 are isolated on either side? no: 60-65 | 75-100
    y[16] = NaN; // x = 80 → x = 75 alone
    const s2: ChartSpec = { ...spec, series: [{ name: 'gappy', x: xs, y }] };
    const im = decodePng(lineChartPng(s2));
    const L2 = chartLayout(s2);
    const X = L2.x.scale;
    const Y = L2.y.scale;
    const blueIn = (x0: number, x1: number) => countIn(im, Math.ceil(X(x0)), L2.plot.y, Math.floor(X(x1)), L2.plot.y + L2.plot.h, (p) => near(p, BLUE));
    expect(blueIn(36, 49)).toBe(0); // gap 35 → 50
    expect(blueIn(66, 74)).toBe(0); // gap 65 → 75
    expect(blueIn(21, 34)).toBeGreaterThan(10); // drawn segments
    expect(blueIn(51, 64)).toBeGreaterThan(10);
    // x = 75 stands alone: a marker disc around it, nothing between it and its neighbours
    expect(hasColourNear(im, X(75), Y(lineA(75)), BLUE, 1)).toBe(true);
    expect(countIn(im, Math.round(X(75)) - 3, Math.round(Y(lineA(75))) - 3, Math.round(X(75)) + 3, Math.round(Y(lineA(75))) + 3, (p) => near(p, BLUE))).toBeGreaterThanOrEqual(12);
    expect(blueIn(76.5, 84)).toBe(0);
  });

  it('a single-point series draws a marker', () => {
    const s3: ChartSpec = { ...spec, series: [{ name: 'one', x: [5], y: [0.5] }] };
    const im = decodePng(lineChartPng(s3));
    const L3 = chartLayout(s3);
    const cx = L3.x.scale(5);
    const cy = L3.y.scale(0.5);
    expect(near(pixel(im, Math.floor(cx), Math.floor(cy)), BLUE)).toBe(true);
    expect(countIn(im, L3.plot.x, L3.plot.y, L3.plot.x + L3.plot.w, L3.plot.y + L3.plot.h, (p) => near(p, BLUE))).toBeLessThan(60);
  });

  it('a spread band is a translucent tint between lo and hi', () => {
    const s4: ChartSpec = { ...spec, series: [{ ...spec.series[0], lo: xs.map((x) => lineA(x) - 0.1), hi: xs.map((x) => lineA(x) + 0.1) }] };
    const im = decodePng(lineChartPng(s4));
    const L4 = chartLayout(s4);
    const tint = BLUE.map((c) => c * 0.2 + 255 * 0.8) as RGB;
    const tintOnGrid = BLUE.map((c) => c * 0.2 + 230 * 0.8) as RGB;
    for (let x = 3; x < 100; x += 7) {
      for (const dy of [-0.06, 0.06]) {
        const p = pixel(im, Math.floor(L4.x.scale(x)), Math.floor(L4.y.scale(lineA(x) + dy)));
        expect(Math.min(dist(p, tint), dist(p, tintOnGrid)), `band at x=${x} dy=${dy}: ${p}`).toBeLessThan(12);
      }
      // just outside the band: untinted
      const out = pixel(im, Math.floor(L4.x.scale(x)), Math.floor(L4.y.scale(lineA(x) + 0.14)));
      expect(Math.max(...out) - Math.min(...out)).toBeLessThanOrEqual(2);
    }
  });

  it('dashed lines alternate ink and gaps', () => {
    const s5: ChartSpec = { ...spec, series: [{ ...spec.series[0], dashed: true }] };
    const im = decodePng(lineChartPng(s5));
    const L5 = chartLayout(s5);
    let on = 0;
    let off = 0;
    for (let x = 1; x < 99; x += 0.25) (hasColourNear(im, L5.x.scale(x), L5.y.scale(lineA(x)), BLUE, 0.5) ? on++ : off++);
    expect(on / (on + off)).toBeGreaterThan(0.3);
    expect(off / (on + off)).toBeGreaterThan(0.15);
  });

  it('clips values outside yMin..yMax to the plot area', () => {
    const s6: ChartSpec = { ...spec, series: [{ name: 'wild', x: xs, y: xs.map((x) => (x % 10 === 0 ? 3 : -2)) }] };
    const im = decodePng(lineChartPng(s6));
    const L6 = chartLayout(s6);
    const { plot: p } = L6;
    expect(countIn(im, p.x, p.y, p.x + p.w, p.y + p.h, (c) => near(c, BLUE))).toBeGreaterThan(1000);
    expect(countIn(im, 0, p.y - 5, 800, p.y, (c) => near(c, BLUE))).toBe(0);
    expect(countIn(im, 0, p.y + p.h + 1, 800, 480, (c) => near(c, BLUE))).toBe(0);
  });

  it('empty input: axes and "no data", nothing coloured', () => {
    for (const series of [[], [{ name: 'nan', x: [0, 1], y: [NaN, NaN] }]]) {
      const s7: ChartSpec = { title: 'Empty', xLabel: 'x', yLabel: 'y', series };
      const im = decodePng(lineChartPng(s7));
      const { plot: p } = chartLayout(s7);
      const cx = p.x + p.w / 2;
      const cy = p.y + p.h / 2;
      expect(countIn(im, cx - 40, cy - 12, cx + 40, cy + 12, (c) => luminance(c) < 180)).toBeGreaterThan(30);
      expect(countIn(im, p.x, p.y, p.x + p.w, p.y + p.h, (c) => Math.max(...c) - Math.min(...c) > 10)).toBe(0);
    }
  });
});

describe('gridPng', () => {
  it('lays charts out in columns, each drawn in its own cell', () => {
    const small = { ...spec, width: 400, height: 300 };
    const im = decodePng(gridPng([small, { ...small, series: [spec.series[1]] }, small], 2));
    expect([im.width, im.height]).toEqual([800, 600]);
    const L = chartLayout(small);
    // chart 2 (top right) has only B, in the first palette colour... at its own offset
    const X = (v: number) => 400 + L.x.scale(v);
    const Y = (v: number) => L.y.scale(v);
    for (let x = 5; x < 100; x += 10) expect(hasColourNear(im, X(x), Y(lineB(x)), BLUE), `x=${x}`).toBe(true);
    // chart 3 (bottom left) has A at a 300 px vertical offset
    for (let x = 5; x < 100; x += 10) expect(hasColourNear(im, L.x.scale(x), 300 + Y(lineA(x)), BLUE), `x=${x}`).toBe(true);
    // bottom-right cell is empty
    expect(countIn(im, 400, 300, 800, 600, (c) => luminance(c) < 250)).toBe(0);
  });
});

describe('example chart', () => {
  it('renders /tmp/memq-plot-example.png (and .svg) for a human to look at', () => {
    const n = 80;
    const x = Array.from({ length: n }, (_, i) => i * 25);
    const curve = (k: number, ceil: number, wobble: number) => x.map((v, i) => ceil * (1 - Math.exp(-v / k)) + wobble * Math.sin(i * 1.7));
    const memq = curve(350, 0.93, 0.015);
    const retrieval = curve(700, 0.78, 0.02);
    const none = curve(1400, 0.55, 0.02);
    none[30] = NaN;
    none[31] = NaN;
    const example: ChartSpec = {
      title: 'Household: success rate vs. episodes',
      xLabel: 'episode',
      yLabel: 'success rate',
      yMin: 0,
      yMax: 1,
      series: [
        { name: 'memq (KL, lambda=0.1)', x, y: memq, lo: memq.map((v) => v - 0.05), hi: memq.map((v) => Math.min(1, v + 0.05)) },
        { name: 'retrieval only', x, y: retrieval, dashed: true },
        { name: 'no memory', x, y: none, lo: none.map((v) => v - 0.04), hi: none.map((v) => v + 0.04) },
        { name: 'oracle', x: [1000], y: [0.97] },
      ],
    };
    const png = lineChartPng(example);
    writeFileSync('/tmp/memq-plot-example.png', png);
    writeFileSync('/tmp/memq-plot-example.svg', lineChartSvg(example));
    const im = decodePng(png);
    expect([im.width, im.height]).toEqual([800, 480]);
    expect(im.filters.size).toBeGreaterThan(1); // the adaptive filter exercises the decoder
  });
});

describe('robustness', () => {
  it('odd inputs (NaN, ±Infinity, mismatched lengths, reversed yMin/yMax, huge values) never throw', async () => {
    const { parseXml } = await import('./helpers');
    let seed = 99;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const weird = [NaN, Infinity, -Infinity, 0, 1e300, -1e-300, 5];
    const val = () => (rnd() < 0.2 ? weird[Math.floor(rnd() * weird.length)] : (rnd() - 0.5) * 10 ** Math.floor(rnd() * 10 - 5));
    for (let t = 0; t < 25; t++) {
      const series = Array.from({ length: Math.floor(rnd() * 4) }, (_, k) => {
        const n = Math.floor(rnd() * 8);
        const arr = (m: number) => Array.from({ length: m }, val);
        return { name: `s${k} <&>`, x: arr(n), y: arr(n + (rnd() < 0.3 ? 1 : 0)), lo: rnd() < 0.5 ? arr(n) : undefined, hi: rnd() < 0.5 ? arr(n - 1) : undefined, dashed: rnd() < 0.3, color: rnd() < 0.2 ? 'not a colour' : undefined };
      });
      const s: ChartSpec = { title: 'fuzz', xLabel: 'x', yLabel: 'y', width: 200 + Math.floor(rnd() * 300), height: 150 + Math.floor(rnd() * 200), series, yMin: rnd() < 0.3 ? 1 : undefined, yMax: rnd() < 0.3 ? 0 : undefined };
      expect(parseXml(lineChartSvg(s)).name).toBe('svg');
      const im = decodePng(lineChartPng(s));
      expect([im.width, im.height]).toEqual([s.width, s.height]);
    }
  });
});
