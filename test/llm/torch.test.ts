/**
 * The engine against a plain PyTorch reference (scripts/torch_reference.py, float64 autograd,
 * written from the HF definitions; its dumps are committed under test/fixtures/torch/, so this
 * test needs no torch), as llm.c compares against its PyTorch dump. Three tiny random models
 * (qwen2 GQA untied with q/k/v biases; llama MHA tied with attention_bias, θ 5e5, rsLoRA; qwen3
 * with q/k norms and head_dim ≠ hidden/heads), each with a PEFT adapter (non-zero B) on a subset
 * of the seven projections, and one ragged batch with two weightings: positive weights normalised
 * by their sum, and signed weights summed (prompt tokens weight 0 in both).
 *
 * Checked (engine float32 vs torch float64, tolerances stated):
 * - log p(x_t | x_<t) of every token, base and with the adapter: |Δ| ≤ 1e-4;
 * - the full log-softmax of the dumped logits against the float64 TypeScript reference: ≤ 1e-5
 *   (two float64 implementations on the same weights; the dump is rounded to float32 once);
 * - the MATH §11 weighted cross-entropy: |Δ| ≤ 1e-5 · max(1, |L|);
 * - dL/dA, dL/dB of every LoRA matrix (read from AdamW's first moment after one step with β1 = 0,
 *   no clipping: m = g exactly): |Δ| ≤ 1e-4 · max|g| + 1e-7, per matrix.
 * Negative controls: the gradient of the other weighting and a perturbed weight fail these bounds.
 */
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { LlmModel } from '../../lib/llm/model';
import { LoraAdapter, LoraTrainer } from '../../lib/llm/lora';
import { loadReference, logSoftmax, readSafetensors, referenceLogits } from '../helpers/llm-reference';

const ROOT = path.join(__dirname, '..', 'fixtures', 'torch');
const CASES = ['qwen2', 'llama', 'qwen3'];
const TOL_LOGP = 1e-4;
const TOL_REF = 1e-5;

interface Batch {
  name: string;
  seqs: number[][];
  weights: number[][];
  norm: 'weightSum' | 'sum';
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function logSoftmaxRows(flat: Float64Array, V: number): Float64Array[] {
  const rows: Float64Array[] = [];
  for (let t = 0; t < flat.length / V; t++) rows.push(logSoftmax(flat.subarray(t * V, (t + 1) * V)));
  return rows;
}

for (const name of CASES) {
  describe(`PyTorch reference: ${name}`, () => {
    const dir = path.join(ROOT, name);
    const expected = readSafetensors(path.join(dir, 'expected.safetensors'));
    const meta = JSON.parse(fs.readFileSync(path.join(dir, 'expected.json'), 'utf8')) as { scalars: Record<string, number>; lora_order: string[] };
    const batches = JSON.parse(fs.readFileSync(path.join(dir, 'batches.json'), 'utf8')) as Batch[];
    const V = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).vocab_size as number;
    const seqs = batches[0].seqs;

    it('token log-probs (base and with the adapter) and the dumped logits', async () => {
      const model = await LlmModel.load(dir);
      const lora = await LoraAdapter.load(path.join(dir, 'adapter'), model);
      const ref = loadReference(dir);
      let worst = 0, worstRef = 0;
      for (const [key, opts] of [['logits', {}], ['logits_lora', { lora }]] as const) {
        const lps = await model.tokenLogprobs(seqs, opts);
        seqs.forEach((s, i) => {
          const rows = logSoftmaxRows(expected.get(`${key}.${i}`)!.data, V);
          for (let t = 1; t < s.length; t++) worst = Math.max(worst, Math.abs(lps[i][t] - rows[t - 1][s[t]]));
          if (key === 'logits') {
            const want = referenceLogits(ref, s).map(logSoftmax);
            rows.forEach((r, t) => r.forEach((v, k) => (worstRef = Math.max(worstRef, Math.abs(v - want[t][k])))));
          }
        });
      }
      console.log(`torch ${name}: max |Δ log p| engine vs torch ${worst.toExponential(2)}; torch logits vs TS float64 reference ${worstRef.toExponential(2)}`);
      expect(worst).toBeLessThan(TOL_LOGP);
      expect(worstRef).toBeLessThan(TOL_REF);
    });

    it('weighted cross-entropy and LoRA A/B gradients (positive/weightSum and signed/sum)', async () => {
      const model = await LlmModel.load(dir);
      const base = await LoraAdapter.load(path.join(dir, 'adapter'), model);
      // the flat parameter order is (layer, q k v o gate up down, A then B): check it against the file
      const fileParams = readSafetensors(path.join(dir, 'adapter', 'adapter_model.safetensors'));
      const order = meta.lora_order.map((n) => fileParams.get(n)!.data);
      const flat = base.getParams();
      expect(flat.length).toBe(order.reduce((a, x) => a + x.length, 0));
      let off = 0;
      for (const arr of order) {
        arr.forEach((v, j) => expect(flat[off + j]).toBe(Math.fround(v)));
        off += arr.length;
      }
      const grads: Record<string, Float32Array> = {};
      for (const b of batches) {
        const lora = base.clone();
        const trainer = new LoraTrainer(model, lora, { lr: 1e-3, beta1: 0, clipNorm: 0, weightDecay: 0, lossNorm: b.norm });
        const loss = await trainer.accumulate(b.seqs, b.weights);
        const want = meta.scalars[`loss.${b.name}`];
        console.log(`torch ${name} ${b.name}: loss engine ${loss} torch ${want} |Δ| ${Math.abs(loss - want).toExponential(2)}`);
        expect(Math.abs(loss - want)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want)));
        await trainer.step();
        grads[b.name] = (await trainer.getState()).m;
      }
      for (const b of batches) {
        const g = grads[b.name];
        let o = 0, worstRel = 0;
        for (const n of meta.lora_order) {
          const want = expected.get(`grad.${b.name}.${n}`)!.data;
          const got = g.subarray(o, o + want.length);
          o += want.length;
          const scale = maxAbs(want);
          expect(scale, n).toBeGreaterThan(0);
          let d = 0;
          for (let j = 0; j < want.length; j++) d = Math.max(d, Math.abs(got[j] - want[j]));
          worstRel = Math.max(worstRel, d / scale);
          expect(d, `${b.name} ${n}`).toBeLessThanOrEqual(1e-4 * scale + 1e-7);
        }
        console.log(`torch ${name} ${b.name}: max over matrices of max|Δg| / max|g| = ${worstRel.toExponential(2)}`);
      }
      // negative control: the other weighting's gradient is far outside the bound
      const other = expected.get(`grad.signed.${meta.lora_order[0]}`)!.data;
      const mine = grads.positive.subarray(0, other.length);
      let dn = 0;
      for (let j = 0; j < other.length; j++) dn = Math.max(dn, Math.abs(mine[j] - other[j]));
      expect(dn).toBeGreaterThan(1e-2 * maxAbs(other));
    });
  });
}
