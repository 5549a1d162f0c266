/** Chart layout: turns a ChartSpec into positioned primitives (axes, ticks, legend, series). */
import { rgba, seriesColor } from './color';
import { CAP_H, fitText, textWidth } from './font';
import { formatTicks, linearScale, niceTicks } from './scale';
import type { ChartSpec, Prim, Pt, Rect, Rgba } from './types';

export const DEFAULT_WIDTH = 800;
export const DEFAULT_HEIGHT = 480;

export const STYLE = {
  background: rgba(255, 255, 255),
  text: rgba(34, 34, 34),
  muted: rgba(120, 120, 120),
  axis: rgba(85, 85, 85),
  grid: rgba(230, 230, 230),
  lineWidth: 2,
  bandAlpha: 0.2,
  dash: [8, 5],
  markerRadius: 3.5,
  pad: 12,
  tickLen: 5,
};

export interface Axis {
  domain: [number, number];
  ticks: number[];
  labels: string[];
  /** data value → pixel */
  scale: (v: number) => number;
}

export interface ChartLayout {
  width: number;
  height: number;
  /** the data area, in pixels relative to the chart's top-left corner */
  plot: Rect;
  x: Axis;
  y: Axis;
  /** scale of the body text (ticks, labels, legend) and of the title */
  fontSize: number;
  titleSize: number;
}

interface Extent {
  min: number;
  max: number;
}

function extents(spec: ChartSpec): { x: Extent; y: Extent } {
  const x = { min: Infinity, max: -Infinity };
  const y = { min: Infinity, max: -Infinity };
  const add = (e: Extent, v: number) => {
    if (Number.isFinite(v)) {
      e.min = Math.min(e.min, v);
      e.max = Math.max(e.max, v);
    }
  };
  for (const s of spec.series) {
    const n = Math.min(s.x.length, s.y.length);
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(s.x[i])) continue;
      if (Number.isFinite(s.y[i])) {
        add(x, s.x[i]);
        add(y, s.y[i]);
      }
      if (s.lo && s.hi && Number.isFinite(s.lo[i]) && Number.isFinite(s.hi[i])) {
        add(x, s.x[i]);
        add(y, s.lo[i]);
        add(y, s.hi[i]);
      }
    }
  }
  return { x, y };
}

/** Nice ticks over the data extent; fixed ends (yMin/yMax) are kept exactly. */
function axisTicks(e: Extent, maxIntervals: number, fixedMin?: number, fixedMax?: number) {
  let fMin = Number.isFinite(fixedMin) ? (fixedMin as number) : undefined;
  let fMax = Number.isFinite(fixedMax) ? (fixedMax as number) : undefined;
  if (fMin !== undefined && fMax !== undefined && fMin >= fMax) fMin = fMax = undefined; // contradictory: ignore both
  let lo = fMin ?? e.min;
  let hi = fMax ?? e.max;
  if (!Number.isFinite(lo) && !Number.isFinite(hi)) [lo, hi] = [0, 1];
  else if (!Number.isFinite(lo)) lo = Math.min(0, hi - 1);
  else if (!Number.isFinite(hi)) hi = Math.max(1, lo + 1);
  if (lo > hi) [lo, hi] = [hi, lo];
  if (lo === hi) {
    const d = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    if (fMin === undefined) lo -= d;
    if (fMax === undefined || fMin !== undefined) hi += d;
  }
  const t = niceTicks(lo, hi, maxIntervals);
  const d0 = fMin ?? t.min;
  const d1 = fMax !== undefined && fMax > d0 ? fMax : Math.max(t.max, d0 === t.max ? d0 + t.step : t.max);
  const tol = t.step * 1e-6;
  const ticks = t.ticks.filter((v) => v >= d0 - tol && v <= d1 + tol);
  return { domain: [d0, d1] as [number, number], ticks, labels: formatTicks(ticks, t.step) };
}

interface LegendItem {
  name: string;
  x: number;
  row: number;
}

const SWATCH = 22;

function legendFlow(names: string[], width: number, fs: number, pad: number): { items: LegendItem[]; rows: number } {
  const avail = width - 2 * pad;
  const rowsOf: Array<Array<{ name: string; w: number }>> = [[]];
  let used = 0;
  for (const raw of names) {
    const name = fitText(raw, fs, avail - SWATCH - 6);
    const w = SWATCH + 6 + textWidth(name, fs);
    const cur = rowsOf[rowsOf.length - 1];
    const need = cur.length ? used + 18 + w : w;
    if (cur.length && need > avail) {
      rowsOf.push([{ name, w }]);
      used = w;
    } else {
      cur.push({ name, w });
      used = need;
    }
  }
  const items: LegendItem[] = [];
  rowsOf.forEach((row, r) => {
    const total = row.reduce((a, it) => a + it.w, 0) + 18 * Math.max(0, row.length - 1);
    let x = Math.round((width - total) / 2);
    for (const it of row) {
      items.push({ name: it.name, x, row: r });
      x += it.w + 18;
    }
  });
  return { items, rows: names.length ? rowsOf.length : 0 };
}

