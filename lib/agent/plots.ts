/** Learning-curve plots of a run (SVG and PNG, pure JS) and the comparison plot of several runs. */
import * as fs from 'fs';
import * as path from 'path';
import { gridPng, gridSvg, lineChartPng, lineChartSvg, type ChartSpec, type Series } from '../plot/index';
import { readMetrics, type EpisodeMetric, type EvalMetric } from './runner';

/** Moving average of 0/1 successes over a trailing window. */
function movingAverage(xs: number[], window: number): number[] {
  const out: number[] = [];
  let s = 0;
  for (let i = 0; i < xs.length; i++) {
    s += xs[i];
    if (i >= window) s -= xs[i - window];
    out.push(s / Math.min(i + 1, window));
  }
  return out;
}

export function runSeries(dir: string, label?: string): { train: Series; evals: Series[] } {
  const metrics = readMetrics(dir);
  const eps = metrics.filter((m): m is EpisodeMetric => m.kind === 'episode' && m.source === 'train');
  const window = Math.max(5, Math.min(50, Math.round(eps.length / 10)));
  const train: Series = {
    name: `${label ? label + ' ' : ''}train (moving avg ${window})`,
    x: eps.map((e) => e.episode + 1),
    y: movingAverage(eps.map((e) => (e.won ? 1 : 0)), window),
  };
  const bySplit = new Map<string, EvalMetric[]>();
  for (const m of metrics) if (m.kind === 'eval') bySplit.set(m.split, [...(bySplit.get(m.split) ?? []), m]);
  const evals = [...bySplit.entries()].map(([split, ms]) => ({
    name: `${label ? label + ' ' : ''}${split}`,
    x: ms.map((m) => m.episode),
    y: ms.map((m) => m.success),
    dashed: true,
  }));
  return { train, evals };
}

function chartOf(title: string, series: Series[]): ChartSpec {
  return { title, xLabel: 'training episodes', yLabel: 'success rate', series, yMin: 0, yMax: 1 };
}

/** learning-curve.svg / .png in a run directory. */
export function writeRunPlots(dir: string, title: string): void {
  const { train, evals } = runSeries(dir);
  const spec = chartOf(title, [train, ...evals]);
  fs.writeFileSync(path.join(dir, 'learning-curve.svg'), lineChartSvg(spec));
  fs.writeFileSync(path.join(dir, 'learning-curve.png'), lineChartPng(spec));
}

/** One chart per run side by side, plus all training curves on one chart. */
export function writeComparePlots(dirs: string[], labels: string[], outBase: string): void {
  const all = dirs.map((d, i) => runSeries(d, labels[i]));
  const charts = [chartOf('training success', all.map((s) => s.train)), ...all.map((s, i) => chartOf(labels[i], [s.train, ...s.evals]))];
  const cols = Math.min(3, charts.length);
  fs.writeFileSync(`${outBase}.svg`, gridSvg(charts, cols));
  fs.writeFileSync(`${outBase}.png`, gridPng(charts, cols));
}
