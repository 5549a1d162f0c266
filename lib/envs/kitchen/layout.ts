/**
 * Kitchen maps and item placement (the grid under the kitchen text game).
 *
 * A map is a small grid of counters ('#'), floor ('.'), cutting boards ('B', the first in
 * row-major order is "the first cutting board") and the serving counter ('S'). The agent
 * walks on floor cells; items sit on counters and boards. A placement puts the tomato, the
 * lettuce, the onion and the bowl on distinct counters and the agent on a floor cell.
 *
 * Splits: maps A and B are "seen". A placement's hash decides whether it is held out:
 * train never produces held-out placements, `valid_seen` uses only held-out placements of
 * the seen maps, and `valid_unseen` uses map C, which train never shows.
 */
import { EnvRng } from '../rng';

export const INGREDIENTS = ['tomato', 'lettuce', 'onion'] as const;
export type Ingredient = (typeof INGREDIENTS)[number];

export interface Cell {
  r: number;
  c: number;
}

export interface KitchenMap {
  id: string;
  rows: string[];
}

export const KITCHEN_MAPS: Record<string, KitchenMap> = {
  A: {
    id: 'A',
    rows: [
      '##B#B##', //
      '#.....#',
      '#.....#',
      'S.....#',
      '#.....#',
      '#.....#',
      '#######',
    ],
  },
  B: {
    id: 'B',
    rows: [
      '##B#B##', //
      '#..#..#',
      '#..#..#',
      'S.....#',
      '#..#..#',
      '#..#..#',
      '#######',
    ],
  },
  C: {
    id: 'C',
    rows: [
      '#######', //
      '#.....B',
      '#.##..#',
      'S.....#',
      '#..##.#',
      '#.....B',
      '#######',
    ],
  },
};

export const SEEN_MAPS = ['A', 'B'] as const;
export const UNSEEN_MAPS = ['C'] as const;

/** Geometry derived once per map: floor cells, usable counters, boards, serving counter. */
export interface MapGeometry {
  map: KitchenMap;
  height: number;
  width: number;
  floor: Cell[];
  /** Counters adjacent to the floor, excluding boards and the serving counter. */
  counters: Cell[];
  boards: [Cell, Cell];
  serving: Cell;
}

const NEIGHBOURS: readonly Cell[] = [
  { r: -1, c: 0 },
  { r: 0, c: 1 },
  { r: 1, c: 0 },
  { r: 0, c: -1 },
];

export function cellKey(cell: Cell): string {
  return `${cell.r},${cell.c}`;
}

export function sameCell(a: Cell, b: Cell): boolean {
  return a.r === b.r && a.c === b.c;
}

const geometryCache = new Map<string, MapGeometry>();

export function mapGeometry(id: string): MapGeometry {
  const cached = geometryCache.get(id);
  if (cached) return cached;
  const map = KITCHEN_MAPS[id];
  if (!map) throw new RangeError(`kitchen: unknown map '${id}'`);
  const height = map.rows.length;
  const width = map.rows[0].length;
  const at = (r: number, c: number) => (r >= 0 && r < height && c >= 0 && c < width ? map.rows[r][c] : '');
  const floor: Cell[] = [];
  const counters: Cell[] = [];
  const boards: Cell[] = [];
  let serving: Cell | undefined;
  for (let r = 0; r < height; r++) {
    for (let c = 0; c < width; c++) {
      const ch = at(r, c);
      if (ch === '.') {
        floor.push({ r, c });
        continue;
      }
      const touchesFloor = NEIGHBOURS.some((d) => at(r + d.r, c + d.c) === '.');
      if (!touchesFloor) continue;
      if (ch === 'B') boards.push({ r, c });
      else if (ch === 'S') serving = { r, c };
      else if (ch === '#') counters.push({ r, c });
    }
  }
  if (boards.length !== 2 || !serving) throw new Error(`kitchen: map '${id}' needs two boards and a serving counter`);
  const geometry: MapGeometry = { map, height, width, floor, counters, boards: [boards[0], boards[1]], serving };
  geometryCache.set(id, geometry);
  return geometry;
}

export function isFloor(geometry: MapGeometry, cell: Cell): boolean {
  const { rows } = geometry.map;
  return cell.r >= 0 && cell.r < geometry.height && cell.c >= 0 && cell.c < geometry.width && rows[cell.r][cell.c] === '.';
}

