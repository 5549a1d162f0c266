/**
 * memq run: train and evaluate agents (the main job), with progress, plots, resumable outputs.
 * With no arguments it runs the main job on household: the domain prior (memq model pretrain,
 * built on first use and cached), then prior-only, memq, memq + Mem-EM, and the NEC-style and
 * MemRL-style baselines with the same budget, as parallel processes up to the cores; it ends
 * with the table of train / seen / unseen success and memq + Mem-EM's relative improvement
 * over the best baseline on each split.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CliError, formatHelp, parseArgs, type CliIO, type Command, type FlagSpec } from '../args';
import { AGENT_NAMES, ConfigError, configFromDisk, defaultConfig, makeAgent, makePrior, mergeConfig, validateConfig, type AgentName, type RunConfig } from '../../agent/config';
import { CheckpointError, runTraining, type RunSummary } from '../../agent/runner';
import { writeRunPlots } from '../../agent/plots';
import { envNames, makeEnv } from '../../envs/registry';
import { checkInputDir, checkOutputDir, findExecutable, makeDir, readJsonFile, userMessage } from '../paths';
import { LLM_DEVICES, type LlmDeviceName } from '../../llm/model';
import { ProgressReporter } from '../progress';
import { groupTable, summaryTable } from './compare';
import { pretrainProgress } from './model';
import { formatExperimentTable } from '../../stats/experiments';
import { cachedPrior, priorCacheDir } from '../../train/priorCache';
import { defaultPretrainConfig, type PretrainConfig } from '../../train/pretrain';
import { runCellProcesses } from '../../sweep/pool';
import { packageRoot } from '../../native';
import * as os from 'os';

const D = defaultConfig();
const spec: Record<string, FlagSpec> = {
  env: { kind: 'string', help: 'environment (memq envs lists them)', defaultText: D.env },
  agent: { kind: 'string[]', help: `agent: ${AGENT_NAMES.join('|')} (repeatable)`, defaultText: "memq, prior, nec; the --config file's agent if it names one" },
  episodes: { kind: 'int', help: 'training episodes per agent', defaultText: String(D.episodes) },
  'eval-every': { kind: 'int', help: 'evaluate every K training episodes (0: only at the end)', defaultText: String(D.evalEvery) },
  'eval-games': { kind: 'int', help: 'games per evaluation split', defaultText: 'the whole fixed set; 100 where a split has no fixed set' },
  demos: { kind: 'int', help: 'expert demonstrations written to memory before learning', defaultText: String(D.demos) },
  seed: { kind: 'int', help: 'random seed', defaultText: String(D.seed) },
  prior: { kind: 'string', help: "the prior μ(a|s): 'uniform', 'pretrained' (the env's domain prior, built by memq model pretrain on first use and cached: MEMQ_CACHE) 'model:DIR' (an HF model dir with tokenizer.json) or 'gguf:FILE' (llama.cpp via node-llama-cpp, installed separately)", defaultText: "pretrained for the main job (no --agent), else uniform" },
  device: { kind: 'string', help: "where the model prior runs: cpu | cuda | auto (CUDA when usable and its self-test passes, else cpu)", defaultText: 'cpu' },
  'em-every': { kind: 'int', help: 'Mem-EM: E-step + LoRA M-step every K training episodes (memq and reflect agents, model prior; 0: off)', defaultText: String(D.em.every) },
  'em-steps': { kind: 'int', help: 'Mem-EM: LoRA steps per M-step', defaultText: String(D.em.steps) },
  'em-states': { kind: 'int', help: 'Mem-EM: states per LoRA step', defaultText: String(D.em.states) },
  'em-lr': { kind: 'number', help: 'Mem-EM: LoRA learning rate', defaultText: String(D.em.lr) },
  'em-weight': { kind: 'string', help: 'Mem-EM: target weight q | expq | adv (MATH §11)', defaultText: D.em.weight },
  'em-loss': { kind: 'string', help: 'Mem-EM: M-step loss kl (KL(q‖μ_θ) over the admissible actions) | mle (weighted MLE of §11)', defaultText: D.em.loss },
  seeds: { kind: 'int', help: 'run this many seeds (seed, seed+1, ...), 1 to 100', default: 1 },
  parallel: { kind: 'int', help: 'runs at once, each in its own process (1: one after another in this process)', defaultText: 'the number of cores when there are several runs', check: (v) => (v >= 1 && v <= 256 ? undefined : 'must be in [1, 256]') },
  config: { kind: 'string', help: 'JSON config file (fields of config.json; flags override it)', defaultText: 'none: the defaults shown here' },
  out: { kind: 'string', help: 'output directory (new, or one without a run in it)', defaultText: 'runs/<date-time>' },
  resume: { kind: 'string', help: 'continue an interrupted run in DIR (with its saved config)' },
  memory: { kind: 'string', help: 'redis://HOST:PORT/NAME: one episodic memory shared by the actors through Redis (memq agent; docs/scale.md)', defaultText: "none: each run its own memory" },
  actors: { kind: 'int', help: 'with --memory: actor processes on this machine, each its own seed, 1 to 64', defaultText: '1' },
  json: { kind: 'boolean', help: 'print the summaries as JSON, no progress' },
  help: { kind: 'boolean', help: 'show this help' },
};

interface Manifest {
  version: 1;
  /** group: the row a run belongs to in tables (e.g. memq-em: memq with Mem-EM); the agent when absent. */
  runs: { agent: AgentName; seed: number; dir: string; group?: string }[];
}

