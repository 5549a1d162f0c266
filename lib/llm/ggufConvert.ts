/**
 * HF model directory ↔ GGUF (llama.cpp's conventions), for `memq model export --format gguf` and
 * `memq model import`.
 *
 * Names: model.embed_tokens → token_embd, model.layers.{i}.input_layernorm → blk.{i}.attn_norm,
 * self_attn.{q,k,v,o}_proj → attn_{q,k,v,output}, self_attn.{q,k}_norm → attn_{q,k}_norm (qwen3),
 * post_attention_layernorm → ffn_norm, mlp.{gate,up,down}_proj → ffn_{gate,up,down},
 * model.norm → output_norm, lm_head → output (absent when the head is tied: llama.cpp then uses
 * token_embd). Shapes: ggml's ne is PyTorch's shape reversed ([out, in] → ne [in, out]).
 *
 * RoPE: HF rotates the pair (i, i + d/2) of each head (rotate_half); llama.cpp runs `llama` with
 * the interleaved pairing (2i, 2i + 1) and `qwen2`/`qwen3` with the HF (NeoX) pairing. So for
 * llama the rows of q_proj / k_proj (and their biases) are permuted within each head on export,
 * row h·d + 2i + j ← row h·d + j·d/2 + i, and back on import. qwen2/qwen3 are written unpermuted.
 *
 * Types: f32, f16, bf16 or q8_0 for 2-D weights; 1-D tensors (norms, biases) are always F32 as
 * llama.cpp's converter writes them. q8_0 needs rows (ne[0]) that are a multiple of 32; a weight
 * whose rows are not falls back to F16 (as llama.cpp's converter does).
 *
 * Tokenizer: tokenizer.json is written both as llama.cpp's tokenizer.ggml.* keys (a byte-level
 * BPE such as Qwen's as model "gpt2" with its merges; memq's WordPiece domain tokenizers as model
 * "bert", llama.cpp's WordPiece) and verbatim under memq.tokenizer.json (+ memq.tokenizer_config.json),
 * which import restores and the llama.cpp prior tokenizes with, so memq's tokenization is exact.
 * A GGUF without that copy whose vocabulary is byte-level BPE (model "gpt2", pre "qwen2" or
 * "gpt2") gets a tokenizer.json rebuilt from its tokens and merges on import.
 * A model directory without tokenizer.json gets placeholder tokens [T0] … [T{V−1}] as a WordPiece
 * vocabulary (llama.cpp aborts on a "none" vocabulary as soon as it is asked about tokens, so that
 * is not written); score token ids directly.
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  GgmlType, GgufType, dequantizeQ8_0, ggmlTypeName, ggufFloat, ggufInt, ggufString, ggufStringArray, quantizeQ8_0, readGguf, readGgufTensorData,
  writeGguf, type GgufFile, type GgufTensorInfo, type GgufValue, type GgufWriteTensor,
} from './gguf';
import { readModelTensorsRaw, toFloat32, fromFloat32, writeSafetensorsRaw, ST_DTYPE_SIZE, type RawTensor, type StDtype } from './safetensorsRaw';
import type { LlmConfig } from './model';

export type GgufExportType = 'f32' | 'f16' | 'bf16' | 'q8_0';
export const GGUF_EXPORT_TYPES: GgufExportType[] = ['f32', 'f16', 'bf16', 'q8_0'];
const FILE_TYPE: Record<GgufExportType, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 };

interface Arch {
  arch: 'llama' | 'qwen2' | 'qwen3';
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  theta: number;
  ctx: number;
  tied: boolean;
  qkvBias: boolean;
  oBias: boolean;
  qkNorm: boolean;
}

function cfgInt(cfg: Record<string, unknown>, key: string, where: string, dflt?: number): number {
  const v = cfg[key] ?? dflt;
  if (!Number.isInteger(v) || (v as number) < 1) throw new Error(`${where}: ${key} must be a positive integer, got ${JSON.stringify(cfg[key])}`);
  return v as number;
}

function archOfConfig(cfg: Record<string, unknown>, where: string): Arch {
  const arch = cfg.model_type;
  if (arch !== 'llama' && arch !== 'qwen2' && arch !== 'qwen3') throw new Error(`${where}: model_type must be llama, qwen2 or qwen3, got ${JSON.stringify(arch)}`);
  if (cfg.rope_scaling !== undefined && cfg.rope_scaling !== null) throw new Error(`${where}: rope_scaling is not supported`);
  const hidden = cfgInt(cfg, 'hidden_size', where);
  const heads = cfgInt(cfg, 'num_attention_heads', where);
  const attentionBias = cfg.attention_bias === true;
  return {
    arch,
    vocab: cfgInt(cfg, 'vocab_size', where),
    hidden,
    intermediate: cfgInt(cfg, 'intermediate_size', where),
    layers: cfgInt(cfg, 'num_hidden_layers', where),
    heads,
    kvHeads: cfgInt(cfg, 'num_key_value_heads', where, heads),
    headDim: cfg.head_dim === undefined || cfg.head_dim === null ? hidden / heads : cfgInt(cfg, 'head_dim', where),
    eps: typeof cfg.rms_norm_eps === 'number' ? cfg.rms_norm_eps : 1e-6,
    theta: typeof cfg.rope_theta === 'number' ? cfg.rope_theta : 10000,
    ctx: typeof cfg.max_position_embeddings === 'number' ? cfg.max_position_embeddings : 4096,
    tied: cfg.tie_word_embeddings === true,
    qkvBias: arch === 'qwen2' || attentionBias,
    oBias: arch !== 'qwen2' && attentionBias,
    qkNorm: arch === 'qwen3',
  };
}

/** [HF name, GGUF name, HF shape] of every tensor of the architecture, in the engine's order. */
function tensorTable(a: Arch): [string, string, number[]][] {
  const C = a.hidden, I = a.intermediate, D = a.headDim, QD = a.heads * D, KD = a.kvHeads * D;
  const t: [string, string, number[]][] = [['model.embed_tokens.weight', 'token_embd.weight', [a.vocab, C]]];
  for (let l = 0; l < a.layers; l++) {
    const h = `model.layers.${l}.`, g = `blk.${l}.`;
    t.push([`${h}input_layernorm.weight`, `${g}attn_norm.weight`, [C]]);
    t.push([`${h}self_attn.q_proj.weight`, `${g}attn_q.weight`, [QD, C]]);
    if (a.qkvBias) t.push([`${h}self_attn.q_proj.bias`, `${g}attn_q.bias`, [QD]]);
    if (a.qkNorm) t.push([`${h}self_attn.q_norm.weight`, `${g}attn_q_norm.weight`, [D]]);
    t.push([`${h}self_attn.k_proj.weight`, `${g}attn_k.weight`, [KD, C]]);
    if (a.qkvBias) t.push([`${h}self_attn.k_proj.bias`, `${g}attn_k.bias`, [KD]]);
    if (a.qkNorm) t.push([`${h}self_attn.k_norm.weight`, `${g}attn_k_norm.weight`, [D]]);
    t.push([`${h}self_attn.v_proj.weight`, `${g}attn_v.weight`, [KD, C]]);
    if (a.qkvBias) t.push([`${h}self_attn.v_proj.bias`, `${g}attn_v.bias`, [KD]]);
    t.push([`${h}self_attn.o_proj.weight`, `${g}attn_output.weight`, [C, QD]]);
    if (a.oBias) t.push([`${h}self_attn.o_proj.bias`, `${g}attn_output.bias`, [C]]);
    t.push([`${h}post_attention_layernorm.weight`, `${g}ffn_norm.weight`, [C]]);
    t.push([`${h}mlp.gate_proj.weight`, `${g}ffn_gate.weight`, [I, C]]);
    t.push([`${h}mlp.up_proj.weight`, `${g}ffn_up.weight`, [I, C]]);
    t.push([`${h}mlp.down_proj.weight`, `${g}ffn_down.weight`, [C, I]]);
  }
  t.push(['model.norm.weight', 'output_norm.weight', [C]]);
  if (!a.tied) t.push(['lm_head.weight', 'output.weight', [a.vocab, C]]);
  return t;
}

