/**
 * The write plan of episodic memory (MATH §8 write policies, NEC's merge rule), as pure
 * functions: given a validated batch, where each case merges (from the stored candidates a
 * search found), and a read-only view of the store, work out merged values and metadata, new
 * cases and evictions. Nothing here changes the store, the index, the journal or the RNG it is
 * given (eviction sampling runs on a copy whose final state is part of the plan);
 * EpisodicMemory commits a plan (lib/memory/episodic.ts).
 */
import { Mulberry32 } from '../policy/rng';
import type { CaseMeta, MergeRule, WritePolicy } from './types';
import { finiteFloat32, type ValidBatch, type ValidCase } from './validate';

/** What the plan reads of the store; nothing is changed through it. */
export interface StoreView {
  readonly size: number;
  has(id: number): boolean;
  /** Metadata of a live case (read only: the plan copies what it changes). */
  meta(id: number): Readonly<CaseMeta>;
  /** Stored value of a live case. */
  value(id: number): number;
  /** Live ids in insertion order. */
  idsInOrder(): Iterable<number>;
}

/** The store's settings and counters a plan starts from. */
export interface PlanContext {
  dim: number;
  policy: WritePolicy;
  merge: MergeRule | undefined;
  /** Whether merges stay within one source (a trust policy is set). */
  bySource: boolean;
  seq: number;
  clock: number;
  rngState: number;
  /** Time recorded on new cases that carry none (ms since the epoch). */
  now: number;
}

/** A write worked out before anything changes. */
export interface WritePlan {
  /** Per case: stored id merged into, −(2 + j) for batch case j, or −1 (appended). */
  target: Int32Array;
  /** Batch indices of the appended cases; keepFresh: indices into fresh that are stored. */
  fresh: number[];
  keepFresh: number[];
  /** Stored cases merged into and not evicted: new value and metadata. */
  changed: Map<number, { value: number; meta: CaseMeta }>;
  mergedIds: number[];
  evicted: Int32Array;
  addKeys: Float32Array;
  addVals: Float32Array;
  addMeta: CaseMeta[];
  seq: number;
  clock: number;
  rngState: number;
}

/** The capacity of a write policy (Infinity when unbounded). */
export function policyCapacity(p: WritePolicy): number {
  return p.kind === 'replay' || p.kind === 'importance' ? p.capacity : p.kind === 'window' ? p.size : Infinity;
}

/** w_c of a case under the policy (1 unless importance-weighted). */
export function caseWeight(p: WritePolicy, visits: number, value: number, tdError: number): number {
  if (p.kind !== 'importance') return 1;
  return p.weightBy === 'visits' ? visits : p.weightBy === 'return' ? value : Math.abs(tdError);
}

/** η of the merge rule for a case with `visitsAfter` visits after the increment. */
export function mergeRate(m: MergeRule, visitsAfter: number): number {
  const r = m.rate;
  if (r === 'average') return 1 / visitsAfter;
  if (typeof r === 'number') return r;
  return Math.pow(visitsAfter, -r.power);
}

/**
 * Merge targets per case from the nearest stored candidates (best[i]: a stored id of the same
 * action within ε, or −1; bestD2[i] its squared distance): an earlier case of the same batch
 * that was appended (not merged) also counts as stored when strictly nearer (stored cases win
 * ties; among batch cases the earlier one). Returns the id, −(2 + j) for batch case j, or −1.
 */
export function batchMergeTargets(
  keys: Float32Array,
  cases: readonly ValidCase[],
  stored: { best: Int32Array; bestD2: Float64Array },
  dim: number,
  eps2: number,
  bySource: boolean,
): Int32Array {
  const n = cases.length;
  const d = dim;
  const target = new Int32Array(n).fill(-1);
  for (let i = 0; i < n; i++) {
    const action = cases[i].action;
    let best = stored.best[i];
    let bestD2 = stored.bestD2[i];
    for (let j = 0; j < i; j++) {
      if (target[j] !== -1 || cases[j].action !== action) continue;
      if (bySource && cases[j].source !== cases[i].source) continue;
      let d2 = 0;
      for (let t = 0; t < d; t++) {
        const x = keys[i * d + t] - keys[j * d + t];
        d2 += x * x;
      }
      if (d2 <= eps2 && d2 < bestD2) {
        best = -(2 + j);
        bestD2 = d2;
      }
    }
    target[i] = best;
  }
  return target;
}

