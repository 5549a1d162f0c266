/**
 * `gridworld`: small MDPs with a known model, as text environments. Two task types:
 *   'grid'        a gridworld with walls, a goal and optional slip (grid.ts);
 *   'random_mdp'  a random tabular MDP (tabular.ts).
 * Both models are fixed when the environment is made; reset({ taskType }) picks which one
 * plays (default: options.taskType, else 'grid'), and the seed drives the start state and the
 * transitions. `toMdp()` returns the exact model the episodes are sampled from.
 */
import { EnvRng } from '../rng';
import type { EnvInfo, EnvOptions, ResetOptions, ResetResult, Split, StepResult, TextEnv } from '../types';
import { GridWorld, type GridOptions } from './grid';
import { type MdpJson, sampleNext } from './mdp';
import type { TextMdpModel } from './model';
import { RandomTabularMdp, type RandomMdpOptions } from './tabular';

export { GridWorld, DEFAULT_GRID_LAYOUT, GRID_ACTIONS } from './grid';
export type { GridOptions } from './grid';
export { RandomTabularMdp, randomMdp } from './tabular';
export type { RandomMdpOptions } from './tabular';
export { validateMdp, sampleNext } from './mdp';
export type { MdpJson } from './mdp';
export type { TextMdpModel } from './model';

export const GRIDWORLD_TASK_TYPES = ['grid', 'random_mdp'] as const;
export const GRIDWORLD_DEFAULT_MAX_STEPS = 100;

export interface GridworldEnvOptions extends EnvOptions {
  taskType?: 'grid' | 'random_mdp';
  grid?: GridOptions;
  random?: RandomMdpOptions;
  /** Flat forms, convenient from the CLI: */
  slip?: number;
  stepReward?: number;
  randomStart?: boolean;
  layout?: string[];
  states?: number;
  actions?: number;
  branching?: number;
  mdpSeed?: number;
}

export class GridworldEnv implements TextEnv {
  readonly name = 'gridworld';
  readonly taskTypes: readonly string[] = GRIDWORLD_TASK_TYPES;
  readonly splits: readonly Split[] = ['train'];
  readonly models: Readonly<Record<'grid' | 'random_mdp', TextMdpModel>>;
  private readonly maxSteps: number;
  private readonly defaultTaskType: 'grid' | 'random_mdp';
  private active: TextMdpModel;
  private rng: EnvRng | undefined;
  private s = -1;
  private steps = 0;
  private done = false;
  private won = false;

  constructor(options: GridworldEnvOptions = {}) {
    this.maxSteps = options.maxSteps ?? GRIDWORLD_DEFAULT_MAX_STEPS;
    if (!Number.isInteger(this.maxSteps) || this.maxSteps <= 0) {
      throw new RangeError(`gridworld: maxSteps must be a positive integer, got ${options.maxSteps}`);
    }
    const grid: GridOptions = {
      ...options.grid,
      ...(options.slip !== undefined ? { slip: options.slip } : {}),
      ...(options.stepReward !== undefined ? { stepReward: options.stepReward } : {}),
      ...(options.randomStart !== undefined ? { randomStart: options.randomStart } : {}),
      ...(options.layout !== undefined ? { layout: options.layout } : {}),
    };
    const random: RandomMdpOptions = {
      ...options.random,
      ...(options.states !== undefined ? { states: options.states } : {}),
      ...(options.actions !== undefined ? { actions: options.actions } : {}),
      ...(options.branching !== undefined ? { branching: options.branching } : {}),
      ...(options.mdpSeed !== undefined ? { mdpSeed: options.mdpSeed } : {}),
    };
    this.models = { grid: new GridWorld(grid), random_mdp: new RandomTabularMdp(random) };
    this.defaultTaskType = options.taskType ?? 'grid';
    this.active = this.model(this.defaultTaskType);
  }

  /** The model of a task type (default: the one the current episode plays). */
  model(taskType?: string): TextMdpModel {
    if (taskType === undefined) return this.active;
    if (taskType !== 'grid' && taskType !== 'random_mdp') {
      throw new RangeError(`gridworld: unknown task type '${taskType}' (known: ${GRIDWORLD_TASK_TYPES.join(', ')})`);
    }
    return this.models[taskType];
  }

  /** The exact MDP the episodes of a task type are sampled from. */
  toMdp(taskType?: string): MdpJson {
    return this.model(taskType).toMdp();
  }

  stateIndex(observation: string | number | { row: number; col: number }, taskType?: string): number {
    return this.model(taskType).stateIndex(observation);
  }

