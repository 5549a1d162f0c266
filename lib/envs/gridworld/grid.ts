/**
 * Classic gridworld: walls, one goal (reward 1 on arrival, then terminal), an optional slip
 * probability and an optional per-step reward.
 *
 * Layout characters: '.' free, '#' wall, 'S' start, 'G' goal. Rows and columns count from 0.
 * States are the non-wall cells in row-major order. With probability 1 - slip the agent moves
 * as asked; with slip/2 each it moves to one of the two perpendicular directions. A move into
 * a wall or off the grid leaves it where it is. Reward on s -a-> s': stepReward, plus
 * goalReward when s' is the goal.
 */
import type { EnvRng } from '../rng';
import type { MdpJson } from './mdp';
import { type TextMdpModel, cloneMdp, normaliseAction } from './model';

export const DEFAULT_GRID_LAYOUT: readonly string[] = [
  'S....', //
  '.##..',
  '...#.',
  '.#...',
  '...#G',
];

export const GRID_ACTIONS = ['go north', 'go east', 'go south', 'go west'] as const;
const DELTAS = [
  { r: -1, c: 0 },
  { r: 0, c: 1 },
  { r: 1, c: 0 },
  { r: 0, c: -1 },
];

export interface GridOptions {
  layout?: readonly string[];
  /** Probability of slipping sideways (split evenly between the two perpendicular moves). */
  slip?: number;
  /** Reward added to every transition out of a non-terminal state (e.g. -0.01). */
  stepReward?: number;
  /** Reward for arriving at the goal. */
  goalReward?: number;
  /** Start each episode in a uniformly random non-goal cell instead of 'S'. */
  randomStart?: boolean;
}

export class GridWorld implements TextMdpModel {
  readonly kind = 'grid';
  readonly stateCount: number;
  readonly actionCount = GRID_ACTIONS.length;
  readonly actionNames: readonly string[] = GRID_ACTIONS;
  readonly task: string;
  readonly rows: number;
  readonly cols: number;
  readonly slip: number;
  readonly stepReward: number;
  readonly goalReward: number;
  readonly randomStart: boolean;
  /** cells[s] = position of state s. */
  readonly cells: { row: number; col: number }[] = [];
  readonly goal: number;
  readonly startState: number;
  private readonly index = new Map<string, number>();
  private readonly mdp: MdpJson;

  constructor(options: GridOptions = {}) {
    const layout = options.layout ?? DEFAULT_GRID_LAYOUT;
    this.slip = options.slip ?? 0;
    this.stepReward = options.stepReward ?? 0;
    this.goalReward = options.goalReward ?? 1;
    this.randomStart = options.randomStart ?? false;
    if (!(this.slip >= 0 && this.slip <= 1)) throw new RangeError(`gridworld: slip must be in [0, 1], got ${options.slip}`);
    if (!Number.isFinite(this.stepReward) || !Number.isFinite(this.goalReward)) {
      throw new RangeError('gridworld: rewards must be finite numbers');
    }
    this.rows = layout.length;
    this.cols = layout[0]?.length ?? 0;
    if (this.rows === 0 || this.cols === 0 || layout.some((l) => l.length !== this.cols)) {
      throw new RangeError('gridworld: layout must be a non-empty rectangle of equal-length rows');
    }
    let goal = -1;
    let start = -1;
    for (let r = 0; r < this.rows; r++) {
      for (let c = 0; c < this.cols; c++) {
        const ch = layout[r][c];
        if (!'.#SG'.includes(ch)) throw new RangeError(`gridworld: unknown layout character '${ch}' at row ${r}, column ${c}`);
        if (ch === '#') continue;
        const s = this.cells.length;
        this.cells.push({ row: r, col: c });
        this.index.set(`${r},${c}`, s);
        if (ch === 'G') {
          if (goal >= 0) throw new RangeError('gridworld: layout has more than one goal');
          goal = s;
        }
        if (ch === 'S') {
          if (start >= 0) throw new RangeError('gridworld: layout has more than one start');
          start = s;
        }
      }
    }
    if (goal < 0) throw new RangeError("gridworld: layout needs a goal 'G'");
    this.goal = goal;
    this.startState = start >= 0 ? start : 0;
    if (this.startState === goal && !this.randomStart) throw new RangeError('gridworld: the start is the goal');
    this.stateCount = this.cells.length;
    const g = this.cells[goal];
    this.task = `reach the goal at row ${g.row}, column ${g.col}`;
    this.mdp = this.buildMdp();
  }

