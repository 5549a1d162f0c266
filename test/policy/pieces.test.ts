import { describe, expect, it } from 'vitest';
import {
  adaptiveBandwidth,
  chooseBandwidth,
  crossValidatedBandwidth,
  leaveOneOutErrors,
  silvermanBandwidth,
} from '../../lib/policy/bandwidth';
import { droppedMass, parzenPrior } from '../../lib/policy/parzen';
import { discountedReturns } from '../../lib/policy/returns';
import { stateActionText } from '../../lib/policy/memq';
import { memQPolicy, MemQPolicy, pickAction } from '../helpers/memqPolicy';
import { Mulberry32 } from '../../lib/policy/rng';
import { EpisodicMemory, nativeAvailable } from '../../lib/memory/episodic';
import '../helpers/referenceIndex'; // registers the float64 ReferenceIndex as backend 'js'

const backends: Array<'js' | 'native'> = nativeAvailable() ? ['js', 'native'] : ['js'];

describe('bandwidth rules (MATH §9)', () => {
  it("Silverman's rule against a hand computation", () => {
    // Keys (0,0), (2,0), (0,2), (2,2): per-dimension mean 1, sample variance 4/3, σ̂ = 2/√3.
    // h = σ̂ (4 / ((d+2) n))^{1/(d+4)} = (2/√3) (4/16)^{1/6} = (2/√3) 2^{-1/3} = 0.91648...
    const keys = [0, 0, 2, 0, 0, 2, 2, 2];
    const h = silvermanBandwidth(keys, 4, 2);
    expect(h).toBeCloseTo((2 / Math.sqrt(3)) * Math.pow(2, -1 / 3), 14);
    expect(h).toBeCloseTo(0.916486, 6);
    // Different spreads per dimension: σ̂ is their mean. Dim 0: {0, 3, 6} sd 3; dim 1: {1, 1, 1} sd 0.
    const h2 = silvermanBandwidth([0, 1, 3, 1, 6, 1], 3, 2);
    expect(h2).toBeCloseTo(1.5 * Math.pow(4 / 12, 1 / 6), 14);
  });

  it('adaptive rule shrinks as n^{-1/(d+4)}', () => {
    expect(adaptiveBandwidth(1, 64, 2)).toBeCloseTo(0.5, 14);
    expect(adaptiveBandwidth(3, 1, 5)).toBe(3);
    expect(chooseBandwidth({ rule: 'fixed', h: 0.4 }, [], [], 0, 2)).toBe(0.4);
  });

  it('leave-one-out errors match a direct computation; CV picks the sensible bandwidth', () => {
    const rng = new Mulberry32(5);
    const n = 120;
    const keys = new Float64Array(n);
    const values = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      keys[i] = rng.next() * 6;
      values[i] = Math.sin(keys[i]) + 0.1 * rng.normal();
    }
    const grid = [0.003, 0.2, 50];
    const errs = leaveOneOutErrors(keys, values, n, 1, grid);
    // Direct: Q̂_{-i}(x_i) = Σ_{j≠i} k_ij q_j / Σ_{j≠i} k_ij.
    for (let g = 0; g < grid.length; g++) {
      let sse = 0;
      for (let i = 0; i < n; i++) {
        let num = 0;
        let den = 0;
        for (let j = 0; j < n; j++) {
          if (j === i) continue;
          const k = Math.exp(-((keys[i] - keys[j]) ** 2) / (2 * grid[g] ** 2));
          num += k * values[j];
          den += k;
        }
        sse += ((den > 0 ? num / den : 0) - values[i]) ** 2;
      }
      expect(errs[g]).toBeCloseTo(sse / n, 12);
    }
    const cv = crossValidatedBandwidth(keys, values, n, 1, grid);
    expect(cv.h).toBe(0.2);
    expect(chooseBandwidth({ rule: 'cv', grid }, keys, values, n, 1)).toBe(0.2);
  });
});

