/**
 * llama.cpp from memq through the optional package node-llama-cpp: load a GGUF file on the CPU and
 * compute log-probabilities of given token ids (no sampling). The next-token distribution comes
 * from `LlamaContextSequence.controlledEvaluate` with `generateNext.probabilities` under the
 * default greedy sampler, which leaves the logits untouched: the full softmax over the vocabulary,
 * computed by node-llama-cpp in float32 from llama.cpp's logits.
 *
 * node-llama-cpp is ESM-only; memq is CommonJS, so it is loaded with a dynamic import() that the
 * TypeScript compiler leaves alone. Missing package → an Error naming it and the install command.
 */

import { readGguf } from './gguf';

/** The version the tests and docs were written against (package.json pins it). */
export const NODE_LLAMA_CPP = 'node-llama-cpp';
export const NODE_LLAMA_CPP_VERSION = '3.21.1';

// eslint-disable-next-line @typescript-eslint/no-implied-eval
let dynamicImport = new Function('s', 'return import(s)') as (s: string) => Promise<any>;

let cached: Promise<any> | undefined;

/**
 * Replaces how node-llama-cpp is imported. Only for hosts that evaluate modules in a vm without a
 * dynamic-import callback (vitest): their test files pass `(s) => import(s)`, which the test runner
 * transforms. Plain Node needs no call.
 */
export function setNodeLlamaCppImporter(importer: (specifier: string) => Promise<any>): void {
  if (typeof importer !== 'function') throw new TypeError('importer must be a function (specifier) => Promise<module>');
  dynamicImport = importer;
  cached = undefined;
}

/** The node-llama-cpp module, or an Error saying how to install it. */
export async function loadNodeLlamaCpp(): Promise<any> {
  if (!cached) {
    cached = dynamicImport(NODE_LLAMA_CPP).catch((e: NodeJS.ErrnoException) => {
      cached = undefined;
      const missing = e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND' || /Cannot find (package|module) 'node-llama-cpp'/.test(String(e?.message));
      throw new Error(
        missing
          ? `the llama.cpp prior needs the optional package ${NODE_LLAMA_CPP}, which is not installed: npm install ${NODE_LLAMA_CPP}@${NODE_LLAMA_CPP_VERSION}`
          : `${NODE_LLAMA_CPP} failed to load: ${e?.message ?? e}`,
      );
    });
  }
  return cached;
}

/** Whether node-llama-cpp can be imported (tests skip with a message when not). */
export async function nodeLlamaCppAvailable(): Promise<boolean> {
  try {
    await loadNodeLlamaCpp();
    return true;
  } catch {
    return false;
  }
}

let llamaInstance: Promise<any> | undefined;

async function getCpuLlama(): Promise<any> {
  const m = await loadNodeLlamaCpp();
  // CPU only, prebuilt binaries only (never a source build at run time), quiet
  llamaInstance ??= m.getLlama({ gpu: false, build: 'never', logLevel: m.LlamaLogLevel?.error ?? 'error', progressLogs: false });
  return llamaInstance;
}

export interface LlamaCppModelOptions {
  /** Context size in tokens (default min(the model's training context, 4096)). */
  contextSize?: number;
  /** CPU threads (default: node-llama-cpp's choice). */
  threads?: number;
  /**
   * Type of llama.cpp's KV cache (default F32, so scores match memq's float32 engine; llama.cpp's
   * own default F16 moves log-probabilities by ~1e-3 on the tiny test models).
   */
  kvCacheType?: 'F32' | 'F16';
}

function logOf(p: number | undefined): number {
  return p === undefined || p <= 0 ? -Infinity : Math.log(p);
}

/** A GGUF model loaded by llama.cpp with one context sequence. Calls run one at a time. */
export class LlamaCppModel {
  private queue: Promise<unknown> = Promise.resolve();
  private constructor(
    /** @internal node-llama-cpp's LlamaModel */ readonly model: any, private readonly context: any, private readonly seq: any,
    readonly file: string, /** rows of token_embd (the id space) */ readonly vocabSize: number,
  ) {}

