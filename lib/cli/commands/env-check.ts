/**
 * `memq env-check ENV`: play an environment with its expert and with a uniformly random
 * policy over the admissible actions; print success rate, mean return and mean length per
 * split and task type. Also checks the environment's contract on the way (the expert only
 * proposes admissible actions; a live episode always offers some action); any violation is
 * listed and makes the exit code 1.
 *
 *   memq env-check kitchen --episodes 50 --json
 *   memq env-check process --command python3 --arg examples/alfworld_bridge.py --split valid_seen
 */
import { CliError, formatHelp, parseArgs, type CliIO, type Command, type FlagSpec } from '../args';
import { envNames, makeEnv } from '../../envs/registry';
import { findExecutable } from '../paths';
import { EnvRng } from '../../envs/rng';
import type { EnvOptions, ResetOptions, TextEnv } from '../../envs/types';

const spec: Record<string, FlagSpec> = {
  episodes: {
    kind: 'int',
    help: 'episodes per split, task type and policy',
    default: 20,
    check: (v: number) => (v >= 1 ? undefined : `must be >= 1, got ${v}`),
  },
  split: { kind: 'string', help: "only this split (default: every split the environment has)" },
  'task-type': { kind: 'string', help: 'only this task type (default: every task type)' },
  seed: { kind: 'int', help: 'first seed (episode i uses seed + i; the random policy is seeded too)', default: 0 },
  'max-steps': {
    kind: 'int',
    help: "episode step limit (default: the environment's own)",
    check: (v: number) => (v >= 1 ? undefined : `must be >= 1, got ${v}`),
  },
  command: { kind: 'string', help: "ENV 'process': the program to run" },
  arg: { kind: 'string[]', help: "ENV 'process': one argument for the program (repeatable)" },
  'timeout-ms': {
    kind: 'int',
    help: "ENV 'process': per-request time limit",
    check: (v: number) => (v >= 1 ? undefined : `must be >= 1, got ${v}`),
  },
  'startup-timeout-ms': {
    kind: 'int',
    help: "ENV 'process': limit for the first request, which includes starting the program",
    check: (v: number) => (v >= 1 ? undefined : `must be >= 1, got ${v}`),
  },
  json: { kind: 'boolean', help: 'print JSON' },
  help: { kind: 'boolean', help: 'show this help' },
};

const USAGE =
  'ENV [--episodes N] [--split S] [--task-type T] [--seed S] [--max-steps N] [--command CMD --arg A ...] [--json]';

export interface PolicyStats {
  episodes: number;
  success: number;
  meanReturn: number;
  meanSteps: number;
}

export interface EnvCheckRow {
  split: string;
  taskType: string | null;
  expert: PolicyStats | null;
  random: PolicyStats;
}

export interface EnvCheckReport {
  env: string;
  episodes: number;
  seed: number;
  rows: EnvCheckRow[];
  steps: number;
  stepsPerSecond: number;
  problems: string[];
}

type Policy = 'expert' | 'random';

interface EpisodeResult {
  won: boolean;
  ret: number;
  steps: number;
  /** The expert had nothing to say at the first step: no expert for this environment. */
  noExpert: boolean;
}

async function playEpisode(
  env: TextEnv,
  reset: ResetOptions,
  policy: Policy,
  rng: EnvRng,
  problems: string[],
  where: string,
): Promise<EpisodeResult> {
  let { info } = await env.reset(reset);
  let ret = 0;
  let steps = 0;
  for (;;) {
    if (info.admissibleActions.length === 0) {
      problems.push(`${where}: no admissible action at step ${steps} of a live episode`);
      return { won: false, ret, steps, noExpert: false };
    }
    let action: string;
    if (policy === 'expert') {
      const a = env.expertAction?.();
      if (a === undefined) {
        if (steps === 0) return { won: false, ret, steps, noExpert: true };
        problems.push(`${where}: the expert gave up at step ${steps}`);
        return { won: false, ret, steps, noExpert: false };
      }
      if (!info.admissibleActions.includes(a)) problems.push(`${where}: the expert proposed inadmissible '${a}'`);
      action = a;
    } else {
      action = rng.pick(info.admissibleActions);
    }
    const r = await env.step(action);
    ret += r.reward;
    steps++;
    info = r.info;
    if (r.terminated || r.truncated) return { won: Boolean(info.won), ret, steps, noExpert: false };
  }
}

function summarise(results: EpisodeResult[]): PolicyStats {
  const n = results.length;
  const sum = (f: (r: EpisodeResult) => number) => results.reduce((acc, r) => acc + f(r), 0);
  return {
    episodes: n,
    success: n ? sum((r) => (r.won ? 1 : 0)) / n : 0,
    meanReturn: n ? sum((r) => r.ret) / n : 0,
    meanSteps: n ? sum((r) => r.steps) / n : 0,
  };
}

