/**
 * Run directories as the CLI's read-side commands (eval, compare) take them: a run directory
 * (config.json) or a run root written by `memq run` (run.json listing its runs), which stands
 * for every run in it. Problems are CliErrors naming the argument.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CliError } from './args';
import { readJsonFile } from './paths';
import { evalRecordFile } from '../agent/runner';

const EXPECTED = 'expected a run directory (with config.json) or a run root (with run.json), as memq run writes';

/** Subdirectories of dir that are run roots or run directories (to suggest when dir is neither). */
function runsBelow(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const isRun = (d: string) => fs.existsSync(path.join(d, 'config.json')) && (fs.existsSync(path.join(d, 'metrics.jsonl')) || fs.existsSync(path.join(d, 'checkpoint')));
  return names.filter((n) => fs.existsSync(path.join(dir, n, 'run.json')) || isRun(path.join(dir, n))).sort();
}

/** The run directories an argument stands for; `where` prefixes errors (e.g. "memq eval: --run"). */
export function expandRunDir(where: string, d: string): string[] {
  let st: fs.Stats;
  try {
    st = fs.statSync(d);
  } catch {
    throw new CliError(`${where} ${d}: no such directory (${EXPECTED})`);
  }
  if (!st.isDirectory()) throw new CliError(`${where} ${d}: not a directory (${EXPECTED})`);
  const mf = path.join(d, 'run.json');
  if (fs.existsSync(mf)) {
    const m = readJsonFile(`${where} ${d}`, mf) as { runs?: { dir?: unknown }[] };
    if (!m || typeof m !== 'object' || !Array.isArray(m.runs) || m.runs.some((r) => !r || typeof r.dir !== 'string')) {
      throw new CliError(`${where} ${d}: ${mf} is not a memq run manifest (expected {"version": 1, "runs": [{"agent", "seed", "dir"}, ...]})`);
    }
    return m.runs.map((r) => path.join(d, r.dir as string));
  }
  if (fs.existsSync(path.join(d, 'config.json'))) return [d];
  const below = runsBelow(d);
  const hint = below.length ? `; it holds ${below.length > 8 ? `${below.slice(0, 8).join(', ')}, ...` : below.join(', ')}: pass one of them` : '';
  throw new CliError(`${where} ${d}: not a memq run directory (no run.json or config.json)${hint}`);
}

export function expandRunDirs(where: string, dirs: string[]): string[] {
  return dirs.flatMap((d) => expandRunDir(where, d));
}

/** A run directory with its group: the manifest's `group` (sweeps, the main job), else its agent. */
export interface GroupedRun {
  dir: string;
  /** undefined when the manifest names none (the caller falls back to the run's agent). */
  group?: string;
}

/** As expandRunDirs, keeping the group each run root's manifest gives its runs. */
export function expandRunGroups(where: string, dirs: string[]): GroupedRun[] {
  return dirs.flatMap((d) => {
    const runs = expandRunDir(where, d);
    const mf = path.join(d, 'run.json');
    if (!fs.existsSync(mf)) return runs.map((dir) => ({ dir }));
    const m = readJsonFile(`${where} ${d}`, mf) as { runs: { group?: unknown }[] };
    return runs.map((dir, i) => {
      const g = m.runs[i]?.group;
      return typeof g === 'string' && g ? { dir, group: g } : { dir };
    });
  });
}

/**
 * Per-game outcomes (1 won, 0 lost) of a run's final evaluation per split, from its
 * eval-games records; a split without a complete record is left out (the table then counts
 * that seed as one game at its success rate).
 */
export function finalEvalGames(dir: string, episodes: number, splits: string[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const split of splits) {
    const file = evalRecordFile(dir, episodes, split);
    let lines: string[];
    try {
      lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim());
    } catch {
      continue;
    }
    try {
      const head = JSON.parse(lines[0]) as { games?: number };
      const games = lines.slice(1).map((l) => JSON.parse(l) as { won: boolean });
      if (typeof head.games === 'number' && games.length === head.games) out[split] = games.map((g) => (g.won ? 1 : 0));
    } catch {
      /* a damaged record: left out */
    }
  }
  return out;
}
