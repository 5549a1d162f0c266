/**
 * The action prior μ(a | s) of MATH §5/§10: log-probabilities over the admissible actions of a
 * state. Uniform by default; a model prior (the transformer engine + LoRA) implements the same
 * interface.
 */
export interface Prior {
  readonly name: string;
  /** log μ(a_j | s) for each admissible action (a Float32Array of actions.length; −∞ allowed). */
  logPrior(state: string, actions: string[]): Float32Array | Promise<Float32Array>;
  /** Optional: logPrior for many states in one batched call (the model priors: one native call). */
  logPriorMany?(items: { state: string; actions: string[] }[]): Promise<Float32Array[]>;
  /**
   * Optional: log μ over the admissible actions of a state and, given Q̂ for them, MATH §5's
   * π ∝ μ exp(Q̂/α) and V = α log Σ μ exp(Q̂/α), in one call. A prior that can fuse its scoring
   * with the improvement offers it (ModelPrior: one native call); MemQAgent then acts through it.
   * The result must equal improvePolicy([{ logPrior: await logPrior(s, A), q }], α).
   */
  improve?(state: string, actions: string[], q: Float32Array, alpha: number): Promise<PriorImprovement>;
}

/** What `Prior.improve` returns for one state. */
export interface PriorImprovement {
  logPrior: Float32Array;
  policy: Float32Array;
  value: number;
}

export class UniformPrior implements Prior {
  readonly name = 'uniform';
  logPrior(_state: string, actions: string[]): Float32Array {
    return new Float32Array(actions.length).fill(-Math.log(Math.max(1, actions.length)));
  }
}
