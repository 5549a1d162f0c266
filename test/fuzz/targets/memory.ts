/**
 * Fuzz targets of episodic memory (lib/memory): EpisodicMemory (constructor, write, reads,
 * remove, setKernel, save/load with a journal) and the snapshot/journal reader over damaged and
 * forged directories.
 *
 * Oracles: a memory on the native index has a twin on the pure-TS ReferenceIndex (same options,
 * same writes); with gaussian (h ≥ 1.5) or inverse kernels and keys on a small integer grid their
 * states must be equal after every valid write (merge and eviction decisions are exact there).
 * A failed call must leave the memory's snapshot-equivalent state unchanged. Reads are checked
 * against the float64 reference; a saved memory must load back equal; a damaged or forged
 * directory must load to a consistent memory or throw an Error naming a file in it.
 */
import * as fs from 'fs';
import * as path from 'path';
import { EpisodicMemory } from '../../../lib/memory/episodic';
import type { MetaColumns } from '../../../lib/memory/metaColumns';
import { SnapshotError } from '../../../lib/memory/snapshot';
import { checkEstimate, checkSearch, type KernelModel, type Row } from '../check';
import type { Call, Ctx, Entry } from '../core';
import { copyDir, mutateSnapshotDir } from '../mutate';
import type { FuzzRng } from '../rng';
import { Expect, f32, intArg, lit, niceFloat } from '../values';
import { kernelOptions, rowData } from './retrieval';
import '../../helpers/referenceIndex'; // registers the float64 ReferenceIndex as backend 'js'

interface MemSlot {
  mem: EpisodicMemory;
  /** Same options on the ReferenceIndex, for differential checks (undefined: not comparable). */
  twin?: EpisodicMemory;
  name: string;
  dim: number;
  /** Keys on the integer grid only (keeps the twin comparable). */
  grid: boolean;
}

interface Pools {
  mems: MemSlot[];
  saved: string[];
}

function pools(ctx: Ctx): Pools {
  return ((ctx.pools.memory as Pools | undefined) ??= { mems: [], saved: [] });
}

let memCounter = 0;

/** The memory's state as a snapshot would hold it (ids, keys, values, meta without wall time, counters, kernel). */
export function stateOf(mem: EpisodicMemory): string {
  const d = mem.toSnapshotData();
  const meta = (d.meta as MetaColumns).toObjects().map((m) => {
    const { time: _t, ...rest } = m as Record<string, unknown>;
    return rest;
  });
  return JSON.stringify({
    dim: d.dim,
    kernel: d.kernel,
    options: d.options,
    counters: d.counters,
    ids: Array.from(d.ids),
    keys: Array.from(d.keys, (x) => (Object.is(x, -0) ? '-0' : x)),
    values: Array.from(d.values),
    meta,
  });
}

/** The index under the memory agrees with the memory's case store (ids, order, size; values are read through the store, which reads the index). */
function consistency(mem: EpisodicMemory): string | undefined {
  const ids = mem.ids();
  const ix = mem.index;
  const iids = ix.ids();
  if (iids.length !== ids.length || ids.some((id, i) => iids[i] !== id)) return `index ids ${lit(iids)} != memory ids ${lit(ids)}`;
  if (ids.length) {
    const v = ix.getValues(ids);
    for (let i = 0; i < ids.length; i++) {
      const want = Math.fround(mem.store.value(ids[i]));
      if (v[i] !== want) return `index value of id ${ids[i]} is ${v[i]}, memory says ${want}`;
    }
  }
  if (mem.size > mem.capacity) return `size ${mem.size} above capacity ${mem.capacity}`;
  return undefined;
}

function diffStates(a: string, b: string, what: string): string | undefined {
  if (a === b) return undefined;
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return `${what} differ at char ${i}: …${a.slice(Math.max(0, i - 60), i + 80)}… vs …${b.slice(Math.max(0, i - 60), i + 80)}…`;
}

function rowsOf(mem: EpisodicMemory): { rows: Row[]; kernel: KernelModel } {
  const d = mem.toSnapshotData();
  const rows = Array.from(d.ids, (id, i) => ({ id, key: d.keys.slice(i * d.dim, (i + 1) * d.dim), value: d.values[i] }));
  const k = mem.kernel;
  const param = k.kernel === 'gaussian' ? k.bandwidth ?? 1 : k.kernel === 'cosine' ? k.kappa ?? 1 : k.delta ?? 1e-3;
  return { rows, kernel: { kernel: k.kernel, param } };
}

