import { describe, expect, it } from 'vitest';
import { softValueIteration } from '../../lib/policy/solvers';
import { klImproveRow } from '../../lib/policy/klImprove';
import { MemQPolicy } from '../helpers/memqPolicy';
import { Mulberry32 } from '../../lib/policy/rng';
import { TwoTimeScaleLearner, type SlowMemoryWriter } from '../../lib/policy/td';
import { EpisodicMemory, nativeAvailable } from '../../lib/memory/episodic';
import { randomMdp } from './randomMdp';
import '../helpers/referenceIndex'; // registers the float64 ReferenceIndex as backend 'js'

/**
 * Sample-based learning (MATH §7) on a small MDP, checked against the exact soft optimum of the
 * solver: soft TD on the fast clock (η_n = n^-0.6 per pair), memory rewritten every K = 20 steps
 * with a slower merge rate (β_k = k^-0.8 per case, so β/η → 0), acting with π ∝ μ exp(Q/α)
 * mixed half-and-half with μ for exploration (soft TD is off-policy).
 */
const S = 5;
const A = 3;
const alpha = 0.5;
const gamma = 0.8;
const STEPS = 60_000;
const TOL_Q = 0.06; // stated tolerance: sup-norm error of the memory's Q̂ against Q*
const TOL_PI = 0.02; // and of the memory-driven Mem-Q policy against π*

const backend: 'native' | 'js' = nativeAvailable() ? 'native' : 'js';

function onehot(s: number, a: number): Float32Array {
  const k = new Float32Array(S * A);
  k[s * A + a] = 1;
  return k;
}

describe(`two-time-scale TD + memory reaches the exact soft optimum [${backend}]`, () => {
  it(`sup |Q̂_memory − Q*| < ${TOL_Q} and sup |π_MemQ − π*| < ${TOL_PI} after ${STEPS} steps`, async () => {
    const mdp = randomMdp({ S, A, seed: 31, priorZeros: 0.15 });
    const exact = softValueIteration(mdp, { alpha, gamma });
    expect(exact.residual).toBeLessThan(1e-9);

    // Keys enc(s ⊕ a): one-hot, with a bandwidth small enough that each read sees its own case.
    const memory = new EpisodicMemory({
      dim: S * A,
      backend,
      kernel: { kernel: 'gaussian', bandwidth: 0.05 },
      merge: { epsilon: 1e-3, rate: { power: 0.8 } },
    });
    const writer: SlowMemoryWriter = {
      async rewrite(batch) {
        await memory.write(
          batch.states.map((s, i) => ({
            key: onehot(Number(s), batch.actions[i]),
            value: batch.values[i],
            state: s,
            action: String(batch.actions[i]),
            tdError: batch.tdErrors[i],
          })),
        );
      },
    };
    const learner = new TwoTimeScaleLearner(writer, { alpha, gamma, K: 20, seed: 5, epsilon: 0.5, eta: (n) => Math.pow(n, -0.6) });
    const prior = (s: number) => mdp.prior.subarray(s * A, (s + 1) * A);
    const env = new Mulberry32(11);
    let s = env.int(S);
    for (let t = 0; t < STEPS; t++) {
      if (t % 25 === 0) s = env.int(S); // restarts keep every state visited
      const a = learner.act(String(s), A, prior(s));
      const next = env.categorical(mdp.P, (s * A + a) * S, S);
      await learner.observe(
        { state: String(s), action: a, reward: mdp.R[s * A + a], next: String(next), nextActions: A, nextPrior: prior(next), terminal: false },
        A,
      );
      s = next;
    }
    await learner.flush();
    expect(learner.rewriteCount).toBeGreaterThanOrEqual(STEPS / 20);

    // Read the slow memory back (one batched estimate) and compare with Q*.
    const keys = new Float32Array(S * A * S * A);
    for (let i = 0; i < S * A; i++) keys[i * S * A + i] = 1;
    const est = await memory.estimate(keys, 1);
    let errMem = 0;
    let errFast = 0;
    let visited = 0;
    for (let st = 0; st < S; st++) {
      for (let a = 0; a < A; a++) {
        if (mdp.prior[st * A + a] === 0) continue; // never taken: no sample, no claim
        visited++;
        errMem = Math.max(errMem, Math.abs(est.value[st * A + a] - exact.Q[st * A + a]));
        errFast = Math.max(errFast, Math.abs(learner.fast.q(String(st), A)[a] - exact.Q[st * A + a]));
      }
    }
    expect(memory.size).toBe(visited);
    // Untrained memory (all zero) would be far off: the tolerance is meaningful.
    const scale = Math.max(...Array.from(exact.Q).map(Math.abs));
    expect(scale).toBeGreaterThan(10 * TOL_Q);
    console.log(`learning: sup|Q_mem − Q*| = ${errMem.toExponential(3)}, sup|Q_fast − Q*| = ${errFast.toExponential(3)}, max|Q*| = ${scale.toFixed(3)}`);
    expect(errMem).toBeLessThan(TOL_Q);

    // Mem-Q acting from memory (§10) with μ = the MDP prior recovers π*.
    const enc = (texts: string[]) => {
      const out = new Float32Array(texts.length * S * A);
      texts.forEach((t, i) => {
        const [st, a] = t.split('\n> ').map(Number);
        out.set(onehot(st, a), i * S * A);
      });
      return out;
    };
    const agent = new MemQPolicy(memory, enc, { alpha, m: 1, voidWeight: 0 });
    let errPi = 0;
    for (let st = 0; st < S; st++) {
      const choice = await agent.act(String(st), ['0', '1', '2'], { prior: prior(st), mode: 'argmax' });
      for (let a = 0; a < A; a++) errPi = Math.max(errPi, Math.abs(choice.policy[a] - exact.policy[st * A + a]));
      // And the soft value from memory is close to V*.
      const v = klImproveRow(prior(st), 0, choice.q, 0, A, alpha);
      expect(Math.abs(v - exact.V[st])).toBeLessThan(TOL_Q);
    }
    console.log(`learning: sup|π_MemQ − π*| = ${errPi.toExponential(3)}`);
    expect(errPi).toBeLessThan(TOL_PI);
  });
});
