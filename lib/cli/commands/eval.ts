/**
 * memq eval --run DIR [--split S] [--games N]: greedy evaluation of a run's saved agent, memory
 * frozen. DIR is a run directory, or a run root written by `memq run` (then every run in it is
 * evaluated, one after the other). Everything is checked before the first game.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CliError, formatHelp, parseArgs, type Command, type FlagSpec } from '../args';
import { ConfigError, configFromDisk, validateConfig, type RunConfig } from '../../agent/config';
import { evaluateGames, evalSplitsOf, loadRunAgent, type EvalMetric } from '../../agent/runner';
import { envNames, makeEnv } from '../../envs/registry';
import { ProgressReporter } from '../progress';
import { readJsonFile, userMessage } from '../paths';
import { expandRunDir } from '../runDirs';

const spec: Record<string, FlagSpec> = {
  run: { kind: 'string', help: 'a run directory (config.json and a checkpoint), or a run root of memq run (run.json): each of its runs' },
  split: { kind: 'string[]', help: 'split(s) to evaluate (repeatable)', defaultText: "every evaluation split of the run's config" },
  games: {
    kind: 'int',
    help: 'games per split, 1 to 1000000',
    defaultText: "the run's evalGames, else the whole fixed set (100 where a split has none)",
    check: (v: number) => (v >= 1 && v <= 1e6 ? undefined : `must be an integer in [1, 1000000], got ${v}`),
  },
  json: { kind: 'boolean', help: 'print JSON: one object per run and split, with run, agent and seed' },
  help: { kind: 'boolean', help: 'show this help' },
};

interface Planned {
  dir: string;
  config: RunConfig;
  splits: string[];
}

/** Reads and checks one run directory: config, checkpoint, the splits asked for. */
async function plan(dir: string, splitsAsked: string[], games: number | undefined): Promise<Planned> {
  const where = `memq eval: --run ${dir}`;
  const cfgFile = path.join(dir, 'config.json');
  if (!fs.existsSync(cfgFile)) throw new CliError(`${where}: no config.json (not a memq run directory)`);
  let config: RunConfig;
  try {
    config = validateConfig(configFromDisk(readJsonFile(where, cfgFile), cfgFile), envNames());
  } catch (e) {
    if (e instanceof ConfigError) throw new CliError(`${where}: ${e.message}`);
    throw e;
  }
  if (!['checkpoint', 'checkpoint.old'].some((c) => fs.existsSync(path.join(dir, c, 'state.json')))) {
    throw new CliError(`${where}: no checkpoint to evaluate yet (the run has not saved one)`);
  }
  if (games !== undefined) config.evalGames = games;
  let env;
  try {
    env = makeEnv(config.env, config.envOptions);
  } catch (e) {
    throw new CliError(`${where}: env ${config.env}: ${(e as Error).message}`);
  }
  try {
    const splits = splitsAsked.length ? splitsAsked : evalSplitsOf(config, env);
    for (const s of splits) {
      if (!env.splits.includes(s)) throw new CliError(`memq eval: --split ${s}: ${config.env} has splits ${env.splits.join(', ')}`);
    }
    return { dir, config, splits };
  } finally {
    await env.close();
  }
}

export const evalCommand: Command = {
  name: 'eval',
  summary: "evaluate a run's saved agent (or every run of a run root) on evaluation splits",
  async run(argv, io) {
    const { flags, positionals } = parseArgs(argv, spec, 'eval');
    if (flags.help) {
      io.stdout(formatHelp('eval', '--run DIR [--split S] [--games N] [--json]', spec));
      return 0;
    }
    if (positionals.length) throw new CliError(`memq eval: unexpected argument '${positionals[0]}' (the run directory goes after --run)`);
    if (!flags.run) throw new CliError('memq eval: --run DIR is required (a run directory, or a run root of memq run)');
    const dirs = expandRunDir('memq eval: --run', flags.run);
    const plans: Planned[] = [];
    for (const d of dirs) plans.push(await plan(d, flags.split, flags.games));
    const many = plans.length > 1;
    const results: (EvalMetric & { run: string; agent: string; seed: number; interrupted?: true })[] = [];
    let interrupted = false;
    for (const p of plans) {
      let loaded;
      try {
        loaded = await loadRunAgent(p.dir);
      } catch (e) {
        throw new CliError(`memq eval: --run ${p.dir}: ${userMessage(e)}`);
      }
      const { agent, episodes } = loaded;
      const config = p.config;
      const env = makeEnv(config.env, config.envOptions);
      const label = many ? `[${config.agent} seed ${config.seed}]` : `[${config.agent}]`;
      const progress = new ProgressReporter(io.stderr, flags.json ? 'off' : io.isTTY ? 'tty' : 'plain', label);
      try {
        for (const split of p.splits) {
          const r = await evaluateGames(config, agent, split, episodes, { signal: io.signal, onProgress: (q) => progress.update(q) }, env);
          progress.done();
          const row = { ...r.metric, run: p.dir, agent: config.agent, seed: config.seed } as (typeof results)[number];
          if (!r.complete) {
            row.interrupted = true;
            interrupted = true;
          }
          if (r.metric.games > 0) results.push(row);
          if (!r.complete) break;
        }
      } finally {
        await env.close();
      }
      if (interrupted) break;
    }
    if (flags.json) io.stdout(JSON.stringify(results, null, 2) + '\n');
    else {
      for (const r of results) {
        const who = many ? `${r.agent} seed ${r.seed}` : r.agent;
        io.stdout(`${who} ${r.split}: success ${(100 * r.success).toFixed(1)}% over ${r.games} games${r.interrupted ? ' (interrupted)' : ''} (mean reward ${r.meanReward.toFixed(3)}, mean steps ${r.meanSteps.toFixed(1)})\n`);
      }
    }
    return interrupted ? 130 : 0;
  },
};
