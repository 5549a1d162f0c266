/**
 * An independent float64 reference forward of a Llama / Qwen2 / Qwen3 decoder, written from the
 * Hugging Face definitions (transformers' modeling_llama / modeling_qwen2 / modeling_qwen3), not
 * from the engine's C++. It reads an HF model directory (config.json + model.safetensors, or the
 * shards named by model.safetensors.index.json) with its own safetensors parser, and a PEFT LoRA
 * adapter directory. Plain per-sequence causal forward, no caching, no batching: slow, tiny
 * models only.
 *
 * HF semantics followed here:
 * - RMSNorm: x · rsqrt(mean(x²) + eps) · weight (eps inside the square root).
 * - RoPE: inv_freq_i = θ^(−2i/d), angle = pos · inv_freq_i, cos/sin of cat(freqs, freqs);
 *   q' = q·cos + rotate_half(q)·sin with rotate_half(x) = cat(−x[d/2:], x[:d/2]).
 * - Attention: scores = q·k · head_dim^−0.5, causal, softmax; GQA via repeat_kv, i.e. query head
 *   h reads key/value head ⌊h / (n_heads / n_kv_heads)⌋.
 * - qwen2: q/k/v biases, no o bias. llama: q/k/v/o biases iff attention_bias. qwen3: q/k/v/o
 *   biases iff attention_bias; q_norm / k_norm (RMSNorm over head_dim, per head) applied to the
 *   projected q and k before RoPE; head_dim from config (Qwen3Config's default is 128).
 * - MLP: down(silu(gate(x)) ⊙ up(x)). Decoder layer: x += attn(norm₁(x)); x += mlp(norm₂(x)).
 *   Final RMSNorm, then lm_head (or embed_tokens when tie_word_embeddings).
 * - LoRA (PEFT): W' = W + scale · B · A, scale = lora_alpha / r (lora_alpha / √r with use_rslora).
 */
import * as fs from 'fs';
import * as path from 'path';

export interface RefTensor {
  shape: number[];
  data: Float64Array;
}

export interface ReferenceConfig {
  model_type: 'llama' | 'qwen2' | 'qwen3';
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
  attention_bias: boolean;
}

export interface Reference {
  config: ReferenceConfig;
  tensors: Map<string, RefTensor>;
}

export interface ReferenceLoraModule {
  /** r × in, row-major. */
  A: Float64Array;
  /** out × r, row-major. */
  B: Float64Array;
  r: number;
}

/** LoRA deltas keyed by the HF weight name of the projection, without `.weight`. */
export interface ReferenceLora {
  scale: number;
  modules: Map<string, ReferenceLoraModule>;
}

// ---------------------------------------------------------------------------------------------
// safetensors: u64 LE header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// then the data area; offsets are relative to the start of the data area.

function f16ToF64(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero / subnormal
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const bits = new Uint32Array(1);
const asF32 = new Float32Array(bits.buffer);

const DTYPE_SIZE: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2 };

export function readSafetensors(file: string): Map<string, RefTensor> {
  const buf = fs.readFileSync(file);
  if (buf.length < 8) throw new Error(`${file}: shorter than the 8-byte header length`);
  const n = buf.readBigUInt64LE(0);
  if (n > BigInt(buf.length - 8)) throw new Error(`${file}: header length ${n} exceeds the file`);
  const headerLen = Number(n);
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, unknown>;
  const dataStart = 8 + headerLen;
  const dataLen = buf.length - dataStart;
  const out = new Map<string, RefTensor>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const info = raw as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const size = DTYPE_SIZE[info.dtype];
    if (size === undefined) throw new Error(`${file}: ${name}: unsupported dtype ${info.dtype}`);
    const count = info.shape.reduce((a, b) => a * b, 1);
    const [begin, end] = info.data_offsets;
    if (!(begin >= 0 && end <= dataLen && end - begin === count * size)) {
      throw new Error(`${file}: ${name}: data_offsets [${begin}, ${end}] do not match shape ${JSON.stringify(info.shape)} × ${size} B`);
    }
    const at = dataStart + begin;
    const data = new Float64Array(count);
    for (let i = 0; i < count; i++) {
      const o = at + i * size;
      switch (info.dtype) {
        case 'F64':
          data[i] = buf.readDoubleLE(o);
          break;
        case 'F32':
          data[i] = buf.readFloatLE(o);
          break;
        case 'F16':
          data[i] = f16ToF64(buf.readUInt16LE(o));
          break;
        case 'BF16':
          // bf16 is the top half of an IEEE float32.
          bits[0] = buf.readUInt16LE(o) << 16;
          data[i] = asF32[0];
          break;
      }
    }
    out.set(name, { shape: [...info.shape], data });
  }
  return out;
}

