/**
 * From an episode to memory cases (MATH §10): G_t = Σ_{k≥t} γ^{k−t} r_k for each step, written
 * as (x_t, G_t) with the step's texts and provenance; the store's merge rule and write policy
 * do the rest.
 */
import { discountedReturns } from '../policy/returns';
import type { CaseInput, CaseRows } from './types';
import { validateRows } from './validate';

export interface EpisodeRecord {
  /** T × dim keys x_t = enc(s_t ⊕ a_t). */
  keys: Float32Array;
  dim: number;
  rewards: ArrayLike<number>;
  states?: string[];
  actions?: string[];
  episode?: number;
  source?: string;
  /** Value of the state after the last step when the episode was cut off (0 if it ended). */
  bootstrap?: number;
}

export function casesFromEpisode(ep: EpisodeRecord, gamma: number): CaseInput[] {
  const T = ep.rewards.length;
  if (ep.keys.length !== T * ep.dim) throw new RangeError(`keys has ${ep.keys.length} floats, expected ${T} steps × dim ${ep.dim}`);
  if (ep.states && ep.states.length !== T) throw new RangeError(`states has ${ep.states.length} entries, expected ${T}`);
  if (ep.actions && ep.actions.length !== T) throw new RangeError(`actions has ${ep.actions.length} entries, expected ${T}`);
  const G = discountedReturns(ep.rewards, gamma, ep.bootstrap ?? 0);
  const now = Date.now();
  return Array.from({ length: T }, (_, t) => ({
    key: ep.keys.subarray(t * ep.dim, (t + 1) * ep.dim),
    value: G[t],
    state: ep.states?.[t],
    action: ep.actions?.[t],
    episode: ep.episode,
    step: t,
    source: ep.source,
    time: now,
  }));
}

/**
 * The per-case form of a flat write (EpisodicMemory.writeRows arguments), validated the same
 * way: for code that must hand cases on one by one (e.g. SharedMemory's log entries).
 */
export function casesFromRows(keys: Float32Array, values: ArrayLike<number>, rows: CaseRows | undefined, dim: number): CaseInput[] {
  const b = validateRows(keys, values, rows, dim);
  return b.cases.map((c, i) => ({
    key: b.keys.subarray(i * dim, (i + 1) * dim),
    value: c.value,
    state: c.state,
    action: c.action,
    episode: c.episode,
    step: c.step,
    source: c.source,
    ...(c.time !== undefined ? { time: c.time } : {}),
    ...(c.weight !== undefined ? { weight: c.weight } : {}),
    ...(c.tdError !== undefined ? { tdError: c.tdError } : {}),
  }));
}
