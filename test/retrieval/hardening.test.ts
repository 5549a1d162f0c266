/**
 * "No input takes the host process down" (issue #11), native side: size limits checked before
 * allocating, allocation failures as Errors (never an abort), keys that would disable the
 * index refused, kernel parameters bounded so kernels never overflow, aliased and detached
 * buffers refused, and one error class per kind of error from both the TS layer and the C++
 * addon (called directly through loadNative()).
 */
import { spawnSync } from 'child_process';
import { describe, expect, it } from 'vitest';
import { LIMITS, MemoryIndex, backendInfo, klImprove, klImproveAsync } from '../../lib/index';
import { loadNative, nativePath } from '../../lib/native';
import { TestRng, testSeed } from '../helpers/rng';
import { refKernelWeightedValue, refRanked, type RefKernel } from './reference';
import { thrown } from '../helpers/errors';

const seed = testSeed();

function expectErr(fn: () => unknown, cls: ErrorConstructor | TypeErrorConstructor | RangeErrorConstructor, msg: RegExp) {
  const e = thrown(fn);
  expect(e, `${msg}: ${e.message}`).toBeInstanceOf(cls);
  if (cls === Error) {
    expect(e).not.toBeInstanceOf(TypeError);
    expect(e).not.toBeInstanceOf(RangeError);
  }
  expect(e.message).toMatch(msg);
}

function detach<T extends ArrayBufferView>(a: T): T {
  structuredClone(a, { transfer: [a.buffer as ArrayBuffer] });
  return a;
}

function native4(kernel = 0, param = 1) {
  const N = loadNative().NativeMemoryIndex;
  const ix = new N(4, kernel, param, 0, 'cpu');
  ix.add(Float32Array.from([1, 0, 0, 0, 0, 1, 0, 0]), Float32Array.from([1, 2]));
  return ix;
}

function index4(opts: object = {}) {
  const ix = new MemoryIndex({ dim: 4, backend: 'cpu', ...opts } as never);
  ix.add(Float32Array.from([1, 0, 0, 0, 0, 1, 0, 0]), Float32Array.from([1, 2]));
  return ix;
}

function contents(ix: MemoryIndex) {
  const ids = ix.ids();
  return { ids: Array.from(ids), keys: Array.from(ix.getKeys(ids)), values: Array.from(ix.getValues(ids)) };
}

