/**
 * Sweeps: a grid of run configurations × seeds, expanded into cells. Each cell is an ordinary
 * `memq run` directory (config.json, metrics.jsonl, summary.json, checkpoint/), so a cell is
 * started and resumed by the same code path: `memq run --resume CELL_DIR`. The sweep directory
 * holds sweep.json (the spec and its expansion) and run.json (the manifest `memq compare` and
 * `memq eval` read), and cells/<id>/ per cell. The file format is documented in docs/sweep.md.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { AGENT_NAMES, ConfigError, defaultConfig, mergeConfig, validateConfig, type AgentName, type RunConfig } from '../agent/config';
import type { RunSummary } from '../agent/runner';
import { envNames } from '../envs/registry';
import { checkSlurmSettings, type SlurmSettings } from './slurmSettings';

export class SweepError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SweepError';
  }
}

/** A sweep file (JSON). Every field but `seeds` is optional. */
export interface SweepSpec {
  version?: 1;
  /** A short name for tables and plots. */
  name?: string;
  /** Fields of config.json applied over the defaults for every cell (as `memq run --config`). */
  base?: Record<string, unknown>;
  /** Agents to run (default: base.agent, else 'memq'). */
  agents?: string[];
  /** Named configuration patches (e.g. ablations), each crossed with the grid. */
  variants?: { name: string; config: Record<string, unknown> }[];
  /** Dotted config paths → values; the cells are the cartesian product. e.g. {"memq.alpha": [0.1, 1]}. */
  grid?: Record<string, unknown[]>;
  /** Seeds: a list, or {from, count}. */
  seeds: number[] | { from: number; count: number };
  /** Cells run at once by the local executor (default: the number of cores). */
  parallel?: number;
  /** Resources per array task for the Slurm executor (docs/sweep.md; flags override them). */
  slurm?: SlurmSettings;
}

export interface SweepCell {
  /** Directory name under cells/: readable, unique, stable for the same spec. */
  id: string;
  agent: AgentName;
  seed: number;
  variant?: string;
  /** The grid point of this cell (dotted path → value). */
  params: Record<string, unknown>;
  /** The cell's group: every field but the seed (cells of one group are the seeds of one row). */
  group: string;
  config: RunConfig;
}

export interface SweepPlan {
  spec: SweepSpec;
  cells: SweepCell[];
}

const MAX_CELLS = 100000;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function seedsOf(spec: SweepSpec, where: string): number[] {
  const s = spec.seeds as unknown;
  let seeds: unknown[];
  if (Array.isArray(s)) seeds = s;
  else if (isObject(s) && Number.isInteger(s.from) && Number.isInteger(s.count) && (s.count as number) >= 1) {
    seeds = Array.from({ length: s.count as number }, (_, i) => (s.from as number) + i);
  } else {
    throw new SweepError(`${where}: 'seeds' must be a list of integers or {"from": N, "count": K}, got ${JSON.stringify(s)}`);
  }
  if (seeds.length === 0) throw new SweepError(`${where}: 'seeds' must not be empty`);
  for (const x of seeds) {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 2 ** 31 - 1) {
      throw new SweepError(`${where}: every seed must be an integer in [0, 2^31-1], got ${JSON.stringify(x)}`);
    }
  }
  if (new Set(seeds).size !== seeds.length) throw new SweepError(`${where}: 'seeds' lists a seed twice`);
  return seeds as number[];
}

/** {"memq.alpha": 0.5} → {memq: {alpha: 0.5}} (a patch for mergeConfig). */
function pathPatch(dotted: string, value: unknown): Record<string, unknown> {
  const parts = dotted.split('.');
  const out: Record<string, unknown> = {};
  let cur = out;
  for (let i = 0; i < parts.length - 1; i++) {
    const next: Record<string, unknown> = {};
    cur[parts[i]] = next;
    cur = next;
  }
  cur[parts[parts.length - 1]] = value;
  return out;
}

function valueLabel(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return crypto.createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 8);
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._=+-]/g, '_');
}