describe('Parzen retrieval prior with the void case (MATH §4)', () => {
  it('μ over the top-M and the void case; probabilities sum to 1; the void keeps mass', () => {
    const p = parzenPrior([4, 9, -1], [0.5, 0.25, 0], 0.25);
    expect(Array.from(p.ids)).toEqual([4, 9]);
    expect(Array.from(p.caseProbs)).toEqual([0.5, 0.25]);
    expect(p.voidProb).toBe(0.25);
    expect(p.confidence).toBe(0.75);
    // Empty memory: all void; κ∅ = 0 with no mass: still all void (the agent can always act).
    expect(parzenPrior([-1, -1], [0, 0], 0.1).voidProb).toBe(1);
    expect(parzenPrior([], [], 0).voidProb).toBe(1);
    // Huge kernel mass: the void case still has positive probability.
    const big = parzenPrior([1], [1e12], 1e-3);
    expect(big.voidProb).toBeGreaterThan(0);
    expect(big.caseProbs[0] + big.voidProb).toBeCloseTo(1, 15);
    expect(droppedMass(0.75, 1, 0.25)).toBeCloseTo(0.2, 15);
    expect(() => parzenPrior([1], [1], -1)).toThrow(/voidWeight/);
  });

  for (const backend of backends) {
    it(`EpisodicMemory.retrievalPrior matches the full Parzen sum, with the dropped mass [${backend}]`, async () => {
      const rng = new Mulberry32(8);
      const d = 3;
      const mem = new EpisodicMemory({ dim: d, backend, kernel: { kernel: 'gaussian', bandwidth: 1.5 } });
      const n = 40;
      const keys = Array.from({ length: n }, () => Float32Array.from({ length: d }, () => rng.normal()));
      await mem.write(keys.map((key, i) => ({ key, value: i })));
      const q = Float32Array.from({ length: 2 * d }, () => rng.normal());
      const m = 5;
      const kappa0 = 0.3;
      const priors = await mem.retrievalPrior(q, m, kappa0, { reportDropped: true });
      for (let b = 0; b < 2; b++) {
        const ks = keys.map((k) => Math.exp(-k.reduce((s, x, j) => s + (x - q[b * d + j]) ** 2, 0) / (2 * 1.5 * 1.5)));
        const total = ks.reduce((a, x) => a + x, 0);
        const top = [...ks].sort((a, c) => c - a).slice(0, m);
        const topSum = top.reduce((a, x) => a + x, 0);
        const p = priors[b];
        expect(p.ids).toHaveLength(m);
        for (let j = 0; j < m; j++) expect(p.caseProbs[j]).toBeCloseTo(top[j] / (topSum + kappa0), 5);
        expect(p.voidProb).toBeCloseTo(kappa0 / (topSum + kappa0), 5);
        expect(p.droppedMass!).toBeCloseTo((total - topSum) / (total + kappa0), 5);
        expect(p.droppedMass!).toBeGreaterThan(0);
      }
    });
  }
});

describe('returns', () => {
  it('discounted returns G_t = Σ γ^{k−t} r_k', () => {
    expect(Array.from(discountedReturns([1, 0, 2], 0.5))).toEqual([1.5, 1, 2]);
    expect(Array.from(discountedReturns([1, 1], 1, 10))).toEqual([12, 11]);
    expect(discountedReturns([], 0.9)).toHaveLength(0);
  });
});