/**
 * What a write will do: merged values and metadata (new objects), new cases, evictions, and the
 * counters after it. Throws a RangeError naming the case when a merged value would not be a
 * finite float32 or a weight would not be finite.
 */
export function planWrite(batch: ValidBatch, target: Int32Array, store: StoreView, ctx: PlanContext): WritePlan {
  const { keys, cases } = batch;
  const d = ctx.dim;
  const n = cases.length;
  const policy = ctx.policy;
  let clock = ctx.clock;
  let seq = ctx.seq;
  const pending: { value: number; visits: number; weight: number; tdError: number }[] = [];
  const mergedIds: number[] = [];
  // Stored cases merged into: their new value and metadata (first-merge order).
  const changed = new Map<number, { value: number; meta: CaseMeta }>();
  for (let i = 0; i < n; i++) {
    const c = cases[i];
    const t = target[i];
    if (t === -1) {
      const tdError = c.tdError ?? Math.abs(c.value);
      pending[i] = { value: c.value, visits: 1, weight: c.weight ?? caseWeight(policy, 1, c.value, tdError), tdError };
      continue;
    }
    if (t <= -2) {
      const p = pending[-(t + 2)];
      const visits = p.visits + 1;
      const eta = mergeRate(ctx.merge!, visits);
      const err = c.value - p.value;
      const merged = p.value + eta * err;
      if (!finiteFloat32(merged)) {
        throw new RangeError(`cases[${i}].value ${c.value}: merged into cases[${-(t + 2)}] it gives ${merged}, which is not representable in float32`);
      }
      p.value = merged;
      p.visits = visits;
      p.tdError = c.tdError ?? Math.abs(err);
      p.weight = c.weight ?? caseWeight(policy, visits, p.value, p.tdError);
      continue;
    }
    let cur = changed.get(t);
    if (!cur) {
      cur = { value: store.value(t), meta: { ...store.meta(t) } };
      changed.set(t, cur);
    }
    const visits = cur.meta.visits + 1;
    const eta = mergeRate(ctx.merge!, visits);
    const err = c.value - cur.value;
    const qn = Math.fround(cur.value + eta * err);
    if (!Number.isFinite(qn)) {
      throw new RangeError(`cases[${i}].value ${c.value}: merged into case ${t} it gives ${cur.value + eta * err}, which is not representable in float32`);
    }
    cur.value = qn;
    cur.meta.visits = visits;
    cur.meta.weight = c.weight ?? caseWeight(policy, visits, qn, c.tdError ?? Math.abs(err));
    cur.meta.touched = ++clock;
    mergedIds.push(t);
  }
  // q ← q + η(G − q) with η ∈ (0, 1] lies between q and G, so it stays a finite float32 and the
  // weights stay finite; checked anyway, since a non-finite weight would not survive JSON.
  for (const [id, cur] of changed) {
    if (!Number.isFinite(cur.meta.weight)) throw new RangeError(`the write would give case ${id} the weight ${cur.meta.weight}; weights must be finite`);
  }
  pending.forEach((p, i) => {
    if (p && !Number.isFinite(p.weight)) throw new RangeError(`cases[${i}]: the weight would be ${p.weight}; weights must be finite`);
  });

  // New cases, then eviction by the write policy.
  const fresh: number[] = [];
  for (let i = 0; i < n; i++) if (target[i] === -1) fresh.push(i);
  const freshMeta: CaseMeta[] = fresh.map((i) => {
    const c = cases[i];
    return {
      state: c.state,
      action: c.action,
      visits: pending[i].visits,
      weight: pending[i].weight,
      episode: c.episode,
      step: c.step,
      source: c.source,
      time: c.time ?? ctx.now,
      seq: ++seq,
      touched: ++clock,
    };
  });
  // A merge into a batch case refreshes that case's recency.
  for (let i = 0; i < n; i++) {
    if (target[i] <= -2) freshMeta[fresh.indexOf(-(target[i] + 2))].touched = ++clock;
  }
  const rng = new Mulberry32();
  rng.state = ctx.rngState;
  const { evictStored, dropFresh } = chooseEvictions(policy, store, freshMeta, changed, rng);
  const evicted = Int32Array.from(evictStored);
  for (const id of evicted) changed.delete(id);

  const keepFresh = fresh.map((_, k) => k).filter((k) => !dropFresh.has(k));
  const addKeys = new Float32Array(keepFresh.length * d);
  const addVals = new Float32Array(keepFresh.length);
  keepFresh.forEach((k, r) => {
    addKeys.set(keys.subarray(fresh[k] * d, (fresh[k] + 1) * d), r * d);
    addVals[r] = pending[fresh[k]].value;
  });
  return {
    target,
    fresh,
    keepFresh,
    changed,
    mergedIds,
    evicted,
    addKeys,
    addVals,
    addMeta: keepFresh.map((k) => freshMeta[k]),
    seq,
    clock,
    rngState: rng.state,
  };
}

