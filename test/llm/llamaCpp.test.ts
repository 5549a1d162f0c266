/**
 * llama.cpp (through the optional package node-llama-cpp) as an independent check of the engine,
 * and the llama.cpp prior (`memq run --prior gguf:FILE`).
 *
 * Random tiny qwen2 / llama / qwen3 models (LlmModel.createRandom + save, initStd 0.2 so the
 * distributions are far from uniform) are exported to GGUF and llama.cpp's next-token
 * log-probabilities on the same token ids are compared with the engine's:
 * - f32 GGUF: |Δ log p| ≤ 5e-5 (both float32; measured ~2e-6), for every token's log-prob and for the
 *   whole next-token distribution against the float64 TypeScript reference;
 * - f16 / q8_0 GGUF, against the engine on the imported (same, rounded) weights: llama.cpp also
 *   rounds the activations entering its f16 / q8_0 matrix products (to f16 / to 8-bit blocks), so
 *   the bound is looser: 2e-2 for f16 and 2.5e-1 for q8_0 (measured on these sharp random models:
 *   2e-3–6e-3 and 6e-2–1.2e-1; the values are printed).
 * llama.cpp's KV cache is F32 here (LlamaCppModel's default); with its default F16 cache the f32
 * differences grow to ~2e-3.
 * Skipped, with a message, when node-llama-cpp is not installed.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LlmModel, type LlmConfig } from '../../lib/llm/model';
import { ModelPrior } from '../../lib/llm/modelPrior';
import { exportGguf, importGguf } from '../../lib/llm/ggufConvert';
import { LlamaCppModel, loadNodeLlamaCpp, nodeLlamaCppAvailable, setNodeLlamaCppImporter } from '../../lib/llm/llamaCpp';
import { LlamaCppPrior } from '../../lib/llm/llamaCppPrior';
import { loadTokenizer, qwen3TokenizerDir } from '../../lib/llm/tokenizer';
import { buildWordPieceTokenizer, wordPieceTokenizerConfig } from '../../lib/llm/wordTokenizer';
import { defaultConfig, mergeConfig, validateConfig, ConfigError } from '../../lib/agent/config';
import { main } from '../../lib/cli/main';
import { envNames } from '../../lib/envs/registry';
import { loadReference, referenceLogits, logSoftmax } from '../helpers/llm-reference';
import { TestRng } from '../helpers/rng';

// vitest evaluates modules in a vm without a dynamic-import callback: let it transform the import
setNodeLlamaCppImporter((s) => import(/* @vite-ignore */ s));
const available = await nodeLlamaCppAvailable();
if (!available) console.warn('llamaCpp.test.ts: node-llama-cpp is not installed; the llama.cpp checks are SKIPPED (npm install node-llama-cpp@3.21.1)');

const CONFIGS: Record<string, LlmConfig> = {
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
const TOL_F32 = 5e-5;
const TOL = { f16: 2e-2, q8_0: 2.5e-1 } as const;
// one thread: llama.cpp's spinning thread pool is slow on a loaded 2-core machine
const LOAD = { threads: 1 };

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-llamacpp-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function seqs(vocab: number, seed: number): number[][] {
  const rng = new TestRng(seed);
  return [7, 24].map((n) => Array.from({ length: n }, () => rng.int(vocab)));
}

describe('missing node-llama-cpp', () => {
  it('is an Error naming the package and the install command', async () => {
    setNodeLlamaCppImporter(() => Promise.reject(Object.assign(new Error("Cannot find package 'node-llama-cpp'"), { code: 'ERR_MODULE_NOT_FOUND' })));
    try {
      await expect(loadNodeLlamaCpp()).rejects.toThrow(/needs the optional package node-llama-cpp, which is not installed: npm install node-llama-cpp@3\.21\.1/);
      await expect(LlamaCppModel.load(path.join(tmp, 'none.gguf'))).rejects.toThrow(/cannot open|node-llama-cpp/);
    } finally {
      setNodeLlamaCppImporter((s) => import(/* @vite-ignore */ s));
    }
  });

  it('Mem-EM with a gguf prior is refused with the reason and the way to do it', () => {
    const c = mergeConfig(defaultConfig(), { prior: { kind: 'gguf', file: '/x.gguf' }, em: { every: 2 } }, 'test');
    expect(() => validateConfig(c, envNames())).toThrow(ConfigError);
    expect(() => validateConfig(c, envNames())).toThrow(/Mem-EM\) needs the memq engine .*memq model import FILE\.gguf --out DIR/);
  });
});