function policyOption(rng: FuzzRng, e: Expect): unknown {
  const r = rng.next();
  if (r < 0.35) return undefined;
  if (r < 0.9) {
    return rng.pick<unknown>([
      { kind: 'unbounded' },
      { kind: 'replay', capacity: rng.range(1, 12) },
      { kind: 'window', size: rng.range(1, 12) },
      { kind: 'importance', capacity: rng.range(1, 12), weightBy: rng.pick(['tdError', 'visits', 'return']) },
      { kind: 'importance', capacity: rng.range(1, 12), weightBy: 'visits', sample: true, seed: rng.range(1, 9) },
    ]);
  }
  const v = rng.pick<unknown>([{ kind: 'replay', capacity: 0 }, { kind: 'replay', capacity: -1 }, { kind: 'window', size: 1.5 }, { kind: 'x' },
    { kind: 'importance', capacity: 3, weightBy: 'x' }]);
  e.bad('RangeError', `policy ${lit(v)}`);
  return v;
}

function mergeOption(rng: FuzzRng, e: Expect): unknown {
  const r = rng.next();
  if (r < 0.5) return undefined;
  if (r < 0.92) {
    // ε off the grid's squared distances (integers), so float32 and float64 decide alike.
    return { epsilon: rng.pick([0, 0.5, 1.5, 2.5]), rate: rng.pick<unknown>([0.5, 1, 'average', { power: 0.5 }]), ...(rng.chance(0.3) ? { candidates: rng.range(1, 4) } : {}) };
  }
  const v = rng.pick<unknown>([{ epsilon: -1, rate: 0.5 }, { epsilon: 1, rate: 0 }, { epsilon: 1, rate: 2 }, { epsilon: NaN, rate: 'average' }, { epsilon: 1, rate: { power: 2 } }]);
  e.bad('RangeError', `merge ${lit(v)}`);
  return v;
}

const newMemory: Entry = {
  name: 'new EpisodicMemory',
  area: 'lib/memory',
  weight: 2,
  make(ctx) {
    const rng = ctx.rng;
    const e = new Expect();
    const dim = intArg(rng, e, 'dim', () => rng.range(1, 6), 1, 1 << 20, 0.06);
    let kernelOpt: Record<string, unknown> | undefined;
    let comparable = true;
    if (rng.chance(0.25)) {
      const k = kernelOptions(rng, e);
      kernelOpt = k.opts;
      comparable = false;
    } else if (rng.chance(0.5)) {
      kernelOpt = rng.chance(0.6) ? { kernel: 'gaussian', bandwidth: rng.pick([1.5, 2, 3]) } : { kernel: 'inverse', delta: rng.pick([0.01, 0.1]) };
    } else kernelOpt = undefined; // default: gaussian, h = 1 (not comparable: the grid's distances underflow differently)
    if (!kernelOpt) comparable = false;
    const policy = policyOption(rng, e);
    const merge = mergeOption(rng, e);
    const opts: Record<string, unknown> = { dim };
    if (kernelOpt) opts.kernel = kernelOpt;
    if (policy !== undefined) opts.policy = policy;
    if (merge !== undefined) opts.merge = merge;
    if (rng.chance(0.05)) {
      const b = rng.pick<unknown>(['native', 'auto', 'gpu', 5]);
      opts.backend = b;
      if (b !== 'native' && b !== 'auto') e.bad('TypeError', `backend ${lit(b)}`);
    }
    const name = `mem${++memCounter}`;
    return {
      desc: `const ${name} = new EpisodicMemory(${lit(opts)})`,
      expect: e,
      run: () => new EpisodicMemory(opts as never),
      onOk: (m) => {
        const mem = m as EpisodicMemory;
        if (mem.backend !== 'native') return `backend ${mem.backend}, expected 'native' (the addon is built)`;
        const slot: MemSlot = { mem, name, dim: dim as number, grid: comparable && rng.chance(0.8) };
        if (slot.grid) slot.twin = new EpisodicMemory({ ...(opts as object), backend: 'js' } as never);
        const p = pools(ctx).mems;
        if (p.length >= 3) p.splice(rng.int(p.length), 1);
        p.push(slot);
        return consistency(mem);
      },
    };
  },
};

