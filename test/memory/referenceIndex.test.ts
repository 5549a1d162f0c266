import { describe, expect, it } from 'vitest';
import { EpisodicMemory, nativeAvailable } from '../../lib/memory/episodic';
import { ReferenceIndex } from '../helpers/referenceIndex';
import { MemoryIndex } from '../../lib/retrieval';
import { silvermanBandwidth } from '../../lib/policy/bandwidth';
import { Mulberry32 } from '../../lib/policy/rng';

describe('ReferenceIndex (pure TS) semantics', () => {
  it('top-M sorted descending, ties to the earlier case, −1 padding, void read', () => {
    const idx = new ReferenceIndex({ dim: 2, kernel: 'gaussian', bandwidth: 1 });
    // Two cases at the same distance from the query: the earlier id wins the tie.
    const ids = idx.add(Float32Array.from([1, 0, 0, 1, 5, 5]), Float32Array.from([1, 2, 3]));
    expect(Array.from(ids)).toEqual([0, 1, 2]);
    const r = idx.searchSync(Float32Array.from([0, 0]), 5);
    expect(Array.from(r.ids)).toEqual([0, 1, 2, -1, -1]);
    expect(r.kernel[0]).toBeCloseTo(Math.exp(-0.5), 6);
    expect(r.dist2[3]).toBe(Infinity);
    const e = idx.estimateSync(Float32Array.from([0, 0]), 2, { voidWeight: 1, voidValue: 10 });
    const k = Math.exp(-0.5);
    expect(e.value[0]).toBeCloseTo((k * 1 + k * 2 + 10) / (2 * k + 1), 6);
    expect(e.confidence[0]).toBeCloseTo((2 * k) / (2 * k + 1), 6);
    idx.remove(Int32Array.of(0));
    expect(Array.from(idx.searchSync(Float32Array.from([0, 0]), 1).ids)).toEqual([1]);
    expect(() => idx.addWithIds(Int32Array.of(1), Float32Array.from([0, 0]), Float32Array.of(0))).toThrow(/strictly increasing/);
  });
});

describe.runIf(nativeAvailable())('native MemoryIndex agrees with the reference (as used by EpisodicMemory)', () => {
  const kernels = [
    { kernel: 'gaussian' as const, bandwidth: 0.9 },
    { kernel: 'cosine' as const, kappa: 3 },
    { kernel: 'inverse' as const, delta: 1e-3 },
  ];
  for (const k of kernels) {
    it(`${k.kernel}: search and estimate`, async () => {
      const rng = new Mulberry32(21);
      const d = 7;
      const n = 300;
      const keys = Float32Array.from({ length: n * d }, () => rng.normal());
      const vals = Float32Array.from({ length: n }, () => rng.normal());
      const nat = new MemoryIndex({ dim: d, ...k } as any);
      const ref = new ReferenceIndex({ dim: d, ...k });
      nat.add(keys, vals);
      ref.add(keys, vals);
      const drop = Int32Array.from({ length: 30 }, (_, i) => i * 7);
      nat.remove(drop);
      ref.remove(drop);
      const queries = Float32Array.from({ length: 16 * d }, () => rng.normal());
      const m = 10;
      const a = await nat.search(queries, m);
      const b = await ref.search(queries, m);
      for (let i = 0; i < a.ids.length; i++) {
        expect(Math.abs(a.kernel[i] - b.kernel[i])).toBeLessThan(1e-5 * Math.max(1, b.kernel[i]));
        // Same ids unless two kernel values tie (then either order is right).
        if (a.ids[i] !== b.ids[i]) expect(Math.abs(a.kernel[i] - b.kernel[i])).toBeLessThan(1e-6);
      }
      const ea = await nat.estimate(queries, m, { voidWeight: 0.3, voidValue: -1 });
      const eb = await ref.estimate(queries, m, { voidWeight: 0.3, voidValue: -1 });
      for (let i = 0; i < 16; i++) {
        expect(ea.value[i]).toBeCloseTo(eb.value[i], 4);
        expect(ea.confidence[i]).toBeCloseTo(eb.confidence[i], 5);
      }
    });
  }
});

describe('EpisodicMemory.setBandwidth applies a MATH §9 rule to the index', () => {
  for (const backend of nativeAvailable() ? (['js', 'native'] as const) : (['js'] as const)) {
    it(`silverman [${backend}]`, async () => {
      const rng = new Mulberry32(2);
      const mem = new EpisodicMemory({ dim: 3, backend });
      const keys = Array.from({ length: 50 }, () => Float32Array.from({ length: 3 }, () => rng.normal() * 2));
      await mem.write(keys.map((key, i) => ({ key, value: i })));
      const flat = new Float32Array(150);
      keys.forEach((k, i) => flat.set(k, i * 3));
      const h = mem.setBandwidth({ rule: 'silverman' });
      expect(h).toBeCloseTo(silvermanBandwidth(flat, 50, 3), 12);
      expect(mem.kernel).toEqual({ kernel: 'gaussian', bandwidth: h });
      expect(mem.setBandwidth({ rule: 'adaptive', h0: 2 })).toBeCloseTo(2 * Math.pow(50, -1 / 7), 12);
    });
  }
});

describe('coverage radius (MATH §13)', () => {
  for (const backend of nativeAvailable() ? (['js', 'native'] as const) : (['js'] as const)) {
    it(`max over queries of the nearest-key distance [${backend}]`, async () => {
      const mem = new EpisodicMemory({ dim: 2, backend });
      expect((await mem.coverageRadius(Float32Array.from([0, 0]))).radius).toBe(Infinity);
      await mem.write([{ key: [0, 0], value: 1 }, { key: [3, 4], value: 2 }]);
      const r = await mem.coverageRadius(Float32Array.from([0, 1, 3, 3, 6, 8]));
      expect(Array.from(r.distances)).toEqual([1, 1, 5]);
      expect(r.radius).toBe(5);
    });
  }
});