describe('limits: sizes from the caller are checked before anything is allocated', () => {
  it('the TS LIMITS are the native limits.h', () => {
    const lim = loadNative().backendInfo().limits!;
    expect(lim.maxResultElements).toBe(LIMITS.maxResultElements);
    expect(lim.maxM).toBe(LIMITS.maxM);
    expect(lim.maxKappa).toBe(LIMITS.maxKappa);
    expect(lim.minDelta).toBe(LIMITS.minDelta);
    expect(LIMITS.maxResultElements).toBe(2 ** 28);
  });

  it('search/estimate with b*m over 2^28: a RangeError naming b*m and the limit (was: abort)', async () => {
    const ix = index4();
    const q200 = new Float32Array(4 * 200);
    expectErr(() => ix.searchSync(q200, 1 << 24), RangeError, /b\*m = 200\*16777216 = 3355443200 .*limit of 2\^28/);
    expectErr(() => ix.estimateSync(q200, 1 << 24), RangeError, /b\*m = 200\*16777216/);
    await expect(ix.search(new Float32Array(4 * 1000), 1 << 24)).rejects.toThrow(RangeError);
    await expect(ix.estimate(q200, 1 << 24)).rejects.toThrow(/limit of 2\^28/);
    // The addon itself (C++ users of the N-API class get the same refusal).
    const n = native4();
    expectErr(() => n.searchSync(q200, 1 << 24), RangeError, /MemoryIndex\.searchSync: b\*m = 200\*16777216 .*2\^28/);
    expectErr(() => n.estimateSync(q200, 1 << 24, 0, 0), RangeError, /MemoryIndex\.estimateSync: b\*m/);
    expectErr(() => n.search(new Float32Array(4 * 1000), 1 << 24), RangeError, /b\*m = 1000\*16777216/);
    expectErr(() => n.estimate(q200, 1 << 24, 0, 0), RangeError, /b\*m/);
    // At the limit's edge a search still runs: 1 query, m = 2^24 (2 live cases, the rest empty).
    const r = ix.searchSync(new Float32Array([1, 0, 0, 0]), 1 << 24);
    expect(r.ids.length).toBe(1 << 24);
    expect([r.ids[0], r.ids[1], r.ids[2]]).toEqual([0, 1, -1]);
  });

  it('klImprove: rows and rows*cols over 2^28 are RangeErrors (was: SIGABRT, or 8.4 GB for 30 s)', async () => {
    const e0 = new Float32Array(0);
    expectErr(() => klImprove({ logPrior: e0, q: e0, rows: 2 ** 40, cols: 0, alpha: 1 }), RangeError, /rows must be an integer in \[0, 268435456\]/);
    expectErr(() => klImprove({ logPrior: e0, q: e0, rows: 2 ** 31, cols: 0, alpha: 1 }), RangeError, /rows/);
    expectErr(() => klImprove({ logPrior: e0, q: e0, rows: 2 ** 20, cols: 2 ** 20, alpha: 1 }), RangeError, /rows\*cols = 1048576\*1048576 .*2\^28/);
    await expect(klImproveAsync({ logPrior: e0, q: e0, rows: 2 ** 40, cols: 0, alpha: 1 })).rejects.toThrow(RangeError);
    const n = loadNative();
    expectErr(() => n.klImprove(e0, e0, 2 ** 40, 0, 1), RangeError, /rows must be in \[0, 268435456\]/);
    expectErr(() => n.klImprove(e0, e0, 2 ** 31, 0, 1), RangeError, /rows must be in/);
    expectErr(() => n.klImprove(e0, e0, 2 ** 20, 2 ** 20, 1), RangeError, /klImprove: rows\*cols = 1048576\*1048576/);
    expectErr(() => n.klImproveAsync(e0, e0, 2 ** 20, 2 ** 20, 1), RangeError, /klImproveAsync: rows\*cols/);
  });

  it('getKeys: ids.length*dim over 2^28 is a RangeError', () => {
    const ix = new MemoryIndex({ dim: 1 << 20, backend: 'cpu' });
    ix.add(new Float32Array(1 << 20), new Float32Array(1));
    const ids = new Int32Array(257); // 257 * 2^20 > 2^28
    expectErr(() => ix.getKeys(ids), RangeError, /ids\.length\*dim = 257\*1048576/);
    expect(ix.getKeys(new Int32Array(2)).length).toBe(2 << 20);
  });

});

