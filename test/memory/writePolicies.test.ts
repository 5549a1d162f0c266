import { describe, expect, it } from 'vitest';
import { EpisodicMemory, nativeAvailable } from '../../lib/memory/episodic';
import type { CaseInput, EpisodicMemoryOptions } from '../../lib/memory/types';
import { Mulberry32 } from '../../lib/policy/rng';
import '../helpers/referenceIndex'; // registers the float64 ReferenceIndex as backend 'js'

const backends: Array<'js' | 'native'> = nativeAvailable() ? ['js', 'native'] : ['js'];
const D = 4;

/** Case i: a distinct key far from every other (no accidental merges), value = i. */
function c(i: number, extra: Partial<CaseInput> = {}): CaseInput {
  const key = new Float32Array(D);
  key[0] = i * 10;
  key[1] = (i % 3) * 5;
  return { key, value: i, state: `s${i}`, action: 'go', episode: i, step: 0, ...extra };
}

function valuesOf(mem: EpisodicMemory): number[] {
  return [...mem.ids()].map((id) => mem.getCase(id)!.value).sort((a, b) => a - b);
}

/** The index agrees with the metadata: same live set, same values (read back from the index). */
function checkIndex(mem: EpisodicMemory): void {
  const ids = mem.ids();
  expect(mem.index.size).toBe(ids.length);
  expect([...mem.index.ids()].sort((a, b) => a - b)).toEqual([...ids].sort((a, b) => a - b));
  if (ids.length) expect(Array.from(mem.index.getValues(ids))).toEqual(Array.from(ids, (id) => mem.getCase(id)!.value));
}

