/**
 * Loading forged model and adapter directories (issue #11): config.json is checked against the
 * tensors the safetensors files actually hold (names, shapes, dtypes) before anything is
 * allocated, and forged safetensors headers are refused with a clear Error (a corrupt file),
 * never a crash or a huge allocation. Every file here is written by the test itself.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { LlmModel, type LlmConfig } from '../../lib/llm/model';
import { LoraAdapter } from '../../lib/llm/lora';
import { loadNative } from '../../lib/native';

const tiny: LlmConfig = {
  model_type: 'qwen2', vocab_size: 40, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: false,
};

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-llm-hardening-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let counter = 0;

interface St {
  header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  data: Buffer;
}

function readSt(file: string): St {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + n).toString('utf8')), data: buf.subarray(8 + n) };
}

/** Writes [u64 len][header][data]; `headerText` / `lenOverride` forge the raw bytes. */
function writeSt(file: string, st: St | { headerText: string; data: Buffer }, lenOverride?: bigint) {
  const text = 'headerText' in st ? st.headerText : JSON.stringify(st.header);
  const h = Buffer.from(text, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(h.length));
  fs.writeFileSync(file, Buffer.concat([len, h, st.data]));
}

/** A fresh copy of a saved tiny model: { dir, config, st }. */
function modelDir(config: LlmConfig = tiny) {
  const dir = path.join(root, `m${counter++}`);
  LlmModel.createRandom(config, { seed: 7, initStd: 0.2 }).save(dir);
  return {
    dir,
    config: JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>,
    st: readSt(path.join(dir, 'model.safetensors')),
  };
}

async function loadErr(dir: string): Promise<Error> {
  try {
    await LlmModel.load(dir);
  } catch (e) {
    return e as Error;
  }
  throw new Error(`${dir}: loaded a forged model`);
}

/** A plain Error (corrupt file), not a TypeError/RangeError, whose message matches `re`. */
function expectCorrupt(e: Error, re: RegExp) {
  expect(e).toBeInstanceOf(Error);
  expect(e, e.message).not.toBeInstanceOf(TypeError);
  expect(e, e.message).not.toBeInstanceOf(RangeError);
  expect(e.message).toMatch(re);
}

