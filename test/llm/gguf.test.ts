/**
 * GGUF export/import (lib/llm/gguf.ts, lib/llm/ggufConvert.ts):
 * - export → import round trips: f32 and bf16 bit-exact (the imported tensors equal the saved
 *   ones byte for byte, and the engine's log-probs are identical); f16 equals the f16 rounding of
 *   the weights bit for bit (and a second round trip is byte-identical); q8_0 within its bound
 *   |Δ| ≤ 0.57 · max|block| / 127 per weight (half a quantisation step, plus the f16 rounding of the
 *   block scale: 127 · 2⁻¹¹ ≈ 0.062 of a step), checked per block.
 * - llama's Q/K row permutation against its definition, and its inverse on import.
 * - tokenizer metadata from a WordPiece tokenizer.json and the verbatim copy that import restores.
 * - forged files: every header field the reader checks fails with an Error naming that field, a
 *   forged count never allocates (the test would run out of memory), and a byte-flip fuzz over a
 *   real file only ever throws Error.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LlmModel, type LlmConfig } from '../../lib/llm/model';
import { LoraAdapter } from '../../lib/llm/lora';
import { GgmlType, GgufType, dequantizeQ8_0, quantizeQ8_0, readGguf, readGgufTensorData, writeGguf, type GgufValue } from '../../lib/llm/gguf';
import { exportGguf, importGguf } from '../../lib/llm/ggufConvert';
import { fromFloat32, readSafetensorsRaw, toFloat32, f32ToF16Bits, f16BitsToF32, f32ToBf16Bits, bf16BitsToF32 } from '../../lib/llm/safetensorsRaw';
import { buildWordPieceTokenizer, wordPieceTokenizerConfig } from '../../lib/llm/wordTokenizer';
import { loadTokenizer, qwen3TokenizerDir } from '../../lib/llm/tokenizer';
import { main } from '../../lib/cli/main';
import { TestRng } from '../helpers/rng';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-gguf-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

export const GGUF_TEST_CONFIGS: Record<string, LlmConfig> = {
  qwen2: {
    model_type: 'qwen2', vocab_size: 96, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: false,
  },
  llama: {
    model_type: 'llama', vocab_size: 80, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 4, rope_theta: 500000, rms_norm_eps: 1e-5, tie_word_embeddings: true,
    attention_bias: true,
  },
  qwen3: {
    model_type: 'qwen3', vocab_size: 72, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, head_dim: 32, rope_theta: 1000000, rms_norm_eps: 1e-6, tie_word_embeddings: true,
  },
};

function saveRandom(name: string, cfg: LlmConfig, seed: number, bf16 = false): { dir: string; model: LlmModel } {
  const dir = path.join(tmp, name);
  // a larger init std than the default so the weights (and their rounding) matter to the outputs
  const model = LlmModel.createRandom(cfg, { seed, initStd: 0.2 });
  model.save(dir, { bf16 });
  return { dir, model };
}

function seqs(vocab: number, seed: number): number[][] {
  const rng = new TestRng(seed);
  return [5, 9, 17].map((n) => Array.from({ length: n }, () => rng.int(vocab)));
}

async function maxLogprobDiff(a: LlmModel, b: LlmModel, s: number[][]): Promise<number> {
  const [x, y] = await Promise.all([a.tokenLogprobs(s), b.tokenLogprobs(s)]);
  let m = 0;
  x.forEach((row, i) => row.forEach((v, j) => (m = Math.max(m, Math.abs(v - y[i][j])))));
  return m;
}

describe('float conversions', () => {
  it('f16 and bf16 round to nearest even and decode exactly', () => {
    // exact values, ties, subnormals, overflow
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // rounds up to Inf
    expect(f32ToF16Bits(2 ** -24)).toBe(1);
    expect(f32ToF16Bits(2 ** -25)).toBe(0); // tie to even (0)
    expect(f32ToF16Bits(3 * 2 ** -25)).toBe(2); // tie to even (2)
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(f32ToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie → even
    expect(f32ToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    // every f16 value survives decode → encode
    const bad: number[] = [];
    for (let h = 0; h < 0x10000; h++) {
      const v = f16BitsToF32(h);
      if (!Number.isNaN(v) && f32ToF16Bits(v) !== h) bad.push(h);
    }
    expect(bad).toEqual([]);
    const rng = new TestRng(3);
    for (let i = 0; i < 2000; i++) {
      const x = Math.fround((rng.next() - 0.5) * 10 ** (rng.int(10) - 5));
      // nearest: no other f16 is closer
      const h = f32ToF16Bits(x);
      const e = Math.abs(f16BitsToF32(h) - x);
      expect(e).toBeLessThanOrEqual(Math.abs(f16BitsToF32(h + 1) - x));
      if ((h & 0x7fff) > 0) expect(e).toBeLessThanOrEqual(Math.abs(f16BitsToF32(h - 1) - x));
      expect(Math.abs(bf16BitsToF32(f32ToBf16Bits(x)) - x)).toBeLessThanOrEqual(Math.abs(x) * 2 ** -8);
    }
  });

  it('q8_0 quantises 32-value blocks within half a step (+ the f16 scale rounding)', () => {
    const rng = new TestRng(5);
    const x = Float32Array.from({ length: 32 * 20 }, (_, i) => (rng.next() - 0.5) * (i < 32 ? 0 : 2 ** (i % 7)));
    const q = quantizeQ8_0(x);
    expect(q.length).toBe(20 * 34);
    const y = dequantizeQ8_0(q, x.length);
    for (let b = 0; b < 20; b++) {
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[32 * b + j]));
      for (let j = 0; j < 32; j++) expect(Math.abs(y[32 * b + j] - x[32 * b + j])).toBeLessThanOrEqual((0.57 * amax) / 127 + 1e-12);
    }
    expect(() => quantizeQ8_0(new Float32Array(31))).toThrow(RangeError);
  });
});

describe('export → import round trip', () => {
  for (const [arch, cfg] of Object.entries(GGUF_TEST_CONFIGS)) {
    it(`${arch}: f32 is bit-exact (tensors and log-probs)`, async () => {
      const { dir, model } = saveRandom(`${arch}-f32`, cfg, 21);
      const file = path.join(tmp, `${arch}.f32.gguf`);
      const rep = exportGguf(dir, file, { type: 'f32' });
      expect(rep.tokenizer).toBe('placeholder');
      const g = readGguf(file);
      expect(g.metadata.get('general.architecture')?.value).toBe(arch);
      expect(g.tensors.every((t) => t.type === GgmlType.F32)).toBe(true);
      expect(g.tensors.some((t) => t.name === 'output.weight')).toBe(!cfg.tie_word_embeddings);
      const out = path.join(tmp, `${arch}-f32-imported`);
      const imp = importGguf(file, out);
      expect(imp.types).toEqual({ F32: g.tensors.length });
      const a = readSafetensorsRaw(path.join(dir, 'model.safetensors'));
      const b = readSafetensorsRaw(path.join(out, 'model.safetensors'));
      expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
      for (const [k, t] of a) {
        expect(b.get(k)!.shape, k).toEqual(t.shape);
        expect(Buffer.from(b.get(k)!.data).equals(Buffer.from(t.data)), k).toBe(true);
      }
      const m2 = await LlmModel.load(out);
      expect(m2.config.model_type).toBe(arch);
      expect(m2.config.rms_norm_eps).toBe(cfg.rms_norm_eps);
      expect(m2.config.rope_theta).toBe(cfg.rope_theta);
      expect(await maxLogprobDiff(model, m2, seqs(cfg.vocab_size, 2))).toBe(0);
    });
  }

  it('bf16 is bit-exact; f16 equals the f16 rounding and is stable on a second trip', async () => {
    const cfg = GGUF_TEST_CONFIGS.qwen2;
    const { dir } = saveRandom('qwen2-bf16', cfg, 22, true);
    const file = path.join(tmp, 'qwen2.bf16.gguf');
    exportGguf(dir, file, { type: 'bf16' });
    const out = path.join(tmp, 'qwen2-bf16-imported');
    importGguf(file, out);
    const a = readSafetensorsRaw(path.join(dir, 'model.safetensors'));
    const b = readSafetensorsRaw(path.join(out, 'model.safetensors'));
    for (const [k, t] of a) {
      // 1-D tensors are F32 in the GGUF (exact widening); compare values, and bytes for 2-D
      const ta = toFloat32(t.dtype, t.data), tb = toFloat32(b.get(k)!.dtype, b.get(k)!.data);
      expect(Buffer.from(ta.buffer).equals(Buffer.from(tb.buffer)), k).toBe(true);
      if (t.shape.length === 2) expect(b.get(k)!.dtype).toBe('BF16');
    }

    const { dir: d32 } = saveRandom('qwen2-for-f16', cfg, 23);
    const f16 = path.join(tmp, 'qwen2.f16.gguf');
    exportGguf(d32, f16, { type: 'f16' });
    const o1 = path.join(tmp, 'qwen2-f16-a');
    importGguf(f16, o1);
    const src = readSafetensorsRaw(path.join(d32, 'model.safetensors'));
    const got = readSafetensorsRaw(path.join(o1, 'model.safetensors'));
    for (const [k, t] of src) {
      const want = t.shape.length === 2 ? fromFloat32('F16', toFloat32('F32', t.data)) : t.data;
      expect(Buffer.from(got.get(k)!.data).equals(Buffer.from(want)), k).toBe(true);
    }
    const f16b = path.join(tmp, 'qwen2.f16.b.gguf');
    exportGguf(o1, f16b, { type: 'f16' });
    expect(fs.readFileSync(f16b).equals(fs.readFileSync(f16))).toBe(false); // general.name differs…
    const g1 = readGguf(f16), g2 = readGguf(f16b);
    for (const t of g1.tensors) {
      const t2 = g2.tensors.find((x) => x.name === t.name)!;
      expect(Buffer.from(readGgufTensorData(g2, t2)).equals(Buffer.from(readGgufTensorData(g1, t))), t.name).toBe(true); // …the tensors do not
    }
  });

  it('q8_0 stays within the stated per-block bound; log-probs move by a measured amount', async () => {
    for (const [arch, cfg] of Object.entries(GGUF_TEST_CONFIGS)) {
      const { dir, model } = saveRandom(`${arch}-q8`, cfg, 24);
      const file = path.join(tmp, `${arch}.q8_0.gguf`);
      const rep = exportGguf(dir, file, { type: 'q8_0' });
      expect(rep.f16Fallback).toEqual([]);
      const g = readGguf(file);
      expect(g.tensors.filter((t) => t.ne.length === 2).every((t) => t.type === GgmlType.Q8_0)).toBe(true);
      const out = path.join(tmp, `${arch}-q8-imported`);
      importGguf(file, out);
      const a = readSafetensorsRaw(path.join(dir, 'model.safetensors'));
      const b = readSafetensorsRaw(path.join(out, 'model.safetensors'));
      for (const [k, t] of a) {
        const x = toFloat32('F32', t.data), y = toFloat32(b.get(k)!.dtype, b.get(k)!.data);
        if (t.shape.length === 1) {
          expect(Buffer.from(y.buffer).equals(Buffer.from(x.buffer)), k).toBe(true);
          continue;
        }
        // rows of ne[0] = shape[1] values; llama's q/k rows are permuted as whole rows, so blocks stay blocks
        let worst = 0; // the largest error as a fraction of the block's step max|x|/127
        for (let s = 0; s < x.length; s += 32) {
          let amax = 0;
          for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[s + j]));
          for (let j = 0; j < 32; j++) worst = Math.max(worst, Math.abs(y[s + j] - x[s + j]) / (amax / 127));
        }
        expect(worst, k).toBeLessThanOrEqual(0.57);
        expect(worst, k).toBeGreaterThan(0.3); // it does quantise
      }
      const d = await maxLogprobDiff(model, await LlmModel.load(out), seqs(cfg.vocab_size, 3));
      console.log(`q8_0 ${arch}: max |Δ log p| vs f32 = ${d.toExponential(2)}`);
      expect(d).toBeGreaterThan(0);
      expect(d).toBeLessThan(0.3);
    }
  });
});

describe('llama q/k permutation', () => {
  it('row h·d + 2i + j of attn_q/attn_k is HF row h·d + j·d/2 + i (weights and biases); qwen2 is unpermuted', () => {
    const cfg = GGUF_TEST_CONFIGS.llama;
    const dir = path.join(tmp, 'llama-f32');
    const file = path.join(tmp, 'llama.f32.gguf');
    if (!fs.existsSync(file)) exportGguf(saveRandom('llama-perm', cfg, 21).dir, file);
    const src = readSafetensorsRaw(path.join(fs.existsSync(dir) ? dir : path.join(tmp, 'llama-perm'), 'model.safetensors'));
    const g = readGguf(file);
    const C = cfg.hidden_size, H = cfg.num_attention_heads, d = C / H;
    for (const [hf, gg] of [['q_proj.weight', 'attn_q.weight'], ['k_proj.weight', 'attn_k.weight'], ['q_proj.bias', 'attn_q.bias'], ['k_proj.bias', 'attn_k.bias']]) {
      const x = toFloat32('F32', src.get(`model.layers.1.self_attn.${hf}`)!.data);
      const t = g.tensors.find((t) => t.name === `blk.1.${gg}`)!;
      const y = toFloat32('F32', readGgufTensorData(g, t));
      const cols = hf.endsWith('weight') ? C : 1;
      for (let h = 0; h < H; h++) for (let i = 0; i < d / 2; i++) for (let j = 0; j < 2; j++) {
        const rg = h * d + 2 * i + j, rh = h * d + j * (d / 2) + i;
        for (let c = 0; c < cols; c++) expect(y[rg * cols + c]).toBe(x[rh * cols + c]);
      }
      // v is not permuted
    }
    const v = toFloat32('F32', src.get('model.layers.1.self_attn.v_proj.weight')!.data);
    const gv = g.tensors.find((t) => t.name === 'blk.1.attn_v.weight')!;
    expect(Buffer.from(toFloat32('F32', readGgufTensorData(g, gv)).buffer).equals(Buffer.from(v.buffer))).toBe(true);
    // qwen2 q rows unpermuted
    const qsrc = readSafetensorsRaw(path.join(tmp, 'qwen2-f32', 'model.safetensors'));
    const gq = readGguf(path.join(tmp, 'qwen2.f32.gguf'));
    const tq = gq.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
    expect(Buffer.from(readGgufTensorData(gq, tq)).equals(Buffer.from(qsrc.get('model.layers.0.self_attn.q_proj.weight')!.data))).toBe(true);
  });
});

describe('tokenizer metadata', () => {
  it('a WordPiece tokenizer becomes llama.cpp WordPiece tokens (▁ word starts) and is restored verbatim on import', async () => {
    const tok = buildWordPieceTokenizer(['go to the kitchen', 'open the fridge', 'take apple from fridge']);
    const vocab = Object.keys((tok.model as { vocab: Record<string, number> }).vocab).length;
    const cfg = { ...GGUF_TEST_CONFIGS.qwen2, vocab_size: vocab + 3 };
    const { dir } = saveRandom('qwen2-tok', cfg, 25);
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(wordPieceTokenizerConfig()));
    const file = path.join(tmp, 'qwen2-tok.gguf');
    expect(exportGguf(dir, file).tokenizer).toBe('bert');
    const g = readGguf(file);
    expect(g.metadata.get('tokenizer.ggml.model')?.value).toBe('bert');
    const tokens = g.metadata.get('tokenizer.ggml.tokens')!.value as string[];
    const types = g.metadata.get('tokenizer.ggml.token_type')!.value as number[];
    expect(tokens.length).toBe(cfg.vocab_size);
    const v = (tok.model as { vocab: Record<string, number> }).vocab;
    expect(tokens[v.kitchen]).toBe('\u2581kitchen');
    expect(tokens[v['##k']]).toBe('k');
    expect(tokens[v['<|endoftext|>']]).toBe('<|endoftext|>');
    expect(types[v['<|endoftext|>']]).toBe(3);
    expect(types[v.kitchen]).toBe(1);
    expect(tokens[vocab + 1]).toBe(`[PAD${vocab + 1}]`);
    expect(types[vocab + 1]).toBe(5);
    expect(g.metadata.get('tokenizer.ggml.eos_token_id')?.value).toBe(v['<|endoftext|>']);
    const out = path.join(tmp, 'qwen2-tok-imported');
    expect(importGguf(file, out).tokenizer).toBe(true);
    expect(fs.readFileSync(path.join(out, 'tokenizer.json'), 'utf8')).toBe(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).eos_token_id).toBe(v['<|endoftext|>']);
  });
});

describe('tokenizer rebuilt from a foreign GGUF', () => {
  it.skipIf(!qwen3TokenizerDir())('Qwen\'s byte-level BPE without memq\'s copy: import rebuilds a tokenizer.json that encodes as the original', () => {
    const qdir = qwen3TokenizerDir()!;
    const tok = loadTokenizer(qdir);
    const dir = path.join(tmp, 'qwen-bpe');
    LlmModel.createRandom({ ...GGUF_TEST_CONFIGS.qwen2, vocab_size: tok.vocabSize, hidden_size: 32, intermediate_size: 32, num_hidden_layers: 1 }, { seed: 5 }).save(dir);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(qdir, f), path.join(dir, f));
    const file = path.join(tmp, 'qwen-bpe.gguf');
    exportGguf(dir, file);
    const g = readGguf(file);
    expect(g.metadata.get('tokenizer.ggml.pre')?.value).toBe('qwen2');
    // the same file as another converter would write it: no memq.* keys
    const md = new Map([...g.metadata].filter(([k]) => !k.startsWith('memq.')));
    const foreign = path.join(tmp, 'qwen-bpe-foreign.gguf');
    writeGguf(foreign, md, g.tensors.map((t) => ({ name: t.name, ne: t.ne, type: t.type, data: readGgufTensorData(g, t) })));
    const out = path.join(tmp, 'qwen-bpe-imported');
    const rep = importGguf(foreign, out);
    expect(rep.tokenizerSource).toBe('gguf-bpe');
    const rebuilt = loadTokenizer(out);
    expect(rebuilt.vocabSize).toBe(tok.vocabSize);
    expect(rebuilt.eosToken).toBe(tok.eosToken);
    for (const t of ['You arrive at cabinet 4. The cabinet 4 is closed.\n> open cabinet 4', 'Größe: 12,5 € — naïve café <|im_end|> x  y\t\tz', '1234567 tokens\r\n']) {
      expect(rebuilt.encode(t), t).toEqual(tok.encode(t));
      expect(rebuilt.decode(rebuilt.encode(t))).toBe(t);
    }
    // placeholder and unknown pre-tokenizers write none, with a note
    const ph = path.join(tmp, 'placeholder.gguf');
    exportGguf(saveRandom('placeholder', GGUF_TEST_CONFIGS.qwen2, 27).dir, ph);
    const rep2 = importGguf(ph, path.join(tmp, 'placeholder-imported'));
    expect(rep2.tokenizer).toBe(false);
    expect(rep2.tokenizerNote).toMatch(/placeholder/);
    md.set('tokenizer.ggml.pre', { type: GgufType.STRING, value: 'llama-bpe' });
    const f3 = path.join(tmp, 'qwen-bpe-llama3.gguf');
    writeGguf(f3, md, g.tensors.map((t) => ({ name: t.name, ne: t.ne, type: t.type, data: readGgufTensorData(g, t) })));
    const rep3 = importGguf(f3, path.join(tmp, 'qwen-bpe-llama3'));
    expect(rep3.tokenizer).toBe(false);
    expect(rep3.tokenizerNote).toMatch(/tokenizer\.ggml\.pre 'llama-bpe' is not one import rebuilds/);
  });
});

// ---------------------------------------------------------------------------------------------
// forged files: a tiny hand-built GGUF whose fields the tests override one at a time

interface Forge {
  magic?: number;
  version?: number;
  nTensors?: bigint;
  nKv?: bigint;
  kv?: Buffer[];
  tensors?: Buffer[];
  data?: Buffer;
  alignment?: number;
}
const u32b = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); return b; };
const u64b = (v: bigint | number) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const strb = (s: string, len?: bigint) => Buffer.concat([u64b(len ?? BigInt(Buffer.byteLength(s))), Buffer.from(s)]);
const kvU32 = (k: string, v: number) => Buffer.concat([strb(k), u32b(GgufType.UINT32), u32b(v)]);
const tinfo = (name: string, ne: (number | bigint)[], type: number, off: number | bigint, nDims?: number) =>
  Buffer.concat([strb(name), u32b(nDims ?? ne.length), ...ne.map((n) => u64b(n)), u32b(type), u64b(off)]);

function forge(f: Forge): Buffer {
  const kv = f.kv ?? [kvU32('general.alignment', f.alignment ?? 32)];
  const tensors = f.tensors ?? [tinfo('a', [4, 2], 0, 0), tinfo('b', [8], 0, 32)];
  const head = Buffer.concat([u32b(f.magic ?? 0x46554747), u32b(f.version ?? 3), u64b(f.nTensors ?? BigInt(tensors.length)), u64b(f.nKv ?? BigInt(kv.length)), ...kv, ...tensors]);
  const pad = Buffer.alloc((32 - (head.length % 32)) % 32);
  return Buffer.concat([head, pad, f.data ?? Buffer.alloc(64)]);
}

function expectForged(f: Forge | Buffer, field: RegExp): void {
  const file = path.join(tmp, 'forged.gguf');
  fs.writeFileSync(file, Buffer.isBuffer(f) ? f : forge(f));
  let err: unknown;
  try {
    readGguf(file);
  } catch (e) {
    err = e;
  }
  expect(err, `expected an Error matching ${field}`).toBeInstanceOf(Error);
  expect((err as Error).constructor).toBe(Error);
  expect((err as Error).message).toMatch(field);
}

describe('forged GGUF files', () => {
  it('the valid baseline reads', () => {
    const file = path.join(tmp, 'ok.gguf');
    fs.writeFileSync(file, forge({}));
    const g = readGguf(file);
    expect(g.tensors.map((t) => [t.name, t.ne, t.offset, t.nbytes])).toEqual([['a', [4, 2], 0, 32], ['b', [8], 32, 32]]);
  });

  it('each bad field is refused with an Error naming it', () => {
    expectForged({ magic: 0x46554746 }, /magic/);
    expectForged({ version: 1 }, /version: 1 is not supported/);
    expectForged({ version: 4 }, /version/);
    expectForged({ nTensors: 2n ** 52n }, /tensor_count/);
    expectForged({ nTensors: 2n ** 63n }, /tensor_count: value .* too large/);
    expectForged({ nKv: 2n ** 40n }, /metadata_kv_count/);
    expectForged({ kv: [Buffer.concat([strb('x', 2n ** 50n)])] }, /metadata\[0\]\.key length/);
    expectForged({ kv: [Buffer.concat([strb('k'), u32b(GgufType.STRING), u64b(2n ** 45n)])] }, /metadata 'k' length/);
    expectForged({ kv: [Buffer.concat([strb('k'), u32b(GgufType.ARRAY), u32b(GgufType.UINT64), u64b(2n ** 40n)])] }, /metadata 'k' count/);
    expectForged({ kv: [Buffer.concat([strb('k'), u32b(GgufType.ARRAY), u32b(GgufType.STRING), u64b(2n ** 33n)])] }, /metadata 'k' count/);
    expectForged({ kv: [Buffer.concat([strb('k'), u32b(GgufType.ARRAY), u32b(99), u64b(1)])] }, /metadata 'k' item type/);
    expectForged({ kv: [Buffer.concat([strb('k'), u32b(13), u32b(0)])] }, /metadata 'k' type/);
    expectForged({ kv: [Buffer.concat([strb('k'), u32b(GgufType.BOOL), Buffer.from([2])])] }, /bool must be 0 or 1/);
    expectForged({ kv: [kvU32('k', 1), kvU32('k', 2)] }, /metadata key 'k'.*twice/);
    expectForged({ kv: [Buffer.concat([strb('\xff'.repeat(1)), u32b(GgufType.UINT8), Buffer.from([0])])].map((b) => { b[8] = 0xff; return b; }) }, /UTF-8/);
    expectForged({ alignment: 24 }, /general\.alignment/);
    expectForged({ alignment: 0 }, /general\.alignment/);
    expectForged({ kv: [Buffer.concat([strb('general.alignment'), u32b(GgufType.UINT64), u64b(32)])] }, /general\.alignment: must be a u32/);
    expectForged({ tensors: [tinfo('a', [4, 2], 0, 0), tinfo('a', [8], 0, 32)] }, /tensor 'a'.*twice/);
    expectForged({ tensors: [tinfo('a', [], 0, 0, 0)] }, /n_dims/);
    expectForged({ tensors: [tinfo('a', [1, 1, 1, 1, 1], 0, 0)] }, /n_dims: 5/);
    expectForged({ tensors: [tinfo('a', [4, 0], 0, 0)] }, /ne\[1\]: must be >= 1/);
    expectForged({ tensors: [tinfo('a', [2n ** 40n, 2n ** 20n], 0, 0)] }, /tensor 'a' shape/);
    expectForged({ tensors: [tinfo('a', [4, 2], 5, 0)] }, /tensor 'a' type: unknown ggml type 5/);
    expectForged({ tensors: [tinfo('a', [48, 1], 8, 0)] }, /ne\[0\]: 48 is not a multiple of the Q8_0 block size 32/);
    expectForged({ tensors: [tinfo('a', [4, 2], 0, 16)] }, /offset: 16 is not a multiple of general.alignment 32/);
    expectForged({ tensors: [tinfo('a', [4, 4], 0, 0), tinfo('b', [8], 0, 32)] }, /tensor 'b' offset: 32 overlaps/);
    expectForged({ tensors: [tinfo('a', [4, 2], 0, 0), tinfo('b', [8], 0, 64)] }, /tensor 'b' data: .* outside/);
    expectForged({ tensors: [tinfo('a', [2n ** 20n, 2n ** 20n], 0, 0)] }, /tensor 'a' data/);
    expectForged({ data: Buffer.alloc(40) }, /tensor 'b' data/);
    expectForged(forge({}).subarray(0, 30), /metadata_kv_count: 1 entries cannot fit in the 6 bytes left/);
    for (const cut of [50, 70, 90]) expectForged(forge({}).subarray(0, cut), /GGUF .*(needs \d+ bytes but only \d+ are left|cannot fit|exceeds the \d+ bytes left)/);
  });

  it('a byte-flip fuzz over a real file throws only Error (no crash, no other error class)', () => {
    const src = fs.readFileSync(path.join(tmp, 'qwen2.f32.gguf'));
    const g = readGguf(path.join(tmp, 'qwen2.f32.gguf'));
    const headerEnd = g.dataOffset;
    const rng = new TestRng(9);
    const file = path.join(tmp, 'fuzz.gguf');
    let refused = 0;
    for (let it = 0; it < 300; it++) {
      const b = Buffer.from(src.subarray(0, headerEnd + 4096));
      const n = 1 + rng.int(4);
      for (let k = 0; k < n; k++) b[rng.int(headerEnd)] = rng.int(256);
      fs.writeFileSync(file, b);
      try {
        readGguf(file);
      } catch (e) {
        expect((e as Error).constructor).toBe(Error);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(100);
  });

  it('import refuses unsupported tensor types, architectures and shapes, naming them', () => {
    const cfg = GGUF_TEST_CONFIGS.qwen2;
    const g = readGguf(path.join(tmp, 'qwen2.f32.gguf'));
    const md = new Map(g.metadata);
    const tensors = g.tensors.map((t) => ({ name: t.name, ne: t.ne, type: t.type, data: readGgufTensorData(g, t) }));
    const write = (name: string, m: Map<string, GgufValue>, ts: typeof tensors) => {
      const f = path.join(tmp, name);
      writeGguf(f, m, ts);
      return f;
    };
    // a Q4_0 tensor (2 blocks of 18 bytes per 64 values)
    const q4 = tensors.map((t) => (t.name === 'blk.0.ffn_up.weight' ? { ...t, type: 2, data: new Uint8Array((t.ne[0] / 32) * 18 * t.ne[1]) } : t));
    expect(() => importGguf(write('q4.gguf', md, q4), path.join(tmp, 'imp-q4'))).toThrow(/blk\.0\.ffn_up\.weight' has type Q4_0; import reads F32, F16, BF16 and Q8_0 only/);
    const m2 = new Map(md);
    m2.set('general.architecture', { type: GgufType.STRING, value: 'gemma' });
    expect(() => importGguf(write('gemma.gguf', m2, tensors), path.join(tmp, 'imp-g'))).toThrow(/general\.architecture 'gemma' is not supported/);
    const missing = tensors.filter((t) => t.name !== 'blk.1.attn_k.weight');
    expect(() => importGguf(write('missing.gguf', md, missing), path.join(tmp, 'imp-m'))).toThrow(/tensor 'blk\.1\.attn_k\.weight' is missing/);
    const extra = [...tensors, { name: 'rope_freqs.weight', ne: [16], type: 0, data: new Uint8Array(64) }];
    expect(() => importGguf(write('extra.gguf', md, extra), path.join(tmp, 'imp-e'))).toThrow(/tensor 'rope_freqs\.weight' is not part of/);
    const m3 = new Map(md);
    m3.set('qwen2.feed_forward_length', { type: GgufType.UINT32, value: cfg.intermediate_size + 32 });
    expect(() => importGguf(write('ffn.gguf', m3, tensors), path.join(tmp, 'imp-f'))).toThrow(/blk\.0\.ffn_gate\.weight' has ne \[64,96\], the metadata implies \[64,128\]/);
    const m4 = new Map(md);
    m4.delete('qwen2.block_count');
    expect(() => importGguf(write('nob.gguf', m4, tensors), path.join(tmp, 'imp-b'))).toThrow(/'qwen2\.block_count' is missing/);
    const m5 = new Map(md);
    m5.set('qwen2.block_count', { type: GgufType.STRING, value: '2' });
    expect(() => importGguf(write('strb.gguf', m5, tensors), path.join(tmp, 'imp-s'))).toThrow(/'qwen2\.block_count' must be an integer/);
  });
});

describe('memq model export / import (CLI)', () => {
  function io() {
    let out = '', err = '';
    return { io: { stdout: (s: string) => { out += s; }, stderr: (s: string) => { err += s; }, isTTY: false }, get out() { return out; }, get err() { return err; } };
  }

  it('exports with a merged LoRA adapter; the import equals the model with the adapter', async () => {
    const cfg = GGUF_TEST_CONFIGS.qwen3;
    const { dir, model } = saveRandom('qwen3-lora', cfg, 26);
    const lora = LoraAdapter.create(model, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'] }, 3);
    const p = lora.getParams();
    const rng = new TestRng(4);
    await lora.setParams(p.map(() => (rng.next() - 0.5) * 0.2));
    const adir = path.join(tmp, 'qwen3-adapter');
    lora.save(adir);
    const file = path.join(tmp, 'qwen3-lora.gguf');
    const o = io();
    expect(await main(['model', 'export', dir, '--format', 'gguf', '--lora', adir, '--out', file], o.io as any)).toBe(0);
    expect(o.out).toMatch(/LoRA merged/);
    const out = path.join(tmp, 'qwen3-lora-imported');
    const o2 = io();
    expect(await main(['model', 'import', file, '--out', out], o2.io as any)).toBe(0);
    expect(o2.out).toMatch(/qwen3, \d+ tensors from \d+ F32/);
    const imported = await LlmModel.load(out);
    const s = seqs(cfg.vocab_size, 6);
    const [want, got, base] = await Promise.all([model.tokenLogprobs(s, { lora }), imported.tokenLogprobs(s), model.tokenLogprobs(s)]);
    let d = 0, dBase = 0;
    want.forEach((r, i) => r.forEach((v, j) => { d = Math.max(d, Math.abs(v - got[i][j])); dBase = Math.max(dBase, Math.abs(base[i][j] - got[i][j])); }));
    expect(d).toBeLessThan(2e-5);
    expect(dBase).toBeGreaterThan(1e-3); // the adapter mattered
  });

  it('names bad arguments', async () => {
    const o = io();
    await expect(main(['model', 'export', path.join(tmp, 'qwen2-f32'), '--type', 'q4_0', '--out', path.join(tmp, 'x.gguf')], o.io as any)).resolves.not.toBe(0);
    const o2 = io();
    await expect(main(['model', 'import', path.join(tmp, 'qwen2.f32.gguf')], o2.io as any)).resolves.not.toBe(0);
    expect(o.err + o2.err).toMatch(/--type must be one of f32, f16, bf16, q8_0/);
    expect(o.err + o2.err).toMatch(/--out DIR is required/);
  });
});