describe('Mem-Q action choice (MATH §10)', () => {
  // A toy encoder: each (state ⊕ action) text gets its own one-hot key.
  const vocab = new Map<string, number>();
  const D = 16;
  const encode = (texts: string[]) => {
    const out = new Float32Array(texts.length * D);
    texts.forEach((t, i) => {
      if (!vocab.has(t)) vocab.set(t, vocab.size);
      out[i * D + vocab.get(t)!] = 1;
    });
    return out;
  };
  const actions = ['open door', 'take key', 'go north', 'look'];

  for (const backend of backends) {
    it(`cold start is π = μ; memory values shift π by §5; the void case keeps every action possible [${backend}]`, async () => {
      const mem = new EpisodicMemory({ dim: D, backend, kernel: { kernel: 'gaussian', bandwidth: 0.2 } });
      const prior = [0.1, 0.2, 0.3, 0.4];
      const agent = new MemQPolicy(mem, encode, { alpha: 0.5, m: 4, voidWeight: 0.5, seed: 3 });
      const cold = await agent.act('kitchen', actions, { prior, mode: 'argmax' });
      expect(Array.from(cold.policy)).toEqual(prior.map((p) => expect.closeTo(p, 12)));
      expect(cold.action).toBe('look');
      expect(Array.from(cold.confidence)).toEqual([0, 0, 0, 0]);
      // Remember a high return for 'take key' and a low one for 'look'.
      await mem.write([
        { key: encode([stateActionText('kitchen', 'take key')]), value: 2, action: 'take key' },
        { key: encode([stateActionText('kitchen', 'look')]), value: -1, action: 'look' },
      ]);
      const warm = await agent.act('kitchen', actions, { prior, mode: 'argmax' });
      // Q̂ = (k q + κ∅ q∅) / (k + κ∅) with k = 1 at the exact key: 2/1.5 and −1/1.5; others q∅ = 0.
      expect(warm.q[1]).toBeCloseTo(2 / 1.5, 5);
      expect(warm.q[3]).toBeCloseTo(-1 / 1.5, 5);
      expect(warm.q[0]).toBeCloseTo(0, 8); // other keys are √2 away: k = e^{-25}
      expect(warm.confidence[1]).toBeCloseTo(1 / 1.5, 5);
      const want = memQPolicy(warm.q, 0.5, prior).policy;
      const z = prior.reduce((s, p, i) => s + p * Math.exp(warm.q[i] / 0.5), 0);
      for (let i = 0; i < 4; i++) {
        expect(warm.policy[i]).toBeCloseTo((prior[i] * Math.exp(warm.q[i] / 0.5)) / z, 10);
        expect(warm.policy[i]).toBeCloseTo(want[i], 12);
        expect(warm.policy[i]).toBeGreaterThan(0);
      }
      expect(warm.action).toBe('take key');
      expect(warm.value).toBeCloseTo(0.5 * Math.log(z), 10);
    });
  }

  it('sampling follows π (seeded); argmax takes the mode; μ = 0 is never chosen', () => {
    const rng = new Mulberry32(42);
    const pi = [0.5, 0, 0.2, 0.3];
    const counts = [0, 0, 0, 0];
    const N = 20000;
    for (let i = 0; i < N; i++) counts[pickAction(pi, 'sample', rng)]++;
    expect(counts[1]).toBe(0);
    for (let i = 0; i < 4; i++) expect(Math.abs(counts[i] / N - pi[i])).toBeLessThan(4 * Math.sqrt((pi[i] * (1 - pi[i])) / N) + 1e-9);
    expect(pickAction(pi, 'argmax', rng)).toBe(0);
    const { policy } = memQPolicy([100, 1000, 0, 0], 0.1, [0.5, 0, 0.25, 0.25]);
    expect(policy[1]).toBe(0);
    // Same seed, same choices.
    const a = new Mulberry32(7);
    const b = new Mulberry32(7);
    for (let i = 0; i < 50; i++) expect(pickAction(pi, 'sample', a)).toBe(pickAction(pi, 'sample', b));
  });
});

