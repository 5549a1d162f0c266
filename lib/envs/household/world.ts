/**
 * World state of one household game and its procedural generation from a game spec.
 *
 * A world is a set of numbered receptacles (each its own location, as in ALFWorld) holding
 * numbered objects; the agent stands at one receptacle (or in the middle of the room at the
 * start) and holds at most one object (ALFWorld's carrying capacity).
 */
import { EnvRng } from '../rng';
import {
  CLEANABLE,
  COOLABLE,
  HEATABLE,
  OPENABLE_RECEPTACLES,
  SCENE_OBJECTS,
  SLICEABLE,
  TOGGLEABLE,
  canContain,
} from './data';
import { RoomLayout } from './rooms';
import { Goal, TaskType } from './tasks';

export interface Receptacle {
  id: number;
  type: string;
  num: number;
  /** e.g. 'cabinet 3'. */
  name: string;
  openable: boolean;
  isOpen: boolean;
  /** Object ids, kept in display order (type ascending, number descending, as ALFWorld lists them). */
  contents: number[];
}

export interface Item {
  id: number;
  type: string;
  num: number;
  /** e.g. 'apple 2'. */
  name: string;
  /** Receptacle id, or HELD when in the agent's hand. */
  loc: number;
  pickupable: boolean;
  heatable: boolean;
  coolable: boolean;
  cleanable: boolean;
  sliceable: boolean;
  toggleable: boolean;
  isHot: boolean;
  isCool: boolean;
  isClean: boolean;
  isSliced: boolean;
  isOn: boolean;
}

export const HELD = -1;
/** agentAt value before the first 'go to'. */
export const MIDDLE_OF_ROOM = -1;
export const NOTHING = -1;

/** Everything needed to rebuild a game exactly. */
export interface GameSpec {
  /** Stable id, e.g. 'valid_seen/017' or 'train/12345'. */
  id: string;
  split: string;
  seed: number;
  taskType: TaskType;
  goal: Goal;
  /** Which of the two goal phrasings (0/1). */
  variant: number;
  room: RoomLayout;
}

export interface World {
  spec: GameSpec;
  receptacles: Receptacle[];
  items: Item[];
  /** Receptacle ids in ALFWorld's listing order (type ascending, number descending). Shared per room: read-only. */
  listingOrder: readonly number[];
  /** Shared per room: read-only. */
  recByName: ReadonlyMap<string, number>;
  itemByName: Map<string, number>;
  agentAt: number;
  holding: number;
  /** Bumped on every state change (admissible-action cache key). */
  version: number;
  /**
   * Per receptacle: 1 once the agent has seen inside it (arrived at it while open or not openable,
   * or opened it). Objects only move by the agent's hand, so the contents of an observed receptacle
   * stay known: this is what an observing agent (and the searching expert) can know.
   */
  observed: Uint8Array;
}

/** What every game in one room shares: receptacle names, listing order, and where each object type may go. */
export interface RoomIndex {
  receptacles: readonly { type: string; num: number; name: string; openable: boolean }[];
  listingOrder: readonly number[];
  recByName: ReadonlyMap<string, number>;
  /** "go to X" commands as [receptacle id, command] sorted by command. */
  goToSorted: readonly (readonly [number, string])[];
  /** Object type -> ids of receptacles that can contain it. */
  hosts: Map<string, readonly number[]>;
}

const ROOM_INDEX = new Map<string, RoomIndex>();

export function roomIndex(room: RoomLayout): RoomIndex {
  let ix = ROOM_INDEX.get(room.id);
  if (ix) return ix;
  const receptacles: { type: string; num: number; name: string; openable: boolean }[] = [];
  for (const { type, count } of room.receptacles) {
    for (let num = 1; num <= count; num++) {
      receptacles.push({ type, num, name: `${type} ${num}`, openable: OPENABLE_RECEPTACLES.has(type) });
    }
  }
  const ids = receptacles.map((_, i) => i);
  ix = {
    receptacles,
    listingOrder: [...ids].sort((a, b) => listingCompare(receptacles[a].type, receptacles[a].num, receptacles[b].type, receptacles[b].num)),
    recByName: new Map(receptacles.map((r, i) => [r.name, i])),
    goToSorted: ids.map((i) => [i, `go to ${receptacles[i].name}`] as const).sort((a, b) => (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)),
    hosts: new Map(),
  };
  ROOM_INDEX.set(room.id, ix);
  return ix;
}