/** The number of heads whose rows a llama q/k tensor is permuted over (0: not permuted). */
function ropeHeads(a: Arch, hfName: string): number {
  if (a.arch !== 'llama') return 0;
  if (/self_attn\.q_proj\.(weight|bias)$/.test(hfName)) return a.heads;
  if (/self_attn\.k_proj\.(weight|bias)$/.test(hfName)) return a.kvHeads;
  return 0;
}

/**
 * Permutes the rows of a [nHeads·d, rowBytes] byte matrix within each head: HF's half-split RoPE
 * order → llama.cpp's interleaved order (`inverse` for the way back).
 */
function permuteRows(data: Uint8Array, nHeads: number, rowBytes: number, inverse: boolean): Uint8Array {
  const rows = data.length / rowBytes;
  const d = rows / nHeads;
  const half = d / 2;
  const out = new Uint8Array(data.length);
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const gg = h * d + 2 * i + j; // llama.cpp row
        const hf = h * d + j * half + i; // HF row
        const [dst, src] = inverse ? [hf, gg] : [gg, hf];
        out.set(data.subarray(src * rowBytes, (src + 1) * rowBytes), dst * rowBytes);
      }
    }
  }
  return out;
}

/** The shortest decimal that rounds to the same float32 (so 1e-6 written as f32 reads back as 1e-6). */
function f32Decimal(x: number): number {
  for (let p = 1; p <= 9; p++) {
    const d = Number(x.toPrecision(p));
    if (Math.fround(d) === Math.fround(x)) return d;
  }
  return x;
}