describe.skipIf(!available)('llama.cpp vs the memq engine (same weights, same token ids)', () => {
  for (const [arch, cfg] of Object.entries(CONFIGS)) {
    it(`${arch}: f32 GGUF, every token's log-prob and the full next-token distributions`, async () => {
      const dir = path.join(tmp, arch);
      const model = LlmModel.createRandom(cfg, { seed: 31, initStd: 0.2 });
      model.save(dir);
      const file = path.join(tmp, `${arch}.f32.gguf`);
      exportGguf(dir, file, { type: 'f32' });
      const lc = await LlamaCppModel.load(file, LOAD);
      try {
        expect(lc.vocabSize).toBe(cfg.vocab_size);
        const ss = seqs(cfg.vocab_size, 7);
        const eng = await model.tokenLogprobs(ss);
        let d = 0;
        for (let i = 0; i < ss.length; i++) {
          const got = await lc.tokenLogprobs(ss[i]);
          for (let t = 1; t < ss[i].length; t++) d = Math.max(d, Math.abs(got[t] - eng[i][t]));
        }
        // the whole distribution after every position, against the float64 reference
        const ref = loadReference(dir);
        const rows = await lc.nextTokenLogprobs(ss[1]);
        const want = referenceLogits(ref, ss[1]).map(logSoftmax);
        let dd = 0;
        rows.forEach((r, t) => r.forEach((v, k) => (dd = Math.max(dd, Math.abs(v - want[t][k])))));
        console.log(`llama.cpp f32 ${arch}: max |Δ log p| vs engine ${d.toExponential(2)}, full distribution vs float64 reference ${dd.toExponential(2)}`);
        expect(d).toBeLessThan(TOL_F32);
        expect(dd).toBeLessThan(TOL_F32);
        // negative control: the same check on a model with other weights fails by far
        const other = LlmModel.createRandom(cfg, { seed: 32, initStd: 0.2 });
        const o = await other.tokenLogprobs([ss[1]]);
        const g = await lc.tokenLogprobs(ss[1]);
        let dn = 0;
        for (let t = 1; t < ss[1].length; t++) dn = Math.max(dn, Math.abs(g[t] - o[0][t]));
        expect(dn).toBeGreaterThan(100 * TOL_F32);
      } finally {
        await lc.dispose();
      }
    });
  }

  for (const type of ['f16', 'q8_0'] as const) {
    it(`${type} GGUF vs the engine on the imported weights (looser: llama.cpp rounds activations too)`, async () => {
      for (const [arch] of Object.entries(CONFIGS)) {
        const file = path.join(tmp, `${arch}.${type}.gguf`);
        exportGguf(path.join(tmp, arch), file, { type });
        const imported = path.join(tmp, `${arch}-${type}-imported`);
        importGguf(file, imported);
        const model = await LlmModel.load(imported);
        const lc = await LlamaCppModel.load(file, LOAD);
        try {
          const ss = seqs(CONFIGS[arch].vocab_size, 8);
          const eng = await model.tokenLogprobs(ss);
          let d = 0;
          for (let i = 0; i < ss.length; i++) {
            const got = await lc.tokenLogprobs(ss[i]);
            for (let t = 1; t < ss[i].length; t++) d = Math.max(d, Math.abs(got[t] - eng[i][t]));
          }
          console.log(`llama.cpp ${type} ${arch}: max |Δ log p| vs engine on the imported weights ${d.toExponential(2)}`);
          expect(d).toBeLessThan(TOL[type]);
        } finally {
          await lc.dispose();
        }
      }
    });
  }

  it('score(): the prompt shared across K candidates equals the engine (sum and length-normalised)', async () => {
    const cfg = CONFIGS.qwen2;
    const model = await LlmModel.load(path.join(tmp, 'qwen2'));
    const lc = await LlamaCppModel.load(path.join(tmp, 'qwen2.f32.gguf'), LOAD);
    try {
      const rng = new TestRng(12);
      const prompt = Array.from({ length: 11 }, () => rng.int(cfg.vocab_size));
      const cands = [[3], [3, 4], [5, 6, 7, 8], [90, 1], [3]];
      for (const norm of [false, true]) {
        const got = await lc.score(prompt, cands, norm);
        const [want] = await model.score([prompt], [cands], { lengthNormalize: norm });
        cands.forEach((_, k) => expect(Math.abs(got[k] - want[k])).toBeLessThan(TOL_F32 * 4));
      }
      // the cache is restored after every candidate: scoring twice gives the same numbers
      const a = await lc.score(prompt, cands, false);
      const b = await lc.score(prompt, [...cands].reverse(), false);
      cands.forEach((_, k) => expect(b[cands.length - 1 - k]).toBeCloseTo(a[k], 5));
      await expect(lc.score([], cands, false)).rejects.toThrow(RangeError);
      await expect(lc.score(prompt, [[cfg.vocab_size]], false)).rejects.toThrow(/candidates\[0\]\[0\] must be a token id in \[0, 96\)/);
      const long = Array.from({ length: lc.contextSize + 1 }, (_, i) => i % cfg.vocab_size);
      await expect(lc.tokenLogprobs(long)).rejects.toThrow(/needs \d+ tokens of context, more than the context size/);
      // after a refused call the model still scores as before
      const again = await lc.score(prompt, cands, false);
      cands.forEach((_, k) => expect(again[k]).toBeCloseTo(a[k], 5));
    } finally {
      await lc.dispose();
    }
  });
});