/** Checks a sweep file's fields and expands it into cells (each a validated RunConfig). */
export function expandSweep(raw: unknown, where = 'sweep file'): SweepPlan {
  if (!isObject(raw)) throw new SweepError(`${where} must be a JSON object, got ${Array.isArray(raw) ? 'an array' : raw === null ? 'null' : typeof raw}`);
  const known = ['version', 'name', 'base', 'agents', 'variants', 'grid', 'seeds', 'parallel', 'slurm'];
  for (const k of Object.keys(raw)) {
    if (!known.includes(k)) throw new SweepError(`${where}: unknown field '${k}' (known: ${known.join(', ')})`);
  }
  const spec = raw as unknown as SweepSpec;
  if (spec.version !== undefined && spec.version !== 1) throw new SweepError(`${where}: 'version' must be 1, got ${JSON.stringify(spec.version)}`);
  if (spec.name !== undefined && typeof spec.name !== 'string') throw new SweepError(`${where}: 'name' must be a string`);
  if (spec.parallel !== undefined && (!Number.isInteger(spec.parallel) || spec.parallel < 1 || spec.parallel > 256)) {
    throw new SweepError(`${where}: 'parallel' must be an integer in [1, 256], got ${JSON.stringify(spec.parallel)}`);
  }
  if (spec.slurm !== undefined) {
    try {
      checkSlurmSettings(spec.slurm, `${where}: slurm`);
    } catch (e) {
      throw new SweepError((e as Error).message);
    }
  }
  const seeds = seedsOf(spec, where);
  let base: RunConfig;
  try {
    base = spec.base === undefined ? defaultConfig() : mergeConfig(defaultConfig(), spec.base, `${where}: base`);
  } catch (e) {
    if (e instanceof ConfigError) throw new SweepError(e.message);
    throw e;
  }
  const agents = spec.agents ?? [base.agent];
  if (!Array.isArray(agents) || agents.length === 0) throw new SweepError(`${where}: 'agents' must be a non-empty list`);
  for (const a of agents) {
    if (!AGENT_NAMES.includes(a as AgentName)) throw new SweepError(`${where}: unknown agent ${JSON.stringify(a)} (known: ${AGENT_NAMES.join(', ')})`);
  }
  const variants = spec.variants ?? [];
  if (!Array.isArray(variants)) throw new SweepError(`${where}: 'variants' must be a list of {"name", "config"}`);
  const vnames = new Set<string>();
  for (const [i, v] of variants.entries()) {
    if (!isObject(v) || typeof v.name !== 'string' || !/^[A-Za-z0-9._-]{1,40}$/.test(v.name) || !isObject(v.config)) {
      throw new SweepError(`${where}: variants[${i}] must be {"name": "letters, digits . _ - (≤ 40)", "config": {...}}`);
    }
    if (vnames.has(v.name)) throw new SweepError(`${where}: variant name '${v.name}' appears twice`);
    vnames.add(v.name);
  }
  const grid = spec.grid ?? {};
  if (!isObject(grid)) throw new SweepError(`${where}: 'grid' must be an object of "dotted.path": [values]`);
  const axes = Object.entries(grid);
  for (const [k, vs] of axes) {
    if (!/^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*$/.test(k)) throw new SweepError(`${where}: grid key '${k}' must be a dotted config path like "memq.alpha"`);
    if (!Array.isArray(vs) || vs.length === 0) throw new SweepError(`${where}: grid['${k}'] must be a non-empty list of values`);
  }
  let count = agents.length * Math.max(1, variants.length) * seeds.length;
  for (const [, vs] of axes) count *= (vs as unknown[]).length;
  if (count > MAX_CELLS) throw new SweepError(`${where}: the sweep has ${count} cells, more than the limit of ${MAX_CELLS}`);

  // Cartesian product of the grid axes.
  let points: Record<string, unknown>[] = [{}];
  for (const [k, vs] of axes) {
    const next: Record<string, unknown>[] = [];
    for (const p of points) for (const v of vs as unknown[]) next.push({ ...p, [k]: v });
    points = next;
  }
  const cells: SweepCell[] = [];
  const ids = new Set<string>();
  for (const agent of agents as AgentName[]) {
    for (const variant of variants.length ? variants : [undefined]) {
      for (const params of points) {
        let cfg = base;
        try {
          if (variant) cfg = mergeConfig(cfg, variant.config, `${where}: variant '${variant.name}'`);
          for (const [k, v] of Object.entries(params)) cfg = mergeConfig(cfg, pathPatch(k, v), `${where}: grid['${k}']`);
        } catch (e) {
          if (e instanceof ConfigError) throw new SweepError(e.message);
          throw e;
        }
        const paramLabel = Object.entries(params).map(([k, v]) => `${k.split('.').pop()}=${valueLabel(v)}`).join(',');
        const group = [agent, variant?.name, paramLabel].filter(Boolean).join('-');
        for (const seed of seeds) {
          const config: RunConfig = { ...structuredClone(cfg), agent, seed };
          try {
            validateConfig(config, envNames());
          } catch (e) {
            if (e instanceof ConfigError) throw new SweepError(`${where}: cell ${group} seed ${seed}: ${e.message}`);
            throw e;
          }
          let id = safeName(`${group}-s${seed}`);
          if (id.length > 100 || ids.has(id)) {
            const h = crypto.createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 10);
            id = `${safeName(group).slice(0, 60)}-${h}-s${seed}`;
          }
          ids.add(id);
          cells.push({ id, agent, seed, ...(variant ? { variant: variant.name } : {}), params, group, config });
        }
      }
    }
  }
  return { spec, cells };
}

export const SWEEP_FILE = 'sweep.json';

export interface SweepFile {
  version: 1;
  name?: string;
  spec: SweepSpec;
  cells: { id: string; agent: AgentName; seed: number; variant?: string; params: Record<string, unknown>; group: string }[];
}

export function cellDir(root: string, id: string): string {
  return path.join(root, 'cells', id);
}

function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  fs.renameSync(tmp, file);
}