/**
 * Writes tensors as F32 safetensors (insertion order, tightly packed, header padded with spaces
 * to a multiple of 8 bytes), for tests that edit a saved model's weights.
 */
export function writeSafetensors(file: string, tensors: Map<string, RefTensor>): void {
  const header: Record<string, unknown> = {};
  const blobs: Buffer[] = [];
  let off = 0;
  for (const [name, t] of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new Error(`${name}: shape [${t.shape}] does not match ${t.data.length} values`);
    const bytes = Buffer.from(Float32Array.from(t.data).buffer);
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [off, off + bytes.length] };
    blobs.push(bytes);
    off += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), ...blobs]));
}

// ---------------------------------------------------------------------------------------------
// Model directory

function num(cfg: Record<string, unknown>, key: string, dflt?: number): number {
  const v = cfg[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`config.json: ${key} missing or not a number`);
  return v;
}

export function parseReferenceConfig(cfg: Record<string, unknown>): ReferenceConfig {
  const model_type = cfg.model_type;
  if (model_type !== 'llama' && model_type !== 'qwen2' && model_type !== 'qwen3') {
    throw new Error(`config.json: model_type ${String(model_type)} is not llama / qwen2 / qwen3`);
  }
  if (cfg.hidden_act !== undefined && cfg.hidden_act !== 'silu') throw new Error(`config.json: hidden_act ${String(cfg.hidden_act)} (only silu)`);
  if (cfg.rope_scaling !== undefined && cfg.rope_scaling !== null) throw new Error('config.json: rope_scaling is not supported by the reference');
  // Newer transformers write rope_parameters {rope_type, rope_theta} instead of rope_theta.
  const rp = cfg.rope_parameters as { rope_type?: string; rope_theta?: number } | undefined | null;
  if (rp && rp.rope_type !== undefined && rp.rope_type !== 'default') throw new Error(`config.json: rope_type ${rp.rope_type} is not supported`);
  if (cfg.rope_theta === undefined && rp?.rope_theta !== undefined) cfg = { ...cfg, rope_theta: rp.rope_theta };
  if (cfg.mlp_bias === true) throw new Error('config.json: mlp_bias is not supported by the reference');
  const hidden = num(cfg, 'hidden_size');
  const heads = num(cfg, 'num_attention_heads');
  // Llama / Qwen2: head_dim or hidden / heads; Qwen3Config's default head_dim is 128.
  const headDimDefault = model_type === 'qwen3' ? 128 : hidden / heads;
  const head_dim = cfg.head_dim === undefined || cfg.head_dim === null ? headDimDefault : num(cfg, 'head_dim');
  return {
    model_type,
    vocab_size: num(cfg, 'vocab_size'),
    hidden_size: hidden,
    intermediate_size: num(cfg, 'intermediate_size'),
    num_hidden_layers: num(cfg, 'num_hidden_layers'),
    num_attention_heads: heads,
    num_key_value_heads: num(cfg, 'num_key_value_heads', heads),
    head_dim,
    rms_norm_eps: num(cfg, 'rms_norm_eps', 1e-6),
    rope_theta: num(cfg, 'rope_theta', 10000),
    tie_word_embeddings: cfg.tie_word_embeddings === true,
    attention_bias: cfg.attention_bias === true,
  };
}

/** The tensors an HF model of this config has, with their shapes. */
export function expectedTensors(c: ReferenceConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const H = c.hidden_size;
  const qd = c.num_attention_heads * c.head_dim;
  const kvd = c.num_key_value_heads * c.head_dim;
  m.set('model.embed_tokens.weight', [c.vocab_size, H]);
  const qkvBias = c.model_type === 'qwen2' || c.attention_bias;
  const oBias = c.model_type !== 'qwen2' && c.attention_bias;
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    m.set(p + 'input_layernorm.weight', [H]);
    m.set(p + 'post_attention_layernorm.weight', [H]);
    m.set(p + 'self_attn.q_proj.weight', [qd, H]);
    m.set(p + 'self_attn.k_proj.weight', [kvd, H]);
    m.set(p + 'self_attn.v_proj.weight', [kvd, H]);
    m.set(p + 'self_attn.o_proj.weight', [H, qd]);
    if (qkvBias) {
      m.set(p + 'self_attn.q_proj.bias', [qd]);
      m.set(p + 'self_attn.k_proj.bias', [kvd]);
      m.set(p + 'self_attn.v_proj.bias', [kvd]);
    }
    if (oBias) m.set(p + 'self_attn.o_proj.bias', [H]);
    if (c.model_type === 'qwen3') {
      m.set(p + 'self_attn.q_norm.weight', [c.head_dim]);
      m.set(p + 'self_attn.k_norm.weight', [c.head_dim]);
    }
    m.set(p + 'mlp.gate_proj.weight', [c.intermediate_size, H]);
    m.set(p + 'mlp.up_proj.weight', [c.intermediate_size, H]);
    m.set(p + 'mlp.down_proj.weight', [H, c.intermediate_size]);
  }
  m.set('model.norm.weight', [H]);
  if (!c.tie_word_embeddings) m.set('lm_head.weight', [c.vocab_size, H]);
  return m;
}

