/**
 * Random tabular MDPs: S rooms, A buttons. Each (s, a) leads to `branching` distinct
 * successor rooms with Dirichlet(1, ..., 1) probabilities and pays a fixed reward R[s][a]
 * drawn uniformly from [rewardMin, rewardMax) and rounded to 1e-3. `terminalStates` rooms
 * (chosen at random, never all) absorb with zero reward. The model is fixed by `mdpSeed`.
 */
import { EnvRng } from '../rng';
import type { MdpJson } from './mdp';
import { type TextMdpModel, cloneMdp, normaliseAction } from './model';

export interface RandomMdpOptions {
  states?: number;
  actions?: number;
  branching?: number;
  terminalStates?: number;
  rewardMin?: number;
  rewardMax?: number;
  /** Also generate a random reference policy mu(a|s) (Dirichlet(1)) as "prior". */
  prior?: boolean;
  /** Seed of the model itself (episodes are seeded separately by reset). */
  mdpSeed?: number;
}

/** Draw a random MDP in the `memq solve` format. */
export function randomMdp(options: RandomMdpOptions = {}): MdpJson {
  const S = options.states ?? 8;
  const A = options.actions ?? 3;
  const branching = Math.min(options.branching ?? 3, S);
  const nTerminal = options.terminalStates ?? 1;
  const lo = options.rewardMin ?? 0;
  const hi = options.rewardMax ?? 1;
  if (!Number.isInteger(S) || S < 2) throw new RangeError(`random MDP: states must be an integer >= 2, got ${S}`);
  if (!Number.isInteger(A) || A < 1) throw new RangeError(`random MDP: actions must be a positive integer, got ${A}`);
  if (!Number.isInteger(branching) || branching < 1) throw new RangeError(`random MDP: branching must be >= 1, got ${branching}`);
  if (!Number.isInteger(nTerminal) || nTerminal < 0 || nTerminal >= S) {
    throw new RangeError(`random MDP: terminalStates must be an integer in [0, ${S - 1}], got ${nTerminal}`);
  }
  if (!(hi >= lo)) throw new RangeError('random MDP: rewardMax must be >= rewardMin');
  const rng = new EnvRng(options.mdpSeed ?? 0);
  const order = rng.shuffle(Array.from({ length: S }, (_, i) => i));
  const terminal = order.slice(0, nTerminal).sort((a, b) => a - b);
  const isTerminal = new Set(terminal);
  const dirichlet = (n: number): number[] => {
    const w = Array.from({ length: n }, () => -Math.log(1 - rng.next()));
    const sum = w.reduce((x, y) => x + y, 0);
    return w.map((x) => x / sum);
  };
  const P: number[][][] = [];
  const R: number[][] = [];
  for (let s = 0; s < S; s++) {
    P.push([]);
    R.push([]);
    for (let a = 0; a < A; a++) {
      const row = new Array<number>(S).fill(0);
      if (isTerminal.has(s)) {
        row[s] = 1;
        P[s].push(row);
        R[s].push(0);
        continue;
      }
      const successors = rng.shuffle(Array.from({ length: S }, (_, i) => i)).slice(0, branching);
      const weights = dirichlet(branching);
      successors.forEach((t, k) => (row[t] += weights[k]));
      P[s].push(row);
      R[s].push(Math.round((lo + (hi - lo) * rng.next()) * 1000) / 1000);
    }
  }
  const mdp: MdpJson = { states: S, actions: A, P, R };
  if (options.prior) mdp.prior = Array.from({ length: S }, () => dirichlet(A));
  if (terminal.length > 0) mdp.terminal = terminal;
  return mdp;
}

/** A random MDP as a text model: "You are in room 3 of 8." / "press button 2". */
export class RandomTabularMdp implements TextMdpModel {
  readonly kind = 'random_mdp';
  readonly stateCount: number;
  readonly actionCount: number;
  readonly actionNames: readonly string[];
  readonly task = 'collect as much reward as you can by pressing buttons';
  private readonly mdp: MdpJson;
  private readonly terminal: Set<number>;

  constructor(options: RandomMdpOptions | { mdp: MdpJson } = {}) {
    this.mdp = 'mdp' in options ? cloneMdp(options.mdp) : randomMdp(options);
    this.stateCount = this.mdp.states;
    this.actionCount = this.mdp.actions;
    this.actionNames = Array.from({ length: this.actionCount }, (_, a) => `press button ${a + 1}`);
    this.terminal = new Set(this.mdp.terminal ?? []);
    if (this.terminal.size >= this.stateCount) throw new RangeError('random MDP: every state is terminal');
  }

  toMdp(): MdpJson {
    return cloneMdp(this.mdp);
  }

  reward(s: number, a: number): number {
    return this.mdp.R[s][a];
  }

  isTerminal(s: number): boolean {
    return this.terminal.has(s);
  }

  start(rng: EnvRng): number {
    for (;;) {
      const s = rng.int(this.stateCount);
      if (!this.terminal.has(s)) return s;
    }
  }

  describe(s: number): string {
    if (this.terminal.has(s)) return `You are in room ${s} of ${this.stateCount}. This room is an exit: the episode is over.`;
    return `You are in room ${s} of ${this.stateCount}. There are ${this.actionCount} buttons on the wall.`;
  }

  stateIndex(observation: string | number | { row: number; col: number }): number {
    let s: number;
    if (typeof observation === 'number') s = observation;
    else if (typeof observation === 'string') {
      const m = observation.match(/You are in room (\d+) of/);
      if (!m) throw new RangeError(`random MDP: no room in observation '${observation.slice(0, 80)}'`);
      s = Number(m[1]);
    } else throw new RangeError('random MDP: states are rooms, not grid cells');
    if (!Number.isInteger(s) || s < 0 || s >= this.stateCount) throw new RangeError(`random MDP: state ${s} out of range`);
    return s;
  }

  actionIndex(text: string): number {
    return this.actionNames.indexOf(normaliseAction(text));
  }
}
