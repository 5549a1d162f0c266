/**
 * The training / evaluation loop behind `memq run` (issue: agent loop): episodes over the train
 * split, greedy evaluation with memory frozen every K episodes and at the end, expert
 * demonstrations, metrics, checkpoints that make interrupted runs resumable exactly, and the
 * output directory (config.json, metrics.jsonl, summary.json, plots, memory snapshot).
 */
import * as fs from 'fs';
import * as path from 'path';
import { makeEnv } from '../envs/registry';
import type { TextEnv } from '../envs/types';
import { configFromDisk, makeAgentAsync, type RunConfig } from './config';
import { MemQAgent } from './memq';
import type { EpisodicMemory } from '../memory/episodic';
import { runEpisode, demoEnvOptions } from '../episode/rollout';
import type { Agent, EpisodeRecord } from './types';

// The episode loop lives in lib/episode/rollout.ts (shared with lib/train/pretrain.ts).
export { runEpisode, demoEnvOptions } from '../episode/rollout';

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
  /**
   * The agent's own evaluation statistics (Agent.evalStats), over the games: the mean of each,
   * except coverageRadius (the largest distance from an evaluation state to memory, §13): the max.
   */
  agentStats?: Record<string, number>;
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
  /**
   * A memory shared with other actors (`memq run --memory redis://...`): given the agent's own
   * fresh memory (for its options), returns the one to use instead (memq agent only).
   */
  sharedMemory?: (own: EpisodicMemory) => Promise<EpisodicMemory>;
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
  /** Demonstrations written so far (while demosDone is false). */
  demoEpisodes?: number;
  wins: number;
  recentWins: number[];
  wallSeconds: number;
  /** Training episodes done when the last evaluation finished every split (-1 or absent: none yet). */
  evaluatedAt?: number;
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

/** One finished evaluation game, as recorded (and checkpointed) game by game. */
export interface EvalGame {
  game: number;
  won: boolean;
  reward: number;
  steps: number;
  taskType?: string;
  /** The agent's statistics of this game (Agent.evalStats), e.g. the reflect agent's coverage. */
  agent?: Record<string, number>;
}

