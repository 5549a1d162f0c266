// CaseStore (lib/memory/caseStore.ts) against a plain reference: a Map id → { meta, value } in
// insertion order, on random sequences of inserts, updates, removals (enough to force column
// growth and compaction) and refused changes (which must leave the store as it was). Values are
// owned by an index (the native MemoryIndex and the float64 ReferenceIndex of test/helpers);
// every read into a caller's buffer is checked on a NaN-poisoned buffer.
import { describe, expect, it } from 'vitest';
import { CaseStore, IdSlots, Interner } from '../../lib/memory/caseStore';
import { MetaColumns } from '../../lib/memory/metaColumns';
import { nativeAvailable } from '../../lib/memory/episodic';
import type { IndexLike } from '../../lib/memory/indexLike';
import type { CaseMeta } from '../../lib/memory/types';
import { Mulberry32 } from '../../lib/policy/rng';
import { MemoryIndex } from '../../lib/retrieval';
import { ReferenceIndex } from '../helpers/referenceIndex';

const backends: Array<'js' | 'native'> = nativeAvailable() ? ['js', 'native'] : ['js'];
const D = 2;

function makeIndex(backend: 'js' | 'native'): IndexLike {
  return backend === 'native' ? new MemoryIndex({ dim: D }) : new ReferenceIndex({ dim: D, kernel: 'gaussian', bandwidth: 1 });
}

function randomMeta(rng: Mulberry32): CaseMeta {
  const num = () => (rng.next() < 0.3 ? rng.int(1000) - 500 : rng.normal() * 1e3);
  return {
    state: rng.next() < 0.1 ? '' : `state ${rng.int(50)} ${'é'.repeat(rng.int(3))}`,
    action: `a${rng.int(3)}`,
    visits: 1 + rng.int(20),
    weight: rng.next() < 0.1 ? -0 : rng.normal(),
    episode: num(),
    step: num(),
    source: ['self', 'import:x', 'peer', ''][rng.int(4)],
    time: 1.7e12 + rng.int(1e9),
    seq: rng.int(2 ** 40),
    touched: rng.int(2 ** 40),
  };
}

type Ref = Map<number, { meta: CaseMeta; value: number }>;

/** Everything the store answers, compared with the reference (poisoned buffers for the reads into out). */
function check(store: CaseStore, ref: Ref, where: string, doubling = true): void {
  const ids = [...ref.keys()];
  expect(store.size, where).toBe(ref.size);
  expect(Array.from(store.ids()), where).toEqual(ids);
  expect([...store.idsInOrder()], where).toEqual(ids);
  const idArr = Int32Array.from(ids);
  const vout = new Float32Array(ids.length + 2).fill(NaN);
  store.values(idArr, vout);
  const wout = new Float64Array(ids.length + 2).fill(NaN);
  store.weights(idArr, wout);
  // One comparison per read (field order included: snapshots write the object as it comes;
  // Object.is on weights, so −0 is kept).
  // the save path's columns: every field of every case, -0 kept, in the order asked
  const cols = store.metaColumns(idArr);
  expect(cols.problem(), where).toBeUndefined();
  ids.forEach((id, i) => {
    const a = cols.at(i), r = ref.get(id)!.meta;
    for (const k of Object.keys(r) as (keyof CaseMeta)[]) expect(Object.is(a[k], r[k]), `${where}: id ${id} ${k}`).toBe(true);
  });
  const got = ids.map((id, i) => ({
    has: store.has(id),
    meta: JSON.stringify(store.meta(id)),
    weight: Object.is(store.meta(id).weight, -0) ? '-0' : store.meta(id).weight,
    action: store.action(id),
    source: store.source(id),
    sourceCode: store.sources.string(store.sourceOf(id)),
    value: vout[i],
    weightOut: Object.is(wout[i], -0) ? '-0' : wout[i],
  }));
  const want = ids.map((id) => {
    const m = ref.get(id)!;
    const w = Object.is(m.meta.weight, -0) ? '-0' : m.meta.weight;
    return { has: true, meta: JSON.stringify(m.meta), weight: w, action: m.meta.action, source: m.meta.source, sourceCode: m.meta.source, value: Math.fround(m.value), weightOut: w };
  });
  expect(got, where).toEqual(want);
  // Entries past the ids are left alone.
  expect(Number.isNaN(vout[ids.length]) && Number.isNaN(vout[ids.length + 1])).toBe(true);
  expect(Number.isNaN(wout[ids.length]) && Number.isNaN(wout[ids.length + 1])).toBe(true);
  if (ids.length) expect(Array.from(store.values(idArr))).toEqual(ids.map((id) => Math.fround(ref.get(id)!.value)));
  // Columns: at least 16 slots, grown by doubling.
  const cap = store.slotCapacity;
  expect(cap).toBeGreaterThanOrEqual(Math.max(16, ref.size));
  // grown by doubling from 16 (an adopted store starts from the snapshot's own capacity)
  if (doubling) expect(Number.isInteger(Math.log2(cap / 16))).toBe(true);
}

