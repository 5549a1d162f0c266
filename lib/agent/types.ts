/** The agent interface shared by memq and the baselines, and what they see of a step. */
import type { EStepSource, MemEm } from '../train/memEm';
import type { EpisodeRecord, Mode, StepContext } from '../episode/types';

// The step and episode records live in lib/episode/types.ts (below lib/agent and lib/train).
export { stateText, type EpisodeRecord, type Mode, type StepContext, type StepRecord } from '../episode/types';

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
  /**
   * Mem-EM (MATH §11) on this agent's prior, when it uses it: the state (saved and loaded with the
   * agent) and what the E-step reads from the agent. The runner decides when a round runs.
   */
  memEm?(): { em: MemEm; source: EStepSource } | null;
}