function anyMem(ctx: Ctx): MemSlot | undefined {
  const p = pools(ctx).mems;
  return p.length ? ctx.rng.pick(p) : undefined;
}

function dropMem(ctx: Ctx, s: MemSlot): void {
  const p = pools(ctx).mems;
  const i = p.indexOf(s);
  if (i >= 0) p.splice(i, 1);
}

/** The cases of one write: valid ones (grid keys for comparable memories) and defects. */
function casesArg(rng: FuzzRng, e: Expect, s: MemSlot): unknown {
  if (rng.chance(0.03)) {
    const v = rng.pick<unknown>([null, undefined, 5, 'cases', {}, { length: 2 }]);
    e.bad('TypeError', `cases ${lit(v)}`);
    return v;
  }
  const n = rng.weighted([[1, 0], [5, rng.range(1, 4)], [1, rng.range(5, 14)]] as const);
  const cases: unknown[] = [];
  for (let i = 0; i < n; i++) {
    if (rng.chance(0.01)) {
      const v = rng.pick<unknown>([null, 5, 'x']);
      e.bad('TypeError', `cases[${i}] ${lit(v)}`);
      cases.push(v);
      continue;
    }
    let key: number[];
    if (s.grid) key = Array.from({ length: s.dim }, () => rng.range(-2, 2));
    else key = rowData(rng, e, `cases[${i}].key`, 1, s.dim, 0.04);
    let keyArg: unknown = rng.chance(0.5) ? key : f32(key, rng.chance(0.1) ? 'view' : 'plain');
    const r = rng.next();
    if (r < 0.02) {
      const k2 = key.slice(0, Math.max(0, s.dim - 1 - rng.int(2)));
      keyArg = rng.chance(0.5) ? k2 : key.concat([0]);
      e.shape(`cases[${i}].key has the wrong length`);
    } else if (r < 0.03) {
      keyArg = rng.pick<unknown>(['a'.repeat(s.dim), { length: s.dim }, null, 5]);
      e.bad('TypeError', `cases[${i}].key is ${lit(keyArg)}`);
    } else if (r < 0.04 && !s.grid) {
      const k3 = key.slice();
      k3[rng.int(s.dim)] = 3e38;
      for (let j = 0; j < s.dim; j++) k3[j] = rng.chance(0.5) ? 3e38 : -3e38;
      keyArg = f32(k3);
      e.bad('RangeError', `cases[${i}].key: float32 squared norm overflows`);
    }
    let value: unknown = rng.chance(0.05) ? rng.pick([1e30, -1e30]) : niceFloat(rng);
    if (rng.chance(0.03)) {
      value = rng.pick([NaN, Infinity, -Infinity]);
      e.bad('RangeError', `cases[${i}].value ${value}`);
    } else if (rng.chance(0.02)) {
      value = rng.pick<unknown>(['1', null, undefined, {}]);
      e.bad('TypeError', `cases[${i}].value ${lit(value)}`);
    }
    const c: Record<string, unknown> = { key: keyArg, value, action: rng.pick(['a', 'b', 'c']), state: `s${rng.int(3)}`, episode: rng.int(5), step: i, time: 1000 + i };
    if (rng.chance(0.2)) c.tdError = rng.next();
    if (rng.chance(0.1)) c.weight = rng.next() * 3;
    cases.push(c);
  }
  return cases;
}

function writeReportText(r: unknown): string {
  const w = r as Record<string, Int32Array>;
  return JSON.stringify(['added', 'merged', 'evicted', 'caseIds'].map((k) => Array.from(w?.[k] ?? [])));
}