describe('LlmModel.load: config.json is checked against the tensors before allocating', () => {
  it('the untouched copy loads and equals the saved model (control)', async () => {
    const { dir } = modelDir();
    const m = await LlmModel.load(dir);
    expect(m.numParams).toBe(LlmModel.createRandom(tiny, { seed: 7, initStd: 0.2 }).numParams);
  });

  it('num_hidden_layers: 1e9 is refused at once (was: ~1 GB / 10 s until killed)', async () => {
    const { dir, config } = modelDir();
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: 1_000_000_000 }));
    expectCorrupt(await loadErr(dir), /config\.json: model config: num_hidden_layers = 1000000000 is over the limit of 1024/);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: 3 }));
    expectCorrupt(await loadErr(dir), /num_hidden_layers = 3 but the weight files hold tensors for 2 layers \(no tensor "model\.layers\.2\.input_layernorm\.weight"\)/);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, num_hidden_layers: 1 }));
    expectCorrupt(await loadErr(dir), /num_hidden_layers = 1 but the weight files hold tensors for 2 layers/);
  });

  it('each dimension field against the tensor it shapes, naming the field and the tensor', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ intermediate_size: 64 }, /tensor "model\.layers\.0\.mlp\.gate_proj\.weight" in .*model\.safetensors has shape \[32, 16\], but config\.json's \[intermediate_size, hidden_size\] = \[64, 16\]/],
      [{ intermediate_size: 1 << 30 }, /config\.json: model config: \d+ parameters is over the limit of 2\^32/],
      [{ vocab_size: 2_000_000_000 }, /(parameters is over the limit of 2\^32|"model\.embed_tokens\.weight" .* \[vocab_size, hidden_size\])/],
      [{ vocab_size: 41 }, /tensor "model\.embed_tokens\.weight" .*has shape \[40, 16\], but config\.json's \[vocab_size, hidden_size\] = \[41, 16\]/],
      [{ hidden_size: 32, num_attention_heads: 8, num_key_value_heads: 4 }, /"model\.embed_tokens\.weight" .*\[40, 16\].*\[vocab_size, hidden_size\] = \[40, 32\]/],
      [{ head_dim: 8 }, /"model\.layers\.0\.self_attn\.q_proj\.weight" .*has shape \[16, 16\], but config\.json's \[num_attention_heads\*head_dim, hidden_size\] = \[32, 16\]/],
      [{ num_key_value_heads: 4 }, /"model\.layers\.0\.self_attn\.k_proj\.weight" .*\[8, 16\].*\[num_key_value_heads\*head_dim, hidden_size\] = \[16, 16\]/],
      [{ model_type: 'llama' }, /unexpected tensor "model\.layers\.0\.self_attn\.[qkv]_proj\.bias" for a llama model/],
    ];
    for (const [patch, re] of cases) {
      const { dir, config } = modelDir();
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, ...patch }));
      const e = await loadErr(dir);
      expectCorrupt(e, re);
    }
  });

  it('a tensor missing, of a non-float dtype, or an unexpected one', async () => {
    {
      const { dir, st } = modelDir();
      const name = 'model.layers.1.mlp.up_proj.weight';
      const h = { ...st.header } as St['header'];
      // Re-tile without the tensor: drop its bytes.
      const t = h[name] as { data_offsets: [number, number] };
      const [b, e] = t.data_offsets;
      delete h[name];
      for (const [k, v] of Object.entries(h)) {
        const o = (v as { data_offsets?: [number, number] }).data_offsets;
        if (k !== '__metadata__' && o && o[0] >= e) o[0] -= e - b, o[1] -= e - b;
      }
      writeSt(path.join(dir, 'model.safetensors'), { header: h, data: Buffer.concat([st.data.subarray(0, b), st.data.subarray(e)]) });
      expectCorrupt(await loadErr(dir), /config\.json expects tensor "model\.layers\.1\.mlp\.up_proj\.weight" \(shape \[intermediate_size, hidden_size\] = \[32, 16\]\), which no weight file holds/);
    }
    {
      const { dir, st } = modelDir();
      const t = st.header['model.norm.weight'] as { dtype: string; shape: number[] };
      t.dtype = 'I32'; // same byte length (4), another dtype
      writeSt(path.join(dir, 'model.safetensors'), st);
      expectCorrupt(await loadErr(dir), /tensor "model\.norm\.weight" has dtype I32; weights must be F32, F16, BF16 or F64/);
    }
    {
      const { dir, st } = modelDir();
      const end = st.data.length;
      st.header['model.extra.weight'] = { dtype: 'F32', shape: [2], data_offsets: [end, end + 8] };
      writeSt(path.join(dir, 'model.safetensors'), { header: st.header, data: Buffer.concat([st.data, Buffer.alloc(8)]) });
      expectCorrupt(await loadErr(dir), /unexpected tensor "model\.extra\.weight" for a qwen2 model/);
    }
  });
});