/** Mem-EM's schedule in the main job's memq-em runs when --em-every does not set one. */
export const MAIN_JOB_EM_EVERY = 25;

/**
 * The KL temperature α of the main job's memq and memq-em runs (with the domain prior). Tuned on
 * household, seeds 1–5, valid_seen only (memq + Mem-EM, 150 episodes): α = 0.05 / 0.1 / 0.3 / 0.6
 * / 1 gave 14.4 / 24.9 / 54.5 (3 seeds) / 57.4 / 49.1 % (README, "Tuning"). MEMQ_DEFAULTS.alpha
 * (0.1) stays the library default: with a uniform prior π ∝ exp(Q̂/α) needs the lower α.
 */
export const MAIN_JOB_ALPHA = 0.6;

/** The pretrain config of an env's cached domain prior (what 'pretrained' resolves to). */
export function pretrainConfigFor(c: RunConfig): PretrainConfig {
  const d = defaultPretrainConfig();
  // case-conditioned prompts retrieved with the reflect agent's state encoder (its dim and id abstraction)
  return { ...d, env: c.env, envOptions: c.envOptions, historyWindow: c.historyWindow, cases: { ...d.cases, dim: c.encoder.dim, abstractIds: c.encoder.abstractIds } };
}

function stamp(): string {
  return new Date().toISOString().replace(/[:T]/g, '-').replace(/\..*/, '');
}

function loadConfigFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (e as Error).message;
    throw new CliError(`memq run: --config ${file}: cannot read it (${why})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CliError(`memq run: --config ${file}: not valid JSON (${(e as Error).message})`);
  }
}

export function buildConfigs(flags: Record<string, any>): { configs: RunConfig[]; groups: string[]; defaultsUsed: boolean } {
  let base = defaultConfig();
  const fileConfig = flags.config ? loadConfigFile(flags.config) : undefined;
  const mainJob = !flags.agent.length && !(fileConfig && (fileConfig as any).agent);
  // The main job's default prior is the cached domain prior; a --config file says what it wants.
  let pretrained = flags.prior === 'pretrained' || (mainJob && flags.prior === undefined && !flags.config);
  try {
    if (flags.config) base = mergeConfig(base, fileConfig, `--config ${flags.config}`);
    const patch: Record<string, unknown> = {};
    if (flags.env !== undefined) patch.env = flags.env;
    if (flags.episodes !== undefined) patch.episodes = flags.episodes;
    if (flags['eval-every'] !== undefined) patch.evalEvery = flags['eval-every'];
    if (flags['eval-games'] !== undefined) patch.evalGames = flags['eval-games'];
    if (flags.demos !== undefined) patch.demos = flags.demos;
    if (flags.seed !== undefined) patch.seed = flags.seed;
    if (flags.prior !== undefined) {
      const p = String(flags.prior);
      if (p === 'uniform') patch.prior = { kind: 'uniform' };
      else if (p === 'pretrained') pretrained = true;
      else if (p.startsWith('model:') && p.length > 6) patch.prior = { kind: 'model', dir: path.resolve(p.slice(6)) };
      else if (p.startsWith('gguf:') && p.length > 5) patch.prior = { kind: 'gguf', file: path.resolve(p.slice(5)) };
      else throw new CliError(`memq run: --prior must be 'uniform', 'pretrained', 'model:DIR' or 'gguf:FILE', got '${p}'`);
    }
    const em: Record<string, unknown> = {};
    if (flags['em-every'] !== undefined) em.every = flags['em-every'];
    if (flags['em-steps'] !== undefined) em.steps = flags['em-steps'];
    if (flags['em-states'] !== undefined) em.states = flags['em-states'];
    if (flags['em-lr'] !== undefined) em.lr = flags['em-lr'];
    if (flags['em-weight'] !== undefined) em.weight = flags['em-weight'];
    if (flags['em-loss'] !== undefined) em.loss = flags['em-loss'];
    if (Object.keys(em).length) patch.em = em;
    base = mergeConfig(base, patch, 'flags');
    if (pretrained) base = mergeConfig(base, { prior: { kind: 'model', dir: priorCacheDir(pretrainConfigFor(base)) } }, '--prior pretrained');
    if (mainJob && pretrained && !flags.config) base = mergeConfig(base, { memq: { alpha: MAIN_JOB_ALPHA } }, 'main job');
    if (flags.device !== undefined) {
      const d = String(flags.device);
      if (!LLM_DEVICES.includes(d as LlmDeviceName)) throw new CliError(`memq run: --device must be 'cpu', 'cuda' or 'auto', got '${d}'`);
      if (base.prior.kind !== 'model') throw new CliError('memq run: --device applies to a model prior (--prior model:DIR)');
      base = { ...base, prior: { ...base.prior, device: d as LlmDeviceName } };
    }
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(`memq run: ${e.message}`);
    throw e;
  }
  // The lineup: the main job's groups, or the agents asked for.
  let lineup: { group: string; agent: AgentName; patch?: (c: RunConfig) => void }[];
  if (mainJob) {
    const model = base.prior.kind === 'model';
    lineup = [
      { group: 'prior', agent: 'prior' },
      { group: 'memq', agent: 'memq', patch: (c) => void (c.em.every = 0) },
      ...(model ? [{ group: 'memq-em', agent: 'memq' as AgentName, patch: (c: RunConfig) => void (c.em.every ||= MAIN_JOB_EM_EVERY) }] : []),
      { group: 'nec', agent: 'nec' },
      { group: 'memrl', agent: 'memrl' },
    ];
  } else {
    const agents: string[] = flags.agent.length ? flags.agent : [base.agent];
    lineup = agents.map((a) => ({ group: a, agent: a as AgentName }));
  }
  const seeds = flags.seeds as number;
  if (!Number.isInteger(seeds) || seeds < 1 || seeds > 100) throw new CliError(`memq run: --seeds must be an integer in [1, 100], got ${seeds}`);
  const configs: RunConfig[] = [];
  const groups: string[] = [];
  for (let s = 0; s < seeds; s++) {
    for (const l of lineup) {
      const c = { ...structuredClone(base), agent: l.agent, seed: base.seed + s };
      l.patch?.(c);
      try {
        validateConfig(c, envNames());
      } catch (e) {
        if (e instanceof ConfigError) throw new CliError(`memq run: ${e.message}`);
        throw e;
      }
      configs.push(c);
      groups.push(l.group);
    }
  }
  return { configs, groups, defaultsUsed: mainJob };
}

/**
 * Builds the cached domain prior of every config whose prior directory is the cache's and not
 * there yet (first use, or a cleared cache on --resume), with a progress line saying so.
 */
async function ensurePretrainedPriors(configs: RunConfig[], io: CliIO, json: boolean): Promise<void> {
  const done = new Set<string>();
  for (const c of configs) {
    if (c.prior.kind !== 'model' || done.has(c.prior.dir)) continue;
    const pc = pretrainConfigFor(c);
    if (priorCacheDir(pc) !== c.prior.dir) continue; // a model directory of the user's
    done.add(c.prior.dir);
    const progress = pretrainProgress(io, json ? 'off' : io.isTTY ? 'tty' : 'plain');
    const r = await cachedPrior(pc, {
      signal: io.signal,
      onBuild: (dir) => {
        if (!json) io.stderr(`memq run: building the ${c.env} domain prior (memq model pretrain: ${pc.games} expert games, ${pc.steps} steps; about a minute on 2 cores), cached in ${dir}\n`);
      },
      onProgress: progress.update,
    });
    progress.done();
    if (r.built && !json) io.stderr(`memq run: domain prior ready in ${r.seconds.toFixed(0)} s\n`);
    if (io.signal?.aborted) throw new CliError('memq run: interrupted while building the domain prior (nothing was started; run the same command again)', 130);
  }
}

/**
 * What validateConfig cannot see without touching the environment and the disk: the env accepts
 * its options and has the evaluation splits, and a model prior's directory exists and loads
 * (with Mem-EM, its adapter can be attached). Throws CliError naming where the value came from.
 */
export async function checkRunInputs(configs: RunConfig[], where: (c: RunConfig, field: 'prior' | 'env') => string): Promise<void> {
  await checkRunEnvs(configs, where);
  await checkRunPriors(configs, where);
}

/** The environments accept their options and have the evaluation splits (cheap: no model is loaded). */
async function checkRunEnvs(configs: RunConfig[], where: (c: RunConfig, field: 'prior' | 'env') => string): Promise<void> {
  const envsSeen = new Set<string>();
  for (const c of configs) {
    const key = JSON.stringify([c.env, c.envOptions, c.evalSplits ?? null]);
    if (envsSeen.has(key)) continue;
    envsSeen.add(key);
    const cmd = (c.envOptions as { command?: unknown }).command;
    if (c.env === 'process' && typeof cmd === 'string' && cmd && !findExecutable(cmd)) {
      throw new CliError(`${where(c, 'env')}: envOptions.command ${cmd}: no such program (expected a path to an executable file or a program on PATH)`);
    }
    let env;
    try {
      env = makeEnv(c.env, c.envOptions);
    } catch (e) {
      throw new CliError(`${where(c, 'env')}: env ${c.env} refuses envOptions ${JSON.stringify(c.envOptions)}: ${(e as Error).message}`);
    }
    try {
      for (const s of c.evalSplits ?? []) {
        if (!env.splits.includes(s)) throw new CliError(`${where(c, 'env')}: evalSplits: ${c.env} has no split '${s}' (known: ${env.splits.join(', ')})`);
      }
    } finally {
      await env.close();
    }
  }
}

/** Each model prior's directory exists and loads (with Mem-EM, its adapter attaches). */
async function checkRunPriors(configs: RunConfig[], where: (c: RunConfig, field: 'prior' | 'env') => string): Promise<void> {
  const priorsSeen = new Set<string>();
  for (const c of configs) {
    if (c.prior.kind !== 'model') continue;
    const dir = c.prior.dir;
    const needsEm = c.agent === 'memq' && c.em.every > 0;
    const key = `${dir}\u0000${needsEm}`;
    if (priorsSeen.has(key)) continue;
    priorsSeen.add(key);
    const w = where(c, 'prior');
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(dir);
    } catch {
      st = undefined;
    }
    const expected = 'expected a model directory with config.json, weights and tokenizer.json, as memq model init or memq model pretrain write';
    if (!st) throw new CliError(`${w}: ${dir} does not exist (${expected})`);
    if (!st.isDirectory()) throw new CliError(`${w}: ${dir} is not a directory (${expected})`);
    for (const f of ['config.json', 'tokenizer.json']) {
      if (!fs.existsSync(path.join(dir, f))) throw new CliError(`${w}: ${dir} has no ${f} (${expected})`);
    }
    try {
      const prior = await makePrior(c);
      if (needsEm) makeAgent(c, prior); // attaches the Mem-EM LoRA adapter: its targets must exist in the model
    } catch (e) {
      throw new CliError(`${w}: cannot load the model prior in ${dir}: ${userMessage(e)}`);
    }
  }
}

/** Reads and checks a run root's run.json (or a single run directory's config.json). */
function readManifest(root: string, arg: string): Manifest {
  const where = `memq run: --resume ${arg}`;
  const mf = path.join(root, 'run.json');
  if (fs.existsSync(mf)) {
    const m = readJsonFile(where, mf) as Manifest;
    const ok = m && typeof m === 'object' && Array.isArray(m.runs) && m.runs.length > 0 &&
      m.runs.every((r) => r && typeof r.dir === 'string' && typeof r.agent === 'string' && Number.isInteger(r.seed) && !path.isAbsolute(r.dir) && !r.dir.split(/[\\/]/).includes('..'));
    if (!ok) throw new CliError(`${where}: ${mf} is not a memq run manifest (expected {"version": 1, "runs": [{"agent", "seed", "dir"}, ...]})`);
    return m;
  }
  const cf = path.join(root, 'config.json');
  if (fs.existsSync(cf)) {
    const c = readJsonFile(where, cf) as RunConfig;
    if (!c || typeof c !== 'object') throw new CliError(`${where}: ${cf} must hold a JSON object`);
    return { version: 1, runs: [{ agent: c.agent, seed: c.seed, dir: '.' }] };
  }
  throw new CliError(`${where}: not a memq run directory (no run.json or config.json)`);
}

/** The saved config of each run of a manifest, validated; complete runs are marked. */
function readSavedConfigs(manifest: Manifest, root: string, arg: string): { config: RunConfig; complete: boolean }[] {
  return manifest.runs.map((r) => {
    const where = `memq run: --resume ${arg}`;
    const dir = path.join(root, r.dir);
    const cfg = path.join(dir, 'config.json');
    if (!fs.existsSync(cfg)) throw new CliError(`${where}: ${r.dir} has no config.json`);
    let config: RunConfig;
    try {
      config = validateConfig(configFromDisk(readJsonFile(where, cfg), cfg), envNames());
    } catch (e) {
      if (e instanceof ConfigError) throw new CliError(`${where}: ${e.message}`);
      throw e;
    }
    const sfile = path.join(dir, 'summary.json');
    let complete = false;
    if (fs.existsSync(sfile)) {
      try {
        complete = (JSON.parse(fs.readFileSync(sfile, 'utf8')) as RunSummary).status === 'complete';
      } catch {
        complete = false; // a summary cut short: the run is resumed, which writes it again
      }
    }
    return { config, complete };
  });
}

export async function executeRuns(
  manifest: Manifest, configs: RunConfig[] | undefined, root: string, io: CliIO, json: boolean, resume: boolean,
): Promise<RunSummary[]> {
  const summaries: RunSummary[] = [];
  const saved = resume ? readSavedConfigs(manifest, root, root) : undefined;
  for (let i = 0; i < manifest.runs.length; i++) {
    const r = manifest.runs[i];
    const dir = path.join(root, r.dir);
    let config: RunConfig;
    if (saved) {
      config = saved[i].config;
      if (saved[i].complete) {
        summaries.push(JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8')) as RunSummary);
        continue;
      }
    } else {
      config = configs![i];
    }
    const label = `[${i + 1}/${manifest.runs.length} ${r.agent} seed ${r.seed}]`;
    const progress = new ProgressReporter(io.stderr, json ? 'off' : io.isTTY ? 'tty' : 'plain', label);
    let summary: RunSummary;
    try {
      summary = await runTraining(config, dir, {
        signal: io.signal,
        onProgress: (p) => progress.update(p),
        onMetrics: (d) => writeRunPlots(d, `${r.agent} on ${config.env} (seed ${r.seed})`),
      }, resume);
    } catch (e) {
      progress.done();
      if (e instanceof CheckpointError) throw new CliError(`memq run: --resume ${root}: ${r.dir}: ${userMessage(e)}`);
      throw e;
    }
    progress.done();
    summaries.push(summary);
    if (io.signal?.aborted) break;
  }
  return summaries;
}

/**
 * Runs the manifest's runs as child processes (`memq run --resume RUN_DIR`), `parallel` at a time,
 * with a progress line per start and end (and, on a terminal, a status line of every run's
 * episodes); returns the summaries in manifest order (those of runs that finished or stopped).
 */
async function executeRunsInProcesses(
  manifest: Manifest, configs: RunConfig[] | undefined, root: string, io: CliIO, json: boolean, parallel: number,
): Promise<RunSummary[]> {
  const dirs = manifest.runs.map((r) => path.join(root, r.dir));
  // A new run's directory starts with its config.json; a child resumes it from scratch.
  if (configs) {
    dirs.forEach((d, i) => {
      fs.mkdirSync(d, { recursive: true });
      if (!fs.existsSync(path.join(d, 'config.json'))) fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify(configs[i], null, 2) + '\n');
    });
  }
  const complete = (d: string) => {
    try {
      return (JSON.parse(fs.readFileSync(path.join(d, 'summary.json'), 'utf8')) as RunSummary).status === 'complete';
    } catch {
      return false;
    }
  };
  const label = (i: number) => `${manifest.runs[i].group ?? manifest.runs[i].agent} seed ${manifest.runs[i].seed}`;
  const cells = dirs.map((dir, i) => ({ id: label(i), dir, index: i + 1, resumed: fs.existsSync(path.join(dir, 'metrics.jsonl')) })).filter((c) => !complete(c.dir));
  const t0 = Date.now();
  const res = await runCellProcesses(cells, {
    parallel,
    signal: io.signal,
    cliPath: path.join(packageRoot(), 'bin', 'memq.js'),
    total: dirs.length,
    onEvent: (e) => {
      if (json) return;
      const t = `${((Date.now() - t0) / 1000).toFixed(0)}s`;
      if (e.kind === 'start') io.stderr(`[${e.index}/${e.total}] ${e.id}: ${e.resumed ? 'resumed' : 'started'} (${t})\n`);
      else if (e.kind === 'end') io.stderr(`[${e.index}/${e.total}] ${e.id}: ${e.state} after ${e.seconds.toFixed(0)} s${e.state === 'failed' ? ` (exit ${e.code}; log ${e.log})` : ''} (${t})\n`);
    },
  });
  if (res.failed.length) {
    // A run refused its input (exit 2: e.g. a damaged checkpoint): its own message, and exit 2.
    const codes = cells.filter((c) => res.failed.includes(c.id)).map((c) => {
      try {
        return { ...(JSON.parse(fs.readFileSync(path.join(c.dir, 'exit.json'), 'utf8')) as { code: number; log: string }), id: c.id };
      } catch {
        return { code: 1, log: path.join(c.dir, 'log.txt'), id: c.id };
      }
    });
    const lastLine = (f: string) => {
      try {
        return fs.readFileSync(f, 'utf8').trim().split('\n').pop() ?? '';
      } catch {
        return '';
      }
    };
    const why = codes.map((c) => `${c.id}: ${lastLine(c.log) || `exit ${c.code}`}`).join('; ');
    throw new CliError(`memq run: ${res.failed.length} run(s) failed: ${why} (logs: each run's log.txt; continue with memq run --resume ${root})`, codes.every((c) => c.code === 2) ? 2 : 1);
  }
  const out: RunSummary[] = [];
  for (const d of dirs) {
    try {
      out.push(JSON.parse(fs.readFileSync(path.join(d, 'summary.json'), 'utf8')) as RunSummary);
    } catch {
      break; // not started (interrupted before it)
    }
  }
  return out;
}