// ---------------------------------------------------------------------------------------------
// tokenizer metadata

const TOKEN_NORMAL = 1, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4, TOKEN_UNUSED = 5;

function str(v: string): GgufValue {
  return { type: GgufType.STRING, value: v };
}
function u32(v: number): GgufValue {
  return { type: GgufType.UINT32, value: v };
}
function f32v(v: number): GgufValue {
  return { type: GgufType.FLOAT32, value: v };
}
function boolv(v: boolean): GgufValue {
  return { type: GgufType.BOOL, value: v };
}

/**
 * llama.cpp's name for a byte-level BPE's pre-tokenizer: the split regex of tokenizer.json matched
 * against the ones llama.cpp knows by name (Qwen2's, GPT-2's); otherwise "default".
 */
function bpePreName(tok: any): string {
  const regexes: string[] = [];
  const walk = (p: any) => {
    if (!p || typeof p !== 'object') return;
    if (p.type === 'Split' && typeof p.pattern?.Regex === 'string') regexes.push(p.pattern.Regex);
    for (const q of p.pretokenizers ?? []) walk(q);
  };
  walk(tok.pre_tokenizer);
  for (const [name, re] of Object.entries(BPE_PRE_REGEX)) if (regexes.includes(re)) return name;
  // GPT-2's own ByteLevel pre-tokenizer (use_regex: true) is the gpt2 split
  if (tok.pre_tokenizer?.type === 'ByteLevel' && tok.pre_tokenizer.use_regex !== false) return 'gpt2';
  return 'default';
}

/** tokenizer.ggml.* entries for a tokenizer.json (see the module comment). */
function tokenizerMetadata(tok: any, tokCfg: any, vocabSize: number, arch: string, where: string): Map<string, GgufValue> {
  const md = new Map<string, GgufValue>();
  const model = tok?.model;
  const vocab: Record<string, number> | undefined = model?.vocab;
  if (!vocab || typeof vocab !== 'object' || Array.isArray(vocab)) throw new Error(`${where}: model.vocab must be an object (token → id)`);
  const tokens: (string | undefined)[] = new Array(vocabSize);
  const types = new Array<number>(vocabSize).fill(TOKEN_NORMAL);
  const put = (t: string, id: number) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new Error(`${where}: token ${JSON.stringify(t)} has id ${id}, outside the model's vocab_size ${vocabSize}`);
    tokens[id] = t;
  };
  const isWordPiece = model.type === 'WordPiece';
  if (model.type !== 'BPE' && !isWordPiece) throw new Error(`${where}: tokenizer model type ${JSON.stringify(model.type)} cannot be exported (BPE or WordPiece)`);
  const prefix = typeof model.continuing_subword_prefix === 'string' ? model.continuing_subword_prefix : '##';
  const specials = new Set<string>();
  for (const a of tok.added_tokens ?? []) if (a?.special) specials.add(a.content);
  for (const [t, id] of Object.entries(vocab)) {
    // llama.cpp's WordPiece marks a word start with ▁ and a continuation by its absence
    if (isWordPiece && !specials.has(t)) put(t.startsWith(prefix) ? t.slice(prefix.length) : `\u2581${t}`, id);
    else put(t, id);
  }
  for (const a of tok.added_tokens ?? []) {
    put(a.content, a.id);
    types[a.id] = a.special ? TOKEN_CONTROL : TOKEN_USER_DEFINED;
  }
  for (let i = 0; i < vocabSize; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_UNUSED;
    }
  }
  const idOf = (name: unknown): number | undefined => {
    const s = typeof name === 'string' ? name : (name as { content?: string } | undefined)?.content;
    if (typeof s !== 'string') return undefined;
    if (s in vocab) return vocab[s];
    return (tok.added_tokens ?? []).find((a: any) => a.content === s)?.id;
  };
  if (isWordPiece) {
    md.set('tokenizer.ggml.model', str('bert'));
  } else {
    md.set('tokenizer.ggml.model', str('gpt2'));
    md.set('tokenizer.ggml.pre', str(bpePreName(tok)));
  }
  md.set('tokenizer.ggml.tokens', { type: GgufType.ARRAY, itemType: GgufType.STRING, value: tokens as string[] });
  md.set('tokenizer.ggml.token_type', { type: GgufType.ARRAY, itemType: GgufType.INT32, value: types });
  if (!isWordPiece) {
    const merges = (model.merges ?? []).map((m: unknown) => (Array.isArray(m) ? m.join(' ') : String(m)));
    md.set('tokenizer.ggml.merges', { type: GgufType.ARRAY, itemType: GgufType.STRING, value: merges });
  }
  const eos = idOf(tokCfg?.eos_token);
  const unk = idOf(model.unk_token ?? tokCfg?.unk_token);
  const pad = idOf(tokCfg?.pad_token);
  const bos = idOf(tokCfg?.bos_token);
  if (eos !== undefined) md.set('tokenizer.ggml.eos_token_id', u32(eos));
  if (bos !== undefined) md.set('tokenizer.ggml.bos_token_id', u32(bos));
  if (unk !== undefined) md.set('tokenizer.ggml.unknown_token_id', u32(unk));
  if (pad !== undefined) md.set('tokenizer.ggml.padding_token_id', u32(pad));
  if (isWordPiece) {
    // llama.cpp's WordPiece defaults these to BERT's ids (101, 102, …); point them at real tokens
    const sep = eos ?? unk ?? 0;
    md.set('tokenizer.ggml.seperator_token_id', u32(sep));
    md.set('tokenizer.ggml.cls_token_id', u32(sep));
    md.set('tokenizer.ggml.mask_token_id', u32(unk ?? sep));
  }
  md.set('tokenizer.ggml.add_bos_token', boolv(false));
  md.set('tokenizer.ggml.add_eos_token', boolv(false));
  return md;
}

