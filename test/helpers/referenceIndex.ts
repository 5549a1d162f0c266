/**
 * A plain TypeScript MemoryIndex with the same contract as the native one (MATH §2–§3):
 * brute-force kernels in float64, top-M sorted descending, ties to the earlier-inserted case.
 * It is the reference the native index is checked against (test-only: the library always runs
 * on the native addon). O(n·d) per query. Importing this module registers it as the test-only
 * EpisodicMemory backend 'js', so that tests can run a memory on it.
 */
import { kernelBetween, kernelWeightedValue, type KernelSettings } from '../../lib/policy/kernels';
import type { IndexEstimateResult, IndexLike, IndexSearchResult } from '../../lib/memory/indexLike';
import { finiteFloat32, keyRowProblem } from '../../lib/memory/validate';
import { registerTestIndex } from '../../lib/memory/episodic';

export class ReferenceIndex implements IndexLike {
  readonly dim: number;
  private settings: KernelSettings;
  private readonly rows = new Map<number, { key: Float32Array; value: number }>();
  private nextId = 0;

  constructor(options: KernelSettings & { dim: number }) {
    if (!(Number.isInteger(options.dim) && options.dim >= 1)) throw new RangeError(`dim must be an integer >= 1, got ${options.dim}`);
    this.dim = options.dim;
    this.settings = normalise(options);
  }

  get size(): number {
    return this.rows.size;
  }

  get kernel(): KernelSettings {
    return { ...this.settings };
  }

  setKernel(options: KernelSettings): void {
    this.settings = normalise(options);
  }

  add(keys: Float32Array, values: Float32Array): Int32Array {
    const n = this.checkRows(keys, values);
    const ids = new Int32Array(n);
    for (let i = 0; i < n; i++) ids[i] = this.nextId + i;
    this.insert(ids, keys, values);
    return ids;
  }

  addWithIds(ids: Int32Array, keys: Float32Array, values: Float32Array): void {
    const n = this.checkRows(keys, values);
    if (ids.length !== n) throw new RangeError(`ids.length must equal the number of keys (${n})`);
    for (let i = 0; i < n; i++) {
      if (ids[i] < this.nextId || (i > 0 && ids[i] <= ids[i - 1])) {
        throw new RangeError(`ids must be strictly increasing and above every id issued (${this.nextId}), got ${ids[i]}`);
      }
    }
    this.insert(ids, keys, values);
  }

  private insert(ids: Int32Array, keys: Float32Array, values: Float32Array): void {
    for (let i = 0; i < ids.length; i++) {
      this.rows.set(ids[i], { key: keys.slice(i * this.dim, (i + 1) * this.dim), value: Math.fround(values[i]) });
    }
    if (ids.length) this.nextId = ids[ids.length - 1] + 1;
  }

  /**
   * Shapes (TypeError) and values (RangeError) of rows to add, as the native index checks them:
   * every key component finite, every key's squared norm finite in float32, values finite
   * float32. Nothing is stored unless every row passes.
   */
  private checkRows(keys: Float32Array, values: Float32Array): number {
    if (!(keys instanceof Float32Array)) throw new TypeError('keys must be a Float32Array');
    if (!(values instanceof Float32Array)) throw new TypeError('values must be a Float32Array');
    if (keys.length % this.dim !== 0) throw new TypeError(`keys.length must be a multiple of dim (${this.dim}), got ${keys.length}`);
    const n = keys.length / this.dim;
    if (values.length !== n) throw new TypeError(`values.length must equal the number of keys (${n}), got ${values.length}`);
    for (let r = 0; r < n; r++) {
      const p = keyRowProblem(keys, r, this.dim);
      if (p) throw new RangeError(`keys row ${r}: ${p}`);
    }
    checkValues(values);
    return n;
  }

  private row(id: number) {
    const r = this.rows.get(id);
    if (!r) throw new RangeError(`unknown id ${id}`);
    return r;
  }

