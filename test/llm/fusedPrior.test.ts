/**
 * The model prior's fused native call (issue 12): LlmModel.score with {temperature, q, alpha}
 * scores the candidates, normalises log μ = s/τ − logsumexp(s/τ) and applies MATH §5 in one job.
 * Checked against an independent recomputation here (the engine's raw scores, float64 formulas
 * written out), against the unfused path (logPrior + improvePolicy), and through MemQAgent, which
 * acts through it: the agent's policy and V(s) with the fused prior equal those with the same
 * prior hidden behind a wrapper that offers only logPrior.
 * Tolerances: log μ 2e-6 absolute (float32 output of a float64 computation), π 1e-6, V 1e-5.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { MEMQ_DEFAULTS, MemQAgent } from '../../lib/agent/memq';
import { HashingEncoder } from '../../lib/encoders/hashing';
import { encodePairs } from '../../lib/encoders/types';
import { ModelPrior } from '../../lib/llm/modelPrior';
import type { Prior } from '../../lib/llm/prior';
import { improvePolicy } from '../../lib/policy/klImprove';
import { TestRng, testSeed } from '../helpers/rng';
import { tinyWordModel } from '../helpers/tinyModel';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-fused-prior-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const WORDS = ['go', 'to', 'fridge', 'cabinet', '1', '2', '3', 'take', 'cup', 'apple', 'look', 'open', 'put', 'in', 'from'];

const setup = () => tinyWordModel(root, WORDS, { seed: 9, initStd: 0.5 });

const randomAction = (rng: TestRng) =>
  Array.from({ length: 1 + rng.int(3) }, () => WORDS[rng.int(WORDS.length)]).join(' ');

/** log μ, π, V in float64 from raw scores (the formulas written out, no shared code). */
function reference(raw: ArrayLike<number>, q: ArrayLike<number>, tau: number, alpha: number) {
  const s = Array.from(raw, (x) => x / tau);
  const m = Math.max(...s);
  const lse = m + Math.log(s.reduce((z, x) => z + Math.exp(x - m), 0));
  const logMu = s.map((x) => x - lse);
  const l = logMu.map((x, j) => x + q[j] / alpha);
  const lm = Math.max(...l);
  const z = l.reduce((acc, x) => acc + Math.exp(x - lm), 0);
  return { logMu, policy: l.map((x) => Math.exp(x - lm) / z), value: alpha * (lm + Math.log(z)) };
}