  private moveFrom(s: number, dir: number): number {
    const { row, col } = this.cells[s];
    const next = this.index.get(`${row + DELTAS[dir].r},${col + DELTAS[dir].c}`);
    return next ?? s;
  }

  private buildMdp(): MdpJson {
    const S = this.stateCount;
    const A = this.actionCount;
    const P: number[][][] = [];
    const R: number[][] = [];
    for (let s = 0; s < S; s++) {
      P.push([]);
      R.push([]);
      for (let a = 0; a < A; a++) {
        const row = new Array<number>(S).fill(0);
        if (s === this.goal) {
          row[s] = 1;
          P[s].push(row);
          R[s].push(0);
          continue;
        }
        const outcomes: [number, number][] = [
          [a, 1 - this.slip],
          [(a + 1) % 4, this.slip / 2],
          [(a + 3) % 4, this.slip / 2],
        ];
        for (const [dir, p] of outcomes) if (p > 0) row[this.moveFrom(s, dir)] += p;
        P[s].push(row);
        let r = 0;
        for (let t = 0; t < S; t++) if (row[t] > 0) r += row[t] * this.reward(s, a, t);
        R[s].push(r);
      }
    }
    return { states: S, actions: A, P, R, terminal: [this.goal] };
  }

  toMdp(): MdpJson {
    return cloneMdp(this.mdp);
  }

  reward(s: number, _a: number, next: number): number {
    if (s === this.goal) return 0;
    return this.stepReward + (next === this.goal ? this.goalReward : 0);
  }

  isTerminal(s: number): boolean {
    return s === this.goal;
  }

  start(rng: EnvRng): number {
    if (!this.randomStart) return this.startState;
    const s = rng.int(this.stateCount - 1);
    return s >= this.goal ? s + 1 : s;
  }

  describe(s: number): string {
    const { row, col } = this.cells[s];
    const g = this.cells[this.goal];
    if (s === this.goal) return `You are at row ${row}, column ${col}. You have reached the goal.`;
    const blocked = GRID_ACTIONS.map((name, dir) => (this.moveFrom(s, dir) === s ? name.slice(3) : '')).filter(Boolean);
    const walls = blocked.length === 0 ? 'Nothing blocks your way.' : `You cannot go ${joinOr(blocked)}.`;
    return `You are at row ${row}, column ${col} of a ${this.rows} by ${this.cols} grid. The goal is at row ${g.row}, column ${g.col}. ${walls}`;
  }

  stateIndex(observation: string | number | { row: number; col: number }): number {
    if (typeof observation === 'number') {
      if (Number.isInteger(observation) && observation >= 0 && observation < this.stateCount) return observation;
      throw new RangeError(`gridworld: state ${observation} out of range [0, ${this.stateCount})`);
    }
    let row: number;
    let col: number;
    if (typeof observation === 'string') {
      // The last "row r, column c" before the goal sentence is the agent's position: take the first match.
      const m = observation.match(/You are at row (\d+), column (\d+)/);
      if (!m) throw new RangeError(`gridworld: no position in observation '${observation.slice(0, 80)}'`);
      row = Number(m[1]);
      col = Number(m[2]);
    } else {
      ({ row, col } = observation);
    }
    const s = this.index.get(`${row},${col}`);
    if (s === undefined) throw new RangeError(`gridworld: row ${row}, column ${col} is a wall or off the grid`);
    return s;
  }

  actionIndex(text: string): number {
    return (GRID_ACTIONS as readonly string[]).indexOf(normaliseAction(text));
  }
}

function joinOr(words: string[]): string {
  return words.length <= 1 ? words.join('') : `${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}`;
}
