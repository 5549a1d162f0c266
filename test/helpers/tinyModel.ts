/**
 * A tiny word-level tokenizer (WordPiece over `words`, written into `root`) and a random
 * one-layer qwen2 model over its vocabulary: the small model prior tests score with.
 */
import * as fs from 'fs';
import * as path from 'path';
import { LlmModel } from '../../lib/llm/model';
import { loadTokenizer, type TextTokenizer } from '../../lib/llm/tokenizer';
import { buildWordPieceTokenizer, wordPieceTokenizerConfig } from '../../lib/llm/wordTokenizer';

export function tinyWordModel(root: string, words: string[], opts: { seed: number; initStd: number }): { tok: TextTokenizer; model: LlmModel; end: number } {
  const dir = fs.mkdtempSync(path.join(root, 'tok-'));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(buildWordPieceTokenizer(['task: you see', '>', ...words])));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(wordPieceTokenizerConfig()));
  const tok = loadTokenizer(dir);
  const model = LlmModel.createRandom({
    model_type: 'qwen2', vocab_size: tok.vocabSize, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1,
    num_attention_heads: 2, num_key_value_heads: 1, tie_word_embeddings: true,
  }, opts);
  return { tok, model, end: tok.tokenToId(tok.eosToken!)! };
}
