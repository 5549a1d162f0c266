/**
 * The engine's forward matches an independent plain-TypeScript float64 forward of a tiny model
 * (test/helpers/llm-reference.ts, written from the HF modeling_llama / qwen2 / qwen3 definitions
 * and reading the saved model directory with its own safetensors parser).
 *
 * Tolerances: the engine computes in float32, the reference in float64 on the same weights; on
 * these tiny 2-layer models the log-probabilities agree to ~1e-5, so 2e-4 absolute on
 * log-probabilities / scores and 1e-4 on the mean-pooled hidden states (entries of size ~1)
 * leave room for float32 rounding but not for a wrong formula (see the negative control).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoraAdapter } from '../../lib/llm/lora';
import { LlmModel, type LlmConfig } from '../../lib/llm/model';
import {
  cloneReference,
  loadReference,
  logSoftmax,
  readPeftAdapter,
  readSafetensors,
  referenceEmbedMean,
  referenceLogits,
  referenceLogprobs,
  writeSafetensors,
  type Reference,
  type ReferenceLora,
} from '../helpers/llm-reference';
import { TestRng } from '../helpers/rng';

const TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const MLP_TARGETS = new Set(['gate_proj', 'up_proj', 'down_proj']);
/** The HF weight name (without .weight) of a LoRA target in a layer. */
const projName = (layer: number, t: string): string => `model.layers.${layer}.${MLP_TARGETS.has(t) ? 'mlp' : 'self_attn'}.${t}`;

const TOL_LOGPROB = 2e-4; // float32 engine vs float64 reference, absolute on log p
const TOL_EMBED = 1e-4; // float32 engine vs float64 reference, absolute on normed hidden entries
const LENGTHS = [1, 2, 7, 33];

interface Case {
  name: string;
  config: LlmConfig;
  seed: number;
}

const CASES: Case[] = [
  {
    name: 'qwen2 (GQA 4/2, untied, q/k/v biases)',
    seed: 11,
    config: {
      model_type: 'qwen2', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: false,
    },
  },
  {
    name: 'llama (MHA 6/6, tied, attention_bias, theta 5e5)',
    seed: 12,
    config: {
      model_type: 'llama', vocab_size: 80, hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2,
      num_attention_heads: 6, num_key_value_heads: 6, rope_theta: 500000, rms_norm_eps: 1e-5, tie_word_embeddings: true,
      attention_bias: true,
    },
  },
  {
    name: 'llama (single KV head 4/1, untied, no bias)',
    seed: 13,
    config: {
      model_type: 'llama', vocab_size: 50, hidden_size: 32, intermediate_size: 80, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 1, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: false,
      attention_bias: false,
    },
  },
  {
    name: 'qwen3 (q/k norms, head_dim 12 != 32/4, GQA 4/2)',
    seed: 14,
    config: {
      model_type: 'qwen3', vocab_size: 96, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
      num_attention_heads: 4, num_key_value_heads: 2, head_dim: 12, rope_theta: 1000000, rms_norm_eps: 1e-6,
      tie_word_embeddings: false, attention_bias: false,
    },
  },
];

function randomSeqs(rng: TestRng, vocab: number, lengths: number[]): number[][] {
  return lengths.map((n) => Array.from({ length: n }, () => rng.int(vocab)));
}

/** max |engine − reference| of token log-probs over a batch. */
async function logprobDiff(
  model: LlmModel, ref: Reference, seqs: number[][], lora?: ReferenceLora, opts?: { lora?: LoraAdapter },
): Promise<number> {
  const got = await model.tokenLogprobs(seqs, opts);
  expect(got.length).toBe(seqs.length);
  let worst = 0;
  seqs.forEach((s, b) => {
    const want = referenceLogprobs(ref, s, lora);
    expect(got[b].length).toBe(s.length);
    for (let t = 0; t < s.length; t++) worst = Math.max(worst, Math.abs(got[b][t] - want[t]));
  });
  return worst;
}

const tmpDirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-llm-ref-'));
  tmpDirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('safetensors reader of the reference', () => {
  it('reads F32, F16 and BF16 (incl. subnormal / negative / inf) and checks offsets', () => {
    const dir = tmpDir();
    const f32 = new Float32Array([1.5, -2.25, 3e-5]);
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7c00, 0x3555]); // 1, -2, 2^-24, inf, 0.333251953125
    const bf16 = new Uint16Array([0x3f80, 0xc040, 0x3eab]); // 1, -3, 0.333984375
    const parts: [string, string, number[], Uint8Array][] = [
      ['a', 'F32', [3], new Uint8Array(f32.buffer)],
      ['b', 'F16', [5], new Uint8Array(f16.buffer)],
      ['c', 'BF16', [1, 3], new Uint8Array(bf16.buffer)],
    ];
    const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
    let off = 0;
    for (const [name, dtype, shape, bytes] of parts) {
      header[name] = { dtype, shape, data_offsets: [off, off + bytes.length] };
      off += bytes.length;
    }
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    const file = path.join(dir, 't.safetensors');
    fs.writeFileSync(file, Buffer.concat([len, json, ...parts.map((p) => Buffer.from(p[3]))]));
    const t = readSafetensors(file);
    expect(Array.from(t.get('a')!.data)).toEqual(Array.from(f32));
    expect(Array.from(t.get('b')!.data)).toEqual([1, -2, 2 ** -24, Infinity, 0.333251953125]);
    expect(t.get('c')!.shape).toEqual([1, 3]);
    expect(Array.from(t.get('c')!.data)).toEqual([1, -3, 0.333984375]);
    // A wrong data_offsets is refused.
    header.a = { dtype: 'F32', shape: [4], data_offsets: [0, 12] };
    const json2 = Buffer.from(JSON.stringify(header));
    len.writeBigUInt64LE(BigInt(json2.length));
    fs.writeFileSync(file, Buffer.concat([len, json2, ...parts.map((p) => Buffer.from(p[3]))]));
    expect(() => readSafetensors(file)).toThrow(/data_offsets/);
  });
});

