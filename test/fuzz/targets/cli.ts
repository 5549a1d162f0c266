/**
 * Fuzz targets of the CLI's file inputs (lib/cli, run in-process through `main(argv, io)`):
 * `memq run --config FILE`, `memq solve --mdp FILE`, `memq eval --run DIR` and
 * `memq run --resume DIR` over damaged and forged config files, MDP files, run directories and
 * checkpoints (config.json, state.json, agent.json, the memory snapshot).
 *
 * Oracle: exit code 0 (or 130 when the fuzzer's time budget interrupts a valid run) for valid
 * input; 0, 130 or 2 with a message for damaged input; never 1, never a stack trace or a raw
 * Node error code (ENOENT, ERR_…) in the output.
 */
import * as fs from 'fs';
import * as path from 'path';
import { main } from '../../../lib/cli/main';
import type { Call, Ctx, Entry } from '../core';
import { attempt, copyDir, damageFile, forgeJsonFile, listFiles, mutateSnapshotDir } from '../mutate';
import type { FuzzRng } from '../rng';
import { Expect, lit } from '../values';

/** Wall-clock budget of one CLI call: then the run is interrupted (exit 130), as Ctrl-C would. */
const CLI_BUDGET_MS = 4000;

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function runCli(argv: string[], budgetMs = CLI_BUDGET_MS): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), budgetMs);
  try {
    const code = await main(argv, {
      stdout: (t) => (stdout = (stdout + t).slice(-20000)),
      stderr: (t) => (stderr = (stderr + t).slice(-20000)),
      isTTY: false,
      signal: ac.signal,
    });
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

const STACK = /^\s+at .+(\(.*:\d+:\d+\)|:\d+:\d+)$/m;
const RAW_CODE = /\b(ENOENT|EISDIR|ENOTDIR|EACCES|EPERM|EEXIST|EMFILE|ENOTEMPTY|EINVAL|ENOSPC|EBADF|ELOOP|ERR_[A-Z_]{3,})\b/;

/** What the CLI may do: valid input exits 0 (or 130: interrupted by the budget), damaged input 0/130/2. */
function judgeCli(r: CliResult, damaged: boolean, json: boolean): string | undefined {
  const out = `${r.stderr}\n${r.stdout}`;
  if (STACK.test(out)) return `exit ${r.code} with a stack trace: ${r.stderr.slice(0, 800)}`;
  const raw = RAW_CODE.exec(out);
  if (raw) return `exit ${r.code} with a raw Node error code ${raw[1]}: ${r.stderr.slice(0, 600)}`;
  const allowed = damaged ? [0, 130, 2] : [0, 130];
  if (!allowed.includes(r.code)) return `exit code ${r.code}, expected ${allowed.join(' or ')}${damaged ? ' (2 with a message for bad input)' : ''}: ${r.stderr.slice(0, 600)}`;
  if (r.code === 2 && !r.stderr.trim()) return 'exit code 2 without a message';
  if (r.code === 0 && json) {
    try {
      JSON.parse(r.stdout);
    } catch {
      return `exit 0 with --json but stdout is not JSON: ${r.stdout.slice(0, 300)}`;
    }
  }
  return undefined;
}

function cliCall(desc: string, argv: string[], damaged: boolean, json: boolean, extra?: (r: CliResult) => string | undefined): Call {
  return {
    desc: `memq ${argv.map((a) => (/^[\w./:=-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')}   # ${desc}`,
    expect: new Expect(),
    okKind: 'wrong-class',
    run: () => runCli(argv),
    onOk: (r) => judgeCli(r as CliResult, damaged, json) ?? extra?.(r as CliResult),
  };
}

// ---- run configs ------------------------------------------------------------------------------------

function validConfig(rng: FuzzRng): Record<string, unknown> {
  return {
    env: 'gridworld',
    agent: rng.pick(['memq', 'nec', 'qlearn', 'memrl', 'random', 'prior']),
    episodes: rng.range(1, 3),
    demos: rng.range(0, 2),
    evalGames: rng.range(1, 2),
    checkpointEvery: 1,
    encoder: { kind: 'pair', dim: 16, actionWeight: 0.5 },
    memq: { m: rng.range(1, 8) },
  };
}

const CONFIG_FIELDS: Record<string, unknown[]> = {
  env: ['nope', 5, null, 'process', ''],
  agent: ['nope', 5, null, ['memq']],
  episodes: [-1, 1.5, '3', 1e7, null, 2 ** 53],
  demos: [-1, 1e6, 'x', 0.5],
  evalGames: [0, -1, 1e9, 'x'],
  evalEvery: [-1, 1.5, 1],
  evalSplits: [['nope'], 'train', [5], []],
  seed: [-1, 2 ** 31, 1.5, 'x'],
  historyWindow: [0, 65, 'x'],
  checkpointEvery: [0, -1, 'x'],
  encoder: [null, 5, { kind: 'x', dim: 16, actionWeight: 0.5 }, { kind: 'pair', dim: 15, actionWeight: 0.5 }, { kind: 'pair', dim: 1e9, actionWeight: 0.5 },
    { kind: 'hashing', dim: 8, actionWeight: 1 }, { dim: 4 }],
  prior: [{ kind: 'model', dir: '/nonexistent-memq-model' }, { kind: 'model' }, { kind: 'x' }, 5, null, { kind: 'model', dir: 5 }],
  memq: [{ alpha: -1 }, { m: 0 }, { m: 1e9 }, { kernel: 'x' }, { bandwidth: 0 }, { kappa: 1e6, kernel: 'cosine' }, { delta: 1e-40, kernel: 'inverse' }, { capacity: 0 },
    { gamma: 1 }, { mergeEpsilon: -1 }, { target: 'x' }, 5, null, { unknown: 1 }, { voidValue: 'x' }],
  em: [{ every: 1 }, { every: -1 }, 5, { lr: 'x' }],
  nec: [{ k: 0 }, { epsilon: 2 }, null],
  unknownField: [1, null],
  envOptions: [{ size: 1e9 }, { size: -1 }, 5, null, { slip: 'x' }],
};

const runConfigEntry: Entry = {
  name: 'memq run --config',
  area: 'CLI',
  weight: 0.5,
  make(ctx) {
    const rng = ctx.rng;
    const file = ctx.fresh('config') + '.json';
    fs.writeFileSync(file, JSON.stringify(validConfig(rng)));
    let damaged = false;
    let what = 'valid tiny config';
    const r = rng.next();
    if (r < 0.75) {
      what = forgeJsonFile(rng, file, CONFIG_FIELDS);
      damaged = true;
    } else if (r < 0.82) {
      what = damageFile(rng, file);
      damaged = true;
    }
    const argv = ['run', '--config', r < 0.85 || !damaged ? file : ctx.fresh('missing'), '--out', ctx.fresh('out'), '--json'];
    if (rng.chance(0.1)) {
      argv.push(...rng.pick([['--episodes', '-1'], ['--seeds', '0'], ['--seeds', '101'], ['--prior', 'model:/nonexistent'], ['--agent', 'nope'], ['--em-every', '2']]));
      damaged = true;
    }
    return cliCall(what, argv, damaged, true);
  },
};

// ---- solve --------------------------------------------------------------------------------------------

function chainMdp(rng: FuzzRng): Record<string, unknown> {
  const S = rng.range(2, 4);
  const A = rng.range(1, 3);
  const P = Array.from({ length: S }, () => Array.from({ length: A }, () => {
    const row = Array.from({ length: S }, () => rng.next());
    const sum = row.reduce((a, b) => a + b, 0);
    return row.map((x) => x / sum);
  }));
  const R = Array.from({ length: S }, () => Array.from({ length: A }, () => rng.normal()));
  const mdp: Record<string, unknown> = { states: S, actions: A, P, R };
  if (rng.chance(0.5)) mdp.prior = Array.from({ length: S }, () => Array.from({ length: A }, () => 1 / A));
  if (rng.chance(0.5)) mdp.terminal = [S - 1];
  if (rng.chance(0.3)) mdp.gamma = 0.9;
  return mdp;
}

const MDP_FIELDS: Record<string, unknown[]> = {
  states: [0, -1, 1.5, 1e9, 2 ** 31, '3', null],
  actions: [0, -1, 1e9, 'x'],
  P: [[], null, 5, [[[1]]], [[[0.5, 0.6]]], [[['NaN']]], [[[-1, 2]]]],
  R: [[], null, [['x']], [[1e308, 1e308]], [[Infinity]]],
  prior: [[[0, 0]], [[-1, 2]], 'uniform', [[1e-320, 1]]],
  terminal: [[99], [-1], [1.5], 'all', [0, 0]],
  gamma: [1, -0.1, 'x', 1e-300],
};

const solveEntry: Entry = {
  name: 'memq solve --mdp',
  area: 'CLI',
  weight: 1,
  make(ctx) {
    const rng = ctx.rng;
    const file = ctx.fresh('mdp') + '.json';
    fs.writeFileSync(file, JSON.stringify(chainMdp(rng)));
    let damaged = false;
    let what = 'valid MDP';
    const r = rng.next();
    if (r < 0.7) {
      what = forgeJsonFile(rng, file, MDP_FIELDS);
      damaged = true;
    } else if (r < 0.8) {
      what = damageFile(rng, file);
      damaged = true;
    }
    const argv = ['solve', '--mdp', file, '--json'];
    if (rng.chance(0.2)) argv.push(...rng.pick([['--method', 'svi'], ['--method', 'vi'], ['--alpha', '0'], ['--gamma', '0.5'], ['--max-iter', '3']]));
    return cliCall(what, argv, damaged, true, (res) => {
      if (res.code !== 0) return undefined;
      const out = JSON.parse(res.stdout) as { V: number[] };
      if (!Array.isArray(out.V) || out.V.some((v) => typeof v !== 'number' || !Number.isFinite(v))) return `solve printed V = ${lit(out.V)} (not finite numbers)`;
      return undefined;
    });
  },
};

// ---- run directories ------------------------------------------------------------------------------------

interface RunPool {
  dirs: string[];
}

/** A finished tiny run directory (made once per batch and agent). */
async function runDir(ctx: Ctx): Promise<string | undefined> {
  const p = ((ctx.pools.cli as RunPool | undefined) ??= { dirs: [] });
  if (p.dirs.length < 1) {
    const rng = ctx.rng;
    const cfg = ctx.fresh('base-config') + '.json';
    const c = validConfig(rng);
    c.agent = rng.pick(['memq', 'nec', 'memrl', 'qlearn']);
    fs.writeFileSync(cfg, JSON.stringify(c));
    const out = ctx.fresh('base-run');
    const r = await runCli(['run', '--config', cfg, '--out', out, '--json'], 120_000);
    if (r.code !== 0) throw new Error(`a valid tiny run failed (exit ${r.code}): ${r.stderr}`);
    p.dirs.push(path.join(out, `${c.agent}-seed1`));
  }
  return ctx.rng.pick(p.dirs);
}

const STATE_FIELDS: Record<string, unknown[]> = {
  episodesDone: [-1, 1e9, 'x', null, 1.5],
  demosDone: ['yes', null, 5],
  wins: [-1, 'x', null],
  recentWins: [null, 5, ['x'], {}],
  wallSeconds: [-1, 'x', null, 1e308],
  lastEval: [5, null, { x: 5 }],
};

const AGENT_FIELDS: Record<string, unknown[]> = {
  name: [5, 'other', null],
  rng: ['x', -1, null, 2 ** 40, {}],
  qtable: [5, null, 'x', { a: 'b' }],
};

/** A damaged or forged copy of a finished run directory. */
function mutateRunDir(rng: FuzzRng, dir: string): string[] {
  const done: string[] = [];
  const n = rng.weighted([[5, 1], [2, 2]] as const);
  for (let i = 0; i < n; i++) {
    const kind = rng.weighted([[3, 'config'], [2, 'state'], [1, 'agent'], [3, 'memory'], [1, 'damage'], [1, 'summary']] as const);
    if (kind === 'memory') {
      const mem = path.join(dir, 'checkpoint', 'agent', 'memory');
      if (fs.existsSync(mem)) done.push(...mutateSnapshotDir(rng, mem).map((s) => `checkpoint/agent/memory: ${s}`));
    } else done.push(attempt(() => mutateRunFile(rng, dir, kind)));
  }
  return done;
}

/** One file of a run directory: config.json, checkpoint/state.json, agent.json, summary.json, or any file. */
function mutateRunFile(rng: FuzzRng, dir: string, kind: 'config' | 'state' | 'agent' | 'damage' | 'summary'): string {
  const file = {
    config: 'config.json',
    state: 'checkpoint/state.json',
    agent: 'checkpoint/agent/agent.json',
    summary: 'summary.json',
    damage: '',
  }[kind];
  const full = path.join(dir, file);
  if (kind === 'damage' || !fs.existsSync(full)) {
    const files = listFiles(dir);
    if (!files.length) return 'no files (unchanged)';
    const f = rng.pick(files);
    return damageFile(rng, path.join(dir, f)).replace(path.basename(f), f);
  }
  if (kind === 'summary') {
    // An interrupted run (so --resume continues it), or a forged summary.
    if (rng.chance(0.7)) fs.rmSync(full);
    else fs.writeFileSync(full, rng.pick(['{"status":"complete"}', '[]', '{', '{"status":5}']));
    return 'summary.json removed or forged';
  }
  const fields = kind === 'config' ? CONFIG_FIELDS : kind === 'state' ? STATE_FIELDS : AGENT_FIELDS;
  return `${path.dirname(file) === '.' ? '' : `${path.dirname(file)}/`}${forgeJsonFile(rng, full, fields)}`;
}

function runDirEntry(resume: boolean): Entry {
  return {
    name: resume ? 'memq run --resume' : 'memq eval --run',
    area: 'CLI',
    weight: 0.5,
    async make(ctx) {
      const rng = ctx.rng;
      const src = await runDir(ctx);
      if (!src) return undefined;
      const dir = ctx.fresh(resume ? 'resume' : 'eval');
      copyDir(src, dir);
      const damaged = rng.chance(0.85);
      const done = damaged ? mutateRunDir(rng, dir) : ['valid run directory'];
      if (!damaged && resume && rng.chance(0.7)) fs.rmSync(path.join(dir, 'summary.json'), { force: true });
      const argv = resume ? ['run', '--resume', dir, '--json'] : ['eval', '--run', dir, '--json', '--games', '1'];
      return cliCall(done.join('; '), argv, damaged, true);
    },
  };
}

export const cliEntries: Entry[] = [runConfigEntry, solveEntry, runDirEntry(false), runDirEntry(true)];
