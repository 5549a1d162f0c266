/**
 * Fuzz targets of the retrieval core (lib/retrieval.ts over the N-API addon): MemoryIndex
 * (constructor, add, addWithIds, updateValues, remove, getKeys/getValues, has, search/searchSync/
 * estimate/estimateSync with and without `out`, setKernel, compact/clear), overlapping async
 * calls with writes and buffer tampering in flight, and klImprove/klImproveAsync.
 *
 * Each index in the pool has a model (its live rows, next id, kernel, capacity); valid calls are
 * checked against the model and the float64 reference, failed calls must leave the index equal
 * to the model.
 */
import * as fs from 'fs';
import * as path from 'path';
import { MemoryIndex, klImprove, klImproveAsync, type SearchResult, type EstimateResult } from '../../../lib/retrieval';
import { checkEstimate, checkKl, checkSearch, type KernelModel, type KernelName, type Row } from '../check';
import type { Call, Ctx, Entry } from '../core';
import { FuzzRng } from '../rng';
import {
  detach, Expect, f32, f32Arg, i32Arg, intArg, lit, niceFloat, notF32, notI32, notNumber,
} from '../values';

const F32_MAX = 3.4028234663852886e38;
const INT32_MAX = 2147483647;

export interface IndexSlot {
  ix: MemoryIndex;
  dim: number;
  kernel: KernelModel;
  capacity: number;
  nextId: number;
  rows: Map<number, Row>;
  name: string;
}

function pool(ctx: Ctx): IndexSlot[] {
  return ((ctx.pools.index as IndexSlot[] | undefined) ??= []);
}

function anySlot(ctx: Ctx): IndexSlot | undefined {
  const p = pool(ctx);
  return p.length ? ctx.rng.pick(p) : undefined;
}

function dropSlot(ctx: Ctx, s: IndexSlot): void {
  const p = pool(ctx);
  const i = p.indexOf(s);
  if (i >= 0) p.splice(i, 1);
}

/** A copy of the live rows (the model's Row objects change with later value updates). */
function liveRows(s: IndexSlot): Row[] {
  return [...s.rows.values()].map((r) => ({ ...r }));
}

/** The index against its model: size, ids in order, values and keys bit for bit, kernel, next id. */
export function checkSlot(s: IndexSlot): string | undefined {
  const ix = s.ix;
  const want = [...s.rows.keys()];
  if (ix.size !== want.length) return `size ${ix.size}, model ${want.length}`;
  const ids = ix.ids();
  if (ids.length !== want.length || want.some((id, i) => ids[i] !== id)) {
    return `ids() ${lit(ids)}, model ${lit(want)}`;
  }
  const k = ix.kernel as Record<string, unknown>;
  const pname = s.kernel.kernel === 'gaussian' ? 'bandwidth' : s.kernel.kernel === 'cosine' ? 'kappa' : 'delta';
  if (k.kernel !== s.kernel.kernel || k[pname] !== s.kernel.param) return `kernel ${JSON.stringify(k)}, model ${s.kernel.kernel} ${s.kernel.param}`;
  const st = ix.stats();
  if (st.nextId !== s.nextId) return `stats().nextId ${st.nextId}, model ${s.nextId}`;
  if (st.capacity !== s.capacity) return `capacity ${st.capacity}, model ${s.capacity}`;
  if (want.length === 0) return undefined;
  const idArr = Int32Array.from(want);
  const vals = ix.getValues(idArr);
  const keys = ix.getKeys(idArr);
  for (let i = 0; i < want.length; i++) {
    const r = s.rows.get(want[i])!;
    if (!Object.is(vals[i], r.value) && !(vals[i] === r.value)) return `getValues: id ${want[i]} has ${vals[i]}, model ${r.value}`;
    for (let j = 0; j < s.dim; j++) {
      if (keys[i * s.dim + j] !== r.key[j]) return `getKeys: id ${want[i]}[${j}] is ${keys[i * s.dim + j]}, model ${r.key[j]}`;
    }
  }
  return undefined;
}

// ---- data --------------------------------------------------------------------------------------

function sumSq(a: ArrayLike<number>, off: number, d: number): number {
  let s = 0;
  for (let j = 0; j < d; j++) s += Math.fround(a[off + j]) ** 2;
  return s;
}

/**
 * n rows of d floats for keys or queries: usually finite data of one style (normal, a small
 * integer grid, every scale up to 1e17, zeros, denormals, duplicates, or entries near 1e19 whose
 * distances can leave float32); with probability pBad a NaN/±Infinity or a row of ±3e38. A row
 * whose float32 squared norm overflows must be refused (RangeError); one above a quarter of the
 * float32 range may be refused, and if it is accepted every result must stay finite.
 */
export function rowData(rng: FuzzRng, e: Expect, name: string, n: number, d: number, pBad = 0.06): number[] {
  const style = rng.weighted([[6, 'normal'], [2, 'grid'], [1, 'scaled'], [0.5, 'zero'], [0.3, 'tiny'], [1, 'dup'], [pBad > 0 ? 0.2 : 0, 'edge']] as const);
  const out: number[] = new Array(n * d);
  const scale = style === 'scaled' ? 10 ** rng.range(-20, 17) : 1;
  for (let i = 0; i < n * d; i++) {
    if (style === 'grid') out[i] = rng.range(-3, 3);
    else if (style === 'zero') out[i] = 0;
    else if (style === 'tiny') out[i] = rng.normal() * 1e-40;
    else if (style === 'edge') out[i] = rng.chance(0.5) ? 0 : rng.pick([1.3e19, -1.3e19, 6e18, -9e18]);
    else out[i] = (rng.normal() / Math.sqrt(d)) * scale;
  }
  if (style === 'dup' && n > 1) for (let i = d; i < n * d; i++) out[i] = out[i % d];
  if (n > 0 && rng.chance(pBad)) {
    const r = rng.int(n);
    const kind = rng.int(4);
    if (kind < 3) {
      const v = [NaN, Infinity, -Infinity][kind];
      out[r * d + rng.int(d)] = v;
      e.bad('RangeError', `${name} row ${r} holds ${v}`);
    } else {
      for (let j = 0; j < d; j++) out[r * d + j] = rng.chance(0.5) ? 3e38 : -3e38;
    }
  }
  for (let r = 0; r < n; r++) {
    const s = sumSq(out, r * d, d);
    if (Number.isNaN(s)) continue; // NaN rows are recorded above
    // A limit of FLT_MAX/4 keeps every distance finite; an implementation may state a lower one.
    if (s > F32_MAX * 1.001) e.bad('RangeError', `${name} row ${r}: float32 squared norm overflows (${s.toExponential(2)})`);
    else if (s > F32_MAX / 64) e.maybe('RangeError', `${name} row ${r}: squared norm ${s.toExponential(2)} near the float32 limit`);
  }
  return out;
}