const writeEntry: Entry = {
  name: 'EpisodicMemory.write',
  requires: ['new EpisodicMemory', 'EpisodicMemory.write'],
  area: 'lib/memory',
  weight: 8,
  make(ctx) {
    const s = anyMem(ctx);
    if (!s) return undefined;
    const e = new Expect();
    const cases = casesArg(ctx.rng, e, s);
    const before = stateOf(s.mem);
    // Deep copy for the twin (typed keys copied: the memory must not depend on the caller's array).
    const twinCases = Array.isArray(cases) ? cases.map((c) => (c && typeof c === 'object' ? { ...c, key: ArrayBuffer.isView((c as { key: unknown }).key) ? Float32Array.from((c as { key: Float32Array }).key) : (c as { key: unknown }).key } : c)) : cases;
    return {
      desc: `await ${s.name}.write(${lit(cases)})`,
      expect: e,
      run: () => s.mem.write(cases as never),
      onOk: async (rep) => {
        const c = consistency(s.mem);
        if (c) return c;
        if (s.twin) {
          const trep = await s.twin.write(twinCases as never);
          const d = diffStates(stateOf(s.mem), stateOf(s.twin), 'native and reference memories');
          if (d) return d;
          if (writeReportText(rep) !== writeReportText(trep)) return `write reports differ: native ${writeReportText(rep)}, reference ${writeReportText(trep)}`;
        }
        return undefined;
      },
      unchanged: () => diffStates(before, stateOf(s.mem), 'state before/after'),
      discard: () => dropMem(ctx, s),
    };
  },
};

const readEntry: Entry = {
  name: 'EpisodicMemory.read',
  requires: ['new EpisodicMemory', 'EpisodicMemory.write'],
  area: 'lib/memory',
  weight: 5,
  make(ctx) {
    const s = anyMem(ctx);
    if (!s) return undefined;
    const rng = ctx.rng;
    const e = new Expect();
    const b = rng.range(0, 3);
    const qdata = s.grid && rng.chance(0.5) ? Array.from({ length: b * s.dim }, () => rng.range(-2, 2)) : rowData(rng, e, 'queries', b, s.dim, 0.04);
    let q: unknown = f32(qdata, rng.chance(0.1) ? 'view' : 'plain');
    if (rng.chance(0.04)) {
      q = Array.from(qdata);
      e.bad('TypeError', 'queries is an Array');
    }
    const m = intArg(rng, e, 'm', () => rng.range(1, s.mem.size + 2), 1, 1 << 24, 0.05);
    const which = rng.pick(['estimate', 'search', 'estimateAuto', 'searchAuto', 'retrievalPrior', 'coverageRadius'] as const);
    const opts = { voidWeight: rng.pick([0, 0.1, 1]), voidValue: rng.pick([0, -1, 0.5]) };
    const before = stateOf(s.mem);
    const { rows, kernel } = rowsOf(s.mem);
    const qc = Float32Array.from(qdata);
    const mm = m as number;
    const desc = which === 'coverageRadius' ? `${s.name}.coverageRadius(${lit(q)})`
      : which === 'retrievalPrior' ? `${s.name}.retrievalPrior(${lit(q)}, ${lit(m)}, ${opts.voidWeight})`
      : `${s.name}.${which}(${lit(q)}, ${lit(m)}${which.startsWith('estimate') ? `, ${lit(opts)}` : ''})`;
    if (which === 'coverageRadius') {
      // m plays no part: only the queries' defects count.
      e.errors.clear();
      e.why.length = 0;
      e.ok = true;
      // With an empty memory nothing is searched: bad queries may pass unnoticed.
      const flag = (cls: 'TypeError' | 'RangeError', why: string) => (s.mem.size > 0 && b > 0 ? e.bad(cls, why) : e.maybe(cls, why));
      if (!(q instanceof Float32Array)) flag('TypeError', 'queries is an Array');
      if (qdata.some((x) => !Number.isFinite(x))) flag('RangeError', 'queries not finite');
      if (qdata.some((_, i) => i % s.dim === 0 && qdata.slice(i, i + s.dim).reduce((a, x) => a + Math.fround(x) ** 2, 0) > 3.4e38)) flag('RangeError', 'query norm overflows');
    }
    return {
      desc: `await ${desc}`,
      expect: e,
      run: () => {
        const mem = s.mem as unknown as Record<string, (...a: unknown[]) => unknown>;
        if (which === 'coverageRadius') return s.mem.coverageRadius(q as Float32Array);
        if (which === 'retrievalPrior') return s.mem.retrievalPrior(q as Float32Array, m as number, opts.voidWeight);
        return which.startsWith('estimate') ? mem[which](q, m, opts) : mem[which](q, m);
      },
      onOk: (res) => {
        if (which === 'estimate' || which === 'estimateAuto') return checkEstimate(kernel, rows, s.dim, qc, mm, opts.voidWeight, opts.voidValue, res as never);
        if (which === 'search' || which === 'searchAuto') return checkSearch(kernel, rows, s.dim, qc, mm, res as never);
        if (which === 'coverageRadius') {
          const r = res as { radius: number; distances: Float64Array };
          for (let i = 0; i < b; i++) {
            let best = Infinity;
            for (const row of rows) {
              let d2 = 0;
              for (let j = 0; j < s.dim; j++) d2 += (qc[i * s.dim + j] - row.key[j]) ** 2;
              best = Math.min(best, Math.sqrt(d2));
            }
            const tol = 1e-3 * (1 + best);
            if (!(Math.abs(r.distances[i] - best) <= tol || (best === Infinity && r.distances[i] === Infinity))) return `coverage distance ${i}: ${r.distances[i]}, reference ${best}`;
          }
          return undefined;
        }
        const pri = res as { weights?: ArrayLike<number> }[];
        if (!Array.isArray(pri) || pri.length !== b) return `retrievalPrior returned ${pri?.length} priors for ${b} queries`;
        return undefined;
      },
      check: () => diffStates(before, stateOf(s.mem), 'state before/after a read'),
      discard: () => dropMem(ctx, s),
    };
  },
};

