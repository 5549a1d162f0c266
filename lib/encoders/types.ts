/** Text -> key encoders (MATH §10: keys x = enc(state ⊕ action) from a frozen encoder). */
export interface Encoder {
  /** A short description, recorded in run configs ("hashing-512-w12c35"). */
  readonly name: string;
  /** Output dimension d. */
  readonly dim: number;
  /** Encodes n texts into one n*dim Float32Array (row i = texts[i]). */
  encode(texts: string[]): Float32Array | Promise<Float32Array>;
  /**
   * Optional fast path for the K keys enc(state ⊕ action_j) of one state (MATH §10): encoders
   * that can share the state's work across actions implement it. Must equal
   * encode(actions.map((a) => pairText(state, a))) up to float rounding.
   */
  encodePairs?(state: string, actions: string[]): Float32Array | Promise<Float32Array>;
  /**
   * Optional fast path for the keys of n (state, action) pairs in one batch (row i = pairs[i]),
   * e.g. the steps of an episode. Must equal encode(pairs.map((p) => pairText(p.state, p.action)))
   * up to float rounding.
   */
  encodeBatch?(pairs: readonly StateAction[]): Float32Array | Promise<Float32Array>;
}

import { pairText, type StateAction } from './pairFormat';

/** The pair format lives in ./pairFormat; re-exported here for existing importers. */
/** The key dimension of the hashing encoders when a run does not set one (config encoder.dim). */
export const DEFAULT_ENCODER_DIM = 512;

export { pairText, PAIR_SEPARATOR, pairPrompt, splitPairText, type StateAction } from './pairFormat';

/** enc(state ⊕ a) for each action, through the encoder's fast path when it has one. */
export async function encodePairs(encoder: Encoder, state: string, actions: string[]): Promise<Float32Array> {
  return encoder.encodePairs ? encoder.encodePairs(state, actions) : encoder.encode(actions.map((a) => pairText(state, a)));
}

/**
 * Keys of n (state, action) pairs as one flat n × dim Float32Array (row i = pairs[i]), through
 * the encoder's encodeBatch when it has one; the pairs never pass through a joined string that
 * must be split again.
 */
export async function encodePairBatch(encoder: Encoder, pairs: readonly StateAction[]): Promise<Float32Array> {
  if (!Array.isArray(pairs)) throw new TypeError(`pairs must be an array of { state, action }, got ${typeof pairs}`);
  pairs.forEach((p, i) => {
    if (typeof p !== 'object' || p === null || typeof p.state !== 'string' || typeof p.action !== 'string') {
      throw new TypeError(`pairs[${i}] must be { state: string, action: string }`);
    }
  });
  const keys = encoder.encodeBatch ? await encoder.encodeBatch(pairs) : await encoder.encode(pairs.map((p) => pairText(p.state, p.action)));
  if (keys.length !== pairs.length * encoder.dim) throw new RangeError(`encoder ${encoder.name} returned ${keys.length} floats for ${pairs.length} pairs of dim ${encoder.dim}`);
  return keys;
}
