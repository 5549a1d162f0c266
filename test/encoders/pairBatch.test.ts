// encodePairBatch (one flat n × dim array for {state, action} pairs) against the joined-text
// route it replaces: encode(pairs.map(pairText)), row by row, for every encoder kind; and the
// pair format's own round trip.
import { describe, expect, it } from 'vitest';
import { AbstractingEncoder } from '../../lib/encoders/abstract';
import { CachedEncoder, HashingEncoder } from '../../lib/encoders/hashing';
import { PairEncoder } from '../../lib/encoders/pair';
import { pairPrompt, pairText, PAIR_SEPARATOR, splitPairText } from '../../lib/encoders/pairFormat';
import { encodePairBatch, type Encoder } from '../../lib/encoders/types';
import { Mulberry32 } from '../../lib/policy/rng';

function randomPairs(rng: Mulberry32, n: number) {
  const words = ['take', 'apple', 'cabinet', 'open', 'fridge', 'go', 'to', 'countertop', 'heat', 'cup', 'microwave'];
  const text = (k: number) => Array.from({ length: k }, () => (rng.next() < 0.3 ? String(1 + rng.int(9)) : words[rng.int(words.length)])).join(' ');
  const states = Array.from({ length: 4 }, () => `task: ${text(4)}\n${text(8)}\n> ${text(3)}\n${text(5)}`);
  return Array.from({ length: n }, () => ({ state: states[rng.int(states.length)], action: text(1 + rng.int(4)) }));
}

const encoders: [string, () => Encoder][] = [
  ['hashing', () => new HashingEncoder({ dim: 128 })],
  ['cached hashing', () => new CachedEncoder(new HashingEncoder({ dim: 64 }))],
  ['pair', () => new PairEncoder({ state: new HashingEncoder({ dim: 48 }), action: new HashingEncoder({ dim: 32, seed: 3 }), actionWeight: 0.3 })],
  ['pair (no relational)', () => new PairEncoder({ state: new HashingEncoder({ dim: 48 }), action: new HashingEncoder({ dim: 32, seed: 3 }), relational: false })],
  ['abstract(pair)', () => new AbstractingEncoder(new PairEncoder({ state: new HashingEncoder({ dim: 40 }), action: new HashingEncoder({ dim: 24, seed: 5 }) }))],
  ['abstract(hashing)', () => new AbstractingEncoder(new HashingEncoder({ dim: 96 }))],
];

describe('encodePairBatch', () => {
  for (const [name, make] of encoders) {
    it(`${name}: equals encode(pairText) row by row (random pairs, repeated states)`, async () => {
      const rng = new Mulberry32(5);
      for (const n of [0, 1, 7, 33]) {
        const pairs = randomPairs(rng, n);
        const enc = make();
        const got = await encodePairBatch(enc, pairs);
        expect(got).toBeInstanceOf(Float32Array);
        expect(got.length).toBe(n * enc.dim);
        const want = await make().encode(pairs.map((p) => pairText(p.state, p.action)));
        for (let j = 0; j < got.length; j++) expect(Math.abs(got[j] - want[j]), `${name} n=${n} [${j}]`).toBeLessThanOrEqual(1e-6);
      }
    });
  }

  it('refuses what is not an array of { state, action }, naming the element', async () => {
    const enc = new HashingEncoder({ dim: 8 });
    await expect(encodePairBatch(enc, 'x' as never)).rejects.toThrow(/pairs must be an array of \{ state, action \}/);
    await expect(encodePairBatch(enc, [{ state: 's', action: 'a' }, { state: 's' } as never])).rejects.toThrow(/pairs\[1\] must be \{ state: string, action: string \}/);
  });

  it('an encoder that returns the wrong length is named', async () => {
    const bad: Encoder = { name: 'short', dim: 4, encode: () => new Float32Array(3) };
    await expect(encodePairBatch(bad, [{ state: 's', action: 'a' }])).rejects.toThrow(/encoder short returned 3 floats for 1 pairs of dim 4/);
  });
});

describe('pair format', () => {
  it('pairText, pairPrompt and splitPairText agree (the action is the text after the last separator)', () => {
    const rng = new Mulberry32(9);
    for (const p of randomPairs(rng, 50)) {
      const t = pairText(p.state, p.action);
      expect(t).toBe(pairPrompt(p.state) + p.action);
      expect(t.startsWith(p.state + PAIR_SEPARATOR)).toBe(true);
      expect(splitPairText(t)).toEqual(p);
    }
    expect(splitPairText('no separator')).toEqual({ state: 'no separator', action: '' });
  });
});
