import { describe, expect, it } from 'vitest';
import { MemRLAgent, MEMRL_DEFAULTS, PriorAgent } from '../../lib/agent/baselines';
import { runEpisode } from '../../lib/agent/runner';
import type { StepContext } from '../../lib/agent/types';
import { CachedEncoder, HashingEncoder } from '../../lib/encoders/hashing';
import { makeEnv } from '../../lib/envs/registry';
import type { Prior } from '../../lib/llm/prior';

/** A prior with no ties: μ(a|s) ∝ exp(−rank of a's text hash), different in every state. */
class HashPrior implements Prior {
  readonly name = 'hash';
  logPrior(state: string, actions: string[]): Float32Array {
    const h = (t: string) => {
      let x = 2166136261;
      for (const ch of state + '|' + t) x = Math.imul(x ^ ch.charCodeAt(0), 16777619) >>> 0;
      return x;
    };
    const raw = actions.map((a) => -(h(a) % 1000) / 100);
    const m = Math.max(...raw);
    const z = Math.log(raw.reduce((s, r) => s + Math.exp(r - m), 0)) + m;
    return Float32Array.from(raw, (r) => r - z);
  }
}

const ctx = (state: string, admissible: string[]): StepContext => ({ episode: 0, step: 0, task: '', observation: state, admissible, state, info: { admissibleActions: admissible } as never });

function memrl(prior: Prior | undefined, over: Partial<typeof MEMRL_DEFAULTS> = {}): MemRLAgent {
  return new MemRLAgent({ encoder: new CachedEncoder(new HashingEncoder({ dim: 128 })), prior, ...MEMRL_DEFAULTS, ...over, seed: 3 });
}

// The main job's table had memrl at 0.7 % / 0.0 % beside the model prior's 15.7 % / 18.7 %:
// without a usable case the agent acted uniformly at random, ignoring the (frozen) model that
// MemRL keeps in the loop. These checks would have caught it.
describe('MemRLAgent: the frozen model acts where memory has no usable case', () => {
  it("with an empty memory it evaluates as the prior's argmax and trains by sampling the prior", async () => {
    const prior = new HashPrior();
    const agent = memrl(prior, { epsilon: 0 });
    const acts = ['go north', 'go south', 'go east', 'go west', 'take key'];
    for (let s = 0; s < 20; s++) {
      const lp = prior.logPrior(`room ${s}`, acts);
      const best = lp.indexOf(Math.max(...lp));
      expect(await agent.act(ctx(`room ${s}`, acts), 'eval')).toBe(best);
    }
    // sampling while training: empirical frequencies within 0.03 of μ in total variation (4,000 draws)
    const lp = prior.logPrior('room 0', acts);
    const counts = new Array(acts.length).fill(0);
    const n = 4000;
    for (let i = 0; i < n; i++) counts[await agent.act(ctx('room 0', acts), 'train')]++;
    const tv = 0.5 * counts.reduce((s, c, j) => s + Math.abs(c / n - Math.exp(lp[j])), 0);
    expect(tv).toBeLessThan(0.03);
    expect(agent.stats().memoryShare).toBe(0);
  });

  it("uses a similar case's action when it is admissible, and the prior's argmax when no case's action is", async () => {
    const prior = new HashPrior();
    const agent = memrl(prior, { epsilon: 0 });
    const state = 'kitchen: a fridge 1, a cabinet 2; you hold nothing';
    await agent.endEpisode({
      episode: 0, task: 't', source: 'demo', won: true, totalReward: 1,
      steps: [{ state, action: 'open fridge 1', actionIndex: 0, admissible: ['open fridge 1'], reward: 1 }],
    } as never);
    expect(agent.memory.size).toBe(1);
    const acts = ['go to cabinet 2', 'open fridge 1', 'look'];
    expect(await agent.act(ctx(state, acts), 'eval')).toBe(1);
    const other = ['go to cabinet 2', 'look', 'inventory'];
    const lp = prior.logPrior(state, other);
    expect(await agent.act(ctx(state, other), 'eval')).toBe(lp.indexOf(Math.max(...lp)));
    expect(agent.evalStats().memoryShare).toBeCloseTo(0.5, 12);
  });

  it('with an empty memory it plays the same greedy episodes as the prior agent (gridworld, 8 games)', async () => {
    const prior = new HashPrior();
    const env = makeEnv('gridworld', {});
    const split = env.splits[0];
    for (let g = 0; g < 8; g++) {
      const a = await runEpisode(env, memrl(prior), 'eval', g, { split, seed: 1000 + g }, 1);
      const b = await runEpisode(env, new PriorAgent(prior, 3), 'eval', g, { split, seed: 1000 + g }, 1);
      expect(a.steps.map((s) => s.action)).toEqual(b.steps.map((s) => s.action));
    }
    await env.close();
  });
});