/** Number of games an evaluation of `split` plays: evalGames, else the whole fixed set (100 games where the set is unbounded). */
export function evalGamesOf(config: RunConfig, env: TextEnv, split: string): number {
  const size = env.evalSetSize(split);
  const n = config.evalGames ?? (Number.isFinite(size) ? size : 100);
  return Number.isFinite(size) ? Math.min(n, size) : n;
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The agent's random state for evaluation game g of a split: fixed by (run seed, split, game), not by play order. */
export function evalGameRngState(seed: number, split: string, g: number): number {
  let h = (Math.imul(seed + 1, 0x9e3779b1) ^ hashString(split)) >>> 0;
  h = Math.imul(h ^ (g + 0x632be5ab), 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** The aggregate of an evaluation's games, summed in game order (so a resumed evaluation adds up to the same numbers). */
export function evalMetricOf(episode: number, split: string, games: EvalGame[], seconds: number): EvalMetric {
  let wins = 0, reward = 0, steps = 0;
  const byType: Record<string, { games: number; success: number }> = {};
  for (const g of games) {
    wins += g.won ? 1 : 0;
    reward += g.reward;
    steps += g.steps;
    const tt = g.taskType ?? 'all';
    byType[tt] ??= { games: 0, success: 0 };
    byType[tt].games++;
    byType[tt].success += g.won ? 1 : 0;
  }
  for (const v of Object.values(byType)) v.success /= v.games;
  const n = games.length;
  const metric: EvalMetric = { kind: 'eval', episode, split, games: n, success: n ? wins / n : 0, meanReward: n ? reward / n : 0, meanSteps: n ? steps / n : 0, byTaskType: byType, seconds };
  const stats = aggregateAgentStats(games);
  if (stats) metric.agentStats = stats;
  return metric;
}

/** Per-game agent statistics over an evaluation: means, and the max for coverageRadius (NaN values skipped). */
function aggregateAgentStats(games: EvalGame[]): Record<string, number> | undefined {
  const acc = new Map<string, { sum: number; n: number; max: number }>();
  for (const g of games) {
    for (const [k, v] of Object.entries(g.agent ?? {})) {
      if (!Number.isFinite(v)) continue;
      const a = acc.get(k) ?? { sum: 0, n: 0, max: -Infinity };
      a.sum += v;
      a.n++;
      a.max = Math.max(a.max, v);
      acc.set(k, a);
    }
  }
  if (!acc.size) return undefined;
  const out: Record<string, number> = {};
  for (const [k, a] of acc) out[k] = k === 'coverageRadius' ? a.max : a.sum / a.n;
  return out;
}

/** Lets the event loop run (signal handlers, timers) between games of agents that never wait on I/O. */
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Append-only record of an evaluation's finished games (one JSON line each, fsynced), so an
 * interrupted or killed evaluation continues where it stopped. The first line names the
 * evaluation; a torn last line (a crash mid-write) is dropped when the file is reopened.
 */
class EvalRecord {
  private fd: number;
  readonly games: EvalGame[] = [];

  constructor(readonly file: string, header: { episode: number; split: string; games: number }) {
    const head = JSON.stringify({ kind: 'eval-games', ...header });
    let lines: string[] = [];
    if (fs.existsSync(file)) lines = fs.readFileSync(file, 'utf8').split('\n');
    if (lines[0] === head) {
      for (const line of lines.slice(1)) {
        let g: EvalGame;
        try {
          g = JSON.parse(line);
        } catch {
          break;
        }
        if (!g || g.game !== this.games.length || this.games.length >= header.games) break;
        this.games.push(g);
      }
    }
    // Rewrite the valid prefix (drops a torn line or a record of another evaluation), then append.
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const text = [head, ...this.games.map((g) => JSON.stringify(g))].join('\n') + '\n';
    const tmp = `${file}.tmp-${process.pid}`;
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
    this.fd = fs.openSync(file, 'a');
  }

  add(g: EvalGame): void {
    fs.writeSync(this.fd, JSON.stringify(g) + '\n');
    fs.fsyncSync(this.fd);
    this.games.push(g);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/** Where an evaluation's per-game record lives in a run directory. */
export function evalRecordFile(dir: string, episode: number, split: string): string {
  return path.join(dir, EVAL_GAMES, `ep${episode}-${encodeURIComponent(split)}.jsonl`);
}
const EVAL_GAMES = 'eval-games';

export interface EvalOutcome {
  metric: EvalMetric;
  /** False when hooks.signal stopped it between games (metric covers the games played). */
  complete: boolean;
}

/**
 * Greedy evaluation with memory frozen on a split's fixed games. Each game's agent stream is
 * seeded from (run seed, split, game), and the training stream is restored afterwards. Checks
 * hooks.signal between games (the current game finishes). With `recordFile`, finished games
 * are appended there and games already recorded are not played again.
 */
export async function evaluateGames(
  config: RunConfig, agent: Agent, split: string, episode: number, hooks: RunHooks = {}, envIn?: TextEnv, recordFile?: string,
): Promise<EvalOutcome> {
  const env = envIn ?? makeEnv(config.env, config.envOptions);
  const t0 = Date.now();
  const total = evalGamesOf(config, env, split);
  const record = recordFile ? new EvalRecord(recordFile, { episode, split, games: total }) : undefined;
  const games: EvalGame[] = record ? record.games : [];
  const saved = agent.rngState?.();
  let wins = games.reduce((k, g) => k + (g.won ? 1 : 0), 0);
  try {
    for (let g = games.length; g < total; g++) {
      if (hooks.signal?.aborted) break;
      agent.setRngState?.(evalGameRngState(config.seed, split, g));
      const ep = await runEpisode(env, agent, 'eval', -1, { split, gameIndex: g, seed: g }, config.historyWindow);
      const rec: EvalGame = { game: g, won: ep.won, reward: ep.totalReward, steps: ep.steps.length };
      if (ep.taskType !== undefined) rec.taskType = ep.taskType;
      const st = agent.evalStats?.();
      if (st) rec.agent = st;
      if (record) record.add(rec);
      else games.push(rec);
      wins += ep.won ? 1 : 0;
      hooks.onProgress?.({ phase: 'eval', episode, episodes: config.episodes, successRate: wins / (g + 1), memory: agent.memorySize(), episodesPerSecond: 0, split, game: g + 1, games: total });
      await yieldToEventLoop();
    }
  } finally {
    if (saved !== undefined) agent.setRngState?.(saved);
    record?.close();
    if (!envIn) await env.close();
  }
  return { metric: evalMetricOf(episode, split, games, (Date.now() - t0) / 1000), complete: games.length === total };
}

/** Greedy evaluation with memory frozen on a split's fixed games (evaluateGames without a record). */
export async function evaluate(
  config: RunConfig, agent: Agent, split: string, episode: number, hooks: RunHooks = {}, envIn?: TextEnv,
): Promise<EvalMetric> {
  return (await evaluateGames(config, agent, split, episode, hooks, envIn)).metric;
}

/** The evaluation splits: the config's, else every split but the training one, else the training split's own games. */
export function evalSplitsOf(config: RunConfig, env: TextEnv): string[] {
  if (config.evalSplits) return config.evalSplits;
  const others = env.splits.filter((s) => s !== env.splits[0]);
  return others.length ? others : [env.splits[0]];
}

/**
 * Mem-EM on the slow clock (MATH §11), after the agent wrote the episode to memory: every episode
 * with steps (demos too) feeds its state pool; every em.every training episodes an E/M round
 * runs with what the agent's E-step source reads from that memory. Its metric line comes out of
 * agent.events() with the episode's.
 */
async function memEmAfter(agent: Agent, ep: EpisodeRecord): Promise<void> {
  const m = agent.memEm?.();
  if (m && ep.steps.length > 0 && m.em.observe(ep)) await m.em.run(m.source, ep.episode + 1);
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

/** Rewrites only the run state of the current checkpoint (the agent is unchanged since it was saved). */
function saveCheckpointState(dir: string, state: RunState): void {
  writeJsonAtomic(path.join(dir, CKPT, 'state.json'), state);
}

/** Keeps only metrics lines that belong to the checkpointed prefix of the run. */
function truncateMetrics(file: string, state: RunState): void {
  if (!fs.existsSync(file)) return;
  const { episodesDone, demosDone } = state;
  const evaluatedAt = state.evaluatedAt ?? -1;
  const keep = fs.readFileSync(file, 'utf8').split('\n').filter((line) => {
    if (!line.trim()) return false;
    try {
      const m = JSON.parse(line);
      if (m.kind === 'episode') return m.source === 'demo' ? demosDone || m.episode < (state.demoEpisodes ?? 0) : m.episode < episodesDone;
      // an evaluation at the checkpoint itself counts only once all its splits finished
      if (m.kind === 'eval') return m.episode >= 0 && (m.episode < episodesDone || m.episode <= evaluatedAt);
      if (m.kind === 'em') return m.episode <= episodesDone;
      return false;
    } catch {
      return false; // a torn last line from a crash
    }
  });
  fs.writeFileSync(file, keep.map((l) => l + '\n').join(''));
}

/** Drops per-game evaluation records past the checkpoint (they belong to a later, lost part of the run). */
function pruneEvalRecords(dir: string, episodesDone: number): void {
  const d = path.join(dir, EVAL_GAMES);
  if (!fs.existsSync(d)) return;
  for (const f of fs.readdirSync(d)) {
    const m = /^ep(\d+)-/.exec(f);
    if (!m || Number(m[1]) > episodesDone || f.includes('.tmp-')) fs.rmSync(path.join(d, f), { force: true });
  }
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
  if (hooks.sharedMemory) {
    if (!(agent instanceof MemQAgent)) throw new RangeError(`a shared memory is for the memq agent, not '${config.agent}'`);
    agent.useMemory(await hooks.sharedMemory(agent.memory));
  }
  const env = makeEnv(config.env, config.envOptions);
  // Evaluations fall after every evalEvery-th training episode and at the end of training.
  const evalDue = (n: number) => n >= config.episodes || (config.evalEvery > 0 && n > 0 && n % config.evalEvery === 0);
  let state: RunState = { episodesDone: 0, demosDone: false, wins: 0, recentWins: [], wallSeconds: 0, evaluatedAt: -1 };
  /** True while dir/checkpoint holds exactly the current agent and progress (nothing learnt since). */
  let saved = false;
  if (resume) {
    const ck = latestCheckpoint(dir);
    if (ck) {
      try {
        state = JSON.parse(fs.readFileSync(path.join(ck, 'state.json'), 'utf8'));
        if (!state || typeof state !== 'object' || !Number.isInteger(state.episodesDone) || state.episodesDone < 0 || !Array.isArray(state.recentWins)) {
          throw new Error('state.json does not hold a run state');
        }
        await agent.load(path.join(ck, 'agent'));
      } catch (e) {
        throw new CheckpointError(
          `${ck} cannot be loaded (${(e as Error).message}); the run cannot continue from it: start a new run, ` +
          `or remove ${ck} to run this one again from the beginning`,
        );
      }
      saved = ck === path.join(dir, CKPT);
      // checkpoints written before evaluatedAt existed were saved after any evaluation due at them
      state.evaluatedAt ??= evalDue(state.episodesDone) && (state.episodesDone < config.episodes || state.lastEval) ? state.episodesDone : -1;
    }
    truncateMetrics(metricsFile, state);
    pruneEvalRecords(dir, state.episodesDone);
  } else {
    fs.rmSync(metricsFile, { force: true });
    fs.rmSync(path.join(dir, EVAL_GAMES), { recursive: true, force: true });
    writeJsonAtomic(path.join(dir, 'config.json'), config);
  }
  const append = (m: EpisodeMetric | EvalMetric | Record<string, unknown>) => fs.appendFileSync(metricsFile, JSON.stringify(m) + '\n');
  const splits = evalSplitsOf(config, env);
  const started = Date.now();
  const priorWall = state.wallSeconds; // wall time of earlier sessions of this run (resume)
  const wall = () => priorWall + (Date.now() - started) / 1000;
  const aborted = () => hooks.signal?.aborted ?? false;
  let sinceCkpt = 0;
  const checkpoint = async () => {
    state.wallSeconds = wall();
    await saveCheckpoint(dir, agent, state);
    saved = true;
    sinceCkpt = 0;
  };

  // Demonstrations: expert episodes of the train split written to memory (limited task data).
  if (!state.demosDone) {
    const demoEnv = config.demos > 0 && agent.endEpisode ? makeEnv(config.env, demoEnvOptions(config)) : env;
    for (let j = state.demoEpisodes ?? 0; j < config.demos && agent.endEpisode && !aborted(); j++) {
      const t0 = Date.now();
      const ep = await runEpisode(demoEnv, agent, 'demo', j, { seed: demoSeed(config.seed, j), split: env.splits[0] }, config.historyWindow);
      await agent.endEpisode(ep);
      await memEmAfter(agent, ep);
      append({ kind: 'episode', episode: j, source: 'demo', won: ep.won, reward: ep.totalReward, steps: ep.steps.length, taskType: ep.taskType, memory: agent.memorySize(), seconds: (Date.now() - t0) / 1000 });
      state.demoEpisodes = j + 1;
      saved = false;
      hooks.onProgress?.({ phase: 'demos', episode: j + 1, episodes: config.demos, successRate: 1, memory: agent.memorySize(), episodesPerSecond: 0 });
      if (++sinceCkpt >= config.checkpointEvery && j + 1 < config.demos) await checkpoint();
      await yieldToEventLoop();
    }
    if (demoEnv !== env) await demoEnv.close();
    if (!aborted() || (state.demoEpisodes ?? 0) >= config.demos || !agent.endEpisode) {
      state.demosDone = true;
      delete state.demoEpisodes;
    }
    sinceCkpt = 0; // training checkpoints keep their cadence (every checkpointEvery training episodes)
  }

  let epsThisSession = 0;
  for (;;) {
    const n = state.episodesDone;
    if (state.demosDone && evalDue(n) && (state.evaluatedAt ?? -1) < n) {
      // Checkpoint first: a crash or an interrupt during the evaluation resumes right here, and
      // the games already recorded in eval-games/ are not played again.
      if (!saved) await checkpoint();
      const evals: RunSummary['evals'] = {};
      let finished = true;
      for (const split of splits) {
        const r = await evaluateGames(config, agent, split, n, hooks, env, evalRecordFile(dir, n, split));
        if (!r.complete) {
          finished = false;
          break;
        }
        append(r.metric);
        evals[split] = { success: r.metric.success, games: r.metric.games, meanReward: r.metric.meanReward };
      }
      if (!finished) break;
      state.evaluatedAt = n;
      if (n >= config.episodes) state.lastEval = evals;
      state.wallSeconds = wall();
      saveCheckpointState(dir, state);
      if (n < config.episodes) hooks.onMetrics?.(dir);
    }
    if (n >= config.episodes || aborted() || !state.demosDone) break;
    const i = state.episodesDone;
    const t0 = Date.now();
    const ep = await runEpisode(env, agent, 'train', i, { seed: trainSeed(config.seed, i), split: env.splits[0] }, config.historyWindow);
    await agent.endEpisode?.(ep);
    await memEmAfter(agent, ep);
    state.episodesDone++;
    saved = false;
    epsThisSession++;
    state.wins += ep.won ? 1 : 0;
    state.recentWins.push(ep.won ? 1 : 0);
    if (state.recentWins.length > 50) state.recentWins.shift();
    append({ kind: 'episode', episode: i, source: 'train', won: ep.won, reward: ep.totalReward, steps: ep.steps.length, taskType: ep.taskType, memory: agent.memorySize(), seconds: (Date.now() - t0) / 1000, ...(agent.stats?.() ?? {}) });
    for (const ev of agent.events?.() ?? []) append(ev);
    hooks.onProgress?.({ phase: 'train', episode: state.episodesDone, episodes: config.episodes, successRate: state.wins / state.episodesDone, memory: agent.memorySize(), episodesPerSecond: epsThisSession / ((Date.now() - started) / 1000) });
    if (++sinceCkpt >= config.checkpointEvery) await checkpoint();
    await yieldToEventLoop();
  }

  const finished = state.episodesDone >= config.episodes && state.lastEval !== undefined && (state.evaluatedAt ?? -1) >= state.episodesDone;
  if (saved) {
    state.wallSeconds = wall();
    saveCheckpointState(dir, state);
  } else {
    await checkpoint();
  }
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
    evals: finished ? state.lastEval! : {},
    memory: agent.memorySize(),
    wallSeconds: state.wallSeconds,
    episodesPerSecond: state.wallSeconds > 0 ? (state.episodesDone + (state.demosDone ? config.demos : 0)) / state.wallSeconds : 0,
  };
  writeJsonAtomic(path.join(dir, 'summary.json'), summary);
  hooks.onMetrics?.(dir);
  return summary;
}

/** A run's checkpoint is damaged (a corrupt or forged file): it cannot be resumed or evaluated from. */
export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

/** Loads a run's agent from its checkpoint (for `memq eval`). */
export async function loadRunAgent(dir: string): Promise<{ config: RunConfig; agent: Agent; episodes: number }> {
  const cfgFile = path.join(dir, 'config.json');
  if (!fs.existsSync(cfgFile)) throw new Error(`${dir} is not a memq run directory (no config.json)`);
  const readJson = (file: string) => {
    try {
      return JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`${file}: cannot read it as JSON (${(e as Error).message})`);
    }
  };
  const config = configFromDisk(readJson(cfgFile), cfgFile);
  const ck = latestCheckpoint(dir);
  if (!ck) throw new Error(`${dir} has no checkpoint to evaluate`);
  const state = readJson(path.join(ck, 'state.json')) as RunState;
  const agent = await makeAgentAsync(config);
  try {
    await agent.load(path.join(ck, 'agent'));
  } catch (e) {
    throw new Error(`${path.join(ck, 'agent')}: cannot load the saved agent (${(e as Error).message})`);
  }
  return { config, agent, episodes: state.episodesDone };
}
