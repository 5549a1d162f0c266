import { describe, expect, it } from 'vitest';
import { MemoryIndex, type KernelOptions } from '../../lib/index';
import { TestRng, testSeed } from '../helpers/rng';
import { refKernelValue, refCos, refDist2, refKernelWeightedValue, refRanked, type RefKernel } from './reference';

// Tolerances (float32 kernels vs the float64 reference):
//   kernel values: rel 1e-5 + abs 1e-7 (MATH §2 evaluated from a GEMM-expanded dist2)
//   dist2: abs 2e-5 (rows have norm ~1; the expansion ‖q‖²+‖k‖²−2q·k loses ~1e-6 to cancellation)
//   ids: equal to the reference's at every rank, except where the reference scores of the two
//   rows are within the score tolerance (a tie), and never a duplicate.
const KERNEL_RTOL = 1e-5;
const KERNEL_ATOL = 1e-7;
const DIST_ATOL = 2e-5;
const SCORE_TOL = 4e-5;

const seed = testSeed();
console.log(`retrieval tests: seed ${seed} (MEMQ_TEST_SEED=${seed} reproduces)`);

function toRef(o: KernelOptions): RefKernel {
  if (o.kernel === 'cosine') return { kernel: 'cosine', kappa: o.kappa ?? 1 };
  if (o.kernel === 'inverse') return { kernel: 'inverse', delta: o.delta ?? 1e-3 };
  return { kernel: 'gaussian', bandwidth: (o as { bandwidth?: number }).bandwidth ?? 1 };
}

function poisonSearch(bm: number) {
  return { ids: new Int32Array(bm).fill(0x7eadbeef), kernel: new Float32Array(bm).fill(NaN), dist2: new Float32Array(bm).fill(NaN) };
}

/** Compare one search result against the reference; rowOfId maps ids to reference rows. */
function checkSearch(
  res: { ids: Int32Array; kernel: Float32Array; dist2: Float32Array },
  queries: Float32Array, b: number, keys: Float32Array, n: number, d: number, m: number,
  p: RefKernel, ids: Int32Array, alive?: boolean[],
) {
  const rowOfId = new Map<number, number>();
  ids.forEach((id, row) => rowOfId.set(id, row));
  for (let qi = 0; qi < b; qi++) {
    const ref = refRanked(p, queries, qi, keys, n, d, alive);
    const count = Math.min(m, ref.length);
    const seen = new Set<number>();
    for (let j = 0; j < m; j++) {
      const id = res.ids[qi * m + j];
      const kv = res.kernel[qi * m + j];
      const d2 = res.dist2[qi * m + j];
      if (j >= count) {
        expect(id, `query ${qi} slot ${j} past the ${count} cases`).toBe(-1);
        expect(kv).toBe(0);
        expect(d2).toBe(Infinity);
        continue;
      }
      expect(rowOfId.has(id), `query ${qi} rank ${j}: id ${id} is not a live id`).toBe(true);
      expect(seen.has(id), `query ${qi}: id ${id} returned twice`).toBe(false);
      seen.add(id);
      const row = rowOfId.get(id)!;
      if (alive) expect(alive[row], `query ${qi}: removed id ${id} returned`).toBe(true);
      // the kernel value at this rank is the reference's at this rank
      expect(Math.abs(kv - ref[j].kernel)).toBeLessThanOrEqual(KERNEL_ATOL + KERNEL_RTOL * Math.abs(ref[j].kernel) + 1e-12);
      // and it is the returned row's own kernel value and distance
      const rd2 = refDist2(queries, qi, keys, row, d);
      const rk = refKernelValue(p, rd2, refCos(queries, qi, keys, row, d));
      expect(Math.abs(kv - rk)).toBeLessThanOrEqual(KERNEL_ATOL + KERNEL_RTOL * Math.abs(rk));
      expect(Math.abs(d2 - rd2)).toBeLessThanOrEqual(DIST_ATOL);
      if (row !== ref[j].row) {
        const ownScore = p.kernel === 'cosine' ? refCos(queries, qi, keys, row, d) : -rd2;
        expect(Math.abs(ownScore - ref[j].score), `query ${qi} rank ${j}: row ${row} instead of ${ref[j].row} without a tie`).toBeLessThanOrEqual(SCORE_TOL);
      }
      if (j > 0) expect(kv).toBeLessThanOrEqual(res.kernel[qi * m + j - 1]);
    }
  }
}

const KERNELS: KernelOptions[] = [
  { kernel: 'gaussian', bandwidth: 0.7 },
  { kernel: 'cosine', kappa: 5 },
  { kernel: 'inverse', delta: 1e-3 },
];

// (n, d, b, m): N < m, N = 0, d not a multiple of the SIMD width, B = 1 and B > 1, large m.
const SHAPES: [number, number, number, number][] = [
  [0, 7, 3, 5],
  [3, 16, 2, 5],
  [1, 1, 1, 1],
  [97, 17, 4, 10],
  [1000, 33, 7, 64],
  [2500, 128, 1, 32],
  [600, 20, 3, 512],
  [5000, 9, 2, 4096],
];

