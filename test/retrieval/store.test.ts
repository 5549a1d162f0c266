import { describe, expect, it } from 'vitest';
import { MemoryIndex } from '../../lib/index';
import { TestRng, testSeed } from '../helpers/rng';

const seed = testSeed();

function snapshotOf(index: MemoryIndex) {
  const ids = index.ids();
  return { size: index.size, ids: Array.from(ids), values: Array.from(index.getValues(ids)), keys: Array.from(index.getKeys(ids)) };
}

describe('MemoryIndex key store', () => {
  it('ids are stable through growth, updates, removal and compaction', () => {
    const rng = new TestRng(seed ^ 0x11);
    const d = 13;
    const index = new MemoryIndex({ dim: d, kernel: 'gaussian', bandwidth: 1 });
    const model = new Map<number, { key: Float32Array; value: number }>();
    for (let round = 0; round < 40; round++) {
      const n = 1 + rng.int(300);
      const keys = rng.keys(n, d);
      const values = new Float32Array(n).map(() => rng.normal());
      const ids = index.add(keys, values);
      ids.forEach((id, i) => model.set(id, { key: keys.slice(i * d, (i + 1) * d), value: values[i] }));
      const live = [...model.keys()];
      const upd = live.filter(() => rng.next() < 0.1);
      const nv = new Float32Array(upd.length).map(() => rng.normal());
      index.updateValues(upd, nv);
      upd.forEach((id, i) => (model.get(id)!.value = nv[i]));
      const rm = live.filter(() => rng.next() < 0.3);
      index.remove(rm);
      rm.forEach((id) => model.delete(id));
    }
    const want = [...model.keys()].sort((a, b) => a - b);
    expect(Array.from(index.ids())).toEqual(want);
    expect(index.size).toBe(want.length);
    const gotValues = index.getValues(want);
    const gotKeys = index.getKeys(want);
    want.forEach((id, i) => {
      expect(gotValues[i]).toBe(Math.fround(model.get(id)!.value));
      expect(Array.from(gotKeys.subarray(i * d, (i + 1) * d))).toEqual(Array.from(model.get(id)!.key));
    });
    // ids strictly increase and are never reused
    const next = index.add(new Float32Array(d), new Float32Array(1))[0];
    expect(next).toBeGreaterThan(Math.max(...want));
  });

  it('capacity limit: a clear RangeError and the index unchanged', () => {
    const index = new MemoryIndex({ dim: 4, capacity: 5 });
    index.add(new Float32Array(12), new Float32Array(3));
    const before = snapshotOf(index);
    expect(() => index.add(new Float32Array(12), new Float32Array(3))).toThrow(RangeError);
    expect(() => index.add(new Float32Array(12), new Float32Array(3))).toThrow(/capacity/);
    expect(snapshotOf(index)).toEqual(before);
    index.remove([0]);
    index.add(new Float32Array(12), new Float32Array(3));
    expect(index.size).toBe(5);
  });

  it('bad input is a TypeError/RangeError naming the argument; the index is unchanged', async () => {
    const rng = new TestRng(seed ^ 0x22);
    const index = new MemoryIndex({ dim: 6, kernel: 'inverse', delta: 1e-3 });
    index.add(rng.keys(20, 6), new Float32Array(20).fill(1));
    const before = snapshotOf(index);
    const q = rng.keys(2, 6);
    const resBefore = await index.search(q, 5);
    const bad: [() => unknown, RegExp, any][] = [
      [() => new MemoryIndex({ dim: 0 }), /dim must be an integer in \[1/, RangeError],
      [() => new MemoryIndex({ dim: 2.5 }), /dim must be an integer/, RangeError],
      [() => new MemoryIndex({ dim: 4, kernel: 'gaussian', bandwidth: 0 }), /bandwidth must be a finite number > 0/, RangeError],
      [() => new MemoryIndex({ dim: 4, kernel: 'cosine', kappa: -1 }), /kappa must be/, RangeError],
      [() => new MemoryIndex({ dim: 4, kernel: 'inverse', delta: NaN }), /delta must be/, RangeError],
      [() => new MemoryIndex({ dim: 4, kernel: 'rbf' as any }), /kernel must be 'gaussian', 'cosine' or 'inverse'/, TypeError],
      [() => new MemoryIndex(null as any), /options must be an object/, TypeError],
      [() => index.add(new Float64Array(6) as any, new Float32Array(1)), /keys must be a Float32Array, got Float64Array/, TypeError],
      [() => index.add(new Float32Array(7), new Float32Array(1)), /keys.length must be a multiple of dim \(6\), got 7/, RangeError],
      [() => index.add(new Float32Array(12), new Float32Array(1)), /values.length must equal the number of keys \(2\)/, RangeError],
      [() => index.add(Float32Array.from([0, 0, NaN, 0, 0, 0]), new Float32Array(1)), /keys must be finite: keys\[2\]/, RangeError],
      [() => index.add(new Float32Array(6), Float32Array.of(Infinity)), /values must be finite/, RangeError],
      [() => index.updateValues([999], Float32Array.of(1)), /unknown id: ids\[0\] = 999/, RangeError],
      [() => index.updateValues([1, 2], Float32Array.of(1)), /values.length must equal ids.length/, RangeError],
      [() => index.remove([3, 3]), /must not repeat/, RangeError],
      [() => index.remove([5, 12345]), /unknown id: ids\[1\] = 12345/, RangeError],
      [() => index.remove([1.5] as any), /ids must be an Int32Array/, TypeError],
      [() => index.searchSync(q, 0), /m must be an integer in \[1/, RangeError],
      [() => index.searchSync(new Float32Array(5), 1), /queries.length must be a multiple of dim/, RangeError],
      [() => index.searchSync(Float32Array.from([0, 0, 0, 0, Infinity, 0]), 1), /queries must be finite/, RangeError],
      [() => index.estimateSync(q, 2, { voidWeight: -1 }), /voidWeight must be a finite number >= 0/, RangeError],
      [() => index.searchSync(q, 2, { out: { ids: new Int32Array(3) } }), /out.ids.length must be 4/, RangeError],
    ];
    for (const [fn, msg, type] of bad) {
      let err: unknown;
      try {
        fn();
      } catch (e) {
        err = e;
      }
      expect(err, String(msg)).toBeInstanceOf(type);
      expect((err as Error).message).toMatch(msg);
    }
    await expect(index.search(q, -1)).rejects.toThrow(/m must be/);
    await expect(index.estimate(new Float32Array(3), 1)).rejects.toThrow(RangeError);
    expect(snapshotOf(index)).toEqual(before);
    const resAfter = await index.search(q, 5);
    expect(Array.from(resAfter.ids)).toEqual(Array.from(resBefore.ids));
    expect(Array.from(resAfter.kernel)).toEqual(Array.from(resBefore.kernel));
  });

  it('addWithIds restores given ids; setKernel changes the kernel', async () => {
    const index = new MemoryIndex({ dim: 2 });
    index.addWithIds([3, 10, 11], Float32Array.from([0, 0, 1, 0, 0, 1]), Float32Array.from([1, 2, 3]));
    expect(Array.from(index.ids())).toEqual([3, 10, 11]);
    expect(() => index.addWithIds([11], new Float32Array(2), new Float32Array(1))).toThrow(/strictly increasing/);
    expect(index.add(new Float32Array(2), new Float32Array(1))[0]).toBe(12);
    const q = Float32Array.from([0.9, 0]);
    const g = await index.search(q, 1);
    index.setKernel({ kernel: 'gaussian', bandwidth: 0.1 });
    const g2 = await index.search(q, 1);
    expect(g2.ids[0]).toBe(g.ids[0]);
    expect(g2.kernel[0]).toBeLessThan(g.kernel[0]);
    expect(index.kernel).toEqual({ kernel: 'gaussian', bandwidth: 0.1 });
  });
});

describe('concurrency', () => {
  it('overlapping async searches and adds give the same results as sequential ones', async () => {
    const rng = new TestRng(seed ^ 0x33);
    const d = 32, m = 8;
    const batches = Array.from({ length: 12 }, () => rng.keys(400, d));
    const queries = Array.from({ length: 12 }, () => rng.keys(16, d));
    // sequential: add batch i, then search queries i
    const seq = new MemoryIndex({ dim: d, kernel: 'cosine', kappa: 3 });
    const want: number[][] = [];
    for (let i = 0; i < batches.length; i++) {
      seq.add(batches[i], new Float32Array(400));
      if (i % 3 === 2) seq.remove(Int32Array.from({ length: 50 }, (_, j) => i * 400 + j * 2));
      want.push(Array.from((await seq.search(queries[i], m)).ids));
    }
    // concurrent: fire everything without awaiting; each search sees the state when called
    const con = new MemoryIndex({ dim: d, kernel: 'cosine', kappa: 3 });
    const pending: Promise<{ ids: Int32Array }>[] = [];
    for (let i = 0; i < batches.length; i++) {
      con.add(batches[i], new Float32Array(400));
      if (i % 3 === 2) con.remove(Int32Array.from({ length: 50 }, (_, j) => i * 400 + j * 2));
      pending.push(con.search(queries[i], m));
      pending.push(con.search(queries[i], m)); // and overlapping duplicates
    }
    const got = await Promise.all(pending);
    for (let i = 0; i < batches.length; i++) {
      expect(Array.from(got[2 * i].ids)).toEqual(want[i]);
      expect(Array.from(got[2 * i + 1].ids)).toEqual(want[i]);
    }
  });
});

describe('which addon the suite tests', () => {
  it('MEMQ_ADDON (the node-gyp build in CI) is the addon under test when set', async () => {
    const { backendInfo } = await import('../../lib/index');
    const info = backendInfo();
    const want = process.env.MEMQ_ADDON;
    if (want) {
      const path = await import('path');
      expect(info.addonPath).toBe(path.resolve(want));
      expect(info.buildSystem).toBe('node-gyp');
    } else {
      expect(info.buildSystem).toBe('cmake-js');
    }
  });
});
