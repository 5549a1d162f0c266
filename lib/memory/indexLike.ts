/**
 * The part of the native MemoryIndex (lib/retrieval.ts) that EpisodicMemory uses; the tests'
 * float64 ReferenceIndex (test/helpers/referenceIndex.ts) implements it too.
 */
import type { KernelSettings } from '../policy/kernels';

export interface IndexSearchResult {
  ids: Int32Array;
  kernel: Float32Array;
  dist2: Float32Array;
}

export interface IndexEstimateResult {
  value: Float32Array;
  confidence: Float32Array;
}

export interface IndexLike {
  readonly dim: number;
  readonly size: number;
  readonly kernel: KernelSettings;
  setKernel(options: KernelSettings): void;
  add(keys: Float32Array, values: Float32Array): Int32Array;
  addWithIds(ids: Int32Array, keys: Float32Array, values: Float32Array): void;
  updateValues(ids: Int32Array, values: Float32Array): void;
  remove(ids: Int32Array): void;
  getKeys(ids: Int32Array): Float32Array;
  getValues(ids: Int32Array): Float32Array;
  ids(): Int32Array;
  search(queries: Float32Array, m: number): Promise<IndexSearchResult>;
  searchSync(queries: Float32Array, m: number): IndexSearchResult;
  estimate(queries: Float32Array, m: number, opts?: { voidWeight?: number; voidValue?: number }): Promise<IndexEstimateResult>;
  estimateSync(queries: Float32Array, m: number, opts?: { voidWeight?: number; voidValue?: number }): IndexEstimateResult;
}
