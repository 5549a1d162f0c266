/**
 * A finite MDP with text observations and text actions: the common shape of the gridworld
 * and the random tabular MDPs. The environment samples from exactly the model it exports
 * (`toMdp()`), so learning can be checked against exact solvers (docs/math.md §6).
 */
import type { EnvRng } from '../rng';
import type { MdpJson } from './mdp';

export interface TextMdpModel {
  readonly kind: string;
  readonly stateCount: number;
  readonly actionCount: number;
  readonly actionNames: readonly string[];
  /** Natural-language goal. */
  readonly task: string;
  /** The exact model, as a fresh copy (safe to mutate). */
  toMdp(): MdpJson;
  /** Observation text of a state; one-to-one with the state index. */
  describe(s: number): string;
  /** State index of an observation text (or of a state the model understands); throws when none. */
  stateIndex(observation: string | number | { row: number; col: number }): number;
  /** Action index of an action text (case/space-insensitive); -1 when it is not an action. */
  actionIndex(text: string): number;
  /** Draw a start state. */
  start(rng: EnvRng): number;
  isTerminal(s: number): boolean;
  /** The reward received on the transition s -a-> s' (R[s][a] is its expectation over s'). */
  reward(s: number, a: number, next: number): number;
}

export function normaliseAction(text: string): string {
  return text.trim().toLowerCase().replace(/\s+/g, ' ');
}

export function cloneMdp(m: MdpJson): MdpJson {
  const out: MdpJson = {
    states: m.states,
    actions: m.actions,
    P: m.P.map((rows) => rows.map((row) => row.slice())),
    R: m.R.map((row) => row.slice()),
  };
  if (m.prior) out.prior = m.prior.map((row) => row.slice());
  if (m.terminal) out.terminal = m.terminal.slice();
  return out;
}
