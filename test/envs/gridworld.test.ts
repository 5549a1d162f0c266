import { describe, expect, it } from 'vitest';
import { EnvRng } from '../../lib/envs/rng';
import { mdpFromJson } from '../../lib/policy/mdp';
import { hardValueIteration } from '../../lib/policy/solvers';
import {
  GRID_ACTIONS,
  GridWorld,
  GridworldEnv,
  type MdpJson,
  RandomTabularMdp,
  randomMdp,
  validateMdp,
} from '../../lib/envs/gridworld';

interface Counts {
  next: Map<string, number[]>; // "s,a" -> counts over s'
  rewardSum: Map<string, number>;
  rewardMin: Map<string, number>;
  rewardMax: Map<string, number>;
}

/** Play random episodes through the env's text interface; tally (s, a) -> s' and rewards. */
async function sample(env: GridworldEnv, taskType: string, episodes: number, seed0: number): Promise<Counts> {
  const counts: Counts = { next: new Map(), rewardSum: new Map(), rewardMin: new Map(), rewardMax: new Map() };
  const S = env.toMdp(taskType).states;
  const rng = new EnvRng(seed0);
  for (let e = 0; e < episodes; e++) {
    let { observation, info } = await env.reset({ seed: seed0 + e, taskType });
    for (;;) {
      const action = rng.pick(info.admissibleActions);
      const s = env.stateIndex(observation);
      expect(s).toBe(info.state);
      const a = env.actionIndex(action);
      const r = await env.step(action);
      const t = env.stateIndex(r.observation);
      const key = `${s},${a}`;
      if (!counts.next.has(key)) counts.next.set(key, new Array(S).fill(0));
      counts.next.get(key)![t]++;
      counts.rewardSum.set(key, (counts.rewardSum.get(key) ?? 0) + r.reward);
      counts.rewardMin.set(key, Math.min(counts.rewardMin.get(key) ?? Infinity, r.reward));
      counts.rewardMax.set(key, Math.max(counts.rewardMax.get(key) ?? -Infinity, r.reward));
      observation = r.observation;
      info = r.info;
      if (r.terminated || r.truncated) break;
    }
  }
  return counts;
}

/**
 * Largest z-score |p_hat - p| / sqrt(p(1-p)/n) over (s, a, s') with n >= minN, plus any
 * transition observed where the model says p = 0 (reported as Infinity).
 */
function maxZ(mdp: MdpJson, counts: Counts, minN: number): { z: number; pairs: number } {
  let z = 0;
  let pairs = 0;
  for (const [key, row] of counts.next) {
    const [s, a] = key.split(',').map(Number);
    const n = row.reduce((x, y) => x + y, 0);
    for (let t = 0; t < mdp.states; t++) if (row[t] > 0 && mdp.P[s][a][t] === 0) return { z: Infinity, pairs };
    if (n < minN) continue;
    pairs++;
    for (let t = 0; t < mdp.states; t++) {
      const p = mdp.P[s][a][t];
      if (p === 0 || p === 1) continue;
      z = Math.max(z, Math.abs(row[t] / n - p) / Math.sqrt((p * (1 - p)) / n));
    }
  }
  return { z, pairs };
}

