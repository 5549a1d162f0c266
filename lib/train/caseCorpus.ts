/**
 * The case-conditioned prompts of the reflect agent (docs/reflect.md) and their training corpus.
 *
 * The reflect agent's kernel p(a | s, c) with `conditioning: 'prompt'` scores the actions on a
 * prompt that carries the retrieved case (its state, action and outcome) before the current
 * state; with the void case c∅ the prompt is the plain state. `memq model pretrain` trains the
 * domain prior on both kinds, with the cases retrieved from the expert corpus by the retrieval
 * the agent uses: the same state encoder (caseStateEncoder), the same case memory (caseMemory:
 * Gaussian kernel over state keys) and the Parzen prior over the top-M (MATH §4). One prompt
 * function (caseConditionedState) serves both, so the agent asks the model exactly what it was
 * trained on.
 */
import { EpisodicMemory } from '../memory/episodic';
import { parzenPrior } from '../policy/parzen';
import { discountedReturns } from '../policy/returns';
import { Mulberry32 } from '../policy/rng';
import { CachedEncoder, HashingEncoder } from '../encoders/hashing';
import { AbstractingEncoder } from '../encoders/abstract';
import type { Encoder } from '../encoders/types';
import { pairText } from '../encoders/pairFormat';

/** The retrieval the reflect agent and the case corpus share (REFLECT_DEFAULTS takes these). */
export const CASE_RETRIEVAL_DEFAULTS = { m: 16, bandwidth: 0.4, voidWeight: 0.05, gamma: 0.95 };

/** A retrieved case as the prompt shows it: its state, action and discounted return. */
export interface CaseRef {
  state: string;
  action: string;
  value: number;
}

/** The prompt of the case-conditioned kernel: the retrieved case, then the current state. */
export function caseConditionedState(state: string, c: CaseRef): string {
  return `a similar past situation:\n${pairText(c.state, c.action)}\noutcome: ${c.value > 0 ? 'success' : 'no success'} (return ${c.value.toFixed(2)})\n\nnow:\n${state}`;
}

/** enc(s) of the reflect agent's case memory (hashing; object identifiers abstracted when asked). */
export function caseStateEncoder(dim: number, abstractIds = false): Encoder {
  const e = new CachedEncoder(new HashingEncoder({ dim }));
  return abstractIds ? new AbstractingEncoder(e) : e;
}

/** The reflect agent's case memory: Gaussian kernel over state keys, replay, same-action merge. */
export function caseMemory(dim: number, bandwidth: number, capacity: number): EpisodicMemory {
  return new EpisodicMemory({
    dim,
    kernel: { kernel: 'gaussian', bandwidth },
    policy: { kind: 'replay', capacity },
    merge: { epsilon: 1e-4, rate: 'average' },
  });
}

export interface CorpusStep {
  state: string;
  action: string;
  /** The game the step belongs to (its own game's cases are never retrieved for it). */
  game: number;
  reward: number;
}

export interface CaseCorpusOptions {
  encoder: Encoder;
  m: number;
  bandwidth: number;
  voidWeight: number;
  gamma: number;
  seed: number;
}

/**
 * For each query step, one case sampled from the Parzen prior μ(c | s, M) over the top-M cases
 * of the corpus memory (the void case's mass left out: the plain prompt is the void case), from
 * games other than the step's own; null where no other game has a case near enough to carry
 * mass. `memory` holds the corpus (caseMemoryOf).
 */
