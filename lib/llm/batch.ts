/**
 * Token packing for the engine's calls: ragged token-id arrays as one (tokens, offsets) pair.
 * Shared by lib/llm/model.ts (inference) and lib/llm/lora.ts (training).
 */

/** @internal Packs ragged token-id arrays into (tokens, offsets[n+1]) with checks naming `name`. */
export function tokenArray(name: string, seqs: unknown): { tokens: Int32Array; offsets: Int32Array } {
  if (!Array.isArray(seqs)) throw new TypeError(`${name} must be an array of token-id arrays`);
  let total = 0;
  seqs.forEach((s, i) => {
    if (!(Array.isArray(s) || s instanceof Int32Array)) throw new TypeError(`${name}[${i}] must be an array of integer token ids`);
    total += s.length;
  });
  const tokens = new Int32Array(total);
  const offsets = new Int32Array(seqs.length + 1);
  let k = 0;
  seqs.forEach((s: ArrayLike<number>, i) => {
    for (let j = 0; j < s.length; j++) {
      const t = s[j];
      if (!Number.isInteger(t) || t < 0 || t > 2147483647) throw new RangeError(`${name}[${i}][${j}] must be a non-negative integer token id, got ${t}`);
      tokens[k++] = t;
    }
    offsets[i + 1] = k;
  });
  return { tokens, offsets };
}