// ---------------------------------------------------------------------------------------------
// export

export interface GgufExportOptions {
  type?: GgufExportType;
  /** general.name (default: the directory's name). */
  name?: string;
}

export interface GgufExportReport {
  file: string;
  arch: string;
  type: GgufExportType;
  tensors: number;
  bytes: number;
  /** gpt2: byte-level BPE; bert: WordPiece; placeholder: no tokenizer.json ([T0] … as WordPiece). */
  tokenizer: 'gpt2' | 'bert' | 'placeholder';
  /** Weights written as F16 because q8_0 needs rows that are a multiple of 32. */
  f16Fallback: string[];
}

/** Writes an HF model directory (config.json + safetensors [+ tokenizer.json]) as a GGUF file. */
export function exportGguf(dir: string, outFile: string, opts: GgufExportOptions = {}): GgufExportReport {
  const type = opts.type ?? 'f32';
  if (!GGUF_EXPORT_TYPES.includes(type)) throw new RangeError(`type must be one of ${GGUF_EXPORT_TYPES.join(', ')}, got ${JSON.stringify(type)}`);
  const cfgFile = path.join(dir, 'config.json');
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  } catch (e) {
    throw new Error(`${cfgFile}: cannot read it as JSON (${(e as Error).message})`);
  }
  const a = archOfConfig(cfg, cfgFile);
  if (a.headDim % 2 !== 0) throw new Error(`${cfgFile}: head_dim ${a.headDim} must be even (RoPE)`);
  if (a.arch === 'qwen3' && a.qkvBias) throw new Error(`${cfgFile}: qwen3 with attention_bias = true has no llama.cpp equivalent`);
  if (a.arch === 'llama' && a.qkvBias !== a.oBias) throw new Error(`${cfgFile}: llama biases must be on all of q/k/v/o`);
  const tensors = readModelTensorsRaw(dir);
  const table = tensorTable(a);
  const known = new Set(table.map((t) => t[0]));
  for (const name of tensors.keys()) {
    if (!known.has(name)) throw new Error(`${dir}: tensor '${name}' is not part of a ${a.arch} model with this config.json`);
  }
  const out: GgufWriteTensor[] = [];
  const f16Fallback: string[] = [];
  for (const [hf, gg, shape] of table) {
    const t = tensors.get(hf);
    if (!t) throw new Error(`${dir}: tensor '${hf}' is missing`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`${dir}: tensor '${hf}' has shape ${JSON.stringify(t.shape)}, config.json implies ${JSON.stringify(shape)}`);
    }
    const ne = [...shape].reverse();
    let bytes = t.data;
    const nh = ropeHeads(a, hf);
    if (nh > 0) bytes = permuteRows(bytes, nh, (shape.length === 2 ? shape[1] : 1) * ST_DTYPE_SIZE[t.dtype], false);
    let want: GgmlType;
    if (shape.length === 1 || type === 'f32') want = GgmlType.F32;
    else if (type === 'f16') want = GgmlType.F16;
    else if (type === 'bf16') want = GgmlType.BF16;
    else if (ne[0] % 32 === 0) want = GgmlType.Q8_0;
    else {
      want = GgmlType.F16;
      f16Fallback.push(gg);
    }
    let data: Uint8Array;
    const same = (want === GgmlType.F32 && t.dtype === 'F32') || (want === GgmlType.F16 && t.dtype === 'F16') || (want === GgmlType.BF16 && t.dtype === 'BF16');
    if (same) data = bytes;
    else {
      const v = toFloat32(t.dtype, bytes);
      if (want === GgmlType.Q8_0) data = quantizeQ8_0(v);
      else data = fromFloat32(want === GgmlType.F32 ? 'F32' : want === GgmlType.F16 ? 'F16' : 'BF16', v);
    }
    out.push({ name: gg, ne, type: want, data });
  }
  const md = new Map<string, GgufValue>();
  const A = a.arch;
  md.set('general.architecture', str(A));
  md.set('general.name', str(opts.name ?? path.basename(path.resolve(dir))));
  md.set('general.file_type', u32(FILE_TYPE[type]));
  md.set('general.quantization_version', u32(2));
  md.set(`${A}.context_length`, u32(a.ctx));
  md.set(`${A}.embedding_length`, u32(a.hidden));
  md.set(`${A}.block_count`, u32(a.layers));
  md.set(`${A}.feed_forward_length`, u32(a.intermediate));
  md.set(`${A}.attention.head_count`, u32(a.heads));
  md.set(`${A}.attention.head_count_kv`, u32(a.kvHeads));
  md.set(`${A}.attention.key_length`, u32(a.headDim));
  md.set(`${A}.attention.value_length`, u32(a.headDim));
  md.set(`${A}.rope.dimension_count`, u32(a.headDim));
  md.set(`${A}.rope.freq_base`, f32v(a.theta));
  md.set(`${A}.attention.layer_norm_rms_epsilon`, f32v(a.eps));
  md.set(`${A}.vocab_size`, u32(a.vocab));
  let tokenizer: GgufExportReport['tokenizer'] = 'placeholder';
  const tokFile = path.join(dir, 'tokenizer.json');
  if (fs.existsSync(tokFile)) {
    const tokText = fs.readFileSync(tokFile, 'utf8');
    let tok: any;
    try {
      tok = JSON.parse(tokText);
    } catch (e) {
      throw new Error(`${tokFile}: not valid JSON (${(e as Error).message})`);
    }
    const tcFile = path.join(dir, 'tokenizer_config.json');
    const tcText = fs.existsSync(tcFile) ? fs.readFileSync(tcFile, 'utf8') : undefined;
    const tc = tcText ? JSON.parse(tcText) : {};
    for (const [k, v] of tokenizerMetadata(tok, tc, a.vocab, A, tokFile)) md.set(k, v);
    tokenizer = tok.model.type === 'WordPiece' ? 'bert' : 'gpt2';
    md.set('memq.tokenizer.json', str(tokText));
    if (tcText) md.set('memq.tokenizer_config.json', str(tcText));
  } else {
    // no tokenizer: placeholder tokens [T0] … [T{V-1}] as a llama.cpp WordPiece vocabulary, so that
    // llama.cpp (which aborts on a vocabulary of type "none" once asked anything about tokens)
    // can load the file; score token ids directly
    const tokens = Array.from({ length: a.vocab }, (_, i) => `[T${i}]`);
    md.set('tokenizer.ggml.model', str('bert'));
    md.set('tokenizer.ggml.tokens', { type: GgufType.ARRAY, itemType: GgufType.STRING, value: tokens });
    md.set('tokenizer.ggml.token_type', { type: GgufType.ARRAY, itemType: GgufType.INT32, value: tokens.map(() => TOKEN_NORMAL) });
    for (const k of ['unknown_token_id', 'padding_token_id', 'seperator_token_id', 'cls_token_id', 'mask_token_id', 'eos_token_id']) {
      md.set(`tokenizer.ggml.${k}`, u32(0));
    }
    md.set('tokenizer.ggml.add_bos_token', boolv(false));
    md.set('tokenizer.ggml.add_eos_token', boolv(false));
    md.set('memq.tokenizer', str('placeholder'));
  }
  writeGguf(outFile, md, out);
  return { file: outFile, arch: A, type, tensors: out.length, bytes: fs.statSync(outFile).size, tokenizer, f16Fallback };
}