export const runCommand: Command = {
  name: 'run',
  summary: 'train and evaluate agents (no flags: the main job: prior, memq, memq + Mem-EM, NEC, MemRL on household)',
  async run(argv, io) {
    const { flags, positionals } = parseArgs(argv, spec, 'run');
    if (flags.help) {
      io.stdout(formatHelp('run', '[flags]', spec));
      return 0;
    }
    if (positionals.length) throw new CliError(`memq run: unexpected argument '${positionals[0]}' (flags start with --)`);
    if (flags.memory !== undefined || flags.actors !== undefined) return (await import('../../scale/actors')).runShared(flags, io, buildConfigs);
    let root: string;
    let manifest: Manifest;
    let configs: RunConfig[] | undefined;
    const resume = flags.resume !== undefined;
    if (resume) {
      const conflicting = ['env', 'episodes', 'eval-every', 'eval-games', 'demos', 'seed', 'config', 'out', 'prior', 'device', 'em-every', 'em-steps', 'em-states', 'em-lr', 'em-weight', 'em-loss'].filter((k) => flags[k] !== undefined);
      if (conflicting.length || flags.agent.length || flags.seeds !== 1) {
        throw new CliError(`memq run: --resume continues a run with its saved config; drop --${conflicting[0] ?? (flags.agent.length ? 'agent' : 'seeds')}`);
      }
      if (!fs.existsSync(flags.resume)) throw new CliError(`memq run: --resume ${flags.resume}: not a memq run directory (${path.resolve(flags.resume)} does not exist)`);
      root = checkInputDir(`memq run: --resume ${flags.resume}`, flags.resume);
      manifest = readManifest(root, flags.resume);
      // every saved config, and the model priors of the runs still to do, before anything runs
      const saved = readSavedConfigs(manifest, root, flags.resume);
      await ensurePretrainedPriors(saved.filter((s) => !s.complete).map((s) => s.config), io, flags.json);
      await checkRunInputs(saved.filter((s) => !s.complete).map((s) => s.config), (c, field) => `memq run: --resume ${flags.resume}: ${c.agent}-seed${c.seed}: ${field === 'prior' ? 'prior.dir' : 'env'}`);
    } else {
      const built = buildConfigs(flags);
      configs = built.configs;
      const groups = built.groups;
      root = checkOutputDir(`memq run: --out ${flags.out ?? path.join('runs', '<date-time>')}`, flags.out ?? path.join('runs', stamp()));
      if (fs.existsSync(path.join(root, 'run.json')) || fs.existsSync(path.join(root, 'config.json'))) {
        throw new CliError(`memq run: --out ${root} already holds a run; use --resume ${root} to continue it, or another --out`);
      }
      const priorSource = flags.prior !== undefined ? `memq run: --prior ${flags.prior}` : flags.config ? `memq run: prior.dir (from --config ${flags.config})` : 'memq run: the cached domain prior';
      // the environments first (cheap), then the domain prior (a minute to build on first use)
      const where = (_c: RunConfig, field: 'prior' | 'env') => (field === 'prior' ? priorSource : `memq run: ${flags.config ? `--config ${flags.config}` : '--env'}`);
      await checkRunEnvs(configs, where);
      await ensurePretrainedPriors(configs, io, flags.json);
      await checkRunPriors(configs, where);
      manifest = {
        version: 1,
        runs: configs.map((c, i) => ({ agent: c.agent, seed: c.seed, dir: `${groups[i]}-seed${c.seed}`, ...(groups[i] !== c.agent ? { group: groups[i] } : {}) })),
      };
      makeDir(`memq run: --out ${flags.out ?? root}`, root);
      fs.writeFileSync(path.join(root, 'run.json'), JSON.stringify(manifest, null, 2) + '\n');
      if (!flags.json) {
        const c = configs[0];
        const names = [...new Set(groups)].join(', ');
        io.stderr(`memq run: ${configs.length} run(s) (${names}) of ${c.episodes} episodes on ${c.env} (demos ${c.demos}, seed ${c.seed}${configs.length > 1 && flags.seeds > 1 ? '..' : ''}) -> ${root}\n`);
      }
    }
    // The main job's lineup runs in parallel by default; other jobs one after another in this
    // process unless --parallel asks (a main job is one whose manifest names groups).
    const lineup = manifest.runs.some((r) => r.group !== undefined);
    const parallel = Math.min(flags.parallel ?? (lineup ? Math.max(1, os.cpus().length) : 1), manifest.runs.length);
    const summaries = parallel > 1
      ? await executeRunsInProcesses(manifest, configs, root, io, flags.json, parallel)
      : await executeRuns(manifest, configs, root, io, flags.json, resume);
    const interrupted = io.signal?.aborted || summaries.length < manifest.runs.length || summaries.some((s) => s.status !== 'complete');
    // summaries follow the manifest's order (a run that never started ends the list)
    const groupsOf = summaries.map((s, i) => manifest.runs[i].group ?? s.agent);
    if (flags.json) {
      io.stdout(JSON.stringify(summaries.length === 1 ? summaries[0] : summaries, null, 2) + '\n');
    } else {
      io.stdout('\n' + summaryTable(summaries, groupsOf));
      if (new Set(groupsOf).size > 1 && !interrupted) {
        // The main job's baselines are the agents other than memq's own lineup (memq without
        // Mem-EM is an ablation of memq-em, not a baseline).
        const baselines = [...new Set(groupsOf)].filter((g) => !g.startsWith('memq'));
        const hasTarget = groupsOf.includes('memq-em') || groupsOf.includes('memq');
        const table = groupTable(
          summaries.map((s, i) => ({ dir: path.join(root, manifest.runs[i].dir), group: groupsOf[i], summary: s })),
          hasTarget && baselines.length ? { baselines } : {},
        );
        io.stdout('\n' + formatExperimentTable(table));
      }
      io.stdout(`\noutputs: ${root}\n`);
      if (interrupted) io.stdout(`interrupted: continue with  memq run --resume ${root}\n`);
    }
    return interrupted ? 130 : 0;
  },
};
