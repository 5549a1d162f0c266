import { describe, expect, it } from 'vitest';
import { chartLayout, gridSvg, lineChartSvg, PALETTE, type ChartSpec } from '../../lib/plot';
import { findAll, parsePathD, parseXml, type XmlEl } from './helpers';

const xs = Array.from({ length: 11 }, (_, i) => i * 10);
const spec: ChartSpec = {
  title: 'Success rate <household> & "kitchen" \'v2\'',
  xLabel: 'episode',
  yLabel: 'success rate',
  yMin: 0,
  yMax: 1,
  series: [
    { name: 'memq <KL>', x: xs, y: xs.map((x) => 0.2 + 0.006 * x), lo: xs.map((x) => 0.1 + 0.006 * x), hi: xs.map((x) => 0.3 + 0.006 * x) },
    { name: 'baseline & co', x: xs, y: xs.map((x) => 0.8 - 0.005 * x), dashed: true },
  ],
};

const seriesPaths = (root: XmlEl) => findAll(root, (e) => e.name === 'path' && e.attrs.class === 'series');
const texts = (root: XmlEl) => findAll(root, (e) => e.name === 'text').map((e) => e.text);

describe('parseXml (the checker itself)', () => {
  it('rejects malformed documents', () => {
    expect(() => parseXml('<svg><g></svg>')).toThrow();
    expect(() => parseXml('<svg></svg><svg></svg>')).toThrow();
    expect(() => parseXml('<svg><text>a < b</text></svg>')).toThrow();
    expect(() => parseXml('<svg><text>a & b</text></svg>')).toThrow();
    expect(() => parseXml('<svg a="1" a="2"/>')).toThrow();
    expect(() => parseXml('<svg a=1/>')).toThrow();
    expect(parseXml('<?xml version="1.0"?>\n<svg a="&lt;&amp;"><t>x &gt; y</t></svg>\n').attrs.a).toBe('<&');
  });
});