describe('fused prior scoring + KL improvement (LlmModel.score with q and alpha)', () => {
  it('equals an independent float64 recomputation and the unfused path on random states', async () => {
    const seed = testSeed();
    console.log(`fusedPrior seed ${seed} (MEMQ_TEST_SEED pins it)`);
    const rng = new TestRng(seed);
    const { tok, model, end } = setup();
    for (const [tau, alpha, lengthNormalize] of [[1, 0.6, false], [0.7, 0.1, true], [2, 3, true]] as const) {
      const prior = new ModelPrior(model, tok, { endToken: end, lengthNormalize, temperature: tau });
      for (let t = 0; t < 6; t++) {
        const state = `task: you see ${randomAction(rng)} ${t}`;
        const actions = Array.from({ length: 1 + rng.int(7) }, () => randomAction(rng));
        const q = Float32Array.from(actions, () => 4 * rng.next() - 2);
        const fused = await prior.improve(state, actions, q, alpha);
        expect(fused.logPrior.length).toBe(actions.length);
        expect(fused.policy.length).toBe(actions.length);
        const raw = (await model.score([tok.encode(`${state}\n> `)], [actions.map((a) => [...tok.encode(a), end])], { lengthNormalize }))[0];
        const ref = reference(raw, q, tau, alpha);
        actions.forEach((_, j) => {
          expect(Math.abs(fused.logPrior[j] - ref.logMu[j])).toBeLessThan(2e-6);
          expect(Math.abs(fused.policy[j] - ref.policy[j])).toBeLessThan(1e-6);
        });
        expect(Math.abs(fused.value - ref.value)).toBeLessThan(1e-5);
        // the unfused path: the same log μ and improvePolicy on it
        const lp = await prior.logPrior(state, actions);
        expect(Array.from(lp)).toEqual(Array.from(fused.logPrior));
        const un = improvePolicy([{ logPrior: lp, q }], alpha);
        actions.forEach((_, j) => expect(Math.abs(un.policy[0][j] - fused.policy[j])).toBeLessThan(1e-7));
        expect(Math.abs(un.value[0] - fused.value)).toBeLessThan(1e-6);
      }
    }
  });

  it('several prompts in one call: each group normalised and improved on its own', async () => {
    const rng = new TestRng(testSeed() + 1);
    const { tok, model, end } = setup();
    const prompts = [0, 1, 2, 3].map((i) => tok.encode(`task: you see cup ${i}\n> `));
    const cands = prompts.map(() => Array.from({ length: 1 + rng.int(5) }, () => [...tok.encode(randomAction(rng)), end]));
    const q = cands.map((c) => Float32Array.from(c, () => rng.next() * 2 - 1));
    const r = await model.scoreImprove(prompts, cands, q, 0.3, { temperature: 0.9 });
    const raw = await model.score(prompts, cands);
    prompts.forEach((_, i) => {
      const ref = reference(raw[i], q[i], 0.9, 0.3);
      expect(r.policy[i].length).toBe(cands[i].length);
      cands[i].forEach((_, j) => {
        expect(Math.abs(r.logPrior[i][j] - ref.logMu[j])).toBeLessThan(2e-6);
        expect(Math.abs(r.policy[i][j] - ref.policy[j])).toBeLessThan(1e-6);
      });
      expect(Math.abs(r.value[i] - ref.value)).toBeLessThan(1e-5);
    });
  });

  it('bad q, alpha and temperature: a clear error naming the argument, and the model keeps working', async () => {
    const { tok, model, end } = setup();
    const p = [tok.encode('task: you see cup\n> ')];
    const c = [[[...tok.encode('take cup'), end], [...tok.encode('look'), end]]];
    await expect(model.scoreImprove(p, c, [new Float32Array(3)], 1)).rejects.toThrow(/q\[0\] must be a Float32Array of 2 values/);
    await expect(model.scoreImprove(p, c, [], 1)).rejects.toThrow(/q must hold one Float32Array per prompt/);
    await expect(model.scoreImprove(p, c, [[0, 1] as never], 1)).rejects.toThrow(TypeError);
    await expect(model.scoreImprove(p, c, [Float32Array.of(0, 1)], -1)).rejects.toThrow(RangeError);
    await expect(model.scoreImprove(p, c, [Float32Array.of(0, NaN)], 1)).rejects.toThrow(/q\[1\] is not finite/);
    await expect(model.scoreImprove(p, c, [Float32Array.of(0, 1)], -1)).rejects.toThrow(/alpha must be finite and >= 0, got -1/);
    await expect(model.scoreImprove(p, c, [Float32Array.of(0, 1)], NaN)).rejects.toThrow(/alpha/);
    await expect(model.scoreImprove(p, c, [Float32Array.of(0, 1)], 1, { temperature: 0 })).rejects.toThrow(/temperature must be a finite number > 0/);
    await expect(model.score(p, c, { temperature: -2 })).rejects.toThrow(/temperature must be a finite number > 0/);
    const ok = await model.scoreImprove(p, c, [Float32Array.of(0, 1)], 1);
    expect(Math.abs(ok.policy[0][0] + ok.policy[0][1] - 1)).toBeLessThan(1e-6);
  });

  it('MemQAgent acts the same through the fused call as through logPrior + improvePolicy', async () => {
    const rng = new TestRng(testSeed() + 2);
    const { tok, model, end } = setup();
    const fusedPrior = new ModelPrior(model, tok, { endToken: end, temperature: 0.8 });
    const plain: Prior = { name: 'plain', logPrior: (s, a) => fusedPrior.logPrior(s, a) };
    const encoder = new HashingEncoder({ dim: 32 });
    const mk = (prior: Prior) => new MemQAgent({ ...MEMQ_DEFAULTS, alpha: 0.6, encoder, prior, seed: 3 });
    const a = mk(fusedPrior);
    const b = mk(plain);
    // the same memory in both: cases for random (state, action) pairs with random returns
    const states = Array.from({ length: 5 }, (_, i) => `task: you see ${randomAction(rng)} ${i}`);
    const acts = Array.from({ length: 8 }, () => randomAction(rng));
    const rows: Float32Array[] = [];
    const values: number[] = [];
    for (const s of states) {
      const some = acts.filter(() => rng.next() < 0.5);
      if (some.length === 0) continue;
      rows.push(await encodePairs(encoder, s, some));
      some.forEach(() => values.push(rng.next() * 2 - 1));
    }
    const flat = new Float32Array(values.length * 32);
    let o = 0;
    for (const r of rows) flat.set(r, (o += r.length) - r.length);
    await a.memory.writeRows(flat, values);
    await b.memory.writeRows(flat, values);
    let compared = 0;
    let informative = 0; // states where memory moved Q̂ off the void value
    for (const s of states) {
      const admissible = acts.filter(() => rng.next() < 0.7);
      if (admissible.length === 0) continue;
      const ea = await a.evaluate(s, admissible);
      const eb = await b.evaluate(s, admissible);
      expect(Array.from(ea.q)).toEqual(Array.from(eb.q));
      admissible.forEach((_, j) => expect(Math.abs(ea.policy[j] - eb.policy[j])).toBeLessThan(1e-7));
      expect(Math.abs(ea.value - eb.value)).toBeLessThan(1e-6);
      compared++;
      if (Array.from(ea.q).some((x) => Math.abs(x) > 1e-3)) informative++;
    }
    expect(compared).toBeGreaterThan(2);
    expect(informative).toBeGreaterThan(0);
  });
});
