/**
 * The return ranges environments declare (TextEnv.returnRange): every return G_t of an episode,
 * for γ in {1, 0.95, 0.5, 0}, lies inside, on random-policy, expert and adversarial (a wrong
 * delivery whenever possible) episodes with the environments' own step functions; the kitchen's
 * upper bound is reached within 0.1 by the expert on the three-ingredient salad; 'env' in a run
 * config resolves to the declared range, and an environment without one is refused by name.
 */
import { describe, expect, it } from 'vitest';
import { defaultConfig, makeAgent, mergeConfig, resolveTrust, validateConfig, ConfigError } from '../../lib/agent/config';
import type { MemQAgent } from '../../lib/agent/memq';
import { envNames, envReturnRange, makeEnv } from '../../lib/envs/registry';
import { EnvRng } from '../../lib/envs/rng';

function returns(rewards: number[], gamma: number): number[] {
  const g = new Array(rewards.length).fill(0);
  let acc = 0;
  for (let t = rewards.length - 1; t >= 0; t--) g[t] = acc = rewards[t] + gamma * acc;
  return g;
}

async function episode(name: string, maxSteps: number, pick: 'random' | 'expert' | 'adversarial', seed: number, taskType?: string): Promise<number[]> {
  const env = makeEnv(name, { maxSteps });
  const rng = new EnvRng(seed);
  let { info } = await env.reset({ seed, ...(taskType ? { taskType } : {}) });
  const rewards: number[] = [];
  for (;;) {
    const acts = info.admissibleActions;
    let a: string;
    if (pick === 'expert') a = env.expertAction!()!;
    else if (pick === 'adversarial' && acts.some((x) => x === 'serve the dish')) a = 'serve the dish';
    else a = acts[rng.int(acts.length)];
    const r = await env.step(a);
    rewards.push(r.reward);
    info = r.info;
    if (r.terminated || r.truncated) break;
  }
  await env.close();
  return rewards;
}

describe('declared return ranges', () => {
  for (const [name, maxSteps] of [['household', 30], ['kitchen', 40], ['kitchen', 8]] as const) {
    it(`${name} (maxSteps ${maxSteps}): every G_t of random, expert and adversarial episodes lies inside`, async () => {
      const range = envReturnRange(name, { maxSteps })!;
      expect(range.min).toBeLessThanOrEqual(range.max);
      let lo = Infinity, hi = -Infinity;
      for (let seed = 1; seed <= 12; seed++) {
        for (const pick of ['random', 'expert', 'adversarial'] as const) {
          const rw = await episode(name, maxSteps, pick, seed);
          for (const gamma of [1, 0.95, 0.5, 0]) {
            for (const g of returns(rw, gamma)) {
              lo = Math.min(lo, g);
              hi = Math.max(hi, g);
              expect(g).toBeGreaterThanOrEqual(range.min - 1e-12);
              expect(g).toBeLessThanOrEqual(range.max + 1e-12);
            }
          }
        }
      }
      expect(hi).toBeGreaterThan(0); // some episode was won: the check saw positive returns
      if (name === 'kitchen') expect(lo).toBeLessThan(0);
    }, 60_000);
  }

  it("kitchen's upper bound is tight: the expert's undiscounted return on the three-ingredient salad is within 0.1 of it", async () => {
    const range = envReturnRange('kitchen', { maxSteps: 50 })!;
    const rw = await episode('kitchen', 50, 'expert', 3, 'tomato_lettuce_onion_salad');
    const g = returns(rw, 1)[0];
    expect(g).toBeGreaterThan(range.max - 0.1);
    expect(range).toEqual({ min: 50 * (-0.001 - 0.1), max: 1 + 6 * 0.2 });
  });

  it("a run config's valueRange 'env' resolves to the declared range; without one it is refused", () => {
    const cfg = mergeConfig(defaultConfig(), { env: 'kitchen', agent: 'memq', memq: { trust: { valueRange: 'env', quarantine: false } } } as never);
    validateConfig(cfg, envNames());
    const agent = makeAgent(cfg) as MemQAgent;
    expect(agent.memory.trust!.valueRange).toEqual(envReturnRange('kitchen', cfg.envOptions));
    expect(envReturnRange('gridworld')).toBeUndefined();
    const grid = mergeConfig(defaultConfig(), { env: 'gridworld', agent: 'memq', memq: { trust: { valueRange: 'env' } } } as never);
    expect(() => validateConfig(grid, envNames())).toThrow(ConfigError);
    expect(() => resolveTrust(grid.memq.trust, grid)).toThrow(/environment 'gridworld' declares no return range/);
  });
});