for (const backend of backends) {
  const make = (o: Partial<EpisodicMemoryOptions>) => new EpisodicMemory({ dim: D, backend, ...o });

  describe(`write policies (MATH §8) [${backend}]`, () => {
    it('replay buffer: evicts the oldest inserted, across and within batches', async () => {
      const mem = make({ policy: { kind: 'replay', capacity: 3 } });
      await mem.write([c(1), c(2)]);
      await mem.write([c(3), c(4)]);
      expect(valuesOf(mem)).toEqual([2, 3, 4]);
      const r = await mem.write([c(5)]);
      expect(valuesOf(mem)).toEqual([3, 4, 5]);
      expect(r.evicted).toHaveLength(1);
      // A batch larger than the capacity keeps its last 3; the first ones are never stored.
      const big = await mem.write([c(6), c(7), c(8), c(9), c(10)]);
      expect(valuesOf(mem)).toEqual([8, 9, 10]);
      expect(Array.from(big.caseIds.slice(0, 2))).toEqual([-1, -1]);
      expect(big.evicted).toHaveLength(3);
      checkIndex(mem);
    });

    it('sliding window keeps the W most recently written; a merge refreshes, unlike replay', async () => {
      const merge = { epsilon: 0.5, rate: 0.5 };
      const win = make({ policy: { kind: 'window', size: 3 }, merge });
      const rep = make({ policy: { kind: 'replay', capacity: 3 }, merge });
      for (const mem of [win, rep]) {
        await mem.write([c(1), c(2), c(3)]);
        const near = c(1, { value: 11 });
        (near.key as Float32Array)[3] = 0.1; // within ε of case 1, same action
        const r = await mem.write([near]);
        expect(r.merged).toHaveLength(1);
        await mem.write([c(4)]);
        checkIndex(mem);
      }
      // Window: case 2 was written least recently. Replay: case 1 (merged into) is the oldest.
      expect(valuesOf(win)).toEqual([3, 4, 6]); // case 1 merged: 1 + 0.5 (11 − 1) = 6
      expect(valuesOf(rep)).toEqual([2, 3, 4]);
    });

    it('importance (visits): evicts the lowest visit count, ties to the oldest', async () => {
      const mem = make({ policy: { kind: 'importance', capacity: 3, weightBy: 'visits' }, merge: { epsilon: 0.5, rate: 0.5 } });
      await mem.write([c(1), c(2), c(3)]);
      // Two extra visits to case 2, one to case 3.
      await mem.write([c(2, { value: 2 }), c(2, { value: 2 }), c(3, { value: 3 })]);
      expect(mem.getCase(mem.ids()[1])!.visits).toBe(3);
      await mem.write([c(4)]); // evicts case 1 (1 visit, oldest among the 1-visit cases)
      expect(valuesOf(mem)).toEqual([2, 3, 4]);
      await mem.write([c(5)]); // 4 and 5 have 1 visit; 4 is older
      expect(valuesOf(mem)).toEqual([2, 3, 5]);
      checkIndex(mem);
    });

    it('importance (|TD error|): evicts the lowest weight, possibly the new case itself', async () => {
      const mem = make({ policy: { kind: 'importance', capacity: 3, weightBy: 'tdError' } });
      await mem.write([c(1, { tdError: 0.5 }), c(2, { tdError: -3 }), c(3, { tdError: 2 })]);
      await mem.write([c(4, { tdError: 1 })]);
      expect(valuesOf(mem)).toEqual([2, 3, 4]); // |0.5| lowest
      const r = await mem.write([c(5, { tdError: 0.1 })]);
      expect(valuesOf(mem)).toEqual([2, 3, 4]); // the new case is the least important
      expect(r.caseIds[0]).toBe(-1);
      expect(r.evicted).toHaveLength(0);
      checkIndex(mem);
    });

    it('importance (return): evicts the lowest return', async () => {
      const mem = make({ policy: { kind: 'importance', capacity: 2, weightBy: 'return' } });
      await mem.write([c(5), c(-2)]);
      await mem.write([c(1)]);
      expect(valuesOf(mem)).toEqual([1, 5]);
    });

    it('importance with sampled eviction evicts ∝ 1/w', async () => {
      const counts = [0, 0, 0];
      const trials = 1500;
      const w = [1, 2, 4];
      for (let t = 0; t < trials; t++) {
        const mem = new EpisodicMemory({ dim: D, backend: 'js', policy: { kind: 'importance', capacity: 2, weightBy: 'tdError', sample: true, seed: t + 1 } });
        await mem.write([c(0, { weight: w[0] }), c(1, { weight: w[1] })]);
        const r = await mem.write([c(2, { weight: w[2] })]);
        const left = new Set(valuesOf(mem));
        for (let i = 0; i < 3; i++) if (!left.has(i)) counts[i]++;
        expect(r.evicted.length + (r.caseIds[0] === -1 ? 1 : 0)).toBe(1);
      }
      const inv = w.map((x) => 1 / x);
      const z = inv.reduce((a, b) => a + b, 0);
      for (let i = 0; i < 3; i++) {
        const p = inv[i] / z;
        const sd = Math.sqrt((trials * p * (1 - p)));
        expect(Math.abs(counts[i] - trials * p)).toBeLessThan(4 * sd);
      }
    });
  });

  describe(`near-duplicate merge (NEC) [${backend}]`, () => {
    it('q ← q + η(G − q), n ← n + 1 for the same action within ε; otherwise append', async () => {
      const mem = make({ merge: { epsilon: 0.5, rate: 0.25 } });
      const base = c(1, { value: 4 });
      await mem.write([base]);
      const near = (dx: number, action: string, value: number): CaseInput => {
        const key = Float32Array.from(base.key as Float32Array);
        key[2] += dx;
        return { key, value, action };
      };
      let r = await mem.write([near(0.3, 'go', 8)]);
      expect(r.merged).toHaveLength(1);
      const id = r.merged[0];
      expect(mem.getCase(id)!.value).toBeCloseTo(4 + 0.25 * (8 - 4), 6);
      expect(mem.getCase(id)!.visits).toBe(2);
      r = await mem.write([near(0.3, 'stop', 8)]); // other action: appended
      expect(r.added).toHaveLength(1);
      r = await mem.write([near(0.6, 'go', 8)]); // outside ε: appended
      expect(r.added).toHaveLength(1);
      expect(mem.size).toBe(3);
      // The nearest same-action case within ε is the one updated.
      r = await mem.write([near(0.55, 'go', 0)]);
      expect(r.merged[0]).not.toBe(id);
      checkIndex(mem);
    });

    it("rate 'average' keeps the running mean of returns; merges within one batch too", async () => {
      const mem = make({ merge: { epsilon: 0.1, rate: 'average' } });
      const rng = new Mulberry32(3);
      const gs = Array.from({ length: 7 }, () => rng.normal() * 3);
      await mem.write(gs.slice(0, 4).map((g) => c(2, { value: g })));
      expect(mem.size).toBe(1);
      for (const g of gs.slice(4)) await mem.write([c(2, { value: g })]);
      const cs = mem.getCase(mem.ids()[0])!;
      expect(cs.visits).toBe(7);
      expect(cs.value).toBeCloseTo(gs.reduce((a, b) => a + b, 0) / 7, 5);
      checkIndex(mem);
      const est = await mem.estimate(c(2).key as Float32Array, 1);
      expect(est.value[0]).toBeCloseTo(cs.value, 5);
    });

    it('rejects bad options and bad cases', async () => {
      expect(() => make({ policy: { kind: 'replay', capacity: 0 } })).toThrow(/capacity/);
      expect(() => make({ merge: { epsilon: 1, rate: 2 } })).toThrow(/merge rate/);
      const mem = make({});
      await expect(mem.write([{ key: [1, 2], value: 1 }])).rejects.toThrow(/dim 4/);
      await expect(mem.write([{ key: [1, 2, 3, NaN], value: 1 }])).rejects.toThrow(/cases\[0\]\.key\[3\] is NaN/);
      expect(mem.size).toBe(0);
    });
  });
}