/**
 * Reads config.json and the weights; checks that the file holds exactly the tensors the HF
 * definition of this config has, with HF's shapes (a tied model may also carry lm_head.weight,
 * which HF then ignores).
 */
export function loadReference(dir: string): Reference {
  const raw = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const config = parseReferenceConfig(raw);
  let tensors: Map<string, RefTensor>;
  const index = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(index)) {
    const wm = (JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }).weight_map;
    tensors = new Map();
    for (const shard of new Set(Object.values(wm))) {
      for (const [k, v] of readSafetensors(path.join(dir, shard))) tensors.set(k, v);
    }
  } else {
    tensors = readSafetensors(path.join(dir, 'model.safetensors'));
  }
  const want = expectedTensors(config);
  for (const [name, shape] of want) {
    const t = tensors.get(name);
    if (!t) throw new Error(`${dir}: missing tensor ${name}`);
    if (t.shape.join(',') !== shape.join(',')) throw new Error(`${dir}: ${name} has shape [${t.shape}], HF expects [${shape}]`);
  }
  for (const name of tensors.keys()) {
    if (!want.has(name) && !(name === 'lm_head.weight' && config.tie_word_embeddings)) throw new Error(`${dir}: unexpected tensor ${name}`);
  }
  return { config, tensors };
}

// ---------------------------------------------------------------------------------------------
// PEFT adapter

/** Reads a PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors). */
export function readPeftAdapter(dir: string): ReferenceLora {
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  if (cfg.peft_type !== undefined && cfg.peft_type !== 'LORA') throw new Error(`adapter_config.json: peft_type ${String(cfg.peft_type)}`);
  const r = cfg.r;
  const alpha = cfg.lora_alpha;
  if (typeof r !== 'number' || typeof alpha !== 'number') throw new Error('adapter_config.json: r / lora_alpha missing');
  for (const k of ['rank_pattern', 'alpha_pattern']) {
    const v = cfg[k];
    if (v && typeof v === 'object' && Object.keys(v).length) throw new Error(`adapter_config.json: ${k} is not supported by the reference`);
  }
  const scale = cfg.use_rslora === true ? alpha / Math.sqrt(r) : alpha / r;
  const t = readSafetensors(path.join(dir, 'adapter_model.safetensors'));
  const modules = new Map<string, ReferenceLoraModule>();
  const re = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/;
  for (const name of t.keys()) {
    const m = re.exec(name);
    if (!m) throw new Error(`adapter_model.safetensors: unexpected key ${name}`);
    if (m[2] !== 'A') continue;
    const A = t.get(name)!;
    const B = t.get(`base_model.model.${m[1]}.lora_B.weight`);
    if (!B) throw new Error(`adapter_model.safetensors: ${name} has no lora_B`);
    if (A.shape.length !== 2 || A.shape[0] !== r || B.shape.length !== 2 || B.shape[1] !== r) {
      throw new Error(`adapter_model.safetensors: ${m[1]}: A [${A.shape}] / B [${B.shape}] do not have rank ${r}`);
    }
    modules.set(m[1], { A: A.data, B: B.data, r });
  }
  for (const name of t.keys()) {
    const m = re.exec(name)!;
    if (m[2] === 'B' && !modules.has(m[1])) throw new Error(`adapter_model.safetensors: ${name} has no lora_A`);
  }
  return { scale, modules };
}

// ---------------------------------------------------------------------------------------------
// Forward

interface Linear {
  W: Float64Array; // out × in
  b?: Float64Array;
  out: number;
  in: number;
}

