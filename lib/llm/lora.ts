/**
 * LoRA adapters and trainers of the transformer engine from TypeScript (MATH §11–§12; the C++
 * in native/core/llm/lora.cpp, train.cpp): the Mem-EM M-step trains a LoRA adapter on
 * per-token-weighted sequences (prompt tokens weight 0, action tokens weight w), and
 * ModelTrainer pretrains every weight of a tiny model.
 *
 * Concurrency: inference with an adapter, accumulate() and the optimizer step all run on worker
 * threads; a step takes the adapter's (LoraTrainer) or the model's (ModelTrainer) exclusive lock,
 * so an inference call in flight sees the weights either before or after a step, never half of
 * one. A trainer runs its own calls one at a time in call order (accumulate, step, getState,
 * setState may be issued without awaiting each other).
 */
import {
  loadNative, type NativeLlmModel, type NativeLoraAdapter, type NativeTrainer, type NativeTrainerState, type NativeTrainStats,
} from '../native';
import { tokenArray } from './batch';
import type { LlmModel } from './model';

/** LoRA hyper-parameters (PEFT's r, lora_alpha, target_modules, use_rslora). */
export interface LoraOptions {
  /** Rank (integer ≥ 1); default 8. */
  r?: number;
  /** lora_alpha: the update is scaled by alpha / r (alpha / √r with useRslora); default 16. */
  alpha?: number;
  /** Any of q_proj k_proj v_proj o_proj gate_proj up_proj down_proj (or q … down); default q_proj, v_proj. */
  targetModules?: string[];
  useRslora?: boolean;
  /** Written to adapter_config.json's base_model_name_or_path. */
  baseModelNameOrPath?: string;
}

export interface LoraAdapterConfig {
  r: number;
  alpha: number;
  /** Canonical PEFT names, in q k v o gate up down order. */
  targetModules: string[];
  useRslora: boolean;
  /** alpha / r, or alpha / √r with useRslora. */
  scale: number;
  baseModelNameOrPath?: string;
}

function nativeModel(model: LlmModel, name: string): NativeLlmModel {
  const n = (model as { native?: NativeLlmModel } | null)?.native;
  if (!n) throw new TypeError(`${name} must be an LlmModel`);
  return n;
}

function nativeAdapter(adapter: LoraAdapter, name: string): NativeLoraAdapter {
  if (!(adapter instanceof LoraAdapter)) throw new TypeError(`${name} must be a LoraAdapter`);
  return adapter.native;
}

/**
 * A LoRA adapter (A [r, in] Kaiming-uniform, B [out, r] = 0 at creation) for models of one
 * config. Use it with `model.score/tokenLogprobs/embedMean(…, { lora })`, train it with a
 * LoraTrainer, save it in the PEFT layout, or fold it into a copy with `model.mergeLora`.
 */
export class LoraAdapter {
  private constructor(/** @internal */ readonly native: NativeLoraAdapter) {}

