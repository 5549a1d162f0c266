/**
 * The training / evaluation loop behind `memq run` (issue: agent loop): episodes over the train
 * split, greedy evaluation with memory frozen every K episodes and at the end, expert
 * demonstrations, metrics, checkpoints that make interrupted runs resumable exactly, and the
 * output directory (config.json, metrics.jsonl, summary.json, plots, memory snapshot).
 */
import * as fs from 'fs';
import * as path from 'path';
import { makeEnv } from '../envs/registry';
import type { EnvInfo, TextEnv } from '../envs/types';
import { configFromDisk, makeAgentAsync, type RunConfig } from './config';
import { stateText, type Agent, type EpisodeRecord, type Mode, type StepContext, type StepRecord } from './types';

export interface EpisodeMetric {
  kind: 'episode';
  episode: number;
  source: 'train' | 'demo';
  won: boolean;
  reward: number;
  steps: number;
  taskType?: string;
  memory: number;
  seconds: number;
  [k: string]: unknown;
}

export interface EvalMetric {
  kind: 'eval';
  /** Training episodes completed when the evaluation ran. */
  episode: number;
  split: string;
  games: number;
  success: number;
  meanReward: number;
  meanSteps: number;
  byTaskType: Record<string, { games: number; success: number }>;
  seconds: number;
}

export interface RunSummary {
  agent: string;
  env: string;
  seed: number;
  status: 'complete' | 'interrupted';
  episodes: number;
  demos: number;
  /** Success rate over all training episodes, and over the last min(50, episodes). */
  trainSuccess: number;
  trainSuccessLast: number;
  /** Final evaluation per split. */
  evals: Record<string, { success: number; games: number; meanReward: number }>;
  memory: number;
  wallSeconds: number;
  episodesPerSecond: number;
}

export interface Progress {
  phase: 'demos' | 'train' | 'eval';
  episode: number;
  episodes: number;
  successRate: number;
  memory: number;
  episodesPerSecond: number;
  split?: string;
  game?: number;
  games?: number;
}

export interface RunHooks {
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
  /** Called after each evaluation and at the end (plots are drawn here by the CLI). */
  onMetrics?: (dir: string) => void;
}

/** Seeds of training episode i and demo episode j, derived from the run seed (disjoint streams). */
export function trainSeed(seed: number, i: number): number {
  return (Math.imul(seed + 1, 1000003) + i * 2) >>> 0;
}
export function demoSeed(seed: number, j: number): number {
  return (Math.imul(seed + 1, 1000003) + j * 2 + 1 + 0x40000000) >>> 0;
}

interface RunState {
  /** Training episodes done. */
  episodesDone: number;
  demosDone: boolean;
  wins: number;
  recentWins: number[];
  wallSeconds: number;
  lastEval?: Record<string, { success: number; games: number; meanReward: number }>;
}

function writeJsonAtomic(file: string, data: unknown): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, JSON.stringify(data, null, 2) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** Runs one episode; learning hooks only in train mode; 'demo' follows the env's expert (agent unused, may be null). */
export async function runEpisode(
  env: TextEnv, agent: Agent | null, mode: Mode | 'demo', episode: number, reset: Parameters<TextEnv['reset']>[0], historyWindow: number,
): Promise<EpisodeRecord> {
  const r = await env.reset(reset);
  let info: EnvInfo = r.info;
  const history: { action?: string; observation: string }[] = [{ observation: r.observation }];
  const steps: StepRecord[] = [];
  let total = 0;
  let won = false;
  const ctxOf = (obs: string, inf: EnvInfo, step: number): StepContext => ({
    episode, step, task: inf.task, observation: obs, admissible: inf.admissibleActions, state: stateText(inf.task, history, historyWindow), info: inf,
  });
  let ctx = ctxOf(r.observation, info, 0);
  for (let t = 0; ; t++) {
    if (ctx.admissible.length === 0) break;
    let a: number;
    if (mode === 'demo') {
      const action = env.expertAction?.();
      if (action === undefined) throw new Error(`env ${env.name} has no expert planner: --demos needs one`);
      a = ctx.admissible.indexOf(action);
      if (a < 0) throw new Error(`the expert's action '${action}' is not admissible`);
    } else {
      if (!agent) throw new TypeError('runEpisode: an agent is required outside demo mode');
      a = await agent.act(ctx, mode);
    }
    const action = ctx.admissible[a];
    const s = await env.step(action);
    total += s.reward;
    won = won || s.info.won;
    steps.push({ state: ctx.state, action, actionIndex: a, admissible: ctx.admissible, reward: s.reward });
    history.push({ action, observation: s.observation });
    info = s.info;
    const done = s.terminated || s.truncated;
    const next = done ? null : ctxOf(s.observation, info, t + 1);
    if (mode === 'train') await agent?.observe?.(ctx, a, s.reward, next);
    if (done || !next) break;
    ctx = next;
  }
  return { episode, task: info.task, taskType: info.taskType, steps, won, totalReward: total, source: mode === 'demo' ? 'demo' : 'train' };
}