describe('keys whose squared norm overflows float32 are refused at add (was: the index disabled)', () => {
  it('add / addWithIds: a RangeError naming the row, the index unchanged and still searchable', () => {
    const ix = index4();
    const before = contents(ix);
    const bad = Float32Array.from([0, 0, 1, 0, 3e38, 0, 0, 0]);
    expectErr(() => ix.add(bad, Float32Array.from([9, 9])), RangeError, /^MemoryIndex\.add: keys: the squared norm of row 1 is over the limit of 2\^125 \(about 4\.25e37\), so that distances stay finite in float32$/);
    expectErr(() => ix.addWithIds([10, 11], bad, Float32Array.from([9, 9])), RangeError, /squared norm of row 1/);
    // Elementwise finite, norm^2 = 2 * (1.5e19)^2 = 4.5e38 > FLT_MAX: refused too.
    expectErr(() => ix.add(Float32Array.from([1.5e19, 1.5e19, 0, 0]), Float32Array.of(1)), RangeError, /row 0/);
    expect(contents(ix)).toEqual(before);
    expect(Array.from(ix.searchSync(Float32Array.from([1, 0, 0, 0]), 2).ids)).toEqual([0, 1]);
    // The C++ store refuses them as well (the same class and words).
    const n = native4();
    expectErr(() => n.add(bad, Float32Array.from([9, 9])), RangeError, /MemoryIndex\.add: keys: the squared norm of row 1 is over the limit of 2\^125 \(about 4\.25e37\), so that distances stay finite in float32/);
    expectErr(() => n.addWithIds(Int32Array.of(10, 11), bad, Float32Array.from([9, 9])), RangeError, /row 1 is over the limit of 2\^125/);
    expect(n.stats().size).toBe(2);
    expect(Array.from(n.searchSync(Float32Array.from([0, 1, 0, 0]), 1).ids)).toEqual([1]);
    // Finite norms near FLT_MAX would give dist2 = +Infinity (the empty-slot marker) in a filled
    // slot: the limit is ||k||^2 <= 2^125, so 7e18 (4.9e37) is refused and 6e18 (3.6e37) accepted.
    expectErr(() => ix.add(Float32Array.from([7e18, 0, 0, 0]), Float32Array.of(5)), RangeError, /row 0 is over the limit of 2\^125/);
    ix.add(Float32Array.from([6e18, 0, 0, 0]), Float32Array.of(5));
    const est = ix.estimateSync(Float32Array.from([0, 1, 0, 0]), 3);
    expect(Number.isFinite(est.value[0])).toBe(true);
  });

  it('the farthest allowed key and query: a filled slot with a finite dist2 equal to float64 (fuzz F2)', () => {
    const ix = new MemoryIndex({ dim: 2, backend: 'cpu' });
    ix.add(Float32Array.of(6e18, 0), Float32Array.of(1));
    const q = Float32Array.of(-6e18, 0);
    const r = ix.searchSync(q, 1);
    expect(r.ids[0]).toBe(0);
    expect(Number.isFinite(r.dist2[0])).toBe(true);
    expect(Math.abs(r.dist2[0] / (Math.fround(6e18) * 2) ** 2 - 1)).toBeLessThan(1e-6);
    // 1.3e19 (|k|^2 = 1.69e38 < FLT_MAX) was accepted before and then gave dist2 = Infinity.
    expectErr(() => ix.add(Float32Array.of(1.3e19, 0), Float32Array.of(1)), RangeError, /over the limit of 2\^125/);
    expectErr(() => ix.searchSync(Float32Array.of(-1.3e19, 0), 1), RangeError, /queries: the squared norm of row 0 is over the limit/);
    expectErr(() => native4().searchSync(Float32Array.of(-1.3e19, 0, 0, 0), 1), RangeError, /queries: the squared norm of row 0 is over the limit of 2\^125/);
  });

  it('queries whose squared norm overflows float32: a RangeError from both layers', () => {
    const ix = index4();
    const q = Float32Array.from([3e38, 0, 0, 0]);
    expectErr(() => ix.searchSync(q, 1), RangeError, /queries: the squared norm of row 0 is over the limit of 2\^125/);
    expectErr(() => native4().searchSync(q, 1), RangeError, /queries: the squared norm of row 0 is over the limit of 2\^125/);
  });
});

describe('kernel parameters: every accepted value evaluates without overflow', () => {
  it('cosine kappa in (0, 88], inverse delta >= 1e-30; beyond: a RangeError stating the bound', () => {
    expectErr(() => new MemoryIndex({ dim: 4, kernel: 'cosine', kappa: 100 }), RangeError, /kappa must be in \(0, 88\].*got 100/);
    expectErr(() => new MemoryIndex({ dim: 4, kernel: 'cosine', kappa: 89 }), RangeError, /kappa must be in \(0, 88\]/);
    expectErr(() => new MemoryIndex({ dim: 4, kernel: 'inverse', delta: 1e-40 }), RangeError, /delta must be a finite number >= 1e-30.*got 1e-40/);
    const ix = index4();
    expectErr(() => ix.setKernel({ kernel: 'cosine', kappa: 88.5 }), RangeError, /kappa/);
    expect(ix.kernel).toEqual({ kernel: 'gaussian', bandwidth: 1 });
    const N = loadNative().NativeMemoryIndex;
    expectErr(() => new N(4, 1, 100, 0, 'cpu'), RangeError, /MemoryIndex: kappa must be in \(0, 88\]/);
    expectErr(() => new N(4, 2, 1e-40, 0, 'cpu'), RangeError, /MemoryIndex: delta must be a finite number >= 1e-30/);
    expectErr(() => native4().setKernel(1, 89), RangeError, /kappa/);
  });

  it('at the bounds (kappa = 88, delta = 1e-30) search and estimate are finite and match float64', () => {
    const rng = new TestRng(seed ^ 0x51);
    const d = 8, n = 50;
    const keys = rng.keys(n, d);
    // exact duplicates of two queries: cos = 1 (kernel exp(88)) and dist2 = 0 (kernel 1e30)
    const q = rng.keys(3, d);
    keys.set(q.subarray(0, d), 7 * d);
    keys.set(q.subarray(d, 2 * d), 19 * d);
    const values = new Float32Array(n).map(() => rng.normal());
    for (const p of [{ kernel: 'cosine', kappa: 88 }, { kernel: 'inverse', delta: 1e-30 }] as RefKernel[]) {
      const ix = new MemoryIndex({ dim: d, backend: 'cpu', ...p } as never);
      ix.add(keys, values);
      const m = 10;
      const r = ix.searchSync(q, m);
      const e = ix.estimateSync(q, m, { voidWeight: 0.5, voidValue: -1 });
      for (let i = 0; i < 3; i++) {
        const ref = refRanked(p, q, i, keys, n, d).slice(0, m);
        expect(Array.from(r.ids.subarray(i * m, (i + 1) * m))).toEqual(ref.map((h) => h.row));
        for (let s = 0; s < m; s++) {
          const k = r.kernel[i * m + s];
          expect(Number.isFinite(k)).toBe(true);
          expect(Math.abs(k - ref[s].kernel)).toBeLessThanOrEqual(1e-5 * ref[s].kernel + 1e-30);
        }
        const w = refKernelWeightedValue(ref.map((h) => h.kernel), ref.map((h) => values[h.row]), 0.5, -1);
        expect(Math.abs(e.value[i] - w.value)).toBeLessThanOrEqual(1e-5 * Math.abs(w.value) + 1e-6);
        expect(Math.abs(e.confidence[i] - w.confidence)).toBeLessThanOrEqual(1e-6);
      }
      expect(r.kernel[0]).toBeGreaterThan(p.kernel === 'cosine' ? 1e38 : 1e29);
    }
  });
});

