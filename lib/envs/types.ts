/**
 * Gymnasium-shaped, asynchronous text-environment interface (shaped after Gymnasium: reset/step, terminated/truncated, info).
 * Text environments put the admissible actions in `info`, as TextWorld/ALFWorld do.
 */

export type Split = 'train' | 'valid_seen' | 'valid_unseen' | 'test' | string;

export interface ResetOptions {
  /** Seed: the same seed (with the same split/taskType) always yields the same game. */
  seed?: number;
  split?: Split;
  taskType?: string;
  /** Index into a fixed evaluation set (e.g. valid_seen game #17); overrides seed when given. */
  gameIndex?: number;
}

export interface EnvInfo {
  admissibleActions: string[];
  /** Natural-language goal of the episode. */
  task: string;
  won: boolean;
  /** Task type (e.g. 'pick_and_place'), when the environment has types. */
  taskType?: string;
  /** Anything else an environment wants to report (step count, game id, ...). */
  [key: string]: unknown;
}

export interface ResetResult {
  observation: string;
  info: EnvInfo;
}

export interface StepResult {
  observation: string;
  reward: number;
  terminated: boolean;
  truncated: boolean;
  info: EnvInfo;
}

export interface TextEnv {
  /** Registry name, e.g. 'household'. */
  readonly name: string;
  reset(options?: ResetOptions): Promise<ResetResult>;
  step(action: string): Promise<StepResult>;
  close(): Promise<void>;
  /** Task types this environment can generate (empty when untyped). */
  readonly taskTypes: readonly string[];
  /** Splits this environment knows; the first is the training split. */
  readonly splits: readonly Split[];
  /** Size of the fixed evaluation set of a split (Infinity when procedurally unbounded). */
  evalSetSize(split: Split): number;
  /**
   * Expert action for the current state, when the environment ships a planner
   * (undefined otherwise). Used for demonstrations and tests.
   */
  expertAction?(): string | undefined;
  /**
   * Bounds on every return G_t = Σ_k γ^k r_{t+k} (any γ in [0, 1]) an episode of this
   * environment, with its options, can produce; undefined when the environment cannot say.
   * Memory's trust policy can clip values to it (docs/trust.md, valueRange 'env').
   */
  returnRange?(): { min: number; max: number } | undefined;
}

export interface EnvOptions {
  /** Truncate episodes after this many steps. */
  maxSteps?: number;
  [key: string]: unknown;
}

export type EnvFactory = (options?: EnvOptions) => TextEnv;