const editEntry: Entry = {
  name: 'EpisodicMemory.remove/setKernel/setWeights',
  requires: ['new EpisodicMemory', 'EpisodicMemory.write'],
  area: 'lib/memory',
  weight: 2,
  make(ctx) {
    const s = anyMem(ctx);
    if (!s) return undefined;
    const rng = ctx.rng;
    const e = new Expect();
    const which = rng.pick(['remove', 'setKernel', 'setWeights'] as const);
    const before = stateOf(s.mem);
    const live = Array.from(s.mem.ids());
    let arg: unknown;
    let arg2: unknown;
    if (which === 'setKernel') {
      if (s.twin) arg = rng.chance(0.6) ? { kernel: 'gaussian', bandwidth: rng.pick([1.5, 2]) } : { kernel: 'inverse', delta: 0.05 };
      else arg = kernelOptions(rng, e).opts;
    } else {
      const ids = live.length && rng.chance(0.9) ? [rng.pick(live)] : [rng.pick([99999, -1])];
      if (live.length > 1 && rng.chance(0.3)) ids.push(rng.pick(live));
      const unknown = ids.some((id) => !live.includes(id));
      if (unknown) e.bad('RangeError', 'unknown id');
      if (new Set(ids).size !== ids.length) {
        if (which === 'remove') e.bad('RangeError', 'repeated id');
        else e.maybe('RangeError', 'repeated id');
      }
      arg = Int32Array.from(ids);
      if (which === 'setWeights') {
        arg2 = ids.map(() => rng.pick([0.5, 2, 0]));
        if (rng.chance(0.1)) {
          arg2 = ids.map(() => NaN);
          e.bad('RangeError', 'weight NaN');
        }
      }
    }
    const call = (m: EpisodicMemory) => (which === 'setWeights' ? m.setWeights(arg as Int32Array, arg2 as number[]) : (m[which] as (a: unknown) => void)(arg));
    return {
      desc: `${s.name}.${which}(${lit(arg)}${arg2 !== undefined ? `, ${lit(arg2)}` : ''})`,
      expect: e,
      run: () => call(s.mem),
      onOk: () => {
        const c = consistency(s.mem);
        if (c) return c;
        if (s.twin) {
          call(s.twin);
          return diffStates(stateOf(s.mem), stateOf(s.twin), 'native and reference memories');
        }
        return undefined;
      },
      unchanged: () => diffStates(before, stateOf(s.mem), 'state before/after'),
      discard: () => dropMem(ctx, s),
    };
  },
};

