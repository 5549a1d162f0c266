/**
 * Fuzz targets of the transformer engine's TypeScript API (lib/llm): LlmModel.createRandom with
 * forged configs, LlmModel.load and LoraAdapter.load over damaged and forged model directories
 * (config.json, adapter_config.json, safetensors headers and tensor data, the sharded index),
 * LoraAdapter.create, and inference with bad token ids. Tiny valid models come from
 * createRandom + save and are then mutated on disk.
 *
 * Oracles: a reader either loads a usable model (inference runs) or throws an Error naming a
 * file in the directory; argument errors are TypeError/RangeError; score(prompt, [cand]) equals
 * the sum of tokenLogprobs(prompt ++ cand) over the candidate's tokens.
 */
import * as fs from 'fs';
import * as path from 'path';
import { LlmModel, makeLlmConfig, type LlmConfig } from '../../../lib/llm/model';
import { LoraAdapter } from '../../../lib/llm/lora';
import type { Call, Ctx, Entry } from '../core';
import { attempt, copyDir, damageFile, forgeJsonFile, forgeSafetensors, listFiles, readSafetensors } from '../mutate';
import type { FuzzRng } from '../rng';
import { Expect, lit, notNumber } from '../values';

interface Base {
  config: LlmConfig;
  model: LlmModel;
  dir: string;
  loraDir: string;
  lora: LoraAdapter;
  /** A model of another shape (adapters made for the base must not fit it). */
  other: LlmModel;
}

function baseOf(ctx: Ctx): Base {
  const got = ctx.pools.llm as Base | undefined;
  if (got) return got;
  const rng = ctx.rng;
  const arch = rng.pick(['qwen2', 'llama', 'qwen3'] as const);
  const config = makeLlmConfig({ arch, vocab: rng.pick([16, 32]), hidden: 16, intermediate: 24, layers: rng.range(1, 2), heads: 2, kvHeads: rng.pick([1, 2]), tied: rng.chance(0.3) });
  const model = LlmModel.createRandom(config, { seed: rng.range(1, 99) });
  const dir = ctx.fresh('model');
  model.save(dir);
  const lora = LoraAdapter.create(model, { r: 2, targetModules: rng.chance(0.5) ? ['q_proj', 'v_proj'] : ['q_proj', 'k_proj', 'o_proj', 'down_proj'] });
  const loraDir = ctx.fresh('lora');
  lora.save(loraDir);
  const other = LlmModel.createRandom({ ...config, hidden_size: 32, num_attention_heads: 4 }, { seed: 2 });
  const base = { config, model, dir, loraDir, lora, other };
  ctx.pools.llm = base;
  return base;
}

// ---- config fields ---------------------------------------------------------------------------------

type Verdict = 'type' | 'range' | 'size' | 'big' | 'shape' | 'ok';

/** Per config field: wild values with what they are (type error, out of range, huge, inconsistent, fine). */
const CONFIG_FIELDS: Record<string, [unknown, Verdict][]> = {
  model_type: [['gpt2', 'range'], ['', 'range'], [5, 'type'], [null, 'type'], ['qwen2', 'ok'], ['llama', 'ok']],
  vocab_size: [[0, 'range'], [-1, 'range'], [1.5, 'shape'], ['32', 'type'], [2 ** 31, 'size'], [1e9, 'size'], [1e300, 'size']],
  // 2^20: about 1 GB of weights with a small head_dim given (allocatable here), far more without
  hidden_size: [[0, 'range'], [-16, 'range'], [15, 'shape'], [2 ** 20, 'big'], [2 ** 40, 'size'], ['16', 'type']],
  intermediate_size: [[0, 'range'], [-1, 'range'], [2 ** 30, 'size'], [null, 'type'], [1.5, 'shape']],
  num_hidden_layers: [[0, 'range'], [-1, 'range'], [1e9, 'size'], [2 ** 31, 'size'], [2 ** 53, 'size'], ['2', 'type'], [true, 'type'], [1.5, 'shape']],
  num_attention_heads: [[0, 'range'], [3, 'shape'], [-2, 'range'], [2 ** 31, 'size'], [[2], 'type']],
  num_key_value_heads: [[0, 'range'], [3, 'shape'], [-1, 'range'], [{}, 'type']],
  head_dim: [[7, 'shape'], [0, 'range'], [-8, 'range'], [2 ** 30, 'size'], ['8', 'type'], [8, 'ok']],
  rms_norm_eps: [[0, 'range'], [-1e-6, 'range'], ['x', 'type'], [1e-300, 'ok']],
  rope_theta: [[0, 'range'], [-1, 'range'], [1e300, 'ok'], ['x', 'type']],
  tie_word_embeddings: [['yes', 'type'], [1, 'type'], [null, 'type']],
  attention_bias: [['no', 'type'], [true, 'ok'], [false, 'ok']],
  max_position_embeddings: [[0, 'range'], [-1, 'range'], [2 ** 53, 'ok'], ['4096', 'type'], [1, 'ok']],
  hidden_act: [['gelu', 'range'], [5, 'type'], ['silu', 'ok']],
  rope_scaling: [[{ type: 'linear', factor: 2 }, 'range'], [null, 'ok'], [5, 'type']],
  unknown_field: [[{ deep: [1, 2] }, 'ok'], [null, 'ok']],
};