  actionIndex(text: string, taskType?: string): number {
    return this.model(taskType).actionIndex(text);
  }

  /** Index of the current state (-1 before the first reset). */
  get state(): number {
    return this.s;
  }

  evalSetSize(split: Split): number {
    if (split === 'train') return Infinity;
    throw new RangeError(`gridworld: unknown split '${split}' (known: train)`);
  }

  async reset(options: ResetOptions = {}): Promise<ResetResult> {
    const split = options.split ?? 'train';
    this.evalSetSize(split);
    this.active = this.model(options.taskType ?? this.defaultTaskType);
    this.rng = new EnvRng(options.gameIndex ?? options.seed ?? 0);
    this.s = this.active.start(this.rng);
    this.steps = 0;
    this.done = false;
    this.won = false;
    return { observation: this.active.describe(this.s), info: this.info(true) };
  }

  async step(action: string): Promise<StepResult> {
    if (!this.rng) throw new Error('gridworld: step() before reset()');
    if (this.done) throw new Error('gridworld: the episode is over; call reset()');
    const m = this.active;
    const a = m.actionIndex(action);
    this.steps++;
    let reward = 0;
    let observation: string;
    if (a < 0) {
      observation = `Nothing happens: '${action}' is not an action here.\n${m.describe(this.s)}`;
    } else {
      const next = sampleNext(this.mdpOf(m).P, this.s, a, this.rng.next());
      reward = m.reward(this.s, a, next);
      this.s = next;
      observation = m.describe(next);
    }
    const terminated = m.isTerminal(this.s);
    // Reaching the gridworld's goal is winning; a random MDP has no winning condition.
    this.won = terminated && m.kind === 'grid';
    const truncated = !terminated && this.steps >= this.maxSteps;
    this.done = terminated || truncated;
    return { observation, reward, terminated, truncated, info: this.info(a >= 0) };
  }

  async close(): Promise<void> {
    this.rng = undefined;
  }

  /**
   * Optimal action by value iteration on the exact model (discount EXPERT_GAMMA; ties go to
   * the first action). A reference for tests and `memq env-check`, not a solver API.
   */
  expertAction(): string | undefined {
    if (!this.rng || this.done) return undefined;
    const m = this.active;
    let q = this.expertQ.get(m);
    if (!q) {
      q = optimalQ(this.mdpOf(m), EXPERT_GAMMA);
      this.expertQ.set(m, q);
    }
    const row = q[this.s];
    let best = 0;
    for (let a = 1; a < row.length; a++) if (row[a] > row[best] + 1e-12) best = a;
    return m.actionNames[best];
  }

  private readonly expertQ = new Map<TextMdpModel, number[][]>();

  private readonly mdpCache = new Map<TextMdpModel, MdpJson>();
  private mdpOf(m: TextMdpModel): MdpJson {
    let mdp = this.mdpCache.get(m);
    if (!mdp) {
      mdp = m.toMdp();
      this.mdpCache.set(m, mdp);
    }
    return mdp;
  }

  private info(actionAdmissible: boolean): EnvInfo {
    return {
      admissibleActions: this.done ? [] : this.active.actionNames.slice(),
      task: this.active.task,
      won: this.won,
      taskType: this.active.kind,
      state: this.s,
      steps: this.steps,
      actionAdmissible,
    };
  }
}

const EXPERT_GAMMA = 0.95;

/** Q* by plain value iteration (to 1e-10); small models only. */
function optimalQ(mdp: MdpJson, gamma: number): number[][] {
  const { states: S, actions: A, P, R } = mdp;
  let V = new Array<number>(S).fill(0);
  const Q = Array.from({ length: S }, () => new Array<number>(A).fill(0));
  for (let it = 0; it < 10_000; it++) {
    let delta = 0;
    const next = new Array<number>(S);
    for (let s = 0; s < S; s++) {
      let best = -Infinity;
      for (let a = 0; a < A; a++) {
        let q = R[s][a];
        const row = P[s][a];
        for (let t = 0; t < S; t++) if (row[t] > 0) q += gamma * row[t] * V[t];
        Q[s][a] = q;
        if (q > best) best = q;
      }
      next[s] = best;
      delta = Math.max(delta, Math.abs(best - V[s]));
    }
    V = next;
    if (delta < 1e-10) break;
  }
  return Q;
}

export function makeGridworld(options?: EnvOptions): GridworldEnv {
  return new GridworldEnv(options as GridworldEnvOptions);
}
