/**
 * ModelPrior's action-token cache (issue 12, item 5): scores with the bounded LRU cache equal the
 * uncached path and an independent recomputation (fresh tokenisation, the engine's raw scores,
 * log-sum-exp here) on random action sets with repeated and evicted strings; each distinct
 * action is tokenised once while it stays cached.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelPrior } from '../../lib/llm/modelPrior';
import { TestRng, testSeed } from '../helpers/rng';
import { tinyWordModel } from '../helpers/tinyModel';
import type { TextTokenizer } from '../../lib/llm/tokenizer';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-prior-cache-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const WORDS = ['go', 'to', 'fridge', 'cabinet', '1', '2', '10', 'take', 'cup', 'apple', 'look', 'open', 'put', 'in', 'from'];

const setup = () => tinyWordModel(root, WORDS, { seed: 4, initStd: 0.3 });

/** A tokenizer that records every text it encodes. */
function counting(tok: TextTokenizer): { tok: TextTokenizer; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const wrapped = Object.create(tok) as TextTokenizer;
  wrapped.encode = (text: string) => {
    calls.set(text, (calls.get(text) ?? 0) + 1);
    return tok.encode(text);
  };
  return { tok: wrapped, calls };
}

describe('ModelPrior action-token cache', () => {
  it('cached scores equal the uncached path and an independent recomputation on random action sets', async () => {
    const seed = testSeed();
    console.log(`priorCache seed ${seed} (MEMQ_TEST_SEED pins it)`);
    const rng = new TestRng(seed);
    const { tok, model, end } = setup();
    // a pool of 12 distinct actions and a cache of 5: sets repeat strings and evict them
    const pool = Array.from({ length: 12 }, (_, i) => {
      const n = 1 + rng.int(3);
      return [...Array.from({ length: n }, () => WORDS[rng.int(WORDS.length)]), String(i)].join(' ');
    });
    for (const lengthNormalize of [true, false]) {
      const cached = new ModelPrior(model, tok, { endToken: end, lengthNormalize, actionTokenCache: 5, temperature: 0.7 });
      const uncached = new ModelPrior(model, tok, { endToken: end, lengthNormalize, actionTokenCache: 0, temperature: 0.7 });
      for (let call = 0; call < 12; call++) {
        const items = Array.from({ length: 1 + rng.int(3) }, (_, i) => ({
          state: `task: you see cup ${call} ${i}`,
          // with replacement: an action may appear twice in one set
          actions: Array.from({ length: 1 + rng.int(6) }, () => pool[rng.int(pool.length)]),
        }));
        const a = await cached.logPriorMany(items);
        const b = await uncached.logPriorMany(items);
        // independent: fresh tokens, the engine's raw scores, log-sum-exp over the set here
        const raw = await model.score(
          items.map((it) => tok.encode(`${it.state}\n> `)),
          items.map((it) => it.actions.map((x) => [...tok.encode(x), end])),
          { lengthNormalize },
        );
        items.forEach((it, i) => {
          expect(a[i].length).toBe(it.actions.length);
          expect(Array.from(a[i])).toEqual(Array.from(b[i])); // bit for bit
          const s = Array.from(raw[i], (x) => x / 0.7);
          const m = Math.max(...s);
          const lse = m + Math.log(s.reduce((z, x) => z + Math.exp(x - m), 0));
          s.forEach((x, j) => expect(Math.abs(a[i][j] - (x - lse))).toBeLessThan(1e-6));
        });
      }
      for (const x of pool) expect(cached.actionTokens(x)).toEqual([...tok.encode(x), end]);
    }
  });

  it('the cached token arrays are frozen: a caller cannot corrupt the cache', () => {
    const { tok, model, end } = setup();
    const prior = new ModelPrior(model, tok, { endToken: end });
    const ids = prior.actionTokens('open fridge 1');
    expect(() => (ids as number[]).push(1)).toThrow(TypeError);
    expect(prior.actionTokens('open fridge 1')).toEqual([...tok.encode('open fridge 1'), end]);
  });

  it('tokenises each distinct action once while it is cached, and again only after eviction (LRU)', async () => {
    const { tok: base, model, end } = setup();
    const { tok, calls } = counting(base);
    const actionCalls = () => new Map([...calls].filter(([t]) => !t.endsWith('\n> ')));
    const prior = new ModelPrior(model, tok, { endToken: end });
    const sets = [['look', 'take cup 1', 'go to fridge 1'], ['look', 'open fridge 1'], ['take cup 1', 'look', 'look'], ['go to fridge 1']];
    for (let rep = 0; rep < 3; rep++) await prior.logPriorMany(sets.map((actions, i) => ({ state: `task: you see ${i}`, actions })));
    prior.trainingSequences('task: you see 0', ['look', 'open fridge 1'], () => 1);
    const distinct = new Set(sets.flat());
    expect(actionCalls().size).toBe(distinct.size);
    for (const a of distinct) expect(actionCalls().get(a)).toBe(1);
    // prompts are tokenised per call (states change every step)
    expect(calls.get('task: you see 0\n> ')).toBe(4);

    // capacity 2: a, b, a (hit: a is now the most recent), c evicts b, a hits, b is tokenised again
    const small = counting(base);
    const lru = new ModelPrior(model, small.tok, { endToken: end, actionTokenCache: 2 });
    for (const a of ['look', 'take cup 1', 'look', 'open fridge 1', 'look', 'take cup 1']) lru.actionTokens(a);
    expect(Object.fromEntries(small.calls)).toEqual({ look: 1, 'take cup 1': 2, 'open fridge 1': 1 });
    // off: every request tokenises
    const none = counting(base);
    const off = new ModelPrior(model, none.tok, { endToken: end, actionTokenCache: 0 });
    for (let i = 0; i < 3; i++) off.actionTokens('look');
    expect(none.calls.get('look')).toBe(3);
    expect(() => new ModelPrior(model, base, { actionTokenCache: -1 })).toThrow(/actionTokenCache must be an integer >= 0/);
  });
});