describe('gridworld model', () => {
  it('exports a valid MDP with an absorbing, zero-reward goal', () => {
    const g = new GridWorld({ slip: 0.2 });
    const mdp = validateMdp(g.toMdp());
    expect(mdp.states).toBe(20);
    expect(mdp.actions).toBe(4);
    expect(mdp.terminal).toEqual([g.goal]);
    // Deterministic moves: from the start (0,0) 'go east' reaches (0,1); 'go north' bumps.
    const d = new GridWorld();
    const m = d.toMdp();
    const s0 = d.stateIndex({ row: 0, col: 0 });
    expect(m.P[s0][d.actionIndex('go east')][d.stateIndex({ row: 0, col: 1 })]).toBe(1);
    expect(m.P[s0][d.actionIndex('go north')][s0]).toBe(1);
    // Reward: only the move into the goal pays, in expectation under slip.
    const nextToGoal = g.stateIndex({ row: 3, col: 4 });
    expect(g.toMdp().R[nextToGoal][g.actionIndex('go south')]).toBeCloseTo(0.8, 12);
    expect(g.toMdp().R[nextToGoal][g.actionIndex('go west')]).toBeCloseTo(0.1, 12);
    // toMdp returns a copy.
    const copy = g.toMdp();
    copy.P[0][0][0] = 42;
    expect(g.toMdp().P[0][0][0]).not.toBe(42);
  });

  it('rejects bad layouts and maps observations/actions both ways', () => {
    expect(() => new GridWorld({ layout: ['..', '..'] })).toThrow(/goal/);
    expect(() => new GridWorld({ layout: ['.G', '.'] })).toThrow(/rectangle/);
    expect(() => new GridWorld({ slip: 1.5 })).toThrow(RangeError);
    const g = new GridWorld();
    for (let s = 0; s < g.stateCount; s++) expect(g.stateIndex(g.describe(s))).toBe(s);
    expect(new Set(Array.from({ length: g.stateCount }, (_, s) => g.describe(s))).size).toBe(g.stateCount);
    expect(g.actionIndex('  Go   NORTH ')).toBe(0);
    expect(g.actionIndex('jump')).toBe(-1);
    expect(() => g.stateIndex({ row: 1, col: 1 })).toThrow(/wall/);
    expect(g.describe(g.stateIndex({ row: 0, col: 0 }))).toBe(
      'You are at row 0, column 0 of a 5 by 5 grid. The goal is at row 4, column 4. You cannot go north or west.',
    );
  });

  it('validateMdp catches broken models', () => {
    const good = randomMdp({ states: 4, actions: 2, mdpSeed: 1 });
    expect(() => validateMdp(good)).not.toThrow();
    const bad = randomMdp({ states: 4, actions: 2, mdpSeed: 1 });
    bad.P[1][1][0] += 0.1;
    expect(() => validateMdp(bad)).toThrow(/sums to/);
    const badTerminal = randomMdp({ states: 4, actions: 2, mdpSeed: 1 });
    badTerminal.terminal = [badTerminal.terminal![0] === 0 ? 1 : 0];
    expect(() => validateMdp(badTerminal)).toThrow(/terminal/);
  });

  it('random MDPs are reproducible from mdpSeed and valid, with an optional prior', () => {
    const a = randomMdp({ states: 12, actions: 4, branching: 3, terminalStates: 2, mdpSeed: 9, prior: true });
    expect(randomMdp({ states: 12, actions: 4, branching: 3, terminalStates: 2, mdpSeed: 9, prior: true })).toEqual(a);
    expect(randomMdp({ states: 12, actions: 4, branching: 3, terminalStates: 2, mdpSeed: 10, prior: true })).not.toEqual(a);
    validateMdp(a);
    expect(a.terminal).toHaveLength(2);
    expect(a.prior).toHaveLength(12);
    for (let s = 0; s < 12; s++) {
      if (a.terminal!.includes(s)) continue;
      for (let k = 0; k < 4; k++) expect(a.P[s][k].filter((p) => p > 0).length).toBeLessThanOrEqual(3);
    }
  });
});