function sizes(spec: ChartSpec) {
  const width = Math.max(120, Math.round(spec.width ?? DEFAULT_WIDTH));
  const height = Math.max(100, Math.round(spec.height ?? DEFAULT_HEIGHT));
  const fs = width >= 320 && height >= 200 ? 2 : 1;
  const pad = STYLE.pad;
  let ts = fs + 1; // one step larger than the body text, unless that does not fit (then it is truncated)
  if (textWidth(spec.title, ts) > width - 2 * pad) ts = fs;
  return { width, height, fs, ts, pad };
}

/** Where everything goes. Pure function of the spec; the tests use it to know where pixels should be. */
export function chartLayout(spec: ChartSpec): ChartLayout & { legend: LegendItem[]; legendTop: number; rowH: number } {
  const { width, height, fs, ts, pad } = sizes(spec);
  const cap = CAP_H * fs;
  const tick = STYLE.tickLen;
  const rowH = cap + 10;
  const { items, rows } = legendFlow(
    spec.series.map((s) => s.name),
    width,
    fs,
    pad,
  );
  const titleBottom = pad + (spec.title ? CAP_H * ts : 0);
  const legendTop = titleBottom + 8;
  const top = legendTop + rows * rowH + (rows ? 14 : 10);
  const bottom = height - pad - (spec.xLabel ? cap + 2 * fs + 10 : 0) - cap - 6 - tick;
  const ph = Math.max(10, bottom - top);
  const ext = extents(spec);
  const y = axisTicks(ext.y, Math.min(10, Math.max(3, Math.floor(ph / 45))), spec.yMin, spec.yMax);
  const yLabelW = Math.max(0, ...y.labels.map((l) => textWidth(l, fs)));
  const left = pad + (spec.yLabel ? cap + 2 * fs + 12 : 0) + yLabelW + 6 + tick;
  const right = width - pad - 3 * 6 * fs;
  const pw = Math.max(10, right - left);
  let nx = Math.min(10, Math.max(2, Math.floor(pw / 60)));
  let x = axisTicks(ext.x, nx);
  // fewer ticks until the labels do not collide
  while (nx > 1) {
    const lw = Math.max(0, ...x.labels.map((l) => textWidth(l, fs)));
    if (pw / Math.max(1, x.ticks.length - 1) >= lw + 16 || x.ticks.length <= 2) break;
    nx--;
    x = axisTicks(ext.x, nx);
  }
  const plot: Rect = { x: left, y: top, w: pw, h: ph };
  const inset = Math.max(0, Math.min(ph / 4, spec.yInset ?? 0));
  return {
    width,
    height,
    plot,
    fontSize: fs,
    titleSize: ts,
    x: { ...x, scale: linearScale(x.domain[0], x.domain[1], left, left + pw) },
    y: { ...y, scale: linearScale(y.domain[0], y.domain[1], top + ph - inset, top + inset) },
    legend: items,
    legendTop,
    rowH,
  };
}

/** Split a series into runs of consecutive finite points (NaN / ±Infinity break the line). */
export function finiteRuns(xs: number[], ys: number[]): number[][] {
  const runs: number[][] = [];
  let cur: number[] = [];
  const n = Math.min(xs.length, ys.length);
  for (let i = 0; i < n; i++) {
    if (Number.isFinite(xs[i]) && Number.isFinite(ys[i])) cur.push(i);
    else if (cur.length) {
      runs.push(cur);
      cur = [];
    }
  }
  if (cur.length) runs.push(cur);
  return runs;
}

const half = (v: number) => Math.floor(v) + 0.5; // crisp 1-px lines sit on pixel centres

