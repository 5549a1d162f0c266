/**
 * An encoder that abstracts object identifiers before encoding, so that analogous situations in
 * different games get close keys: "take apple 2 from cabinet 13" and "take apple 1 from
 * cabinet 4" both read "take apple from cabinet". ALFWorld-style worlds number every instance;
 * the numbers carry no meaning across games, and with them the hashing encoder separates
 * situations that a policy should treat alike.
 */
import { encodePairBatch, pairText, type Encoder } from './types';
import type { StateAction } from './pairFormat';

/** "apple 2" → "apple", "cabinet 13" → "cabinet" (a word followed by an instance number). */
export function abstractIds(text: string): string {
  return text.replace(/\b([A-Za-z]+) \d+\b/g, '$1');
}

export class AbstractingEncoder implements Encoder {
  readonly dim: number;
  readonly name: string;
  constructor(private readonly inner: Encoder, private readonly transform: (text: string) => string = abstractIds) {
    this.dim = inner.dim;
    this.name = `abstract-${inner.name}`;
  }
  encode(texts: string[]): Float32Array | Promise<Float32Array> {
    return this.inner.encode(texts.map(this.transform));
  }
  encodePairs(state: string, actions: string[]): Float32Array | Promise<Float32Array> {
    const s = this.transform(state);
    const a = actions.map(this.transform);
    return this.inner.encodePairs ? this.inner.encodePairs(s, a) : this.inner.encode(a.map((x) => pairText(s, x)));
  }
  encodeBatch(pairs: readonly StateAction[]): Promise<Float32Array> {
    return encodePairBatch(this.inner, pairs.map((p) => ({ state: this.transform(p.state), action: this.transform(p.action) })));
  }
}
