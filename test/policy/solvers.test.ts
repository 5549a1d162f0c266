import { describe, expect, it } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  evaluatePolicy,
  hardValueIteration,
  softBellmanResidual,
  softPolicyIteration,
  softValueIteration,
} from '../../lib/policy/solvers';
import { solveLinearSystem } from '../../lib/policy/linalg';
import { klImproveRow } from '../../lib/policy/klImprove';
import { mdpFromJson, mdpToJson, type FiniteMdp } from '../../lib/policy/mdp';
import { solveCommand } from '../../lib/cli/commands/solve';
import { CliError } from '../../lib/cli/args';
import { iterativeEvaluation, maxAbsDiff, naiveSoftBellman, randomMdp } from './randomMdp';

const CASES = [
  { S: 2, A: 2, seed: 1 },
  { S: 5, A: 3, seed: 2 },
  { S: 12, A: 4, seed: 3, priorZeros: 0.3 },
  { S: 25, A: 5, seed: 4, terminals: 3, sparsity: 0.5 },
  { S: 40, A: 3, seed: 5, priorZeros: 0.2, terminals: 1 },
];

describe('klImproveRow (MATH §5)', () => {
  it('matches the direct formula and keeps π = 0 where μ = 0', () => {
    const mu = [0.2, 0, 0.5, 0.3];
    const q = [1, 100, -2, 0.5];
    const alpha = 0.7;
    const pi = new Float64Array(4);
    const v = klImproveRow(mu, 0, q, 0, 4, alpha, pi);
    const z = mu.reduce((acc, m, i) => acc + m * Math.exp(q[i] / alpha), 0);
    expect(v).toBeCloseTo(alpha * Math.log(z), 13);
    for (let i = 0; i < 4; i++) expect(pi[i]).toBeCloseTo((mu[i] * Math.exp(q[i] / alpha)) / z, 13);
    expect(pi[1]).toBe(0);
  });
  it('limits: α = 0 greedy on the support (ties share by μ), α = ∞ gives μ, huge α stays accurate', () => {
    const mu = [0.25, 0.25, 0, 0.5];
    const q = [3, 1, 9, 3];
    const pi = new Float64Array(4);
    expect(klImproveRow(mu, 0, q, 0, 4, 0, pi)).toBe(3);
    expect(Array.from(pi)).toEqual([1 / 3, 0, 0, 2 / 3]);
    expect(klImproveRow(mu, 0, q, 0, 4, Infinity, pi)).toBeCloseTo(0.25 * 3 + 0.25 + 1.5, 14);
    // α = 1e8: V ≈ Σ μ q − Var_μ(q)/(2α); the log-sum-exp must not lose the Σ μ q part.
    const mean = 0.25 * 3 + 0.25 * 1 + 0.5 * 3;
    expect(Math.abs(klImproveRow(mu, 0, q, 0, 4, 1e8) - mean)).toBeLessThan(1e-7);
  });
});

describe('solveLinearSystem', () => {
  it('solves a system that needs pivoting', () => {
    // First pivot is 0: without row exchange this fails.
    const A = Float64Array.from([0, 2, 1, 1, 1, 1, 2, 1, 3]);
    const x = [1, -2, 3];
    const b = new Float64Array(3);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) b[i] += A[i * 3 + j] * x[j];
    const got = solveLinearSystem(Float64Array.from(A), b, 3);
    expect(maxAbsDiff(got, x)).toBeLessThan(1e-13);
  });
});

describe('exact solvers on a hand-computed MDP', () => {
  it('one state, self loop: V = α log((e^{1/α}+1)/2) / (1 − γ)', () => {
    const mdp = mdpFromJson({ states: 1, actions: 2, P: [[[1], [1]]], R: [[1, 0]] });
    const gamma = 0.5;
    for (const alpha of [1, 0.3]) {
      const want = (alpha * Math.log((Math.exp(1 / alpha) + 1) / 2)) / (1 - gamma);
      for (const solve of [softPolicyIteration, softValueIteration]) {
        const r = solve(mdp, { alpha, gamma });
        expect(r.V[0]).toBeCloseTo(want, 11);
        expect(r.policy[0]).toBeCloseTo(Math.exp(1 / alpha) / (Math.exp(1 / alpha) + 1), 11);
      }
    }
    expect(hardValueIteration(mdp, { gamma }).V[0]).toBeCloseTo(2, 11);
  });
});