// ---------------------------------------------------------------------------------------------
// import

export interface GgufImportReport {
  dir: string;
  arch: string;
  tensors: number;
  /** GGUF tensor types found, with counts. */
  types: Record<string, number>;
  /** Whether tokenizer.json was written. */
  tokenizer: boolean;
  /** Where it came from: memq's verbatim copy, or rebuilt from tokenizer.ggml.* (byte-level BPE). */
  tokenizerSource: 'memq' | 'gguf-bpe' | null;
  /** Why no tokenizer.json was written, when none was. */
  tokenizerNote?: string;
  config: LlmConfig;
}

/** Pre-tokenizer split patterns of llama.cpp's BPE pre-tokenizer names that import can rebuild. */
const BPE_PRE_REGEX: Record<string, string> = {
  qwen2: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  gpt2: "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
};

/**
 * A Hugging Face tokenizer.json rebuilt from a GGUF's byte-level BPE vocabulary (tokenizer.ggml.model
 * "gpt2": tokens, token types, merges, pre-tokenizer name). CONTROL and USER_DEFINED tokens become
 * added tokens (CONTROL ones special); UNUSED padding tokens are dropped.
 */
function bpeTokenizerFromGguf(g: GgufFile): { json?: Record<string, unknown>; config?: Record<string, unknown>; note?: string } {
  const model = ggufString(g, 'tokenizer.ggml.model');
  if (model !== 'gpt2') return { note: `tokenizer.ggml.model is ${JSON.stringify(model ?? null)}; only byte-level BPE ("gpt2") is rebuilt` };
  const pre = ggufString(g, 'tokenizer.ggml.pre') ?? 'default';
  const regex = BPE_PRE_REGEX[pre];
  if (!regex) return { note: `tokenizer.ggml.pre '${pre}' is not one import rebuilds (${Object.keys(BPE_PRE_REGEX).join(', ')})` };
  const tokens = ggufStringArray(g, 'tokenizer.ggml.tokens');
  const merges = ggufStringArray(g, 'tokenizer.ggml.merges');
  if (!tokens || !merges) return { note: 'tokenizer.ggml.tokens or tokenizer.ggml.merges is missing' };
  const tv = g.metadata.get('tokenizer.ggml.token_type');
  const types = tv && tv.type === GgufType.ARRAY ? (tv.value as number[]).map(Number) : [];
  const vocab: Record<string, number> = {};
  const added: Record<string, unknown>[] = [];
  tokens.forEach((t, id) => {
    const ty = types[id] ?? TOKEN_NORMAL;
    if (ty === TOKEN_UNUSED) return;
    if (ty === TOKEN_CONTROL || ty === TOKEN_USER_DEFINED) {
      added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: ty === TOKEN_CONTROL });
    } else vocab[t] = id;
  });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: pre === 'qwen2' ? { type: 'NFC' } : null,
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }, byteLevel] },
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false,
      byte_fallback: false, ignore_merges: false, vocab, merges: merges.map((m) => m.split(' ')),
    },
  };
  const config: Record<string, unknown> = { tokenizer_class: 'PreTrainedTokenizerFast', add_bos_token: false, clean_up_tokenization_spaces: false };
  for (const [key, field] of [['eos_token_id', 'eos_token'], ['bos_token_id', 'bos_token'], ['padding_token_id', 'pad_token']] as const) {
    const k = `tokenizer.ggml.${key}`;
    if (g.metadata.has(k)) {
      const id = ggufInt(g, k);
      if (id >= 0 && id < tokens.length) config[field] = tokens[id];
    }
  }
  return { json, config };
}