describe('forged safetensors headers: a clear Error naming the file and the field', () => {
  function forge(mutate: (st: St) => St | { headerText: string; data: Buffer }, lenOverride?: bigint) {
    const m = modelDir();
    const file = path.join(m.dir, 'model.safetensors');
    writeSt(file, mutate(m.st), lenOverride);
    return { dir: m.dir, file };
  }
  const first = 'model.embed_tokens.weight';
  const off = (st: St, name: string) => (st.header[name] as { data_offsets: [number, number] }).data_offsets;

  it('header length beyond the file, and absurd (2^63)', async () => {
    const a = forge((st) => st, 1n << 40n);
    expectCorrupt(await loadErr(a.dir), new RegExp(`safetensors ${a.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: header length 1099511627776 exceeds the file size`));
    const b = forge((st) => st, 1n << 63n);
    expectCorrupt(await loadErr(b.dir), /header length 9223372036854775808 exceeds the file size/);
  });

  it('offsets out of range, overlapping, or leaving a hole', async () => {
    const a = forge((st) => {
      off(st, first)[1] = st.data.length + 1000;
      return st;
    });
    expectCorrupt(await loadErr(a.dir), /tensor "model\.embed_tokens\.weight": data_offsets end \d+ beyond the data area/);
    const b = forge((st) => {
      // embed_tokens and the first norm both start at 0: overlap (and the shapes still match lengths)
      const o = off(st, 'model.layers.0.input_layernorm.weight');
      const len = o[1] - o[0];
      o[0] = 0;
      o[1] = len;
      return st;
    });
    expectCorrupt(await loadErr(b.dir), /overlaps the previous tensor|hole in the data area/);
    const c = forge((st) => ({ header: st.header, data: Buffer.concat([st.data, Buffer.alloc(4)]) }));
    expectCorrupt(await loadErr(c.dir), /data area is \d+ bytes but the tensors cover \d+/);
    const d = forge((st) => {
      off(st, first)[0] = -8;
      return st;
    });
    expectCorrupt(await loadErr(d.dir), /data_offsets must be non-negative integers/);
  });

  it('shape product overflow, negative or fractional shapes, shape x dtype != byte length', async () => {
    const a = forge((st) => {
      (st.header[first] as { shape: number[] }).shape = [2 ** 40, 2 ** 40, 2 ** 40];
      return st;
    });
    expectCorrupt(await loadErr(a.dir), /tensor "model\.embed_tokens\.weight": shape x dtype size does not equal the byte length/);
    const b = forge((st) => {
      (st.header[first] as { shape: number[] }).shape = [-40, 16];
      return st;
    });
    expectCorrupt(await loadErr(b.dir), /shape entries must be non-negative integers/);
    const c = forge((st) => {
      (st.header[first] as { shape: number[] }).shape = [40, 15];
      return st;
    });
    expectCorrupt(await loadErr(c.dir), /shape x dtype size does not equal the byte length 2560/);
  });

  it('unknown dtype, non-JSON header, duplicate keys, unknown fields', async () => {
    const a = forge((st) => {
      (st.header[first] as { dtype: string }).dtype = 'F128';
      return st;
    });
    expectCorrupt(await loadErr(a.dir), /unknown dtype "F128"/);
    const b = forge((st) => ({ headerText: '{"model.norm.weight": {"dtype": "F32", ', data: st.data }));
    expectCorrupt(await loadErr(b.dir), /header is not valid JSON/);
    const c = forge((st) => ({ headerText: 'not json at all', data: st.data }));
    expectCorrupt(await loadErr(c.dir), /header does not start with '\{'/);
    const d = forge((st) => ({ headerText: '[' + '['.repeat(100000) + ']'.repeat(100000) + ']', data: st.data }));
    expectCorrupt(await loadErr(d.dir), /header does not start with '\{'/);
    const e = forge((st) => ({ headerText: '{"a":' + '['.repeat(100000) + ']'.repeat(100000) + '}', data: st.data }));
    expectCorrupt(await loadErr(e.dir), /header is not valid JSON \(json: nesting too deep/);
    const f = forge((st) => {
      const text = JSON.stringify(st.header);
      const dup = JSON.stringify({ [first]: st.header[first] }).slice(1, -1);
      return { headerText: text.slice(0, -1) + ',' + dup + '}', data: st.data };
    });
    expectCorrupt(await loadErr(f.dir), /duplicate key "model\.embed_tokens\.weight"/);
    const g = forge((st) => {
      (st.header[first] as Record<string, unknown>).offsets = [0, 1];
      return st;
    });
    expectCorrupt(await loadErr(g.dir), /tensor "model\.embed_tokens\.weight" has unknown field "offsets"/);
  });

  it('unaligned offsets are not refused for alignment (reads copy bytewise); the extra tensor is', async () => {
    // Put a 3-byte U8 tensor first: every float tensor after it starts at an odd offset. The
    // loader refuses the extra tensor by name, before reading anything; the C++ reader test
    // (test_llm_safetensors, unaligned_offsets_read_correctly) checks unaligned values.
    const a = forge((st) => {
      for (const [k, v] of Object.entries(st.header)) {
        const o = (v as { data_offsets?: [number, number] }).data_offsets;
        if (k !== '__metadata__' && o) o[0] += 3, o[1] += 3;
      }
      st.header['pad.u8'] = { dtype: 'U8', shape: [3], data_offsets: [0, 3] };
      return { header: st.header, data: Buffer.concat([Buffer.from([1, 2, 3]), st.data]) };
    });
    expectCorrupt(await loadErr(a.dir), /unexpected tensor "pad\.u8"/);
  });

  it('a missing file is an Error (I/O), not a RangeError', async () => {
    const e = await loadErr(path.join(root, 'nope'));
    expectCorrupt(e, /config\.json: cannot read/);
  });
});

describe('LlmModel.createRandom: sizes are range-checked before allocating', () => {
  it('num_hidden_layers and the parameter count over their limits: RangeErrors', () => {
    expect(() => LlmModel.createRandom({ ...tiny, num_hidden_layers: 1_000_000_000 })).toThrow(RangeError);
    expect(() => LlmModel.createRandom({ ...tiny, num_hidden_layers: 1_000_000_000 })).toThrow(/num_hidden_layers = 1000000000 is over the limit of 1024/);
    expect(() => LlmModel.createRandom({ ...tiny, vocab_size: 2 ** 30, hidden_size: 64 })).toThrow(/parameters is over the limit of 2\^32/);
    expect(() => LlmModel.createRandom({ ...tiny, hidden_size: 2 ** 40 })).toThrow(/hidden_size = 1099511627776 is over 2\^31 - 1/);
    expect(() => LlmModel.createRandom({ ...tiny, num_hidden_layers: 0 })).toThrow(RangeError);
    expect(() => LlmModel.createRandom({ ...tiny, num_hidden_layers: 0 })).toThrow(/num_hidden_layers must be positive, got 0/);
  });

  it('fuzz F12/F13: head_dim 0 and alpha NaN are RangeErrors, hidden_act of another type a TypeError', () => {
    expect(() => LlmModel.createRandom({ ...tiny, head_dim: 0 } as LlmConfig)).toThrow(RangeError);
    expect(() => LlmModel.createRandom({ ...tiny, head_dim: 0 } as LlmConfig)).toThrow(/head_dim must be >= 1 when given, got 0/);
    expect(() => LlmModel.createRandom({ ...tiny, hidden_act: 5 } as unknown as LlmConfig)).toThrow(TypeError);
    expect(() => LlmModel.createRandom({ ...tiny, hidden_act: 5 } as unknown as LlmConfig)).toThrow(/"hidden_act" must be a string/);
    const m = LlmModel.createRandom(tiny, { seed: 1 });
    expect(() => LoraAdapter.create(m, { alpha: NaN })).toThrow(RangeError);
    expect(() => LoraAdapter.create(m, { alpha: Infinity })).toThrow(/opts\.alpha must be a finite number/);
    expect(() => LoraAdapter.create(m, { alpha: 'x' as never })).toThrow(TypeError);
  });
});

describe('LoraAdapter.load: adapter_config.json is checked against the adapter tensors first', () => {
  const model = LlmModel.createRandom(tiny, { seed: 7, initStd: 0.2 });

  function adapterDir() {
    const dir = path.join(root, `a${counter++}`);
    LoraAdapter.create(model, { r: 4, targetModules: ['q_proj', 'v_proj'] }, 3).save(dir);
    return {
      dir,
      config: JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>,
      st: readSt(path.join(dir, 'adapter_model.safetensors')),
    };
  }
  async function adapterErr(dir: string): Promise<Error> {
    try {
      await LoraAdapter.load(dir, model);
    } catch (e) {
      return e as Error;
    }
    throw new Error(`${dir}: loaded a forged adapter`);
  }

  it('the untouched copy loads (control)', async () => {
    const { dir } = adapterDir();
    expect((await LoraAdapter.load(dir, model)).numParams).toBe(2 * 2 * 4 * (16 + 16 + 16 + 8) / 2);
  });

  it('r = 1e9 is refused before any allocation; r against the tensor shapes', async () => {
    const { dir, config } = adapterDir();
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...config, r: 1_000_000_000 }));
    expectCorrupt(await adapterErr(dir), /adapter_config\.json: r must be in \[1, 65536\], got 1000000000/);
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...config, r: 65536 }));
    expectCorrupt(await adapterErr(dir), /tensor "base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight" has shape \[4, 16\], but adapter_config\.json's r = 65536 and the model give \[65536, 16\]/);
  });

  it('target_modules naming a module without tensors, and tensors for a module not named', async () => {
    {
      const { dir, config } = adapterDir();
      fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...config, target_modules: ['q_proj', 'v_proj', 'down_proj'] }));
      expectCorrupt(await adapterErr(dir), /no tensor "base_model\.model\.model\.layers\.0\.mlp\.down_proj\.lora_A\.weight", which adapter_config\.json's target_modules \(down_proj\) and the model's 2 layers require/);
    }
    {
      const { dir, config } = adapterDir();
      fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...config, target_modules: ['q_proj'] }));
      expectCorrupt(await adapterErr(dir), /unexpected tensor "base_model\.model\.model\.layers\.0\.self_attn\.v_proj\.lora_A\.weight" for this adapter config/);
    }
    {
      const { dir, config } = adapterDir();
      fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...config, target_modules: ['q_proj', 'nope'] }));
      expectCorrupt(await adapterErr(dir), /unknown target module "nope"/);
    }
  });

  it('a forged adapter safetensors header is an Error too', async () => {
    const { dir, st } = adapterDir();
    const k = Object.keys(st.header).find((n) => n !== '__metadata__')!;
    (st.header[k] as { shape: number[] }).shape = [2 ** 62, 4];
    writeSt(path.join(dir, 'adapter_model.safetensors'), st);
    expectCorrupt(await adapterErr(dir), /shape x dtype size does not equal the byte length/);
  });
});