/** Greedy evaluation with memory frozen on a split's fixed games. */
export async function evaluate(
  config: RunConfig, agent: Agent, split: string, episode: number, hooks: RunHooks = {}, envIn?: TextEnv,
): Promise<EvalMetric> {
  const env = envIn ?? makeEnv(config.env, config.envOptions);
  const t0 = Date.now();
  const size = env.evalSetSize(split);
  const games = Math.min(config.evalGames ?? 1000, Number.isFinite(size) ? size : 100);
  let wins = 0, reward = 0, steps = 0;
  const byType: Record<string, { games: number; success: number }> = {};
  for (let g = 0; g < games; g++) {
    const ep = await runEpisode(env, agent, 'eval', -1, { split, gameIndex: g, seed: g }, config.historyWindow);
    wins += ep.won ? 1 : 0;
    reward += ep.totalReward;
    steps += ep.steps.length;
    const tt = ep.taskType ?? 'all';
    byType[tt] ??= { games: 0, success: 0 };
    byType[tt].games++;
    byType[tt].success += ep.won ? 1 : 0;
    hooks.onProgress?.({ phase: 'eval', episode, episodes: config.episodes, successRate: wins / (g + 1), memory: agent.memorySize(), episodesPerSecond: 0, split, game: g + 1, games });
  }
  for (const v of Object.values(byType)) v.success /= v.games;
  if (!envIn) await env.close();
  return { kind: 'eval', episode, split, games, success: wins / games, meanReward: reward / games, meanSteps: steps / games, byTaskType: byType, seconds: (Date.now() - t0) / 1000 };
}

/** The evaluation splits: the config's, else every split but the training one, else the training split's own games. */
export function evalSplitsOf(config: RunConfig, env: TextEnv): string[] {
  if (config.evalSplits) return config.evalSplits;
  const others = env.splits.filter((s) => s !== env.splits[0]);
  return others.length ? others : [env.splits[0]];
}

/** Env options of the demonstrating env: environments with an observing expert get it asked for. */
export function demoEnvOptions(config: RunConfig): Record<string, unknown> {
  const observing: Record<string, Record<string, unknown>> = { household: { expert: 'search' } };
  return config.demoExpert === 'observing' && observing[config.env] ? { ...config.envOptions, ...observing[config.env] } : config.envOptions;
}

const CKPT = 'checkpoint';