describe('KL improvement: native batch kernel against the float64 reference (MATH §5)', () => {
  it('random ragged rows with zeros in μ, α from 0 to 1e4', async () => {
    const { improvePolicy, klImproveRow } = await import('../../lib/policy/klImprove');
    const rng = new Mulberry32(17);
    const worst = { err: 0, alpha: 0, r: 0 };
    for (const alpha of [0, 1e-3, 0.1, 1, 30, 1e4]) {
      const rows = 64;
      const cols = 9;
      const mu = new Float64Array(rows * cols);
      const q = new Float64Array(rows * cols);
      const lens = Array.from({ length: rows }, () => 1 + rng.int(cols));
      for (let r = 0; r < rows; r++) {
        let z = 0;
        for (let a = 0; a < lens[r]; a++) {
          mu[r * cols + a] = a > 0 && rng.next() < 0.3 ? 0 : rng.next() + 0.01;
          z += mu[r * cols + a];
          q[r * cols + a] = Math.round(rng.normal() * 4 * 64) / 64; // float32-exact, ties possible
        }
        for (let a = 0; a < lens[r]; a++) mu[r * cols + a] /= z;
      }
      // one native call over the ragged rows; its per-row views laid back out as rows × cols
      const imp = improvePolicy(
        lens.map((n, r) => ({
          logPrior: Array.from(mu.subarray(r * cols, r * cols + n), (m) => (m > 0 ? Math.log(m) : -Infinity)),
          q: q.subarray(r * cols, r * cols + n),
        })),
        alpha,
      );
      const got = { value: imp.value, policy: new Float32Array(rows * cols) };
      imp.policy.forEach((p, r) => got.policy.set(p, r * cols));
      const pi = new Float64Array(cols);
      for (let r = 0; r < rows; r++) {
        const v = klImproveRow(mu, r * cols, q, r * cols, lens[r], alpha, pi);
        const err = Math.abs(got.value[r] - v);
        if (err > worst.err) Object.assign(worst, { err, alpha, r });
        // float32: relative 1e-5, plus α·(a few ulp of log μ) for the α log Σ μ e^{Q/α} form.
        expect(err).toBeLessThan(1e-5 * Math.max(1, Math.abs(v)) + alpha * 5e-7);
        for (let a = 0; a < cols; a++) {
          const want = a < lens[r] ? pi[a] : 0;
          expect(Math.abs(got.policy[r * cols + a] - want)).toBeLessThan(1e-5);
          if (mu[r * cols + a] === 0) expect(got.policy[r * cols + a]).toBe(0);
        }
      }
    }
    console.log(`klImprove native vs float64: worst |ΔV| = ${worst.err.toExponential(2)} at α = ${worst.alpha}`);
  });

  for (const backend of backends) {
    it(`MemQPolicy.actBatch equals act() state by state [${backend}]`, async () => {
      const D = 8;
      // Deterministic toy encoder: a seeded random vector per text.
      const encode = (texts: string[]) => {
        const out = new Float32Array(texts.length * D);
        texts.forEach((t, i) => {
          let h = 7;
          for (const ch of t) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
          const r = new Mulberry32(h);
          for (let j = 0; j < D; j++) out[i * D + j] = r.next();
        });
        return out;
      };
      const mem = new EpisodicMemory({ dim: D, backend, kernel: { kernel: 'gaussian', bandwidth: 0.8 } });
      const rng = new Mulberry32(4);
      await mem.write(Array.from({ length: 12 }, () => ({ key: Float32Array.from({ length: D }, () => rng.next()), value: rng.normal() })));
      const agent = new MemQPolicy(mem, encode, { alpha: 0.7, m: 3, voidWeight: 0.2, voidValue: 0.1 });
      const items = [
        { state: 'a', actions: ['x', 'y', 'z'], prior: [0.2, 0.3, 0.5] },
        { state: 'b', actions: ['x'] },
        { state: 'c', actions: ['u', 'v', 'w', 'x', 'y'] },
      ];
      const batch = await agent.actBatch(items, 'argmax');
      for (let i = 0; i < items.length; i++) {
        const one = await agent.act(items[i].state, items[i].actions, { prior: items[i].prior, mode: 'argmax' });
        expect(batch[i].policy.length).toBe(items[i].actions.length);
        for (let a = 0; a < items[i].actions.length; a++) {
          expect(batch[i].policy[a]).toBeCloseTo(one.policy[a], 5);
          expect(batch[i].q[a]).toBe(one.q[a]);
        }
        expect(batch[i].value).toBeCloseTo(one.value, 4);
        expect(batch[i].action).toBe(one.action);
      }
    });
  }
});

