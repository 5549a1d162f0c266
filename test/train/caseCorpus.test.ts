import { describe, expect, it } from 'vitest';
import * as reflect from '../../lib/agent/reflect';
import { caseConditionedState, caseMemoryOf, caseStateEncoder, sampleCases, CASE_RETRIEVAL_DEFAULTS, type CorpusStep } from '../../lib/train/caseCorpus';

const opts = (seed = 1) => ({ encoder: caseStateEncoder(128), ...CASE_RETRIEVAL_DEFAULTS, seed });

describe('case-conditioned prompts: one format for pretraining and the reflect agent', () => {
  it("the agent's prompt function is the corpus's", () => {
    expect(reflect.caseConditionedState).toBe(caseConditionedState);
    expect(reflect.REFLECT_DEFAULTS.m).toBe(CASE_RETRIEVAL_DEFAULTS.m);
    expect(reflect.REFLECT_DEFAULTS.bandwidth).toBe(CASE_RETRIEVAL_DEFAULTS.bandwidth);
    expect(reflect.REFLECT_DEFAULTS.voidWeight).toBe(CASE_RETRIEVAL_DEFAULTS.voidWeight);
    expect(caseConditionedState('now', { state: 'then', action: 'open door', value: 0.9 })).toBe(
      'a similar past situation:\nthen\n> open door\noutcome: success (return 0.90)\n\nnow:\nnow',
    );
  });
});

describe('sampleCases: the Parzen prior over the corpus, never the step\'s own game', () => {
  const steps: CorpusStep[] = [
    { state: 'task: open the door\nyou are in the hall, a door 1', action: 'open door 1', game: 0, reward: 1 },
    { state: 'task: open the door\nyou are in the hall, a door 2', action: 'open door 2', game: 1, reward: 1 },
    { state: 'task: open the door\nyou are in the hall, a window 1', action: 'look', game: 2, reward: 0 },
    { state: 'task: cook an egg\nyou are in the kitchen, a stove 1, a pan 1', action: 'take pan 1', game: 3, reward: 0 },
  ];

  it('samples in proportion to exp(−‖x − y‖²/(2h²)) over the cases (void mass left out), own game excluded', async () => {
    const o = opts(7);
    const mem = await caseMemoryOf(steps, o);
    expect(mem.size).toBe(4);
    const query = 'task: open the door\nyou are in the hall, a door 3';
    // reference: the kernel of each other-game case, computed here from the encoder's keys
    const keys = await o.encoder.encode([query, ...steps.map((s) => s.state)]);
    const d = o.encoder.dim;
    const k = steps.map((_, i) => {
      let d2 = 0;
      for (let j = 0; j < d; j++) d2 += (keys[j] - keys[(i + 1) * d + j]) ** 2;
      return Math.exp(-d2 / (2 * o.bandwidth ** 2));
    });
    const own = 1; // the query belongs to game 1: its case must never be drawn
    const w = k.map((x, i) => (i === own ? 0 : x));
    const z = w.reduce((a, b) => a + b, 0);
    const n = 3000;
    const got = await sampleCases(mem, Array.from({ length: n }, () => ({ state: query, game: own })), o);
    const counts = steps.map(() => 0);
    for (const c of got) {
      expect(c).not.toBeNull();
      counts[steps.findIndex((s) => s.action === c!.action)]++;
    }
    expect(counts[own]).toBe(0);
    const tv = 0.5 * counts.reduce((s, c, i) => s + Math.abs(c / n - w[i] / z), 0);
    expect(tv).toBeLessThan(0.03);
    // the case carries its discounted return: game 0's only step returns 1, game 2's 0
    expect(got.find((c) => c!.action === 'open door 1')!.value).toBeCloseTo(1, 6);
  });

  it('returns null where only the own game has cases', async () => {
    const o = opts();
    const mem = await caseMemoryOf(steps.slice(0, 1), o);
    expect(await sampleCases(mem, [{ state: steps[0].state, game: 0 }], o)).toEqual([null]);
  });
});
