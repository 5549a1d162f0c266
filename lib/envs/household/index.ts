/**
 * `household`: a fast, pure-TypeScript text world compatible with ALFWorld (>= 0.4): the same
 * command grammar and feedback, the six task types with ALFWorld's goal sentences, admissible
 * commands in `info`, train / valid_seen (140) / valid_unseen (134) splits, and an expert.
 *
 *   const env = makeHousehold({ maxSteps: 50 });
 *   let { observation, info } = await env.reset({ seed: 3, split: 'valid_unseen' });
 *   const r = await env.step(info.admissibleActions[0]);
 */
import { EnvRng } from '../rng';
import type { EnvInfo, EnvOptions, ResetOptions, ResetResult, Split, StepResult, TextEnv } from '../types';
import { ExpertMode, expertAction as expertFor } from './expert';
import { admissibleActions, isGoalMet, stepWorld } from './simulator';
import { EVAL_SET_SIZE, SPLITS, isSplit, placementSeed, resolveGameSpec } from './splits';
import { ALFWORLD_TASK_NAMES, TASK_TYPES, TaskType, parseTaskType } from './tasks';
import { commandIn, feedbackIn, GRAMMARS, introText, taskText, type Grammar } from './text';
import { GameSpec, World, buildWorld } from './world';

export { expertAction as expertActionFor } from './expert';
export type { ExpertMode } from './expert';
export { admissibleActions, applyCommand, isGoalMet, stepWorld } from './simulator';
export { evalGameSpec, evalSetTypes, resolveGameSpec, trainGameSpec, goalCandidates, SPLITS, EVAL_SET_SIZE } from './splits';
export { TASK_TYPES, ALFWORLD_TASK_NAMES, goalSentence, isUnseenGoalPair, parseTaskType } from './tasks';
export type { TaskType, Goal } from './tasks';
export type { GameSpec, World } from './world';
export { allRooms } from './rooms';
export { NOTHING_HAPPENS, GRAMMARS, commandIn, feedbackIn } from './text';
export type { Grammar } from './text';

export const DEFAULT_MAX_STEPS = 50;

/** Build the initial world of a game spec (deterministic). */
export function worldFromSpec(spec: GameSpec): World {
  return buildWorld(spec, new EnvRng(placementSeed(spec)));
}

export interface HouseholdOptions extends EnvOptions {
  /** Truncate after this many steps (default 50, as in ALFWorld evaluations). */
  maxSteps?: number;
  /** Default split for reset() when none is given (default 'train'). */
  split?: string;
  /**
   * What expertAction() plans with: 'oracle' (default; the true state, solves every game) or
   * 'search' (only what the agent has seen; searches receptacles like ALFWorld's handcoded expert).
   */
  expert?: ExpertMode;
  /**
   * The command grammar shown to the agent: '0.4' (default; "move O to R", ALFWorld >= 0.4) or
   * '0.3' ("put O in/on R", ALFWorld 0.3.x, which most published ALFWorld numbers use). Either
   * spelling is accepted as a command in both.
   */
  grammar?: Grammar;
}

export class HouseholdEnv implements TextEnv {
  readonly name = 'household';
  readonly taskTypes: readonly string[] = TASK_TYPES;
  readonly splits: readonly Split[] = SPLITS;
  readonly maxSteps: number;
  private readonly defaultSplit: string;
  private world: World | undefined;
  private steps = 0;
  private done = false;
  private won = false;
  private admissible: string[] = [];
  private admissibleVersion = -1;
  private task = '';
  private readonly expertMode: ExpertMode;
  /** The command grammar shown to the agent (HouseholdOptions.grammar). */
  readonly grammar: Grammar;

  constructor(options: HouseholdOptions = {}) {
    const m = options.maxSteps ?? DEFAULT_MAX_STEPS;
    if (!Number.isInteger(m) || m < 1) throw new TypeError(`household: maxSteps must be a positive integer, got ${m}`);
    this.maxSteps = m;
    const split = options.split ?? 'train';
    if (!isSplit(split)) throw new TypeError(`household: unknown split '${split}' (known: ${SPLITS.join(', ')})`);
    this.defaultSplit = split;
    const mode = options.expert ?? 'oracle';
    if (mode !== 'oracle' && mode !== 'search') throw new TypeError(`household: expert must be 'oracle' or 'search', got '${mode}'`);
    this.expertMode = mode;
    const g = options.grammar ?? '0.4';
    if (!GRAMMARS.includes(g)) throw new TypeError(`household: grammar must be '0.3' or '0.4', got ${JSON.stringify(g)}`);
    this.grammar = g;
  }