describe('episodes to cases (MATH §10)', () => {
  it('writes (x_t, G_t) per step with the merge rule; returns match a hand computation', async () => {
    const { casesFromEpisode } = await import('../../lib/memory/episodes');
    const keys = Float32Array.from([0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
    const cases = casesFromEpisode({ keys, dim: D, rewards: [0, 0, 1, 0], actions: ['a', 'b', 'a', 'b'], states: ['s0', 's1', 's2', 's3'], episode: 3 }, 0.5);
    expect(cases.map((c) => c.value)).toEqual([0.25, 0.5, 1, 0]);
    expect(cases.map((c) => c.step)).toEqual([0, 1, 2, 3]);
    expect(Array.from(cases[1].key)).toEqual([1, 0, 0, 0]);
    const mem = new EpisodicMemory({ dim: D, backend: 'js', merge: { epsilon: 0.01, rate: 'average' } });
    await mem.write(cases);
    // Step 2 (key 0001, action a) and step 0 (key 0001, action a) merge: mean of 0.25 and 1.
    expect(mem.size).toBe(3);
    const merged = [...mem.ids()].map((id) => mem.getCase(id)!).find((c) => c.visits === 2)!;
    expect(merged.value).toBeCloseTo(0.625, 6);
    expect(() => casesFromEpisode({ keys, dim: D, rewards: [1] }, 0.9)).toThrow(/expected 1 steps/);
  });
});

describe('concurrent writes', () => {
  it('are serialised: unawaited writes merge as if made one after another', async () => {
    const mem = new EpisodicMemory({ dim: D, backend: 'js', merge: { epsilon: 0.1, rate: 'average' } });
    await Promise.all([1, 2, 3, 4].map((v) => mem.write([c(5, { value: v })])));
    expect(mem.size).toBe(1);
    const only = mem.getCase(mem.ids()[0])!;
    expect(only.visits).toBe(4);
    expect(only.value).toBeCloseTo(2.5, 6);
    // A failing write does not block the next one.
    await expect(mem.write([{ key: [1], value: 0 }])).rejects.toThrow(/dim/);
    await mem.write([c(9)]);
    expect(mem.size).toBe(2);
  });
});
