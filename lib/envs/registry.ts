/**
 * The environment registry: names -> factories, plus a one-line description of each.
 *
 *   const env = makeEnv('kitchen', { maxSteps: 50 });
 *   const env = makeEnv('process', { command: 'python3', args: ['examples/alfworld_bridge.py'] });
 */
import { makeGridworld } from './gridworld';
import { makeHousehold } from './household';
import { makeKitchen } from './kitchen';
import { makeProcessEnv } from './process';
import type { EnvFactory, EnvOptions, Split, TextEnv } from './types';

export interface EnvDescription {
  name: string;
  description: string;
  taskTypes: string[];
  splits: string[];
  /** Size of each split's fixed evaluation set (null when unbounded: procedural/train). */
  evalSetSizes: Record<string, number | null>;
  /** Options the factory understands beyond maxSteps. */
  options: string;
}

interface Entry {
  name: string;
  description: string;
  options: string;
  factory: EnvFactory;
  /** Whether listEnvs() may construct one to read its task types and splits. */
  introspect: boolean;
}

const entries: Entry[] = [
  {
    name: 'household',
    description: 'ALFWorld-like household tasks: find, heat, cool, clean and place objects across rooms',
    options: 'maxSteps',
    factory: makeHousehold,
    introspect: true,
  },
  {
    name: 'kitchen',
    description: "Overcooked salad text game (TWOSOME's macro-actions): chop, bowl and serve 1-3 ingredient salads",
    options: 'maxSteps',
    factory: makeKitchen,
    introspect: true,
  },
  {
    name: 'gridworld',
    description: 'Small MDPs with an exact model (toMdp): a slippery gridworld and random tabular MDPs',
    options: 'maxSteps, taskType, slip, stepReward, randomStart, layout, states, actions, branching, mdpSeed',
    factory: makeGridworld,
    introspect: true,
  },
  {
    name: 'process',
    description: 'Any program speaking the JSON-lines protocol over stdio (e.g. examples/alfworld_bridge.py)',
    options: 'command (required), args, timeoutMs, startupTimeoutMs, closeGraceMs, cwd, env, taskTypes, splits, evalSetSizes',
    factory: makeProcessEnv,
    introspect: false,
  },
];

/** Make an environment by name. Unknown names throw a RangeError listing the known ones. */
export function makeEnv(name: string, options: EnvOptions = {}): TextEnv {
  const entry = entries.find((e) => e.name === name);
  if (!entry) {
    throw new RangeError(`unknown environment '${name}' (known: ${entries.map((e) => e.name).join(', ')})`);
  }
  return entry.factory(options);
}

/**
 * The return range an environment declares (TextEnv.returnRange) for these options, or
 * undefined when it declares none. Only introspectable environments are constructed to ask
 * (a 'process' environment would start its program): the others answer undefined.
 */
export function envReturnRange(name: string, options: EnvOptions = {}): { min: number; max: number } | undefined {
  const entry = entries.find((e) => e.name === name);
  if (!entry) throw new RangeError(`unknown environment '${name}' (known: ${entries.map((e) => e.name).join(', ')})`);
  if (!entry.introspect) return undefined;
  const env = entry.factory(options);
  try {
    return env.returnRange?.();
  } finally {
    // the introspectable environments hold nothing that needs waiting for
    env.close().catch(() => undefined);
  }
}

/** Names of the registered environments, in registration order. */
export function envNames(): string[] {
  return entries.map((e) => e.name);
}

/** Every registered environment with its task types and splits. */
export function listEnvs(): EnvDescription[] {
  return entries.map((e) => {
    let taskTypes: string[] = [];
    let splits: Split[] = ['train'];
    const evalSetSizes: Record<string, number | null> = {};
    if (e.introspect) {
      const env = e.factory({});
      taskTypes = [...env.taskTypes];
      splits = [...env.splits];
      for (const split of splits) {
        const n = env.evalSetSize(split);
        evalSetSizes[split] = Number.isFinite(n) ? n : null;
      }
      void env.close();
    } else {
      evalSetSizes.train = null;
    }
    return { name: e.name, description: e.description, taskTypes, splits, evalSetSizes, options: e.options };
  });
}

/**
 * Register another environment (plugins, tests). Names are unique; re-registering a name
 * throws unless `replace` is set.
 */
export function registerEnv(name: string, description: string, factory: EnvFactory, replace = false): void {
  const existing = entries.findIndex((e) => e.name === name);
  if (existing >= 0 && !replace) throw new RangeError(`environment '${name}' is already registered`);
  const entry: Entry = { name, description, options: '', factory, introspect: true };
  if (existing >= 0) entries[existing] = entry;
  else entries.push(entry);
}