/**
 * Lays out a new sweep directory: sweep.json, run.json and each cell's config.json. A directory
 * that already holds this same sweep is left as it is (resuming); one that holds anything else
 * is refused.
 */
export function initSweepDir(root: string, plan: SweepPlan): void {
  const sf = path.join(root, SWEEP_FILE);
  const file: SweepFile = {
    version: 1,
    ...(plan.spec.name ? { name: plan.spec.name } : {}),
    spec: plan.spec,
    cells: plan.cells.map(({ config: _c, ...c }) => c),
  };
  if (fs.existsSync(sf)) {
    const prev = readSweepFile(root);
    if (JSON.stringify(prev.cells) !== JSON.stringify(file.cells)) {
      throw new SweepError(`${root} already holds a different sweep (its ${SWEEP_FILE} lists other cells); use another --out`);
    }
  } else if (fs.existsSync(root) && fs.readdirSync(root).length > 0) {
    throw new SweepError(`${root} exists and is not empty; a sweep needs a new or empty directory`);
  }
  fs.mkdirSync(path.join(root, 'cells'), { recursive: true });
  for (const c of plan.cells) {
    const dir = cellDir(root, c.id);
    fs.mkdirSync(dir, { recursive: true });
    const cfg = path.join(dir, 'config.json');
    if (!fs.existsSync(cfg)) writeJsonAtomic(cfg, c.config);
  }
  writeJsonAtomic(path.join(root, 'run.json'), {
    version: 1,
    runs: plan.cells.map((c) => ({ agent: c.agent, seed: c.seed, dir: path.join('cells', c.id), group: c.group })),
  });
  if (!fs.existsSync(sf)) writeJsonAtomic(sf, file);
}

export function isSweepDir(root: string): boolean {
  return fs.existsSync(path.join(root, SWEEP_FILE));
}

export function readSweepFile(root: string): SweepFile {
  const f = path.join(root, SWEEP_FILE);
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(f, 'utf8'));
  } catch (e) {
    throw new SweepError(`${f}: cannot read the sweep (${(e as Error).message})`);
  }
  if (!isObject(parsed) || parsed.version !== 1 || !Array.isArray(parsed.cells)) {
    throw new SweepError(`${f}: not a memq sweep file (version 1 with a 'cells' list)`);
  }
  for (const [i, c] of (parsed.cells as unknown[]).entries()) {
    if (!isObject(c) || typeof c.id !== 'string' || !/^[A-Za-z0-9._=+,-]{1,200}$/.test(c.id)) {
      throw new SweepError(`${f}: cells[${i}] has no valid id`);
    }
  }
  return parsed as unknown as SweepFile;
}

export type CellState = 'done' | 'partial' | 'pending' | 'failed';

export interface CellStatus {
  id: string;
  group: string;
  seed: number;
  state: CellState;
  /** Training episodes done (from summary.json or the checkpoint), of `episodes`. */
  episodesDone: number;
  episodes: number;
  /** For failed cells: the exit code and the log to read. */
  exitCode?: number;
  log?: string;
  summary?: RunSummary;
}

/** What an executor records when a cell's process ends badly (cells/<id>/exit.json). */
export const EXIT_FILE = 'exit.json';

/** The state of every cell, read from the directory alone (any executor, any machine). */
export function sweepStatus(root: string): CellStatus[] {
  const file = readSweepFile(root);
  return file.cells.map((c) => {
    const dir = cellDir(root, c.id);
    let episodes = 0;
    try {
      episodes = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).episodes ?? 0;
    } catch {
      /* a cell without config.json is pending */
    }
    const base = { id: c.id, group: c.group, seed: c.seed, episodes };
    const sfile = path.join(dir, 'summary.json');
    let summary: RunSummary | undefined;
    try {
      if (fs.existsSync(sfile)) summary = JSON.parse(fs.readFileSync(sfile, 'utf8'));
    } catch {
      summary = undefined;
    }
    if (summary?.status === 'complete') return { ...base, state: 'done' as const, episodesDone: summary.episodes, summary };
    let exit: { code?: number; log?: string } | undefined;
    try {
      if (fs.existsSync(path.join(dir, EXIT_FILE))) exit = JSON.parse(fs.readFileSync(path.join(dir, EXIT_FILE), 'utf8'));
    } catch {
      exit = undefined;
    }
    let done = summary?.episodes ?? 0;
    try {
      const st = JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint', 'state.json'), 'utf8'));
      if (typeof st.episodesDone === 'number') done = Math.max(done, st.episodesDone);
    } catch {
      /* no checkpoint yet */
    }
    if (exit && exit.code !== undefined && exit.code !== 0 && exit.code !== 130) {
      return { ...base, state: 'failed' as const, episodesDone: done, exitCode: exit.code, log: exit.log };
    }
    const started = fs.existsSync(path.join(dir, 'metrics.jsonl')) || done > 0;
    return { ...base, state: started ? ('partial' as const) : ('pending' as const), episodesDone: done };
  });
}
