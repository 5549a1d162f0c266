/** Learning-curve plots of a run (SVG and PNG, pure JS) and the comparison plot of several runs. */
import * as fs from 'fs';
import * as path from 'path';
import { gridPng, gridSvg, lineChartPng, lineChartSvg, type ChartSpec, type Series } from '../plot/index';
import { meanInterval } from '../stats/index';
import { readMetrics, type EpisodeMetric, type EvalMetric } from './runner';

/**
 * Trailing moving average of 0/1 successes. Only episodes with a full window get a value: a
 * shorter window would average one or two games and spike to 0 or 1 at the start of a curve.
 * out[i] averages xs[i-window+1 .. i]; the first window-1 entries are NaN (no point drawn).
 */
export function movingAverage(xs: number[], window: number): number[] {
  const out: number[] = [];
  let s = 0;
  for (let i = 0; i < xs.length; i++) {
    s += xs[i];
    if (i >= window) s -= xs[i - window];
    out.push(i + 1 >= window ? s / window : NaN);
  }
  return out;
}

/** The moving-average window for a run of n training episodes (5 to 50, about n/10). */
export function trainWindow(n: number): number {
  return Math.max(5, Math.min(50, Math.round(n / 10)));
}

interface RunCurves {
  window: number;
  /** Training episode numbers (1-based) and the moving average at each. */
  x: number[];
  y: number[];
  /** Per split: evaluation points (training episodes done, success). */
  evals: Map<string, { x: number[]; y: number[] }>;
}

function runCurves(dir: string, window?: number): RunCurves {
  const metrics = readMetrics(dir);
  const eps = metrics.filter((m): m is EpisodeMetric => m.kind === 'episode' && m.source === 'train');
  const w = window ?? trainWindow(eps.length);
  const evals = new Map<string, { x: number[]; y: number[] }>();
  for (const m of metrics) {
    if (m.kind !== 'eval') continue;
    const e = evals.get(m.split) ?? { x: [], y: [] };
    e.x.push(m.episode);
    e.y.push(m.success);
    evals.set(m.split, e);
  }
  return { window: w, x: eps.map((e) => e.episode + 1), y: movingAverage(eps.map((e) => (e.won ? 1 : 0)), w), evals };
}

export function runSeries(dir: string, label?: string): { train: Series; evals: Series[] } {
  const c = runCurves(dir);
  const train: Series = { name: `${label ? label + ' ' : ''}train (moving avg ${c.window})`, x: c.x, y: c.y };
  const evals = [...c.evals.entries()].map(([split, e]) => ({
    name: `${label ? label + ' ' : ''}${split}`,
    x: e.x,
    y: e.y,
    dashed: true,
    markers: true,
  }));
  return { train, evals };
}

function chartOf(title: string, series: Series[]): ChartSpec {
  // yInset: a curve at 0 % or 100 % stays visible above the x axis / below the frame.
  return { title, xLabel: 'training episodes', yLabel: 'success rate', series, yMin: 0, yMax: 1, yInset: 6 };
}

/** learning-curve.svg / .png in a run directory. */
export function writeRunPlots(dir: string, title: string): void {
  const { train, evals } = runSeries(dir);
  const spec = chartOf(title, [train, ...evals]);
  fs.writeFileSync(path.join(dir, 'learning-curve.svg'), lineChartSvg(spec));
  fs.writeFileSync(path.join(dir, 'learning-curve.png'), lineChartPng(spec));
}

/**
 * Mean over seeds, point by point, with the 95 % t-interval as the band (no band at points that
 * fewer than two seeds reach). xs[s] and ys[s] are seed s's curve; points are matched by x.
 */
export function meanBand(xs: number[][], ys: number[][]): { x: number[]; y: number[]; lo: number[]; hi: number[]; n: number[] } {
  const at = new Map<number, number[]>();
  xs.forEach((xr, s) =>
    xr.forEach((x, i) => {
      const v = ys[s][i];
      if (!Number.isFinite(x) || !Number.isFinite(v)) return;
      const list = at.get(x) ?? [];
      list.push(v);
      at.set(x, list);
    }),
  );
  const x = [...at.keys()].sort((a, b) => a - b);
  const out = { x, y: [] as number[], lo: [] as number[], hi: [] as number[], n: [] as number[] };
  for (const v of x) {
    const ci = meanInterval(at.get(v)!);
    out.y.push(ci.mean);
    out.lo.push(ci.n >= 2 ? Math.max(0, ci.lo) : NaN);
    out.hi.push(ci.n >= 2 ? Math.min(1, ci.hi) : NaN);
    out.n.push(ci.n);
  }
  return out;
}

/**
 * The comparison plot. Runs with the same label are seeds of one group (an agent, or a sweep
 * cell's configuration): the first chart shows every group's training curve as the mean over
 * its seeds with a 95 % band; then one chart per group with its training and evaluation curves
 * (evaluation points marked), each also a mean ± band where the group has several seeds.
 */
export function writeComparePlots(dirs: string[], labels: string[], outBase: string): void {
  const groups = new Map<string, string[]>();
  dirs.forEach((d, i) => groups.set(labels[i], [...(groups.get(labels[i]) ?? []), d]));
  // One window for all runs so that the curves are comparable.
  const lengths = dirs.map((d) => readMetrics(d).filter((m) => m.kind === 'episode' && (m as EpisodeMetric).source === 'train').length);
  const window = trainWindow(Math.max(0, ...lengths));
  const trainSeries: Series[] = [];
  const groupCharts: ChartSpec[] = [];
  for (const [label, ds] of groups) {
    const curves = ds.map((d) => runCurves(d, window));
    const seeds = ds.length > 1 ? ` (mean of ${ds.length} seeds, 95% band)` : '';
    const t = meanBand(curves.map((c) => c.x), curves.map((c) => c.y));
    const train: Series = { name: `${label} train${seeds}`, x: t.x, y: t.y, ...(ds.length > 1 ? { lo: t.lo, hi: t.hi } : {}) };
    trainSeries.push(train);
    const splits = [...new Set(curves.flatMap((c) => [...c.evals.keys()]))];
    const evals: Series[] = splits.map((split) => {
      const per = curves.map((c) => c.evals.get(split) ?? { x: [], y: [] });
      const e = meanBand(per.map((p) => p.x), per.map((p) => p.y));
      return { name: `eval ${split}${seeds}`, x: e.x, y: e.y, ...(ds.length > 1 ? { lo: e.lo, hi: e.hi } : {}), dashed: true, markers: true };
    });
    groupCharts.push(chartOf(label, [{ ...train, name: `train (moving avg ${window})${seeds}` }, ...evals]));
  }
  const charts = [chartOf(`training success (moving avg ${window})`, trainSeries), ...groupCharts];
  const cols = Math.min(3, charts.length);
  fs.writeFileSync(`${outBase}.svg`, gridSvg(charts, cols));
  fs.writeFileSync(`${outBase}.png`, gridPng(charts, cols));
}