function hostsIn(ix: RoomIndex, type: string): readonly number[] {
  let h = ix.hosts.get(type);
  if (!h) {
    h = ix.receptacles.flatMap((r, i) => (canContain(r.type, type) ? [i] : []));
    ix.hosts.set(type, h);
  }
  return h;
}

/** ALFWorld's listing order: by type name, then higher numbers first ("a cabinet 13, a cabinet 12, ..."). */
export function listingCompare(aType: string, aNum: number, bType: string, bNum: number): number {
  if (aType !== bType) return aType < bType ? -1 : 1;
  return bNum - aNum;
}

/** Insert an object into a receptacle's contents keeping listing order. */
export function insertContent(w: World, r: Receptacle, itemId: number): void {
  const it = w.items[itemId];
  const c = r.contents;
  let i = 0;
  while (i < c.length) {
    const o = w.items[c[i]];
    if (listingCompare(it.type, it.num, o.type, o.num) < 0) break;
    i++;
  }
  c.splice(i, 0, itemId);
}

export function removeContent(r: Receptacle, itemId: number): void {
  const i = r.contents.indexOf(itemId);
  if (i >= 0) r.contents.splice(i, 1);
}

function makeItem(id: number, type: string, num: number, loc: number): Item {
  const toggleable = TOGGLEABLE.has(type);
  return {
    id,
    type,
    num,
    name: `${type} ${num}`,
    loc,
    pickupable: !toggleable, // lamps stay where they stand
    heatable: HEATABLE.has(type),
    coolable: COOLABLE.has(type),
    cleanable: CLEANABLE.has(type),
    sliceable: SLICEABLE.has(type),
    toggleable,
    isHot: false,
    isCool: false,
    isClean: false,
    isSliced: false,
    isOn: false,
  };
}

/**
 * Build the initial world of a spec. Object placement is drawn from `rng` (seeded from the spec),
 * respecting ALFRED's receptacle/object compatibility. The goal is never satisfied at the start:
 * no object of the goal type starts inside a receptacle of the goal's target type.
 */
export function buildWorld(spec: GameSpec, rng: EnvRng): World {
  const ix = roomIndex(spec.room);
  const receptacles: Receptacle[] = ix.receptacles.map((r, id) => ({
    id,
    type: r.type,
    num: r.num,
    name: r.name,
    openable: r.openable,
    isOpen: false,
    contents: [],
  }));
  const w: World = {
    spec,
    receptacles,
    items: [],
    listingOrder: ix.listingOrder,
    recByName: ix.recByName,
    itemByName: new Map(),
    agentAt: MIDDLE_OF_ROOM,
    holding: NOTHING,
    version: 0,
    observed: new Uint8Array(receptacles.length),
  };
  const { goal } = spec;
  const placeTarget = goal.type === 'look_at_obj_in_light' ? undefined : goal.target;
  const counts = new Map<string, number>();
  const add = (type: string, recId: number): void => {
    const num = (counts.get(type) ?? 0) + 1;
    counts.set(type, num);
    const item = makeItem(w.items.length, type, num, recId);
    w.items.push(item);
    w.itemByName.set(item.name, item.id);
    insertContent(w, receptacles[recId], item.id);
  };

  // The room's lamp stands on its host.
  const lamp = spec.room.lamp;
  if (lamp) {
    const host = ix.recByName.get(lamp.host);
    if (host === undefined) throw new Error(`household: lamp host ${lamp.host} missing in ${spec.room.id}`);
    add(lamp.type, host);
  }
  // Goal objects first (1..3, at least 2 for pick_two), never inside a receptacle of the target type.
  const goalHosts = hostsIn(ix, goal.object).filter((id) => receptacles[id].type !== placeTarget);
  if (goalHosts.length === 0) throw new Error(`household: no place for ${goal.object} in ${spec.room.id}`);
  const nGoal = goal.type === 'pick_two_obj_and_place' ? rng.range(2, 4) : rng.range(1, 3);
  for (let i = 0; i < nGoal; i++) add(goal.object, rng.pick(goalHosts));

  // Then distractors of other types.
  const pool = SCENE_OBJECTS[spec.room.kind].filter((t) => t !== goal.object);
  rng.shuffle(pool);
  const nTypes = Math.min(pool.length, rng.range(6, 12));
  let placedTypes = 0;
  for (const type of pool) {
    if (placedTypes >= nTypes) break;
    const hosts = hostsIn(ix, type);
    if (hosts.length === 0) continue;
    placedTypes++;
    const n = rng.chance(0.6) ? 1 : rng.range(2, 3);
    for (let i = 0; i < n; i++) add(type, rng.pick(hosts));
  }
  return w;
}
