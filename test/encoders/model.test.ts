import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { ModelEncoder } from '../../lib/encoders/model';
import { pairText } from '../../lib/encoders/types';
import { LlmModel } from '../../lib/llm/model';
import { LoraAdapter } from '../../lib/llm/lora';
import { loadTokenizer } from '../../lib/llm/tokenizer';
import { buildWordPieceTokenizer, wordPieceTokenizerConfig } from '../../lib/llm/wordTokenizer';

function tokenizer() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-menc-'));
  const corpus = ['task: put a clean apple in fridge', 'go to fridge 1', 'take apple 1 from countertop 1', 'You arrive at fridge 1. The fridge 1 is closed.'];
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(buildWordPieceTokenizer(corpus, { minCount: 1 })));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(wordPieceTokenizerConfig()));
  return loadTokenizer(dir);
}

describe('ModelEncoder: keys from the policy model’s hidden states', () => {
  const tok = tokenizer();
  const model = LlmModel.createRandom({
    model_type: 'qwen2', vocab_size: tok.vocabSize, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: true,
  }, { seed: 5, initStd: 0.2 });

  it('equals the L2-normalised mean-pooled hidden state, row by row; pairs are state ⊕ action', async () => {
    const enc = new ModelEncoder({ model, tokenizer: tok });
    expect(enc.dim).toBe(32);
    const texts = ['go to fridge 1', 'You arrive at fridge 1. The fridge 1 is closed.', ''];
    const got = await enc.encode(texts);
    const raw = await model.embedMean(texts.map((t) => (tok.encode(t).length ? tok.encode(t) : [0])));
    for (let i = 0; i < texts.length; i++) {
      let n2 = 0;
      for (let c = 0; c < 32; c++) n2 += raw[i * 32 + c] ** 2;
      for (let c = 0; c < 32; c++) expect(got[i * 32 + c]).toBeCloseTo(raw[i * 32 + c] / Math.sqrt(n2), 5);
    }
    const again = await enc.encode(texts);
    expect(Array.from(again)).toEqual(Array.from(got)); // cached
    const pairs = await enc.encodePairs('task: put a clean apple in fridge', ['go to fridge 1', 'look']);
    const direct = await enc.encode([pairText('task: put a clean apple in fridge', 'go to fridge 1'), pairText('task: put a clean apple in fridge', 'look')]);
    expect(Array.from(pairs)).toEqual(Array.from(direct));
  });

  it("lora 'current' reads through the adapter as it is now; 'base' does not", async () => {
    const adapter = LoraAdapter.create(model, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj', 'down_proj'] }, 3);
    const p = adapter.getParams();
    for (let i = 0; i < p.length; i++) p[i] = Math.sin(i) * 0.3; // nonzero B too: the adapter changes the output
    await adapter.setParams(p);
    let current: LoraAdapter | null = null;
    const withLora = new ModelEncoder({ model, tokenizer: tok, lora: 'current', adapter: () => current });
    const base = new ModelEncoder({ model, tokenizer: tok });
    const text = ['take apple 1 from countertop 1'];
    const b0 = await base.encode(text);
    expect(Array.from(await withLora.encode(text))).toEqual(Array.from(b0));
    current = adapter;
    const l1 = await withLora.encode(text);
    let diff = 0;
    for (let c = 0; c < 32; c++) diff = Math.max(diff, Math.abs(l1[c] - b0[c]));
    expect(diff).toBeGreaterThan(1e-3);
    expect(Array.from(await base.encode(text))).toEqual(Array.from(b0));
    expect(() => new ModelEncoder({ model, tokenizer: tok, lora: 'current' })).toThrow(/needs adapter/);
  });
});