function valueData(rng: FuzzRng, e: Expect, name: string, n: number, pBad = 0.05): number[] {
  const out = Array.from({ length: n }, () => (rng.chance(0.03) ? rng.pick([3e38, -3e38, 1e30]) : niceFloat(rng)));
  if (n > 0 && rng.chance(pBad)) {
    const v = rng.pick([NaN, Infinity, -Infinity]);
    out[rng.int(n)] = v;
    e.bad('RangeError', `${name} holds ${v}`);
  }
  return out;
}

/**
 * A Float32Array argument of `data`, or (rarely) something of the wrong type, or of another
 * length (the data actually passed is returned: a length that still fits is a valid call).
 */
function f32Input(rng: FuzzRng, e: Expect, name: string, data: number[], lenOk: (n: number) => boolean, pWrong = 0.05): { arg: unknown; data: number[] } {
  if (rng.chance(pWrong)) {
    e.bad('TypeError', `${name} is not a Float32Array`);
    return { arg: notF32(rng, data), data };
  }
  if (rng.chance(pWrong)) {
    // Shorter only when the cut-off part holds no recorded defect (NaN, ±Infinity, huge rows).
    const short = Math.max(0, data.length - rng.pick([1, 2]));
    const clean = data.slice(short).every((x) => Math.abs(x) < 1e18);
    const n = rng.chance(0.5) && clean ? short : data.length + rng.pick([1, 2]);
    const cut = data.slice(0, n);
    while (cut.length < n) cut.push(0.5);
    if (!lenOk(n)) e.shape(`${name}.length ${n} does not fit`);
    return { arg: f32Arg(rng, e, name, cut), data: cut };
  }
  return { arg: f32Arg(rng, e, name, data), data };
}

function idsInput(rng: FuzzRng, e: Expect, name: string, ids: number[], pWrong = 0.05): unknown {
  if (rng.chance(pWrong)) {
    e.bad('TypeError', `${name} is neither an Int32Array nor an array of int32`);
    return notI32(rng, ids);
  }
  if (rng.chance(0.04) && ids.length > 0) {
    const bad = [...ids];
    bad[rng.int(bad.length)] = rng.pick([1.5, 2 ** 31, -(2 ** 31) - 1, NaN]);
    e.bad(['TypeError', 'RangeError'], `${name} array holds a non-int32 number`);
    return bad;
  }
  if (rng.chance(0.25)) return [...ids];
  return i32Arg(rng, e, name, ids);
}

// ---- kernels -------------------------------------------------------------------------------------

const PARAM_NAME: Record<KernelName, string> = { gaussian: 'bandwidth', cosine: 'kappa', inverse: 'delta' };
const PARAM_DEFAULT: Record<KernelName, number> = { gaussian: 1, cosine: 1, inverse: 1e-3 };

/**
 * Kernel options with their expectation: valid parameters, out-of-range ones (RangeError),
 * non-numbers (TypeError), and extremes (tiny bandwidth, κ ≥ 89, δ = 1e-40, beyond float32)
 * that may be refused with a RangeError; if accepted, every later result must be finite.
 */
export function kernelOptions(rng: FuzzRng, e: Expect): { opts: Record<string, unknown>; model?: KernelModel } {
  const opts: Record<string, unknown> = {};
  let kernel: KernelName;
  const roll = rng.next();
  if (roll < 0.03) {
    const k = rng.pick<unknown>(['gauss', 'Gaussian', '', 'linear', 5, {}]);
    e.bad('TypeError', `kernel ${lit(k)}`);
    return { opts: { kernel: k } };
  } else if (roll < 0.05) {
    opts.kernel = null; // treated as absent (gaussian), or refused
    e.maybe('TypeError', 'kernel null');
    kernel = 'gaussian';
  } else {
    kernel = rng.pick<KernelName>(['gaussian', 'gaussian', 'cosine', 'inverse']);
    if (kernel !== 'gaussian' || rng.chance(0.7)) opts.kernel = kernel;
  }
  const pname = PARAM_NAME[kernel];
  let param = PARAM_DEFAULT[kernel];
  const r = rng.next();
  if (r < 0.15) {
    // absent: the default
  } else if (r < 0.75) {
    param = kernel === 'cosine' ? rng.pick([0.5, 1, 5, 10, 30]) : kernel === 'gaussian' ? rng.pick([0.3, 0.5, 1, 2, 5]) : rng.pick([1e-3, 0.01, 0.1, 1]);
    opts[pname] = param;
  } else if (r < 0.88) {
    const v = rng.pick([0, -1, -0, NaN, Infinity, -Infinity, -1e-3]);
    e.bad('RangeError', `${pname} ${lit(v)}`);
    opts[pname] = v;
    return { opts };
  } else if (r < 0.93) {
    const v = rng.pick<unknown>(['1', null, {}, true, 2n]);
    opts[pname] = v;
    if (v !== null) {
      e.bad('TypeError', `${pname} ${lit(v)}`);
      return { opts };
    }
    e.maybe('TypeError', `${pname} null`);
  } else {
    const ext: Record<KernelName, number[]> = {
      gaussian: [1e-30, 1e-20, 1e-46, 1e30, 1e39, 5e-23],
      cosine: [89, 100, 1000, 1e6, 1e-30, 1e39],
      inverse: [1e-40, 1e-30, 1e-46, 1e30, 1e39],
    };
    param = rng.pick(ext[kernel]);
    opts[pname] = param;
    e.maybe('RangeError', `extreme ${pname} ${param}`);
  }
  return { opts, model: { kernel, param } };
}

// ---- search arguments ------------------------------------------------------------------------------

interface OutPlan {
  out?: Record<string, unknown>;
  /** The arrays that must come back as the result's own (caller-owned outputs). */
  given: Record<string, unknown>;
  queries: Float32Array | undefined;
}

/**
 * `out` for search (ids, kernel, dist2: b*m each) or estimate (value, confidence: b each), and
 * the queries (built here, as they may be aliased with an output): valid outputs are poisoned;
 * defects are wrong lengths, wrong types, detached buffers, and aliasing (TypeError).
 */
