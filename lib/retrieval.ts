/**
 * The retrieval core's public API: MemoryIndex (key store + kernel search + kernel-weighted
 * value, MATH §2-§3), klImprove (MATH §5) and backendInfo. MemoryIndex checks types and shapes
 * here and values in C++ (memq::Store: keys, values, ids, voidWeight/voidValue;
 * kernel parameters and queries are still checked here as well); errors are TypeError (wrong type or shape) or RangeError (value out of range),
 * naming the argument and the expected form. A failed call leaves the index unchanged.
 */
import { loadNative, nativeKind, nativePath, type AddonKind, type NativeIndexStats, type NativeLimits, type NativeMemoryIndex } from './native';

export type KernelName = 'gaussian' | 'cosine' | 'inverse';
/** Where a MemoryIndex keeps its keys and searches: host memory, or an NVIDIA GPU (docs/cuda.md). */
export type BackendName = 'cpu' | 'cuda';
/**
 * How keys are stored and scanned: float32; bfloat16 (CPU and CUDA, half the bytes); int8 with a
 * per-row scale (CPU only, a quarter of the bytes); float16 (CUDA only).
 */
export type KeyType = 'float32' | 'bf16' | 'int8' | 'fp16';

export type KernelOptions =
  | { kernel?: 'gaussian'; bandwidth?: number }
  | { kernel: 'cosine'; kappa?: number }
  | { kernel: 'inverse'; delta?: number };

export type MemoryIndexOptions = KernelOptions & {
  /** Key dimension d. */
  dim: number;
  /** Maximum number of live cases (0 or undefined: unlimited). */
  capacity?: number;
  /**
   * 'auto' (default) | 'cpu' | 'cuda'. When absent or 'auto', MEMQ_BACKEND in the environment
   * ('auto' | 'cpu' | 'cuda') applies. 'auto' uses the GPU only when a usable device exists and
   * the native self-test against the CPU kernels passed (see backendInfo()); 'cuda' throws an
   * Error naming the reason when it cannot be used.
   */
  backend?: 'auto' | 'cpu' | 'cuda';
  /**
   * Key storage (default 'float32'). CPU: 'bf16' (keys rounded to nearest-even bfloat16) or 'int8'
   * (per-row symmetric scale max|k|/127, docs/math.md §2b): searches scan the compressed keys and
   * are exact for the dequantised keys (queries stay float32). The float32 keys are kept in RAM
   * as well (getKeys, save). CUDA: 'bf16' / 'fp16' round keys (and, per search, queries) to 16
   * bits; 'int8' is a TypeError there, and 'fp16' is one on the CPU.
   */
  keyType?: KeyType;
  /**
   * CPU with keyType 'bf16' / 'int8' only: oversample factor K of an exact re-rank (0 or absent:
   * off). Each search keeps K*m candidates on the compressed keys and returns the exact float32
   * top-m among them, with float32 distances.
   */
  rerank?: number;
};

export interface MemoryIndexStats extends NativeIndexStats {
  kernel: { kernel: KernelName; bandwidth?: number; kappa?: number; delta?: number };
  /** Why this backend (the native selection's reason). */
  backendReason: string;
}

export interface SearchResult {
  /** b*m ids, -1 where fewer than m cases exist. */
  ids: Int32Array;
  /** b*m kernel values, sorted descending per query (0 in empty slots). */
  kernel: Float32Array;
  /** b*m squared Euclidean distances (+Infinity in empty slots). */
  dist2: Float32Array;
}

export interface SearchOptions {
  /** Caller-owned output arrays (b*m each) to fill instead of allocating new ones. */
  out?: Partial<SearchResult>;
}

export interface EstimateOptions {
  /** κ∅ ≥ 0, the void case's kernel score (MATH §3). Default 0 (NEC's read). */
  voidWeight?: number;
  /** q∅, the void case's value (the prior's own estimate). Default 0. */
  voidValue?: number;
  /** Caller-owned output arrays (b each) to fill instead of allocating new ones. */
  out?: Partial<EstimateResult>;
}

export interface EstimateResult {
  /** Q̂(x) per query (MATH §3). */
  value: Float32Array;
  /** λ(x) = Σk / (Σk + κ∅) per query. */
  confidence: Float32Array;
}

const KERNEL_CODES: Record<KernelName, number> = { gaussian: 0, cosine: 1, inverse: 2 };

