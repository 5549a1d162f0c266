/**
 * memq run: train and evaluate agents (the main job), with progress, plots, resumable outputs.
 * With no arguments it runs memq and the prior-only and NEC-style baselines on household with
 * the default budget and ends with a table of train / seen / unseen success per agent.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CliError, formatHelp, parseArgs, type CliIO, type Command, type FlagSpec } from '../args';
import { AGENT_NAMES, ConfigError, configFromDisk, defaultConfig, mergeConfig, validateConfig, type AgentName, type RunConfig } from '../../agent/config';
import { runTraining, type RunSummary } from '../../agent/runner';
import { writeRunPlots } from '../../agent/plots';
import { envNames } from '../../envs/registry';
import { ProgressReporter } from '../progress';
import { summaryTable } from './compare';

const spec: Record<string, FlagSpec> = {
  env: { kind: 'string', help: 'environment (memq envs lists them)' },
  agent: { kind: 'string[]', help: `agent: ${AGENT_NAMES.join('|')} (repeatable; default: memq, prior, nec)` },
  episodes: { kind: 'int', help: 'training episodes per agent' },
  'eval-every': { kind: 'int', help: 'evaluate every K training episodes (0: only at the end)' },
  'eval-games': { kind: 'int', help: 'games per evaluation split (default: the whole fixed set)' },
  demos: { kind: 'int', help: 'expert demonstrations written to memory before learning' },
  seed: { kind: 'int', help: 'random seed' },
  prior: { kind: 'string', help: "the prior μ(a|s): 'uniform', 'model:DIR' (an HF model dir with tokenizer.json) or 'gguf:FILE' (llama.cpp via the optional node-llama-cpp)" },
  'em-every': { kind: 'int', help: 'Mem-EM: E-step + LoRA M-step every K training episodes (memq agent, model prior; 0: off)' },
  'em-steps': { kind: 'int', help: 'Mem-EM: LoRA steps per M-step (default 4)' },
  'em-states': { kind: 'int', help: 'Mem-EM: states per LoRA step (default 16)' },
  'em-lr': { kind: 'number', help: 'Mem-EM: LoRA learning rate (default 5e-4)' },
  'em-weight': { kind: 'string', help: "Mem-EM: target weight q | expq | adv (MATH §11; default q)" },
  'em-loss': { kind: 'string', help: "Mem-EM: M-step loss kl (KL(q‖μ_θ) over the admissible actions, default) | mle (weighted MLE of §11)" },
  seeds: { kind: 'int', help: 'run this many seeds (seed, seed+1, ...)', default: 1 },
  config: { kind: 'string', help: 'JSON config file (fields of config.json; flags override it)' },
  out: { kind: 'string', help: 'output directory (default runs/<date-time>)' },
  resume: { kind: 'string', help: 'continue an interrupted run in DIR' },
  json: { kind: 'boolean', help: 'print the summaries as JSON, no progress' },
  help: { kind: 'boolean', help: 'show this help' },
};

interface Manifest {
  version: 1;
  runs: { agent: AgentName; seed: number; dir: string }[];
}

function stamp(): string {
  return new Date().toISOString().replace(/[:T]/g, '-').replace(/\..*/, '');
}

function loadConfigFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new CliError(`memq run: --config ${file}: cannot read it (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CliError(`memq run: --config ${file}: not valid JSON (${(e as Error).message})`);
  }
}

export function buildConfigs(flags: Record<string, any>): { configs: RunConfig[]; defaultsUsed: boolean } {
  let base = defaultConfig();
  try {
    if (flags.config) base = mergeConfig(base, loadConfigFile(flags.config), `--config ${flags.config}`);
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
      else if (p.startsWith('model:') && p.length > 6) patch.prior = { kind: 'model', dir: path.resolve(p.slice(6)) };
      else if (p.startsWith('gguf:') && p.length > 5) patch.prior = { kind: 'gguf', file: path.resolve(p.slice(5)) };
      else throw new CliError(`memq run: --prior must be 'uniform', 'model:DIR' or 'gguf:FILE', got '${p}'`);
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
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(`memq run: ${e.message}`);
    throw e;
  }
  const agents: string[] = flags.agent.length ? flags.agent : flags.config && (loadConfigFile(flags.config) as any).agent ? [base.agent] : ['memq', 'prior', 'nec'];
  const seeds = flags.seeds as number;
  if (!Number.isInteger(seeds) || seeds < 1 || seeds > 100) throw new CliError(`memq run: --seeds must be an integer in [1, 100], got ${seeds}`);
  const configs: RunConfig[] = [];
  for (let s = 0; s < seeds; s++) {
    for (const agent of agents) {
      const c = { ...structuredClone(base), agent: agent as AgentName, seed: base.seed + s };
      try {
        validateConfig(c, envNames());
      } catch (e) {
        if (e instanceof ConfigError) throw new CliError(`memq run: ${e.message}`);
        throw e;
      }
      configs.push(c);
    }
  }
  return { configs, defaultsUsed: !flags.agent.length };
}

export async function executeRuns(
  manifest: Manifest, configs: RunConfig[] | undefined, root: string, io: CliIO, json: boolean, resume: boolean,
): Promise<RunSummary[]> {
  const summaries: RunSummary[] = [];
  for (let i = 0; i < manifest.runs.length; i++) {
    const r = manifest.runs[i];
    const dir = path.join(root, r.dir);
    let config: RunConfig;
    if (resume) {
      const cfg = path.join(dir, 'config.json');
      if (!fs.existsSync(cfg)) throw new CliError(`memq run: --resume ${root}: ${r.dir} has no config.json`);
      config = configFromDisk(JSON.parse(fs.readFileSync(cfg, 'utf8')), cfg);
      const sfile = path.join(dir, 'summary.json');
      if (fs.existsSync(sfile)) {
        const prev = JSON.parse(fs.readFileSync(sfile, 'utf8')) as RunSummary;
        if (prev.status === 'complete') {
          summaries.push(prev);
          continue;
        }
      }
    } else {
      config = configs![i];
    }
    const label = `[${i + 1}/${manifest.runs.length} ${r.agent} seed ${r.seed}]`;
    const progress = new ProgressReporter(io.stderr, json ? 'off' : io.isTTY ? 'tty' : 'plain', label);
    const summary = await runTraining(config, dir, {
      signal: io.signal,
      onProgress: (p) => progress.update(p),
      onMetrics: (d) => writeRunPlots(d, `${r.agent} on ${config.env} (seed ${r.seed})`),
    }, resume);
    progress.done();
    summaries.push(summary);
    if (io.signal?.aborted) break;
  }
  return summaries;
}

export const runCommand: Command = {
  name: 'run',
  summary: 'train and evaluate agents (no flags: memq vs prior and NEC on household)',
  async run(argv, io) {
    const { flags, positionals } = parseArgs(argv, spec, 'run');
    if (flags.help) {
      io.stdout(formatHelp('run', '[flags]', spec));
      return 0;
    }
    if (positionals.length) throw new CliError(`memq run: unexpected argument '${positionals[0]}' (flags start with --)`);
    let root: string;
    let manifest: Manifest;
    let configs: RunConfig[] | undefined;
    const resume = flags.resume !== undefined;
    if (resume) {
      const conflicting = ['env', 'episodes', 'eval-every', 'eval-games', 'demos', 'seed', 'config', 'out', 'prior', 'em-every', 'em-steps', 'em-states', 'em-lr', 'em-weight', 'em-loss'].filter((k) => flags[k] !== undefined);
      if (conflicting.length || flags.agent.length) throw new CliError(`memq run: --resume continues a run with its saved config; drop --${conflicting[0] ?? 'agent'}`);
      root = path.resolve(flags.resume);
      const mf = path.join(root, 'run.json');
      if (fs.existsSync(mf)) manifest = JSON.parse(fs.readFileSync(mf, 'utf8'));
      else if (fs.existsSync(path.join(root, 'config.json'))) {
        const c = JSON.parse(fs.readFileSync(path.join(root, 'config.json'), 'utf8')) as RunConfig;
        manifest = { version: 1, runs: [{ agent: c.agent, seed: c.seed, dir: '.' }] };
      } else throw new CliError(`memq run: --resume ${flags.resume}: not a memq run directory (no run.json or config.json)`);
    } else {
      const built = buildConfigs(flags);
      configs = built.configs;
      root = path.resolve(flags.out ?? path.join('runs', stamp()));
      if (fs.existsSync(path.join(root, 'run.json')) || fs.existsSync(path.join(root, 'config.json'))) {
        throw new CliError(`memq run: --out ${root} already holds a run; use --resume ${root} to continue it, or another --out`);
      }
      manifest = { version: 1, runs: configs.map((c) => ({ agent: c.agent, seed: c.seed, dir: `${c.agent}-seed${c.seed}` })) };
      fs.mkdirSync(root, { recursive: true });
      fs.writeFileSync(path.join(root, 'run.json'), JSON.stringify(manifest, null, 2) + '\n');
      if (!flags.json) {
        const c = configs[0];
        io.stderr(`memq run: ${configs.length} run(s) of ${c.episodes} episodes on ${c.env} (demos ${c.demos}, seed ${c.seed}${configs.length > 1 ? '..' : ''}) -> ${root}\n`);
      }
    }
    const summaries = await executeRuns(manifest, configs, root, io, flags.json, resume);
    const interrupted = io.signal?.aborted || summaries.some((s) => s.status !== 'complete');
    if (flags.json) {
      io.stdout(JSON.stringify(summaries.length === 1 ? summaries[0] : summaries, null, 2) + '\n');
    } else {
      io.stdout('\n' + summaryTable(summaries) + `\noutputs: ${root}\n`);
      if (interrupted) io.stdout(`interrupted: continue with  memq run --resume ${root}\n`);
    }
    return interrupted ? 130 : 0;
  },
};
