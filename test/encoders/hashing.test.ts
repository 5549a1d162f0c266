import { describe, expect, it } from 'vitest';
import { HashingEncoder, CachedEncoder, hashString, tokenize } from '../../lib/encoders/hashing';
import { pairText } from '../../lib/encoders/types';

const cos = (a: Float32Array, b: Float32Array) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

describe('HashingEncoder (signed feature hashing, TF, L2)', () => {
  const enc = new HashingEncoder({ dim: 256 });
  const texts = [
    'You arrive at cabinet 4. The cabinet 4 is closed.',
    'You arrive at cabinet 3. The cabinet 3 is closed.',
    'You pick up the apple 1 from the countertop 1.',
    '',
  ];

  it('rows are unit length (zero for empty text), deterministic, and d wide', () => {
    const a = enc.encode(texts);
    expect(a.length).toBe(4 * 256);
    for (let i = 0; i < 3; i++) expect(cos(a.subarray(i * 256, (i + 1) * 256), a.subarray(i * 256, (i + 1) * 256))).toBeCloseTo(1, 5);
    expect(Array.from(a.subarray(3 * 256)).every((x) => x === 0)).toBe(true);
    expect(Array.from(new HashingEncoder({ dim: 256 }).encode(texts))).toEqual(Array.from(a));
  });

  it('matches a direct computation of the hashed features for a tiny text', () => {
    const e = new HashingEncoder({ dim: 64, wordNgrams: [1, 1], charNgrams: null, tf: 'raw', lineFeatures: false });
    const v = e.encode(['b a b']);
    const want = new Float64Array(64);
    for (const [w, c] of [['b', 2], ['a', 1]] as [string, number][]) {
      const f = 'w:' + w;
      const sign = hashString(f, 0x5bd1e995) & 1 ? 1 : -1;
      want[hashString(f) % 64] += sign * c;
    }
    const n = Math.sqrt(want.reduce((s, x) => s + x * x, 0));
    for (let j = 0; j < 64; j++) expect(v[j]).toBeCloseTo(want[j] / n, 6);
  });

  it('similar texts are closer than unrelated ones', () => {
    const a = enc.encode(texts);
    const row = (i: number) => a.subarray(i * 256, (i + 1) * 256);
    expect(cos(row(0), row(1))).toBeGreaterThan(cos(row(0), row(2)) + 0.3);
  });

  it('encodePairs equals encode(state ⊕ action) for every action', async () => {
    const state = 'task: put a clean apple in fridge.\n> go to countertop 1\nOn the countertop 1, you see an apple 1, and a knife 2.';
    const actions = ['take apple 1 from countertop 1', 'go to fridge 1', 'examine countertop 1', 'take apple 1 from countertop 1 apple apple', 'look'];
    for (const e of [enc, new HashingEncoder({ dim: 100, tf: 'raw' }), new HashingEncoder({ dim: 512, tf: 'binary', wordNgrams: [1, 3] })]) {
      const fast = e.encodePairs(state, actions);
      const slow = e.encode(actions.map((a) => pairText(state, a)));
      for (let i = 0; i < slow.length; i++) expect(Math.abs(fast[i] - slow[i])).toBeLessThan(1e-6);
      const cached = new CachedEncoder(e);
      const c1 = await cached.encodePairs(state, actions);
      const c2 = await cached.encodePairs(state, actions);
      expect(Array.from(c2)).toEqual(Array.from(c1));
      for (let i = 0; i < slow.length; i++) expect(Math.abs(c1[i] - slow[i])).toBeLessThan(1e-6);
    }
  });

  it('bad options and inputs are clear errors', () => {
    expect(() => new HashingEncoder({ dim: 0 })).toThrow(/dim must be an integer/);
    expect(() => new HashingEncoder({ wordNgrams: [2, 1] })).toThrow(/wordNgrams/);
    expect(() => new HashingEncoder({ wordNgrams: null, charNgrams: null })).toThrow(/at least one/);
    expect(() => enc.encode([3 as any])).toThrow(TypeError);
    expect(tokenize('Go to Cabinet-12!')).toEqual(['go', 'to', 'cabinet', '12']);
  });
});