function outPlan(rng: FuzzRng, e: Expect, qdata: number[], b: number, m: number, estimate: boolean): OutPlan {
  const fields = estimate ? (['value', 'confidence'] as const) : (['ids', 'kernel', 'dist2'] as const);
  const len = estimate ? b : b * m;
  const roll = rng.next();
  const plain = (): OutPlan => ({ given: {}, queries: undefined });
  if (roll < 0.55 || len > 1 << 16) return plain();
  const out: Record<string, unknown> = {};
  const given: Record<string, unknown> = {};
  const fresh = (f: string) => (f === 'ids' ? new Int32Array(len).fill(0x7eadbeef) : new Float32Array(len).fill(NaN));
  for (const f of fields) if (rng.chance(0.7)) out[f] = given[f] = fresh(f);
  if (roll < 0.85) return { out, given, queries: undefined };
  const f = rng.pick(fields);
  const kind = rng.int(7);
  if (kind === 0) {
    const n = len > 0 && rng.chance(0.5) ? len - 1 : len + rng.pick([1, 3]);
    out[f] = f === 'ids' ? new Int32Array(n) : new Float32Array(n);
    e.shape(`out.${f}.length ${n}, needs ${len}`);
  } else if (kind === 1) {
    out[f] = f === 'ids' ? new Float32Array(len) : rng.pick([new Int32Array(len), new Float64Array(len), Array.from({ length: len }, () => 0)]);
    e.bad('TypeError', `out.${f} has the wrong type`);
  } else if (kind === 2) {
    out[f] = detach(fresh(f));
    e.bad('TypeError', `out.${f} is detached`);
  } else if (kind === 3 && fields.length > 1 && len > 0) {
    // Two outputs over the same bytes.
    const [a, c] = [fields[0], fields[1]];
    const buf = new ArrayBuffer(len * 4);
    out[a] = a === 'ids' ? new Int32Array(buf) : new Float32Array(buf);
    out[c] = new Float32Array(buf);
    e.bad('TypeError', `out.${a} and out.${c} share their memory`);
  } else if (kind === 4 && len > 0 && qdata.length > 0) {
    // An output overlapping the queries.
    const qlen = qdata.length;
    const buf = new ArrayBuffer(Math.max(qlen, len) * 4 + 8);
    const off = qlen > 1 ? 4 : 0; // inside the queries' bytes
    const o = f === 'ids' ? new Int32Array(buf, off, len) : new Float32Array(buf, off, len);
    const q = new Float32Array(buf, 0, qlen);
    q.set(qdata);
    out[f] = o;
    e.bad('TypeError', `out.${f} overlaps the queries`);
    return { out, given: {}, queries: q };
  } else if (kind === 5) {
    const v = rng.pick<unknown>([5, 'out', true]);
    e.bad('TypeError', `out is ${lit(v)}`);
    return { out: v as Record<string, unknown>, given: {}, queries: undefined };
  } else {
    const sh = f === 'ids' ? new Int32Array(new SharedArrayBuffer(len * 4)) : new Float32Array(new SharedArrayBuffer(len * 4));
    out[f] = given[f] = sh;
    e.maybe('TypeError', `out.${f} is shared`);
  }
  return { out, given: {}, queries: undefined };
}

function sameArrays(res: Record<string, unknown>, given: Record<string, unknown>): string | undefined {
  for (const [k, v] of Object.entries(given)) if (res[k] !== v) return `result.${k} is not the caller's out.${k}`;
  return undefined;
}

interface QueryArgs {
  queries: unknown;
  qdata: number[];
  b: number;
  m: unknown;
  mNum: number;
}

function queryArgs(rng: FuzzRng, e: Expect, s: IndexSlot): QueryArgs {
  const huge = rng.chance(0.002);
  const b = huge ? 1 : rng.chance(0.1) ? 0 : rng.range(1, 4);
  const qdata = rowData(rng, e, 'queries', b, s.dim);
  const n = s.rows.size;
  let m: unknown;
  if (huge) {
    // The largest m (2^24, one query; the known allocation abort): refusing it or failing cleanly is fine.
    m = 1 << 24;
    e.maybe(['RangeError', 'Error'], 'm = 2^24: outputs of b*m');
  } else {
    m = intArg(rng, e, 'm', () => rng.range(1, n + 3), 1, 1 << 24, 0.08);
  }
  return { queries: undefined, qdata, b, m, mNum: typeof m === 'number' ? m : NaN };
}

function finishQueries(rng: FuzzRng, e: Expect, s: IndexSlot, qa: QueryArgs, plan: OutPlan): void {
  if (plan.queries) {
    qa.queries = plan.queries;
    return;
  }
  // No length changes with caller-owned outputs: their lengths follow the planned b.
  const q = f32Input(rng, e, 'queries', qa.qdata, (len) => len % s.dim === 0, plan.out === undefined ? 0.05 : 0);
  qa.queries = q.arg;
  qa.qdata = q.data;
}

function voidArg(rng: FuzzRng, e: Expect, name: string, weight: boolean): unknown {
  const r = rng.next();
  if (r < 0.3) return undefined;
  if (r < 0.85) return weight ? rng.pick([0, 0.1, 1, 1e-3, 100]) : niceFloat(rng);
  if (r < 0.95) {
    const v = rng.pick(weight ? [-1, NaN, Infinity, -0.001] : [NaN, Infinity, -Infinity]);
    e.bad('RangeError', `${name} ${v}`);
    return v;
  }
  const v = notNumber(rng);
  e.bad('TypeError', `${name} is ${lit(v)}`);
  return v;
}

/** The search/estimate call of an entry, sync or async. */
function searchCall(ctx: Ctx, estimate: boolean, sync: boolean): Call | undefined {
  const s = anySlot(ctx);
  if (!s) return undefined;
  const rng = ctx.rng;
  const e = new Expect();
  const qa = queryArgs(rng, e, s);
  const plan = outPlan(rng, e, qa.qdata, qa.b, Number.isInteger(qa.mNum) && qa.mNum > 0 ? qa.mNum : 1, estimate);
  finishQueries(rng, e, s, qa, plan);
  const opts: Record<string, unknown> = {};
  let vw = 0;
  let vv = 0;
  if (estimate) {
    const w = voidArg(rng, e, 'voidWeight', true);
    const v = voidArg(rng, e, 'voidValue', false);
    if (w !== undefined) opts.voidWeight = w;
    if (v !== undefined) opts.voidValue = v;
    vw = typeof w === 'number' ? w : 0;
    vv = typeof v === 'number' ? v : 0;
  }
  if (plan.out !== undefined) opts.out = plan.out;
  const passOpts = Object.keys(opts).length > 0 || rng.chance(0.2);
  const method = `${estimate ? 'estimate' : 'search'}${sync ? 'Sync' : ''}`;
  const rows = liveRows(s);
  const kernel = { ...s.kernel };
  const qcopy = Float32Array.from(qa.qdata);
  return {
    desc: `${s.name}.${method}(${lit(qa.queries)}, ${lit(qa.m)}${passOpts ? `, ${lit(opts)}` : ''})`,
    expect: e,
    run: () => {
      const ix = s.ix as unknown as Record<string, (...a: unknown[]) => unknown>;
      return passOpts ? ix[method](qa.queries, qa.m, opts) : ix[method](qa.queries, qa.m);
    },
    onOk: (res) => {
      const r = res as Record<string, unknown>;
      const same = sameArrays(r, plan.given);
      if (same) return same;
      if (estimate) return checkEstimate(kernel, rows, s.dim, qcopy, qa.mNum, vw, vv, res as EstimateResult);
      return checkSearch(kernel, rows, s.dim, qcopy, qa.mNum, res as SearchResult);
    },
    check: () => checkSlot(s),
    discard: () => dropSlot(ctx, s),
  };
}

