/**
 * Log-sum-exp and softmax with a temperature τ, in float64 around the maximum (the normaliser of
 * MATH §5 with a uniform weight):
 *
 *   logSumExp(x, τ) = m + log Σ_i exp(x_i/τ − m),   m = max_i x_i/τ
 *   softmax(x, τ)_i = exp(x_i/τ − m) / Σ_j exp(x_j/τ − m)
 *
 * The one JS home of this computation: the language-model prior normalises its scores over the
 * admissible set with it (log μ = x/τ − logSumExp(x, τ), lib/llm/modelPrior.ts) and Mem-EM's
 * 'expq' weights are softmax(Q̂/α) (lib/train/memEm.ts). The §5 operator itself — weighted by a
 * prior, with its α = 0 and α = ∞ limits — is the native kernel behind `improvePolicy`
 * (lib/policy/klImprove.ts) for acting and the E-step, and `klImproveRow` (float64) for the exact
 * solvers.
 */

function scaledMax(x: ArrayLike<number>, temperature: number): number {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) m = Math.max(m, x[i] / temperature);
  return m;
}

/** log Σ_i exp(x_i/τ) (τ = `temperature`, default 1). */
export function logSumExp(x: ArrayLike<number>, temperature = 1): number {
  const m = scaledMax(x, temperature);
  let z = 0;
  for (let i = 0; i < x.length; i++) z += Math.exp(x[i] / temperature - m);
  return m + Math.log(z);
}

/** softmax(x/τ) as a new Float64Array (τ = `temperature`, default 1). */
export function softmax(x: ArrayLike<number>, temperature = 1): Float64Array {
  const m = scaledMax(x, temperature);
  const w = new Float64Array(x.length);
  let z = 0;
  for (let i = 0; i < x.length; i++) z += (w[i] = Math.exp(x[i] / temperature - m));
  for (let i = 0; i < x.length; i++) w[i] /= z;
  return w;
}