describe('the one policy function and choice rule (improvePolicy, chooseAction, softTdStep)', () => {
  it('one row (the agent) and a packed batch (the E-step) give the same π and V bit for bit; lengths are checked', async () => {
    const { improvePolicy } = await import('../../lib/policy/klImprove');
    const rng = new Mulberry32(23);
    for (const alpha of [0, 0.05, 1, 40]) {
      const rows = Array.from({ length: 9 }, () => {
        const n = 1 + rng.int(7);
        return {
          logPrior: Float32Array.from({ length: n }, (_, a) => (a > 0 && rng.next() < 0.2 ? -Infinity : Math.log(rng.next() + 0.01))),
          q: Float32Array.from({ length: n }, () => Math.round(rng.normal() * 8) / 8), // ties at α = 0
        };
      });
      const batch = improvePolicy(rows, alpha);
      rows.forEach((r, i) => {
        const one = improvePolicy([r], alpha);
        expect(Array.from(batch.policy[i])).toEqual(Array.from(one.policy[0]));
        expect(batch.value[i]).toBe(one.value[0]);
      });
    }
    expect(() => improvePolicy([{ logPrior: [0, 0], q: [1] }], 1)).toThrow(/rows\[0\] has 2 log-prior entries and 1 values/);
  });

  it('α = 0: π is uniform over the tied best actions on μ’s support, and both modes of chooseAction draw uniformly from them', async () => {
    const { improvePolicy } = await import('../../lib/policy/klImprove');
    const { chooseAction } = await import('../../lib/policy/memq');
    const { AgentRng } = await import('../../lib/policy/agentRng');
    const q = Float32Array.from([2, 5, 2, 2, 1]);
    const logPrior = Float32Array.from([Math.log(0.1), -Infinity, Math.log(0.5), Math.log(0.3), Math.log(0.1)]);
    const { policy, value } = improvePolicy([{ logPrior, q }], 0);
    expect(value[0]).toBe(2); // the best on the support (q = 5 has μ = 0)
    expect(Array.from(policy[0])).toEqual([1 / 3, 0, 1 / 3, 1 / 3, 0].map(Math.fround));
    const rng = new AgentRng(9);
    const N = 6000;
    for (const mode of ['train', 'eval'] as const) {
      const counts = [0, 0, 0, 0, 0];
      for (let i = 0; i < N; i++) counts[chooseAction(policy[0], mode, rng)]++;
      expect(counts[1] + counts[4]).toBe(0);
      for (const a of [0, 2, 3]) expect(Math.abs(counts[a] / N - 1 / 3)).toBeLessThan(4 * Math.sqrt((1 / 3) * (2 / 3) / N));
    }
    // a strict maximum wins every greedy draw
    expect(chooseAction([0.2, 0.5, 0.3], 'eval', rng)).toBe(1);
  });

  it('softTdStep is δ = r + γV(s′) − Q, Q + ηδ (hand values)', async () => {
    const { softTdStep } = await import('../../lib/policy/td');
    expect(softTdStep(1, 0.5, 0.9, 2, 0.25)).toEqual({ q: 1 + 0.25 * (0.5 + 0.9 * 2 - 1), delta: 0.5 + 0.9 * 2 - 1 });
    expect(softTdStep(3, 1, 0.9, 0, 1)).toEqual({ q: 1, delta: -2 }); // terminal: V = 0, η = 1 lands on the target
  });
});