async function saveCheckpoint(dir: string, agent: Agent, state: RunState): Promise<void> {
  const tmp = path.join(dir, `${CKPT}.tmp`);
  const cur = path.join(dir, CKPT);
  const old = path.join(dir, `${CKPT}.old`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  await agent.save(path.join(tmp, 'agent'));
  writeJsonAtomic(path.join(tmp, 'state.json'), state);
  // Swap in: the previous checkpoint stays complete until the new one is in place.
  fs.rmSync(old, { recursive: true, force: true });
  if (fs.existsSync(cur)) fs.renameSync(cur, old);
  fs.renameSync(tmp, cur);
  fs.rmSync(old, { recursive: true, force: true });
}

function latestCheckpoint(dir: string): string | undefined {
  for (const name of [CKPT, `${CKPT}.old`]) {
    const p = path.join(dir, name);
    if (fs.existsSync(path.join(p, 'state.json'))) return p;
  }
  return undefined;
}

/** Keeps only metrics lines that belong to the checkpointed prefix of the run. */
function truncateMetrics(file: string, episodesDone: number, demosDone: boolean): void {
  if (!fs.existsSync(file)) return;
  const keep = fs.readFileSync(file, 'utf8').split('\n').filter((line) => {
    if (!line.trim()) return false;
    try {
      const m = JSON.parse(line);
      if (m.kind === 'episode') return m.source === 'demo' ? demosDone : m.episode < episodesDone;
      if (m.kind === 'eval') return m.episode <= episodesDone && m.episode >= 0;
      if (m.kind === 'em') return m.episode <= episodesDone;
      return false;
    } catch {
      return false; // a torn last line from a crash
    }
  });
  fs.writeFileSync(file, keep.map((l) => l + '\n').join(''));
}

export function readMetrics(dir: string): (EpisodeMetric | EvalMetric)[] {
  const file = path.join(dir, 'metrics.jsonl');
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).flatMap((l) => {
    try {
      return [JSON.parse(l)];
    } catch {
      return [];
    }
  });
}

/**
 * Runs (or, with resume, continues) one agent's training in `dir`. Returns the summary, also
 * written to summary.json. Stops after the current episode when hooks.signal aborts.
 */