describe('CaseStore against a Map reference', () => {
  for (const backend of backends) {
    // 'adopted': the store starts from a snapshot's columns (CaseStore.adopt, as a load does,
    // with lazily checked rows), then the same changes; ids sometimes jump far (the id → slot
    // table's sparse part and its dense growth).
    for (const start of ['empty', 'adopted'] as const)
    it(`${backend}, ${start}: random inserts, updates, removals, growth and compaction, refused changes`, () => {
      for (let seed = 1; seed <= 4; seed++) {
        const rng = new Mulberry32(seed);
        const index = makeIndex(backend);
        const store = new CaseStore(index);
        const ref: Ref = new Map();
        let nextId = 0;
        if (start === 'adopted') {
          const n = 30 + rng.int(60);
          // the last id far (seed 3: past any dense table, which must not be sized to it)
          const ids = Int32Array.from({ length: n }, (_, i) => (i === n - 1 ? (seed === 3 ? 2 ** 30 : 5000 + i) : i));
          const metas = Array.from({ length: n }, () => randomMeta(rng));
          if (seed === 2) metas[3].state = 'lone \ud800 surrogate';
          const vals = Float32Array.from({ length: n }, () => rng.normal() * 10);
          index.addWithIds(ids, Float32Array.from({ length: n * D }, () => rng.normal()), vals);
          const cols = MetaColumns.decode(MetaColumns.fromObjects(metas).encode());
          store.adopt(ids, cols, (row, msg) => {
            throw new Error(`row ${row}: ${msg}`);
          });
          ids.forEach((id, i) => ref.set(id, { meta: metas[i], value: vals[i] }));
          nextId = ids[n - 1] + 1;
          expect(store.uncheckedRows).toBe(n);
        }
        let maxCap = 0;
        let compactions = 0;
        let prevUsed = 0;
        for (let step = 0; step < 120; step++) {
          const where = `seed ${seed} step ${step}`;
          const live = [...ref.keys()];
          const pick = (k: number) => {
            const pool = live.slice();
            const out: number[] = [];
            while (out.length < k && pool.length) out.push(pool.splice(rng.int(pool.length), 1)[0]);
            return out;
          };
          const op = rng.int(10);
          // Bursts of inserts grow the columns; bursts of removals leave dead slots to compact.
          const grow = Math.floor(step / 20) % 2 === 0;
          if (op < (grow ? 6 : 2)) {
            const n = 1 + rng.int(24);
            if (rng.next() < 0.05) nextId += 100_000;
            const ids = Int32Array.from({ length: n }, () => nextId++);
            const metas = Array.from({ length: n }, () => randomMeta(rng));
            const vals = Float32Array.from({ length: n }, () => rng.normal() * 10);
            const keys = Float32Array.from({ length: n * D }, () => rng.normal());
            index.addWithIds(ids, keys, vals);
            store.apply({ added: { ids, meta: metas } });
            ids.forEach((id, i) => ref.set(id, { meta: metas[i], value: vals[i] }));
          } else if (op < 7) {
            const ids = pick(1 + rng.int(grow ? 4 : 30));
            if (ids.length === 0) continue;
            const arr = Int32Array.from(ids);
            index.remove(arr);
            store.apply({ removed: arr });
            for (const id of ids) ref.delete(id);
          } else if (op < 9) {
            const ids = pick(1 + rng.int(6));
            if (ids.length === 0) continue;
            const metas = ids.map(() => randomMeta(rng));
            const vals = Float32Array.from(ids, () => rng.normal());
            index.updateValues(Int32Array.from(ids), vals);
            store.apply({ updated: ids.map((id, i) => [id, metas[i]] as const) });
            ids.forEach((id, i) => ref.set(id, { meta: metas[i], value: vals[i] }));
          } else {
            // A change with one bad part: nothing may change.
            const good = pick(2);
            const bad = rng.int(4);
            const change =
              bad === 0
                ? { removed: [...good, nextId + 5] }
                : bad === 1
                  ? { removed: good, updated: good.length ? [[good[0], randomMeta(rng)] as const] : [[nextId + 7, randomMeta(rng)] as const] }
                  : bad === 2
                    ? { removed: good, added: { ids: [nextId, good.length ? live.find((id) => !good.includes(id)) ?? nextId : nextId], meta: [randomMeta(rng), randomMeta(rng)] } }
                    : { added: { ids: [nextId], meta: [] } };
            expect(() => store.apply(change), `${where} bad change ${bad}`).toThrow(RangeError);
          }
          const cap = store.slotCapacity;
          if (cap > maxCap) maxCap = cap;
          if (store.slotsUsed < prevUsed) compactions++;
          prevUsed = store.slotsUsed;
          expect(store.slotsUsed - store.size, `${where}: dead slots`).toBeLessThanOrEqual(Math.max(15, store.size));
          check(store, ref, where, start === 'empty');
        }
        expect(maxCap, `seed ${seed}: the columns grew`).toBeGreaterThan(16);
        expect(compactions, `seed ${seed}: dead slots were compacted`).toBeGreaterThan(0);
        store.clear();
        check(store, new Map(), `seed ${seed} after clear`, start === 'empty');
      }
    });
  }

  it('reads of unknown ids and short buffers are refused, naming the id or the size', () => {
    const index = makeIndex(backends[backends.length - 1]);
    const store = new CaseStore(index);
    const rng = new Mulberry32(3);
    index.addWithIds(Int32Array.of(4, 9), new Float32Array(2 * D), Float32Array.of(1, 2));
    store.apply({ added: { ids: [4, 9], meta: [randomMeta(rng), randomMeta(rng)] } });
    expect(() => store.meta(5)).toThrow(/unknown case id 5/);
    expect(() => store.values(Int32Array.of(4, 5))).toThrow(/unknown case id 5/);
    expect(() => store.values(Int32Array.of(4, 9), new Float32Array(1))).toThrow(/out holds 1 entries, need 2/);
    expect(() => store.weights([4, 9], new Float64Array(1))).toThrow(/out holds 1 entries, need 2/);
    expect(() => store.apply({ added: { ids: [-1], meta: [randomMeta(rng)] } })).toThrow(/added id -1/);
    expect(() => store.apply({ removed: [4, 4] })).toThrow(/removed twice/);
    expect(Array.from(store.ids())).toEqual([4, 9]);
  });

  it('corruptForTest (test hook) changes what reads report, and is dropped with the case', () => {
    const index = makeIndex(backends[backends.length - 1]);
    const store = new CaseStore(index);
    const rng = new Mulberry32(5);
    index.addWithIds(Int32Array.of(1, 2), new Float32Array(2 * D), Float32Array.of(0.5, 0.25));
    store.apply({ added: { ids: [1, 2], meta: [randomMeta(rng), randomMeta(rng)] } });
    store.corruptForTest(2, { value: Infinity, weight: NaN });
    expect(Array.from(store.values(Int32Array.of(1, 2)))).toEqual([0.5, Infinity]);
    expect(store.meta(2).weight).toBeNaN();
    store.corruptForTest(2, { value: undefined });
    expect(store.value(2)).toBe(0.25);
    store.corruptForTest(1, { value: -Infinity });
    index.remove(Int32Array.of(1));
    store.apply({ removed: [1] });
    expect(() => store.value(1)).toThrow(/unknown case id 1/);
    index.addWithIds(Int32Array.of(3), new Float32Array(D), Float32Array.of(3));
    store.apply({ added: { ids: [3], meta: [randomMeta(rng)] } });
    expect(store.value(3)).toBe(3);
    expect(Array.from(store.ids())).toEqual([2, 3]);
  });
});

