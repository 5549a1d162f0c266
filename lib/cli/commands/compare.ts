/** memq compare DIR...: a side-by-side table of runs and a comparison plot. */
import * as fs from 'fs';
import * as path from 'path';
import { CliError, formatHelp, parseArgs, type Command, type FlagSpec } from '../args';
import type { RunSummary } from '../../agent/runner';
import { writeComparePlots } from '../../agent/plots';
import { checkOutputFile, makeDir, readJsonFile } from '../paths';
import { expandRunDirs as expandRunDirsOf } from '../runDirs';

const spec: Record<string, FlagSpec> = {
  out: { kind: 'string', help: 'base path of the comparison plot (.svg and .png)', default: 'memq-compare' },
  json: { kind: 'boolean', help: 'print JSON' },
  help: { kind: 'boolean', help: 'show this help' },
};

const pct = (x: number | undefined) => (x === undefined ? '-' : `${(100 * x).toFixed(1)}%`);

/** Mean and sample standard deviation. */
export function meanSd(xs: number[]): { mean: number; sd: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd };
}

/** One row per run, then (with several seeds) mean ± sd per agent. */
export function summaryTable(summaries: RunSummary[]): string {
  const splits = [...new Set(summaries.flatMap((s) => Object.keys(s.evals)))];
  const headers = ['agent', 'seed', 'train', 'train(last50)', ...splits, 'episodes', 'memory', 'wall', 'status'];
  const rows: string[][] = summaries.map((s) => [
    s.agent, String(s.seed), pct(s.trainSuccess), pct(s.trainSuccessLast), ...splits.map((sp) => pct(s.evals[sp]?.success)),
    String(s.episodes), String(s.memory), `${s.wallSeconds.toFixed(0)}s`, s.status,
  ]);
  const agents = [...new Set(summaries.map((s) => s.agent))];
  if (summaries.length > agents.length) {
    for (const a of agents) {
      const ss = summaries.filter((s) => s.agent === a);
      const ms = (f: (s: RunSummary) => number | undefined) => {
        const xs = ss.map(f).filter((x): x is number => x !== undefined);
        if (!xs.length) return '-';
        const { mean, sd } = meanSd(xs);
        return `${(100 * mean).toFixed(1)}±${(100 * sd).toFixed(1)}%`;
      };
      rows.push([`${a} (mean±sd, ${ss.length} seeds)`, '', ms((s) => s.trainSuccess), ms((s) => s.trainSuccessLast), ...splits.map((sp) => ms((s) => s.evals[sp]?.success)), '', '', '', '']);
    }
  }
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n') + '\n';
}

/** Expands run directories: a main-job directory (run.json) stands for its runs. */
export function expandRunDirs(dirs: string[]): string[] {
  return expandRunDirsOf('memq compare:', dirs);
}

export const compareCommand: Command = {
  name: 'compare',
  summary: 'side-by-side table and plot of run directories',
  async run(argv, io) {
    const { flags, positionals } = parseArgs(argv, spec, 'compare');
    if (flags.help || positionals.length === 0) {
      io.stdout(formatHelp('compare', 'DIR... [--out BASE]', spec));
      return flags.help ? 0 : 2;
    }
    const dirs = expandRunDirs(positionals);
    const base = path.resolve(flags.out);
    for (const ext of ['.svg', '.png']) checkOutputFile(`memq compare: --out ${flags.out}`, base + ext);
    const summaries: RunSummary[] = dirs.map((d) => {
      const f = path.join(d, 'summary.json');
      if (!fs.existsSync(f)) throw new CliError(`memq compare: ${d} has no summary.json (still running, or never finished a checkpoint)`);
      const s = readJsonFile(`memq compare: ${d}`, f) as RunSummary;
      if (!s || typeof s !== 'object' || typeof s.agent !== 'string' || !s.evals || typeof s.evals !== 'object') {
        throw new CliError(`memq compare: ${f} is not a memq run summary (expected the summary.json memq run writes)`);
      }
      return s;
    });
    makeDir(`memq compare: --out ${flags.out}`, path.dirname(base));
    const labels = summaries.map((s, i) => `${s.agent} s${s.seed}${dirs.length > new Set(summaries.map((x) => `${x.agent}${x.seed}`)).size ? ` #${i}` : ''}`);
    writeComparePlots(dirs, labels, base);
    if (flags.json) io.stdout(JSON.stringify({ runs: summaries.map((s, i) => ({ dir: dirs[i], ...s })) }, null, 2) + '\n');
    else io.stdout(summaryTable(summaries) + `\nplot: ${flags.out}.svg, ${flags.out}.png\n`);
    return 0;
  },
};
