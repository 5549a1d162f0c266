/**
 * `kitchen`: the Overcooked salad text game (TWOSOME, Tan et al. 2024) as a TextEnv.
 * Rules and reward: see world.ts. Maps and splits: see layout.ts. Expert: expert.ts.
 */
import { EnvRng } from '../rng';
import type { EnvInfo, EnvOptions, ResetOptions, ResetResult, Split, StepResult, TextEnv } from '../types';
import { type Placement, SEEN_MAPS, UNSEEN_MAPS, drawPlacement } from './layout';
import { expertAction } from './expert';
import { type KitchenState, RECIPES, REWARD, admissibleActions, applyAction, describe, initialState, recipeFor, taskText } from './world';

export { REWARD, RECIPES } from './world';
export type { KitchenState } from './world';

export const KITCHEN_TASK_TYPES: readonly string[] = RECIPES.map((r) => r.taskType);
export const KITCHEN_SPLITS: readonly Split[] = ['train', 'valid_seen', 'valid_unseen'];
/** Size of each fixed evaluation set (game i has task type KITCHEN_TASK_TYPES[i % 3]). */
export const KITCHEN_EVAL_SET_SIZE = 60;
export const KITCHEN_DEFAULT_MAX_STEPS = 50;

/** Seed offsets keep the evaluation streams apart from each other and from train seeds. */
const EVAL_SEED_BASE: Record<string, number> = { valid_seen: 0x5eed0001, valid_unseen: 0x5eed8001 };

export interface KitchenGame {
  split: Split;
  taskType: string;
  placement: Placement;
  gameId: string;
}

/** The game a reset with these options plays (pure; exported for tests and tooling). */
export function kitchenGame(options: ResetOptions = {}): KitchenGame {
  const split = options.split ?? 'train';
  if (!KITCHEN_SPLITS.includes(split)) {
    throw new RangeError(`kitchen: unknown split '${split}' (known: ${KITCHEN_SPLITS.join(', ')})`);
  }
  if (options.taskType !== undefined) recipeFor(options.taskType);
  if (split === 'train') {
    if (options.gameIndex !== undefined) throw new RangeError("kitchen: the 'train' split has no fixed games; pass a seed");
    const seed = options.seed ?? 0;
    const rng = new EnvRng(seed);
    const taskType = options.taskType ?? KITCHEN_TASK_TYPES[rng.int(KITCHEN_TASK_TYPES.length)];
    const placement = drawPlacement(rng, SEEN_MAPS, false);
    return { split, taskType, placement, gameId: `train/${seed}` };
  }
  let index = options.gameIndex ?? (options.seed ?? 0);
  if (!Number.isInteger(index)) throw new RangeError(`kitchen: gameIndex must be an integer, got ${index}`);
  if (options.gameIndex !== undefined && (index < 0 || index >= KITCHEN_EVAL_SET_SIZE)) {
    throw new RangeError(`kitchen: gameIndex ${index} outside ${split}'s ${KITCHEN_EVAL_SET_SIZE} games`);
  }
  index = ((index % KITCHEN_EVAL_SET_SIZE) + KITCHEN_EVAL_SET_SIZE) % KITCHEN_EVAL_SET_SIZE;
  const rng = new EnvRng(EVAL_SEED_BASE[split] + index);
  const taskType = options.taskType ?? KITCHEN_TASK_TYPES[index % KITCHEN_TASK_TYPES.length];
  const placement = split === 'valid_seen' ? drawPlacement(rng, SEEN_MAPS, true) : drawPlacement(rng, UNSEEN_MAPS, undefined);
  return { split, taskType, placement, gameId: `${split}/${index}` };
}

export class KitchenEnv implements TextEnv {
  readonly name = 'kitchen';
  readonly taskTypes = KITCHEN_TASK_TYPES;
  readonly splits = KITCHEN_SPLITS;
  private readonly maxSteps: number;
  private state: KitchenState | undefined;
  private game: KitchenGame | undefined;
  private steps = 0;
  private moves = 0;
  private done = false;

  constructor(options: EnvOptions = {}) {
    this.maxSteps = options.maxSteps ?? KITCHEN_DEFAULT_MAX_STEPS;
    if (!Number.isInteger(this.maxSteps) || this.maxSteps <= 0) {
      throw new RangeError(`kitchen: maxSteps must be a positive integer, got ${options.maxSteps}`);
    }
  }

  /**
   * Positive rewards are paid once each (a subtask per recipe ingredient chopped and put in the
   * bowl, then the correct delivery, which ends the game): at most correctDelivery + 2 · 3 ·
   * subtask. Negative ones (the step cost, a wrong delivery) at most once per step.
   */
  returnRange(): { min: number; max: number } {
    const most = Math.max(...RECIPES.map((r) => r.ingredients.length));
    return {
      min: this.maxSteps * (REWARD.step + REWARD.wrongDelivery),
      max: REWARD.correctDelivery + 2 * most * REWARD.subtask,
    };
  }

  evalSetSize(split: Split): number {
    if (split === 'train') return Infinity;
    if (KITCHEN_SPLITS.includes(split)) return KITCHEN_EVAL_SET_SIZE;
    throw new RangeError(`kitchen: unknown split '${split}' (known: ${KITCHEN_SPLITS.join(', ')})`);
  }

  async reset(options: ResetOptions = {}): Promise<ResetResult> {
    this.game = kitchenGame(options);
    this.state = initialState(this.game.placement, recipeFor(this.game.taskType));
    this.steps = 0;
    this.moves = 0;
    this.done = false;
    const observation = `You are a chef in a kitchen. Your task is to ${taskText(this.state.recipe)}.\n${describe(this.state)}`;
    return { observation, info: this.info(true) };
  }

  async step(action: string): Promise<StepResult> {
    const s = this.state;
    if (!s) throw new Error('kitchen: step() before reset()');
    if (this.done) throw new Error('kitchen: the episode is over; call reset()');
    const outcome = applyAction(s, action);
    this.steps++;
    this.moves += outcome.moves;
    const terminated = s.won;
    const truncated = !terminated && this.steps >= this.maxSteps;
    this.done = terminated || truncated;
    return {
      observation: `${outcome.feedback}\n${describe(s)}`,
      reward: outcome.reward,
      terminated,
      truncated,
      info: this.info(outcome.admissible),
    };
  }

  async close(): Promise<void> {
    this.state = undefined;
  }

  expertAction(): string | undefined {
    return this.state && !this.done ? expertAction(this.state) : undefined;
  }

  /** The live state (read-only use: tests and planners). */
  get currentState(): KitchenState | undefined {
    return this.state;
  }

  private info(actionAdmissible: boolean): EnvInfo {
    const s = this.state!;
    return {
      admissibleActions: this.done ? [] : admissibleActions(s),
      task: taskText(s.recipe),
      won: s.won,
      taskType: this.game!.taskType,
      split: this.game!.split,
      gameId: this.game!.gameId,
      map: this.game!.placement.mapId,
      steps: this.steps,
      moves: this.moves,
      actionAdmissible,
    };
  }
}

export function makeKitchen(options?: EnvOptions): KitchenEnv {
  return new KitchenEnv(options);
}
