import { describe, expect, it } from 'vitest';
import { ReflectAgent, REFLECT_DEFAULTS, caseConditionedState, type ReflectOptions } from '../../lib/agent/reflect';
import type { StepContext } from '../../lib/agent/types';
import { HashingEncoder, CachedEncoder } from '../../lib/encoders/hashing';
import { UniformPrior, type Prior } from '../../lib/llm/prior';
import { randomMdp } from '../../lib/envs/gridworld/tabular';
import { softValueIteration } from '../../lib/policy/solvers';
import type { FiniteMdp } from '../../lib/policy/mdp';
import { Mulberry32 } from '../../lib/policy/rng';

function agentWith(over: Partial<ReflectOptions> = {}): ReflectAgent {
  return new ReflectAgent({
    stateEncoder: new CachedEncoder(new HashingEncoder({ dim: 128 })),
    caseEncoder: new CachedEncoder(new HashingEncoder({ dim: 128, seed: 3 })),
    actionEncoder: new CachedEncoder(new HashingEncoder({ dim: 64, seed: 5 })),
    prior: new UniformPrior(),
    ...REFLECT_DEFAULTS,
    writeCases: true,
    seed: 1,
    ...over,
  });
}

const ctx = (state: string, admissible: string[], step = 0): StepContext => ({ episode: 0, step, task: '', observation: state, admissible, state, info: { admissibleActions: admissible } as never });

describe('ReflectAgent: the case-conditioned kernel', () => {
  it("copies a case's action (exact match, else the nearest admissible action), mixed with the prior; the void case is the prior", async () => {
    const agent = agentWith({ priorMix: 0.2 });
    await agent.cases.write([
      { key: await agent.opts.stateEncoder.encode(['kitchen, holding nothing']), value: 1, state: 'kitchen, holding nothing', action: 'take apple 1 from fridge 1' },
      { key: await agent.opts.stateEncoder.encode(['hall']), value: 0, state: 'hall', action: 'go to cabinet 7' },
    ]);
    const [a, b] = agent.cases.ids();
    const acts = ['go to fridge 1', 'take apple 1 from fridge 1', 'go to cabinet 2'];
    const pa = await agent.actionKernel('kitchen', acts, a);
    expect(Array.from(pa)).toEqual([0.2 / 3, 0.8 + 0.2 / 3, 0.2 / 3].map((x) => expect.closeTo(x, 12)));
    // 'go to cabinet 7' is not admissible: the nearest by the action encoder is 'go to cabinet 2'
    const pb = await agent.actionKernel('hall', acts, b);
    expect(pb[2]).toBeCloseTo(0.8 + 0.2 / 3, 12);
    const pv = await agent.actionKernel('hall', acts, -1);
    expect(Array.from(pv)).toEqual([1 / 3, 1 / 3, 1 / 3].map((x) => expect.closeTo(x, 12)));
  });

  it("with conditioning 'prompt' the prior is scored on a prompt that carries the retrieved case", async () => {
    const seen: string[] = [];
    const prior: Prior = { name: 'spy', logPrior: (s, acts) => (seen.push(s), new Float32Array(acts.length).fill(-Math.log(acts.length))) };
    const agent = agentWith({ prior, conditioning: 'prompt' });
    await agent.cases.write([{ key: await agent.opts.stateEncoder.encode(['s1']), value: 1, state: 's1', action: 'open door' }]);
    await agent.actionKernel('now here', ['x', 'y'], agent.cases.ids()[0]);
    expect(seen[0]).toBe(caseConditionedState('now here', { state: 's1', action: 'open door', value: 1 }));
    expect(seen[0]).toMatch(/s1\n> open door\noutcome: success/);
  });
});