describe('aliased or overlapping out buffers: a TypeError saying so (was: silent garbage)', () => {
  it('search out.kernel === out.dist2, overlapping views, out overlapping the queries', async () => {
    const ix = index4();
    const q = new Float32Array(8);
    const o = new Float32Array(4);
    expectErr(() => ix.searchSync(q, 2, { out: { kernel: o, dist2: o } }), TypeError, /out\.kernel and out\.dist2 share memory/);
    await expect(ix.search(q, 2, { out: { kernel: o, dist2: o } })).rejects.toThrow(TypeError);
    const buf = new ArrayBuffer(64);
    const k = new Float32Array(buf, 0, 4), d2 = new Float32Array(buf, 12, 4); // bytes 0-16 and 12-28
    expectErr(() => ix.searchSync(q, 2, { out: { kernel: k, dist2: d2 } }), TypeError, /share memory/);
    const ids = new Int32Array(buf, 0, 4);
    expectErr(() => ix.searchSync(q, 2, { out: { ids, dist2: new Float32Array(buf, 8, 4) } }), TypeError, /out\.ids and out\.dist2/);
    const qb = new Float32Array(16);
    expectErr(() => ix.searchSync(qb.subarray(0, 8), 2, { out: { kernel: qb.subarray(4, 8) } }), TypeError, /queries and out\.kernel share memory/);
    // Disjoint views of one buffer are fine, and the results are right.
    const all = new Float32Array(buf);
    const r = ix.searchSync(Float32Array.from([1, 0, 0, 0, 0, 1, 0, 0]), 2, { out: { kernel: all.subarray(0, 4), dist2: all.subarray(4, 8) } });
    expect(Array.from(r.dist2)).toEqual([0, 2, 0, 2]);
    expect(Array.from(all.subarray(4, 8))).toEqual([0, 2, 0, 2]);
    // The addon checks it too (direct calls).
    const n = native4();
    expectErr(() => n.searchSync(q, 2, { kernel: o, dist2: o }), TypeError, /MemoryIndex\.searchSync: out\.kernel and out\.dist2 share memory/);
    expectErr(() => n.search(qb.subarray(0, 8), 2, { dist2: qb.subarray(7, 11) }), TypeError, /queries and out\.dist2 share memory/);
  });

  it('estimate out.value === out.confidence', async () => {
    const ix = index4();
    const v = new Float32Array(2);
    expectErr(() => ix.estimateSync(new Float32Array(8), 2, { out: { value: v, confidence: v } }), TypeError, /out\.value and out\.confidence share memory/);
    await expect(ix.estimate(new Float32Array(8), 2, { out: { value: v, confidence: v } })).rejects.toThrow(/share memory/);
    expectErr(() => native4().estimateSync(new Float32Array(8), 2, 0, 0, { value: v, confidence: v }), TypeError, /out\.value and out\.confidence share memory/);
  });
});