for (const c of CASES) {
  describe(`engine vs float64 reference: ${c.name}`, () => {
    let model: LlmModel;
    let ref: Reference;
    let f32Dir: string;
    const rng = new TestRng(1000 + c.seed);

    beforeAll(() => {
      model = LlmModel.createRandom(c.config, { seed: c.seed, initStd: 0.2 });
      f32Dir = path.join(tmpDir(), 'f32');
      model.save(f32Dir);
      ref = loadReference(f32Dir);
      expect(ref.config.model_type).toBe(c.config.model_type);
    });

    it('the model is far from uniform (the comparison is not vacuous)', () => {
      const seq = randomSeqs(rng, c.config.vocab_size, [16])[0];
      const logits = referenceLogits(ref, seq);
      const logV = Math.log(c.config.vocab_size);
      let meanEntropy = 0;
      let meanMax = 0;
      for (const row of logits) {
        const lp = logSoftmax(row);
        let h = 0;
        let mx = -Infinity;
        for (const v of lp) {
          h -= Math.exp(v) * v;
          mx = Math.max(mx, v);
        }
        meanEntropy += h / logits.length;
        meanMax += (mx + logV) / logits.length; // log(p_max / (1/V))
      }
      console.log(`${c.name}: mean entropy ${meanEntropy.toFixed(3)} vs log V ${logV.toFixed(3)}, mean log(V·p_max) ${meanMax.toFixed(3)}`);
      expect(meanEntropy).toBeLessThan(logV - 0.3);
      expect(meanMax).toBeGreaterThan(1);
    });

    it(`tokenLogprobs on a ragged batch (lengths ${LENGTHS.join(', ')}) matches the reference`, async () => {
      const seqs = randomSeqs(rng, c.config.vocab_size, [...LENGTHS, 33]);
      const d = await logprobDiff(model, ref, seqs);
      console.log(`${c.name}: tokenLogprobs max |Δ| = ${d.toExponential(2)}`);
      expect(d).toBeLessThan(TOL_LOGPROB);
    });

    it('score (sum and length-normalised) matches reference log-probs summed over candidate positions', async () => {
      const V = c.config.vocab_size;
      const prompts = randomSeqs(rng, V, [5, 1, 12]);
      const cands = [randomSeqs(rng, V, [1, 3, 6]), randomSeqs(rng, V, [2, 7]), randomSeqs(rng, V, [1, 1, 4, 9])];
      const sums = await model.score(prompts, cands);
      const means = await model.score(prompts, cands, { lengthNormalize: true });
      let worstSum = 0;
      let worstMean = 0;
      prompts.forEach((p, b) => {
        cands[b].forEach((cand, k) => {
          const lp = referenceLogprobs(ref, [...p, ...cand]);
          let want = 0;
          for (let t = p.length; t < lp.length; t++) want += lp[t];
          worstSum = Math.max(worstSum, Math.abs(sums[b][k] - want));
          worstMean = Math.max(worstMean, Math.abs(means[b][k] - want / cand.length));
        });
      });
      console.log(`${c.name}: score max |Δ| sum ${worstSum.toExponential(2)}, mean ${worstMean.toExponential(2)}`);
      expect(worstSum).toBeLessThan(TOL_LOGPROB);
      expect(worstMean).toBeLessThan(TOL_LOGPROB);
    });

    it('embedMean matches the mean of the reference final normed hidden states', async () => {
      const seqs = randomSeqs(rng, c.config.vocab_size, LENGTHS);
      const got = await model.embedMean(seqs);
      const H = c.config.hidden_size;
      expect(got.length).toBe(seqs.length * H);
      let worst = 0;
      seqs.forEach((s, b) => {
        const want = referenceEmbedMean(ref, s);
        for (let i = 0; i < H; i++) worst = Math.max(worst, Math.abs(got[b * H + i] - want[i]));
      });
      console.log(`${c.name}: embedMean max |Δ| = ${worst.toExponential(2)}`);
      expect(worst).toBeLessThan(TOL_EMBED);
    });

    it('bf16 save: the reference on the bf16 file equals the engine loaded from it', async () => {
      const dir = path.join(tmpDir(), 'bf16');
      model.save(dir, { bf16: true });
      const refBf = loadReference(dir);
      // The bf16 weights really are rounded (the file is not float32 in disguise) ...
      const name = 'model.layers.0.self_attn.q_proj.weight';
      let rounded = 0;
      ref.tensors.get(name)!.data.forEach((v, i) => {
        const w = refBf.tensors.get(name)!.data[i];
        if (w !== v) rounded++;
        expect(Math.abs(w - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -8);
      });
      expect(rounded).toBeGreaterThan(0);
      // ... and engine and reference agree on the rounded weights.
      const loaded = await LlmModel.load(dir);
      const seqs = randomSeqs(rng, c.config.vocab_size, LENGTHS);
      const d = await logprobDiff(loaded, refBf, seqs);
      console.log(`${c.name}: bf16 tokenLogprobs max |Δ| = ${d.toExponential(2)}`);
      expect(d).toBeLessThan(TOL_LOGPROB);
    });

    it('negative control: a 1e-2 change to one layer-1 k_proj weight is detected', async () => {
      const seqs = randomSeqs(rng, c.config.vocab_size, LENGTHS);
      const bad = cloneReference(ref);
      const k = bad.tensors.get('model.layers.1.self_attn.k_proj.weight')!;
      k.data[3 * c.config.hidden_size + 5] += 1e-2;
      const d = await logprobDiff(model, bad, seqs);
      console.log(`${c.name}: negative control max |Δ| = ${d.toExponential(2)}`);
      expect(d).toBeGreaterThan(TOL_LOGPROB);
    });

    it('random norm weights (incl. q/k norms) and biases, written into the file: engine (load) matches the reference', async () => {
      // createRandom gives unit norms and zero biases; edit the saved file so that the norm
      // weight multiply and every bias the architecture has are exercised too.
      const dir = tmpDir();
      fs.copyFileSync(path.join(f32Dir, 'config.json'), path.join(dir, 'config.json'));
      const edited = cloneReference(ref);
      const prng = new TestRng(77 + c.seed);
      let nNorm = 0;
      let nBias = 0;
      for (const [name, t] of edited.tensors) {
        if (name.endsWith('norm.weight')) {
          nNorm++;
          for (let i = 0; i < t.data.length; i++) t.data[i] = 1 + 0.3 * prng.normal();
        } else if (name.endsWith('.bias')) {
          nBias++;
          for (let i = 0; i < t.data.length; i++) t.data[i] = 0.2 * prng.normal();
        }
      }
      expect(nNorm).toBe(2 * 2 + 1 + (c.config.model_type === 'qwen3' ? 2 * 2 : 0));
      expect(nBias).toBe(c.config.model_type === 'qwen2' ? 2 * 3 : c.config.attention_bias ? 2 * 4 : 0);
      writeSafetensors(path.join(dir, 'model.safetensors'), edited.tensors);
      const refEd = loadReference(dir);
      const loaded = await LlmModel.load(dir);
      const seqs = randomSeqs(rng, c.config.vocab_size, [...LENGTHS, 20]);
      const d = await logprobDiff(loaded, refEd, seqs);
      // The edit matters: the unedited reference is far from the edited engine.
      const dOld = await logprobDiff(loaded, ref, seqs);
      const emb = await loaded.embedMean(seqs);
      const H = c.config.hidden_size;
      let de = 0;
      seqs.forEach((sq, b) => {
        const want = referenceEmbedMean(refEd, sq);
        for (let i = 0; i < H; i++) de = Math.max(de, Math.abs(emb[b * H + i] - want[i]));
      });
      console.log(`${c.name}: edited norms/biases: tokenLogprobs max |Δ| = ${d.toExponential(2)}, embedMean ${de.toExponential(2)} (vs unedited reference ${dOld.toExponential(2)})`);
      expect(d).toBeLessThan(TOL_LOGPROB);
      expect(de).toBeLessThan(TOL_EMBED);
      expect(dOld).toBeGreaterThan(100 * TOL_LOGPROB);
    });

    it('reference LoRA: readPeftAdapter + W + scale·B·A equals the engine on a merged-weight file', async () => {
      // Checks the reference's PEFT reader and LoRA path against the engine without the engine's
      // LoRA code: the merged weights are computed here and written as a plain model.
      for (const useRslora of [false, true]) {
        const r = 3;
        const alpha = 5;
        const scale = useRslora ? alpha / Math.sqrt(r) : alpha / r;
        const lrng = new TestRng(500 + c.seed + (useRslora ? 1 : 0));
        const peft = new Map<string, { shape: number[]; data: Float64Array }>();
        const merged = cloneReference(ref);
        for (let l = 0; l < c.config.num_hidden_layers; l++) {
          for (const t of TARGETS) {
            const name = projName(l, t);
            const W = merged.tensors.get(name + '.weight')!;
            const [out, inn] = W.shape;
            const A = Float64Array.from({ length: r * inn }, () => Math.fround(0.3 * lrng.normal()));
            const B = Float64Array.from({ length: out * r }, () => Math.fround(0.3 * lrng.normal()));
            peft.set(`base_model.model.${name}.lora_A.weight`, { shape: [r, inn], data: A });
            peft.set(`base_model.model.${name}.lora_B.weight`, { shape: [out, r], data: B });
            for (let o = 0; o < out; o++) {
              for (let i = 0; i < inn; i++) {
                let acc = 0;
                for (let k = 0; k < r; k++) acc += B[o * r + k] * A[k * inn + i];
                W.data[o * inn + i] += scale * acc;
              }
            }
          }
        }
        const adir = tmpDir();
        fs.writeFileSync(
          path.join(adir, 'adapter_config.json'),
          JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: alpha, use_rslora: useRslora, target_modules: TARGETS }),
        );
        writeSafetensors(path.join(adir, 'adapter_model.safetensors'), peft);
        const lora = readPeftAdapter(adir);
        expect(lora.scale).toBeCloseTo(scale, 12);
        expect(lora.modules.size).toBe(TARGETS.length * c.config.num_hidden_layers);
        const mdir = tmpDir();
        fs.copyFileSync(path.join(f32Dir, 'config.json'), path.join(mdir, 'config.json'));
        writeSafetensors(path.join(mdir, 'model.safetensors'), merged.tensors);
        const loaded = await LlmModel.load(mdir);
        const seqs = randomSeqs(rng, c.config.vocab_size, LENGTHS);
        // The engine sees float32-rounded merged weights; 2e-4 still holds on these models.
        const d = await logprobDiff(loaded, ref, seqs, lora);
        const dBase = await logprobDiff(loaded, ref, seqs);
        console.log(`${c.name}: reference LoRA${useRslora ? ' (rslora)' : ''} vs engine on merged file max |Δ| = ${d.toExponential(2)} (LoRA effect ${dBase.toExponential(2)})`);
        expect(d).toBeLessThan(TOL_LOGPROB);
        expect(dBase).toBeGreaterThan(100 * TOL_LOGPROB);
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Engine LoRA (lib/llm/lora.ts: LoraAdapter saved in the PEFT layout) vs reference LoRA.
describe('engine LoRA adapter (PEFT file) vs reference LoRA', () => {
  for (const c of CASES) {
    it(`${c.name}: all seven targets, random A and B, alpha/r and rslora`, async () => {
      const model = LlmModel.createRandom(c.config, { seed: c.seed, initStd: 0.2 });
      const mdir = tmpDir();
      model.save(mdir);
      const ref = loadReference(mdir);
      const rng = new TestRng(900 + c.seed);
      for (const useRslora of [false, true]) {
        const r = 4;
        const alpha = 8;
        const adapter = LoraAdapter.create(model, { r, alpha, targetModules: TARGETS, useRslora }, 7);
        const params = Float32Array.from({ length: adapter.numParams }, () => 0.3 * rng.normal());
        await adapter.setParams(params);
        const adir = tmpDir();
        adapter.save(adir);
        const acfg = JSON.parse(fs.readFileSync(path.join(adir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
        expect(acfg.r).toBe(r);
        expect(acfg.lora_alpha).toBe(alpha);
        expect(acfg.use_rslora === true).toBe(useRslora);
        const lora = readPeftAdapter(adir);
        expect(lora.scale).toBeCloseTo(useRslora ? alpha / Math.sqrt(r) : alpha / r, 12);
        expect(lora.modules.size).toBe(TARGETS.length * c.config.num_hidden_layers);
        let count = 0;
        let nonzeroB = 0;
        for (const m of lora.modules.values()) {
          count += m.A.length + m.B.length;
          for (const b of m.B) if (b !== 0) nonzeroB++;
        }
        expect(count).toBe(adapter.numParams); // setParams covered every A and B entry
        expect(nonzeroB).toBeGreaterThan(0);
        const seqs = randomSeqs(rng, c.config.vocab_size, [...LENGTHS, 33]);
        const d = await logprobDiff(model, ref, seqs, lora, { lora: adapter });
        const effect = await logprobDiff(model, ref, seqs, undefined, { lora: adapter });
        // score with the adapter against reference log-probs of prompt ⊕ candidate.
        const prompts = randomSeqs(rng, c.config.vocab_size, [6, 1]);
        const cands = [randomSeqs(rng, c.config.vocab_size, [1, 4]), randomSeqs(rng, c.config.vocab_size, [3])];
        const sums = await model.score(prompts, cands, { lora: adapter });
        let ds = 0;
        prompts.forEach((p, b) => {
          cands[b].forEach((cand, k) => {
            const lp = referenceLogprobs(ref, [...p, ...cand], lora);
            let want = 0;
            for (let t = p.length; t < lp.length; t++) want += lp[t];
            ds = Math.max(ds, Math.abs(sums[b][k] - want));
          });
        });
        console.log(`${c.name}: engine LoRA${useRslora ? ' (rslora)' : ''} max |Δ| tokenLogprobs ${d.toExponential(2)}, score ${ds.toExponential(2)} (LoRA effect ${effect.toExponential(2)})`);
        expect(d).toBeLessThan(TOL_LOGPROB);
        expect(ds).toBeLessThan(TOL_LOGPROB);
        expect(effect).toBeGreaterThan(100 * TOL_LOGPROB);
      }
    });
  }
});
