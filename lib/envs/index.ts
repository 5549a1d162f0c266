/**
 * Public API of the environments layer: the TextEnv interface, the registry, and each
 * environment's class and factory.
 */
export type { EnvFactory, EnvInfo, EnvOptions, ResetOptions, ResetResult, Split, StepResult, TextEnv } from './types';
export { makeEnv, listEnvs, envNames, registerEnv } from './registry';
export type { EnvDescription } from './registry';
export { EnvRng } from './rng';

export { makeHousehold, HouseholdEnv } from './household';
export { KitchenEnv, makeKitchen, kitchenGame, KITCHEN_TASK_TYPES, KITCHEN_SPLITS, KITCHEN_EVAL_SET_SIZE, REWARD as KITCHEN_REWARD } from './kitchen';
export {
  GridworldEnv,
  makeGridworld,
  GridWorld,
  RandomTabularMdp,
  randomMdp,
  validateMdp,
  GRID_ACTIONS,
  GRIDWORLD_TASK_TYPES,
} from './gridworld';
export type { MdpJson, GridOptions, RandomMdpOptions, TextMdpModel, GridworldEnvOptions } from './gridworld';
export { ProcessEnv, makeProcessEnv, PROCESS_DEFAULT_TIMEOUT_MS } from './process';
export type { ProcessEnvOptions } from './process';