describe.skipIf(!available)('the llama.cpp prior', () => {
  const corpus = [
    'you are in the middle of a room. looking quickly around you, you see a cabinet 1, a countertop 1, a fridge 1.',
    'task: put a clean apple in fridge. go to fridge 1 open fridge 1 take apple 1 from countertop 1 look inventory',
    'abcdefghijklmnopqrstuvwxyz 0123456789 .,:;!?()[]\'"-_/> north south east west grid position goal wall step',
  ];

  function tinyPriorDir(): string {
    const dir = path.join(tmp, 'prior-model');
    if (fs.existsSync(path.join(dir, 'config.json'))) return dir;
    const tok = buildWordPieceTokenizer(corpus);
    const vocab = Object.keys((tok.model as { vocab: object }).vocab).length;
    const model = LlmModel.createRandom({ ...CONFIGS.qwen2, vocab_size: vocab }, { seed: 41, initStd: 0.2 });
    model.save(dir);
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(wordPieceTokenizerConfig()));
    return dir;
  }

  it('LlamaCppPrior equals ModelPrior on the same model (prompt, end token, normalisation, temperature)', async () => {
    const dir = tinyPriorDir();
    const file = path.join(tmp, 'prior.gguf');
    exportGguf(dir, file);
    const tok = loadTokenizer(dir);
    const model = await LlmModel.load(dir);
    const endToken = tok.tokenToId(tok.eosToken!);
    const gp = await LlamaCppPrior.load(file, { threads: 1, temperature: 0.7 });
    try {
      const mp = new ModelPrior(model, tok, { lengthNormalize: true, endToken, temperature: 0.7 });
      const state = 'task: put a clean apple in fridge.\nyou are in the middle of a room.';
      const actions = ['go to fridge 1', 'take apple 1 from countertop 1', 'look', 'inventory', 'open cabinet 1'];
      expect(gp.promptTokens(state)).toEqual(mp.promptTokens(state));
      expect(gp.actionTokens('look')).toEqual(mp.actionTokens('look'));
      const [a, b] = [await gp.logPrior(state, actions), await mp.logPrior(state, actions)];
      let d = 0;
      a.forEach((x, j) => (d = Math.max(d, Math.abs(x - b[j]))));
      console.log(`LlamaCppPrior vs ModelPrior: max |Δ log μ| ${d.toExponential(2)}`);
      expect(d).toBeLessThan(2e-4);
      expect(Math.max(...a) - Math.min(...a)).toBeGreaterThan(1e-2);
      const many = await gp.logPriorMany([{ state, actions }, { state: 'look', actions: [] }, { state, actions: actions.slice(1, 3) }]);
      expect(many[1].length).toBe(0);
      many[0].forEach((x, j) => expect(x).toBeCloseTo(a[j], 5));
    } finally {
      await gp.dispose();
    }
  });

  it('memq run --prior gguf:FILE completes a short run (memq and prior agents)', { timeout: 600_000 }, async () => {
    const dir = tinyPriorDir();
    const file = path.join(tmp, 'prior-run.gguf');
    exportGguf(dir, file, { type: 'q8_0' });
    const out = path.join(tmp, 'run');
    let err = '';
    const io = { stdout: () => undefined, stderr: (t: string) => (err += t), isTTY: false };
    const cfgFile = path.join(tmp, 'run-config.json');
    fs.writeFileSync(cfgFile, JSON.stringify({ prior: { kind: 'gguf', file, threads: 1 } }));
    const code = await main(['run', '--env', 'gridworld', '--agent', 'memq', '--agent', 'prior', '--config', cfgFile, '--episodes', '3',
      '--demos', '1', '--eval-games', '2', '--out', out, '--json'], io);
    expect(code, err).toBe(0);
    for (const agent of ['memq', 'prior']) {
      expect(JSON.parse(fs.readFileSync(path.join(out, `${agent}-seed1`, 'config.json'), 'utf8')).prior).toEqual({ kind: 'gguf', file, threads: 1 });
      expect(JSON.parse(fs.readFileSync(path.join(out, `${agent}-seed1`, 'summary.json'), 'utf8')).status).toBe('complete');
    }
    let err2 = '';
    const io2 = { stdout: () => undefined, stderr: (t: string) => (err2 += t), isTTY: false };
    expect(await main(['run', '--env', 'gridworld', '--prior', `gguf:${file}`, '--em-every', '1', '--out', path.join(tmp, 'run-em')], io2)).not.toBe(0);
    expect(err2).toMatch(/needs the memq engine/);
  });
});

