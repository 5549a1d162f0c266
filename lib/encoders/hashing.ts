/**
 * The default encoder: signed feature hashing of word and character n-grams (Weinberger et al.
 * 2009), TF weighted, L2-normalised. Deterministic, no model, ~1 µs per short feature; it is
 * the "frozen text encoder" of MATH §10 when no model is available.
 *
 * Features of a text (lower-cased; words are runs of [a-z0-9]):
 *   - word n-grams for n in wordNgrams (default 1..2) within a line, e.g. "w:apple", "w:apple 1"
 *   - character n-grams for n in charNgrams (default 3..5) of each word padded as " word "
 *   - each whole line (its words joined) as one feature (lineFeatures, default on), so that
 *     texts sharing exact lines, e.g. the same observation, are closer than paraphrases
 * Each feature f adds sign(f) * tf-weight to coordinate h(f) mod d, with h a 32-bit FNV-1a
 * hash and sign a second, independent hash bit (so collisions cancel in expectation). Each family
 * (words, characters, lines) is normalised on its own, so each contributes equally.
 * TF weighting: 'raw' (counts), 'log' (1 + log count, default), or 'binary'.
 */
import type { Encoder } from './types';
import { PAIR_SEPARATOR, pairText } from './pairFormat';

export interface HashingEncoderOptions {
  dim?: number;
  /** Inclusive [min, max] word n-gram orders; [1, 2] by default; null disables. */
  wordNgrams?: [number, number] | null;
  /** Inclusive [min, max] character n-gram orders; [3, 5] by default; null disables. */
  charNgrams?: [number, number] | null;
  tf?: 'raw' | 'log' | 'binary';
  /** Also hash each whole line (its words) as one feature: exact lines then weigh in. Default true. */
  lineFeatures?: boolean;
  /** Seed mixed into the hash, for independent encoders. */
  seed?: number;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a over a string's UTF-16 code units, seeded; then a murmur3 finaliser for avalanche. */
export function hashString(s: string, seed = 0): number {
  let h = (FNV_OFFSET ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, FNV_PRIME);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function tokenize(text: string): string[] {
  return text.toLowerCase().match(/[a-z0-9]+/g) ?? [];
}

export class HashingEncoder implements Encoder {
  readonly dim: number;
  readonly name: string;
  private readonly word: [number, number] | null;
  private readonly char: [number, number] | null;
  private readonly tf: 'raw' | 'log' | 'binary';
  private readonly seed: number;
  private readonly lines: boolean;

  constructor(options: HashingEncoderOptions = {}) {
    const dim = options.dim ?? 512;
    if (!Number.isInteger(dim) || dim < 1 || dim > 1 << 20) {
      throw new RangeError(`dim must be an integer in [1, 1048576], got ${String(options.dim)}`);
    }
    const checkRange = (name: string, r: [number, number] | null | undefined, dflt: [number, number]) => {
      if (r === null) return null;
      const v = r ?? dflt;
      if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => Number.isInteger(x) && x >= 1 && x <= 16) || v[0] > v[1]) {
        throw new RangeError(`${name} must be [min, max] with 1 <= min <= max <= 16, got ${JSON.stringify(r)}`);
      }
      return v;
    };
    this.dim = dim;
    this.word = checkRange('wordNgrams', options.wordNgrams, [1, 2]);
    this.char = checkRange('charNgrams', options.charNgrams, [3, 5]);
    if (!this.word && !this.char) throw new RangeError('at least one of wordNgrams and charNgrams must be enabled');
    this.tf = options.tf ?? 'log';
    if (!['raw', 'log', 'binary'].includes(this.tf)) throw new RangeError(`tf must be 'raw', 'log' or 'binary', got ${String(options.tf)}`);
    this.seed = options.seed ?? 0;
    this.lines = options.lineFeatures ?? true;
    const w = this.word ? `w${this.word[0]}${this.word[1]}` : '';
    const c = this.char ? `c${this.char[0]}${this.char[1]}` : '';
    this.name = `hashing-${dim}-${w}${c}${this.lines ? 'l' : ''}-${this.tf}`;
  }

  /** Feature counts of a text, per family (words, characters). */
  features(text: string): Map<string, number>[] {
    if (typeof text !== 'string') throw new TypeError(`texts must be strings, got ${typeof text}`);
    const words = tokenize(text);
    const wordF = new Map<string, number>();
    const charF = new Map<string, number>();
    const lineF = new Map<string, number>();
    for (const line of text.split('\n')) {
      const lw = tokenize(line);
      if (this.lines && lw.length) {
        const f = 'l:' + lw.join(' ');
        lineF.set(f, (lineF.get(f) ?? 0) + 1);
      }
      if (this.word) {
        for (let n = this.word[0]; n <= this.word[1]; n++) {
          for (let i = 0; i + n <= lw.length; i++) {
            const f = 'w:' + (n === 1 ? lw[i] : lw.slice(i, i + n).join(' '));
            wordF.set(f, (wordF.get(f) ?? 0) + 1);
          }
        }
      }
    }
    if (this.char) {
      for (const w of words) {
        const p = ` ${w} `;
        for (let n = this.char[0]; n <= this.char[1]; n++) {
          for (let i = 0; i + n <= p.length; i++) {
            const f = 'c:' + p.slice(i, i + n);
            charF.set(f, (charF.get(f) ?? 0) + 1);
          }
        }
      }
    }
    return this.lines ? [wordF, charF, lineF] : [wordF, charF];
  }

  private weight(count: number): number {
    if (count <= 0) return 0;
    return this.tf === 'raw' ? count : this.tf === 'log' ? 1 + Math.log(count) : 1;
  }