describe('gridworld env agrees with its exported model', () => {
  it('grid with slip 0.2: empirical transition frequencies and rewards match P and R', async () => {
    const env = new GridworldEnv({ slip: 0.2, randomStart: true, maxSteps: 60 });
    const mdp = env.toMdp('grid');
    const counts = await sample(env, 'grid', 1500, 1000);
    const { z, pairs } = maxZ(mdp, counts, 150);
    expect(pairs).toBeGreaterThan(50);
    // 5 sigma over a few hundred cells: a correct sampler stays well inside.
    expect(z).toBeLessThan(5);
    // A model with a different slip is detected by the same check (the test can fail).
    const wrong = new GridWorld({ slip: 0.35 }).toMdp();
    expect(maxZ(wrong, counts, 150).z).toBeGreaterThan(5);
    // Rewards: realised reward is 1 exactly when entering the goal; its mean matches R.
    for (const [key, row] of counts.next) {
      const [s, a] = key.split(',').map(Number);
      const n = row.reduce((x, y) => x + y, 0);
      const mean = counts.rewardSum.get(key)! / n;
      const expected = row[mdp.terminal![0]] / n; // empirical goal frequency
      expect(mean).toBeCloseTo(expected, 12);
      if (n >= 150) expect(Math.abs(mean - mdp.R[s][a])).toBeLessThan(5 * Math.sqrt(0.25 / n) + 1e-12);
    }
  });

  it('random MDP: frequencies match P; rewards equal R exactly; terminal states end episodes', async () => {
    const env = new GridworldEnv({ taskType: 'random_mdp', states: 6, actions: 3, branching: 3, mdpSeed: 4, maxSteps: 40 });
    const mdp = env.toMdp();
    const counts = await sample(env, 'random_mdp', 4000, 5);
    const { z, pairs } = maxZ(mdp, counts, 150);
    expect(pairs).toBeGreaterThan(8);
    expect(z).toBeLessThan(5);
    const other = randomMdp({ states: 6, actions: 3, branching: 3, mdpSeed: 5 });
    expect(maxZ(other, counts, 150).z).toBeGreaterThan(5);
    for (const [key] of counts.next) {
      const [s, a] = key.split(',').map(Number);
      expect(counts.rewardMin.get(key)).toBe(mdp.R[s][a]);
      expect(counts.rewardMax.get(key)).toBe(mdp.R[s][a]);
      expect(mdp.terminal).not.toContain(s);
    }
  });

  it('episodes are deterministic for a seed and end at the goal (won) or at maxSteps', async () => {
    const env = new GridworldEnv({ slip: 0.1, maxSteps: 30 });
    const play = async (seed: number) => {
      const rng = new EnvRng(1);
      const out: string[] = [];
      let { info } = await env.reset({ seed });
      for (;;) {
        const r = await env.step(rng.pick(info.admissibleActions));
        out.push(`${r.observation}|${r.reward}|${r.terminated}|${r.truncated}`);
        info = r.info;
        if (r.terminated || r.truncated) {
          expect(r.terminated ? r.info.won : !r.info.won).toBe(true);
          return out;
        }
      }
    };
    expect(await play(3)).toEqual(await play(3));
    const runs = new Set<string>();
    for (let s = 0; s < 10; s++) runs.add((await play(s)).join('\n'));
    expect(runs.size).toBeGreaterThan(5);
  });

  it('the expert (value iteration) reaches the goal without slip in the shortest path length', async () => {
    const env = new GridworldEnv();
    let { info } = await env.reset({ seed: 0 });
    let steps = 0;
    for (;;) {
      const a = env.expertAction()!;
      expect(info.admissibleActions).toContain(a);
      const r = await env.step(a);
      steps++;
      info = r.info;
      if (r.terminated || r.truncated) break;
    }
    expect(info.won).toBe(true);
    expect(steps).toBe(8); // Manhattan distance from (0,0) to (4,4) is open on the default layout
    const bad = await env.step.bind(env)('go north').catch((e: Error) => e);
    expect(bad).toBeInstanceOf(Error);
  });

  it('unknown actions change nothing and pay nothing', async () => {
    const env = new GridworldEnv();
    const { observation } = await env.reset({ seed: 0 });
    const r = await env.step('dance');
    expect(r.reward).toBe(0);
    expect(r.info.actionAdmissible).toBe(false);
    expect(env.stateIndex(r.observation)).toBe(env.stateIndex(observation));
    expect(GRID_ACTIONS).toEqual(r.info.admissibleActions);
    await expect(env.reset({ taskType: 'maze' })).rejects.toThrow(/unknown task type/);
  });

  it('speed', async () => {
    const env = new GridworldEnv({ slip: 0.2, maxSteps: 100 });
    const rng = new EnvRng(0);
    let steps = 0;
    const t0 = performance.now();
    for (let e = 0; e < 300; e++) {
      let { info } = await env.reset({ seed: e });
      for (;;) {
        const r = await env.step(rng.pick(info.admissibleActions));
        steps++;
        info = r.info;
        if (r.terminated || r.truncated) break;
      }
    }
    const perSec = steps / ((performance.now() - t0) / 1000);
    console.log(`gridworld: ${Math.round(perSec)} steps/s`);
    expect(perSec).toBeGreaterThan(1000);
    expect(new RandomTabularMdp({ mdp: env.toMdp('grid') }).stateCount).toBe(20);
  });

  it('toMdp() loads into the lib/policy solvers, whose greedy values agree with the expert', async () => {
    for (const taskType of ['grid', 'random_mdp'] as const) {
      const env = new GridworldEnv({ slip: 0.1, randomStart: true, states: 7, actions: 3, mdpSeed: 2, maxSteps: 30 });
      const mdp = mdpFromJson(env.toMdp(taskType));
      const { Q } = hardValueIteration(mdp, { gamma: 0.95, tol: 1e-12 });
      for (let seed = 0; seed < 20; seed++) {
        let { info } = await env.reset({ seed, taskType });
        for (;;) {
          const s = info.state as number;
          const a = env.actionIndex(env.expertAction()!);
          let best = -Infinity;
          for (let b = 0; b < mdp.A; b++) best = Math.max(best, Q[s * mdp.A + b]);
          expect(Q[s * mdp.A + a]).toBeCloseTo(best, 8);
          const r = await env.step(env.expertAction()!);
          info = r.info;
          if (r.terminated || r.truncated) break;
        }
      }
    }
  });
});