const distanceCache = new Map<string, Map<string, number>>();

/** BFS distances over floor cells from `start` (absent where unreachable). Memoised: maps are static. */
export function floorDistances(geometry: MapGeometry, start: Cell): Map<string, number> {
  const key = `${geometry.map.id}|${cellKey(start)}`;
  const cached = distanceCache.get(key);
  if (cached) return cached;
  const dist = bfs(geometry, start);
  distanceCache.set(key, dist);
  return dist;
}

function bfs(geometry: MapGeometry, start: Cell): Map<string, number> {
  const dist = new Map<string, number>([[cellKey(start), 0]]);
  const queue: Cell[] = [start];
  for (let head = 0; head < queue.length; head++) {
    const cur = queue[head];
    const d = dist.get(cellKey(cur))!;
    for (const n of NEIGHBOURS) {
      const next = { r: cur.r + n.r, c: cur.c + n.c };
      if (!isFloor(geometry, next) || dist.has(cellKey(next))) continue;
      dist.set(cellKey(next), d + 1);
      queue.push(next);
    }
  }
  return dist;
}

const accessCache = new Map<string, Cell[]>();

/** Floor cells from which the agent can reach over `target` (4-neighbourhood). Memoised; do not mutate. */
export function accessCells(geometry: MapGeometry, target: Cell): Cell[] {
  const key = `${geometry.map.id}|${cellKey(target)}`;
  let cells = accessCache.get(key);
  if (!cells) {
    cells = NEIGHBOURS.map((n) => ({ r: target.r + n.r, c: target.c + n.c })).filter((c) => isFloor(geometry, c));
    accessCache.set(key, cells);
  }
  return cells;
}

export function isAdjacent(a: Cell, b: Cell): boolean {
  return Math.abs(a.r - b.r) + Math.abs(a.c - b.c) === 1;
}

/** Nearest access cell to `target` from `from`, and the number of grid moves to get there. */
export function walkTo(geometry: MapGeometry, from: Cell, target: Cell): { cell: Cell; moves: number } | undefined {
  const dist = floorDistances(geometry, from);
  let best: { cell: Cell; moves: number } | undefined;
  for (const cell of accessCells(geometry, target)) {
    const d = dist.get(cellKey(cell));
    if (d === undefined) continue;
    if (!best || d < best.moves) best = { cell, moves: d };
  }
  return best;
}

export interface Placement {
  mapId: string;
  items: Record<Ingredient | 'bowl', Cell>;
  agent: Cell;
}

/** FNV-1a over a string, as an unsigned 32-bit integer. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** One in HELD_OUT_MODULUS placements of the seen maps is reserved for `valid_seen`. */
export const HELD_OUT_MODULUS = 5;

export function placementKey(p: Placement): string {
  const it = p.items;
  return `${p.mapId}|t${cellKey(it.tomato)}|l${cellKey(it.lettuce)}|o${cellKey(it.onion)}|b${cellKey(it.bowl)}`;
}

export function isHeldOut(p: Placement): boolean {
  return fnv1a(placementKey(p)) % HELD_OUT_MODULUS === 0;
}

function randomPlacement(rng: EnvRng, mapId: string): Placement {
  const g = mapGeometry(mapId);
  const free = g.counters.slice();
  const take = (): Cell => free.splice(rng.int(free.length), 1)[0];
  const items = { tomato: take(), lettuce: take(), onion: take(), bowl: take() };
  const agent = g.floor[rng.int(g.floor.length)];
  return { mapId, items, agent };
}

/**
 * Draw a placement for a split. `heldOut` selects which side of the hash partition of the
 * seen maps is wanted (train: false, valid_seen: true); unseen maps are used as they come.
 */
export function drawPlacement(rng: EnvRng, maps: readonly string[], heldOut: boolean | undefined): Placement {
  for (let attempt = 0; attempt < 10_000; attempt++) {
    const mapId = maps[rng.int(maps.length)];
    const p = randomPlacement(rng, mapId);
    if (heldOut === undefined || isHeldOut(p) === heldOut) return p;
  }
  throw new Error('kitchen: could not draw a placement (hash partition too narrow)');
}
