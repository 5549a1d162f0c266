/**
 * Loads the native addon (built by `npm install`: cmake-js into build/Release, or node-gyp).
 * MEMQ_ADDON=/path/to/memq.node overrides the search (used by CI to test the node-gyp build).
 */
import * as fs from 'fs';
import * as path from 'path';

export interface NativeSearchResult {
  ids: Int32Array;
  kernel: Float32Array;
  dist2: Float32Array;
}
export interface NativeEstimateResult {
  value: Float32Array;
  confidence: Float32Array;
}
export interface NativeIndexStats {
  size: number;
  rows: number;
  reservedRows: number;
  dim: number;
  capacity: number;
  nextId: number;
  memoryBytes: number;
}
export interface NativeMemoryIndex {
  add(keys: Float32Array, values: Float32Array): Int32Array;
  addWithIds(ids: Int32Array, keys: Float32Array, values: Float32Array): void;
  updateValues(ids: Int32Array, values: Float32Array): void;
  remove(ids: Int32Array): void;
  getKeys(ids: Int32Array): Float32Array;
  getValues(ids: Int32Array): Float32Array;
  liveIds(): Int32Array;
  contains(ids: Int32Array): Uint8Array;
  compact(): void;
  clear(): void;
  setKernel(kernelType: number, param: number): void;
  search(queries: Float32Array, m: number, out?: Partial<NativeSearchResult>): Promise<NativeSearchResult>;
  searchSync(queries: Float32Array, m: number, out?: Partial<NativeSearchResult>): NativeSearchResult;
  estimate(
    queries: Float32Array, m: number, voidWeight: number, voidValue: number, out?: Partial<NativeEstimateResult>,
  ): Promise<NativeEstimateResult>;
  estimateSync(
    queries: Float32Array, m: number, voidWeight: number, voidValue: number, out?: Partial<NativeEstimateResult>,
  ): NativeEstimateResult;
  stats(): NativeIndexStats;
}
export interface NativeBackendInfo {
  threads: number;
  simd: string;
  blas: string;
  cudaCompiled: boolean;
  autoBackend: string;
  autoReason: string;
  device?: string;
  buildSystem: string;
}
export interface NativeLlmModel {
  save(dir: string, bf16?: boolean): void;
  config(): string;
  numParams(): number;
  score(
    promptTokens: Int32Array, promptOffsets: Int32Array, candTokens: Int32Array, candOffsets: Int32Array,
    candGroups: Int32Array, lengthNormalize: boolean,
  ): Promise<Float32Array>;
  tokenLogprobs(tokens: Int32Array, offsets: Int32Array): Promise<Float32Array>;
  embedMean(tokens: Int32Array, offsets: Int32Array): Promise<Float32Array>;
}
export interface NativeAddon {
  llmCreateRandom(configJson: string, seed: number, initStd: number): NativeLlmModel;
  llmLoad(dir: string): Promise<NativeLlmModel>;
  NativeMemoryIndex: new (dim: number, kernelType: number, param: number, capacity: number) => NativeMemoryIndex;
  klImprove(
    logPrior: Float32Array, q: Float32Array, rows: number, cols: number, alpha: number, rowLengths?: Int32Array,
  ): { policy: Float32Array; value: Float32Array };
  klImproveAsync(
    logPrior: Float32Array, q: Float32Array, rows: number, cols: number, alpha: number, rowLengths?: Int32Array,
  ): Promise<{ policy: Float32Array; value: Float32Array }>;
  backendInfo(): NativeBackendInfo;
  setThreads(n: number): number;
  measureCeilings(
    b: number, n: number, d: number, seconds: number, bandwidthBytes: number,
  ): { gemmGflops: number; gemmShape: string; bandwidthGBs: number; bandwidthBytes: number; threads: number; blas: string };
}

let cached: { addon: NativeAddon; path: string } | undefined;

/** The package root (where package.json lives), from either lib/ (vitest) or dist/cjs/ (build). */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(path.join(dir, 'native'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..');
}

export function addonCandidates(): string[] {
  const root = packageRoot();
  const list: string[] = [];
  if (process.env.MEMQ_ADDON) list.push(path.resolve(process.env.MEMQ_ADDON));
  list.push(path.join(root, 'build', 'Release', 'memq.node'));
  list.push(path.join(root, 'build', 'Debug', 'memq.node'));
  return list;
}

export function loadNative(): NativeAddon {
  if (cached) return cached.addon;
  const tried: string[] = [];
  for (const p of addonCandidates()) {
    if (!fs.existsSync(p)) {
      tried.push(`${p} (missing)`);
      continue;
    }
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const addon = require(p) as NativeAddon;
    cached = { addon, path: p };
    return addon;
  }
  throw new Error(
    `memq: the native addon is not built. Run 'npm install' (or 'npm run build:native') in ${packageRoot()}.\nTried:\n  ${tried.join('\n  ')}`,
  );
}

export function nativePath(): string | undefined {
  return cached?.path;
}
