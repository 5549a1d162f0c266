import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { LlmModel, type LlmConfig } from '../../lib/llm/model';
import { LoraAdapter, LoraTrainer, ModelTrainer, type TrainOptions } from '../../lib/llm/lora';
import { loadNative } from '../../lib/native';

const cfg: LlmConfig = {
  model_type: 'qwen2', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: false,
};
const ALL = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

// Deterministic test data (mulberry32).
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    normal: () => Math.sqrt(-2 * Math.log(next() + 1e-12)) * Math.cos(2 * Math.PI * next()),
  };
}

function randomSeqs(seed: number, n: number, minLen: number, maxLen: number, vocab = cfg.vocab_size): number[][] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Array.from({ length: minLen + r.int(maxLen - minLen + 1) }, () => r.int(vocab)));
}

/** Prompt/action weights: the first `prompt` tokens weigh 0, the rest 1. */
function actionWeights(seqs: number[][], prompt: number): number[][] {
  return seqs.map((s) => s.map((_, t) => (t < prompt ? 0 : 1)));
}

function randomParams(seed: number, n: number, std: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => std * r.normal());
}

function maxAbsDiff(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  let m = 0;
  a.forEach((x, i) => {
    expect(x.length).toBe(b[i].length);
    for (let j = 0; j < x.length; j++) m = Math.max(m, Math.abs(x[j] - b[i][j]));
  });
  return m;
}

const flat = (xs: Float32Array[]) => xs.flatMap((x) => Array.from(x));
const bits = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);

async function trainRun(model: LlmModel, seed: number, steps: number, opts: TrainOptions) {
  const adapter = LoraAdapter.create(model, { r: 4, alpha: 8, targetModules: ALL }, seed);
  const trainer = new LoraTrainer(model, adapter, opts);
  const seqs = randomSeqs(100, 6, 10, 14);
  const weights = actionWeights(seqs, 4);
  const losses: number[] = [];
  for (let s = 0; s < steps; s++) {
    losses.push(await trainer.accumulate(seqs, weights));
    const st = await trainer.step();
    expect(st.step).toBe(s + 1);
    expect(st.microBatches).toBe(1);
    expect(st.loss).toBeCloseTo(losses[s], 10);
  }
  return { adapter, trainer, losses, seqs, weights };
}