// ---- entries ---------------------------------------------------------------------------------------

let slotCounter = 0;

const constructorEntry: Entry = {
  name: 'new MemoryIndex',
  area: 'lib/retrieval',
  weight: 4,
  make(ctx) {
    const rng = ctx.rng;
    const e = new Expect();
    if (rng.chance(0.03)) {
      const v = rng.pick<unknown>([null, undefined, 5, 'dim', []]);
      e.bad('TypeError', `options ${lit(v)}`);
      return { desc: `new MemoryIndex(${lit(v)})`, expect: e, run: () => new MemoryIndex(v as never) };
    }
    const dim = intArg(rng, e, 'dim', () => rng.pick([1, 2, 3, 4, 8, 16, 33]), 1, 1 << 20, 0.08);
    const { opts, model } = kernelOptions(rng, e);
    const o: Record<string, unknown> = { dim, ...opts };
    let capacity = 0;
    if (rng.chance(0.3)) {
      const c = intArg(rng, e, 'capacity', () => rng.pick([0, 1, 3, 8, 40]), 0, INT32_MAX, 0.15, true);
      o.capacity = c;
      if (typeof c === 'number' && Number.isInteger(c) && c >= 0) capacity = c;
    }
    if (rng.chance(0.06)) {
      const b = rng.pick<unknown>(['cpu', 'auto', 'cuda', 'gpu', 1, null]);
      o.backend = b;
      if (b === 'cuda') e.maybe('Error', "backend 'cuda' without a usable GPU");
      else if (b === null) e.maybe('TypeError', 'backend null');
      else if (b !== 'cpu' && b !== 'auto') e.bad('TypeError', `backend ${lit(b)}`);
    }
    if (rng.chance(0.05)) {
      const k = rng.pick<unknown>(['float32', 'bf16', 'fp16', 'f16', 3]);
      o.keyType = k;
      if (k === 'bf16' || k === 'fp16') {
        if (o.backend === 'cuda') e.maybe(['TypeError', 'Error'], `keyType ${k}`);
        else e.maybe('TypeError', `keyType ${k}: fp16 needs CUDA`);
      } else if (k !== 'float32') e.bad('TypeError', `keyType ${lit(k)}`);
    }
    const name = `ix${++slotCounter}`;
    return {
      desc: `const ${name} = new MemoryIndex(${lit(o)})`,
      expect: e,
      run: () => new MemoryIndex(o as never),
      onOk: (ix) => {
        const index = ix as MemoryIndex;
        if (index.backend !== 'cpu' || index.keyType !== 'float32') {
          // A GPU machine: the CUDA store is fuzzed by its own tests; keep to the CPU model here.
          // bf16 keys (CPU) are rounded, so the exact float32 model does not describe them: their
          // searches are checked against the dequantised keys in test/retrieval/keytype.test.ts.
          return undefined;
        }
        if (!model || typeof dim !== 'number') return 'accepted options the model cannot describe';
        const slot: IndexSlot = { ix: index, dim, kernel: model, capacity, nextId: 0, rows: new Map(), name };
        const p = pool(ctx);
        if (p.length >= 3) p.splice(rng.int(p.length), 1);
        p.push(slot);
        return checkSlot(slot);
      },
    };
  },
};

function addEntry(withIds: boolean): Entry {
  return {
    name: withIds ? 'MemoryIndex.addWithIds' : 'MemoryIndex.add',
    requires: ['new MemoryIndex', 'MemoryIndex.add'],
    area: 'lib/retrieval',
    weight: withIds ? 5 : 10,
    make(ctx) {
      const s = anySlot(ctx);
      if (!s) return undefined;
      const rng = ctx.rng;
      const e = new Expect();
      const n = s.dim > 64 ? rng.range(0, 2) : rng.weighted([[1, 0], [6, rng.range(1, 4)], [2, rng.range(5, 24)]] as const);
      const kd = rowData(rng, e, 'keys', n, s.dim);
      const vd = valueData(rng, e, 'values', n);
      const kin = f32Input(rng, e, 'keys', kd, (len) => len % s.dim === 0 && len / s.dim === vd.length);
      const keys = kin.arg;
      // One wrong length at a time: keys and values both resized can fit each other again.
      const values = f32Input(rng, e, 'values', vd, (len) => len === n, kin.data.length !== kd.length ? 0 : 0.05).arg;
      const live = s.rows.size;
      if (s.capacity > 0 && live + n > s.capacity) e.bad('RangeError', `capacity ${s.capacity} with ${live} live + ${n}`);
      let ids: number[] = [];
      let idArg: unknown;
      if (withIds) {
        const start = rng.weighted([
          [6, s.nextId + rng.int(3)],
          [1, s.nextId + rng.int(1000)],
          [1, INT32_MAX - n - rng.int(3)],
          [1, s.nextId - 1 - rng.int(3)],
          [0.5, -1 - rng.int(5)],
        ] as const);
        ids = Array.from({ length: n }, (_, i) => start + i * (1 + (rng.chance(0.2) ? rng.int(3) : 0)));
        if (n > 1 && rng.chance(0.08)) {
          const i = rng.range(1, n - 1);
          ids[i] = ids[i - 1] - rng.int(2); // a duplicate or a step back
        }
        ids = ids.map((x) => Math.max(-(2 ** 31), Math.min(INT32_MAX, x)));
        let prev = s.nextId - 1;
        let bad = '';
        for (const id of ids) {
          if (id < 0) bad = `negative id ${id}`;
          else if (id <= prev) bad ||= `ids not strictly increasing above ${prev}: ${id}`;
          prev = id;
        }
        if (n > 0 && ids[n - 1] === INT32_MAX) bad ||= 'id 2147483647 is reserved';
        if (bad) e.bad('RangeError', bad);
        idArg = idsInput(rng, e, 'ids', ids);
      } else if (n > 0 && s.nextId + n > INT32_MAX) {
        e.bad('RangeError', `id space exhausted: next id ${s.nextId} + ${n}`);
      }
      const args = withIds ? [idArg, keys, values] : [keys, values];
      return {
        desc: `${s.name}.${withIds ? 'addWithIds' : 'add'}(${args.map((a) => lit(a)).join(', ')})`,
        expect: e,
        run: () => (withIds ? s.ix.addWithIds(idArg as Int32Array, keys as Float32Array, values as Float32Array) : s.ix.add(keys as Float32Array, values as Float32Array)),
        onOk: (res) => {
          let newIds: number[];
          if (withIds) {
            if (res !== undefined) return `addWithIds returned ${lit(res)}, expected undefined`;
            newIds = ids;
          } else {
            if (!(res instanceof Int32Array) || res.length !== n) return `add returned ${lit(res)}, expected an Int32Array of ${n} ids`;
            newIds = Array.from({ length: n }, (_, i) => s.nextId + i);
            if (newIds.some((id, i) => res[i] !== id)) return `add returned ids ${lit(res)}, expected ${lit(newIds)}`;
          }
          newIds.forEach((id, i) => s.rows.set(id, { id, key: Float32Array.from(kd.slice(i * s.dim, (i + 1) * s.dim)), value: Math.fround(vd[i]) }));
          if (n > 0) s.nextId = newIds[n - 1] + 1;
          return undefined;
        },
        check: () => checkSlot(s),
        discard: () => dropSlot(ctx, s),
      };
    },
  };
}