describe('lineChartSvg', () => {
  const svg = lineChartSvg(spec);
  const root = parseXml(svg);
  const L = chartLayout(spec);

  it('is one well-formed <svg> root with size and viewBox', () => {
    expect(root.name).toBe('svg');
    expect(root.attrs.xmlns).toBe('http://www.w3.org/2000/svg');
    expect(root.attrs.width).toBe('800');
    expect(root.attrs.height).toBe('480');
    expect(root.attrs.viewBox).toBe('0 0 800 480');
  });

  it('escapes text (title and legend come back intact after entity decoding)', () => {
    expect(svg).not.toContain('<household>');
    expect(svg).toContain('&lt;household&gt;');
    expect(texts(root)).toContain(spec.title);
    expect(texts(root)).toContain('memq <KL>');
    expect(texts(root)).toContain('baseline & co');
    expect(seriesPaths(root).map((p) => p.attrs['data-series'])).toEqual(['memq <KL>', 'baseline & co']);
  });

  it('has axis labels and tick labels', () => {
    const t = texts(root);
    expect(t).toContain('episode');
    expect(t).toContain('success rate');
    for (const l of ['0', '20', '40', '60', '80', '100']) expect(t).toContain(l);
    for (const l of ['0.0', '0.2', '0.4', '0.6', '0.8', '1.0']) expect(t).toContain(l);
  });

  it('one path per series whose points match the scale within 0.5 px', () => {
    // the nice domains, by hand: x 0..100, y pinned to 0..1
    expect(L.x.domain).toEqual([0, 100]);
    expect(L.y.domain).toEqual([0, 1]);
    const { plot } = L;
    const X = (v: number) => plot.x + (v / 100) * plot.w;
    const Y = (v: number) => plot.y + plot.h - v * plot.h;
    const paths = seriesPaths(root);
    expect(paths).toHaveLength(2);
    spec.series.forEach((s, k) => {
      const runs = parsePathD(paths[k].attrs.d);
      expect(runs).toHaveLength(1);
      expect(runs[0]).toHaveLength(s.x.length);
      runs[0].forEach(([px, py], i) => {
        expect(Math.abs(px - X(s.x[i]))).toBeLessThanOrEqual(0.5);
        expect(Math.abs(py - Y(s.y[i]))).toBeLessThanOrEqual(0.5);
      });
      expect(paths[k].attrs.stroke.toLowerCase()).toBe(PALETTE[k].toLowerCase());
    });
    expect(paths[1].attrs['stroke-dasharray']).toBeTruthy();
    expect(paths[0].attrs['stroke-dasharray']).toBeUndefined();
  });

  it('draws the spread band as a translucent closed path through hi then lo', () => {
    const bands = findAll(root, (e) => e.name === 'path' && e.attrs.class === 'band');
    expect(bands).toHaveLength(1);
    expect(Number(bands[0].attrs['fill-opacity'])).toBeGreaterThan(0);
    expect(Number(bands[0].attrs['fill-opacity'])).toBeLessThan(1);
    const [run] = parsePathD(bands[0].attrs.d);
    expect(run).toHaveLength(22);
    const Y = (v: number) => L.plot.y + L.plot.h - v * L.plot.h;
    expect(Math.abs(run[0][1] - Y(0.3))).toBeLessThanOrEqual(0.5);
    expect(Math.abs(run[21][1] - Y(0.1))).toBeLessThanOrEqual(0.5);
  });

  it('clips series to the plot area', () => {
    const clipId = /url\(#([^)]+)\)/.exec(seriesPaths(root)[0].attrs['clip-path'])?.[1];
    const clip = findAll(root, (e) => e.name === 'clipPath' && e.attrs.id === clipId);
    expect(clip).toHaveLength(1);
    const r = clip[0].children[0].attrs;
    expect([Number(r.x), Number(r.y), Number(r.width), Number(r.height)]).toEqual([L.plot.x, L.plot.y, L.plot.w, L.plot.h]);
  });

  it('NaN gaps split the path; an isolated point becomes a marker', () => {
    const y = [0.1, 0.2, 0.3, NaN, 0.5, 0.6, NaN, 0.8, NaN, 0.9, 1];
    const s2: ChartSpec = { ...spec, series: [{ name: 'gappy', x: xs, y }] };
    const r = parseXml(lineChartSvg(s2));
    const runs = parsePathD(seriesPaths(r)[0].attrs.d);
    expect(runs.map((run) => run.length)).toEqual([3, 2, 1, 2]);
    const markers = findAll(r, (e) => e.name === 'circle' && e.attrs.class === 'marker');
    expect(markers).toHaveLength(1);
    const L2 = chartLayout(s2);
    expect(Math.abs(Number(markers[0].attrs.cx) - L2.x.scale(70))).toBeLessThanOrEqual(0.5);
    expect(Math.abs(Number(markers[0].attrs.cy) - L2.y.scale(0.8))).toBeLessThanOrEqual(0.5);
  });

  it('empty input: axes plus "no data"', () => {
    for (const series of [[], [{ name: 'all nan', x: [1, 2], y: [NaN, NaN] }]]) {
      const r = parseXml(lineChartSvg({ title: '', xLabel: 'x', yLabel: 'y', series }));
      expect(texts(r)).toContain('no data');
      expect(findAll(r, (e) => e.name === 'line' && e.attrs.class === 'axis')).toHaveLength(2);
      expect(seriesPaths(r).every((p) => p.attrs.d === '')).toBe(true);
    }
  });

  it('drops characters XML forbids', () => {
    const r = parseXml(lineChartSvg({ ...spec, title: 'bad\u0001chars\uD800here' }));
    expect(texts(r)).toContain('badcharshere');
  });
});

describe('gridSvg', () => {
  it('puts several charts in one document, offset into their cells', () => {
    const small = { ...spec, width: 400, height: 300 };
    const root = parseXml(gridSvg([small, small, { ...small, series: [] }], 2));
    expect(root.name).toBe('svg');
    expect([root.attrs.width, root.attrs.height, root.attrs.viewBox]).toEqual(['800', '600', '0 0 800 600']);
    expect(findAll(root, (e) => e.name === 'g' && e.attrs.class === 'chart')).toHaveLength(3);
    const paths = seriesPaths(root);
    expect(paths).toHaveLength(4);
    const a = parsePathD(paths[0].attrs.d)[0][0];
    const b = parsePathD(paths[2].attrs.d)[0][0];
    expect(b[0] - a[0]).toBeCloseTo(400, 5);
    expect(b[1]).toBeCloseTo(a[1], 5);
    expect(texts(root)).toContain('no data');
  });
});

describe('chartLayout domains', () => {
  const base = { title: 't', xLabel: 'x', yLabel: 'y' };
  it('extends the data range to nice ticks, keeps yMin/yMax exactly', () => {
    const L = chartLayout({ ...base, series: [{ name: 'a', x: [3, 97], y: [0.13, 0.71] }] });
    expect(L.x.domain).toEqual([0, 100]);
    expect(L.y.domain[0]).toBeLessThanOrEqual(0.13);
    expect(L.y.domain[1]).toBeGreaterThanOrEqual(0.71);
    const F = chartLayout({ ...base, yMin: 0.05, yMax: 0.95, series: [{ name: 'a', x: [3, 97], y: [0.13, 0.71] }] });
    expect(F.y.domain).toEqual([0.05, 0.95]);
    expect(F.y.ticks.every((t) => t >= 0.05 && t <= 0.95)).toBe(true);
    expect(F.y.scale(0.05)).toBe(F.plot.y + F.plot.h);
    expect(F.y.scale(0.95)).toBe(F.plot.y);
  });
  it('band values widen the y range; contradictory yMin >= yMax is ignored', () => {
    const L = chartLayout({ ...base, series: [{ name: 'a', x: [0, 1], y: [0.5, 0.5], lo: [-2, 0], hi: [0.6, 3] }] });
    expect(L.y.domain[0]).toBeLessThanOrEqual(-2);
    expect(L.y.domain[1]).toBeGreaterThanOrEqual(3);
    const C = chartLayout({ ...base, yMin: 1, yMax: 0, series: [{ name: 'a', x: [0, 1], y: [0.2, 0.4] }] });
    expect(C.y.domain[0]).toBeLessThanOrEqual(0.2);
    expect(C.y.domain[1]).toBeGreaterThanOrEqual(0.4);
  });
});