function linearOf(ref: Reference, name: string, lora?: ReferenceLora): Linear {
  const w = ref.tensors.get(name + '.weight');
  if (!w) throw new Error(`missing tensor ${name}.weight`);
  const [out, inn] = w.shape;
  let W = w.data;
  const mod = lora?.modules.get(name);
  if (mod) {
    // W' = W + scale · B · A
    W = Float64Array.from(W);
    const { A, B, r } = mod;
    if (A.length !== r * inn || B.length !== out * r) throw new Error(`LoRA ${name}: A/B sizes do not match the weight [${out}, ${inn}]`);
    for (let o = 0; o < out; o++) {
      for (let i = 0; i < inn; i++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += B[o * r + k] * A[k * inn + i];
        W[o * inn + i] += lora!.scale * s;
      }
    }
  }
  return { W, b: ref.tensors.get(name + '.bias')?.data, out, in: inn };
}

function apply(l: Linear, x: Float64Array): Float64Array {
  const y = new Float64Array(l.out);
  for (let o = 0; o < l.out; o++) {
    let s = l.b ? l.b[o] : 0;
    const row = o * l.in;
    for (let i = 0; i < l.in; i++) s += l.W[row + i] * x[i];
    y[o] = s;
  }
  return y;
}

/** In place on x[off .. off+n). */
function rmsNorm(x: Float64Array, w: Float64Array, eps: number, off = 0, n = x.length): void {
  let ss = 0;
  for (let i = 0; i < n; i++) ss += x[off + i] * x[off + i];
  const inv = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) x[off + i] = x[off + i] * inv * w[i];
}

/** HF rotate_half RoPE on one head x[off .. off+d) at position pos, in place. */
function rope(x: Float64Array, off: number, d: number, pos: number, theta: number): void {
  const half = d / 2;
  for (let i = 0; i < half; i++) {
    const invFreq = 1 / theta ** ((2 * i) / d);
    const a = pos * invFreq;
    const c = Math.cos(a);
    const s = Math.sin(a);
    const x1 = x[off + i];
    const x2 = x[off + i + half];
    // (x·cos + rotate_half(x)·sin): first half x1·c − x2·s, second half x2·c + x1·s
    x[off + i] = x1 * c - x2 * s;
    x[off + i + half] = x2 * c + x1 * s;
  }
}

const silu = (v: number): number => v / (1 + Math.exp(-v));

function tensor(ref: Reference, name: string): Float64Array {
  const t = ref.tensors.get(name);
  if (!t) throw new Error(`missing tensor ${name}`);
  return t.data;
}