/**
 * Limits on caller-controlled sizes and kernel parameters, checked here first and again in C++
 * (native/core/include/memq/limits.h; backendInfo().limits reports the native values). A call
 * over a limit is a RangeError naming the argument and the limit.
 */
export const LIMITS = Object.freeze({
  /** Elements of any one result array: search/estimate b*m, klImprove rows*cols and rows, getKeys ids*dim. */
  maxResultElements: 2 ** 28,
  /** m, results per query. */
  maxM: 2 ** 24,
  /** Cosine kernel: kappa <= 88, so exp(kappa) (~1.65e38) stays finite in float32. */
  maxKappa: 88,
  /** Inverse kernel: delta >= 1e-30, so 1/delta stays finite in float32. */
  minDelta: 1e-30,
  /** Keys and queries: squared norm (in double) at most 2^125 (~4.25e37), so every distance stays finite in float32. */
  maxSquaredNorm: 2 ** 125,
});

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (ArrayBuffer.isView(v)) return v.constructor.name;
  if (Array.isArray(v)) return 'Array';
  return typeof v;
}

/**
 * Whether a typed array's ArrayBuffer was detached (transferred, e.g. by structuredClone with
 * `transfer`): it then reads as length 0. Node 20 has no ArrayBuffer.prototype.detached, so a
 * zero-length buffer is probed: constructing a view on a detached buffer throws a TypeError.
 */
export function isDetached(v: ArrayBufferView): boolean {
  if (v.byteLength !== 0) return false;
  const buf = v.buffer as ArrayBuffer & { detached?: boolean };
  if (typeof buf.detached === 'boolean') return buf.detached;
  if (buf.byteLength !== 0) return false;
  if (typeof SharedArrayBuffer !== 'undefined' && (buf as unknown) instanceof SharedArrayBuffer) return false;
  try {
    new Uint8Array(buf);
    return false;
  } catch {
    return true;
  }
}

function checkAttached(name: string, v: ArrayBufferView): void {
  if (isDetached(v)) {
    throw new TypeError(`${name} is detached (its ArrayBuffer was transferred); pass a live ${v.constructor.name}`);
  }
}

function checkFloat32(name: string, v: unknown): Float32Array {
  if (!(v instanceof Float32Array)) {
    throw new TypeError(`${name} must be a Float32Array, got ${typeName(v)}`);
  }
  checkAttached(name, v);
  return v;
}

/** TypeError when two of the views share memory (the same array, or overlapping ranges of one buffer). */
function checkNoOverlap(where: string, views: [string, ArrayBufferView | undefined][]): void {
  const live = views.filter((e): e is [string, ArrayBufferView] => ArrayBuffer.isView(e[1]) && e[1].byteLength > 0);
  for (let i = 0; i < live.length; i++) {
    for (let j = i + 1; j < live.length; j++) {
      const [an, a] = live[i];
      const [bn, b] = live[j];
      if (a.buffer !== b.buffer) continue;
      if (a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength) {
        throw new TypeError(
          `${where}: ${an} and ${bn} share memory (the same array, or overlapping views of one ArrayBuffer); pass separate arrays`,
        );
      }
    }
  }
}

function checkResultElements(where: string, what: string, count: number): void {
  if (count > LIMITS.maxResultElements) {
    throw new RangeError(
      `${where}: ${what} = ${count} result elements is over the limit of 2^28 = ${LIMITS.maxResultElements} (split the call)`,
    );
  }
}

function checkInt32(name: string, v: unknown): Int32Array {
  if (v instanceof Int32Array) {
    checkAttached(name, v);
    return v;
  }
  if (Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= -2147483648 && x <= 2147483647)) {
    return Int32Array.from(v);
  }
  throw new TypeError(`${name} must be an Int32Array (or an array of int32 integers), got ${typeName(v)}`);
}

function checkInt(name: string, v: unknown, lo: number, hi = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number') {
    throw new TypeError(`${name} must be an integer (a number), got ${typeName(v)} ${String(v)}`);
  }
  // A number that is not an integer (1.5, NaN, Infinity) is a value out of range, as in JS itself.
  if (!Number.isInteger(v) || v < lo || v > hi) {
    throw new RangeError(`${name} must be an integer in [${lo}, ${hi}], got ${v}`);
  }
  return v;
}