/** Run the check (exported for tests and for `memq bench`). */
export async function envCheck(
  name: string,
  options: EnvOptions,
  opts: { episodes: number; seed: number; split?: string; taskType?: string; signal?: AbortSignal },
): Promise<EnvCheckReport> {
  const env = makeEnv(name, options);
  const problems: string[] = [];
  const rows: EnvCheckRow[] = [];
  let steps = 0;
  const t0 = performance.now();
  try {
    if (opts.split !== undefined && !env.splits.includes(opts.split)) {
      throw new CliError(`memq env-check: ${name} has no split '${opts.split}' (known: ${env.splits.join(', ')})`);
    }
    if (opts.taskType !== undefined && env.taskTypes.length > 0 && !env.taskTypes.includes(opts.taskType)) {
      throw new CliError(`memq env-check: ${name} has no task type '${opts.taskType}' (known: ${env.taskTypes.join(', ')})`);
    }
    const splits = opts.split !== undefined ? [opts.split] : [...env.splits];
    const taskTypes: (string | undefined)[] =
      opts.taskType !== undefined ? [opts.taskType] : env.taskTypes.length > 0 ? [...env.taskTypes] : [undefined];
    for (const split of splits) {
      for (const taskType of taskTypes) {
        const byPolicy: Record<Policy, EpisodeResult[]> = { expert: [], random: [] };
        let hasExpert = typeof env.expertAction === 'function';
        for (const policy of ['expert', 'random'] as Policy[]) {
          if (policy === 'expert' && !hasExpert) continue;
          const rng = new EnvRng(opts.seed ^ 0x2545f491);
          for (let i = 0; i < opts.episodes; i++) {
            if (opts.signal?.aborted) throw new CliError('memq env-check: interrupted', 130);
            const where = `${name}/${split}/${taskType ?? '-'}/${policy} seed ${opts.seed + i}`;
            const reset: ResetOptions = { seed: opts.seed + i, split };
            if (taskType !== undefined) reset.taskType = taskType;
            const r = await playEpisode(env, reset, policy, rng, problems, where);
            steps += r.steps;
            if (r.noExpert) {
              hasExpert = false;
              break;
            }
            byPolicy[policy].push(r);
          }
        }
        rows.push({
          split,
          taskType: taskType ?? null,
          expert: hasExpert ? summarise(byPolicy.expert) : null,
          random: summarise(byPolicy.random),
        });
      }
    }
  } finally {
    await env.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    env: name,
    episodes: opts.episodes,
    seed: opts.seed,
    rows,
    steps,
    stepsPerSecond: seconds > 0 ? steps / seconds : 0,
    problems,
  };
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`.padStart(7);
}

function formatTable(report: EnvCheckReport): string {
  const header = ['split', 'task type', 'expert', 'ret', 'len', 'random', 'ret', 'len'];
  const body = report.rows.map((r) => [
    r.split,
    r.taskType ?? '-',
    r.expert ? pct(r.expert.success) : '    n/a',
    r.expert ? r.expert.meanReturn.toFixed(3) : '',
    r.expert ? r.expert.meanSteps.toFixed(1) : '',
    pct(r.random.success),
    r.random.meanReturn.toFixed(3),
    r.random.meanSteps.toFixed(1),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [
    `${report.env}: ${report.episodes} episodes per cell, seeds ${report.seed}..${report.seed + report.episodes - 1}`,
    line(header),
    ...body.map(line),
    `${report.steps} steps, ${Math.round(report.stepsPerSecond)} steps/s`,
  ];
  if (report.problems.length > 0) {
    out.push(`${report.problems.length} problem(s):`);
    for (const p of report.problems.slice(0, 20)) out.push(`  ${p}`);
  }
  return out.join('\n') + '\n';
}

async function run(argv: string[], io: CliIO): Promise<number> {
  const { flags, positionals } = parseArgs(argv, spec, 'env-check');
  if (flags.help) {
    io.stdout(formatHelp('env-check', USAGE, spec));
    return 0;
  }
  if (positionals.length !== 1) {
    throw new CliError(`memq env-check: expected one environment name (known: ${envNames().join(', ')})`);
  }
  const name = positionals[0];
  if (!envNames().includes(name)) {
    throw new CliError(`memq env-check: unknown environment '${name}' (known: ${envNames().join(', ')})`);
  }
  const options: EnvOptions = {};
  if (flags['max-steps'] !== undefined) options.maxSteps = flags['max-steps'];
  if (name === 'process') {
    if (!flags.command) throw new CliError("memq env-check: 'process' needs --command CMD (and --arg A per argument)");
    if (!findExecutable(flags.command)) {
      throw new CliError(`memq env-check: --command ${flags.command}: no such program (expected a path to an executable file or a program on PATH)`);
    }
    options.command = flags.command;
    options.args = flags.arg;
    if (flags['timeout-ms'] !== undefined) options.timeoutMs = flags['timeout-ms'];
    if (flags['startup-timeout-ms'] !== undefined) options.startupTimeoutMs = flags['startup-timeout-ms'];
  } else if (flags.command || flags.arg.length > 0 || flags['timeout-ms'] !== undefined || flags['startup-timeout-ms'] !== undefined) {
    throw new CliError("memq env-check: --command, --arg and the time-outs are for ENV 'process'");
  }
  const report = await envCheck(name, options, {
    episodes: flags.episodes,
    seed: flags.seed,
    split: flags.split,
    taskType: flags['task-type'],
    signal: io.signal,
  });
  io.stdout(flags.json ? JSON.stringify(report, null, 2) + '\n' : formatTable(report));
  return report.problems.length > 0 ? 1 : 0;
}

export const envCheckCommand: Command = {
  name: 'env-check',
  summary: 'expert and random-policy success per split and task type of an environment',
  run,
};