describe('LLM addon entry points: no C++ exception escapes, outputs are size-checked', () => {
  it('embedMean with sequences*hidden over 2^28 is a RangeError; inputs are copied for the worker', async () => {
    const n = loadNative();
    // hidden 2048 with one head of dim 2 and intermediate 8: a small model with a wide hidden state.
    const cfg = { ...tiny, hidden_size: 2048, num_attention_heads: 1, num_key_value_heads: 1, head_dim: 2, intermediate_size: 8 };
    const m = n.llmCreateRandom(JSON.stringify(cfg), 1, 0.02);
    // 2^18 empty sequences x 2048 = 2^29 floats
    const offsets = new Int32Array((1 << 18) + 1);
    expect(() => m.embedMean(new Int32Array(0), offsets)).toThrow(RangeError);
    expect(() => m.embedMean(new Int32Array(0), offsets)).toThrow(/sequences\*hidden_size = 262144\*2048 .*2\^28/);
    const small = LlmModel.createRandom(tiny, { seed: 2, initStd: 0.2 });
    const tokens = Int32Array.of(1, 2, 3, 4);
    const want = await small.native.tokenLogprobs(tokens.slice(), Int32Array.of(0, 4));
    const p = small.native.tokenLogprobs(tokens, Int32Array.of(0, 4));
    tokens.fill(39);
    expect(Array.from(await p)).toEqual(Array.from(want));
  });
});
