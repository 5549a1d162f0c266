// The pure write plan (lib/memory/writePlan.ts) against a plain sequential reference: random
// batches over a small key grid (so merges, ties and evictions happen), every write policy and
// merge rate, several batches in a row. The reference processes the cases one by one over a
// plain array of records, with brute-force distances, and evicts by sorting.
import { describe, expect, it } from 'vitest';
import { batchMergeTargets, planWrite, type StoreView } from '../../lib/memory/writePlan';
import type { CaseMeta, MergeRule, WritePolicy } from '../../lib/memory/types';
import type { ValidBatch, ValidCase } from '../../lib/memory/validate';
import { Mulberry32 } from '../../lib/policy/rng';

const D = 3;

interface Rec {
  id: number;
  key: Float32Array;
  value: number;
  meta: CaseMeta;
}
interface State {
  recs: Rec[];
  nextId: number;
  seq: number;
  clock: number;
  rng: number;
}

const d2 = (a: ArrayLike<number>, ao: number, b: ArrayLike<number>, bo: number) => {
  let s = 0;
  for (let t = 0; t < D; t++) s += (a[ao + t] - b[bo + t]) ** 2;
  return s;
};
const rate = (m: MergeRule, n: number) => (m.rate === 'average' ? 1 / n : typeof m.rate === 'number' ? m.rate : Math.pow(n, -m.rate.power));
const weightOf = (p: WritePolicy, visits: number, value: number, td: number) =>
  p.kind !== 'importance' ? 1 : p.weightBy === 'visits' ? visits : p.weightBy === 'return' ? value : Math.abs(td);
const cap = (p: WritePolicy) => (p.kind === 'unbounded' ? Infinity : p.kind === 'window' ? p.size : p.capacity);

/** Stored candidates by brute force: nearest same-action (same-source) case within ε, ties to the lower id. */
function storedBest(st: State, batch: ValidBatch, eps2: number, bySource: boolean) {
  const n = batch.cases.length;
  const best = new Int32Array(n).fill(-1);
  const bestD2 = new Float64Array(n).fill(Infinity);
  for (let i = 0; i < n; i++) {
    for (const r of st.recs) {
      const c = batch.cases[i];
      if (r.meta.action !== c.action || (bySource && r.meta.source !== c.source)) continue;
      const e = d2(batch.keys, i * D, r.key, 0);
      if (e <= eps2 && (e < bestD2[i] || (e === bestD2[i] && r.id < best[i]))) {
        best[i] = r.id;
        bestD2[i] = e;
      }
    }
  }
  return { best, bestD2 };
}

/** The reference write: sequential, plain. Returns the new state and the evicted ids. */
function referenceWrite(st0: State, batch: ValidBatch, policy: WritePolicy, merge: MergeRule | undefined, bySource: boolean, now: number) {
  const st: State = { ...st0, recs: st0.recs.map((r) => ({ ...r, meta: { ...r.meta } })) };
  const eps2 = merge ? merge.epsilon ** 2 : -1;
  const fresh: { i: number; value: number; visits: number; weight: number; c: ValidCase; meta?: CaseMeta }[] = [];
  const stored = merge ? storedBest(st0, batch, eps2, bySource) : undefined;
  const mergedInto: number[] = []; // per case: fresh index merged into, or −1
  batch.cases.forEach((c, i) => {
    mergedInto[i] = -1;
    let target: Rec | undefined;
    let fr = -1;
    if (merge) {
      let best = stored!.bestD2[i];
      if (stored!.best[i] >= 0) target = st.recs.find((r) => r.id === stored!.best[i]);
      fresh.forEach((f, k) => {
        if (f.c.action !== c.action || (bySource && f.c.source !== c.source)) return;
        const e = d2(batch.keys, i * D, batch.keys, f.i * D);
        if (e <= eps2 && e < best) {
          best = e;
          fr = k;
        }
      });
    }
    if (fr >= 0) {
      const f = fresh[fr];
      f.visits++;
      const err = c.value - f.value;
      f.value += rate(merge!, f.visits) * err;
      f.weight = c.weight ?? weightOf(policy, f.visits, f.value, c.tdError ?? Math.abs(err));
      mergedInto[i] = fr;
    } else if (target) {
      target.meta.visits++;
      const err = c.value - target.value;
      target.value = Math.fround(target.value + rate(merge!, target.meta.visits) * err);
      target.meta.weight = c.weight ?? weightOf(policy, target.meta.visits, target.value, c.tdError ?? Math.abs(err));
      target.meta.touched = ++st.clock;
    } else {
      fresh.push({ i, value: c.value, visits: 1, weight: c.weight ?? weightOf(policy, 1, c.value, c.tdError ?? Math.abs(c.value)), c });
    }
  });
  for (const f of fresh) {
    const c = f.c;
    f.meta = { state: c.state, action: c.action, visits: f.visits, weight: f.weight, episode: c.episode, step: c.step, source: c.source, time: c.time ?? now, seq: ++st.seq, touched: ++st.clock };
  }
  for (const k of mergedInto) if (k >= 0) fresh[k].meta!.touched = ++st.clock;
  // Eviction over the stored records (insertion order) then the fresh ones.
  const pool: { stored?: Rec; fresh?: number; meta: CaseMeta }[] = [...st.recs.map((r) => ({ stored: r, meta: r.meta })), ...fresh.map((f, k) => ({ fresh: k, meta: f.meta! }))];
  let excess = Math.max(0, pool.length - cap(policy));
  const out = new Set<number>();
  if (policy.kind === 'replay') for (let k = 0; k < excess; k++) out.add(k);
  else if (policy.kind === 'importance' && policy.sample) {
    const rng = new Mulberry32();
    rng.state = st.rng;
    const left = pool.map((_, k) => k);
    while (excess-- > 0) {
      const k = rng.categorical(left.map((p) => 1 / Math.max(pool[p].meta.weight, 1e-12)));
      out.add(left[k]);
      left.splice(k, 1);
    }
    st.rng = rng.state;
  } else {
    const order = pool.map((_, k) => k);
    const key = (k: number) => (policy.kind === 'window' ? [pool[k].meta.touched, 0] : [pool[k].meta.weight, pool[k].meta.seq]);
    order.sort((a, b) => key(a)[0] - key(b)[0] || key(a)[1] - key(b)[1] || a - b);
    for (let k = 0; k < excess; k++) out.add(order[k]);
  }
  const evicted = [...out].filter((k) => pool[k].stored).map((k) => pool[k].stored!.id);
  st.recs = st.recs.filter((r) => !evicted.includes(r.id));
  pool.forEach((p, k) => {
    if (p.fresh === undefined || out.has(k)) return;
    const f = fresh[p.fresh];
    st.recs.push({ id: st.nextId++, key: batch.keys.slice(f.i * D, (f.i + 1) * D), value: Math.fround(f.value), meta: f.meta! });
  });
  return { st, evicted };
}

