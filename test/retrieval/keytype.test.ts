/**
 * MemoryIndex on the CPU with compressed keys (keyType 'bf16' / 'int8', docs/math.md §2b) against
 * a float64 reference written here on the dequantised keys (the quantisers re-implemented in TS:
 * bf16 = round to nearest even of the top 16 bits; int8 = per-row s = fround(max|k| / 127),
 * q = round half to even of k / s, dequantised fround(q * s)). Tolerances: dist2 within
 * 1e-5 (|q|^2 + |k|^2) + 1e-6 of the reference on the dequantised keys; ids equal slot by slot
 * except where the two rows' reference distances are that close. With rerank covering every row,
 * ids and dist2 equal the float32 index's exactly.
 */
import { describe, expect, it } from 'vitest';
import { MemoryIndex } from '../../lib/index';
import { TestRng, testSeed } from '../helpers/rng';
import { thrown } from '../helpers/errors';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bf16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  u32[0] = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) << 16;
  return f32[0];
}
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
function dequantised(keys: Float32Array, n: number, d: number, type: 'bf16' | 'int8'): Float64Array {
  const out = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    if (type === 'bf16') {
      for (let p = 0; p < d; p++) out[i * d + p] = bf16(keys[i * d + p]);
      continue;
    }
    let mx = 0;
    for (let p = 0; p < d; p++) mx = Math.max(mx, Math.abs(keys[i * d + p]));
    const s = Math.fround(mx / 127);
    for (let p = 0; p < d; p++) {
      const q = s > 0 ? Math.max(-127, Math.min(127, roundHalfEven(Math.fround(keys[i * d + p] / s)))) : 0;
      // an int8 has no −0: a small negative component that rounds to 0 dequantises to +0
      out[i * d + p] = Math.fround((q === 0 ? 0 : q) * s);
    }
  }
  return out;
}
function dist2(q: Float32Array, qi: number, k: ArrayLike<number>, ki: number, d: number): number {
  let s = 0;
  for (let p = 0; p < d; p++) {
    const t = q[qi * d + p] - k[ki * d + p];
    s += t * t;
  }
  return s;
}

const seed = testSeed();

describe(`MemoryIndex keyType bf16 / int8 on the CPU (seed ${seed})`, () => {
  for (const type of ['bf16', 'int8'] as const) {
    it(`${type}: search is exact for the dequantised keys (B = 1 and B = 7, after removals)`, async () => {
      const rng = new TestRng(seed + (type === 'bf16' ? 1 : 2));
      const n = 3000, d = 40, m = 12;
      const keys = rng.keys(n, d);
      const idx = new MemoryIndex({ dim: d, backend: 'cpu', keyType: type, bandwidth: 2 });
      expect(idx.keyType).toBe(type);
      const ids = idx.add(keys, new Float32Array(n).map((_, i) => i));
      const removed = new Set<number>();
      for (let i = 0; i < n; i += 5) removed.add(ids[i]);
      idx.remove([...removed]);
      const deq = dequantised(keys, n, d, type);
      for (const b of [1, 7]) {
        const qs = rng.keys(b, d);
        const res = await idx.search(qs, m);
        for (let i = 0; i < b; i++) {
          const ref: { row: number; d2: number }[] = [];
          for (let j = 0; j < n; j++) if (!removed.has(ids[j])) ref.push({ row: j, d2: dist2(qs, i, deq, j, d) });
          ref.sort((a, c) => a.d2 - c.d2 || a.row - c.row);
          let qq = 0;
          for (let p = 0; p < d; p++) qq += qs[i * d + p] ** 2;
          for (let s = 0; s < m; s++) {
            const got = res.ids[i * m + s];
            const row = ids.indexOf(got);
            expect(row).toBeGreaterThanOrEqual(0);
            let kk = 0;
            for (let p = 0; p < d; p++) kk += deq[row * d + p] ** 2;
            const tol = 1e-5 * (qq + kk) + 1e-6;
            const mine = dist2(qs, i, deq, row, d);
            expect(Math.abs(res.dist2[i * m + s] - mine)).toBeLessThanOrEqual(tol);
            if (row !== ref[s].row) expect(Math.abs(mine - ref[s].d2)).toBeLessThanOrEqual(tol);
          }
        }
      }
      // without re-rank only the compressed keys are held: getKeys returns the dequantised keys
      // (the reference's, exactly), and the index takes (2 | 1)·d + 8 bytes per row, not 4·d + 8
      for (const row of [1, 2, n - 1]) {
        expect(Array.from(idx.getKeys([ids[row]]))).toEqual(Array.from(deq.subarray(row * d, (row + 1) * d)));
      }
      const f32idx = new MemoryIndex({ dim: d, backend: 'cpu', bandwidth: 2 });
      f32idx.add(keys, new Float32Array(n));
      const mb = idx.stats().memoryBytes, fb = f32idx.stats().memoryBytes;
      const perComp = type === 'bf16' ? 2 : 1;
      expect(mb / fb).toBeLessThan((perComp * d + 8 + (type === 'int8' ? 4 : 0) + 6) / (4 * d + 8));
      // saving the dequantised keys and adding them again gives the same codes: the same search
      const again = new MemoryIndex({ dim: d, backend: 'cpu', keyType: type, bandwidth: 2 });
      const live = ids.filter((id) => !removed.has(id));
      again.addWithIds(Int32Array.from(live), idx.getKeys(live), new Float32Array(live.length));
      const qs = rng.keys(3, d);
      const r1 = await idx.search(qs, m), r2 = await again.search(qs, m);
      expect(Array.from(r2.ids)).toEqual(Array.from(r1.ids));
      for (let i = 0; i < r1.dist2.length; i++) expect(Math.abs(r2.dist2[i] - r1.dist2[i])).toBeLessThanOrEqual(1e-6 * Math.max(1, r1.dist2[i]));
    });

    it(`${type}: rerank covering every row returns the float32 index's results exactly`, async () => {
      const rng = new TestRng(seed + 10);
      const n = 500, d = 24, m = 8;
      const keys = rng.keys(n, d);
      const vals = new Float32Array(n);
      const f = new MemoryIndex({ dim: d, backend: 'cpu', kernel: 'cosine', kappa: 3 });
      const c = new MemoryIndex({ dim: d, backend: 'cpu', kernel: 'cosine', kappa: 3, keyType: type, rerank: Math.ceil(n / m) });
      f.add(keys, vals);
      c.add(keys, vals);
      const qs = rng.keys(5, d);
      const a = await f.search(qs, m), b = await c.search(qs, m);
      expect(Array.from(b.ids)).toEqual(Array.from(a.ids));
      expect(Array.from(b.dist2)).toEqual(Array.from(a.dist2));
      expect(Array.from(b.kernel)).toEqual(Array.from(a.kernel));
      // with re-rank the float32 keys are kept: getKeys returns them unchanged
      expect(Array.from(c.getKeys([1]))).toEqual(Array.from(keys.subarray(d, 2 * d)));
    });

    it(`${type}: bad keys are refused with the usual clear errors, nothing added`, () => {
      const idx = new MemoryIndex({ dim: 3, backend: 'cpu', keyType: type });
      const err = thrown(() => idx.add(Float32Array.of(1, 2, 3, 0, NaN, 1), Float32Array.of(0, 0)));
      expect(err).toBeInstanceOf(RangeError);
      expect(err.message).toMatch(/keys/);
      expect(idx.size).toBe(0);
    });
  }
});