// Tolerances: float32 engine, tiny model. Merged vs unmerged log-probs 2e-5 absolute; loss vs
// independent recomputation 1e-4 relative; everything seeded is compared bit for bit.
describe('LoRA adapters and trainers from TypeScript', () => {
  it('B = 0 gives the base outputs exactly; nonzero params change them; mergeLora == unmerged, base unchanged', async () => {
    const model = LlmModel.createRandom(cfg, { seed: 11, initStd: 0.1 });
    const adapter = LoraAdapter.create(model, { r: 4, alpha: 8, targetModules: ALL }, 3);
    expect(adapter.config).toEqual({ r: 4, alpha: 8, targetModules: ALL, useRslora: false, scale: 2 });
    // r * (in + out) per module and layer: q (32+32), k (32+16), v (32+16), o (32+32), gate/up (32+64), down (64+32)
    expect(adapter.numParams).toBe(2 * 4 * (64 + 48 + 48 + 64 + 96 + 96 + 96));
    const seqs = randomSeqs(1, 4, 3, 9);
    const prompts = [[1, 2, 3], [4, 5]];
    const cands = [[[6, 7], [8]], [[9], [10, 11, 12]]];

    const base = await model.tokenLogprobs(seqs);
    const baseScore = await model.score(prompts, cands);
    const baseEmb = await model.embedMean(seqs);
    expect(flat(await model.tokenLogprobs(seqs, { lora: adapter }))).toEqual(flat(base));
    expect(flat(await model.score(prompts, cands, { lora: adapter }))).toEqual(flat(baseScore));
    expect(Array.from(await model.embedMean(seqs, { lora: adapter }))).toEqual(Array.from(baseEmb));
    expect(flat(await model.tokenLogprobs(seqs, { lora: null }))).toEqual(flat(base));

    await adapter.setParams(randomParams(7, adapter.numParams, 0.2));
    const withLora = await model.tokenLogprobs(seqs, { lora: adapter });
    expect(maxAbsDiff(withLora, base)).toBeGreaterThan(1e-3);
    const loraScore = await model.score(prompts, cands, { lora: adapter });
    expect(maxAbsDiff(loraScore, baseScore)).toBeGreaterThan(1e-3);
    // scoring with the adapter == its token log-probs over prompt ⊕ candidate
    for (let b = 0; b < prompts.length; b++) {
      const lp = await model.tokenLogprobs(cands[b].map((c) => [...prompts[b], ...c]), { lora: adapter });
      cands[b].forEach((c, k) => {
        let want = 0;
        for (let t = prompts[b].length; t < prompts[b].length + c.length; t++) want += lp[k][t];
        expect(Math.abs(loraScore[b][k] - want)).toBeLessThan(1e-4);
      });
    }

    const merged = await model.mergeLora(adapter);
    expect(maxAbsDiff(await merged.tokenLogprobs(seqs), withLora)).toBeLessThan(2e-5);
    expect(flat(await model.tokenLogprobs(seqs))).toEqual(flat(base)); // base unchanged
    const copy = await model.clone();
    expect(flat(await copy.tokenLogprobs(seqs))).toEqual(flat(base));
  });

  it('LoRA training: loss falls > 50 % on a fixed batch in 30 steps; identical runs are bit-identical', async () => {
    const model = LlmModel.createRandom(cfg, { seed: 21, initStd: 0.1 });
    const before = await model.tokenLogprobs(randomSeqs(5, 3, 4, 8));
    const opts: TrainOptions = { lr: 1e-2, clipNorm: 1 };
    const a = await trainRun(model, 9, 30, opts);
    const b = await trainRun(model, 9, 30, opts);
    expect(a.losses[0]).toBeGreaterThan(2);
    expect(a.losses[29]).toBeLessThan(0.5 * a.losses[0]);
    expect(a.trainer.steps).toBe(30);
    expect(bits(b.adapter.getParams()).equals(bits(a.adapter.getParams()))).toBe(true);
    expect(b.losses).toEqual(a.losses);
    // another seed: different A init, different params
    const c = await trainRun(model, 10, 2, opts);
    expect(bits(c.adapter.getParams()).equals(bits(a.adapter.getParams()))).toBe(false);
    // the base model is frozen
    expect(flat(await model.tokenLogprobs(randomSeqs(5, 3, 4, 8)))).toEqual(flat(before));
  });

  it('zero-weight tokens contribute nothing (an all-zero-weight extra sequence, whatever its tokens)', async () => {
    const model = LlmModel.createRandom(cfg, { seed: 31, initStd: 0.1 });
    const seqs = randomSeqs(40, 4, 6, 10);
    const weights = actionWeights(seqs, 3);
    const run = async (extra: number[][]) => {
      const adapter = LoraAdapter.create(model, { r: 4, targetModules: ['q', 'v', 'down'] }, 2);
      await adapter.setParams(randomParams(3, adapter.numParams, 0.1)); // B != 0: gradients reach A too
      const trainer = new LoraTrainer(model, adapter, { lr: 1e-2, lossNorm: 'weightSum' });
      const loss = await trainer.accumulate([...seqs, ...extra], [...weights, ...extra.map((s) => s.map(() => 0))]);
      const st = await trainer.step();
      return { loss, gradNorm: st.gradNorm, params: adapter.getParams() };
    };
    const x = await run([]);
    const y = await run([[5, 6, 7, 8, 9, 10, 11]]);
    const z = await run([[60, 1, 33, 2, 47, 3, 12]]);
    expect(x.gradNorm).toBeGreaterThan(0);
    for (const o of [y, z]) {
      expect(o.loss).toBe(x.loss);
      expect(o.gradNorm).toBe(x.gradNorm);
      expect(bits(o.params).equals(bits(x.params))).toBe(true);
    }
  });

  it("accumulate's loss equals −Σ w·log p / Σ w (or −Σ w·log p with lossNorm 'sum') from tokenLogprobs with the adapter", async () => {
    const model = LlmModel.createRandom(cfg, { seed: 41, initStd: 0.1 });
    const adapter = LoraAdapter.create(model, { r: 2, alpha: 4, targetModules: ['q_proj', 'up_proj', 'o_proj'] }, 4);
    await adapter.setParams(randomParams(5, adapter.numParams, 0.2));
    const r = rng(6);
    const seqs = randomSeqs(7, 5, 2, 11);
    const weights = seqs.map((s) => s.map((_, t) => (t === 0 || r.next() < 0.3 ? 0 : 2 * r.next())));
    const lp = await model.tokenLogprobs(seqs, { lora: adapter });
    let num = 0;
    let den = 0;
    seqs.forEach((s, i) => s.forEach((_, t) => {
      const w = Math.fround(weights[i][t]);
      num -= w * lp[i][t];
      den += w;
    }));
    expect(den).toBeGreaterThan(0);
    const ws = await new LoraTrainer(model, adapter, { lossNorm: 'weightSum' }).accumulate(seqs, weights);
    const sum = await new LoraTrainer(model, adapter, { lossNorm: 'sum' }).accumulate(seqs, weights);
    expect(Math.abs(ws - num / den) / (num / den)).toBeLessThan(1e-4);
    expect(Math.abs(sum - num) / num).toBeLessThan(1e-4);
  });

  it('getState / setState: a run checkpointed after 3 steps resumes bit-exactly in a new adapter and trainer', async () => {
    const model = LlmModel.createRandom(cfg, { seed: 51, initStd: 0.1 });
    const opts: TrainOptions = { lr: 5e-3, weightDecay: 0.01, clipNorm: 0.5, beta2: 0.99 };
    const batches = [0, 1, 2, 3, 4].map((k) => {
      const seqs = randomSeqs(60 + k, 3, 5, 9);
      return { seqs, weights: actionWeights(seqs, 2) };
    });
    const adapter = LoraAdapter.create(model, { r: 3, alpha: 6, targetModules: ALL }, 8);
    const trainer = new LoraTrainer(model, adapter, opts);
    // issued without awaiting: the trainer runs them in call order
    const pending: Promise<unknown>[] = [];
    for (const b of batches.slice(0, 3)) pending.push(trainer.accumulate(b.seqs, b.weights), trainer.step());
    const statePromise = trainer.getState();
    await Promise.all(pending);
    const p3 = adapter.getParams();
    const s3 = await statePromise;
    expect(s3.t).toBe(3);
    expect(s3.m.length).toBe(adapter.numParams);
    for (const b of batches.slice(3)) {
      await trainer.accumulate(b.seqs, b.weights);
      await trainer.step();
    }
    const p5 = adapter.getParams();

    const resume = async (restoreState: boolean) => {
      const a2 = LoraAdapter.create(model, { r: 3, alpha: 6, targetModules: ALL }, 99);
      await a2.setParams(p3);
      const t2 = new LoraTrainer(model, a2, opts);
      if (restoreState) await t2.setState(s3);
      expect(t2.steps).toBe(restoreState ? 3 : 0);
      for (const b of batches.slice(3)) {
        await t2.accumulate(b.seqs, b.weights);
        await t2.step();
      }
      expect(t2.steps).toBe(restoreState ? 5 : 2);
      return a2.getParams();
    };
    expect(bits(await resume(true)).equals(bits(p5))).toBe(true);
    expect(bits(await resume(false)).equals(bits(p5))).toBe(false); // the state matters
    // the snapshot is a copy: later steps did not change it
    const s5 = await trainer.getState();
    expect(bits(s5.m).equals(bits(s3.m))).toBe(false);
  });

  it('PEFT save / load round trip: adapter_config.json and the safetensors header, keys, shapes and data', async () => {
    const model = LlmModel.createRandom(cfg, { seed: 61, initStd: 0.1 });
    const targets = ['q_proj', 'v_proj', 'gate_proj', 'down_proj'];
    const r = 4;
    const adapter = LoraAdapter.create(model, { r, alpha: 16, targetModules: ['down', 'q', 'gate_proj', 'v'] }, 12);
    await adapter.setParams(randomParams(13, adapter.numParams, 0.1));
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'memq-lora-')), 'adapter');
    adapter.save(dir);

    const conf = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
    expect(conf.peft_type).toBe('LORA');
    expect(conf.task_type).toBe('CAUSAL_LM');
    expect(conf.r).toBe(r);
    expect(conf.lora_alpha).toBe(16);
    expect([...conf.target_modules].sort()).toEqual([...targets].sort());

    const buf = fs.readFileSync(path.join(dir, 'adapter_model.safetensors'));
    const hlen = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + hlen).toString('utf8'));
    const data = buf.subarray(8 + hlen);
    const D = cfg.hidden_size / cfg.num_attention_heads;
    const dims: Record<string, [number, number]> = {
      q_proj: [cfg.hidden_size, cfg.num_attention_heads * D], v_proj: [cfg.hidden_size, cfg.num_key_value_heads * D],
      gate_proj: [cfg.hidden_size, cfg.intermediate_size], down_proj: [cfg.intermediate_size, cfg.hidden_size],
    };
    const tensor = (key: string): Float32Array => {
      const [b, e] = header[key].data_offsets;
      const out = new Float32Array((e - b) / 4);
      for (let i = 0; i < out.length; i++) out[i] = data.readFloatLE(b + 4 * i);
      return out;
    };
    const keys = Object.keys(header).filter((k) => k !== '__metadata__');
    expect(keys.length).toBe(cfg.num_hidden_layers * targets.length * 2);
    // flat param layout: layer by layer, targets in q k v o gate up down order, A then B
    const params = adapter.getParams();
    let off = 0;
    for (let l = 0; l < cfg.num_hidden_layers; l++) {
      for (const t of targets) {
        const [inDim, outDim] = dims[t];
        const pre = `base_model.model.model.layers.${l}.${t === 'q_proj' || t === 'v_proj' ? 'self_attn' : 'mlp'}.${t}`;
        const A = header[`${pre}.lora_A.weight`];
        const B = header[`${pre}.lora_B.weight`];
        expect(A, `${pre}.lora_A.weight`).toBeDefined();
        expect(B, `${pre}.lora_B.weight`).toBeDefined();
        expect(A.dtype).toBe('F32');
        expect(A.shape).toEqual([r, inDim]);
        expect(B.shape).toEqual([outDim, r]);
        expect(Array.from(tensor(`${pre}.lora_A.weight`))).toEqual(Array.from(params.subarray(off, off + r * inDim)));
        off += r * inDim;
        expect(Array.from(tensor(`${pre}.lora_B.weight`))).toEqual(Array.from(params.subarray(off, off + r * outDim)));
        off += r * outDim;
      }
    }
    expect(off).toBe(adapter.numParams);

    const loaded = await LoraAdapter.load(dir, model);
    expect(loaded.config).toEqual(adapter.config);
    expect(bits(loaded.getParams()).equals(bits(params))).toBe(true);
    const prompts = [[1, 2, 3, 4]];
    const cands = [[[5], [6, 7], [8, 9, 10]]];
    expect(flat(await model.score(prompts, cands, { lora: loaded }))).toEqual(flat(await model.score(prompts, cands, { lora: adapter })));
    // clone: same params, independent storage
    const c = adapter.clone();
    expect(bits(c.getParams()).equals(bits(params))).toBe(true);
    await c.setParams(new Float32Array(c.numParams));
    expect(bits(adapter.getParams()).equals(bits(params))).toBe(true);
    await expect(LoraAdapter.load(path.join(os.tmpdir(), 'no-such-adapter-dir'), model)).rejects.toThrow(/adapter_config\.json/);
  });

  it('ModelTrainer: the loss falls on a fixed batch; inference concurrent with steps sees before- or after-step weights', async () => {
    const model = LlmModel.createRandom(cfg, { seed: 71, initStd: 0.1 });
    const seqs = randomSeqs(80, 6, 8, 12);
    const weights = actionWeights(seqs, 1);
    const probe = randomSeqs(81, 3, 4, 9);
    const trainer = new ModelTrainer(model, { lr: 3e-3 });
    const first = await trainer.accumulate(seqs, weights);
    await trainer.step();
    let last = first;
    for (let s = 0; s < 5; s++) {
      const before = await model.tokenLogprobs(probe);
      const snapshot = await model.clone();
      last = await trainer.accumulate(seqs, weights);
      // started together, not awaited in between
      const during = model.tokenLogprobs(probe);
      const stepP = trainer.step();
      const during2 = model.embedMean(probe);
      const [d, st] = await Promise.all([during, stepP, during2]);
      expect(st.step).toBe(s + 2);
      const after = await model.tokenLogprobs(probe);
      expect(maxAbsDiff(after, before)).toBeGreaterThan(0);
      const same = (x: Float32Array[], y: Float32Array[]) => maxAbsDiff(x, y) === 0;
      expect(same(d, before) || same(d, after)).toBe(true);
      expect(flat(await snapshot.tokenLogprobs(probe))).toEqual(flat(before));
    }
    for (let s = 0; s < 14; s++) {
      last = await trainer.accumulate(seqs, weights);
      await trainer.step();
    }
    expect(trainer.steps).toBe(20);
    expect(last).toBeLessThan(0.5 * first);
  });

  it('LoRA inference concurrent with LoRA steps and setParams: every result is a whole-step state', async () => {
    const model = LlmModel.createRandom(cfg, { seed: 75, initStd: 0.1 });
    const adapter = LoraAdapter.create(model, { r: 4, targetModules: ALL }, 1);
    await adapter.setParams(randomParams(2, adapter.numParams, 0.1));
    const trainer = new LoraTrainer(model, adapter, { lr: 1e-2 });
    const seqs = randomSeqs(90, 4, 6, 10);
    const weights = actionWeights(seqs, 2);
    const probe = randomSeqs(91, 2, 5, 8);
    const before = await model.tokenLogprobs(probe, { lora: adapter });
    const pSnap = adapter.getParams();
    await trainer.accumulate(seqs, weights);
    const calls = [model.tokenLogprobs(probe, { lora: adapter }), trainer.step().then(() => null), model.tokenLogprobs(probe, { lora: adapter })];
    const res = await Promise.all(calls);
    const after = await model.tokenLogprobs(probe, { lora: adapter });
    for (const r of [res[0], res[2]] as Float32Array[][]) {
      expect(maxAbsDiff(r, before) === 0 || maxAbsDiff(r, after) === 0).toBe(true);
    }
    // restoring the params restores the outputs
    await adapter.setParams(pSnap);
    expect(flat(await model.tokenLogprobs(probe, { lora: adapter }))).toEqual(flat(before));
  });

  it('stress: inference racing optimizer steps never sees a torn update (ModelTrainer, LoraTrainer)', async () => {
    // A larger model so that forward passes and AdamW updates overlap on the worker threads
    // (without the exclusive lock in step() this test sees mixed weights within a few rounds).
    const big: LlmConfig = { ...cfg, vocab_size: 256, hidden_size: 128, intermediate_size: 256, num_hidden_layers: 4 };
    const model = LlmModel.createRandom(big, { seed: 5, initStd: 0.05 });
    const seqs = randomSeqs(200, 4, 24, 32, big.vocab_size);
    const weights = actionWeights(seqs, 1);
    const probe = seqs.slice(0, 2);
    const adapter = LoraAdapter.create(model, { r: 8, targetModules: ALL }, 3);
    await adapter.setParams(randomParams(4, adapter.numParams, 0.05));
    const same = (x: Float32Array[], y: Float32Array[]) => maxAbsDiff(x, y) === 0;
    for (const kind of ['model', 'lora'] as const) {
      const trainer = kind === 'model' ? new ModelTrainer(model, { lr: 1e-3 }) : new LoraTrainer(model, adapter, { lr: 1e-2 });
      const opts = kind === 'lora' ? { lora: adapter } : {};
      let before = await model.tokenLogprobs(probe, opts);
      for (let round = 0; round < 12; round++) {
        await trainer.accumulate(seqs, weights);
        const calls = [model.tokenLogprobs(probe, opts), model.tokenLogprobs(probe, opts)];
        const stepP = trainer.step();
        calls.push(model.tokenLogprobs(probe, opts), model.tokenLogprobs(probe, opts));
        const results = await Promise.all(calls);
        await stepP;
        const after = await model.tokenLogprobs(probe, opts);
        expect(same(after, before), `${kind} round ${round}: the step changed the outputs`).toBe(false);
        for (const r of results) expect(same(r, before) || same(r, after), `${kind} round ${round}`).toBe(true);
        before = after;
      }
    }
  }, 60_000);

  it('bad input: errors name the argument; failed calls leave adapter and trainer unchanged', async () => {
    const model = LlmModel.createRandom(cfg, { seed: 81, initStd: 0.1 });
    const other = LlmModel.createRandom({ ...cfg, hidden_size: 48, num_attention_heads: 6, num_key_value_heads: 3 }, { seed: 1 });
    const deeper = LlmModel.createRandom({ ...cfg, num_hidden_layers: 3 }, { seed: 1 });
    const adapter = LoraAdapter.create(model, { r: 4, targetModules: ALL }, 5);
    await adapter.setParams(randomParams(6, adapter.numParams, 0.1));
    const p0 = adapter.getParams();
    const opts: TrainOptions = { lr: 1e-2 };
    const trainer = new LoraTrainer(model, adapter, opts);
    const unchanged = () => expect(bits(adapter.getParams()).equals(bits(p0))).toBe(true);
    const foreign = LoraAdapter.create(other, { r: 4 }, 1);
    const foreignDeep = LoraAdapter.create(deeper, { r: 4 }, 1);
    const seqs = [[1, 2, 3, 4]];

    await expect(trainer.accumulate(seqs, [[0, 1]])).rejects.toThrow(/weights\[0\]\.length must equal seqs\[0\]\.length \(4\)/);
    await expect(trainer.accumulate(seqs, [])).rejects.toThrow(/weights must hold one array per sequence/);
    await expect(trainer.accumulate(seqs, [[1, 1, 1, 1]])).rejects.toThrow(RangeError);
    await expect(trainer.accumulate(seqs, [[1, 1, 1, 1]])).rejects.toThrow(/first token of sequence 0 .*weight must be 0/);
    await expect(trainer.accumulate(seqs, [[0, -1, 1, 1]])).rejects.toThrow(/weight 1 must be finite and >= 0/);
    await expect(trainer.accumulate([[1, 2, 99]], [[0, 1, 1]])).rejects.toThrow(RangeError);
    await expect(trainer.accumulate([[1, 2, 99]], [[0, 1, 1]])).rejects.toThrow(/token 99 .*outside the vocabulary/);
    await expect(trainer.step()).rejects.toThrow(/step\(\) without accumulate\(\)/);
    unchanged();
    expect(trainer.steps).toBe(0);

    expect(() => LoraAdapter.create(model, { targetModules: ['q_proj', 'foo'] })).toThrow(/target_modules\[1\]: unknown module "foo"/);
    expect(() => LoraAdapter.create(model, { targetModules: [] })).toThrow(/target_modules must name at least one module/);
    expect(() => LoraAdapter.create(model, { r: 0 })).toThrow(RangeError);
    expect(() => LoraAdapter.create(model, { r: 0 })).toThrow(/opts\.r must be >= 1/);
    expect(() => LoraAdapter.create(model, { r: 1.5 })).toThrow(/opts\.r must be an integer/);
    expect(() => loadNative().NativeLoraAdapter.create(model.native, JSON.stringify({ r: 0 }), 1)).toThrow(/config\.r must be an integer in \[1, 65536\]/);
    expect(() => loadNative().NativeLoraAdapter.create(model.native, JSON.stringify({ rank: 4 }), 1)).toThrow(/config: unknown key "rank"/);
    expect(() => new LoraTrainer(model, adapter, { lr: -1 })).toThrow(RangeError);
    expect(() => new LoraTrainer(model, adapter, { lr: -1 })).toThrow(/options\.lr must be > 0, got -1/);
    expect(() => new LoraTrainer(model, adapter, { lr: Infinity })).toThrow(/options\.lr must be a finite number/);
    expect(() => new LoraTrainer(model, adapter, { lr: NaN })).toThrow(/options\.lr must be a finite number/);
    expect(() => new LoraTrainer(model, adapter, { beta1: 1 })).toThrow(/options\.beta1 must be in \[0, 1\)/);
    expect(() => new LoraTrainer(model, adapter, { eps: 0 })).toThrow(/options\.eps must be > 0/);
    expect(() => new LoraTrainer(model, adapter, { weightDecay: -0.1 })).toThrow(/options\.weightDecay must be >= 0/);
    expect(() => new LoraTrainer(model, adapter, { clipNorm: -1 })).toThrow(/options\.clipNorm/);
    expect(() => new LoraTrainer(model, adapter, { lossNorm: 'mean' as 'sum' })).toThrow(/options\.lossNorm must be "weightSum" or "sum"/);
    expect(() => new LoraTrainer(model, adapter, { learningRate: 1 } as TrainOptions)).toThrow(/unknown key "learningRate"/);

    expect(() => new LoraTrainer(model, foreign, opts)).toThrow(TypeError);
    expect(() => new LoraTrainer(model, foreign, opts)).toThrow(/adapter was made for a model with hidden_size = 48, but this model has 32/);
    expect(() => new LoraTrainer(model, foreignDeep, opts)).toThrow(/adapter was made for a model with num_hidden_layers = 3/);
    await expect(model.tokenLogprobs(seqs, { lora: foreign })).rejects.toThrow(/lora was made for a model/);
    await expect(model.score([[1]], [[[2]]], { lora: foreignDeep })).rejects.toThrow(/lora was made for a model/);
    await expect(model.embedMean(seqs, { lora: foreign })).rejects.toThrow(/lora was made for a model/);
    await expect(model.mergeLora(foreign)).rejects.toThrow(/adapter was made for a model/);
    await expect(model.tokenLogprobs(seqs, { lora: {} as LoraAdapter })).rejects.toThrow(/opts\.lora must be a LoraAdapter/);
    // the addon itself checks synchronously, before queueing any work
    expect(() => model.native.tokenLogprobs(new Int32Array([1, 2]), new Int32Array([0, 2]), {} as never)).toThrow(/lora must be a NativeLoraAdapter/);
    expect(() => new (loadNative().NativeLoraTrainer)(model.native, foreign.native, '{}')).toThrow(/adapter was made for a model/);
    await expect(LoraAdapter.load('/nonexistent', other).then(() => 0)).rejects.toThrow();

    await expect(adapter.setParams(new Float32Array(adapter.numParams - 1))).rejects.toThrow(/params\.length must equal the adapter's numParams/);
    await expect(trainer.setState({ m: new Float32Array(3), v: new Float32Array(adapter.numParams), t: 1 })).rejects.toThrow(/state\.m\.length must equal/);
    await expect(trainer.setState({ m: new Float32Array(adapter.numParams), v: new Float32Array(adapter.numParams), t: -1 })).rejects.toThrow(/state\.t/);
    unchanged();
    expect(trainer.steps).toBe(0);

    // the failed calls left no trace: the same valid step as a fresh adapter + trainer, bit for bit
    const fresh = adapter.clone();
    const freshTrainer = new LoraTrainer(model, fresh, opts);
    const w = [[0, 1, 1, 1]];
    const l1 = await trainer.accumulate(seqs, w);
    const l2 = await freshTrainer.accumulate(seqs, w);
    expect(l1).toBe(l2);
    const s1 = await trainer.step();
    const s2 = await freshTrainer.step();
    expect(s1).toEqual(s2);
    expect(s1.microBatches).toBe(1);
    expect(bits(adapter.getParams()).equals(bits(fresh.getParams()))).toBe(true);
  });
});