function kernelParams(opts: KernelOptions): { name: KernelName; code: number; param: number } {
  const name = (opts.kernel ?? 'gaussian') as KernelName;
  if (!(name in KERNEL_CODES)) {
    throw new TypeError(`kernel must be 'gaussian', 'cosine' or 'inverse', got ${JSON.stringify(opts.kernel)}`);
  }
  // Types here; the value (bandwidth > 0, kappa in (0, 88], delta >= 1e-30: LIMITS) is checked
  // once, in the core (memq::make_kernel_params), whose RangeError names the parameter.
  const o = opts as Record<string, unknown>;
  const [key, dflt] = name === 'gaussian' ? ['bandwidth', 1] : name === 'cosine' ? ['kappa', 1] : ['delta', 1e-3];
  const param = o[key] ?? dflt;
  if (typeof param !== 'number') throw new TypeError(`${key} must be a number, got ${typeName(param)}`);
  return { name, code: KERNEL_CODES[name], param };
}

const BACKEND_NAMES = ['auto', 'cpu', 'cuda'] as const;
type BackendRequest = (typeof BACKEND_NAMES)[number];
const KEY_TYPES: readonly KeyType[] = ['float32', 'bf16', 'int8', 'fp16'];

/** The backend asked for: the option, else (absent or 'auto') MEMQ_BACKEND, else 'auto'. */
function requestedBackend(requested: unknown): { want: BackendRequest; fromEnv: boolean } {
  if (requested !== undefined && !BACKEND_NAMES.includes(requested as BackendRequest)) {
    throw new TypeError(`backend must be 'auto', 'cpu' or 'cuda', got ${JSON.stringify(requested)}`);
  }
  const want = (requested ?? 'auto') as BackendRequest;
  if (want !== 'auto') return { want, fromEnv: false };
  const env = process.env.MEMQ_BACKEND;
  if (env === undefined || env === '') return { want: 'auto', fromEnv: false };
  if (!BACKEND_NAMES.includes(env as BackendRequest)) {
    throw new TypeError(`MEMQ_BACKEND must be 'auto', 'cpu' or 'cuda', got ${JSON.stringify(env)}`);
  }
  return { want: env as BackendRequest, fromEnv: true };
}

interface BackendResolution {
  backend: BackendName;
  requested: BackendRequest;
  reason: string;
  selfTestReport: string;
}

/** Asks the native selection (memq::select_backend): 'auto' picks CUDA only with a device that passed the self-test. */
function resolveBackend(requested: unknown): BackendResolution {
  const { want, fromEnv } = requestedBackend(requested);
  const native = loadNative();
  const via = fromEnv ? ` (MEMQ_BACKEND=${want})` : '';
  if (typeof native.selectBackend !== 'function') {
    // An addon built before the CUDA routing: it has the CPU store only.
    const why = 'this build of the native addon predates CUDA routing (rebuild it)';
    if (want === 'cuda') throw new Error(`backend 'cuda'${via} is not available: ${why}`);
    return { backend: 'cpu', requested: want, reason: `${want}${via}: ${why}`, selfTestReport: '' };
  }
  const c = native.selectBackend(want);
  if (!c.ok) {
    const why = c.reason.replace(/^backend 'cuda' requested but unusable: /, '');
    throw new Error(`backend 'cuda'${via} is not available: ${why}`);
  }
  return {
    backend: c.backend === 'cuda' ? 'cuda' : 'cpu',
    requested: want,
    reason: `${c.reason}${via}`,
    selfTestReport: c.selfTestReport,
  };
}

function checkKeyType(v: unknown): KeyType {
  if (v === undefined) return 'float32';
  if (!KEY_TYPES.includes(v as KeyType)) {
    throw new TypeError(`keyType must be 'float32', 'bf16', 'int8' or 'fp16', got ${JSON.stringify(v)}`);
  }
  return v as KeyType;
}

const SEARCH_OUT = ['ids', 'kernel', 'dist2'];
const ESTIMATE_OUT = ['value', 'confidence'];

/**
 * An episodic key store with kernel retrieval. Keys are float32 rows of length `dim`; each has
 * a float32 value and a stable int32 id. Searches run on worker threads and see the index as it
 * was when they were called (writes made meanwhile do not change their result).
 */
