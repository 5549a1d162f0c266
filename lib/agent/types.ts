/** The agent interface shared by memq and the baselines, and what they see of a step. */
import type { EnvInfo } from '../envs/types';

export type Mode = 'train' | 'eval';

/** What an agent sees before acting. */
export interface StepContext {
  episode: number;
  step: number;
  task: string;
  observation: string;
  admissible: string[];
  /** The agent-facing state text: the task plus a short window of recent actions/observations. */
  state: string;
  info: EnvInfo;
}

export interface StepRecord {
  state: string;
  action: string;
  actionIndex: number;
  admissible: string[];
  reward: number;
}

export interface EpisodeRecord {
  episode: number;
  task: string;
  taskType?: string;
  steps: StepRecord[];
  won: boolean;
  totalReward: number;
  /** 'train' episodes from the agent, 'demo' episodes from the expert. */
  source: 'train' | 'demo';
}

export interface Agent {
  readonly name: string;
  /** Chooses an index into ctx.admissible. */
  act(ctx: StepContext, mode: Mode): Promise<number>;
  /** Fast clock: called after every training step (next = null at the end of the episode). */
  observe?(ctx: StepContext, actionIndex: number, reward: number, next: StepContext | null): Promise<void>;
  /** Slow clock: called after every training (or demonstration) episode. */
  endEpisode?(episode: EpisodeRecord): Promise<void>;
  /** Number of cases in memory (0 for memoryless agents). */
  memorySize(): number;
  /**
   * The agent's random stream (its whole state, one uint32) and its setter. Evaluation seeds
   * each game's stream from (run seed, split, game) and restores the training stream after, so
   * greedy evaluation is reproducible game by game (an interrupted evaluation resumes exactly)
   * and does not perturb training. Agents without them evaluate on their shared stream.
   */
  rngState?(): number;
  setRngState?(state: number): void;
  /** Persist everything needed to continue exactly (memory, RNG state, counters). */
  save(dir: string): Promise<void>;
  load(dir: string): Promise<void>;
  /** A few numbers for metrics (e.g. mean confidence). */
  stats?(): Record<string, number>;
  /**
   * Statistics of the evaluation steps since the last call (called after each evaluation game;
   * stored with the game and aggregated into the evaluation's metric line as agentStats).
   */
  evalStats?(): Record<string, number>;
  /** Metric lines produced since the last call (e.g. Mem-EM rounds, kind 'em'). */
  events?(): Record<string, unknown>[];
}

/** The state text an agent keys its memory on: task, then the last `window` (action, observation) pairs. */
export function stateText(task: string, history: { action?: string; observation: string }[], window: number): string {
  const recent = history.slice(-Math.max(1, window));
  const parts = [`task: ${task}`];
  for (const h of recent) {
    if (h.action) parts.push(`> ${h.action}`);
    parts.push(h.observation);
  }
  return parts.join('\n');
}
