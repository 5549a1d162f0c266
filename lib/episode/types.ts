/**
 * What an episode is made of, below the agents and the trainers that both use it: the context an
 * actor sees before each step, the record of a step and of an episode, and the state text that
 * memory is keyed on. lib/agent (the agents, the runner) and lib/train (Mem-EM, pretraining)
 * import it; it imports neither.
 */
import type { EnvInfo } from '../envs/types';

export type Mode = 'train' | 'eval';

/** The default number of recent (action, observation) pairs in the state text (RunConfig.historyWindow). */
export const DEFAULT_HISTORY_WINDOW = 1;

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

/** What plays an episode (lib/agent's Agent is one): the choice, and the fast clock in train mode. */
export interface Actor {
  /** Chooses an index into ctx.admissible. */
  act(ctx: StepContext, mode: Mode): Promise<number>;
  /** Fast clock: called after every training step (next = null at the end of the episode). */
  observe?(ctx: StepContext, actionIndex: number, reward: number, next: StepContext | null): Promise<void>;
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
