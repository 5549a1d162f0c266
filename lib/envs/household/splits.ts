/**
 * Splits and evaluation sets.
 *
 *  - train:        procedurally unbounded; a seed picks a task type (ALFWorld's train mix unless
 *                  one is asked for), a seen room, a seen goal pair, and an object placement.
 *  - valid_seen:   a fixed set of exactly 140 games in seen rooms with seen goal pairs (new
 *                  object placements), with ALFWorld's valid_seen task-type counts.
 *  - valid_unseen: a fixed set of exactly 134 games in unseen rooms (rooms.ts) with unseen goal
 *                  pairs (tasks.ts), with ALFWorld's valid_unseen task-type counts.
 *
 * Seen/unseen is thus decided twice and independently: by room (layout family) and by goal
 * pair (hash bucket); see rooms.ts and tasks.ts. Both are checked in test/envs/household*.test.ts.
 */
import { EnvRng, deriveSeed } from '../rng';
import { SCENE_OBJECTS, SceneKind, TOOLS_FOR, canContain } from './data';
import { RoomLayout, roomsFor } from './rooms';
import { Goal, TASK_SCENES, TASK_TYPES, TaskType, isUnseenGoalPair, objectQualifies, taskTool, taskVerb } from './tasks';
import { GameSpec } from './world';

export const SPLITS = ['train', 'valid_seen', 'valid_unseen'] as const;
export type HouseholdSplit = (typeof SPLITS)[number];

/** ALFWorld's task-type counts (order of TASK_TYPES): train 3553, valid_seen 140, valid_unseen 134 games. */
export const ALFWORLD_TYPE_COUNTS: Readonly<Record<HouseholdSplit, readonly number[]>> = {
  train: [790, 308, 650, 459, 533, 813],
  valid_seen: [35, 13, 27, 16, 25, 24],
  valid_unseen: [24, 18, 31, 23, 21, 17],
};

export const EVAL_SET_SIZE: Readonly<Record<string, number>> = { valid_seen: 140, valid_unseen: 134 };

export function isSplit(s: string): s is HouseholdSplit {
  return (SPLITS as readonly string[]).includes(s);
}

/** Every goal (object, target) the room allows for a task type on one side of the pair partition. */
export function goalCandidates(room: RoomLayout, type: TaskType, unseenPairs: boolean): readonly Goal[] {
  const key = `${room.id}|${type}|${unseenPairs}`;
  let goals = GOAL_CACHE.get(key);
  if (!goals) {
    goals = Object.freeze(computeGoalCandidates(room, type, unseenPairs).map((g) => Object.freeze(g)));
    GOAL_CACHE.set(key, goals);
  }
  return goals;
}

const GOAL_CACHE = new Map<string, readonly Goal[]>();

function computeGoalCandidates(room: RoomLayout, type: TaskType, unseenPairs: boolean): Goal[] {
  const present = new Map(room.receptacles.map((r) => [r.type, r.count]));
  const tool = taskTool(type);
  if (tool && !present.has(tool)) return [];
  const verb = taskVerb(type);
  const toolTypes = verb ? TOOLS_FOR[verb] : undefined; // never "put a clean X in sinkbasin/bathtubbasin"
  const out: Goal[] = [];
  for (const object of SCENE_OBJECTS[room.kind]) {
    if (!objectQualifies(type, object)) continue;
    if (type === 'look_at_obj_in_light') {
      if (!room.lamp) return [];
      const target = room.lamp.type;
      const hasHost = room.receptacles.some((r) => canContain(r.type, object));
      if (hasHost && isUnseenGoalPair(object, target) === unseenPairs) out.push({ type, object, target });
      continue;
    }
    for (const { type: target } of room.receptacles) {
      if (toolTypes?.has(target) || !canContain(target, object)) continue;
      // The object must be able to start somewhere other than the target.
      if (!room.receptacles.some((r) => r.type !== target && canContain(r.type, object))) continue;
      if (isUnseenGoalPair(object, target) !== unseenPairs) continue;
      out.push({ type, object, target });
    }
  }
  return out;
}