  /** (index, sign) of a feature, memoised: the same n-grams recur across texts. */
  private slot(f: string): number {
    let v = this.slots.get(f);
    if (v === undefined) {
      const idx = hashString(f, this.seed) % this.dim;
      const sign = hashString(f, this.seed ^ 0x5bd1e995) & 1 ? 1 : -1;
      v = sign * (idx + 1);
      if (this.slots.size >= 500_000) this.slots.clear();
      this.slots.set(f, v);
    }
    return v;
  }
  private readonly slots = new Map<string, number>();

  /** Unnormalised family vectors of feature counts. */
  private familyVectors(fams: Map<string, number>[]): Float64Array[] {
    return fams.map((fam) => {
      const v = new Float64Array(this.dim);
      for (const [f, count] of fam) {
        const s = this.slot(f);
        v[Math.abs(s) - 1] += Math.sign(s) * this.weight(count);
      }
      return v;
    });
  }

  /** Normalise each family to unit length, sum, and normalise the sum into out[offset..). */
  private finish(vecs: Float64Array[], out: Float32Array, offset: number): void {
    const acc = new Float64Array(this.dim);
    for (const v of vecs) {
      let n2 = 0;
      for (let j = 0; j < this.dim; j++) n2 += v[j] * v[j];
      if (n2 === 0) continue;
      const s = 1 / Math.sqrt(n2);
      for (let j = 0; j < this.dim; j++) acc[j] += v[j] * s;
    }
    let n2 = 0;
    for (let j = 0; j < this.dim; j++) n2 += acc[j] * acc[j];
    const s = n2 > 0 ? 1 / Math.sqrt(n2) : 0;
    for (let j = 0; j < this.dim; j++) out[offset + j] = acc[j] * s;
  }

  /** Encodes one text into out[offset .. offset+dim). */
  encodeInto(text: string, out: Float32Array, offset: number): void {
    this.finish(this.familyVectors(this.features(text)), out, offset);
  }

  encode(texts: string[]): Float32Array {
    if (!Array.isArray(texts)) throw new TypeError(`texts must be an array of strings, got ${typeof texts}`);
    const out = new Float32Array(texts.length * this.dim);
    for (let i = 0; i < texts.length; i++) this.encodeInto(texts[i], out, i * this.dim);
    return out;
  }

  /**
   * enc(state ⊕ a_j) for every action, sharing the state's features: word n-grams never cross
   * the line break of pairText, so the pair's features are the union of the two bags, and only
   * the action's features (and the state's counts of them) need touching per action.
   */
  encodePairs(state: string, actions: string[]): Float32Array {
    if (!Array.isArray(actions)) throw new TypeError(`actions must be an array of strings, got ${typeof actions}`);
    const sep = PAIR_SEPARATOR.replace(/^\n/, '');
    const sf = this.features(state);
    // the separator line of pairText has no words, so it adds no features; checked once here
    if (tokenize(sep).length) throw new Error('pairText separator must not contain words');
    const base = this.familyVectors(sf);
    const out = new Float32Array(actions.length * this.dim);
    actions.forEach((a, i) => {
      const af = this.features(a);
      const vecs = base.map((b) => Float64Array.from(b));
      af.forEach((fam, k) => {
        for (const [f, count] of fam) {
          const cs = sf[k].get(f) ?? 0;
          const s = this.slot(f);
          vecs[k][Math.abs(s) - 1] += Math.sign(s) * (this.weight(cs + count) - this.weight(cs));
        }
      });
      this.finish(vecs, out, i * this.dim);
    });
    return out;
  }
}

/** A small memo in front of an encoder: agents re-encode the same (state, action) texts often. */
export class CachedEncoder implements Encoder {
  readonly dim: number;
  readonly name: string;
  private readonly cache = new Map<string, Float32Array>();

  constructor(private readonly inner: Encoder, private readonly maxEntries = 50_000) {
    this.dim = inner.dim;
    this.name = inner.name;
  }

  /** Uses the inner encoder's shared-state fast path when it has one. */
  async encodePairs(state: string, actions: string[]): Promise<Float32Array> {
    if (!this.inner.encodePairs) return this.encode(actions.map((a) => pairText(state, a)));
    const out = new Float32Array(actions.length * this.dim);
    const missing: number[] = [];
    actions.forEach((a, i) => {
      const hit = this.cache.get(pairText(state, a));
      if (hit) out.set(hit, i * this.dim);
      else missing.push(i);
    });
    if (missing.length) {
      const enc = await this.inner.encodePairs(state, missing.map((i) => actions[i]));
      missing.forEach((i, k) => {
        const row = enc.slice(k * this.dim, (k + 1) * this.dim);
        out.set(row, i * this.dim);
        this.remember(pairText(state, actions[i]), row);
      });
    }
    return out;
  }

  private remember(text: string, row: Float32Array): void {
    if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(text, row);
  }

  async encode(texts: string[]): Promise<Float32Array> {
    const out = new Float32Array(texts.length * this.dim);
    const missing: number[] = [];
    texts.forEach((t, i) => {
      const hit = this.cache.get(t);
      if (hit) out.set(hit, i * this.dim);
      else missing.push(i);
    });
    if (missing.length) {
      const enc = await this.inner.encode(missing.map((i) => texts[i]));
      missing.forEach((i, k) => {
        const row = enc.slice(k * this.dim, (k + 1) * this.dim);
        out.set(row, i * this.dim);
        this.remember(texts[i], row);
      });
    }
    return out;
  }
}