describe.skipIf(!available)('tokenizer metadata read by llama.cpp', () => {
  const texts = [
    'You arrive at cabinet 4. The cabinet 4 is closed.\n> open cabinet 4',
    'task: put a clean apple in fridge 1; take apple 1 from countertop 1 (look, inventory)',
  ];

  it.skipIf(!qwen3TokenizerDir())('Qwen\'s byte-level BPE (gpt2 + merges, pre qwen2): llama.cpp tokenizes household text as memq does', async () => {
    const qdir = qwen3TokenizerDir()!;
    const tok = loadTokenizer(qdir);
    const dir = path.join(tmp, 'qwen-bpe');
    LlmModel.createRandom({ ...CONFIGS.qwen2, vocab_size: tok.vocabSize, hidden_size: 32, intermediate_size: 32, num_hidden_layers: 1 }, { seed: 5 }).save(dir);
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(qdir, f), path.join(dir, f));
    const file = path.join(tmp, 'qwen-bpe.gguf');
    expect(exportGguf(dir, file).tokenizer).toBe('gpt2');
    const lc = await LlamaCppModel.load(file, LOAD);
    try {
      for (const t of texts) expect(Array.from(lc.model.tokenize(t, false) as number[])).toEqual(tok.encode(t));
    } finally {
      await lc.dispose();
    }
  });

  it('memq\'s WordPiece (bert, ▁ word starts): llama.cpp tokenizes lower-case domain text as memq does', async () => {
    const corpus = ['you arrive at cabinet 4. the cabinet 4 is closed. open cabinet', 'task: put a clean apple in fridge; take from countertop look inventory'];
    const tokJson = buildWordPieceTokenizer(corpus);
    const dir = path.join(tmp, 'wp');
    const V = Object.keys((tokJson.model as { vocab: object }).vocab).length;
    LlmModel.createRandom({ ...CONFIGS.qwen2, vocab_size: V }, { seed: 6 }).save(dir);
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokJson));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(wordPieceTokenizerConfig()));
    const tok = loadTokenizer(dir);
    const file = path.join(tmp, 'wp.gguf');
    expect(exportGguf(dir, file).tokenizer).toBe('bert');
    const lc = await LlamaCppModel.load(file, LOAD);
    try {
      for (const t of [...corpus, 'open fridge 1. take apple 1 from countertop 1']) {
        const got = Array.from(lc.model.tokenize(t, false) as number[]);
        console.log(`WordPiece '${t}': llama.cpp ${JSON.stringify(got)} memq ${JSON.stringify(tok.encode(t))}`);
        expect(got).toEqual(tok.encode(t));
      }
    } finally {
      await lc.dispose();
    }
  });
});