describe('detached buffers: a TypeError "X is detached" (was: treated as empty)', () => {
  it('every typed-array argument, both layers; the index unchanged', async () => {
    const ix = index4();
    const before = contents(ix);
    expectErr(() => ix.searchSync(detach(new Float32Array(4)), 1), TypeError, /^queries is detached/);
    await expect(ix.search(detach(new Float32Array(4)), 1)).rejects.toThrow(/queries is detached/);
    await expect(ix.estimate(detach(new Float32Array(4)), 1)).rejects.toThrow(TypeError);
    expectErr(() => ix.remove(detach(Int32Array.of(0))), TypeError, /^ids is detached/);
    expectErr(() => ix.add(detach(new Float32Array(4)), Float32Array.of(1)), TypeError, /keys is detached/);
    expectErr(() => ix.updateValues(Int32Array.of(0), detach(Float32Array.of(1))), TypeError, /values is detached/);
    expectErr(() => ix.searchSync(new Float32Array(4), 1, { out: { kernel: detach(new Float32Array(1)) } }), TypeError, /out\.kernel is detached/);
    expectErr(() => klImprove({ logPrior: detach(new Float32Array(2)), q: new Float32Array(2), rows: 1, cols: 2, alpha: 1 }), TypeError, /logPrior is detached/);
    expect(contents(ix)).toEqual(before);
    // An empty (not detached) array is still an empty input.
    expect(ix.searchSync(new Float32Array(0), 1).ids.length).toBe(0);
    const n = native4();
    expectErr(() => n.remove(detach(Int32Array.of(0))), TypeError, /^ids is detached/);
    expectErr(() => n.search(detach(new Float32Array(4)), 1), TypeError, /^queries is detached/);
    expectErr(() => n.searchSync(new Float32Array(4), 1, { ids: detach(new Int32Array(1)) }), TypeError, /out\.ids is detached/);
    expectErr(() => loadNative().klImprove(new Float32Array(2), detach(new Float32Array(2)), 1, 2, 1), TypeError, /^q is detached/);
    expect(n.stats().size).toBe(2);
  });

  it('async calls copy their inputs: changing or transferring them after the call does not change the result', async () => {
    const rng = new TestRng(seed ^ 0x77);
    const d = 16;
    const ix = new MemoryIndex({ dim: d, backend: 'cpu' });
    ix.add(rng.keys(3000, d), new Float32Array(3000).map(() => rng.normal()));
    const q = rng.keys(8, d);
    const expected = ix.searchSync(q, 5);
    const q1 = q.slice();
    const p1 = ix.search(q1, 5);
    q1.fill(0);
    const q2 = q.slice();
    const p2 = ix.search(q2, 5);
    detach(q2);
    for (const r of [await p1, await p2]) {
      expect(Array.from(r.ids)).toEqual(Array.from(expected.ids));
      expect(Array.from(r.kernel)).toEqual(Array.from(expected.kernel));
    }
    const lp = new Float32Array(6), qq = Float32Array.from([1, 2, 3, 3, 2, 1]);
    const pk = klImproveAsync({ logPrior: lp, q: qq, rows: 2, cols: 3, alpha: 1 });
    qq.fill(0);
    const kr = await pk;
    expect(kr.value[0]).toBeCloseTo(Math.log(Math.exp(1) + Math.exp(2) + Math.exp(3)), 5);
  });

  it('a resizable input or out buffer shrunk while the search runs (fuzz F16: was SIGSEGV)', async () => {
    const ix = new MemoryIndex({ dim: 1, backend: 'cpu' });
    ix.add(Float32Array.of(1, 2, 3), Float32Array.of(1, 2, 3));
    const RAB = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer & { resize(n: number): void };
    for (let i = 0; i < 50; i++) {
      const ab = new RAB(4000, { maxByteLength: 1 << 20 });
      const q = new Float32Array(ab).fill(0.5);
      const p = ix.search(q, 2);
      ab.resize(0);
      const r = await p;
      expect(r.ids.length).toBe(2000);
      expect([r.ids[0], r.ids[1]]).toEqual([0, 1]);
    }
    const ob = new RAB(8, { maxByteLength: 64 });
    const p = ix.search(Float32Array.of(2), 2, { out: { kernel: new Float32Array(ob) } });
    ob.resize(0);
    await expect(p).rejects.toThrow(/out\.kernel was detached \(transferred\) or shrunk before the call finished/);
  });

  it('an out array transferred while the search runs: the Promise rejects with a TypeError', async () => {
    const ix = index4();
    const out = { kernel: new Float32Array(2), dist2: new Float32Array(2) };
    const p = loadNative().NativeMemoryIndex.prototype.search.call((ix as unknown as { native: unknown }).native, Float32Array.from([1, 0, 0, 0]), 2, out);
    detach(out.kernel);
    await expect(p).rejects.toThrow(/out\.kernel was detached \(transferred\) or shrunk before the call finished/);
    // Untouched out arrays get their results when the Promise settles.
    const out2 = { kernel: new Float32Array(2).fill(NaN), dist2: new Float32Array(2).fill(NaN) };
    const r = await ix.search(Float32Array.from([1, 0, 0, 0]), 2, { out: out2 });
    expect(r.kernel).toBe(out2.kernel);
    expect(Array.from(out2.dist2)).toEqual([0, 2]);
  });
});