  /** Reward 1 on the winning step, 0 otherwise: every return lies in [0, 1]. */
  returnRange(): { min: number; max: number } {
    return { min: 0, max: 1 };
  }

  evalSetSize(split: Split): number {
    if (split === 'train') return Infinity;
    const n = EVAL_SET_SIZE[split];
    if (n === undefined) throw new TypeError(`household: unknown split '${split}' (known: ${SPLITS.join(', ')})`);
    return n;
  }

  /** The current world (read-only use: tests, planners, renderers). */
  get state(): World {
    if (!this.world) throw new Error('household: call reset() first');
    return this.world;
  }

  async reset(options: ResetOptions = {}): Promise<ResetResult> {
    return this.resetSync(options);
  }

  /** Synchronous reset (same result as reset()). */
  resetSync(options: ResetOptions = {}): ResetResult {
    const split = options.split ?? this.defaultSplit;
    if (!isSplit(split)) throw new TypeError(`household: unknown split '${split}' (known: ${SPLITS.join(', ')})`);
    let type: TaskType | undefined;
    if (options.taskType !== undefined) {
      type = parseTaskType(options.taskType);
      if (!type) throw new TypeError(`household: unknown task type '${options.taskType}' (known: ${TASK_TYPES.join(', ')})`);
    }
    const seed = options.seed ?? 0;
    if (!Number.isFinite(seed)) throw new TypeError(`household: seed must be a finite number, got ${seed}`);
    if (options.gameIndex !== undefined && split === 'train') {
      throw new TypeError('household: gameIndex addresses a fixed evaluation set (valid_seen, valid_unseen), not train');
    }
    const spec = resolveGameSpec(split, seed, type, options.gameIndex);
    this.world = worldFromSpec(spec);
    this.steps = 0;
    this.done = false;
    this.won = false;
    this.admissibleVersion = -1;
    this.task = taskText(this.world).slice('Your task is to: '.length);
    return { observation: introText(this.world), info: this.info() };
  }

  async step(action: string): Promise<StepResult> {
    return this.stepSync(action);
  }

  /** Synchronous step (same result as step()); the hot path for benchmarks and batch rollouts. */
  stepSync(action: string): StepResult {
    const w = this.world;
    if (!w) throw new Error('household: call reset() before step()');
    if (this.done) throw new Error('household: the episode is over (terminated or truncated); call reset()');
    if (typeof action !== 'string') throw new TypeError('household: action must be a string');
    const { feedback } = stepWorld(w, action);
    this.steps++;
    const won = isGoalMet(w);
    this.won = won;
    const truncated = !won && this.steps >= this.maxSteps;
    this.done = won || truncated;
    return { observation: feedbackIn(this.grammar, feedback), reward: won ? 1 : 0, terminated: won, truncated, info: this.info() };
  }

  expertAction(): string | undefined {
    if (!this.world || this.done) return undefined;
    const a = expertFor(this.world, this.expertMode);
    return a === undefined ? undefined : commandIn(this.grammar, a);
  }

  async close(): Promise<void> {
    this.world = undefined;
  }

  private info(): EnvInfo {
    const w = this.world!;
    if (this.admissibleVersion !== w.version) {
      this.admissible = admissibleActions(w);
      if (this.grammar !== '0.4') {
        // The list is sorted; the placing command's new spelling moves it within that order.
        this.admissible = this.admissible.map((c) => commandIn(this.grammar, c)).sort();
      }
      this.admissibleVersion = w.version;
    }
    return {
      // A copy: callers may sort or filter it without corrupting the cache (state-preserving
      // commands such as look / examine / inventory reuse the cached list).
      admissibleActions: this.admissible.slice(),
      task: this.task,
      won: this.won,
      taskType: w.spec.taskType,
      alfworldTaskType: ALFWORLD_TASK_NAMES[w.spec.taskType],
      gameId: w.spec.id,
      split: w.spec.split,
      scene: w.spec.room.id,
      step: this.steps,
      maxSteps: this.maxSteps,
    };
  }
}

/** Registry factory: `makeEnv('household', { maxSteps })`. */
export function makeHousehold(options?: EnvOptions): TextEnv {
  return new HouseholdEnv(options as HouseholdOptions | undefined);
}
