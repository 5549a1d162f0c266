import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildWordPieceTokenizer, wordPieceTokenizerConfig, wordsOf } from '../../lib/llm/wordTokenizer';
import { loadTokenizer } from '../../lib/llm/tokenizer';

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function write(texts: string[], minCount = 1) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-wp-'));
  dirs.push(dir);
  const json = buildWordPieceTokenizer(texts, { minCount });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(wordPieceTokenizerConfig()));
  return { dir, json: json as any, tok: loadTokenizer(dir) };
}

describe('domain WordPiece tokenizer (read by @huggingface/tokenizers)', () => {
  const corpus = [
    'task: heat some cup and put it in countertop.\n> go to cabinet 1',
    'You arrive at cabinet 1. On the cabinet 1, you see a cup 2.',
    'go to cabinet 10', 'take cup 2 from cabinet 1', 'heat cup 2 with microwave 1',
  ];
  const { json, tok } = write(corpus, 2);

  it('gives every frequent word one token and counts the id space', () => {
    const counts = new Map<string, number>();
    for (const t of corpus) for (const w of wordsOf(t)) counts.set(w, (counts.get(w) ?? 0) + 1);
    let frequent = 0;
    for (const [w, n] of counts) {
      if (n < 2) continue;
      frequent++;
      const ids = tok.encode(w);
      expect(ids, w).toHaveLength(1);
      expect(json.model.vocab[w]).toBe(ids[0]);
    }
    expect(frequent).toBeGreaterThan(5);
    expect(tok.vocabSize).toBe(Object.keys(json.model.vocab).length);
    expect(tok.eosToken).toBe('<|endoftext|>');
    expect(tok.tokenToId('<|endoftext|>')).toBe(json.model.vocab['<|endoftext|>']);
  });

  it('spells rare and unseen words from character pieces (no [UNK] for seen characters) and decodes back', () => {
    const unk = tok.tokenToId('[UNK]');
    for (const text of ['microwave 1', 'heat cup 10 with microwave 1', 'countertop arrive', 'teacup', 'go to cabinet 12']) {
      const ids = tok.encode(text);
      expect(ids).not.toContain(unk);
      expect(tok.decode(ids)).toBe(text.toLowerCase());
    }
    // 'microwave' is seen once (minCount 2): pieces, not one token
    expect(tok.encode('microwave').length).toBeGreaterThan(1);
    expect(tok.encode('CUP')).toEqual(tok.encode('cup')); // Lowercase normalizer
  });

  it('maps characters never seen to [UNK] and ids do not depend on corpus order', () => {
    expect(tok.encode('zzz')).toEqual([tok.tokenToId('[UNK]')]);
    const again = buildWordPieceTokenizer([...corpus].reverse(), { minCount: 2 }) as any;
    expect(again.model.vocab).toEqual(json.model.vocab);
  });

  it('refuses bad options', () => {
    expect(() => buildWordPieceTokenizer(['a'], { minCount: 0 })).toThrow(/minCount/);
    expect(() => buildWordPieceTokenizer(['a'], { maxWords: 1.5 })).toThrow(/maxWords/);
    expect(() => buildWordPieceTokenizer([3 as unknown as string])).toThrow(/strings/);
  });
});