/** The plan under test, applied to a copy of the state as EpisodicMemory commits it. */
function planned(st0: State, batch: ValidBatch, policy: WritePolicy, merge: MergeRule | undefined, bySource: boolean, now: number) {
  const byId = new Map(st0.recs.map((r) => [r.id, r]));
  const view: StoreView = {
    size: st0.recs.length,
    has: (id) => byId.has(id),
    meta: (id) => byId.get(id)!.meta,
    value: (id) => byId.get(id)!.value,
    idsInOrder: () => st0.recs.map((r) => r.id),
  };
  const frozen = JSON.stringify(st0);
  const eps2 = merge ? merge.epsilon ** 2 : -1;
  const target = merge ? batchMergeTargets(batch.keys, batch.cases, storedBest(st0, batch, eps2, bySource), D, eps2, bySource) : new Int32Array(batch.cases.length).fill(-1);
  const plan = planWrite(batch, target, view, { dim: D, policy, merge, bySource, seq: st0.seq, clock: st0.clock, rngState: st0.rng, now });
  expect(JSON.stringify(st0), 'the plan changes nothing it reads').toBe(frozen);
  let nextId = st0.nextId;
  const recs = st0.recs
    .filter((r) => !plan.evicted.includes(r.id))
    .map((r) => (plan.changed.has(r.id) ? { ...r, value: plan.changed.get(r.id)!.value, meta: plan.changed.get(r.id)!.meta } : r));
  plan.addMeta.forEach((m, k) => recs.push({ id: nextId++, key: plan.addKeys.slice(k * D, (k + 1) * D), value: plan.addVals[k], meta: m }));
  return { st: { recs, nextId, seq: plan.seq, clock: plan.clock, rng: plan.rngState } as State, evicted: Array.from(plan.evicted) };
}

function randomBatch(rng: Mulberry32, n: number): ValidBatch {
  const keys = new Float32Array(n * D);
  for (let j = 0; j < keys.length; j++) keys[j] = rng.int(3) * 0.5;
  const cases: ValidCase[] = Array.from({ length: n }, (_, i) => ({
    value: Math.fround(rng.normal() * 3),
    state: `s${rng.int(4)}`,
    action: `a${rng.int(2)}`,
    episode: 1,
    step: i,
    source: rng.next() < 0.7 ? 'self' : 'x',
    time: rng.next() < 0.5 ? 1000 + i : undefined,
    weight: rng.next() < 0.1 ? rng.next() * 5 : undefined,
    tdError: rng.next() < 0.5 ? rng.next() * 2 : undefined,
  }));
  return { keys, cases };
}

const policies: WritePolicy[] = [
  { kind: 'unbounded' },
  { kind: 'replay', capacity: 7 },
  { kind: 'window', size: 6 },
  { kind: 'importance', capacity: 8, weightBy: 'tdError' },
  { kind: 'importance', capacity: 5, weightBy: 'visits' },
  { kind: 'importance', capacity: 6, weightBy: 'return', sample: true },
];
const merges: (MergeRule | undefined)[] = [undefined, { epsilon: 0.6, rate: 0.5 }, { epsilon: 0.75, rate: 'average' }, { epsilon: 0.5, rate: { power: 0.7 } }];

describe('write plan (pure) = plain sequential reference', () => {
  it('random batches, every policy and merge rate, with and without source-separated merging', () => {
    const rng = new Mulberry32(12);
    let checked = 0;
    for (const policy of policies) {
      for (const merge of merges) {
        for (const bySource of [false, true]) {
          let st: State = { recs: [], nextId: 0, seq: 0, clock: 0, rng: new Mulberry32(3).state };
          for (let w = 0; w < 6; w++) {
            const batch = randomBatch(rng, 1 + rng.int(9));
            const ref = referenceWrite(st, batch, policy, merge, bySource, 777);
            const got = planned(st, batch, policy, merge, bySource, 777);
            const what = `${JSON.stringify(policy)} ${JSON.stringify(merge)} bySource=${bySource} batch ${w}`;
            expect(got.evicted.slice().sort((a, b) => a - b), what).toEqual(ref.evicted.slice().sort((a, b) => a - b));
            expect(got.st, what).toEqual(ref.st);
            st = got.st;
            checked++;
          }
        }
      }
    }
    expect(checked).toBe(policies.length * merges.length * 2 * 6);
  });
});
