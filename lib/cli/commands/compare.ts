/** memq compare DIR...: a side-by-side table of runs and a comparison plot. */
import * as fs from 'fs';
import * as path from 'path';
import { CliError, formatHelp, parseArgs, type Command, type FlagSpec } from '../args';
import type { RunSummary } from '../../agent/runner';
import { writeComparePlots } from '../../agent/plots';
import { checkOutputFile, makeDir, readJsonFile } from '../paths';
import { expandRunDirs as expandRunDirsOf, expandRunGroups, finalEvalGames } from '../runDirs';
import { experimentTable, formatExperimentTable, type ExperimentTable, type RunRecord } from '../../stats/experiments';
import { mean as meanOf, sampleVariance } from '../../stats/index';

const spec: Record<string, FlagSpec> = {
  target: { kind: 'string', help: "the group compared with the best other group per split (relative improvement, bootstrap CI, Welch and paired tests)", defaultText: "memq-em when present, else memq, else none" },
  baseline: { kind: 'string[]', help: 'groups the target is compared with (repeatable)', defaultText: 'every other group' },
  resamples: { kind: 'int', help: 'bootstrap resamples', default: 10000, check: (v) => (v >= 100 && v <= 1e6 ? undefined : 'must be in [100, 1000000]') },
  out: { kind: 'string', help: 'base path of the comparison plot (.svg and .png)', default: 'memq-compare' },
  json: { kind: 'boolean', help: 'print JSON' },
  help: { kind: 'boolean', help: 'show this help' },
};

const pct = (x: number | undefined) => (x === undefined ? '-' : `${(100 * x).toFixed(1)}%`);

/** One row per run (labelled by its group, default its agent), then (with several seeds) mean ± sd per group. */
export function summaryTable(summaries: RunSummary[], groupsIn?: string[]): string {
  const groupOf = (s: RunSummary) => groupsIn?.[summaries.indexOf(s)] ?? s.agent;
  const splits = [...new Set(summaries.flatMap((s) => Object.keys(s.evals)))];
  const headers = ['agent', 'seed', 'train', 'train(last50)', ...splits, 'episodes', 'memory', 'wall', 'status'];
  const rows: string[][] = summaries.map((s) => [
    groupOf(s), String(s.seed), pct(s.trainSuccess), pct(s.trainSuccessLast), ...splits.map((sp) => pct(s.evals[sp]?.success)),
    String(s.episodes), String(s.memory), `${s.wallSeconds.toFixed(0)}s`, s.status,
  ]);
  const agents = [...new Set(summaries.map(groupOf))];
  if (summaries.length > agents.length) {
    for (const a of agents) {
      const ss = summaries.filter((s) => groupOf(s) === a);
      const ms = (f: (s: RunSummary) => number | undefined) => {
        const xs = ss.map(f).filter((x): x is number => x !== undefined);
        if (!xs.length) return '-';
        const mean = meanOf(xs);
        const sd = xs.length > 1 ? Math.sqrt(sampleVariance(xs)) : 0;
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

/** The statistics table over groups (seeds of one group averaged), with the target's comparisons. */
export function groupTable(
  runs: { dir: string; group: string; summary: RunSummary }[], opts: { target?: string; baselines?: string[]; resamples?: number } = {},
): ExperimentTable {
  const records: RunRecord[] = runs
    .filter((r) => r.summary.status === 'complete')
    .map((r) => {
      const success: Record<string, number> = {};
      for (const [split, e] of Object.entries(r.summary.evals)) success[split] = e.success;
      return { group: r.group, seed: r.summary.seed, success, games: finalEvalGames(r.dir, r.summary.episodes, Object.keys(success)) };
    });
  const groups = new Set(records.map((r) => r.group));
  const target = opts.target ?? (groups.has('memq-em') ? 'memq-em' : groups.has('memq') && groups.size > 1 ? 'memq' : undefined);
  return experimentTable(records, { target, baselines: opts.baselines?.length ? opts.baselines : undefined, resamples: opts.resamples });
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
    const grouped = expandRunGroups('memq compare:', positionals);
    const dirs = grouped.map((g) => g.dir);
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
    // Runs of one group (an agent, or a sweep cell's / the main job's configuration) are its seeds.
    const groups = summaries.map((s, i) => grouped[i].group ?? s.agent);
    writeComparePlots(dirs, groups, base);
    let table: ExperimentTable;
    try {
      table = groupTable(summaries.map((s, i) => ({ dir: dirs[i], group: groups[i], summary: s })), { target: flags.target, baselines: flags.baseline, resamples: flags.resamples });
    } catch (e) {
      if (e instanceof RangeError) throw new CliError(`memq compare: ${e.message}`);
      throw e;
    }
    if (flags.json) io.stdout(JSON.stringify({ runs: summaries.map((s, i) => ({ dir: dirs[i], group: groups[i], ...s })), table }, null, 2) + '\n');
    else io.stdout(summaryTable(summaries, groups) + '\n' + formatExperimentTable(table) + `\nplot: ${flags.out}.svg, ${flags.out}.png\n`);
    return 0;
  },
};