/**
 * Which stored cases to evict and which new ones never to store, so that at most the
 * capacity remains. Replay: oldest inserted first. Window: least recently written first.
 * Importance: lowest weight first (ties: oldest), or sampled ∝ 1/w (draws from `rng`).
 */
export function chooseEvictions(
  p: WritePolicy,
  store: StoreView,
  freshMeta: CaseMeta[],
  changed: Map<number, { meta: CaseMeta }>,
  rng: Mulberry32,
): { evictStored: number[]; dropFresh: Set<number> } {
  const cap = policyCapacity(p);
  const total = store.size + freshMeta.length;
  const evictStored: number[] = [];
  const dropFresh = new Set<number>();
  if (total <= cap) return { evictStored, dropFresh };
  let excess = total - cap;
  // Candidates: stored ids (≥ 0) and fresh entries (encoded −1 − k).
  const take = (ref: number) => (ref >= 0 ? evictStored.push(ref) : dropFresh.add(-1 - ref));
  if (p.kind === 'replay') {
    // Insertion order, and fresh cases are the newest: no sort needed.
    for (const id of store.idsInOrder()) {
      if (excess <= 0) break;
      take(id);
      excess--;
    }
    for (let k = 0; excess > 0; k++, excess--) take(-1 - k);
    return { evictStored, dropFresh };
  }
  const pool: { ref: number; m: Readonly<CaseMeta> }[] = [];
  for (const id of store.idsInOrder()) pool.push({ ref: id, m: changed.get(id)?.meta ?? store.meta(id) });
  freshMeta.forEach((m, k) => pool.push({ ref: -1 - k, m }));
  if (p.kind === 'importance' && p.sample) {
    while (excess-- > 0) {
      const w = pool.map((e) => 1 / Math.max(e.m.weight, 1e-12));
      const k = rng.categorical(w);
      take(pool[k].ref);
      pool.splice(k, 1);
    }
    return { evictStored, dropFresh };
  }
  // Window: least recently written first. Importance: lowest weight first, ties to the oldest.
  const before =
    p.kind === 'window'
      ? (a: Readonly<CaseMeta>, b: Readonly<CaseMeta>) => a.touched < b.touched
      : (a: Readonly<CaseMeta>, b: Readonly<CaseMeta>) => a.weight < b.weight || (a.weight === b.weight && a.seq < b.seq);
  for (const e of smallest(pool, excess, (a, b) => before(a.m, b.m))) take(e.ref);
  return { evictStored, dropFresh };
}

/**
 * The k smallest items under a strict order `less` (stable: earlier items win ties), without
 * sorting everything: one pass keeping a sorted buffer of k. O(n·k) worst case; k is a batch.
 */
export function smallest<T>(items: T[], k: number, less: (a: T, b: T) => boolean): T[] {
  if (k >= items.length) return items.slice();
  if (k > 256) {
    const idx = items.map((_, i) => i);
    idx.sort((i, j) => (less(items[i], items[j]) ? -1 : less(items[j], items[i]) ? 1 : i - j));
    return idx.slice(0, k).map((i) => items[i]);
  }
  const buf: T[] = [];
  for (const it of items) {
    if (buf.length === k && !less(it, buf[k - 1])) continue;
    let pos = buf.length;
    while (pos > 0 && less(it, buf[pos - 1])) pos--;
    buf.splice(pos, 0, it);
    if (buf.length > k) buf.pop();
  }
  return buf;
}