// A fresh index whose rows come from a float32 key file (mapKeys). The file is unlinked at once:
// the mapping keeps it, and the slot then goes through every other entry (adds after the
// mapped rows, growth past the reservation, searches against the model, removes, compact).
let mapFileCounter = 0;
const mapKeysEntry: Entry = {
  name: 'MemoryIndex.mapKeys',
  requires: ['new MemoryIndex'],
  area: 'lib/retrieval',
  weight: 3,
  make(ctx) {
    const rng = ctx.rng;
    const e = new Expect();
    const dim = rng.pick([1, 2, 3, 8, 33]);
    const n = rng.weighted([[1, 0], [4, rng.range(1, 30)], [2, rng.range(200, 3000)]] as const);
    const keys = new Float32Array(n * dim).map(() => Math.fround(rng.normal() * rng.pick([1, 0.01, 100])));
    const vd = valueData(rng, e, 'values', n);
    let fileBytes = Buffer.from(keys.buffer);
    if (rng.chance(0.06)) {
      const cut = rng.chance(0.5) && n > 0 ? fileBytes.length - rng.pick([1, 4, dim * 4]) : fileBytes.length + rng.pick([1, 4]);
      fileBytes = Buffer.concat([fileBytes, Buffer.alloc(8)]).subarray(0, Math.max(0, cut));
      e.bad('RangeError', `the file has ${fileBytes.length} bytes, not ${n} × ${dim} × 4`);
    }
    let ids = Array.from({ length: n }, (_, i) => i * (1 + rng.int(2)));
    for (let i = 1; i < n; i++) ids[i] = Math.max(ids[i], ids[i - 1] + 1);
    if (n > 1 && rng.chance(0.05)) {
      const i = rng.range(1, n - 1);
      ids[i] = ids[i - 1];
      e.bad('RangeError', 'ids not strictly increasing');
    }
    if (n > 0 && rng.chance(0.03)) {
      ids = ids.map((x) => x - ids[n - 1] - 1);
      e.bad('RangeError', 'negative ids');
    }
    const idArg = idsInput(rng, e, 'ids', ids);
    const values = f32Input(rng, e, 'values', vd, (len) => len === n).arg;
    const target = path.join(ctx.tmp, `mapkeys-${++mapFileCounter}.f32`);
    let file: unknown = target;
    if (rng.chance(0.04)) {
      file = rng.pick<unknown>([42, null, '', path.join(ctx.tmp, 'missing.f32'), ctx.tmp]);
      if (typeof file !== 'string' || file === '') e.bad('TypeError', `file ${lit(file)}`);
      else e.bad(['RangeError', 'TypeError'], `file ${lit(file)} is not a key file`);
    }
    const name = `ix${++slotCounter}`;
    const ke = new Expect();
    const { opts, model } = kernelOptions(rng, ke);
    if (!model || !ke.ok || ke.text() !== 'success') return undefined;  // the constructor's entry fuzzes bad kernels
    let ix: MemoryIndex;
    try {
      ix = new MemoryIndex({ dim, ...opts, backend: 'cpu' } as never);
    } catch {
      return undefined;
    }
    return {
      desc: `const ${name} = new MemoryIndex(${lit({ dim, ...opts })}); ${name}.mapKeys(<${n} x ${dim} keys in a file of ${fileBytes.length} bytes>, ${lit(idArg)}, ${lit(values)})`,
      expect: e,
      run: () => {
        fs.writeFileSync(target, fileBytes);
        try {
          return ix.mapKeys(file as string, idArg as Int32Array, values as Float32Array);
        } finally {
          fs.rmSync(target, { force: true });
        }
      },
      onOk: (res) => {
        if (res !== undefined) return `mapKeys returned ${lit(res)}`;
        const slot: IndexSlot = { ix, dim, kernel: model, capacity: 0, nextId: n > 0 ? ids[n - 1] + 1 : 0, rows: new Map(), name };
        ids.forEach((id, i) => slot.rows.set(id, { id, key: keys.slice(i * dim, (i + 1) * dim), value: Math.fround(vd[i]) }));
        const st = ix.stats();
        if (st.mappedRows !== n) return `stats().mappedRows ${st.mappedRows}, expected ${n}`;
        const p = pool(ctx);
        if (p.length >= 3) p.splice(rng.int(p.length), 1);
        p.push(slot);
        return checkSlot(slot);
      },
      unchanged: () => (ix.size === 0 && ix.stats().mappedRows === 0 ? undefined : `a refused mapKeys left ${ix.size} rows`),
    };
  },
};