function archOfGguf(g: GgufFile): Arch {
  const A = ggufString(g, 'general.architecture');
  if (A === undefined) throw new Error(`${g.file}: GGUF metadata 'general.architecture' is missing`);
  if (A !== 'llama' && A !== 'qwen2' && A !== 'qwen3') throw new Error(`${g.file}: general.architecture '${A}' is not supported (llama, qwen2, qwen3)`);
  const byName = new Map(g.tensors.map((t) => [t.name, t]));
  const emb = byName.get('token_embd.weight');
  if (!emb || emb.ne.length !== 2) throw new Error(`${g.file}: tensor 'token_embd.weight' is missing or not 2-D`);
  const hidden = ggufInt(g, `${A}.embedding_length`);
  if (emb.ne[0] !== hidden) throw new Error(`${g.file}: token_embd.weight ne[0] = ${emb.ne[0]} differs from ${A}.embedding_length ${hidden}`);
  const heads = ggufInt(g, `${A}.attention.head_count`);
  if (heads < 1) throw new Error(`${g.file}: ${A}.attention.head_count must be >= 1`);
  const headDim = ggufInt(g, `${A}.attention.key_length`, Math.floor(hidden / heads));
  const vLen = ggufInt(g, `${A}.attention.value_length`, headDim);
  if (vLen !== headDim) throw new Error(`${g.file}: ${A}.attention.value_length ${vLen} differs from key_length ${headDim} (not supported)`);
  const rot = ggufInt(g, `${A}.rope.dimension_count`, headDim);
  if (rot !== headDim) throw new Error(`${g.file}: ${A}.rope.dimension_count ${rot} differs from the head size ${headDim} (partial RoPE is not supported)`);
  const scaling = ggufString(g, `${A}.rope.scaling.type`);
  if (scaling !== undefined && scaling !== 'none') throw new Error(`${g.file}: ${A}.rope.scaling.type '${scaling}' is not supported`);
  const vocabKey = g.metadata.has(`${A}.vocab_size`) ? ggufInt(g, `${A}.vocab_size`) : emb.ne[1];
  if (vocabKey !== emb.ne[1]) throw new Error(`${g.file}: ${A}.vocab_size ${vocabKey} differs from token_embd.weight ne[1] = ${emb.ne[1]}`);
  const qBias = byName.has('blk.0.attn_q.bias');
  const oBias = byName.has('blk.0.attn_output.bias');
  if (A === 'qwen2' && !qBias) throw new Error(`${g.file}: qwen2 needs attention biases (blk.0.attn_q.bias is missing)`);
  if (A === 'qwen2' && oBias) throw new Error(`${g.file}: qwen2 with an attn_output bias is not supported`);
  if (A !== 'qwen2' && qBias !== oBias) throw new Error(`${g.file}: ${A} with biases on only some of q/k/v/o is not supported`);
  return {
    arch: A,
    vocab: emb.ne[1],
    hidden,
    intermediate: ggufInt(g, `${A}.feed_forward_length`),
    layers: ggufInt(g, `${A}.block_count`),
    heads,
    kvHeads: ggufInt(g, `${A}.attention.head_count_kv`, heads),
    headDim,
    eps: f32Decimal(ggufFloat(g, `${A}.attention.layer_norm_rms_epsilon`)),
    theta: f32Decimal(ggufFloat(g, `${A}.rope.freq_base`, 10000)),
    ctx: ggufInt(g, `${A}.context_length`, 4096),
    tied: !byName.has('output.weight'),
    qkvBias: qBias,
    oBias: A !== 'qwen2' && oBias,
    qkNorm: A === 'qwen3',
  };
}

