/**
 * Mem-Q's action choice (MATH §10): Q̂(s, a) read from memory at keys enc(s ⊕ a), π from §5 with
 * the LLM prior as μ (`improvePolicy`, lib/policy/klImprove.ts: the native kernel), then one
 * action drawn from π by `chooseAction`. The agent is lib/agent/memq.ts; Mem-EM's E-step
 * (lib/train/memEm.ts) targets the same π.
 */
import type { AgentRng } from './agentRng';
import { pairText } from '../encoders/pairFormat';

/** The text whose embedding is the key of a (state, action) pair: state ⊕ action. */
export function stateActionText(state: string, action: string): string {
  return pairText(state, action);
}

/**
 * Entries of π within this of its maximum count as tied for the greedy choice: π comes out of
 * the kernel in float32, so actions with equal Q̂ and μ can differ by a rounding step.
 */
export const GREEDY_TIE_TOLERANCE = 1e-7;

/**
 * One action from π(·|s): a sample while training; while evaluating, the argmax of π with ties
 * (within GREEDY_TIE_TOLERANCE) broken uniformly at random, so that a flat π does not always
 * pick action 0. At α = 0 the kernel's π is already uniform over the actions whose Q̂ ties for
 * the maximum on μ's support, and both modes draw uniformly from exactly that set — the set the
 * E-step's target q(·|s) spreads its mass over.
 */
export function chooseAction(policy: ArrayLike<number>, mode: 'train' | 'eval', rng: AgentRng): number {
  return mode === 'train' ? rng.categorical(policy) : rng.argmax(policy, GREEDY_TIE_TOLERANCE);
}