  /** A fresh adapter for `model`'s config (B = 0: outputs equal the base model's). */
  static create(model: LlmModel, opts: LoraOptions = {}, seed = 1): LoraAdapter {
    const m = nativeModel(model, 'model');
    if (opts === null || typeof opts !== 'object') throw new TypeError('opts must be an object {r, alpha, targetModules, useRslora}');
    const cfg: Record<string, unknown> = {};
    if (opts.r !== undefined) {
      if (typeof opts.r !== 'number' || !Number.isInteger(opts.r)) throw new TypeError(`opts.r must be an integer, got ${opts.r}`);
      if (opts.r < 1) throw new RangeError(`opts.r must be >= 1, got ${opts.r}`);
      cfg.r = opts.r;
    }
    if (opts.alpha !== undefined) {
      if (typeof opts.alpha !== 'number') throw new TypeError(`opts.alpha must be a number, got ${typeof opts.alpha}`);
      if (!Number.isFinite(opts.alpha)) throw new RangeError(`opts.alpha must be a finite number, got ${opts.alpha}`);
      cfg.lora_alpha = opts.alpha;
    }
    if (opts.targetModules !== undefined) {
      if (!Array.isArray(opts.targetModules) || opts.targetModules.some((t) => typeof t !== 'string')) {
        throw new TypeError('opts.targetModules must be an array of module names (q_proj k_proj v_proj o_proj gate_proj up_proj down_proj)');
      }
      cfg.target_modules = opts.targetModules;
    }
    if (opts.useRslora !== undefined) {
      if (typeof opts.useRslora !== 'boolean') throw new TypeError('opts.useRslora must be a boolean');
      cfg.use_rslora = opts.useRslora;
    }
    if (opts.baseModelNameOrPath !== undefined) {
      if (typeof opts.baseModelNameOrPath !== 'string') throw new TypeError('opts.baseModelNameOrPath must be a string');
      cfg.base_model_name_or_path = opts.baseModelNameOrPath;
    }
    if (!Number.isInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${seed}`);
    return new LoraAdapter(loadNative().NativeLoraAdapter.create(m, JSON.stringify(cfg), seed));
  }

  /** Reads a PEFT adapter directory (adapter_config.json + adapter_model.safetensors) for `model`'s config. */
  static async load(dir: string, model: LlmModel): Promise<LoraAdapter> {
    if (typeof dir !== 'string') throw new TypeError('dir must be a string');
    const m = nativeModel(model, 'model');
    return new LoraAdapter(await loadNative().NativeLoraAdapter.load(dir, m));
  }

  /** Writes adapter_config.json + adapter_model.safetensors (float32) in the PEFT layout. */
  save(dir: string): void {
    this.native.save(dir);
  }

  get config(): LoraAdapterConfig {
    const c = JSON.parse(this.native.config());
    const out: LoraAdapterConfig = {
      r: c.r, alpha: c.lora_alpha, targetModules: c.target_modules, useRslora: c.use_rslora, scale: c.scale,
    };
    if (typeof c.base_model_name_or_path === 'string') out.baseModelNameOrPath = c.base_model_name_or_path;
    return out;
  }

  /** Number of trainable parameters (all A and B matrices). */
  get numParams(): number {
    return this.native.numParams();
  }

  /** A copy of all A and B matrices, flat (layer by layer, q k v o gate up down, A then B). */
  getParams(): Float32Array {
    return this.native.getParams();
  }

  /**
   * Replaces every parameter (length must equal numParams). Copied at once; written on a worker
   * thread after the inference/accumulate calls in flight on this adapter finish.
   */
  async setParams(params: Float32Array | ArrayLike<number>): Promise<void> {
    const p = params instanceof Float32Array ? params : Float32Array.from(params as ArrayLike<number>);
    return this.native.setParams(p);
  }

  /** An independent copy (same config, same params). */
  clone(): LoraAdapter {
    return new LoraAdapter(this.native.clone());
  }
}

/** AdamW and loss options (torch.optim.AdamW semantics; global-norm clipping). */
export interface TrainOptions {
  /** > 0; default 1e-4. */
  lr?: number;
  /** In [0, 1); defaults 0.9, 0.999. */
  beta1?: number;
  beta2?: number;
  /** > 0; default 1e-8. */
  eps?: number;
  /** Decoupled weight decay, ≥ 0; default 0. */
  weightDecay?: number;
  /** Global-norm clip of the averaged gradient, ≥ 0 (0 = off); default 1. */
  clipNorm?: number;
  /** 'weightSum' (default): L = Σ w·nll / Σ w per micro-batch; 'sum': L = Σ w·nll. */
  lossNorm?: 'weightSum' | 'sum';
}

export type TrainStats = NativeTrainStats;
/** AdamW moments and step count (copies), for checkpointing a run and resuming it bit-exactly. */
export type TrainerState = NativeTrainerState;

function optionsJson(opts: TrainOptions): string {
  if (opts === null || typeof opts !== 'object') throw new TypeError('opts must be an object of training options');
  return JSON.stringify(opts);
}

/** Packs (seqs, per-token weights of the same ragged shape) for the native trainer. */
function weightedBatch(seqs: number[][], weights: number[][]) {
  const b = tokenArray('seqs', seqs);
  if (!Array.isArray(weights) || weights.length !== seqs.length) {
    throw new RangeError(`weights must hold one array per sequence (${seqs.length}), got ${Array.isArray(weights) ? weights.length : typeof weights}`);
  }
  const w = new Float32Array(b.tokens.length);
  weights.forEach((ws, i) => {
    if (!(Array.isArray(ws) || (ws as unknown) instanceof Float32Array)) throw new TypeError(`weights[${i}] must be an array of numbers`);
    const n = b.offsets[i + 1] - b.offsets[i];
    if (ws.length !== n) throw new RangeError(`weights[${i}].length must equal seqs[${i}].length (${n}), got ${ws.length}`);
    for (let j = 0; j < n; j++) {
      const x = ws[j];
      if (typeof x !== 'number') throw new TypeError(`weights[${i}][${j}] must be a number`);
      w[b.offsets[i] + j] = x;
    }
  });
  return { ...b, weights: w };
}

/** Runs a trainer's calls one at a time, in call order. */
abstract class TrainerBase {
  private tail: Promise<unknown> = Promise.resolve();

  protected constructor(protected readonly native: NativeTrainer) {}

  private enqueue<T>(f: () => Promise<T>): Promise<T> {
    const p = this.tail.then(f, f);
    this.tail = p.catch(() => undefined);
    return p;
  }

  /**
   * Adds the gradient of the weighted loss of one micro-batch: weights[i][t] weighs
   * −log p(seqs[i][t] | seqs[i][<t]); weights[i][0] must be 0 (no prediction). Resolves to the
   * micro-batch's loss. A rejected call leaves the accumulated gradient unchanged.
   */
  async accumulate(seqs: number[][], weights: number[][]): Promise<number> {
    const b = weightedBatch(seqs, weights);
    return this.enqueue(() => this.native.accumulate(b.tokens, b.offsets, b.weights));
  }

  /** Averages the accumulated gradient over the micro-batches, clips it, applies AdamW, zeroes it. */
  async step(): Promise<TrainStats> {
    return this.enqueue(() => this.native.step());
  }

  /** Optimizer steps taken so far (as of the last finished step or setState). */
  get steps(): number {
    return this.native.steps();
  }

  async getState(): Promise<TrainerState> {
    return this.enqueue(() => this.native.getState());
  }

  /** Restores {m, v, t} (from getState); the accumulated gradient, if any, is kept. */
  async setState(state: TrainerState): Promise<void> {
    if (state === null || typeof state !== 'object') throw new TypeError('state must be an object {m, v, t}');
    const s = { m: state.m, v: state.v, t: state.t };
    return this.enqueue(() => this.native.setState(s));
  }
}

/** Trains a LoRA adapter's A and B on `model` (base weights frozen). */
export class LoraTrainer extends TrainerBase {
  constructor(model: LlmModel, adapter: LoraAdapter, opts: TrainOptions = {}) {
    const m = nativeModel(model, 'model');
    const a = nativeAdapter(adapter, 'adapter');
    super(new (loadNative().NativeLoraTrainer)(m, a, optionsJson(opts)));
  }
}

/** Trains every weight of `model` in place (pretraining a tiny model). */
export class ModelTrainer extends TrainerBase {
  constructor(model: LlmModel, opts: TrainOptions = {}) {
    const m = nativeModel(model, 'model');
    super(new (loadNative().NativeModelTrainer)(m, optionsJson(opts)));
  }
}