describe('one error class per kind of error, the same from TS and from C++', () => {
  it('NaN/Inf, order, duplicates, unknown ids, limits: RangeError; type/shape: TypeError', () => {
    const ix = index4();
    const n = native4();
    const nanQ = Float32Array.from([NaN, 0, 0, 0]);
    expectErr(() => ix.searchSync(nanQ, 1), RangeError, /queries must be finite/);
    expectErr(() => n.searchSync(nanQ, 1), RangeError, /queries must be finite: queries\[0\] \(row 0, column 0\) is NaN/);
    expectErr(() => n.add(nanQ, Float32Array.of(0)), RangeError, /keys must be finite/);
    expectErr(() => n.add(new Float32Array(4), Float32Array.of(NaN)), RangeError, /values must be finite/);
    expectErr(() => ix.addWithIds([1], new Float32Array(4), Float32Array.of(0)), RangeError, /strictly increasing/);
    expectErr(() => n.addWithIds(Int32Array.of(1), new Float32Array(4), Float32Array.of(0)), RangeError, /strictly increasing/);
    expectErr(() => n.addWithIds(Int32Array.of(-5), new Float32Array(4), Float32Array.of(0)), RangeError, /ids must be >= 0/);
    expectErr(() => ix.remove([1, 1]), RangeError, /must not repeat/);
    expectErr(() => n.remove(Int32Array.of(0, 0)), RangeError, /must not repeat/);
    expectErr(() => n.remove(Int32Array.of(77)), RangeError, /unknown id/);
    expectErr(() => ix.searchSync(new Float32Array(4), 1.5), RangeError, /m must be an integer in \[1, 16777216\], got 1.5/);
    expectErr(() => n.searchSync(new Float32Array(4), 1.5), RangeError, /m must be an integer in \[1, 16777216\], got 1.5/);
    expectErr(() => n.searchSync(new Float32Array(4), NaN), RangeError, /m must be an integer/);
    expectErr(() => ix.searchSync(new Float32Array(4), '2' as never), TypeError, /m must be an integer \(a number\)/);
    expectErr(() => n.searchSync(new Float32Array(4), '2' as never), TypeError, /m must be an integer \(a number\)/);
    expectErr(() => n.searchSync(new Float64Array(4) as never, 1), TypeError, /queries must be a Float32Array/);
    expectErr(() => ix.searchSync(new Float64Array(4) as never, 1), TypeError, /queries must be a Float32Array/);
    expectErr(() => n.searchSync(new Float32Array(4), 1, { kernel: new Int32Array(1) as never }), TypeError, /out\.kernel must be a Float32Array/);
    expectErr(() => loadNative().klImprove(Float32Array.of(NaN), Float32Array.of(0), 1, 1, 1), RangeError, /log_prior\[0\] is NaN/);
    expectErr(() => klImprove({ logPrior: Float32Array.of(NaN), q: Float32Array.of(0), rows: 1, cols: 1, alpha: 1 }), RangeError, /logPrior\[0\]/);
    const cap = new (loadNative().NativeMemoryIndex)(4, 0, 1, 1, 'cpu');
    cap.add(new Float32Array(4), Float32Array.of(0));
    expectErr(() => cap.add(new Float32Array(4), Float32Array.of(0)), RangeError, /capacity exceeded/);
  });
});