describe('MemoryIndex.search against the TypeScript reference', () => {
  for (const k of KERNELS) {
    for (const [n, d, b, m] of SHAPES) {
      it(`${k.kernel} n=${n} d=${d} b=${b} m=${m}`, async () => {
        const rng = new TestRng(seed + n * 31 + d * 7 + b + m);
        const keys = rng.keys(n, d);
        const values = new Float32Array(n).map(() => rng.normal());
        const index = new MemoryIndex({ dim: d, ...k } as any);
        const ids = index.add(keys, values);
        expect(ids.length).toBe(n);
        // queries as an unaligned subarray view of a larger buffer
        const big = new Float32Array(b * d + 3);
        big.set(rng.keys(b, d), 1);
        const queries = big.subarray(1, 1 + b * d);
        const out = poisonSearch(b * m);
        const res = await index.search(queries, m, { out });
        expect(res.ids).toBe(out.ids);
        checkSearch(res, queries, b, keys, n, d, m, toRef(k), ids);
        const sync = index.searchSync(queries, m);
        expect(Array.from(sync.ids)).toEqual(Array.from(res.ids));
      });
    }
  }

  it('duplicates and exact ties go to the lower id, never twice', async () => {
    const rng = new TestRng(seed ^ 0x51);
    const d = 24;
    const base = rng.keys(40, d);
    // 200 rows built from 40 distinct keys: every key appears 5 times
    const keys = new Float32Array(200 * d);
    for (let i = 0; i < 200; i++) keys.set(base.subarray((i % 40) * d, (i % 40 + 1) * d), i * d);
    for (const k of KERNELS) {
      const index = new MemoryIndex({ dim: d, ...k } as any);
      const ids = index.add(keys, new Float32Array(200));
      const queries = base.subarray(0, 3 * d); // exact copies of stored keys
      const m = 12;
      const res = await index.search(queries, m, { out: poisonSearch(3 * m) });
      checkSearch(res, queries, 3, keys, 200, d, m, toRef(k), ids);
      for (let qi = 0; qi < 3; qi++) {
        // the 5 copies of key qi are rows qi, qi+40, ..., qi+160: first, in that order
        expect(Array.from(res.ids.subarray(qi * m, qi * m + 5))).toEqual([qi, qi + 40, qi + 80, qi + 120, qi + 160]);
        for (let j = 1; j < m; j++) {
          const a = qi * m + j - 1, c = qi * m + j;
          if (res.kernel[a] === res.kernel[c] && res.dist2[a] === res.dist2[c]) expect(res.ids[a]).toBeLessThan(res.ids[c]);
        }
      }
    }
  });

  it('removed ids are never returned; compaction keeps ids and results', async () => {
    const rng = new TestRng(seed ^ 0x77);
    const n = 3000, d = 40, b = 5, m = 50;
    const keys = rng.keys(n, d);
    const index = new MemoryIndex({ dim: d, kernel: 'gaussian', bandwidth: 0.8 });
    const ids = index.add(keys, new Float32Array(n));
    const alive = new Array(n).fill(true);
    const gone: number[] = [];
    for (let i = 0; i < n; i++) if (rng.next() < 0.4) { gone.push(ids[i]); alive[i] = false; }
    index.remove(Int32Array.from(gone));
    expect(index.size).toBe(n - gone.length);
    const queries = rng.keys(b, d);
    checkSearch(await index.search(queries, m, { out: poisonSearch(b * m) }), queries, b, keys, n, d, m, toRef({ kernel: 'gaussian', bandwidth: 0.8 }), ids, alive);
    index.compact();
    checkSearch(await index.search(queries, m), queries, b, keys, n, d, m, toRef({ kernel: 'gaussian', bandwidth: 0.8 }), ids, alive);
    expect(Array.from(index.ids())).toEqual(Array.from(ids).filter((_, i) => alive[i]));
  });
});

describe('MemoryIndex.estimate (MATH §3, void case)', () => {
  for (const k of KERNELS) {
    it(`${k.kernel}: kernel-weighted value and confidence`, async () => {
      const rng = new TestRng(seed ^ 0x99);
      const n = 800, d = 19, b = 6, m = 16;
      const keys = rng.keys(n, d);
      const values = new Float32Array(n).map(() => rng.normal() * 3);
      const index = new MemoryIndex({ dim: d, ...k } as any);
      index.add(keys, values);
      const queries = rng.keys(b, d);
      for (const [voidWeight, voidValue] of [[0, 0], [0.1, 0], [2.5, -1.5]]) {
        const out = { value: new Float32Array(b).fill(NaN), confidence: new Float32Array(b).fill(NaN) };
        const est = await index.estimate(queries, m, { voidWeight, voidValue, out });
        expect(est.value).toBe(out.value);
        const hits = await index.search(queries, m);
        for (let qi = 0; qi < b; qi++) {
          const ref = refRanked(toRef(k), queries, qi, keys, n, d).slice(0, m);
          const r = refKernelWeightedValue(ref.map((h) => h.kernel), ref.map((h) => values[h.row]), voidWeight, voidValue);
          expect(est.value[qi]).toBeCloseTo(r.value, 4);
          expect(est.confidence[qi]).toBeCloseTo(r.confidence, 5);
          expect(hits.ids[qi * m]).toBeGreaterThanOrEqual(0);
        }
      }
    });
  }

  it('empty memory: search gives -1, estimate the void value with confidence 0', async () => {
    const index = new MemoryIndex({ dim: 8, kernel: 'cosine', kappa: 2 });
    const q = new Float32Array(16).fill(0.5);
    const s = await index.search(q, 3);
    expect(Array.from(s.ids)).toEqual([-1, -1, -1, -1, -1, -1]);
    const e = await index.estimate(q, 3, { voidWeight: 0.1, voidValue: 0.25 });
    expect(Array.from(e.value)).toEqual([0.25, 0.25]);
    expect(Array.from(e.confidence)).toEqual([0, 0]);
    const e0 = index.estimateSync(q, 3, { voidWeight: 0, voidValue: -2 });
    expect(Array.from(e0.value)).toEqual([-2, -2]);
    expect(Array.from(e0.confidence)).toEqual([0, 0]);
  });
});
