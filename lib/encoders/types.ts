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
}

/** The text of a (state, action) pair: state ⊕ action. */
export function pairText(state: string, action: string): string {
  return `${state}\n> ${action}`;
}

/** enc(state ⊕ a) for each action, through the encoder's fast path when it has one. */
export async function encodePairs(encoder: Encoder, state: string, actions: string[]): Promise<Float32Array> {
  return encoder.encodePairs ? encoder.encodePairs(state, actions) : encoder.encode(actions.map((a) => pairText(state, a)));
}