const IMPORT_TYPES = new Set<number>([GgmlType.F32, GgmlType.F16, GgmlType.BF16, GgmlType.Q8_0]);

/** Reads a GGUF file (F32/F16/BF16/Q8_0 tensors) into an HF model directory the engine loads. */
export function importGguf(file: string, outDir: string): GgufImportReport {
  const g = readGguf(file);
  const a = archOfGguf(g);
  for (const [k, v] of [['vocab_size', a.vocab], ['block_count', a.layers], ['feed_forward_length', a.intermediate],
    ['attention.head_count_kv', a.kvHeads], ['attention.key_length', a.headDim]] as const) {
    if (!(v >= 1)) throw new Error(`${file}: ${a.arch}.${k} must be >= 1, got ${v}`);
  }
  if (a.heads % a.kvHeads !== 0) throw new Error(`${file}: ${a.arch}.attention.head_count ${a.heads} is not a multiple of head_count_kv ${a.kvHeads}`);
  if (a.headDim % 2 !== 0) throw new Error(`${file}: the head size ${a.headDim} must be even (RoPE)`);
  const table = tensorTable(a);
  const byName = new Map(g.tensors.map((t) => [t.name, t]));
  const known = new Set(table.map((t) => t[1]));
  for (const t of g.tensors) {
    if (!known.has(t.name)) throw new Error(`${file}: tensor '${t.name}' is not part of a ${a.arch} model with this metadata (not supported)`);
  }
  const out = new Map<string, RawTensor>();
  const types: Record<string, number> = {};
  for (const [hf, gg, shape] of table) {
    const t: GgufTensorInfo | undefined = byName.get(gg);
    if (!t) throw new Error(`${file}: tensor '${gg}' is missing`);
    const ne = [...shape].reverse();
    if (t.ne.length !== ne.length || t.ne.some((d, i) => d !== ne[i])) {
      throw new Error(`${file}: tensor '${gg}' has ne ${JSON.stringify(t.ne)}, the metadata implies ${JSON.stringify(ne)}`);
    }
    if (!IMPORT_TYPES.has(t.type)) {
      throw new Error(`${file}: tensor '${gg}' has type ${ggmlTypeName(t.type)}; import reads F32, F16, BF16 and Q8_0 only (re-quantise the model to one of these)`);
    }
    types[ggmlTypeName(t.type)] = (types[ggmlTypeName(t.type)] ?? 0) + 1;
    const raw = readGgufTensorData(g, t);
    const numel = shape.reduce((x, y) => x * y, 1);
    let dtype: StDtype;
    let bytes: Uint8Array;
    if (t.type === GgmlType.Q8_0) {
      dtype = 'F32';
      const v = dequantizeQ8_0(raw, numel);
      bytes = new Uint8Array(v.buffer);
    } else {
      dtype = t.type === GgmlType.F32 ? 'F32' : t.type === GgmlType.F16 ? 'F16' : 'BF16';
      bytes = raw;
    }
    const nh = ropeHeads(a, hf);
    if (nh > 0) bytes = permuteRows(bytes, nh, (shape.length === 2 ? shape[1] : 1) * ST_DTYPE_SIZE[dtype], true);
    out.set(hf, { dtype, shape, data: bytes });
  }
  const config: LlmConfig = {
    architectures: [a.arch === 'llama' ? 'LlamaForCausalLM' : a.arch === 'qwen3' ? 'Qwen3ForCausalLM' : 'Qwen2ForCausalLM'],
    model_type: a.arch,
    vocab_size: a.vocab,
    hidden_size: a.hidden,
    intermediate_size: a.intermediate,
    num_hidden_layers: a.layers,
    num_attention_heads: a.heads,
    num_key_value_heads: a.kvHeads,
    max_position_embeddings: a.ctx,
    rms_norm_eps: a.eps,
    rope_theta: a.theta,
    tie_word_embeddings: a.tied,
    hidden_act: 'silu',
    torch_dtype: 'float32',
  };
  if (a.headDim * a.heads !== a.hidden || a.arch === 'qwen3') config.head_dim = a.headDim;
  if (a.arch !== 'qwen2') config.attention_bias = a.qkvBias;
  const eos = g.metadata.has('tokenizer.ggml.eos_token_id') ? ggufInt(g, 'tokenizer.ggml.eos_token_id') : undefined;
  const bos = g.metadata.has('tokenizer.ggml.bos_token_id') ? ggufInt(g, 'tokenizer.ggml.bos_token_id') : undefined;
  if (eos !== undefined && eos < a.vocab) config.eos_token_id = eos;
  if (bos !== undefined && bos < a.vocab) config.bos_token_id = bos;
  fs.mkdirSync(outDir, { recursive: true });
  writeSafetensorsRaw(path.join(outDir, 'model.safetensors'), out, { format: 'pt' });
  fs.writeFileSync(path.join(outDir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  const tokJson = ggufString(g, 'memq.tokenizer.json');
  const tokCfg = ggufString(g, 'memq.tokenizer_config.json');
  let tokenizerSource: GgufImportReport['tokenizerSource'] = null;
  let tokenizerNote: string | undefined;
  if (tokJson !== undefined) {
    fs.writeFileSync(path.join(outDir, 'tokenizer.json'), tokJson);
    if (tokCfg !== undefined) fs.writeFileSync(path.join(outDir, 'tokenizer_config.json'), tokCfg);
    tokenizerSource = 'memq';
  } else if (ggufString(g, 'memq.tokenizer') === 'placeholder') {
    tokenizerNote = 'the GGUF has placeholder tokens only (exported from a directory without tokenizer.json)';
  } else {
    const rebuilt = bpeTokenizerFromGguf(g);
    if (rebuilt.json) {
      fs.writeFileSync(path.join(outDir, 'tokenizer.json'), JSON.stringify(rebuilt.json));
      fs.writeFileSync(path.join(outDir, 'tokenizer_config.json'), JSON.stringify(rebuilt.config, null, 2) + '\n');
      tokenizerSource = 'gguf-bpe';
    } else tokenizerNote = rebuilt.note;
  }
  return { dir: outDir, arch: a.arch, tensors: out.size, types, tokenizer: tokenizerSource !== null, tokenizerSource, tokenizerNote, config };
}
