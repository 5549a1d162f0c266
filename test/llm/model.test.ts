import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { LlmModel, type LlmConfig } from '../../lib/llm/model';
import { main } from '../../lib/cli/main';

const tiny: LlmConfig = {
  model_type: 'qwen2', vocab_size: 40, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: false,
};

function logsumexp(xs: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < xs.length; i++) m = Math.max(m, xs[i]);
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += Math.exp(xs[i] - m);
  return m + Math.log(s);
}

// Tolerances: float32 engine, tiny model: 1e-4 absolute on log-probabilities.
describe('LlmModel (transformer engine from TypeScript)', () => {
  it('single-token candidates over the whole vocabulary form a distribution', async () => {
    const m = LlmModel.createRandom(tiny, { seed: 3, initStd: 0.2 });
    const all = Array.from({ length: tiny.vocab_size }, (_, t) => [t]);
    const [s] = await m.score([[1, 2, 3]], [all]);
    expect(s.length).toBe(tiny.vocab_size);
    for (const x of s) expect(x).toBeLessThan(0);
    expect(Math.abs(logsumexp(s))).toBeLessThan(1e-4);
  });

  it('score equals the sum of token log-probs of prompt ⊕ candidate (prefix sharing is exact)', async () => {
    for (const model_type of ['qwen2', 'llama', 'qwen3'] as const) {
      const m = LlmModel.createRandom({ ...tiny, model_type, tie_word_embeddings: model_type === 'llama' }, { seed: 5, initStd: 0.2 });
      const prompts = [[1, 2, 3, 4], [7, 8]];
      const cands = [[[5, 6], [9], [10, 11, 12]], [[3], [4, 5]]];
      const scores = await m.score(prompts, cands);
      const normed = await m.score(prompts, cands, { lengthNormalize: true });
      for (let b = 0; b < prompts.length; b++) {
        const full = cands[b].map((c) => [...prompts[b], ...c]);
        const lp = await m.tokenLogprobs(full);
        cands[b].forEach((c, k) => {
          let want = 0;
          for (let t = prompts[b].length; t < full[k].length; t++) want += lp[k][t];
          expect(Math.abs(scores[b][k] - want), `${model_type} prompt ${b} cand ${k}`).toBeLessThan(1e-4);
          expect(Math.abs(normed[b][k] - want / c.length)).toBeLessThan(1e-4);
        });
      }
    }
  });

  it('save / load round trip (float32 exact, bf16 close) and embeddings', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-llm-'));
    const m = LlmModel.createRandom(tiny, { seed: 9, initStd: 0.2 });
    m.save(path.join(dir, 'f32'));
    m.save(path.join(dir, 'bf16'), { bf16: true });
    const a = await m.score([[1, 2]], [[[3], [4, 5]]]);
    const b = await (await LlmModel.load(path.join(dir, 'f32'))).score([[1, 2]], [[[3], [4, 5]]]);
    expect(Array.from(b[0])).toEqual(Array.from(a[0]));
    const c = await (await LlmModel.load(path.join(dir, 'bf16'))).score([[1, 2]], [[[3], [4, 5]]]);
    for (let i = 0; i < 2; i++) expect(Math.abs(c[0][i] - a[0][i])).toBeLessThan(0.05);
    const e = await m.embedMean([[1, 2, 3], [4]]);
    expect(e.length).toBe(2 * tiny.hidden_size);
    for (const x of e) expect(Number.isFinite(x)).toBe(true);
    expect(m.numParams).toBeGreaterThan(0);
    expect(m.config.hidden_size).toBe(16);
  });

  it('bad input: clear errors naming the argument', async () => {
    const m = LlmModel.createRandom(tiny, { seed: 1 });
    await expect(m.score([[1, 2]], [[[99]]])).rejects.toThrow(RangeError);
    await expect(m.score([[]], [[[1]]])).rejects.toThrow(/prompts\[0\] must be a non-empty/);
    await expect(m.score([[1]], [])).rejects.toThrow(/one array of candidates per prompt/);
    await expect(m.tokenLogprobs([[1, -2]])).rejects.toThrow(/seqs\[0\]\[1\] must be a non-negative integer/);
    await expect(LlmModel.load(path.join(os.tmpdir(), 'no-such-model-dir'))).rejects.toThrow(/config\.json/);
    expect(() => LlmModel.createRandom({ ...tiny, num_key_value_heads: 3 })).toThrow();
  });

  it('memq model init writes a loadable HF-layout model', async () => {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'memq-init-')), 'm');
    let out = '', err = '';
    const code = await main(['model', 'init', '--arch', 'llama', '--layers', '2', '--hidden', '32', '--heads', '4', '--kv-heads', '2', '--intermediate', '48', '--vocab', '64', '--out', dir, '--json'], { stdout: (t) => (out += t), stderr: (t) => (err += t), isTTY: false });
    expect(code, err).toBe(0);
    expect(fs.existsSync(path.join(dir, 'config.json'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'model.safetensors'))).toBe(true);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(cfg.model_type).toBe('llama');
    expect(cfg.num_key_value_heads).toBe(2);
    const m = await LlmModel.load(dir);
    expect(m.numParams).toBe(JSON.parse(out).params);
    const bad = await main(['model', 'init', '--heads', '3', '--hidden', '32', '--out', dir + '2'], { stdout: () => undefined, stderr: (t) => (err += t), isTTY: false });
    expect(bad).toBe(2);
    expect(err).toMatch(/multiple of --heads/);
  });
});
