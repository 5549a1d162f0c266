/**
 * The action prior μ(a | s) of MATH §5/§10: log-probabilities over the admissible actions of a
 * state. Uniform by default; a model prior (the transformer engine + LoRA) implements the same
 * interface.
 */
export interface Prior {
  readonly name: string;
  /** log μ(a_j | s) for each admissible action (a Float32Array of actions.length; −∞ allowed). */
  logPrior(state: string, actions: string[]): Float32Array | Promise<Float32Array>;
}

export class UniformPrior implements Prior {
  readonly name = 'uniform';
  logPrior(_state: string, actions: string[]): Float32Array {
    return new Float32Array(actions.length).fill(-Math.log(Math.max(1, actions.length)));
  }
}