export async function runTraining(config: RunConfig, dir: string, hooks: RunHooks = {}, resume = false): Promise<RunSummary> {
  fs.mkdirSync(dir, { recursive: true });
  const metricsFile = path.join(dir, 'metrics.jsonl');
  const agent = await makeAgentAsync(config);
  const env = makeEnv(config.env, config.envOptions);
  let state: RunState = { episodesDone: 0, demosDone: false, wins: 0, recentWins: [], wallSeconds: 0 };
  if (resume) {
    const ck = latestCheckpoint(dir);
    if (ck) {
      state = JSON.parse(fs.readFileSync(path.join(ck, 'state.json'), 'utf8'));
      await agent.load(path.join(ck, 'agent'));
    }
    truncateMetrics(metricsFile, state.episodesDone, state.demosDone);
  } else {
    fs.rmSync(metricsFile, { force: true });
    writeJsonAtomic(path.join(dir, 'config.json'), config);
  }
  const append = (m: EpisodeMetric | EvalMetric | Record<string, unknown>) => fs.appendFileSync(metricsFile, JSON.stringify(m) + '\n');
  const splits = evalSplitsOf(config, env);
  const started = Date.now();
  const priorWall = state.wallSeconds; // wall time of earlier sessions of this run (resume)
  const wall = () => priorWall + (Date.now() - started) / 1000;
  const aborted = () => hooks.signal?.aborted ?? false;

  // Demonstrations: expert episodes of the train split written to memory (limited task data).
  if (!state.demosDone) {
    const demoEnv = config.demos > 0 && agent.endEpisode ? makeEnv(config.env, demoEnvOptions(config)) : env;
    for (let j = 0; j < config.demos && agent.endEpisode; j++) {
      const t0 = Date.now();
      const ep = await runEpisode(demoEnv, agent, 'demo', j, { seed: demoSeed(config.seed, j), split: env.splits[0] }, config.historyWindow);
      await agent.endEpisode(ep);
      append({ kind: 'episode', episode: j, source: 'demo', won: ep.won, reward: ep.totalReward, steps: ep.steps.length, taskType: ep.taskType, memory: agent.memorySize(), seconds: (Date.now() - t0) / 1000 });
      hooks.onProgress?.({ phase: 'demos', episode: j + 1, episodes: config.demos, successRate: 1, memory: agent.memorySize(), episodesPerSecond: 0 });
    }
    if (demoEnv !== env) await demoEnv.close();
    state.demosDone = true;
  }

  let sinceCkpt = 0;
  let epsThisSession = 0;
  while (state.episodesDone < config.episodes && !aborted()) {
    const i = state.episodesDone;
    const t0 = Date.now();
    const ep = await runEpisode(env, agent, 'train', i, { seed: trainSeed(config.seed, i), split: env.splits[0] }, config.historyWindow);
    await agent.endEpisode?.(ep);
    state.episodesDone++;
    epsThisSession++;
    state.wins += ep.won ? 1 : 0;
    state.recentWins.push(ep.won ? 1 : 0);
    if (state.recentWins.length > 50) state.recentWins.shift();
    append({ kind: 'episode', episode: i, source: 'train', won: ep.won, reward: ep.totalReward, steps: ep.steps.length, taskType: ep.taskType, memory: agent.memorySize(), seconds: (Date.now() - t0) / 1000, ...(agent.stats?.() ?? {}) });
    for (const ev of agent.events?.() ?? []) append(ev);
    hooks.onProgress?.({ phase: 'train', episode: state.episodesDone, episodes: config.episodes, successRate: state.wins / state.episodesDone, memory: agent.memorySize(), episodesPerSecond: epsThisSession / ((Date.now() - started) / 1000) });
    const evalNow = config.evalEvery > 0 && state.episodesDone % config.evalEvery === 0 && state.episodesDone < config.episodes;
    if (evalNow) {
      for (const split of splits) append(await evaluate(config, agent, split, state.episodesDone, hooks, env));
      hooks.onMetrics?.(dir);
    }
    if (++sinceCkpt >= config.checkpointEvery || evalNow) {
      state.wallSeconds = wall();
      await saveCheckpoint(dir, agent, state);
      sinceCkpt = 0;
    }
  }

  const complete = state.episodesDone >= config.episodes;
  if (complete) {
    const evals: RunSummary['evals'] = {};
    for (const split of splits) {
      if (aborted()) break;
      const e = await evaluate(config, agent, split, state.episodesDone, hooks, env);
      append(e);
      evals[split] = { success: e.success, games: e.games, meanReward: e.meanReward };
    }
    if (Object.keys(evals).length === splits.length) state.lastEval = evals;
  }
  const finished = complete && state.lastEval !== undefined;
  state.wallSeconds = wall();
  await saveCheckpoint(dir, agent, state);
  await env.close();
  const summary: RunSummary = {
    agent: config.agent,
    env: config.env,
    seed: config.seed,
    status: finished ? 'complete' : 'interrupted',
    episodes: state.episodesDone,
    demos: config.demos,
    trainSuccess: state.episodesDone ? state.wins / state.episodesDone : 0,
    trainSuccessLast: state.recentWins.length ? state.recentWins.reduce((a, b) => a + b, 0) / state.recentWins.length : 0,
    evals: state.lastEval ?? {},
    memory: agent.memorySize(),
    wallSeconds: state.wallSeconds,
    episodesPerSecond: state.wallSeconds > 0 ? (state.episodesDone + (state.demosDone ? config.demos : 0)) / state.wallSeconds : 0,
  };
  writeJsonAtomic(path.join(dir, 'summary.json'), summary);
  hooks.onMetrics?.(dir);
  return summary;
}

/** Loads a run's agent from its checkpoint (for `memq eval`). */
export async function loadRunAgent(dir: string): Promise<{ config: RunConfig; agent: Agent; episodes: number }> {
  const cfgFile = path.join(dir, 'config.json');
  if (!fs.existsSync(cfgFile)) throw new Error(`${dir} is not a memq run directory (no config.json)`);
  const config = configFromDisk(JSON.parse(fs.readFileSync(cfgFile, 'utf8')), cfgFile);
  const ck = latestCheckpoint(dir);
  if (!ck) throw new Error(`${dir} has no checkpoint to evaluate`);
  const agent = await makeAgentAsync(config);
  await agent.load(path.join(ck, 'agent'));
  const state = JSON.parse(fs.readFileSync(path.join(ck, 'state.json'), 'utf8')) as RunState;
  return { config, agent, episodes: state.episodesDone };
}