export async function sampleCases(
  memory: EpisodicMemory, queries: { state: string; game: number }[], o: CaseCorpusOptions,
): Promise<(CaseRef | null)[]> {
  const out: (CaseRef | null)[] = new Array(queries.length).fill(null);
  if (!queries.length || memory.size === 0) return out;
  const rng = new Mulberry32(o.seed >>> 0);
  // a few more than M: the step's own game's cases are dropped before the top-M is formed
  const k = Math.min(memory.size, o.m + 8);
  const chunk = 256;
  for (let i0 = 0; i0 < queries.length; i0 += chunk) {
    const part = queries.slice(i0, i0 + chunk);
    const keys = await o.encoder.encode(part.map((q) => q.state));
    const hits = await memory.searchAuto(keys, k);
    part.forEach((q, r) => {
      const ids: number[] = [];
      const kern: number[] = [];
      for (let j = 0; j < k && ids.length < o.m; j++) {
        const id = hits.ids[r * k + j];
        if (id < 0) break;
        if (memory.getCase(id)!.episode === q.game) continue;
        ids.push(id);
        kern.push(hits.kernel[r * k + j]);
      }
      const prior = parzenPrior(ids, kern, o.voidWeight);
      const caseMass = 1 - prior.voidProb;
      if (!(caseMass > 1e-9)) return;
      let u = rng.next() * caseMass;
      let pick = prior.ids.length - 1;
      for (let j = 0; j < prior.ids.length; j++) {
        u -= prior.caseProbs[j];
        if (u <= 0) {
          pick = j;
          break;
        }
      }
      const c = memory.getCase(prior.ids[pick])!;
      out[i0 + r] = { state: c.state!, action: c.action!, value: c.value };
    });
  }
  return out;
}

/** The corpus as cases (s_t, a_t, G_t), keyed by enc(s_t), each tagged with its game. */
export async function caseMemoryOf(steps: CorpusStep[], o: CaseCorpusOptions): Promise<EpisodicMemory> {
  const memory = caseMemory(o.encoder.dim, o.bandwidth, Math.max(1, steps.length));
  const d = o.encoder.dim;
  // returns per game, in order
  let start = 0;
  while (start < steps.length) {
    let end = start;
    while (end < steps.length && steps[end].game === steps[start].game) end++;
    const g = steps.slice(start, end);
    const G = discountedReturns(g.map((s) => s.reward), o.gamma);
    const keys = await o.encoder.encode(g.map((s) => s.state));
    await memory.write(g.map((s, t) => ({
      key: keys.subarray(t * d, (t + 1) * d), value: G[t], state: s.state, action: s.action, episode: s.game, step: t, source: 'demo' as const,
    })));
    start = end;
  }
  return memory;
}

export interface CaseGain {
  /** Steps whose sampled case's action is admissible and is the expert's action here. */
  relevant: { states: number; meanGain: number };
  /** Steps whose sampled case's action is admissible but not the expert's. */
  irrelevant: { states: number; meanGain: number };
}

/**
 * What conditioning on a case does to the prior: on expert steps with a sampled case whose
 * action is admissible, the mean of log p(a_c | case prompt) − log p(a_c | void prompt), split
 * by whether a_c is the expert's action (the case is relevant) or not.
 */
export async function caseGain(
  prior: { logPriorMany(items: { state: string; actions: string[] }[]): Promise<Float32Array[]> },
  steps: { state: string; action: string; admissible: string[] }[], cases: (CaseRef | null)[],
): Promise<CaseGain> {
  const acc = { relevant: { states: 0, sum: 0 }, irrelevant: { states: 0, sum: 0 } };
  const items: { k: number; j: number }[] = [];
  steps.forEach((s, k) => {
    const c = cases[k];
    if (!c) return;
    const j = s.admissible.indexOf(c.action);
    if (j >= 0) items.push({ k, j });
  });
  const chunk = 32;
  for (let i = 0; i < items.length; i += chunk) {
    const part = items.slice(i, i + chunk);
    const reqs = part.flatMap(({ k }) => [
      { state: caseConditionedState(steps[k].state, cases[k]!), actions: steps[k].admissible },
      { state: steps[k].state, actions: steps[k].admissible },
    ]);
    const lps = await prior.logPriorMany(reqs);
    part.forEach(({ k, j }, r) => {
      const gain = lps[2 * r][j] - lps[2 * r + 1][j];
      const a = steps[k].action === cases[k]!.action ? acc.relevant : acc.irrelevant;
      a.states++;
      a.sum += gain;
    });
  }
  const mean = (a: { states: number; sum: number }) => ({ states: a.states, meanGain: a.states ? a.sum / a.states : NaN });
  return { relevant: mean(acc.relevant), irrelevant: mean(acc.irrelevant) };
}
