/**
 * Parzen retrieval prior with the void case (MATH §4, Memento-II eq. 5–8):
 *   μ(c | s) = k(s, c) / (Σ_{c'} k(s, c') + κ∅),   μ(c∅ | s) = κ∅ / (Σ_{c'} k(s, c') + κ∅).
 * Summing over the top-M instead of all of M is the truncated estimate; the dropped mass is
 * the probability the full estimate puts on cases outside the top-M.
 */
export interface ParzenPrior {
  /** Case ids of the top-M (−1 padding removed), in retrieval order. */
  ids: Int32Array;
  /** μ over the top-M cases, same order as ids. */
  caseProbs: Float64Array;
  /** μ(c∅ | s): the void case, "act from the model's own knowledge". */
  voidProb: number;
  /** λ(s) = Σ k / (Σ k + κ∅) = 1 − voidProb. */
  confidence: number;
  /** Mass the full Parzen estimate puts outside the top-M (when the total kernel mass is known). */
  droppedMass?: number;
}

/**
 * One query's prior from its top-M ids and kernel values (one row of a search result).
 * `totalKernel`, when given, is Σ over all of M (for the dropped-mass report).
 * With no memory mass and κ∅ = 0 the prior is all void (the agent can always act).
 */
export function parzenPrior(
  ids: ArrayLike<number>,
  kernel: ArrayLike<number>,
  voidWeight: number,
  offset = 0,
  m = ids.length - offset,
  totalKernel?: number,
): ParzenPrior {
  if (!(voidWeight >= 0) || !Number.isFinite(voidWeight)) throw new RangeError(`voidWeight must be a finite number >= 0, got ${voidWeight}`);
  let n = 0;
  let sum = 0;
  for (let j = 0; j < m; j++) {
    if (ids[offset + j] < 0) continue;
    n++;
    sum += kernel[offset + j];
  }
  const outIds = new Int32Array(n);
  const probs = new Float64Array(n);
  const z = sum + voidWeight;
  let i = 0;
  for (let j = 0; j < m; j++) {
    if (ids[offset + j] < 0) continue;
    outIds[i] = ids[offset + j];
    probs[i] = z > 0 ? kernel[offset + j] / z : 0;
    i++;
  }
  const voidProb = z > 0 ? voidWeight / z : 1;
  const prior: ParzenPrior = { ids: outIds, caseProbs: probs, voidProb, confidence: 1 - voidProb };
  if (totalKernel !== undefined) prior.droppedMass = droppedMass(sum, totalKernel, voidWeight);
  return prior;
}

/** (Σ_all k − Σ_topM k) / (Σ_all k + κ∅): what truncation to the top-M leaves out. */
export function droppedMass(topKernelSum: number, totalKernelSum: number, voidWeight: number): number {
  const z = totalKernelSum + voidWeight;
  if (!(z > 0)) return 0;
  return Math.max(0, totalKernelSum - topKernelSum) / z;
}

/** Every query of a batched search result (b × m, −1 padded), optionally with totals per query. */
export function parzenPriorBatch(
  search: { ids: Int32Array; kernel: Float32Array },
  m: number,
  voidWeight: number,
  totals?: ArrayLike<number>,
): ParzenPrior[] {
  const b = search.ids.length / m;
  const out: ParzenPrior[] = [];
  for (let q = 0; q < b; q++) out.push(parzenPrior(search.ids, search.kernel, voidWeight, q * m, m, totals ? totals[q] : undefined));
  return out;
}
