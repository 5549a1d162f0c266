/**
 * A small domain tokenizer for tiny priors (`memq model pretrain`): a Hugging Face WordPiece
 * `tokenizer.json` whose vocabulary is the words of a corpus (environment transcripts) plus every
 * character seen, alone and as a `##` continuation, so an unseen word is spelled from pieces
 * instead of becoming [UNK]. It is a standard tokenizer.json (Lowercase normalizer, Whitespace
 * pre-tokenizer, WordPiece model and decoder): @huggingface/tokenizers reads it here and the Rust
 * `tokenizers` / `transformers` read it on other machines. A Qwen-sized vocabulary (151k) would
 * make the LM head of a 0.1–1M-parameter model 95 % of its weights and of its FLOPs; a domain
 * vocabulary of a few hundred words keeps the prior tiny and its prompts short.
 */

export interface WordPieceOptions {
  /** Keep words seen at least this often (default 1). */
  minCount?: number;
  /** At most this many words (the most frequent; default 4096). */
  maxWords?: number;
}

export const SPECIAL_TOKENS = ['[UNK]', '[PAD]', '<|endoftext|>'] as const;

/** The Whitespace pre-tokenizer's split (\w+|[^\w\s]+), lower-cased: the words the vocabulary counts. */
export function wordsOf(text: string): string[] {
  return text.toLowerCase().match(/\w+|[^\w\s]+/gu) ?? [];
}

/** Builds the tokenizer.json object (write it with JSON.stringify) from a corpus of texts. */
export function buildWordPieceTokenizer(texts: Iterable<string>, opts: WordPieceOptions = {}): Record<string, unknown> {
  const minCount = opts.minCount ?? 1;
  const maxWords = opts.maxWords ?? 4096;
  if (!Number.isInteger(minCount) || minCount < 1) throw new RangeError(`minCount must be an integer >= 1, got ${minCount}`);
  if (!Number.isInteger(maxWords) || maxWords < 1) throw new RangeError(`maxWords must be an integer >= 1, got ${maxWords}`);
  const counts = new Map<string, number>();
  const chars = new Set<string>();
  for (const t of texts) {
    if (typeof t !== 'string') throw new TypeError('texts must be strings');
    for (const w of wordsOf(t)) {
      counts.set(w, (counts.get(w) ?? 0) + 1);
      for (const c of w) chars.add(c);
    }
  }
  const vocab: Record<string, number> = {};
  let next = 0;
  const add = (tok: string) => {
    if (!(tok in vocab)) vocab[tok] = next++;
  };
  for (const s of SPECIAL_TOKENS) add(s);
  // characters first (sorted, so the ids do not depend on corpus order), then words by frequency
  for (const c of [...chars].sort()) {
    add(c);
    add(`##${c}`);
  }
  const words = [...counts.entries()]
    .filter(([, n]) => n >= minCount)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, maxWords);
  for (const [w] of words) add(w);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content) => ({
      id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'Whitespace' },
    post_processor: null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

/** tokenizer_config.json for the tokenizer above. */
export function wordPieceTokenizerConfig(): Record<string, unknown> {
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    unk_token: '[UNK]',
    pad_token: '[PAD]',
    eos_token: '<|endoftext|>',
    model_max_length: 4096,
    clean_up_tokenization_spaces: true,
  };
}
