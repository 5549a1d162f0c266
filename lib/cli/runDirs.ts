/**
 * Run directories as the CLI's read-side commands (eval, compare) take them: a run directory
 * (config.json) or a run root written by `memq run` (run.json listing its runs), which stands
 * for every run in it. Problems are CliErrors naming the argument.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CliError } from './args';
import { readJsonFile } from './paths';

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