describe("ReflectAgent: π_M(a | s), the E-step target of Mem-EM on its prior", () => {
  // a prior whose log μ depends on the (possibly case-carrying) prompt, so candidates differ
  const hashPrior: Prior = {
    name: 'hash',
    logPrior: (s, acts) => {
      const raw = acts.map((a) => {
        let h = 2166136261;
        for (const ch of s + '|' + a) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
        return ((h >>> 0) % 1000) / 250;
      });
      const m = Math.max(...raw);
      const lse = m + Math.log(raw.reduce((z, x) => z + Math.exp(x - m), 0));
      return Float32Array.from(raw, (x) => x - lse);
    },
  };
  // the same prior with a batched entry point (the model priors' logPriorMany), which π_M uses
  const batchedPrior: Prior = { ...hashPrior, logPriorMany: async (items) => items.map((it) => hashPrior.logPrior(it.state, it.actions) as Float32Array) };
  for (const [conditioning, prior] of [['project', hashPrior], ['prompt', hashPrior], ['project', batchedPrior], ['prompt', batchedPrior]] as const) {
    it(`${conditioning}${prior.logPriorMany ? ', batched prior' : ''}: equals Σ_c π(c|s) p(a|s,c) from retrieve and actionKernel, sums to 1, draws nothing`, async () => {
      const agent = agentWith({ prior, conditioning, priorMix: 0.3, m: 4 });
      const rows = ['kitchen, holding nothing', 'kitchen, holding apple', 'hall with a door', 'hall', 'garden'];
      const keys = await agent.opts.stateEncoder.encode(rows);
      await agent.cases.writeRows(keys, rows.map((_, i) => i / 4), { state: rows, action: rows.map((_, i) => ['open door', 'take apple', 'go to hall', 'look'][i % 4]) });
      const items = [
        { state: 'kitchen, holding apple now', actions: ['take apple', 'open door', 'go to garden'] },
        { state: 'hall', actions: ['look', 'go to hall', 'open the door'] },
        { state: 'nowhere near', actions: ['x', 'y'] },
      ];
      const rng0 = agent.rngState();
      const got = await agent.actionPolicyMany(items);
      expect(agent.rngState()).toBe(rng0);
      for (let k = 0; k < items.length; k++) {
        const { state, actions } = items[k];
        const r = await agent.retrieve(state);
        expect(r.ids.length).toBeGreaterThan(1); // cases and the void case
        const want = new Float64Array(actions.length);
        for (let i = 0; i < r.ids.length; i++) {
          const p = await agent.actionKernel(state, actions, r.ids[i]);
          for (let a = 0; a < actions.length; a++) want[a] += r.policy[i] * p[a];
        }
        for (let a = 0; a < actions.length; a++) expect(got[k][a]).toBeCloseTo(want[a], 6);
        expect(got[k].reduce((x, y) => x + y, 0)).toBeCloseTo(1, 5);
      }
    });
  }
});

/**
 * The Reflected MDP of a frozen memory: options are the retrieval candidates of each state
 * (cases and the void case), with the prior μ(c|s) the agent's Parzen prior; choosing option c
 * plays a ~ p(a|s, c), so R(s, c) = Σ_a p(a|s,c) R(s,a) and P(s'|s,c) = Σ_a p(a|s,c) P(s'|s,a).
 */
async function reflectedMdp(agent: ReflectAgent, mdp: FiniteMdp, names: string[], actions: string[]) {
  const cands = [];
  for (let s = 0; s < mdp.S; s++) cands.push(await agent.retrieve(names[s]));
  const K = Math.max(...cands.map((c) => c.ids.length));
  const P = new Float64Array(mdp.S * K * mdp.S);
  const R = new Float64Array(mdp.S * K);
  const prior = new Float64Array(mdp.S * K);
  for (let s = 0; s < mdp.S; s++) {
    const c = cands[s];
    for (let i = 0; i < K; i++) {
      if (i >= c.ids.length) continue; // padding: μ = 0, never chosen
      prior[s * K + i] = c.mu[i];
      const pa = await agent.actionKernel(names[s], actions, c.ids[i]);
      for (let a = 0; a < mdp.A; a++) {
        R[s * K + i] += pa[a] * mdp.R[s * mdp.A + a];
        for (let t = 0; t < mdp.S; t++) P[(s * K + i) * mdp.S + t] += pa[a] * mdp.P[(s * mdp.A + a) * mdp.S + t];
      }
    }
  }
  return { mdp: { S: mdp.S, A: K, P, R, prior, terminal: mdp.terminal } as FiniteMdp, cands };
}