describe('exact solvers on random MDPs', () => {
  for (const c of CASES) {
    for (const [alpha, gamma] of [
      [0.2, 0.9],
      [1, 0.95],
      [4, 0.6],
    ]) {
      it(`S=${c.S} A=${c.A} seed=${c.seed} α=${alpha} γ=${gamma}: SPI = SVI, residual < 1e-9, SPI monotone`, () => {
        const mdp = randomMdp(c);
        const history: Float64Array[] = [];
        const spi = softPolicyIteration(mdp, {
          alpha,
          gamma,
          onIteration: (_it, V) => history.push(Float64Array.from(V)),
        });
        const svi = softValueIteration(mdp, { alpha, gamma });
        expect(maxAbsDiff(spi.Q, svi.Q)).toBeLessThan(1e-8);
        expect(maxAbsDiff(spi.V, svi.V)).toBeLessThan(1e-8);
        expect(maxAbsDiff(spi.policy, svi.policy)).toBeLessThan(1e-8);
        // The solver's residual, and an independent one from the naive §6 formula.
        for (const r of [spi, svi]) {
          expect(r.converged).toBe(true);
          expect(r.residual).toBeLessThan(1e-9);
          expect(maxAbsDiff(naiveSoftBellman(mdp, r.Q, alpha, gamma), r.Q)).toBeLessThan(1e-9);
        }
        // Regularised value never decreases, at any state, between SPI iterations.
        expect(history.length).toBeGreaterThanOrEqual(2);
        for (let k = 1; k < history.length; k++) {
          for (let s = 0; s < mdp.S; s++) expect(history[k][s]).toBeGreaterThanOrEqual(history[k - 1][s] - 1e-10);
        }
        // The last evaluation is the fixed point.
        expect(maxAbsDiff(history[history.length - 1], svi.V)).toBeLessThan(1e-8);
        // Terminal states absorb with value 0; μ = 0 keeps π = 0.
        for (let s = 0; s < mdp.S; s++) {
          if (mdp.terminal[s]) expect(spi.V[s]).toBe(0);
          for (let a = 0; a < mdp.A; a++) {
            if (mdp.prior[s * mdp.A + a] === 0) {
              expect(spi.policy[s * mdp.A + a]).toBe(0);
              expect(svi.policy[s * mdp.A + a]).toBe(0);
            }
          }
        }
      });
    }
  }

  it('policies are distributions on the support of μ; V is the regularised value of π', () => {
    const mdp = randomMdp({ S: 10, A: 4, seed: 9, priorZeros: 0.4 });
    const alpha = 0.5;
    const gamma = 0.9;
    const r = softPolicyIteration(mdp, { alpha, gamma });
    for (let s = 0; s < mdp.S; s++) {
      let sum = 0;
      for (let a = 0; a < mdp.A; a++) sum += r.policy[s * mdp.A + a];
      expect(sum).toBeCloseTo(1, 12);
    }
    // Evaluating the returned optimal policy (with its KL cost) gives back V*.
    const ev = evaluatePolicy(mdp, r.policy, alpha, gamma);
    expect(maxAbsDiff(ev.V, r.V)).toBeLessThan(1e-9);
  });

  it('α → 0 tends to hard value iteration (gap within α·log(1/μ_min)/(1−γ), shrinking)', () => {
    const mdp = randomMdp({ S: 15, A: 4, seed: 11, priorZeros: 0.25 });
    const gamma = 0.9;
    const hard = hardValueIteration(mdp, { gamma });
    expect(hard.residual).toBeLessThan(1e-9);
    let muMin = 1;
    for (const m of mdp.prior) if (m > 0) muMin = Math.min(muMin, m);
    let prevGap = Infinity;
    for (const alpha of [1, 0.1, 0.01, 0.001]) {
      const soft = softPolicyIteration(mdp, { alpha, gamma });
      const gap = maxAbsDiff(soft.V, hard.V);
      // α log Σ μ e^{Q/α} ∈ [max Q + α log μ_min, max Q]; the Bellman recursion divides by 1 − γ.
      expect(gap).toBeLessThanOrEqual((alpha * Math.log(1 / muMin)) / (1 - gamma) + 1e-9);
      expect(gap).toBeLessThan(prevGap);
      for (let s = 0; s < mdp.S; s++) expect(soft.V[s]).toBeLessThanOrEqual(hard.V[s] + 1e-9);
      prevGap = gap;
    }
    expect(prevGap).toBeLessThan(0.05);
    // α = 0 in SPI is plain policy iteration and matches VI exactly.
    expect(maxAbsDiff(softPolicyIteration(mdp, { alpha: 0, gamma }).V, hard.V)).toBeLessThan(1e-9);
  });

  it('large α tends to the evaluation of the prior policy μ', () => {
    const mdp = randomMdp({ S: 15, A: 4, seed: 12, priorZeros: 0.25, terminals: 2 });
    const gamma = 0.9;
    const muValue = iterativeEvaluation(mdp, mdp.prior, gamma);
    let prevGap = Infinity;
    for (const alpha of [10, 100, 1000, 1e4]) {
      const soft = softPolicyIteration(mdp, { alpha, gamma });
      const gap = maxAbsDiff(soft.V, muValue);
      expect(gap).toBeLessThan(prevGap);
      expect(gap).toBeLessThan(200 / alpha); // O(1/α): the KL cost of leaving μ is second order
      expect(maxAbsDiff(soft.policy, mdp.prior)).toBeLessThan(20 / alpha);
      prevGap = gap;
    }
    expect(prevGap).toBeLessThan(1e-2);
  });
});