/** Draw a game of a given type for a split from an rng (room, goal pair, phrasing). */
function drawSpec(rng: EnvRng, split: HouseholdSplit, type: TaskType, id: string, seed: number): GameSpec {
  const unseen = split === 'valid_unseen';
  const kinds = TASK_SCENES[type];
  for (let attempt = 0; attempt < 200; attempt++) {
    const kind: SceneKind = rng.pick(kinds);
    const room = rng.pick(roomsFor(kind, unseen));
    const goals = goalCandidates(room, type, unseen);
    if (goals.length === 0) continue;
    const goal = rng.pick(goals);
    return { id, split, seed, taskType: type, goal, variant: rng.int(2), room };
  }
  throw new Error(`household: could not draw a ${type} game for ${split} (seed ${seed})`);
}

let EVAL_TYPES: Record<string, TaskType[]> | undefined;

/** The task type of each game of a fixed evaluation set, in game-index order. */
export function evalSetTypes(split: 'valid_seen' | 'valid_unseen'): readonly TaskType[] {
  if (!EVAL_TYPES) EVAL_TYPES = {};
  let types = EVAL_TYPES[split];
  if (!types) {
    types = [];
    ALFWORLD_TYPE_COUNTS[split].forEach((n, i) => {
      for (let k = 0; k < n; k++) types!.push(TASK_TYPES[i]);
    });
    new EnvRng(deriveSeed(0xe7a1, split, 'order')).shuffle(types);
    EVAL_TYPES[split] = types;
  }
  return types;
}

/** Game `index` of a fixed evaluation set. */
export function evalGameSpec(split: 'valid_seen' | 'valid_unseen', index: number): GameSpec {
  const size = EVAL_SET_SIZE[split];
  if (!Number.isInteger(index) || index < 0 || index >= size) {
    throw new RangeError(`household: ${split} has games 0..${size - 1}, got gameIndex ${index}`);
  }
  const type = evalSetTypes(split)[index];
  const seed = deriveSeed(0xe7a1, split, index);
  return drawSpec(new EnvRng(seed), split, type, `${split}/${String(index).padStart(3, '0')}`, seed);
}

/** A training game from a seed (optionally of a given type). */
export function trainGameSpec(seed: number, type?: TaskType): GameSpec {
  const rng = new EnvRng(deriveSeed(seed, 'household-train'));
  const t = type ?? TASK_TYPES[rng.weighted(ALFWORLD_TYPE_COUNTS.train)];
  return drawSpec(rng, 'train', t, `train/${seed}${type ? `/${type}` : ''}`, seed);
}

/**
 * Resolve reset options to a game spec. On an evaluation split, `gameIndex` addresses the game
 * directly; otherwise the seed picks `seed mod size` (or, with a task type, `seed mod n` among
 * that type's games).
 */
export function resolveGameSpec(split: HouseholdSplit, seed: number, type?: TaskType, gameIndex?: number): GameSpec {
  if (split === 'train') return trainGameSpec(seed, type);
  if (gameIndex !== undefined) {
    const spec = evalGameSpec(split, gameIndex);
    if (type && spec.taskType !== type) {
      throw new RangeError(`household: ${split} game ${gameIndex} is ${spec.taskType}, not ${type}`);
    }
    return spec;
  }
  const m = (n: number): number => ((Math.floor(seed) % n) + n) % n;
  if (!type) return evalGameSpec(split, m(EVAL_SET_SIZE[split]));
  const idx: number[] = [];
  evalSetTypes(split).forEach((t, i) => {
    if (t === type) idx.push(i);
  });
  return evalGameSpec(split, idx[m(idx.length)]);
}

/** Seed used to place objects for a spec (kept apart from the stream that drew the spec). */
export function placementSeed(spec: GameSpec): number {
  return deriveSeed(spec.seed, 'household-placement', spec.id);
}