/** Ids for updateValues / remove / getKeys: live ones, with unknown ids and repeats mixed in. */
function pickIds(rng: FuzzRng, s: IndexSlot): { ids: number[]; unknown: boolean; repeat: boolean } {
  const live = [...s.rows.keys()];
  const n = rng.weighted([[1, 0], [5, rng.range(1, 3)], [2, rng.range(1, Math.max(1, live.length))]] as const);
  const ids: number[] = [];
  for (let i = 0; i < n; i++) {
    if (live.length && !rng.chance(0.08)) ids.push(rng.pick(live));
    else ids.push(Math.min(INT32_MAX, rng.pick([s.nextId, s.nextId + 5, -1, INT32_MAX, -(2 ** 31), 0])));
  }
  const liveSet = new Set(live);
  return { ids, unknown: ids.some((id) => !liveSet.has(id)), repeat: new Set(ids).size !== ids.length };
}

const updateEntry: Entry = {
  name: 'MemoryIndex.updateValues',
  requires: ['new MemoryIndex', 'MemoryIndex.add'],
  area: 'lib/retrieval',
  weight: 5,
  make(ctx) {
    const s = anySlot(ctx);
    if (!s) return undefined;
    const rng = ctx.rng;
    const e = new Expect();
    const { ids, unknown, repeat } = pickIds(rng, s);
    if (unknown) e.bad('RangeError', 'unknown id');
    if (repeat) e.maybe('RangeError', 'repeated id (last wins, or refused)');
    const vd = valueData(rng, e, 'values', ids.length);
    const idArg = idsInput(rng, e, 'ids', ids);
    const values = f32Input(rng, e, 'values', vd, (len) => len === ids.length).arg;
    return {
      desc: `${s.name}.updateValues(${lit(idArg)}, ${lit(values)})`,
      expect: e,
      run: () => s.ix.updateValues(idArg as Int32Array, values as Float32Array),
      onOk: () => {
        ids.forEach((id, i) => (s.rows.get(id)!.value = Math.fround(vd[i])));
        return undefined;
      },
      check: () => checkSlot(s),
      discard: () => dropSlot(ctx, s),
    };
  },
};

const removeEntry: Entry = {
  name: 'MemoryIndex.remove',
  requires: ['new MemoryIndex', 'MemoryIndex.add'],
  area: 'lib/retrieval',
  weight: 5,
  make(ctx) {
    const s = anySlot(ctx);
    if (!s) return undefined;
    const rng = ctx.rng;
    const e = new Expect();
    const { ids, unknown, repeat } = pickIds(rng, s);
    if (unknown) e.bad('RangeError', 'unknown id');
    if (repeat) e.bad('RangeError', 'repeated id');
    const idArg = idsInput(rng, e, 'ids', ids);
    return {
      desc: `${s.name}.remove(${lit(idArg)})`,
      expect: e,
      run: () => s.ix.remove(idArg as Int32Array),
      onOk: () => {
        for (const id of ids) s.rows.delete(id);
        return undefined;
      },
      check: () => checkSlot(s),
      discard: () => dropSlot(ctx, s),
    };
  },
};

const getEntry: Entry = {
  name: 'MemoryIndex.getKeys/getValues/has',
  requires: ['new MemoryIndex', 'MemoryIndex.add'],
  area: 'lib/retrieval',
  weight: 4,
  make(ctx) {
    const s = anySlot(ctx);
    if (!s) return undefined;
    const rng = ctx.rng;
    const e = new Expect();
    const which = rng.pick(['getKeys', 'getValues', 'has'] as const);
    if (which === 'has') {
      const id = intArg(rng, e, 'id', () => (s.rows.size && rng.chance(0.7) ? rng.pick([...s.rows.keys()]) : rng.pick([s.nextId, -1, INT32_MAX])), -(2 ** 31), INT32_MAX, 0.1);
      return {
        desc: `${s.name}.has(${lit(id)})`,
        expect: e,
        run: () => s.ix.has(id as number),
        onOk: (res) => (res === s.rows.has(id as number) ? undefined : `has(${id}) is ${res}, model ${s.rows.has(id as number)}`),
        check: () => checkSlot(s),
        discard: () => dropSlot(ctx, s),
      };
    }
    const { ids, unknown } = pickIds(rng, s);
    if (unknown) e.bad('RangeError', 'unknown id');
    const idArg = idsInput(rng, e, 'ids', ids);
    return {
      desc: `${s.name}.${which}(${lit(idArg)})`,
      expect: e,
      run: () => s.ix[which](idArg as Int32Array),
      onOk: (res) => {
        const want: number[] = [];
        for (const id of ids) {
          const r = s.rows.get(id)!;
          if (which === 'getKeys') want.push(...r.key);
          else want.push(r.value);
        }
        if (!(res instanceof Float32Array) || res.length !== want.length) return `${which} returned ${lit(res)}, expected ${want.length} floats`;
        for (let i = 0; i < want.length; i++) if (res[i] !== want[i]) return `${which}[${i}] is ${res[i]}, model ${want[i]}`;
        return undefined;
      },
      check: () => checkSlot(s),
      discard: () => dropSlot(ctx, s),
    };
  },
};

const setKernelEntry: Entry = {
  name: 'MemoryIndex.setKernel',
  requires: ['new MemoryIndex', 'MemoryIndex.add'],
  area: 'lib/retrieval',
  weight: 3,
  make(ctx) {
    const s = anySlot(ctx);
    if (!s) return undefined;
    const rng = ctx.rng;
    const e = new Expect();
    let opts: unknown;
    let model: KernelModel | undefined;
    if (rng.chance(0.04)) {
      opts = rng.pick<unknown>([null, undefined, 5, 'gaussian']);
      e.bad('TypeError', `options ${lit(opts)}`);
    } else ({ opts, model } = kernelOptions(rng, e));
    return {
      desc: `${s.name}.setKernel(${lit(opts)})`,
      expect: e,
      run: () => s.ix.setKernel(opts as never),
      onOk: () => {
        if (!model) return 'accepted kernel options the model cannot describe';
        s.kernel = model;
        return undefined;
      },
      check: () => checkSlot(s),
      discard: () => dropSlot(ctx, s),
    };
  },
};

const maintenanceEntry: Entry = {
  name: 'MemoryIndex.compact/clear',
  requires: ['new MemoryIndex', 'MemoryIndex.add'],
  area: 'lib/retrieval',
  weight: 2,
  make(ctx) {
    const s = anySlot(ctx);
    if (!s) return undefined;
    const clear = ctx.rng.chance(0.3);
    return {
      desc: `${s.name}.${clear ? 'clear' : 'compact'}()`,
      expect: new Expect(),
      run: () => (clear ? s.ix.clear() : s.ix.compact()),
      onOk: () => {
        if (clear) s.rows.clear();
        return undefined;
      },
      check: () => checkSlot(s),
      discard: () => dropSlot(ctx, s),
    };
  },
};