// ---------- CLI ----------

async function runSolve(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io = { stdout: (t: string) => (out += t), stderr: (t: string) => (err += t), isTTY: false };
  try {
    const code = await solveCommand.run(argv, io);
    return { code, out, err };
  } catch (e) {
    // Same mapping as lib/cli/main.ts.
    if (e instanceof CliError) return { code: e.exitCode, out, err: err + e.message };
    throw e;
  }
}

describe('memq solve', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-solve-'));
  const write = (name: string, obj: unknown): string => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, typeof obj === 'string' ? obj : JSON.stringify(obj));
    return p;
  };
  const base = (): any => mdpToJson(randomMdp({ S: 4, A: 3, seed: 21, priorZeros: 0.3, terminals: 1 }));

  it('round trip: --json output equals the library solution', async () => {
    const mdp = base();
    const file = write('ok.json', mdp);
    const dense: FiniteMdp = mdpFromJson(mdp);
    for (const method of ['spi', 'svi', 'vi'] as const) {
      const r = await runSolve(['--mdp', file, '--alpha', '0.5', '--gamma', '0.8', '--method', method, '--json']);
      expect(r.code).toBe(0);
      const got = JSON.parse(r.out);
      const want = method === 'vi' ? hardValueIteration(dense, { gamma: 0.8 }) : softValueIteration(dense, { alpha: 0.5, gamma: 0.8 });
      expect(got.V).toHaveLength(4);
      expect(got.Q).toHaveLength(4);
      expect(got.Q[0]).toHaveLength(3);
      expect(maxAbsDiff(got.V, want.V)).toBeLessThan(1e-8);
      expect(maxAbsDiff(got.Q.flat(), want.Q)).toBeLessThan(1e-8);
      expect(maxAbsDiff(got.policy.flat(), want.policy)).toBeLessThan(1e-8);
      expect(got.residual).toBeLessThan(1e-9);
      expect(got.iterations).toBeGreaterThan(0);
      expect(softBellmanResidual(dense, got.Q.flat(), method === 'vi' ? 0 : 0.5, 0.8)).toBeLessThan(1e-9);
    }
    // Human-readable output also works.
    const h = await runSolve(['--mdp', file]);
    expect(h.code).toBe(0);
    expect(h.out).toContain('residual');
  });

  it('uses the file gamma unless --gamma is given', async () => {
    const mdp = { ...base(), gamma: 0.3 };
    const file = write('gamma.json', mdp);
    const r = JSON.parse((await runSolve(['--mdp', file, '--json'])).out);
    const want = softValueIteration(mdpFromJson(mdp), { alpha: 1, gamma: 0.3 });
    expect(maxAbsDiff(r.V, want.V)).toBeLessThan(1e-8);
  });

  const invalid: Array<[string, (m: any) => any, RegExp]> = [
    ['P row not summing to 1', (m) => ((m.P[2][1][0] += 0.02), m), /P\[2\]\[1\] sums to .*expected 1 within 1e-9/],
    ['negative probability', (m) => ((m.P[1][0][0] = -0.1), (m.P[1][0][1] += 0.1), m), /P\[1\]\[0\]\[0\] is negative/],
    ['P shape mismatch', (m) => ((m.P[1] = m.P[1].slice(0, 2)), m), /P\[1\] has length 2, expected 3/],
    ['P too short', (m) => ((m.P = m.P.slice(0, 3)), m), /P has length 3, expected 4/],
    ['R shape mismatch', (m) => ((m.R[3] = [1]), m), /R\[3\] has length 1, expected 3/],
    ['R not a number', (m) => ((m.R[0][1] = 'x'), m), /R\[0\]\[1\] must be a finite number/],
    ['prior row not summing to 1', (m) => ((m.prior[1] = [0.5, 0.2, 0.2]), m), /prior\[1\] sums to 0.9/],
    ['prior row all zero', (m) => ((m.prior[0] = [0, 0, 0]), m), /prior\[0\] has no positive entry/],
    ['negative prior', (m) => ((m.prior[0] = [1.5, -0.5, 0]), m), /prior\[0\]\[1\] is negative/],
    ['terminal out of range', (m) => ((m.terminal = [7]), m), /terminal\[0\] must be a state index/],
    ['states not an integer', (m) => ((m.states = 2.5), m), /states must be a positive integer/],
    ['gamma in file out of range', (m) => ((m.gamma = 1), m), /gamma must be in \[0, 1\)/],
  ];
  for (const [name, mutate, re] of invalid) {
    it(`invalid file: ${name} -> exit 2 with a clear message`, async () => {
      const file = write(`bad-${name.replace(/\W+/g, '_')}.json`, mutate(base()));
      const r = await runSolve(['--mdp', file, '--json']);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(re);
      expect(r.err).toContain(file);
      expect(r.out).toBe('');
    });
  }

  const badFlags: Array<[string, string[], RegExp]> = [
    ['gamma = 1', ['--gamma', '1'], /--gamma must be in \[0, 1\)/],
    ['negative gamma', ['--gamma', '-0.1'], /--gamma must be in \[0, 1\)/],
    ['negative alpha', ['--alpha', '-1'], /--alpha must be >= 0/],
    ['unknown method', ['--method', 'qlearn'], /--method must be one of spi, svi, vi/],
    ['non-numeric tol', ['--tol', 'abc'], /--tol expects a finite number/],
    ['unknown flag', ['--bogus'], /unknown flag --bogus/],
  ];
  for (const [name, flags, re] of badFlags) {
    it(`invalid flag: ${name} -> exit 2`, async () => {
      const file = write('flags.json', base());
      const r = await runSolve(['--mdp', file, ...flags, '--json']);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(re);
    });
  }

  it('an iteration cap that stops early still prints the result, with a warning', async () => {
    const file = write('cap.json', base());
    const r = await runSolve(['--mdp', file, '--method', 'svi', '--gamma', '0.9', '--max-iter', '3', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).iterations).toBe(3);
    expect(JSON.parse(r.out).residual).toBeGreaterThan(1e-6);
    expect(r.err).toMatch(/warning: stopped after 3 iterations/);
    const ok = await runSolve(['--mdp', file, '--json']);
    expect(ok.err).toBe('');
  });

  it('missing --mdp, missing file and invalid JSON -> exit 2', async () => {
    expect((await runSolve(['--json'])).code).toBe(2);
    const missing = await runSolve(['--mdp', path.join(dir, 'nope.json')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/cannot read .*nope\.json/);
    const junk = await runSolve(['--mdp', write('junk.json', '{"states": 2,')]);
    expect(junk.code).toBe(2);
    expect(junk.err).toMatch(/junk\.json is not valid JSON/);
  });
});

