/**
 * ModelPrior: μ(a | s) from a language model (MATH §5, §10). Each admissible action is scored
 * as log p(action tokens | prompt(s)) in one batched call that shares the prompt's K/V, then
 * normalised over the admissible set: log μ(a_j | s) = score_j − logsumexp_k score_k.
 */
import type { LlmModel } from './model';
import type { Prior } from './prior';
import type { TextTokenizer } from './tokenizer';

export interface ModelPriorOptions {
  /** Divide each action's log-probability by its token count before normalising. */
  lengthNormalize?: boolean;
  /** How the state becomes the prompt (default: the state text, then "\n> "). */
  prompt?: (state: string) => string;
  /** Temperature τ on the scores before normalising (default 1). */
  temperature?: number;
}

export class ModelPrior implements Prior {
  readonly name = 'model';
  constructor(
    private readonly model: LlmModel,
    private readonly tokenizer: TextTokenizer,
    private readonly opts: ModelPriorOptions = {},
  ) {
    const t = opts.temperature ?? 1;
    if (!(t > 0 && Number.isFinite(t))) throw new RangeError(`temperature must be a finite number > 0, got ${t}`);
  }

  async logPrior(state: string, actions: string[]): Promise<Float32Array> {
    if (actions.length === 0) return new Float32Array(0);
    const prompt = this.tokenizer.encode((this.opts.prompt ?? ((s: string) => `${s}\n> `))(state));
    if (prompt.length === 0) throw new RangeError('the prompt of a state must not tokenize to nothing');
    const cands = actions.map((a) => {
      const ids = this.tokenizer.encode(a);
      if (ids.length === 0) throw new RangeError(`action '${a}' tokenizes to nothing`);
      return ids;
    });
    const [scores] = await this.model.score([prompt], [cands], { lengthNormalize: this.opts.lengthNormalize ?? true });
    const tau = this.opts.temperature ?? 1;
    let m = -Infinity;
    for (const s of scores) m = Math.max(m, s / tau);
    let z = 0;
    for (const s of scores) z += Math.exp(s / tau - m);
    const lse = m + Math.log(z);
    return Float32Array.from(scores, (s) => s / tau - lse);
  }
}