  static async load(file: string, opts: LlamaCppModelOptions = {}): Promise<LlamaCppModel> {
    if (typeof file !== 'string') throw new TypeError('file must be a path string');
    const g = readGguf(file); // memq's own checks first: a clear message for a bad file
    const emb = g.tensors.find((t) => t.name === 'token_embd.weight');
    if (!emb || emb.ne.length !== 2) throw new Error(`${file}: no 2-D token_embd.weight tensor`);
    const llama = await getCpuLlama();
    let model: any;
    try {
      model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
    } catch (e) {
      throw new Error(`llama.cpp could not load ${file}: ${(e as Error).message}`);
    }
    const contextSize = opts.contextSize ?? Math.min(model.trainContextSize ?? 4096, 4096);
    const kv = opts.kvCacheType ?? 'F32';
    const context = await model.createContext({
      contextSize, sequences: 1, threads: opts.threads, flashAttention: false,
      experimentalKvCacheKeyType: kv, experimentalKvCacheValueType: kv,
    });
    return new LlamaCppModel(model, context, context.getSequence(), file, emb.ne[1]);
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Tokens one sequence may hold (the context size): longer inputs are refused, never shifted. */
  get contextSize(): number {
    return this.context.contextSize;
  }

  private checkLength(name: string, n: number): void {
    if (n > this.contextSize) throw new RangeError(`${name} needs ${n} tokens of context, more than the context size ${this.contextSize} (LlamaCppModelOptions.contextSize)`);
  }

  private checkIds(name: string, ids: readonly number[]): void {
    const V = this.vocabSize;
    ids.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new RangeError(`${name}[${i}] must be a token id in [0, ${V}), got ${t}`);
    });
  }

  /** Evaluates `tokens` after the current state; returns the next-token distribution after each marked one. */
  private async evalWithProbs(tokens: number[], want: (i: number) => boolean): Promise<(Map<number, number> | undefined)[]> {
    const items = tokens.map((t, i) => (want(i) ? [t, { generateNext: { probabilities: true } }] : t));
    const res: any[] = await this.seq.controlledEvaluate(items);
    return tokens.map((_, i) => (want(i) ? res[i]?.next?.probabilities : undefined));
  }

  /** log p(t_i | t_<i) for each token (the first: 0), like LlmModel.tokenLogprobs for one sequence. */
  tokenLogprobs(seq: number[]): Promise<Float64Array> {
    return this.serial(async () => {
      this.checkIds('seq', seq);
      this.checkLength('seq', seq.length);
      await this.seq.clearHistory();
      const out = new Float64Array(seq.length);
      if (seq.length < 2) return out;
      const probs = await this.evalWithProbs(seq.slice(0, -1), () => true);
      for (let i = 1; i < seq.length; i++) out[i] = logOf(probs[i - 1]!.get(seq[i]));
      return out;
    });
  }

  /** The full next-token log-distribution after every position of `seq` (rows of vocabSize). */
  nextTokenLogprobs(seq: number[]): Promise<Float64Array[]> {
    return this.serial(async () => {
      this.checkIds('seq', seq);
      this.checkLength('seq', seq.length);
      await this.seq.clearHistory();
      const probs = await this.evalWithProbs(seq, () => true);
      const V = this.vocabSize;
      return probs.map((p) => {
        const row = new Float64Array(V).fill(-Infinity);
        for (const [t, pr] of p!) row[t] = logOf(pr);
        return row;
      });
    });
  }

  /**
   * log p(candidate | prompt) per candidate, summed or averaged over the candidate's tokens. The
   * prompt is evaluated once; each candidate is appended, read, and erased from the KV cache.
   */
  score(prompt: number[], candidates: readonly (readonly number[])[], lengthNormalize: boolean): Promise<Float64Array> {
    return this.serial(async () => {
      if (!Array.isArray(prompt) || prompt.length === 0) throw new RangeError('prompt must be a non-empty array of token ids');
      this.checkIds('prompt', prompt);
      candidates.forEach((c, k) => {
        this.checkIds(`candidates[${k}]`, c);
        this.checkLength(`prompt + candidates[${k}]`, prompt.length + c.length - 1);
      });
      await this.seq.clearHistory();
      const [first] = (await this.evalWithProbs(prompt, (i) => i === prompt.length - 1)).slice(-1);
      const out = new Float64Array(candidates.length);
      for (let k = 0; k < candidates.length; k++) {
        const c = candidates[k];
        if (c.length === 0) continue;
        let lp = logOf(first!.get(c[0]));
        if (c.length > 1) {
          const probs = await this.evalWithProbs(c.slice(0, -1), () => true);
          for (let j = 1; j < c.length; j++) lp += logOf(probs[j - 1]!.get(c[j]));
          await this.seq.eraseContextTokenRanges([{ start: prompt.length, end: this.seq.nextTokenIndex }]);
        }
        out[k] = lengthNormalize ? lp / c.length : lp;
      }
      return out;
    });
  }

  /**
   * For `memq bench llm`: the evaluation pattern of `score` (prompt once; each candidate appended,
   * read, erased) with llama.cpp computing the logits at the same positions, but only the greedy
   * next token read back (chosen in C++) instead of the full distribution through JavaScript. It
   * times llama.cpp's own compute of what `score` needs, without node-llama-cpp's per-position Map.
   */
  evaluateLikeScore(prompt: number[], candidates: number[][]): Promise<void> {
    return this.serial(async () => {
      this.checkIds('prompt', prompt);
      candidates.forEach((c, k) => this.checkIds(`candidates[${k}]`, c));
      await this.seq.clearHistory();
      const last = prompt.length - 1;
      await this.seq.controlledEvaluate(prompt.map((t, i) => (i === last ? [t, { generateNext: { token: true } }] : t)));
      for (const c of candidates) {
        if (c.length < 2) continue;
        await this.seq.controlledEvaluate(c.slice(0, -1).map((t) => [t, { generateNext: { token: true } }]));
        await this.seq.eraseContextTokenRanges([{ start: prompt.length, end: this.seq.nextTokenIndex }]);
      }
    });
  }

  async dispose(): Promise<void> {
    await this.queue;
    await this.context.dispose();
    await this.model.dispose();
  }
}