describe('IdSlots', () => {
  it('answers as a Map on random sets and deletes of dense and far ids', () => {
    for (let seed = 1; seed <= 3; seed++) {
      const rng = new Mulberry32(seed);
      const t = new IdSlots();
      const ref = new Map<number, number>();
      for (let step = 0; step < 20000; step++) {
        // near ids (dense), mid ids (sparse first, then inside the dense table as it grows), far ids
        const r = rng.next();
        const id = r < 0.6 ? rng.int(3000 + step) : r < 0.9 ? rng.int(100_000) : rng.int(0x7ffffffe);
        const op = rng.int(3);
        if (op < 2) {
          const s = rng.int(1e6);
          t.set(id, s);
          ref.set(id, s);
        } else {
          t.delete(id);
          ref.delete(id);
        }
        if (step % 997 === 0) {
          expect(t.size).toBe(ref.size);
          for (const [k, v] of ref) expect(t.get(k)).toBe(v);
        }
        const probe = rng.int(100_000);
        expect(t.get(probe)).toBe(ref.get(probe));
      }
      for (const bad of [-1, 1.5, NaN, 2 ** 40]) expect(t.has(bad)).toBe(false);
      t.clear();
      expect(t.size).toBe(0);
      expect(t.get(5)).toBeUndefined();
    }
  });
});

describe('Interner', () => {
  it('gives each distinct string one small code, stable, in first-seen order', () => {
    const rng = new Mulberry32(9);
    const it = new Interner();
    const ref = new Map<string, number>();
    for (let k = 0; k < 500; k++) {
      const s = `s${rng.int(40)}`;
      if (!ref.has(s)) ref.set(s, ref.size);
      expect(it.code(s)).toBe(ref.get(s));
      expect(it.string(ref.get(s)!)).toBe(s);
    }
    expect(it.size).toBe(ref.size);
    expect(it.find('never')).toBe(-1);
  });
});