describe('fuzz findings F1, F3, F4, F6: SharedArrayBuffers, option classes', () => {
  it('arrays over a SharedArrayBuffer are accepted (not "Invalid argument"), and aliasing is still seen', async () => {
    const ix = index4();
    const n = native4();
    const q = new Float32Array(new SharedArrayBuffer(16));
    q.set([0, 1, 0, 0]);
    const ids = new Int32Array(new SharedArrayBuffer(8));
    for (const r of [ix.searchSync(q, 2, { out: { ids } }), await ix.search(q, 2, { out: { ids } }), n.searchSync(q, 2, { ids })]) {
      expect(Array.from(r.ids)).toEqual([1, 0]);
    }
    const shared = new SharedArrayBuffer(64);
    const k = new Float32Array(shared, 0, 2), d2 = new Float32Array(shared, 4, 2);
    expectErr(() => n.searchSync(q, 2, { kernel: k, dist2: d2 }), TypeError, /out\.kernel and out\.dist2 share memory/);
    expectErr(() => ix.searchSync(q, 2, { out: { kernel: k, dist2: d2 } }), TypeError, /share memory/);
    expect(ix.searchSync(new Float32Array(new SharedArrayBuffer(0)), 1).ids.length).toBe(0);
  });

  it('non-numbers are TypeErrors, numbers out of range (incl. NaN, ±Infinity) RangeErrors', () => {
    const ix = index4();
    const q = new Float32Array(4);
    expectErr(() => ix.estimateSync(q, 1, { voidWeight: '1' as never }), TypeError, /voidWeight must be a number, got string/);
    expectErr(() => ix.estimateSync(q, 1, { voidValue: true as never }), TypeError, /voidValue must be a number/);
    expectErr(() => ix.estimateSync(q, 1, { voidWeight: NaN }), RangeError, /voidWeight must be a finite number >= 0/);
    const kl = { logPrior: new Float32Array(1), q: new Float32Array(1), rows: 1, cols: 1 };
    expectErr(() => klImprove({ ...kl, alpha: true as never }), TypeError, /alpha must be a number, got boolean/);
    expectErr(() => klImprove({ ...kl, alpha: Infinity }), RangeError, /alpha must be a finite number >= 0/);
    expectErr(() => ix.searchSync(q, Infinity), RangeError, /m must be an integer in \[1, 16777216\], got Infinity/);
    expectErr(() => new MemoryIndex({ dim: -Infinity }), RangeError, /dim must be an integer/);
    expectErr(() => ix.has(NaN), RangeError, /id must be an integer/);
    expectErr(() => ix.setKernel(undefined as never), TypeError, /setKernel expects an object/);
    expectErr(() => ix.setKernel('cosine' as never), TypeError, /setKernel expects an object/);
    expect(ix.kernel).toEqual({ kernel: 'gaussian', bandwidth: 1 });
  });
});

describe('MEMQ_SIMD / MEMQ_THREADS as the native side parsed them', () => {
  function infoWith(env: Record<string, string>) {
    const script = `const n = require(${JSON.stringify(nativePath())}); const i = n.backendInfo();
      console.log(JSON.stringify({ envErrors: i.envErrors, envParsed: i.envParsed, threads: i.threads, simd: i.simd }));`;
    const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
    expect(r.status, `${r.signal} ${r.stderr} ${r.stdout} ${nativePath()}`).toBe(0);
    return JSON.parse(r.stdout);
  }

  it('garbage is reported in envErrors and ignored; valid values are parsed', () => {
    const bad = infoWith({ MEMQ_SIMD: 'bogus', MEMQ_THREADS: 'abc' });
    expect(bad.envErrors).toEqual([
      "MEMQ_SIMD='bogus' is not one of scalar, avx2, avx512; ignored",
      "MEMQ_THREADS='abc' is not an integer in [1, 1024]; ignored",
    ]);
    expect(bad.envParsed).toEqual({ MEMQ_SIMD: null, MEMQ_THREADS: null });
    for (const t of ['-3', '0', '2000', '3x', ' 3']) {
      expect(infoWith({ MEMQ_THREADS: t, MEMQ_SIMD: '' }).envErrors).toEqual([`MEMQ_THREADS='${t}' is not an integer in [1, 1024]; ignored`]);
    }
    const good = infoWith({ MEMQ_SIMD: 'scalar', MEMQ_THREADS: '3' });
    expect(good.envErrors).toEqual([]);
    expect(good.envParsed).toEqual({ MEMQ_SIMD: 'scalar', MEMQ_THREADS: 3 });
    expect(good.threads).toBe(3);
    expect(good.simd).toBe('scalar');
    expect(backendInfo().envErrors).toBeDefined();
  });
});