function searchEntry(estimate: boolean, sync: boolean): Entry {
  return {
    name: `MemoryIndex.${estimate ? 'estimate' : 'search'}${sync ? 'Sync' : ''}`,
    requires: ['new MemoryIndex', 'MemoryIndex.add'],
    area: 'lib/retrieval',
    weight: 7,
    make: (ctx) => searchCall(ctx, estimate, sync),
  };
}

/** One async call of the overlap scenario, with its expected result fixed when it was issued. */
interface InFlight {
  label: string;
  p: Promise<unknown>;
  verify: (r: unknown) => string | undefined;
  /** The input array, which a later step may detach or shrink while the call runs. */
  input: Float32Array;
  tampered: boolean;
}

const gc = () => (globalThis as { gc?: () => void }).gc?.();

/**
 * Overlapping async calls: several searches/estimates/klImproveAsync in flight while the index
 * is written (add, updateValues, remove, setKernel, clear, compact), their input buffers are
 * detached or shrunk, and the GC runs. Each must give the result of the index as it was when it
 * was called (a call whose input was tampered with may instead reject with a TypeError).
 */
const overlapEntry: Entry = {
  name: 'overlapping async calls',
  requires: ['new MemoryIndex', 'MemoryIndex.add'],
  area: 'native/addon',
  weight: 5,
  make(ctx) {
    const s = anySlot(ctx);
    if (!s) return undefined;
    const rng = ctx.rng;
    const script: string[] = [];
    const steps: (() => void)[] = [];
    const pending: InFlight[] = [];
    const nOps = rng.range(2, 7);
    for (let k = 0; k < nOps; k++) {
      const label = `p${k}`;
      const kind = rng.weighted([[4, 'search'], [3, 'estimate'], [1, 'kl'], [3, 'write'], [1, 'tamper']] as const);
      if (kind === 'search' || kind === 'estimate') {
        const estimate = kind === 'estimate';
        const b = rng.range(1, 3);
        const m = rng.range(1, s.rows.size + 2);
        const qdata = rowData(rng, new Expect(), 'queries', b, s.dim, 0);
        const kind2 = rng.chance(0.15) ? 'resizable' : 'plain';
        const vw = estimate ? rng.pick([0, 0.5]) : 0;
        const vv = estimate ? rng.pick([0, -1, 2]) : 0;
        steps.push(() => {
          // The expectation is the index as it is now (rows copied: later writes change the model).
          const rows = liveRows(s);
          const kern = { ...s.kernel };
          const qcopy = Float32Array.from(qdata);
          const input = f32(qdata, kind2);
          const p = estimate ? s.ix.estimate(input, m, { voidWeight: vw, voidValue: vv }) : s.ix.search(input, m);
          const verify = (r: unknown) =>
            estimate ? checkEstimate(kern, rows, s.dim, qcopy, m, vw, vv, r as EstimateResult) : checkSearch(kern, rows, s.dim, qcopy, m, r as SearchResult);
          pending.push({ label, p, verify, input, tampered: false });
        });
        const q = `${kind2 === 'resizable' ? 'resizable(' : ''}f32(${qdata.length} floats)${kind2 === 'resizable' ? ')' : ''}`;
        script.push(`const ${label} = ${s.name}.${estimate ? `estimate(${q}, ${m}, { voidWeight: ${vw}, voidValue: ${vv} })` : `search(${q}, ${m})`}`);
      } else if (kind === 'kl') {
        const rows = rng.range(1, 3);
        const cols = rng.range(1, 4);
        const lp = Array.from({ length: rows * cols }, () => (rng.chance(0.2) ? -Infinity : Math.log(rng.next() + 1e-3)));
        const qv = Array.from({ length: rows * cols }, () => rng.normal());
        const alpha = rng.pick([0, 0.1, 1]);
        steps.push(() => {
          const input = Float32Array.from(lp);
          const p = klImproveAsync({ logPrior: input, q: Float32Array.from(qv), rows, cols, alpha });
          const verify = (r: unknown) => checkKl(Float32Array.from(lp), Float32Array.from(qv), rows, cols, alpha, undefined, r as never);
          pending.push({ label, p, verify, input, tampered: false });
        });
        script.push(`const ${label} = klImproveAsync({ rows: ${rows}, cols: ${cols}, alpha: ${alpha}, … })`);
      } else if (kind === 'write') {
        const w = rng.pick(['add', 'update', 'remove', 'setKernel', 'clear', 'compact'] as const);
        const seed = rng.seed();
        steps.push(() => writeStep(new FuzzRng(seed), s, w));
        script.push(`${s.name}.${w}(…)`);
      } else {
        const t = rng.pick(['detach', 'shrink', 'gc'] as const);
        const which = rng.next();
        steps.push(() => {
          const target = pending.length ? pending[Math.floor(which * pending.length)] : undefined;
          const buf = target?.input.buffer as (ArrayBuffer & { resizable?: boolean; resize?(n: number): void }) | undefined;
          if (target && buf && t === 'detach' && !buf.resizable) {
            detach(target.input);
            target.tampered = true;
          } else if (target && buf && t === 'shrink' && buf.resizable) {
            buf.resize!(0);
            target.tampered = true;
          }
          gc();
        });
        script.push(`${t === 'gc' ? '' : `${t} the input of an in-flight call; `}gc()`);
      }
    }
    return {
      desc: script.join('; '),
      expect: new Expect(),
      run: async () => {
        for (const st of steps) st();
        const settled = await Promise.allSettled(pending.map((x) => x.p));
        return settled.map((r, i) => ({ r, x: pending[i] }));
      },
      onOk: (res) => {
        for (const { r, x } of res as { r: PromiseSettledResult<unknown>; x: InFlight }[]) {
          if (r.status === 'rejected') {
            if (x.tampered && r.reason instanceof TypeError) continue;
            return `${x.label} rejected: ${r.reason instanceof Error ? `${r.reason.constructor.name}: ${r.reason.message}` : String(r.reason)}`;
          }
          const w = x.verify(r.value);
          if (w) return `${x.label}${x.tampered ? ' (input detached/shrunk in flight)' : ''}: ${w}`;
        }
        return undefined;
      },
      check: () => checkSlot(s),
      discard: () => dropSlot(ctx, s),
    };
  },
};