function expectFor(e: Expect, field: string, v: unknown, verdict: Verdict): void {
  const why = `${field} = ${lit(v)}`;
  if (verdict === 'type') e.bad('TypeError', why);
  else if (verdict === 'range') e.bad(['RangeError', 'TypeError'], why);
  else if (verdict === 'shape') e.bad(['TypeError', 'RangeError'], why);
  else if (verdict === 'size') e.bad(['RangeError', 'Error'], `${why} (cannot be allocated)`);
  else if (verdict === 'big') e.maybe(['RangeError', 'Error'], `${why} (may not be allocatable)`);
}

const createRandomEntry: Entry = {
  name: 'LlmModel.createRandom',
  area: 'lib/llm',
  weight: 2,
  make(ctx) {
    const rng = ctx.rng;
    const base = baseOf(ctx);
    const e = new Expect();
    let config: unknown = { ...base.config };
    if (rng.chance(0.04)) {
      config = rng.pick<unknown>([null, undefined, 5, 'qwen2', []]);
      e.bad('TypeError', `config ${lit(config)}`);
    } else if (rng.chance(0.85)) {
      const c = config as Record<string, unknown>;
      const nf = rng.weighted([[5, 1], [1, 2]] as const);
      const used = new Set<string>();
      for (let i = 0; i < nf; i++) {
        const field = rng.pick(Object.keys(CONFIG_FIELDS));
        // A field set twice keeps only its last value, while Expect keeps both expectations.
        if (used.has(field)) continue;
        used.add(field);
        const [v, verdict] = rng.pick(CONFIG_FIELDS[field]);
        if (rng.chance(0.1) && field !== 'unknown_field' && field !== 'head_dim') {
          delete c[field];
          if (['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'model_type'].includes(field)) e.bad(['TypeError', 'RangeError'], `${field} missing`);
          else e.maybe(['TypeError', 'RangeError'], `${field} missing`);
          continue;
        }
        c[field] = v;
        expectFor(e, field, v, verdict);
      }
    }
    const opts: Record<string, unknown> = {};
    if (rng.chance(0.1)) {
      const [k, v, verdict] = rng.pick<[string, unknown, Verdict]>([
        ['seed', -1, 'range'], ['seed', 1.5, 'shape'], ['seed', 'x', 'type'], ['initStd', -1, 'range'], ['initStd', NaN, 'range'], ['initStd', 'x', 'type'],
      ]);
      opts[k] = v;
      expectFor(e, k, v, verdict);
    }
    return {
      desc: `LlmModel.createRandom(${lit(config)}${Object.keys(opts).length ? `, ${lit(opts)}` : ''})`,
      expect: e,
      run: () => LlmModel.createRandom(config as LlmConfig, opts),
      onOk: async (m) => usable(m as LlmModel),
    };
  },
};

/** A loaded model is usable: config, parameter count, and token log-probs of a short sequence. */
async function usable(m: LlmModel, lora?: LoraAdapter): Promise<string | undefined> {
  if (!(m instanceof LlmModel)) return `not an LlmModel: ${lit(m)}`;
  const c = m.config;
  if (!c || typeof c.vocab_size !== 'number') return `config ${lit(c)} has no vocab_size`;
  if (!(Number.isInteger(m.numParams) && m.numParams > 0)) return `numParams ${m.numParams}`;
  const seq = [0, Math.min(1, c.vocab_size - 1), c.vocab_size - 1];
  const lp = await m.tokenLogprobs([seq], lora ? { lora } : {});
  if (!(lp[0] instanceof Float32Array) || lp[0].length !== seq.length) return `tokenLogprobs returned ${lit(lp)}`;
  return undefined;
}

/** Model-directory mutations: config.json fields, safetensors forgery, raw damage, a forged sharded index. */
function mutateModelDir(rng: FuzzRng, dir: string): string[] {
  const done: string[] = [];
  const n = rng.weighted([[5, 1], [2, 2]] as const);
  for (let i = 0; i < n; i++) done.push(attempt(() => mutateModelDirOnce(rng, dir)));
  return done;
}

function mutateModelDirOnce(rng: FuzzRng, dir: string): string {
  const kind = rng.weighted([[4, 'config'], [4, 'tensors'], [1, 'damage'], [2, 'shard']] as const);
  const st = path.join(dir, 'model.safetensors');
  const stIsFile = fs.existsSync(st) && fs.statSync(st).isFile();
  if (kind === 'config') {
    const fields = Object.fromEntries(Object.entries(CONFIG_FIELDS).map(([k, v]) => [k, v.map((x) => x[0])]));
    return forgeJsonFile(rng, path.join(dir, 'config.json'), fields);
  }
  if (kind === 'tensors' && stIsFile) return forgeSafetensors(rng, st);
  if (kind === 'shard' && stIsFile) {
    const parsed = readSafetensors(st);
    if (!parsed) return 'model.safetensors unreadable (unchanged)';
    const shard = 'model-00001-of-00001.safetensors';
    fs.renameSync(st, path.join(dir, shard));
    const names = Object.keys(parsed.header).filter((k) => k !== '__metadata__');
    const map: Record<string, unknown> = Object.fromEntries(names.map((k) => [k, shard]));
    let index: unknown = { metadata: {}, weight_map: map };
    const f = names.length ? rng.int(6) : 0;
    if (f === 1) map[rng.pick(names)] = rng.pick(['../model/x.safetensors', '/etc/passwd', 'missing.safetensors', 5, {}, '', '.']);
    if (f === 2) index = rng.pick([{ weight_map: null }, { weight_map: [] }, [], null, { metadata: 5 }]);
    if (f === 3) delete map[rng.pick(names)];
    if (f === 4) map['model.extra.weight'] = shard;
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    return `sharded layout${f ? `, index forged (${f === 1 ? 'a bad file name' : f === 2 ? lit(index) : f === 3 ? 'a tensor missing' : 'an unknown tensor'})` : ''}`;
  }
  const files = listFiles(dir);
  return files.length ? damageFile(rng, path.join(dir, rng.pick(files))) : 'no files (unchanged)';
}

const loadEntry: Entry = {
  name: 'LlmModel.load',
  area: 'lib/llm',
  weight: 3,
  make(ctx) {
    const rng = ctx.rng;
    const base = baseOf(ctx);
    const e = new Expect();
    if (rng.chance(0.06)) {
      const v = rng.pick<unknown>([5, null, undefined, {}, ctx.fresh('missing'), '']);
      if (typeof v === 'string') {
        e.bad('Error', 'no such model directory');
        if (v) e.names = [v];
      } else e.bad('TypeError', `dir ${lit(v)}`);
      return { desc: `await LlmModel.load(${lit(v)})`, expect: e, run: () => LlmModel.load(v as string) };
    }
    const dir = ctx.fresh('model-forged');
    copyDir(base.dir, dir);
    const done = mutateModelDir(rng, dir);
    e.maybe('Error', 'damaged or forged model directory');
    e.names = [dir];
    return {
      desc: `${done.join('; ')}; await LlmModel.load(dir)`,
      expect: e,
      run: () => LlmModel.load(dir),
      onOk: async (m) => usable(m as LlmModel),
    };
  },
};

const ADAPTER_FIELDS: Record<string, unknown[]> = {
  r: [0, -1, 1e9, 2 ** 31, '2', 1.5, null, 4, 1],
  lora_alpha: [0, -16, '16', null, 1e300, 1e-300],
  target_modules: [['x_proj'], [], 'q_proj', [5], null, ['q_proj', 'q_proj'], ['q', 'v'], ['gate_proj']],
  use_rslora: ['yes', 1, null, true],
  base_model_name_or_path: [5, {}, 'x'],
  peft_type: ['PREFIX', 5],
  layers_to_transform: [[0], 5],
  fan_in_fan_out: [true],
  use_dora: [true],
  bias: ['all', 'lora_only'],
};

const loraLoadEntry: Entry = {
  name: 'LoraAdapter.load',
  area: 'lib/llm',
  weight: 2,
  make(ctx) {
    const rng = ctx.rng;
    const base = baseOf(ctx);
    const e = new Expect();
    const dir = ctx.fresh('lora-forged');
    copyDir(base.loraDir, dir);
    const done: string[] = [];
    let model = base.model;
    const r = rng.next();
    if (r < 0.45) done.push(attempt(() => forgeJsonFile(rng, path.join(dir, 'adapter_config.json'), ADAPTER_FIELDS)));
    else if (r < 0.85) done.push(attempt(() => forgeSafetensors(rng, path.join(dir, 'adapter_model.safetensors'))));
    else if (r < 0.93) {
      const files = listFiles(dir);
      done.push(attempt(() => damageFile(rng, path.join(dir, rng.pick(files)))));
    } else {
      model = base.other;
      done.push('loaded for a model of another shape');
    }
    e.maybe('Error', 'damaged or forged adapter directory');
    e.names = [dir];
    if (model === base.other) e.bad('Error', 'the adapter does not fit the model');
    let modelArg: unknown = model;
    if (rng.chance(0.04)) {
      modelArg = rng.pick<unknown>([null, {}, 5, base.lora]);
      e.bad('TypeError', `model ${lit(modelArg)}`);
      e.names = undefined;
    }
    return {
      desc: `${done.join('; ')}; await LoraAdapter.load(dir, ${modelArg === base.model ? 'model' : modelArg === base.other ? 'otherModel' : lit(modelArg)})`,
      expect: e,
      run: () => LoraAdapter.load(dir, modelArg as LlmModel),
      onOk: async (a) => {
        const ad = a as LoraAdapter;
        if (!(ad instanceof LoraAdapter)) return `not a LoraAdapter: ${lit(ad)}`;
        if (!(Number.isInteger(ad.numParams) && ad.numParams > 0)) return `numParams ${ad.numParams}`;
        return usable(base.model, ad);
      },
    };
  },
};

const loraCreateEntry: Entry = {
  name: 'LoraAdapter.create',
  area: 'lib/llm',
  weight: 1,
  make(ctx) {
    const rng = ctx.rng;
    const base = baseOf(ctx);
    const e = new Expect();
    const opts: Record<string, unknown> = { r: rng.range(1, 4) };
    const k = rng.int(8);
    if (k === 0) {
      opts.r = rng.pick([0, -1]);
      e.bad('RangeError', `r ${opts.r}`);
    } else if (k === 1) {
      opts.r = rng.pick([1e9, 2 ** 31, 2 ** 40]);
      e.bad(['RangeError', 'Error'], `r ${opts.r} (cannot be allocated)`);
    } else if (k === 2) {
      opts.r = rng.pick<unknown>(['2', 1.5, null]);
      e.bad(opts.r === 1.5 ? ['TypeError', 'RangeError'] : 'TypeError', `r ${lit(opts.r)}`);
    } else if (k === 3) {
      opts.alpha = rng.pick([NaN, Infinity, -Infinity]);
      e.bad('RangeError', `alpha ${opts.alpha}`);
    } else if (k === 4) {
      opts.targetModules = rng.pick<unknown>([['x_proj'], 'q_proj', [5], []]);
      e.bad(['TypeError', 'RangeError'], `targetModules ${lit(opts.targetModules)}`);
    } else if (k === 5) {
      opts.alpha = notNumber(rng);
      e.bad('TypeError', `alpha ${lit(opts.alpha)}`);
    }
    let seed: unknown = rng.range(0, 9);
    if (rng.chance(0.1)) {
      seed = rng.pick([-1, 1.5, NaN]);
      e.bad(['RangeError', 'TypeError'], `seed ${seed}`);
    }
    return {
      desc: `LoraAdapter.create(model, ${lit(opts)}, ${lit(seed)})`,
      expect: e,
      run: () => LoraAdapter.create(base.model, opts as never, seed as number),
      onOk: async (a) => usable(base.model, a as LoraAdapter),
    };
  },
};

/** Inference with token ids out of the vocabulary, negative, fractional; score vs tokenLogprobs. */
const inferenceEntry: Entry = {
  name: 'LlmModel.score/tokenLogprobs/embedMean',
  area: 'lib/llm',
  weight: 2,
  make(ctx) {
    const rng = ctx.rng;
    const base = baseOf(ctx);
    const vocab = base.config.vocab_size;
    const e = new Expect();
    const tok = () => {
      if (!rng.chance(0.04)) return rng.int(vocab);
      const v = rng.pick([vocab, -1, 1.5, NaN, 2 ** 31, 1e12]);
      e.bad(Number.isInteger(v) ? 'RangeError' : ['RangeError', 'TypeError'], `token ${v}`);
      return v;
    };
    const seq = (lo: number) => Array.from({ length: rng.range(lo, 5) }, tok);
    const which = rng.pick(['score', 'scoreImprove', 'tokenLogprobs', 'embedMean'] as const);
    const model = base.model;
    if (which === 'scoreImprove') {
      // the fused prior call: temperature, Q̂ and α, bad ones among them; on success log μ, π, V
      // against the plain score and the formulas in float64
      const prompts = Array.from({ length: rng.range(1, 2) }, () => seq(1));
      const cands = prompts.map(() => Array.from({ length: rng.range(1, 3) }, () => seq(1)));
      let temperature: unknown = rng.pick([1, 0.7, 2.5]);
      if (rng.chance(0.1)) {
        temperature = rng.pick([0, -1, NaN, Infinity]);
        e.bad('RangeError', `temperature ${temperature}`);
      }
      let alpha: unknown = rng.pick([0.1, 0.6, 3]);
      if (rng.chance(0.1)) {
        alpha = rng.pick([-1, NaN, Infinity]);
        e.bad('RangeError', `alpha ${alpha}`);
      } else if (rng.chance(0.05)) {
        alpha = '0.5';
        e.bad('TypeError', 'alpha a string');
      }
      const q: unknown[] = cands.map((c) => Float32Array.from(c, () => rng.range(-20, 20) / 10));
      if (rng.chance(0.1)) {
        const i = rng.int(q.length);
        const kind = rng.pick(['nan', 'short', 'array'] as const);
        if (kind === 'nan') (q[i] as Float32Array)[0] = NaN, e.bad('RangeError', `q[${i}][0] NaN`);
        else if (kind === 'short') q[i] = (q[i] as Float32Array).subarray(1), e.bad('RangeError', `q[${i}] one value short`);
        else q[i] = Array.from(q[i] as Float32Array), e.bad('TypeError', `q[${i}] a plain array`);
      }
      return {
        desc: `await model.scoreImprove(${lit(prompts)}, ${lit(cands)}, ${lit(q)}, ${lit(alpha)}, { temperature: ${lit(temperature)} })`,
        expect: e,
        run: () => model.scoreImprove(prompts, cands, q as Float32Array[], alpha as number, { temperature: temperature as number }),
        onOk: async (res) => {
          const r = res as { logPrior: Float32Array[]; policy: Float32Array[]; value: Float32Array };
          const raw = await model.score(prompts, cands);
          const tau = temperature as number, a = alpha as number;
          for (let i = 0; i < prompts.length; i++) {
            const s = Array.from(raw[i], (x) => x / tau);
            const mx = Math.max(...s);
            const lse = mx + Math.log(s.reduce((z, x) => z + Math.exp(x - mx), 0));
            const l = s.map((x, j) => x - lse + (q[i] as Float32Array)[j] / a);
            const lm = Math.max(...l);
            const z = l.reduce((acc, x) => acc + Math.exp(x - lm), 0);
            for (let j = 0; j < s.length; j++) {
              if (!(Math.abs(r.logPrior[i][j] - (s[j] - lse)) <= 1e-4 * (1 + Math.abs(s[j] - lse)))) return `logPrior[${i}][${j}] ${r.logPrior[i][j]}, want ${s[j] - lse}`;
              if (!(Math.abs(r.policy[i][j] - Math.exp(l[j] - lm) / z) <= 1e-4)) return `policy[${i}][${j}] ${r.policy[i][j]}, want ${Math.exp(l[j] - lm) / z}`;
            }
            const v = a * (lm + Math.log(z));
            if (!(Math.abs(r.value[i] - v) <= 1e-4 * (1 + Math.abs(v)))) return `value[${i}] ${r.value[i]}, want ${v}`;
          }
          return undefined;
        },
      };
    }
    if (which === 'score') {
      const prompts = Array.from({ length: rng.range(1, 2) }, () => seq(1));
      const cands = prompts.map(() => Array.from({ length: rng.range(1, 3) }, () => seq(1)));
      return {
        desc: `await model.score(${lit(prompts)}, ${lit(cands)})`,
        expect: e,
        run: () => model.score(prompts, cands),
        onOk: async (res) => {
          const out = res as Float32Array[];
          for (let i = 0; i < prompts.length; i++) {
            for (let j = 0; j < cands[i].length; j++) {
              const full = [...prompts[i], ...cands[i][j]];
              const [lp] = await model.tokenLogprobs([full]);
              let ref = 0;
              for (let t = prompts[i].length; t < full.length; t++) ref += lp[t];
              const got = out[i][j];
              if (!(Math.abs(got - ref) <= 1e-3 * (1 + Math.abs(ref)))) return `score[${i}][${j}] ${got}, sum of tokenLogprobs ${ref}`;
            }
          }
          return undefined;
        },
      };
    }
    const seqs = Array.from({ length: rng.range(1, 3) }, () => seq(0));
    return {
      desc: `await model.${which}(${lit(seqs)})`,
      expect: e.maybe(['RangeError', 'TypeError'], 'an empty sequence may be refused'),
      run: () => model[which](seqs),
      onOk: (res) => {
        if (which === 'embedMean') {
          const a = res as Float32Array;
          const want = seqs.length * base.config.hidden_size;
          if (!(a instanceof Float32Array) || a.length !== want) return `embedMean returned ${a?.length} floats, expected ${want}`;
          for (let i = 0; i < seqs.length; i++) {
            if (seqs[i].length === 0) continue;
            for (let j = 0; j < base.config.hidden_size; j++) if (!Number.isFinite(a[i * base.config.hidden_size + j])) return `embedMean[${i}] not finite`;
          }
          return undefined;
        }
        const lps = res as Float32Array[];
        for (let i = 0; i < seqs.length; i++) {
          if (lps[i].length !== seqs[i].length) return `tokenLogprobs[${i}] has ${lps[i].length} values for ${seqs[i].length} tokens`;
          for (let t = 0; t < seqs[i].length; t++) {
            const v = lps[i][t];
            if (t === 0 ? v !== 0 : !(v <= 0 && Number.isFinite(v))) return `tokenLogprobs[${i}][${t}] = ${v}`;
          }
        }
        return undefined;
      },
    };
  },
};

export const llmEntries: Entry[] = [createRandomEntry, loadEntry, loraLoadEntry, loraCreateEntry, inferenceEntry];


