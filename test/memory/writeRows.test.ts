// writeRows (flat keys, values and per-row metadata columns) against write(cases) on twin
// memories: random batches with merges and evictions give the same reports and the same
// contents; bad arguments are refused before anything changes, naming the argument and row.
import { describe, expect, it } from 'vitest';
import { EpisodicMemory, nativeAvailable } from '../../lib/memory/episodic';
import { casesFromRows } from '../../lib/memory/episodes';
import type { CaseInput, CaseRows, WritePolicy } from '../../lib/memory/types';
import { Mulberry32 } from '../../lib/policy/rng';
import '../helpers/referenceIndex'; // registers the float64 ReferenceIndex as backend 'js'

const backends: Array<'js' | 'native'> = nativeAvailable() ? ['js', 'native'] : ['js'];
const D = 5;

function contents(mem: EpisodicMemory) {
  const ids = mem.ids();
  return { ids: Array.from(ids), keys: Array.from(mem.getKeys(ids)), cases: Array.from(ids, (id) => ({ ...mem.getCase(id)!, time: 0 })) };
}

function randomRows(rng: Mulberry32, n: number): { keys: Float32Array; values: Float64Array; rows: CaseRows } {
  const keys = new Float32Array(n * D);
  for (let j = 0; j < keys.length; j++) keys[j] = rng.int(3) * 0.4;
  const values = Float64Array.from({ length: n }, () => rng.normal());
  const perRow = rng.next() < 0.5;
  return {
    keys,
    values,
    rows: {
      state: Array.from({ length: n }, () => `s${rng.int(3)}`),
      action: Array.from({ length: n }, () => `a${rng.int(2)}`),
      episode: perRow ? Float64Array.from({ length: n }, () => rng.int(5)) : 3,
      step: Float64Array.from({ length: n }, (_, t) => t),
      source: perRow ? Array.from({ length: n }, () => (rng.next() < 0.5 ? 'self' : 'demo')) : 'self',
      time: 1234,
      tdError: rng.next() < 0.5 ? Float64Array.from({ length: n }, () => rng.next()) : undefined,
    },
  };
}

/** The same batch as CaseInput objects, built independently of casesFromRows. */
function asCases(keys: Float32Array, values: ArrayLike<number>, rows: CaseRows): CaseInput[] {
  const at = <T>(v: T | ArrayLike<T> | undefined, i: number): T | undefined =>
    v === undefined ? undefined : typeof v === 'object' && v !== null && 'length' in (v as object) ? (v as ArrayLike<T>)[i] : (v as T);
  return Array.from(values, (value, i) => ({
    key: keys.slice(i * D, (i + 1) * D),
    value,
    state: at(rows.state, i),
    action: at(rows.action, i),
    episode: at(rows.episode, i),
    step: at(rows.step, i),
    source: at(rows.source, i),
    time: at(rows.time, i),
    tdError: at(rows.tdError, i),
  }));
}

const policies: WritePolicy[] = [
  { kind: 'unbounded' },
  { kind: 'replay', capacity: 9 },
  { kind: 'window', size: 8 },
  { kind: 'importance', capacity: 10, weightBy: 'tdError' },
];

for (const backend of backends) {
  describe(`writeRows [${backend}]`, () => {
    it('equals write(cases) on twin memories (random batches, merges, evictions)', async () => {
      const rng = new Mulberry32(21);
      for (const policy of policies) {
        const opts = { dim: D, backend, policy, merge: { epsilon: 0.5, rate: 'average' as const } };
        const a = new EpisodicMemory(opts);
        const b = new EpisodicMemory(opts);
        const c = new EpisodicMemory(opts);
        for (let w = 0; w < 8; w++) {
          const { keys, values, rows } = randomRows(rng, 1 + rng.int(12));
          const ra = await a.writeRows(keys, values, rows);
          const rb = await b.write(asCases(keys, values, rows));
          expect(ra, `${policy.kind} batch ${w}`).toEqual(rb);
          expect(contents(a), `${policy.kind} batch ${w}`).toEqual(contents(b));
          // casesFromRows is the same batch in per-case form (a third twin).
          expect(await c.write(casesFromRows(keys, values, rows, D)), `${policy.kind} batch ${w}`).toEqual(rb);
          expect(contents(c)).toEqual(contents(b));
        }
      }
    });

    it('the memory keeps its own copy of the keys', async () => {
      const mem = new EpisodicMemory({ dim: D, backend });
      const keys = new Float32Array(2 * D).fill(1);
      await mem.writeRows(keys, [1, 2]);
      keys.fill(NaN);
      expect(Array.from(mem.getKeys(mem.ids()))).toEqual(new Array(2 * D).fill(1));
      expect(mem.getCase(mem.ids()[0])).toMatchObject({ state: '', action: '', source: '', episode: -1, step: -1, visits: 1 });
    });

    it('refuses bad arguments before anything changes, naming the argument and the row', async () => {
      const mem = new EpisodicMemory({ dim: D, backend });
      await mem.writeRows(new Float32Array(D), [0.5]);
      const before = contents(mem);
      const k2 = new Float32Array(2 * D);
      const bad: [unknown, unknown, unknown, RegExp][] = [
        [[0, 0, 0, 0, 0], [1], undefined, /keys must be a Float32Array of n × dim \(5\) floats, got an array/],
        [k2, 'x', undefined, /values must be an array or typed array of numbers/],
        [k2, [1], undefined, /keys has 10 floats, expected 1 rows \(values.length\) × dim 5/],
        [Float32Array.from(k2, (_, j) => (j === 7 ? NaN : 0)), [1, 2], undefined, /keys row 1 column 2 is NaN/],
        [Float32Array.from(k2, () => 1e19), [1, 2], undefined, /keys row 0 has squared norm .* overflows float32/],
        [k2, [1, Infinity], undefined, /values\[1\] must be finite, got Infinity/],
        [k2, [1, 1e39], undefined, /values\[1\] 1e\+39 is not representable in float32/],
        [k2, [1, 2], [], /rows must be an object of per-row columns/],
        [k2, [1, 2], { step: [0] }, /rows.step has length 1, expected 2/],
        [k2, [1, 2], { step: [0, NaN] }, /rows.step\[1\] must be finite, got NaN/],
        [k2, [1, 2], { state: ['a', 3] }, /rows.state\[1\] must be a string, got number/],
        [k2, [1, 2], { source: 7 }, /rows.source must be a string or an array of strings/],
        [k2, [1, 2], { time: 'now' }, /rows.time must be a number or an array of numbers/],
      ];
      for (const [keys, values, rows, msg] of bad) {
        await expect(mem.writeRows(keys as Float32Array, values as number[], rows as CaseRows)).rejects.toThrow(msg);
      }
      expect(contents(mem)).toEqual(before);
    });
  });
}