export class MemoryIndex {
  readonly dim: number;
  /** The backend in use (what 'auto' / MEMQ_BACKEND resolved to). */
  readonly backend: BackendName;
  /** Why this backend, e.g. "auto: CUDA not used: no CUDA driver (libcuda.so.1 not found)". */
  readonly backendReason: string;
  /** How keys are stored. */
  readonly keyType: KeyType;
  /** Re-rank oversample factor (0: off). */
  readonly rerank: number;
  private readonly native: NativeMemoryIndex;
  private kernelName: KernelName;
  private kernelParam: number;

  constructor(options: MemoryIndexOptions) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError(`options must be an object like { dim: 384, kernel: 'gaussian', bandwidth: 0.5 }`);
    }
    this.dim = checkInt('dim', options.dim, 1, 1 << 20);
    const capacity = options.capacity === undefined ? 0 : checkInt('capacity', options.capacity, 0, 2147483647);
    const k = kernelParams(options);
    const keyType = checkKeyType(options.keyType);
    const rerank = options.rerank === undefined ? 0 : checkInt('rerank', options.rerank, 0, 4096);
    const chosen = resolveBackend(options.backend);
    if (keyType === 'fp16' && chosen.backend !== 'cuda') {
      throw new TypeError(
        `keyType 'fp16' needs the CUDA backend; the CPU backend stores 'float32', 'bf16' or 'int8' keys ` +
          `(backend resolved to 'cpu': ${chosen.reason})`,
      );
    }
    if (keyType === 'int8' && chosen.backend === 'cuda') {
      throw new TypeError(`keyType 'int8' is not supported on the CUDA backend (use 'bf16' or 'fp16', or backend 'cpu')`);
    }
    if (rerank > 0 && (chosen.backend !== 'cpu' || (keyType !== 'bf16' && keyType !== 'int8'))) {
      throw new TypeError(`rerank needs the CPU backend with keyType 'bf16' or 'int8' (got backend '${chosen.backend}', keyType '${keyType}')`);
    }
    this.rerank = rerank;
    this.backend = chosen.backend;
    this.backendReason = chosen.reason;
    this.keyType = keyType;
    this.kernelName = k.name;
    this.kernelParam = k.param;
    // Creating the device store can still fail (device memory): an Error with the reason.
    this.native = new (loadNative().NativeMemoryIndex)(this.dim, k.code, k.param, capacity, this.backend, keyType, rerank);
  }

  /** Number of live cases. */
  get size(): number {
    return this.native.stats().size;
  }

  get capacity(): number {
    return this.native.stats().capacity;
  }

  get kernel(): { kernel: KernelName; bandwidth?: number; kappa?: number; delta?: number } {
    const key = this.kernelName === 'gaussian' ? 'bandwidth' : this.kernelName === 'cosine' ? 'kappa' : 'delta';
    return { kernel: this.kernelName, [key]: this.kernelParam };
  }

  /** Change the kernel or its parameter (e.g. a bandwidth rule of MATH §9). */
  setKernel(options: KernelOptions): void {
    if (options === null || typeof options !== 'object') {
      throw new TypeError(`setKernel expects an object like { kernel: 'cosine', kappa: 5 }, got ${typeName(options)}`);
    }
    const k = kernelParams(options);
    this.native.setKernel(k.code, k.param);
    this.kernelName = k.name;
    this.kernelParam = k.param;
  }

  private rows(name: string, a: Float32Array): number {
    if (a.length % this.dim !== 0) {
      throw new RangeError(`${name}.length must be a multiple of dim (${this.dim}), got ${a.length}`);
    }
    return a.length / this.dim;
  }

  /** Appends n keys (n*dim floats) with n values; returns their new ids. */
  add(keys: Float32Array, values: Float32Array): Int32Array {
    checkFloat32('keys', keys);
    checkFloat32('values', values);
    const n = this.rows('keys', keys);
    if (values.length !== n) {
      throw new RangeError(`values.length must equal the number of keys (${n}), got ${values.length}`);
    }
    // Values (finite keys and values, the squared-norm limit, ids) are checked in the core.
    return this.native.add(keys, values);
  }

  /** Appends with given ids (strictly increasing, above every id issued): restoring saved memory. */
  addWithIds(ids: Int32Array | number[], keys: Float32Array, values: Float32Array): void {
    const idArr = checkInt32('ids', ids);
    checkFloat32('keys', keys);
    checkFloat32('values', values);
    const n = this.rows('keys', keys);
    if (values.length !== n || idArr.length !== n) {
      throw new RangeError(`ids.length and values.length must equal the number of keys (${n})`);
    }
    // Values (finite keys and values, the squared-norm limit, ids) are checked in the core.
    this.native.addWithIds(idArr, keys, values);
  }

  /**
   * Memory-maps a float32 key file (ids.length × dim floats, little-endian, row-major: a
   * snapshot's keys.f32) as this fresh index's first rows, with these ids (strictly increasing)
   * and values. Nothing of the keys is read here: pages come in as searches touch them, and the
   * first search checks the rows (a non-finite or oversized row fails it, naming the file and the
   * row). Later adds go to RAM after them. The file must not be truncated or rewritten in place
   * while mapped (saves never do: they write new generations). Tombstones are not compacted
   * automatically; compact() copies the live rows into RAM. With keyType 'bf16' / 'int8' the
   * compressed keys are built from the file now (one read), and with `rerank` the float32 keys
   * the re-rank reads stay mapped instead of in RAM. CPU backend only.
   */
  mapKeys(file: string, ids: Int32Array | number[], values: Float32Array): void {
    if (typeof file !== 'string' || file === '') throw new TypeError(`mapKeys: file must be a path string, got ${typeName(file)}`);
    const idArr = checkInt32('ids', ids);
    checkFloat32('values', values);
    if (values.length !== idArr.length) throw new RangeError(`mapKeys: ids.length (${idArr.length}) and values.length (${values.length}) must be equal`);
    this.native.mapKeys(file, idArr, values);
  }

  updateValues(ids: Int32Array | number[], values: Float32Array): void {
    const idArr = checkInt32('ids', ids);
    checkFloat32('values', values);
    if (values.length !== idArr.length) {
      throw new RangeError(`values.length must equal ids.length (${idArr.length}), got ${values.length}`);
    }
    // Values (finite) are checked in the core.
    this.native.updateValues(idArr, values);
  }

  remove(ids: Int32Array | number[]): void {
    this.native.remove(checkInt32('ids', ids));
  }

  getKeys(ids: Int32Array | number[]): Float32Array {
    const idArr = checkInt32('ids', ids);
    checkResultElements('getKeys', `ids.length*dim = ${idArr.length}*${this.dim}`, idArr.length * this.dim);
    return this.native.getKeys(idArr);
  }

  getValues(ids: Int32Array | number[]): Float32Array {
    return this.native.getValues(checkInt32('ids', ids));
  }

  /** Live ids in insertion order. */
  ids(): Int32Array {
    return this.native.liveIds();
  }

  has(id: number): boolean {
    return this.native.contains(Int32Array.of(checkInt('id', id, -2147483648, 2147483647)))[0] === 1;
  }

  /** Rewrites storage without tombstones (also happens automatically as removals accumulate). */
  compact(): void {
    this.native.compact();
  }

  clear(): void {
    this.native.clear();
  }

  /** Sizes and settings; memoryBytes is host memory on the CPU and device memory on CUDA. */
  stats(): MemoryIndexStats {
    return {
      ...this.native.stats(),
      kernel: this.kernel,
      backend: this.backend,
      keyType: this.keyType,
      backendReason: this.backendReason,
    };
  }

  private checkQueries(where: string, queries: Float32Array, m: number, out: object | undefined, keys: string[]): void {
    checkFloat32('queries', queries);
    const b = this.rows('queries', queries);
    checkInt('m', m, 1, LIMITS.maxM);
    checkResultElements(where, `b*m = ${b}*${m}`, b * m);
    // Query values (finite, the squared-norm limit) are checked in the core (memq::validate_queries).
    if (out !== undefined && out !== null) {
      if (typeof out !== 'object') throw new TypeError('out must be an object of typed arrays');
      const o = out as Record<string, unknown>;
      const views: [string, ArrayBufferView | undefined][] = [['queries', queries]];
      for (const k of keys) {
        const v = o[k];
        if (v === undefined) continue;
        if (!ArrayBuffer.isView(v)) throw new TypeError(`out.${k} must be a ${k === 'ids' ? 'Int32Array' : 'Float32Array'}, got ${typeName(v)}`);
        checkAttached(`out.${k}`, v);
        views.push([`out.${k}`, v]);
      }
      checkNoOverlap(where, views);
    }
  }

  /** Top-m cases per query by kernel value, descending (MATH §2). Runs on a worker thread. */
  search(queries: Float32Array, m: number, opts?: SearchOptions): Promise<SearchResult> {
    try {
      this.checkQueries('search', queries, m, opts?.out, SEARCH_OUT);
      return this.native.search(queries, m, opts?.out);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** As search, on the calling thread: for small batches in a tight loop. */
  searchSync(queries: Float32Array, m: number, opts?: SearchOptions): SearchResult {
    this.checkQueries('searchSync', queries, m, opts?.out, SEARCH_OUT);
    return this.native.searchSync(queries, m, opts?.out);
  }

  private voidArgs(opts: EstimateOptions | undefined): [number, number] {
    const voidWeight = opts?.voidWeight ?? 0;
    const voidValue = opts?.voidValue ?? 0;
    // Types here; values (finite, >= 0) in the core's Store::bind_search.
    if (typeof voidWeight !== 'number') throw new TypeError(`voidWeight must be a number, got ${typeName(voidWeight)}`);
    if (typeof voidValue !== 'number') throw new TypeError(`voidValue must be a number, got ${typeName(voidValue)}`);
    return [voidWeight, voidValue];
  }

  /** Kernel-weighted value with the void case over the top-m (MATH §3), per query. */
  estimate(queries: Float32Array, m: number, opts?: EstimateOptions): Promise<EstimateResult> {
    try {
      this.checkQueries('estimate', queries, m, opts?.out, ESTIMATE_OUT);
      const v = this.voidArgs(opts);
      return this.native.estimate(queries, m, v[0], v[1], opts?.out);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  estimateSync(queries: Float32Array, m: number, opts?: EstimateOptions): EstimateResult {
    this.checkQueries('estimateSync', queries, m, opts?.out, ESTIMATE_OUT);
    const [w, q] = this.voidArgs(opts);
    return this.native.estimateSync(queries, m, w, q, opts?.out);
  }
}

export interface KlImproveInput {
  /** rows*cols log μ (−Infinity allowed: μ = 0). */
  logPrior: Float32Array;
  /** rows*cols Q values. */
  q: Float32Array;
  rows: number;
  cols: number;
  /** Temperature α > 0 (α = 0: the greedy limit on the support of μ). */
  alpha: number;
  /** Ragged rows: the number of valid candidates per row (≤ cols). */
  rowLengths?: Int32Array | number[];
}

function klArgs(input: KlImproveInput) {
  if (input === null || typeof input !== 'object') {
    throw new TypeError('klImprove expects { logPrior, q, rows, cols, alpha, rowLengths? }');
  }
  const logPrior = checkFloat32('logPrior', input.logPrior);
  const q = checkFloat32('q', input.q);
  const rows = checkInt('rows', input.rows, 0, LIMITS.maxResultElements);
  const cols = checkInt('cols', input.cols, 0, LIMITS.maxResultElements);
  checkResultElements('klImprove', `rows*cols = ${rows}*${cols}`, rows * cols);
  if (typeof input.alpha !== 'number') throw new TypeError(`alpha must be a number, got ${typeName(input.alpha)}`);
  if (!Number.isFinite(input.alpha) || input.alpha < 0) {
    throw new RangeError(`alpha must be a finite number >= 0, got ${String(input.alpha)}`);
  }
  if (logPrior.length !== rows * cols) {
    throw new RangeError(`logPrior.length must be rows*cols (${rows * cols}), got ${logPrior.length}`);
  }
  if (q.length !== rows * cols) throw new RangeError(`q.length must be rows*cols (${rows * cols}), got ${q.length}`);
  for (let i = 0; i < logPrior.length; i++) {
    const x = logPrior[i];
    if (Number.isNaN(x) || x === Infinity) throw new RangeError(`logPrior[${i}] must be finite or -Infinity, got ${x}`);
    if (!Number.isFinite(q[i])) throw new RangeError(`q[${i}] must be finite, got ${q[i]}`);
  }
  let rowLengths: Int32Array | undefined;
  if (input.rowLengths !== undefined) {
    rowLengths = checkInt32('rowLengths', input.rowLengths);
    if (rowLengths.length !== rows) {
      throw new RangeError(`rowLengths.length must equal rows (${rows}), got ${rowLengths.length}`);
    }
    for (let i = 0; i < rows; i++) {
      if (rowLengths[i] < 0 || rowLengths[i] > cols) {
        throw new RangeError(`rowLengths[${i}] must be in [0, cols=${cols}], got ${rowLengths[i]}`);
      }
    }
  }
  return { logPrior, q, rows, cols, alpha: input.alpha, rowLengths };
}

/**
 * KL-regularised policy improvement (MATH §5), row-wise and in log space:
 * π ∝ μ·exp(Q/α), V = α·log Σ μ·exp(Q/α). Returns rows*cols policy and rows values.
 */
export function klImprove(input: KlImproveInput): { policy: Float32Array; value: Float32Array } {
  const a = klArgs(input);
  return loadNative().klImprove(a.logPrior, a.q, a.rows, a.cols, a.alpha, a.rowLengths);
}

/** As klImprove, on a worker thread (for large batches). */
export function klImproveAsync(input: KlImproveInput): Promise<{ policy: Float32Array; value: Float32Array }> {
  try {
    const a = klArgs(input);
    return loadNative().klImproveAsync(a.logPrior, a.q, a.rows, a.cols, a.alpha, a.rowLengths);
  } catch (err) {
    return Promise.reject(err);
  }
}

export interface BackendInfo {
  /**
   * The backend a MemoryIndex created without a `backend` option uses here: the native
   * selection for 'auto', or MEMQ_BACKEND when set. When MEMQ_BACKEND asks for something that
   * cannot be used, the backend 'auto' would pick, and `error` says why such an index throws.
   */
  backend: BackendName;
  /** Why that backend was chosen (device and self-test, or why CUDA is not used). */
  reason: string;
  /** What was asked: 'auto', or MEMQ_BACKEND's value. */
  requested: string;
  /** Set when MEMQ_BACKEND is invalid or names an unusable backend: the error `new MemoryIndex()` throws. */
  error?: string;
  /** The CUDA self-test's report, when it ran. */
  selfTest?: string;
  threads: number;
  simd: string;
  blas: string;
  cudaCompiled: boolean;
  device?: string;
  /** Where an LlmModel with device 'auto' runs ('cuda' only with a device that passes the LLM self-test). */
  llmDevice: 'cpu' | 'cuda';
  /** Why LlmModel's 'auto' chooses llmDevice. */
  llmReason: string;
  /** The LLM self-test's report, when it ran. */
  llmSelfTest?: string;
  buildSystem: string;
  /** The addon file that loaded. */
  addonPath?: string;
  /** Where it came from: the package's prebuild, a source build (build/Release), or MEMQ_ADDON. */
  addonKind?: AddonKind;
  /** MEMQ_SIMD / MEMQ_THREADS as the native side accepted them (null: unset or rejected). */
  envParsed?: { MEMQ_SIMD: string | null; MEMQ_THREADS: number | null };
  /** Why a MEMQ_SIMD / MEMQ_THREADS value was rejected by the native side (then ignored). */
  envErrors?: string[];
  /** The native limits (limits.h); equal to LIMITS. */
  limits?: NativeLimits;
}

export function backendInfo(): BackendInfo {
  const { autoBackend, autoReason, ...n } = loadNative().backendInfo();
  let backend: BackendName = autoBackend === 'cuda' ? 'cuda' : 'cpu';
  let reason = autoReason;
  let requested = 'auto';
  let error: string | undefined;
  let selfTest: string | undefined;
  try {
    const r = resolveBackend(undefined);
    backend = r.backend;
    reason = r.reason;
    requested = r.requested;
    selfTest = r.selfTestReport || undefined;
  } catch (err) {
    requested = process.env.MEMQ_BACKEND ?? 'auto';
    error = err instanceof Error ? err.message : String(err);
  }
  return {
    backend,
    reason,
    requested,
    ...(error !== undefined ? { error } : {}),
    ...(selfTest !== undefined ? { selfTest } : {}),
    ...n,
    addonPath: nativePath(),
    addonKind: nativeKind(),
  };
}

/** Sets the native thread pool's size (0 = default: MEMQ_THREADS or all cores). */
export function setThreads(n: number): number {
  return loadNative().setThreads(checkInt('threads', n, 0, 4096));
}
