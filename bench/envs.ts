/**
 * Environment throughput benchmark: steps per second of the household env under a random
 * admissible-action policy and under its expert, through the public async `step` and through
 * `stepSync` (the same code without the Promise). Resets are included in the timed loop (they are
 * part of any rollout), and reported separately too.
 *
 * Usage (the bench runner imports it): `const figures = await benchEnvs({ seconds: 2 })`.
 */
import { EnvRng } from '../lib/envs/rng';
import { HouseholdEnv } from '../lib/envs/household';

export interface EnvBenchOptions {
  /** Wall-clock seconds per measurement (default 2). */
  seconds?: number;
  /** Print a table to stdout (default true). */
  print?: boolean;
}

export interface EnvBenchRow {
  env: string;
  policy: 'random' | 'expert';
  api: 'step (async)' | 'stepSync';
  steps: number;
  episodes: number;
  /** Steps per second of the whole rollout loop: policy + step + resets. */
  seconds: number;
  stepsPerSecond: number;
  /** Steps per second counting only the time spent inside step (what the agent loop pays the env). */
  stepOnlyPerSecond: number;
  /** Fraction of finished episodes that were won. */
  successRate: number;
  meanEpisodeLength: number;
}

export interface EnvBenchResult {
  name: 'envs';
  node: string;
  target: { stepsPerSecond: number };
  rows: EnvBenchRow[];
  resetsPerSecond: number;
}

async function measure(policy: 'random' | 'expert', api: 'step (async)' | 'stepSync', seconds: number): Promise<EnvBenchRow> {
  const env = new HouseholdEnv();
  const rng = new EnvRng(12345);
  let seed = 0;
  let r = env.resetSync({ seed: seed++ });
  let info = r.info;
  let steps = 0;
  let episodes = 0;
  let wins = 0;
  let inStep = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  let now = t0;
  while (now < deadline) {
    for (let k = 0; k < 512; k++) {
      let a: string;
      if (policy === 'random') {
        const acts = info.admissibleActions;
        a = acts[rng.int(acts.length)];
      } else {
        a = env.expertAction() ?? 'look';
      }
      const ts = performance.now();
      const s = api === 'stepSync' ? env.stepSync(a) : await env.step(a);
      inStep += performance.now() - ts;
      steps++;
      info = s.info;
      if (s.terminated || s.truncated) {
        episodes++;
        if (s.terminated) wins++;
        info = env.resetSync({ seed: seed++ }).info;
      }
    }
    now = performance.now();
  }
  const dt = (now - t0) / 1000;
  return {
    env: 'household',
    policy,
    api,
    steps,
    episodes,
    seconds: dt,
    stepsPerSecond: steps / dt,
    stepOnlyPerSecond: steps / (inStep / 1000),
    successRate: episodes ? wins / episodes : 0,
    meanEpisodeLength: episodes ? steps / episodes : 0,
  };
}

function measureResets(seconds: number): number {
  const env = new HouseholdEnv();
  let n = 0;
  const t0 = performance.now();
  let now = t0;
  while (now - t0 < seconds * 1000) {
    for (let k = 0; k < 64; k++) env.resetSync({ seed: n++ });
    now = performance.now();
  }
  return n / ((now - t0) / 1000);
}

export async function benchEnvs(options: EnvBenchOptions = {}): Promise<EnvBenchResult> {
  const seconds = options.seconds ?? 2;
  const rows: EnvBenchRow[] = [];
  const configs: ['random' | 'expert', 'stepSync' | 'step (async)'][] = [
    ['random', 'stepSync'],
    ['random', 'step (async)'],
    ['expert', 'stepSync'],
    ['expert', 'step (async)'],
  ];
  // JIT warm-up over every configuration first (the optimised code is shared), results discarded.
  for (const [policy, api] of configs) await measure(policy, api, Math.min(0.5, seconds / 2));
  for (const [policy, api] of configs) rows.push(await measure(policy, api, seconds));
  const resetsPerSecond = measureResets(Math.max(0.5, seconds / 2));
  const target = 50_000;
  if (options.print ?? true) {
    const lines = [
      'env        policy  api            loop steps/s  step-only steps/s  vs target 50k/s  episodes  success  mean len',
      ...rows.map(
        (r) =>
          `${r.env.padEnd(10)} ${r.policy.padEnd(7)} ${r.api.padEnd(13)} ${Math.round(r.stepsPerSecond).toString().padStart(13)}  ${Math.round(r.stepOnlyPerSecond).toString().padStart(17)}  ${(r.stepsPerSecond / target).toFixed(2).padStart(14)}x  ${String(r.episodes).padStart(8)}  ${(100 * r.successRate).toFixed(1).padStart(6)}%  ${r.meanEpisodeLength.toFixed(1).padStart(8)}`,
      ),
      `household resets/s: ${Math.round(resetsPerSecond)}`,
    ];
    console.log(lines.join('\n'));
  }
  return { name: 'envs', node: process.version, target: { stepsPerSecond: target }, rows, resetsPerSecond };
}