/** The final hidden states after the final RMSNorm, one hidden_size row per position. */
export function referenceHidden(ref: Reference, tokens: number[], lora?: ReferenceLora): Float64Array[] {
  const c = ref.config;
  const H = c.hidden_size;
  const T = tokens.length;
  const nH = c.num_attention_heads;
  const nKV = c.num_key_value_heads;
  const hd = c.head_dim;
  if (nH % nKV !== 0) throw new Error('num_key_value_heads must divide num_attention_heads');
  const groups = nH / nKV;
  const eps = c.rms_norm_eps;
  const embed = tensor(ref, 'model.embed_tokens.weight');
  let x: Float64Array[] = tokens.map((t) => {
    if (!Number.isInteger(t) || t < 0 || t >= c.vocab_size) throw new RangeError(`token ${t} outside the vocabulary`);
    return Float64Array.from(embed.subarray(t * H, (t + 1) * H));
  });
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    const qP = linearOf(ref, p + 'self_attn.q_proj', lora);
    const kP = linearOf(ref, p + 'self_attn.k_proj', lora);
    const vP = linearOf(ref, p + 'self_attn.v_proj', lora);
    const oP = linearOf(ref, p + 'self_attn.o_proj', lora);
    const gP = linearOf(ref, p + 'mlp.gate_proj', lora);
    const uP = linearOf(ref, p + 'mlp.up_proj', lora);
    const dP = linearOf(ref, p + 'mlp.down_proj', lora);
    const wIn = tensor(ref, p + 'input_layernorm.weight');
    const wPost = tensor(ref, p + 'post_attention_layernorm.weight');
    const qNorm = c.model_type === 'qwen3' ? tensor(ref, p + 'self_attn.q_norm.weight') : undefined;
    const kNorm = c.model_type === 'qwen3' ? tensor(ref, p + 'self_attn.k_norm.weight') : undefined;

    const q: Float64Array[] = [];
    const k: Float64Array[] = [];
    const v: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const h = Float64Array.from(x[t]);
      rmsNorm(h, wIn, eps);
      const qt = apply(qP, h);
      const kt = apply(kP, h);
      const vt = apply(vP, h);
      for (let a = 0; a < nH; a++) {
        if (qNorm) rmsNorm(qt, qNorm, eps, a * hd, hd);
        rope(qt, a * hd, hd, t, c.rope_theta);
      }
      for (let a = 0; a < nKV; a++) {
        if (kNorm) rmsNorm(kt, kNorm, eps, a * hd, hd);
        rope(kt, a * hd, hd, t, c.rope_theta);
      }
      q.push(qt);
      k.push(kt);
      v.push(vt);
    }
    const scale = 1 / Math.sqrt(hd);
    const next: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const attn = new Float64Array(nH * hd);
      for (let a = 0; a < nH; a++) {
        const kvh = Math.floor(a / groups);
        const scores = new Float64Array(t + 1);
        let mx = -Infinity;
        for (let j = 0; j <= t; j++) {
          let s = 0;
          for (let i = 0; i < hd; i++) s += q[t][a * hd + i] * k[j][kvh * hd + i];
          scores[j] = s * scale;
          mx = Math.max(mx, scores[j]);
        }
        let z = 0;
        for (let j = 0; j <= t; j++) z += (scores[j] = Math.exp(scores[j] - mx));
        for (let j = 0; j <= t; j++) {
          const pj = scores[j] / z;
          for (let i = 0; i < hd; i++) attn[a * hd + i] += pj * v[j][kvh * hd + i];
        }
      }
      const o = apply(oP, attn);
      const xt = Float64Array.from(x[t]);
      for (let i = 0; i < H; i++) xt[i] += o[i];
      const h2 = Float64Array.from(xt);
      rmsNorm(h2, wPost, eps);
      const g = apply(gP, h2);
      const u = apply(uP, h2);
      for (let i = 0; i < g.length; i++) g[i] = silu(g[i]) * u[i];
      const m = apply(dP, g);
      for (let i = 0; i < H; i++) xt[i] += m[i];
      next.push(xt);
    }
    x = next;
  }
  const wNorm = tensor(ref, 'model.norm.weight');
  for (const xt of x) rmsNorm(xt, wNorm, eps);
  return x;
}

/** Logits (one vocab_size row per position) of a plain causal forward of one sequence. */
export function referenceLogits(ref: Reference, tokens: number[], lora?: ReferenceLora): Float64Array[] {
  const c = ref.config;
  const head = c.tie_word_embeddings ? tensor(ref, 'model.embed_tokens.weight') : tensor(ref, 'lm_head.weight');
  const lm: Linear = { W: head, out: c.vocab_size, in: c.hidden_size };
  return referenceHidden(ref, tokens, lora).map((h) => apply(lm, h));
}

/** log-softmax of one row, in float64. */
export function logSoftmax(row: Float64Array): Float64Array {
  let mx = -Infinity;
  for (const v of row) mx = Math.max(mx, v);
  let z = 0;
  for (const v of row) z += Math.exp(v - mx);
  const lz = mx + Math.log(z);
  return row.map((v) => v - lz);
}

/** log p(x_t | x_<t) per token; the first token gets 0 (as LlmModel.tokenLogprobs). */
export function referenceLogprobs(ref: Reference, tokens: number[], lora?: ReferenceLora): Float64Array {
  const out = new Float64Array(tokens.length);
  if (tokens.length === 0) return out;
  const logits = referenceLogits(ref, tokens, lora);
  for (let t = 1; t < tokens.length; t++) out[t] = logSoftmax(logits[t - 1])[tokens[t]];
  return out;
}

/** Mean over positions of the final normed hidden states (as LlmModel.embedMean). */
export function referenceEmbedMean(ref: Reference, tokens: number[], lora?: ReferenceLora): Float64Array {
  const hs = referenceHidden(ref, tokens, lora);
  const out = new Float64Array(ref.config.hidden_size);
  for (const h of hs) for (let i = 0; i < out.length; i++) out[i] += h[i] / hs.length;
  return out;
}

/** A deep copy of the tensors (for perturbation experiments). */
export function cloneReference(ref: Reference): Reference {
  const tensors = new Map<string, RefTensor>();
  for (const [k, v] of ref.tensors) tensors.set(k, { shape: [...v.shape], data: Float64Array.from(v.data) });
  return { config: { ...ref.config }, tensors };
}