/** All primitives of one chart, offset by (ox, oy). */
export function chartPrims(spec: ChartSpec, ox = 0, oy = 0): Prim[] {
  const L = chartLayout(spec);
  const { plot, fontSize: fs } = L;
  const cap = CAP_H * fs;
  const out: Prim[] = [];
  const X = (v: number) => ox + L.x.scale(v);
  const Y = (v: number) => oy + L.y.scale(v);
  const px = ox + plot.x;
  const py = oy + plot.y;
  const clip: Rect = { x: px, y: py, w: plot.w, h: plot.h };
  const text = (x: number, y: number, s: string, size: number, anchor: 'start' | 'middle' | 'end', color: Rgba, cls: string, rotate = false): void => {
    if (s) out.push({ t: 'text', x: Math.round(x), y: Math.round(y), text: s, size, anchor, color, rotate, cls });
  };

  // title
  text(ox + L.width / 2, oy + STYLE.pad + CAP_H * L.titleSize, fitText(spec.title, L.titleSize, L.width - 2 * STYLE.pad), L.titleSize, 'middle', STYLE.text, 'title');

  // grid + ticks + tick labels
  L.y.ticks.forEach((v, i) => {
    const y = Math.min(py + plot.h - 0.5, half(Y(v))); // keep the last grid line inside the plot
    out.push({ t: 'line', x1: px, y1: y, x2: px + plot.w, y2: y, color: STYLE.grid, width: 1, cls: 'grid' });
    out.push({ t: 'line', x1: px - STYLE.tickLen, y1: y, x2: px, y2: y, color: STYLE.axis, width: 1, cls: 'tick' });
    text(px - STYLE.tickLen - 6, y + cap / 2, L.y.labels[i], fs, 'end', STYLE.text, 'tick-label');
  });
  L.x.ticks.forEach((v, i) => {
    const x = Math.min(px + plot.w - 0.5, half(X(v)));
    out.push({ t: 'line', x1: x, y1: py, x2: x, y2: py + plot.h, color: STYLE.grid, width: 1, cls: 'grid' });
    out.push({ t: 'line', x1: x, y1: py + plot.h, x2: x, y2: py + plot.h + STYLE.tickLen, color: STYLE.axis, width: 1, cls: 'tick' });
    text(x, py + plot.h + STYLE.tickLen + 6 + cap, L.x.labels[i], fs, 'middle', STYLE.text, 'tick-label');
  });
  // axes
  out.push({ t: 'line', x1: px + 0.5, y1: py, x2: px + 0.5, y2: py + plot.h, color: STYLE.axis, width: 1, cls: 'axis' });
  out.push({ t: 'line', x1: px, y1: py + plot.h - 0.5, x2: px + plot.w, y2: py + plot.h - 0.5, color: STYLE.axis, width: 1, cls: 'axis' });
  // axis labels
  text(px + plot.w / 2, oy + L.height - STYLE.pad - 2 * fs, fitText(spec.xLabel, fs, L.width - 2 * STYLE.pad), fs, 'middle', STYLE.text, 'axis-label');
  text(ox + STYLE.pad + cap, py + plot.h / 2, fitText(spec.yLabel, fs, plot.h), fs, 'middle', STYLE.text, 'axis-label', true);

  const colors = spec.series.map((s, i) => seriesColor(s.color, i));
  const anyPoint = spec.series.some((s) => finiteRuns(s.x, s.y).length > 0);

  // bands under all lines
  spec.series.forEach((s, i) => {
    if (!s.lo || !s.hi) return;
    const lo = s.lo;
    const hi = s.hi;
    const ok = s.x.map((x, j) => Number.isFinite(x) && Number.isFinite(lo[j]) && Number.isFinite(hi[j]));
    const runs: Pt[][] = [];
    let j = 0;
    while (j < s.x.length) {
      if (!ok[j]) {
        j++;
        continue;
      }
      const idx: number[] = [];
      while (j < s.x.length && ok[j]) idx.push(j++);
      if (idx.length < 2) continue;
      runs.push([...idx.map((k): Pt => [X(s.x[k]), Y(hi[k])]), ...idx.reverse().map((k): Pt => [X(s.x[k]), Y(lo[k])])]);
    }
    if (runs.length) out.push({ t: 'poly', runs, fill: { ...colors[i], a: STYLE.bandAlpha }, clip, cls: 'band', name: s.name });
  });
  // lines + markers for isolated points
  spec.series.forEach((s, i) => {
    const runs = finiteRuns(s.x, s.y).map((r) => r.map((k): Pt => [X(s.x[k]), Y(s.y[k])]));
    out.push({ t: 'path', runs, color: colors[i], width: STYLE.lineWidth, dash: s.dashed ? STYLE.dash : undefined, clip, cls: 'series', name: s.name });
    for (const r of runs) {
      if (r.length !== 1 && !s.markers) continue;
      for (const p of r) out.push({ t: 'dot', x: p[0], y: p[1], r: STYLE.markerRadius, fill: colors[i], clip, cls: 'marker', name: s.name });
    }
  });
  if (!anyPoint) text(px + plot.w / 2, py + plot.h / 2 + cap / 2, 'no data', fs, 'middle', STYLE.muted, 'no-data');

  // legend
  L.legend.forEach((it, k) => {
    const s = spec.series[k];
    const cy = oy + L.legendTop + it.row * L.rowH + L.rowH / 2;
    const x0 = ox + it.x;
    if (s.lo && s.hi) out.push({ t: 'rect', x: x0, y: Math.round(cy - cap / 2 - 2), w: SWATCH, h: cap + 4, fill: { ...colors[k], a: STYLE.bandAlpha }, cls: 'legend-band' });
    const onlyPoints = finiteRuns(s.x, s.y).every((r) => r.length === 1);
    if (onlyPoints) out.push({ t: 'dot', x: x0 + SWATCH / 2, y: cy, r: STYLE.markerRadius + 0.5, fill: colors[k], cls: 'legend-swatch' });
    else out.push({ t: 'line', x1: x0, y1: half(cy), x2: x0 + SWATCH, y2: half(cy), color: colors[k], width: 3, dash: s.dashed ? [6, 3] : undefined, cls: 'legend-swatch' });
    text(x0 + SWATCH + 6, cy + cap / 2, it.name, fs, 'start', STYLE.text, 'legend-label');
  });
  return out;
}