describe('integration', () => {
  it('memq main dispatches `solve` (registered in the command table)', async () => {
    const { main } = await import('../../lib/cli/main');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-main-'));
    const file = path.join(dir, 'm.json');
    fs.writeFileSync(file, JSON.stringify({ states: 1, actions: 2, P: [[[1], [1]]], R: [[1, 0]] }));
    let out = '';
    let err = '';
    const io = { stdout: (t: string) => (out += t), stderr: (t: string) => (err += t), isTTY: false };
    expect(await main(['solve', '--mdp', file, '--gamma', '0.5', '--alpha', '1', '--json'], io)).toBe(0);
    expect(JSON.parse(out).V[0]).toBeCloseTo(Math.log((Math.E + 1) / 2) / 0.5, 10);
    expect(await main(['solve', '--mdp', file, '--gamma', '1.5'], io)).toBe(2);
    expect(err).toMatch(/--gamma must be in \[0, 1\)/);
  });

  it("solves the gridworld environments' exported models (shared MdpJson format)", async () => {
    const gw = await import('../../lib/envs/gridworld/index');
    const models = [new gw.GridWorld(), new gw.RandomTabularMdp()];
    for (const model of models) {
      const json = model.toMdp();
      const mdp = mdpFromJson(json);
      expect(mdp.S).toBe(model.stateCount);
      const spi = softPolicyIteration(mdp, { alpha: 0.3, gamma: 0.9 });
      const svi = softValueIteration(mdp, { alpha: 0.3, gamma: 0.9 });
      expect(maxAbsDiff(spi.V, svi.V)).toBeLessThan(1e-8);
      expect(spi.residual).toBeLessThan(1e-9);
      const hard = hardValueIteration(mdp, { gamma: 0.9 });
      for (let s = 0; s < mdp.S; s++) {
        if (model.isTerminal(s)) expect(hard.V[s]).toBe(0);
        expect(spi.V[s]).toBeLessThanOrEqual(hard.V[s] + 1e-9);
      }
    }
  });
});
