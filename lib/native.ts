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
  /** Bytes the store holds: host memory (cpu) or device memory (cuda). */
  memoryBytes: number;
  backend: 'cpu' | 'cuda';
  keyType: 'float32' | 'bf16' | 'fp16';
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
  /** MEMQ_SIMD / MEMQ_THREADS as accepted by the native side (null: unset or rejected). */
  envParsed?: { MEMQ_SIMD: string | null; MEMQ_THREADS: number | null };
  /** Why a MEMQ_SIMD / MEMQ_THREADS value was rejected (then ignored); absent in older builds. */
  envErrors?: string[];
  /** native/core/include/memq/limits.h */
  limits?: NativeLimits;
}
export interface NativeLimits {
  maxResultElements: number;
  maxM: number;
  maxKappa: number;
  minDelta: number;
  maxLayers: number;
  maxParams: number;
  maxActivationFloats: number;
}
export interface NativeBackendChoice {
  /** false when 'cuda' was requested and cannot be used (reason says why). */
  ok: boolean;
  backend: 'cpu' | 'cuda';
  requested: string;
  reason: string;
  /** The CUDA self-test's report when it ran ('' otherwise). */
  selfTestReport: string;
}
export interface NativeLlmModel {
  save(dir: string, bf16?: boolean): void;
  config(): string;
  numParams(): number;
  score(
    promptTokens: Int32Array, promptOffsets: Int32Array, candTokens: Int32Array, candOffsets: Int32Array,
    candGroups: Int32Array, lengthNormalize: boolean, lora?: NativeLoraAdapter | null,
  ): Promise<Float32Array>;
  tokenLogprobs(tokens: Int32Array, offsets: Int32Array, lora?: NativeLoraAdapter | null): Promise<Float32Array>;
  embedMean(tokens: Int32Array, offsets: Int32Array, lora?: NativeLoraAdapter | null): Promise<Float32Array>;
  clone(): Promise<NativeLlmModel>;
  mergeLora(adapter: NativeLoraAdapter): Promise<NativeLlmModel>;
}
export interface NativeLoraAdapter {
  save(dir: string): void;
  /** JSON {r, lora_alpha, target_modules, use_rslora, scale, base_model_name_or_path}. */
  config(): string;
  numParams(): number;
  getParams(): Float32Array;
  setParams(params: Float32Array): Promise<void>;
  clone(): NativeLoraAdapter;
}
export interface NativeTrainStats {
  loss: number;
  gradNorm: number;
  step: number;
  microBatches: number;
}
export interface NativeTrainerState {
  m: Float32Array;
  v: Float32Array;
  t: number;
}
export interface NativeTrainer {
  accumulate(tokens: Int32Array, offsets: Int32Array, weights: Float32Array): Promise<number>;
  step(): Promise<NativeTrainStats>;
  steps(): number;
  getState(): Promise<NativeTrainerState>;
  setState(state: NativeTrainerState): Promise<void>;
}
export interface NativeAddon {
  llmCreateRandom(configJson: string, seed: number, initStd: number): NativeLlmModel;
  llmLoad(dir: string): Promise<NativeLlmModel>;
  NativeLoraAdapter: {
    /** configJson: {r, lora_alpha, target_modules, use_rslora, base_model_name_or_path} (PEFT names). */
    create(model: NativeLlmModel, configJson: string, seed: number): NativeLoraAdapter;
    load(dir: string, model: NativeLlmModel): Promise<NativeLoraAdapter>;
  };
  /** optionsJson: {lr, beta1, beta2, eps, weightDecay, clipNorm, lossNorm: 'weightSum' | 'sum'}. */
  NativeLoraTrainer: new (model: NativeLlmModel, adapter: NativeLoraAdapter, optionsJson: string) => NativeTrainer;
  NativeModelTrainer: new (model: NativeLlmModel, optionsJson: string) => NativeTrainer;
  NativeMemoryIndex: new (
    dim: number, kernelType: number, param: number, capacity: number, backend?: 'cpu' | 'cuda',
    keyType?: 'float32' | 'bf16' | 'fp16',
  ) => NativeMemoryIndex;
  klImprove(
    logPrior: Float32Array, q: Float32Array, rows: number, cols: number, alpha: number, rowLengths?: Int32Array,
  ): { policy: Float32Array; value: Float32Array };
  klImproveAsync(
    logPrior: Float32Array, q: Float32Array, rows: number, cols: number, alpha: number, rowLengths?: Int32Array,
  ): Promise<{ policy: Float32Array; value: Float32Array }>;
  backendInfo(): NativeBackendInfo;
  selectBackend(requested: 'auto' | 'cpu' | 'cuda'): NativeBackendChoice;
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