const saveLoadEntry: Entry = {
  name: 'EpisodicMemory.save/load',
  requires: ['new EpisodicMemory', 'EpisodicMemory.write'],
  area: 'lib/memory',
  weight: 3,
  make(ctx) {
    const s = anyMem(ctx);
    if (!s) return undefined;
    const rng = ctx.rng;
    const dir = ctx.fresh('mem');
    const journal = rng.chance(0.5);
    const e = new Expect();
    let target = dir;
    const odd = rng.next();
    if (odd < 0.05) {
      fs.writeFileSync(dir, 'not a directory');
      target = path.join(dir, rng.pick(['', 'sub']));
      e.bad('Error', 'the target is a file');
      e.names = [dir];
    }
    const cases = Array.from({ length: rng.range(1, 3) }, (_, i) => ({ key: Array.from({ length: s.dim }, () => rng.range(-2, 2)), value: rng.normal(), action: 'a', time: 5 + i }));
    return {
      desc: `${s.name}.save(${lit(target)}, { fsync: false })${journal ? '; attachJournal; write; ' : '; '}EpisodicMemory.load(${lit(target)})`,
      expect: e,
      run: async () => {
        s.mem.save(target, { fsync: false });
        if (journal) {
          s.mem.attachJournal(target, { fsync: false });
          await s.mem.write(cases);
          if (s.twin) await s.twin.write(cases);
          s.mem.detachJournal();
        }
        return EpisodicMemory.load(target, { backend: 'native' });
      },
      onOk: (loaded) => {
        const l = loaded as EpisodicMemory;
        const d = diffStates(stateOf(s.mem), stateOf(l), 'saved and loaded memories');
        if (d) return d;
        const c = consistency(l);
        if (c) return `loaded memory: ${c}`;
        const p = pools(ctx).saved;
        if (p.length >= 6) p.splice(rng.int(p.length), 1);
        p.push(target);
        return undefined;
      },
      discard: () => dropMem(ctx, s),
    };
  },
};

/** A damaged or forged copy of a saved memory: it loads consistently or fails naming a file. */
const snapshotReaderEntry: Entry = {
  name: 'EpisodicMemory.load (damaged/forged snapshot)',
  requires: ['new EpisodicMemory', 'EpisodicMemory.write', 'EpisodicMemory.save/load'],
  area: 'lib/memory',
  weight: 6,
  make(ctx) {
    const saved = pools(ctx).saved;
    if (!saved.length) return undefined;
    const rng = ctx.rng;
    const src = rng.pick(saved);
    if (!fs.existsSync(src)) return undefined;
    const dir = ctx.fresh('forged');
    copyDir(src, dir);
    const done = mutateSnapshotDir(rng, dir);
    const e = new Expect().maybe('Error', 'damaged or forged snapshot');
    e.names = [dir];
    const open = rng.chance(0.15);
    // a mapped load leaves the CRCs and the metadata rows to verifyMapped (or the first read)
    const mmap = !open && rng.chance(0.3);
    return {
      desc: `${done.join('; ')}; EpisodicMemory.${open ? 'open' : 'load'}(dir${mmap ? ', { mmap: true }' : ''})`,
      expect: e,
      run: () => (open ? EpisodicMemory.open(dir, { dim: 1 }, { fsync: false }) : EpisodicMemory.load(dir, { backend: 'native', mmap })),
      onOk: async (loaded) => {
        const l = loaded as EpisodicMemory;
        if (mmap) {
          try {
            await l.verifyMapped();
          } catch (err) {
            if (err instanceof SnapshotError) return undefined; // refused, naming the part
            return `verifyMapped threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`;
          }
        }
        const c = consistency(l);
        if (c) return `loaded memory: ${c}`;
        // Usable: a search over it agrees with the reference over the loaded data.
        if (l.size > 0) {
          const { rows, kernel } = rowsOf(l);
          const q = Float32Array.from({ length: l.dim }, () => rng.range(-2, 2));
          const m = Math.min(3, l.size);
          let res;
          try {
            res = await l.search(q, m);
          } catch (err) {
            return `the loaded memory cannot be searched: ${(err as Error).constructor.name}: ${(err as Error).message}`;
          }
          const w = checkSearch(kernel, rows, l.dim, q, m, res);
          if (w) return `search over the loaded memory: ${w}`;
        }
        return undefined;
      },
    };
  },
};

export const memoryEntries: Entry[] = [newMemory, writeEntry, readEntry, editEntry, saveLoadEntry, snapshotReaderEntry];
