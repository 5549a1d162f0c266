/**
 * Authenticated provenance (docs/trust.md): a write that claims a trusted source must carry a
 * MAC made with the writer key; one that does not is stored under `unverified:<source>`, which
 * is untrusted (quarantined like an import). Whoever can call `write` — a tool the agent
 * exposes, another actor on a shared memory's Redis log, a plugin — can then no longer pass
 * its records off as the agent's own experience unless it holds the key.
 *
 * The MAC is HMAC-SHA-256 under a writer key derived from the memory key (a separate domain
 * from snapshot signing) over the batch in its validated, canonical form: the number of cases,
 * the dimension, every case's source, the float32 keys (little-endian) and the values as
 * float64 (little-endian). The other metadata (state and action text, episode, step, time,
 * weights) is not covered: it does not decide trust.
 */
import * as crypto from 'crypto';
import { leBytes } from './fsutil';
import { resolveKey } from './snapshot';

/** How a trust policy's `authenticate` names the key: true = MEMQ_MEMORY_KEY, or the key itself. */
export type AuthenticateOption = boolean | string | Uint8Array;

/** Prefix under which a write that failed authentication keeps its claimed source. */
export const UNVERIFIED_PREFIX = 'unverified:';

/** The writer key for `authenticate` (null when off): HMAC(memory key, 'memq-writer-v1'). */
export function writerKeyOf(authenticate: AuthenticateOption | undefined, where = 'trust.authenticate'): Buffer | null {
  if (authenticate === undefined || authenticate === false) return null;
  let key: Buffer | undefined;
  if (authenticate === true) {
    key = resolveKey(undefined, where);
    if (!key) throw new RangeError(`${where}: true needs the memory key in MEMQ_MEMORY_KEY (not set), or pass the key itself`);
  } else if (typeof authenticate === 'string' || authenticate instanceof Uint8Array) {
    key = resolveKey(authenticate, where);
  } else {
    throw new TypeError(`${where} must be true, false, a key string or a Uint8Array, got ${authenticate === null ? 'null' : typeof authenticate}`);
  }
  return crypto.createHmac('sha256', key!).update('memq-writer-v1').digest();
}

function f64le(values: ArrayLike<number>): Buffer {
  const b = Buffer.alloc(values.length * 8);
  for (let i = 0; i < values.length; i++) b.writeDoubleLE(values[i], i * 8);
  return b;
}

/**
 * The MAC of a write batch: n = values.length cases, keys n × dim float32, one source per case
 * (a single string: the same for all). Pass it as `{ mac }` to `EpisodicMemory.write` /
 * `writeRows` (or SharedMemory's). Sources default to '' as the memory's validation does.
 */
export function signWrite(writerKey: Uint8Array, keys: Float32Array, values: ArrayLike<number>, sources?: string | readonly (string | undefined)[]): string {
  const n = values.length;
  if (n > 0 && keys.length % n !== 0) throw new RangeError(`signWrite: keys.length (${keys.length}) must be a multiple of values.length (${n})`);
  const dim = n > 0 ? keys.length / n : 0;
  const src: string[] = [];
  for (let i = 0; i < n; i++) src.push((typeof sources === 'string' || sources === undefined ? sources : sources[i]) ?? '');
  return crypto
    .createHmac('sha256', writerKey)
    .update(`memq-write-v1\0${n}\0${dim}\0${JSON.stringify(src)}\0`)
    .update(leBytes(keys))
    .update(f64le(values))
    .digest('hex');
}

/** The MAC of a batch given as case objects (the `write(cases)` form). */
export function signCases(writerKey: Uint8Array, cases: readonly { key: ArrayLike<number>; value: number; source?: string }[]): string {
  const dim = cases.length ? cases[0].key.length : 0;
  const keys = new Float32Array(cases.length * dim);
  cases.forEach((c, i) => {
    if (c.key.length !== dim) throw new RangeError(`signCases: cases[${i}].key has ${c.key.length} components, cases[0] has ${dim}`);
    keys.set(c.key, i * dim);
  });
  return signWrite(writerKey, keys, cases.map((c) => c.value), cases.map((c) => c.source));
}

/** Constant-time check of a batch's MAC (false for a missing or malformed one). */
export function verifyWrite(writerKey: Uint8Array, mac: unknown, keys: Float32Array, values: ArrayLike<number>, sources: readonly string[]): boolean {
  if (typeof mac !== 'string' || !/^[0-9a-f]{64}$/.test(mac)) return false;
  const want = Buffer.from(signWrite(writerKey, keys, values, sources), 'hex');
  return crypto.timingSafeEqual(want, Buffer.from(mac, 'hex'));
}
