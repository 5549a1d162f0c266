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

/**
 * A corpus where only the case knows the answer: each game is one step at a keypad in a room;
 * the room's family fixes the button, different for every family. On held-out families the
 * plain prompt cannot know the button (the void prompt is near uniform over the four), but a
 * case retrieved from another game of the same room carries it.
 */
describe('a tiny case-conditioned pretrain (memq model pretrain with cases.share)', () => {
  const buttons = ['press red', 'press green', 'press blue', 'press yellow'];
  const words = ['dusty', 'bright', 'narrow', 'cold', 'quiet', 'humid', 'tiny', 'grand', 'cellar', 'attic', 'study', 'garage', 'pantry',
    'hallway', 'library', 'vault', 'lamp', 'rug', 'clock', 'mirror', 'crate', 'barrel', 'painting', 'statue', 'candle', 'curtain', 'chest',
    'bench', 'shelf', 'globe', 'fern', 'anvil'];
  // six words per room, a different combination for each: rooms share few words, so a room's own cases are its nearest
  const family = (f: number) => {
    const own: string[] = [];
    let x = (f + 1) * 2654435761 >>> 0;
    while (own.length < 6) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      const w = words[x % words.length];
      if (!own.includes(w)) own.push(w);
    }
    return { state: `task: open the safe\nYou see a ${own.join(', a ')}. A keypad has four buttons.`, action: buttons[(f * 7 + (f >> 3)) % 4] };
  };
  const stepsOf = (fams: number[], perFamily: number, game0: number) =>
    fams.flatMap((f, i) => Array.from({ length: perFamily }, (_, r) => ({ ...family(f), admissible: buttons, game: game0 + i * perFamily + r, reward: 1 })));

  let gain: { relevant: { states: number; meanGain: number }; irrelevant: { states: number; meanGain: number } } | null = null;

  it('trains on a case prompt for every step and measures the gain on held-out rooms', async () => {
    const fs = await import('fs');
    const os = await import('os');
    const path = await import('path');
    const { pretrainPrior, defaultPretrainConfig } = await import('../../lib/train/pretrain');
    const { caseGain } = await import('../../lib/train/caseCorpus');
    const { LlmModel } = await import('../../lib/llm/model');
    const { loadTokenizer } = await import('../../lib/llm/tokenizer');
    const { ModelPrior } = await import('../../lib/llm/modelPrior');
    // many rooms with two games each: memorising room → button is harder than copying the case
    const trainFams = Array.from({ length: 300 }, (_, i) => i);
    const heldFams = Array.from({ length: 16 }, (_, i) => 300 + i);
    const corpus = stepsOf(trainFams, 2, 0);
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'memq-case-')), 'prior');
    const d = defaultPretrainConfig();
    const cfg = {
      ...d, evalGames: 0, steps: 300, batch: 32, lr: 3e-3,
      model: { ...d.model, hidden: 64, intermediate: 128, heads: 4, kvHeads: 2, layers: 2 },
      // a narrower kernel than the default 0.4: a room's own cases carry most of the Parzen mass
      cases: { ...d.cases, share: 1, dim: 256, bandwidth: 0.25 },
    };
    const rep = await pretrainPrior(cfg, dir, { corpus });
    expect(rep.cases!.prompts).toBe(corpus.length);
    const model = await LlmModel.load(dir);
    const tok = loadTokenizer(dir);
    const prior = new ModelPrior(model, tok, { endToken: tok.eosToken !== undefined ? tok.tokenToId(tok.eosToken) : undefined });
    // held-out rooms: two games each in the memory; the query is a third game of the room
    const o = { encoder: caseStateEncoder(cfg.cases.dim), ...CASE_RETRIEVAL_DEFAULTS, bandwidth: cfg.cases.bandwidth, seed: 5 };
    const memory = await caseMemoryOf([...corpus, ...stepsOf(heldFams, 2, 10_000)], o);
    const queries = stepsOf(heldFams, 3, 20_000);
    const cases = await sampleCases(memory, queries, o);
    const g = await caseGain(prior, queries, cases);
    gain = g;
    expect(g.relevant.states).toBeGreaterThanOrEqual(16);
    expect(Number.isFinite(g.relevant.meanGain)).toBe(true);
    fs.rmSync(path.dirname(dir), { recursive: true, force: true });
  }, 300_000);

  // KNOWN GAP (issue #18): the tiny prior does not learn to copy the case's action. Measured
  // here: relevant-case gain 1e-6 nats after 300 steps and 8e-7 after 1,500 (42 relevant
  // held-out states), i.e. the case and void prompts score the same; household's default
  // pretrain: +0.01 nats. `it.fails` keeps the target (a 0.5-nat margin) in view: this test
  // starts failing, and should become an `it`, when the prior learns to use the case.
  it.fails("puts more mass on a relevant case's action than the void prompt does (margin 0.5 nats)", () => {
    expect(gain).not.toBeNull();
    expect(gain!.relevant.meanGain).toBeGreaterThan(0.5);
  });
});