  updateValues(ids: Int32Array, values: Float32Array): void {
    if (values.length !== ids.length) throw new TypeError('values.length must equal ids.length');
    checkValues(values);
    ids.forEach((id) => this.row(id));
    ids.forEach((id, i) => (this.row(id).value = Math.fround(values[i])));
  }

  remove(ids: Int32Array): void {
    ids.forEach((id) => this.row(id));
    ids.forEach((id) => this.rows.delete(id));
  }

  getKeys(ids: Int32Array): Float32Array {
    const out = new Float32Array(ids.length * this.dim);
    ids.forEach((id, i) => out.set(this.row(id).key, i * this.dim));
    return out;
  }

  getValues(ids: Int32Array): Float32Array {
    return Float32Array.from(ids, (id) => this.row(id).value);
  }

  ids(): Int32Array {
    return Int32Array.from(this.rows.keys());
  }

  searchSync(queries: Float32Array, m: number): IndexSearchResult {
    const d = this.dim;
    const b = queries.length / d;
    const ids = new Int32Array(b * m).fill(-1);
    const kernel = new Float32Array(b * m);
    const dist2 = new Float32Array(b * m).fill(Infinity);
    const live = [...this.rows.entries()];
    for (let q = 0; q < b; q++) {
      const scored = live.map(([id, r], order) => {
        let d2 = 0;
        for (let j = 0; j < d; j++) {
          const x = queries[q * d + j] - r.key[j];
          d2 += x * x;
        }
        return { id, order, k: kernelBetween(this.settings, queries, q, r.key, 0, d), d2 };
      });
      scored.sort((a, c) => c.k - a.k || a.order - c.order);
      for (let j = 0; j < Math.min(m, scored.length); j++) {
        ids[q * m + j] = scored[j].id;
        kernel[q * m + j] = scored[j].k;
        dist2[q * m + j] = scored[j].d2;
      }
    }
    return { ids, kernel, dist2 };
  }

  async search(queries: Float32Array, m: number): Promise<IndexSearchResult> {
    return this.searchSync(queries, m);
  }

  estimateSync(queries: Float32Array, m: number, opts?: { voidWeight?: number; voidValue?: number }): IndexEstimateResult {
    const s = this.searchSync(queries, m);
    const b = queries.length / this.dim;
    const value = new Float32Array(b);
    const confidence = new Float32Array(b);
    for (let q = 0; q < b; q++) {
      const k: number[] = [];
      const v: number[] = [];
      for (let j = 0; j < m; j++) {
        const id = s.ids[q * m + j];
        if (id < 0) continue;
        k.push(s.kernel[q * m + j]);
        v.push(this.rows.get(id)!.value);
      }
      const e = kernelWeightedValue(k, v, opts?.voidWeight ?? 0, opts?.voidValue ?? 0);
      value[q] = e.value;
      confidence[q] = e.confidence;
    }
    return { value, confidence };
  }

  async estimate(queries: Float32Array, m: number, opts?: { voidWeight?: number; voidValue?: number }): Promise<IndexEstimateResult> {
    return this.estimateSync(queries, m, opts);
  }
}

/** Values must be finite once stored as float32 (a finite double may not be). */
function checkValues(values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) {
    if (!finiteFloat32(values[i])) throw new RangeError(`values[${i}] is ${values[i]}, expected a finite float32`);
  }
}

function normalise(k: KernelSettings): KernelSettings {
  const kernel = k.kernel ?? 'gaussian';
  if (kernel === 'gaussian') return { kernel, bandwidth: k.bandwidth ?? 1 };
  if (kernel === 'cosine') return { kernel, kappa: k.kappa ?? 1 };
  if (kernel === 'inverse') return { kernel, delta: k.delta ?? 1e-3 };
  throw new RangeError(`kernel must be 'gaussian', 'cosine' or 'inverse', got ${JSON.stringify(kernel)}`);
}

registerTestIndex((dim, kernel) => new ReferenceIndex({ dim, ...kernel }));
