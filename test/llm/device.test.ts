/**
 * Where the transformer engine runs (issue #20): LlmModel's `device` option, backendInfo's
 * llmDevice, and `memq run --device`.
 *
 * The selection tests run on every machine and assert what that machine should do (no usable
 * GPU: 'cpu' and 'auto' run on the CPU, 'auto' says why, 'cuda' is an Error naming the reason).
 * The GPU comparisons run only where LlmModel's 'auto' picks CUDA (a device exists and the LLM
 * self-test passed); elsewhere they are skipped with a message saying why.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { LlmModel, type LlmConfig } from '../../lib/llm/model';
import { LoraAdapter, LoraTrainer } from '../../lib/llm/lora';
import { backendInfo } from '../../lib/retrieval';
import { buildConfigs } from '../../lib/cli/commands/run';
import { thrown } from '../helpers/errors';

const tiny: LlmConfig = {
  model_type: 'qwen2', vocab_size: 40, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: false,
};

const info = backendInfo();
const gpu = info.llmDevice === 'cuda';
const whyNot = info.llmReason.replace(/^auto: CUDA not used: /, '');
if (gpu) console.log(`llm device tests: ${info.llmReason}`);
else console.log(`llm device tests: the GPU comparisons are SKIPPED on this machine: no usable CUDA device (${whyNot})`);

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

// What the reason names on a machine without a usable device.
const noDeviceReason = info.cudaCompiled
  ? /no CUDA driver|no CUDA device|compute capability|CUDA driver .* too old|no kernel image|self-test|cannot create a CUDA context/
  : /CUDA support not compiled in/;

describe('LlmModel device option (every machine)', () => {
  it("defaults to the CPU; 'cpu' is the CPU", async () => {
    const m = LlmModel.createRandom(tiny, { seed: 2 });
    expect(m.device).toEqual({ device: 'cpu', precision: null, reason: 'cpu: default', description: 'cpu (float32)' });
    const c = LlmModel.createRandom(tiny, { seed: 2, device: 'cpu' });
    expect(c.device.device).toBe('cpu');
    expect(c.device.reason).toBe('cpu: requested');
    // the same weights on the same engine: identical outputs
    const a = await m.score([[1, 2, 3]], [[[4], [5, 6]]]);
    const b = await c.score([[1, 2, 3]], [[[4], [5, 6]]]);
    expect(Array.from(b[0])).toEqual(Array.from(a[0]));
  });

  it('backendInfo reports where LlmModel auto runs and why', () => {
    expect(['cpu', 'cuda']).toContain(info.llmDevice);
    expect(typeof info.llmReason).toBe('string');
    if (!gpu) {
      expect(info.llmReason).toMatch(/^auto: CUDA not used: /);
      expect(whyNot).toMatch(noDeviceReason);
    } else {
      expect(info.llmReason).toMatch(/passed the LLM self-test/);
    }
  });

  it.skipIf(gpu)("'auto' without a usable device runs on the CPU and says why", async () => {
    const m = LlmModel.createRandom(tiny, { seed: 4, device: 'auto' });
    expect(m.device.device).toBe('cpu');
    expect(m.device.precision).toBeNull();
    expect(m.device.reason).toBe(info.llmReason);
    const ref = LlmModel.createRandom(tiny, { seed: 4 });
    const seqs = [[1, 2, 3, 4], [5, 6]];
    expect((await m.tokenLogprobs(seqs)).map((x) => Array.from(x))).toEqual((await ref.tokenLogprobs(seqs)).map((x) => Array.from(x)));
    // clones and merged copies stay where the model is
    expect((await m.clone()).device.device).toBe('cpu');
    const lora = LoraAdapter.create(m, { r: 2 }, 1);
    expect((await m.mergeLora(lora)).device.device).toBe('cpu');
  });

  it.skipIf(gpu)("'cuda' without a usable device is an Error naming the reason (createRandom and load)", async () => {
    const e = thrown(() => LlmModel.createRandom(tiny, { device: 'cuda' }));
    expect(e).toBeInstanceOf(Error);
    expect(e).not.toBeInstanceOf(TypeError);
    expect(e.message).toMatch(/^LlmModel\.createRandom: device 'cuda' requested but unusable: /);
    expect(e.message).toMatch(noDeviceReason);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-llm-dev-'));
    try {
      LlmModel.createRandom(tiny, { seed: 1 }).save(dir);
      const r = await rejection(LlmModel.load(dir, { device: 'cuda', precision: 'fp32' }));
      expect(r).toBeInstanceOf(Error);
      expect(r.message).toMatch(/^LlmModel\.load: device 'cuda' requested but unusable: /);
      expect(r.message).toMatch(noDeviceReason);
      const auto = await LlmModel.load(dir, { device: 'auto' });
      expect(auto.device.device).toBe('cpu');
      expect(auto.device.reason).toMatch(/^auto: CUDA not used: /);
      expect((await LlmModel.load(dir)).device.reason).toBe('cpu: default');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses unknown devices and precisions with a TypeError', async () => {
    expect(() => LlmModel.createRandom(tiny, { device: 'gpu' as never })).toThrow(TypeError);
    expect(() => LlmModel.createRandom(tiny, { device: 'gpu' as never })).toThrow(/opts\.device must be 'cpu', 'cuda' or 'auto', got "gpu"/);
    expect(() => LlmModel.createRandom(tiny, { precision: 'fp16' as never })).toThrow(/opts\.precision must be 'bf16' or 'fp32', got "fp16"/);
    await expect(LlmModel.load('/nonexistent', { device: 7 as never })).rejects.toThrow(TypeError);
    await expect(LlmModel.load('/nonexistent', 'cuda' as never)).rejects.toThrow(/opts must be an object/);
  });

  it('memq run --device reaches the model prior; bad uses are clear errors', () => {
    const base = { agent: [] as string[], seeds: 1 };
    const { configs } = buildConfigs({ ...base, prior: 'model:/some/dir', device: 'auto' });
    expect(configs[0].prior).toMatchObject({ kind: 'model', device: 'auto' });
    expect(() => buildConfigs({ ...base, prior: 'model:/some/dir', device: 'gpu' })).toThrow(
      "memq run: --device must be 'cpu', 'cuda' or 'auto', got 'gpu'",
    );
    expect(() => buildConfigs({ ...base, prior: 'uniform', device: 'cuda' })).toThrow('memq run: --device applies to a model prior (--prior model:DIR)');
    // the main job's default prior is the cached domain prior, a model prior: --device applies
    expect(buildConfigs({ ...base, device: 'auto' }).configs[0].prior).toMatchObject({ kind: 'model', device: 'auto' });
    // without --device the prior has no device (LlmModel.load's default: the CPU)
    expect(buildConfigs({ ...base, prior: 'model:/some/dir' }).configs[0].prior).not.toHaveProperty('device');
  });
});

// ---- on a GPU ----------------------------------------------------------------------------------------

describe.skipIf(!gpu)(`LlmModel on CUDA against the CPU engine${gpu ? '' : ` (SKIPPED: no usable CUDA device: ${whyNot})`}`, () => {
  for (const precision of ['fp32', 'bf16'] as const) {
    // fp32 = 3xTF32 products (float32-level); bf16 rounds every product operand
    const tol = precision === 'fp32' ? 5e-4 : 6e-2;
    it(`scores, log-probs and embeddings (${precision})`, async () => {
      const cpu = LlmModel.createRandom(tiny, { seed: 8, initStd: 0.15 });
      const dev = LlmModel.createRandom(tiny, { seed: 8, initStd: 0.15, device: 'cuda', precision });
      expect(dev.device).toMatchObject({ device: 'cuda', precision });
      const prompts = [[1, 2, 3, 4], [7, 8]];
      const cands = [[[5, 6], [9], [10, 11, 12]], [[3], [4, 5]]];
      const a = await cpu.score(prompts, cands);
      const b = await dev.score(prompts, cands);
      a.forEach((row, i) => row.forEach((x, k) => expect(Math.abs(b[i][k] - x)).toBeLessThan(5 * tol)));
      const seqs = [[1, 2, 3, 4, 5, 6], [7, 8, 9]];
      const la = await cpu.tokenLogprobs(seqs);
      const lb = await dev.tokenLogprobs(seqs);
      la.forEach((row, i) => row.forEach((x, t) => expect(Math.abs(lb[i][t] - x)).toBeLessThan(tol)));
      const ea = await cpu.embedMean(seqs);
      const eb = await dev.embedMean(seqs);
      ea.forEach((x, i) => expect(Math.abs(eb[i] - x)).toBeLessThan(precision === 'fp32' ? 1e-3 : 1e-1));
    });

    it(`a LoRA training step (${precision})`, async () => {
      const cpu = LlmModel.createRandom(tiny, { seed: 9, initStd: 0.15 });
      const dev = LlmModel.createRandom(tiny, { seed: 9, initStd: 0.15, device: 'cuda', precision });
      const opts = { r: 4, targetModules: ['q_proj', 'v_proj', 'down_proj'] };
      const la = LoraAdapter.create(cpu, opts, 3);
      const lb = LoraAdapter.create(dev, opts, 3);
      const seqs = [[1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11]];
      const weights = seqs.map((s) => s.map((_, t) => (t < 2 ? 0 : 1)));
      const train = { lr: 1e-2, eps: 1 };  // eps = 1: the update is ~ lr g, as close as the gradients are
      const ta = new LoraTrainer(cpu, la, train);
      const tb = new LoraTrainer(dev, lb, train);
      const l1 = await ta.accumulate(seqs, weights);
      const l2 = await tb.accumulate(seqs, weights);
      expect(Math.abs(l2 - l1)).toBeLessThan(tol);
      const s1 = await ta.step();
      const s2 = await tb.step();
      expect(s2.step).toBe(1);
      expect(Math.abs(s2.gradNorm - s1.gradNorm)).toBeLessThan((precision === 'fp32' ? 2e-3 : 8e-2) * s1.gradNorm);
      const p1 = la.getParams();
      const p2 = lb.getParams();
      const p0 = LoraAdapter.create(cpu, opts, 3).getParams();
      let num = 0;
      let den = 0;
      for (let i = 0; i < p1.length; i++) {
        const u1 = p1[i] - p0[i];
        const u2 = p2[i] - p0[i];
        num += (u2 - u1) ** 2;
        den += u1 ** 2;
      }
      expect(Math.sqrt(num / den)).toBeLessThan(precision === 'fp32' ? 4e-3 : 0.16);
    });
  }
});