/** A valid write applied to the index and its model (used inside the overlap scenario). */
function writeStep(rng: FuzzRng, s: IndexSlot, w: 'add' | 'update' | 'remove' | 'setKernel' | 'clear' | 'compact'): void {
  const live = [...s.rows.keys()];
  if (w === 'add') {
    const n = rng.range(1, 3);
    if ((s.capacity > 0 && s.rows.size + n > s.capacity) || s.nextId + n > INT32_MAX) return;
    const e = new Expect();
    const kd = rowData(rng, e, 'keys', n, s.dim, 0);
    const vd = Array.from({ length: n }, () => niceFloat(rng));
    const ids = s.ix.add(Float32Array.from(kd), Float32Array.from(vd));
    ids.forEach((id, i) => s.rows.set(id, { id, key: Float32Array.from(kd.slice(i * s.dim, (i + 1) * s.dim)), value: Math.fround(vd[i]) }));
    if (n) s.nextId = ids[n - 1] + 1;
  } else if (w === 'update' && live.length) {
    const id = rng.pick(live);
    const v = niceFloat(rng);
    s.ix.updateValues(Int32Array.of(id), Float32Array.of(v));
    s.rows.get(id)!.value = Math.fround(v);
  } else if (w === 'remove' && live.length) {
    const id = rng.pick(live);
    s.ix.remove(Int32Array.of(id));
    s.rows.delete(id);
  } else if (w === 'setKernel') {
    const kernel = rng.pick<KernelName>(['gaussian', 'cosine', 'inverse']);
    const param = kernel === 'cosine' ? rng.pick([1, 5]) : kernel === 'gaussian' ? rng.pick([0.5, 2]) : 0.01;
    s.ix.setKernel({ kernel, [PARAM_NAME[kernel]]: param } as never);
    s.kernel = { kernel, param };
  } else if (w === 'clear') {
    s.ix.clear();
    s.rows.clear();
  } else if (w === 'compact') {
    s.ix.compact();
  }
}

const klEntry: Entry = {
  name: 'klImprove',
  area: 'lib/retrieval',
  weight: 8,
  make(ctx) {
    const rng = ctx.rng;
    const e = new Expect();
    const async = rng.chance(0.4);
    if (rng.chance(0.02)) {
      const v = rng.pick<unknown>([null, undefined, 5, []]);
      e.bad('TypeError', `input ${lit(v)}`);
      return { desc: `klImprove${async ? 'Async' : ''}(${lit(v)})`, expect: e, run: () => (async ? klImproveAsync(v as never) : klImprove(v as never)) };
    }
    let rows = rng.range(0, 6);
    let cols = rng.range(0, 8);
    if (rng.chance(0.02)) {
      rows = rng.pick([2 ** 40, 2 ** 33, 1e12]);
      cols = 0;
      e.bad(['RangeError', 'Error'], `rows ${rows}: the value output cannot be allocated`);
    }
    const n = rows * cols;
    const extreme = rng.chance(0.08);
    const lp = Array.from({ length: n }, () => (rng.chance(0.2) ? -Infinity : rng.chance(0.1) ? rng.pick([-1e30, -3e38, 0]) : Math.log(rng.next() + 1e-4)));
    const qv = Array.from({ length: n }, () => (extreme ? rng.pick([3e38, -3e38, 1e20, 0]) : rng.normal() * rng.pick([1, 10, 1000])));
    if (n > 0 && rng.chance(0.05)) {
      const v = rng.pick([NaN, Infinity]);
      lp[rng.int(n)] = v;
      e.bad('RangeError', `logPrior holds ${v}`);
    }
    if (n > 0 && rng.chance(0.05)) {
      const v = rng.pick([NaN, Infinity, -Infinity]);
      qv[rng.int(n)] = v;
      e.bad('RangeError', `q holds ${v}`);
    }
    let alpha: unknown = extreme ? rng.pick([1e-30, 1e-45, 1e-6]) : rng.pick([0, 0.01, 0.5, 1, 30, 1e7]);
    if (rng.chance(0.06)) {
      alpha = rng.pick([-1, NaN, Infinity, -Infinity]);
      e.bad('RangeError', `alpha ${alpha}`);
    } else if (rng.chance(0.03)) {
      alpha = notNumber(rng);
      e.bad('TypeError', `alpha ${lit(alpha)}`);
    }
    const rowsArg = intArg(rng, e, 'rows', () => rows, 0, Number.MAX_SAFE_INTEGER, 0.04);
    const colsArg = intArg(rng, e, 'cols', () => cols, 0, Number.MAX_SAFE_INTEGER, 0.04);
    if (rowsArg !== rows || colsArg !== cols) {
      if (typeof rowsArg === 'number' && typeof colsArg === 'number' && Number.isInteger(rowsArg) && Number.isInteger(colsArg) && rowsArg >= 0 && colsArg >= 0) {
        e.shape('rows*cols does not match the arrays');
      }
    }
    let rl: number[] | undefined;
    let rlArg: unknown;
    if (rows <= 1000 && rng.chance(0.35)) {
      rl = Array.from({ length: rows }, () => rng.range(0, cols));
      if (rows > 0 && rng.chance(0.08)) {
        rl[rng.int(rows)] = rng.pick([-1, cols + 1, INT32_MAX]);
        e.bad('RangeError', 'rowLengths entry outside [0, cols]');
      }
      if (rng.chance(0.05)) {
        rl.push(0);
        e.shape('rowLengths.length != rows');
      }
      rlArg = idsInput(rng, e, 'rowLengths', rl, 0.04);
    }
    const lpArg = f32Input(rng, e, 'logPrior', lp, (len) => len === n, 0.03).arg;
    const qArg = f32Input(rng, e, 'q', qv, (len) => len === n, 0.03).arg;
    const input: Record<string, unknown> = { logPrior: lpArg, q: qArg, rows: rowsArg, cols: colsArg, alpha };
    if (rlArg !== undefined) input.rowLengths = rlArg;
    const lpc = Float32Array.from(lp);
    const qc = Float32Array.from(qv);
    return {
      desc: `klImprove${async ? 'Async' : ''}(${lit(input)})`,
      expect: e,
      run: () => (async ? klImproveAsync(input as never) : klImprove(input as never)),
      onOk: (res) => checkKl(lpc, qc, rows, cols, alpha as number, rl, res as never),
    };
  },
};

export const retrievalEntries: Entry[] = [
  constructorEntry,
  addEntry(false),
  addEntry(true),
  mapKeysEntry,
  updateEntry,
  removeEntry,
  getEntry,
  setKernelEntry,
  maintenanceEntry,
  searchEntry(false, false),
  searchEntry(false, true),
  searchEntry(true, false),
  searchEntry(true, true),
  overlapEntry,
  klEntry,
];
