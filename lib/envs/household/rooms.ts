/**
 * Room layouts (ALFRED's "FloorPlans"): which receptacles a room has and how many of each, plus
 * where its lamp stands. A layout is fixed per room; object placement varies per game.
 *
 * Split design, part 1 (rooms): like ALFRED, each scene kind has 30 rooms. Rooms 1..24 are the
 * *seen* rooms (train and valid_seen games are built in them); rooms 25..30 are *unseen* rooms
 * (only valid_unseen games use them). Layouts are generated once, deterministically, and a
 * layout whose signature (kind + receptacle counts + lamp) repeats an earlier room's is redrawn,
 * so the 120 layouts are pairwise distinct and no unseen layout ever occurs in train.
 */
import { EnvRng, deriveSeed } from '../rng';
import { LAMP_HOSTS, SCENE_KINDS, SCENE_RECEPTACLES, SceneKind } from './data';

export const ROOMS_PER_KIND = 30;
/** Rooms with index > SEEN_ROOMS_PER_KIND are unseen (valid_unseen only). */
export const SEEN_ROOMS_PER_KIND = 24;
const LAYOUT_SEED = 0x0a1f; // changing this changes every layout (and so every game)

export interface RoomLayout {
  /** e.g. 'kitchen-07'. */
  id: string;
  kind: SceneKind;
  /** 1..30 within its kind. */
  index: number;
  unseen: boolean;
  /** Receptacle kinds with their counts, sorted by type name. */
  receptacles: readonly { type: string; count: number }[];
  /** The room's lamp (bedrooms and living rooms): its type and the receptacle it stands on, e.g. 'desk 1'. */
  lamp?: { type: string; host: string };
  /** Canonical description of the layout; equal signatures mean equal layouts. */
  signature: string;
}

function drawLayout(kind: SceneKind, index: number, attempt: number): RoomLayout | undefined {
  const rng = new EnvRng(deriveSeed(LAYOUT_SEED, kind, index, attempt));
  const receptacles: { type: string; count: number }[] = [];
  for (const spec of SCENE_RECEPTACLES[kind]) {
    if (spec.p < 1 && !rng.chance(spec.p)) continue;
    receptacles.push({ type: spec.type, count: rng.range(spec.min, spec.max) });
  }
  receptacles.sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0));
  let lamp: RoomLayout['lamp'];
  if (kind === 'bedroom' || kind === 'livingroom') {
    const lampType = kind === 'bedroom' ? (rng.chance(0.7) ? 'desklamp' : 'floorlamp') : rng.chance(0.7) ? 'floorlamp' : 'desklamp';
    const hosts = receptacles.filter((r) => LAMP_HOSTS[lampType].includes(r.type));
    if (hosts.length === 0) return undefined; // look_at tasks need a lamp: redraw
    const host = rng.pick(hosts);
    lamp = { type: lampType, host: `${host.type} ${rng.range(1, host.count)}` };
  }
  const total = receptacles.reduce((s, r) => s + r.count, 0);
  if (total < 5) return undefined;
  const signature = `${kind}:${receptacles.map((r) => `${r.type}x${r.count}`).join(',')}${lamp ? `;${lamp.type}@${lamp.host}` : ''}`;
  const id = `${kind}-${String(index).padStart(2, '0')}`;
  return { id, kind, index, unseen: index > SEEN_ROOMS_PER_KIND, receptacles, lamp, signature };
}

let ROOMS: readonly RoomLayout[] | undefined;

/** All 120 room layouts (30 per scene kind), generated once. */
export function allRooms(): readonly RoomLayout[] {
  if (ROOMS) return ROOMS;
  const rooms: RoomLayout[] = [];
  const seen = new Set<string>();
  for (const kind of SCENE_KINDS) {
    for (let index = 1; index <= ROOMS_PER_KIND; index++) {
      for (let attempt = 0; ; attempt++) {
        if (attempt > 1000) throw new Error(`household: cannot draw a distinct layout for ${kind} room ${index}`);
        const layout = drawLayout(kind, index, attempt);
        if (!layout || seen.has(layout.signature)) continue;
        seen.add(layout.signature);
        rooms.push(layout);
        break;
      }
    }
  }
  ROOMS = rooms;
  return rooms;
}

const BY_KIND = new Map<string, readonly RoomLayout[]>();

/** Rooms of one scene kind on one side of the seen/unseen partition. */
export function roomsFor(kind: SceneKind, unseen: boolean): readonly RoomLayout[] {
  const key = `${kind}:${unseen}`;
  let r = BY_KIND.get(key);
  if (!r) {
    r = allRooms().filter((x) => x.kind === kind && x.unseen === unseen);
    BY_KIND.set(key, r);
  }
  return r;
}

export function roomById(id: string): RoomLayout | undefined {
  return allRooms().find((r) => r.id === id);
}