describe('ReflectAgent: learned retrieval policy vs the exact soft-optimal policy of the Reflected MDP', () => {
  it('soft TD over retrieval actions approaches π*(c|s) computed by soft value iteration (frozen memory)', async () => {
    const json = randomMdp({ states: 5, actions: 2, branching: 2, terminalStates: 1, mdpSeed: 4 });
    const S = json.states;
    const A = json.actions;
    const terminal = new Uint8Array(S);
    for (const t of json.terminal ?? []) terminal[t] = 1;
    const mdp: FiniteMdp = {
      S, A,
      P: Float64Array.from(json.P.flat(2)),
      R: Float64Array.from(json.R.flat()),
      prior: new Float64Array(S * A).fill(1 / A),
      terminal,
    };
    const names = Array.from({ length: S }, (_, s) => `you are in room ${s}`);
    const actions = Array.from({ length: A }, (_, a) => `press button ${a}`);
    const alpha = 0.5;
    const gamma = 0.9;
    const agent = agentWith({ alpha, gamma, voidWeight: 0.5, priorMix: 0.1, qBandwidth: 0.1, bandwidth: 0.3, tdRate: { power: 0.7 }, explore: 0.2, writeCases: false, seed: 11 });
    // Memory: one case per (non-terminal room, button), frozen.
    const cases = [];
    for (let s = 0; s < S; s++) {
      if (terminal[s]) continue;
      const key = await agent.opts.stateEncoder.encode([names[s]]);
      for (let a = 0; a < A; a++) cases.push({ key, value: 0, state: names[s], action: actions[a] });
    }
    await agent.cases.write(cases);
    const { mdp: refl, cands } = await reflectedMdp(agent, mdp, names, actions);
    const exact = softValueIteration(refl, { alpha, gamma, tol: 1e-12 });

    // Train: episodes from random non-terminal rooms until the terminal room.
    const rng = new Mulberry32(7);
    const starts = names.map((_, s) => s).filter((s) => !terminal[s]);
    const EPISODES = Number(process.env.REFLECT_EPISODES ?? 3000);
    const t0 = Date.now();
    let stepsTotal = 0;
    for (let ep = 0; ep < EPISODES; ep++) {
      let s = starts[rng.int(starts.length)];
      const steps = [];
      for (let t = 0; t < 200 && !terminal[s]; t++) {
        const c = ctx(names[s], actions, t);
        const a = await agent.act(c, 'train');
        let u = rng.next();
        let s2 = S - 1;
        for (let k = 0; k < S; k++) {
          u -= mdp.P[(s * A + a) * S + k];
          if (u < 0) {
            s2 = k;
            break;
          }
        }
        const r = mdp.R[s * A + a];
        const done = terminal[s2] === 1;
        await agent.observe(c, a, r, done ? null : ctx(names[s2], actions, t + 1));
        steps.push({ state: names[s], action: actions[a], actionIndex: a, admissible: actions, reward: r });
        s = s2;
        stepsTotal++;
      }
      await agent.endEpisode({ episode: ep, task: '', steps, won: terminal[s] === 1, totalReward: 0, source: 'train' });
    }

    // Compare π(c|s) on every non-terminal room (total variation), and Q on the options that carry mass.
    let worstTv = 0;
    let worstQ = 0;
    for (const s of starts) {
      const learned = await agent.retrieve(names[s]);
      expect(Array.from(learned.ids)).toEqual(Array.from(cands[s].ids));
      let tv = 0;
      for (let i = 0; i < learned.ids.length; i++) {
        tv += Math.abs(learned.policy[i] - exact.policy[s * refl.A + i]);
        if (exact.policy[s * refl.A + i] > 0.05) worstQ = Math.max(worstQ, Math.abs(learned.q[i] - exact.Q[s * refl.A + i]));
      }
      worstTv = Math.max(worstTv, tv / 2);
    }
    // Stated tolerance after 3,000 episodes: TV ≤ 0.1 per state, |ΔQ| ≤ 0.25 where π* > 0.05.
    expect(worstTv).toBeLessThan(0.1);
    expect(worstQ).toBeLessThan(0.25);
    // and the policy is not trivially the prior: π* differs from μ somewhere by more than the tolerance
    let far = 0;
    for (const s of starts) for (let i = 0; i < cands[s].ids.length; i++) far = Math.max(far, Math.abs(exact.policy[s * refl.A + i] - cands[s].mu[i]));
    expect(far).toBeGreaterThan(0.15);
    console.log(`${stepsTotal} steps in ${(Date.now() - t0) / 1000} s`);
    console.log(`reflect tabular check: max TV(π, π*) = ${worstTv.toFixed(4)}, max |Q − Q*| = ${worstQ.toFixed(4)} (π* vs μ differ by up to ${far.toFixed(3)})`);
  }, 300_000);
});

describe('ReflectAgent: reflection consistency (docs/math.md §13)', () => {
  it("as expert cases cover the state space (ε(M) → 0), greedy success approaches the expert's", async () => {
    const { makeEnv } = await import('../../lib/envs/registry');
    const { runEpisode } = await import('../../lib/agent/runner');
    const env = makeEnv('gridworld', { randomStart: true, maxSteps: 40 });
    const agent = agentWith({ writeCases: true, voidWeight: 0.01, priorMix: 0, seed: 3 });
    const curve: { demos: number; radius: number; success: number }[] = [];
    let demos = 0;
    for (const target of [0, 2, 8, 32, 128]) {
      for (; demos < target; demos++) await agent.endEpisode(await runEpisode(env, null, 'demo', demos, { seed: 1000 + demos }, 1));
      let wins = 0;
      const games = 40;
      for (let g = 0; g < games; g++) {
        agent.setRngState(g + 1);
        wins += (await runEpisode(env, agent, 'eval', -1, { seed: g }, 1)).won ? 1 : 0;
      }
      const st = agent.evalStats();
      curve.push({ demos, radius: st.coverageRadius, success: wins / games });
    }
    console.log('coverage curve (demos, ε(M), success):', curve.map((c) => `${c.demos}: ${Number.isFinite(c.radius) ? c.radius.toFixed(3) : 'inf'} ${(100 * c.success).toFixed(0)}%`).join(' | '));
    // ε(M) over the evaluation states never grows as memory grows, and shrinks overall
    const radii = curve.slice(1).map((c) => c.radius);
    for (let i = 1; i < radii.length; i++) expect(radii[i]).toBeLessThanOrEqual(radii[i - 1] + 1e-9);
    expect(radii[radii.length - 1]).toBeLessThan(radii[0]);
    // the expert solves every game; with the most cases the reflect agent comes within 10 points
    expect(curve[curve.length - 1].success).toBeGreaterThanOrEqual(0.9);
    expect(curve[curve.length - 1].success).toBeGreaterThan(curve[0].success);
  }, 120_000);
});
