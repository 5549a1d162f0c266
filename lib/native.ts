/**
 * Loads the native addon: MEMQ_ADDON=/path/to/memq.node when set (CI tests the node-gyp build
 * this way), else a source build (build/Release/memq.node: `npm install` in a clone, or an
 * installed package built with MEMQ_BUILD_FROM_SOURCE=1), else the prebuilt addon the npm
 * package ships (prebuilds/<platform>-<arch>/, found by node-gyp-build).
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
  /** Rows whose float32 keys are memory-mapped from a file (MemoryIndex.mapKeys); not in memoryBytes. */
  mappedRows: number;
  backend: 'cpu' | 'cuda';
  keyType: 'float32' | 'bf16' | 'int8' | 'fp16';
}
export interface NativeMemoryIndex {
  add(keys: Float32Array, values: Float32Array): Int32Array;
  addWithIds(ids: Int32Array, keys: Float32Array, values: Float32Array): void;
  mapKeys(file: string, ids: Int32Array, values: Float32Array): void;
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
  /** Where an LlmModel with device 'auto' runs ('cuda' only when a device exists and the LLM self-test passes). */
  llmDevice: 'cpu' | 'cuda';
  /** Why (the device probe and LLM self-test, or why CUDA is not used). */
  llmReason: string;
  /** The LLM self-test's report, when it ran. */
  llmSelfTest?: string;
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
    candGroups: Int32Array, lengthNormalize: boolean, lora: NativeLoraAdapter | null | undefined,
    prior: { temperature: number; q: Float32Array; alpha: number },
  ): Promise<{ logPrior: Float32Array; policy: Float32Array; value: Float32Array }>;
  score(
    promptTokens: Int32Array, promptOffsets: Int32Array, candTokens: Int32Array, candOffsets: Int32Array,
    candGroups: Int32Array, lengthNormalize: boolean, lora?: NativeLoraAdapter | null, prior?: { temperature: number },
  ): Promise<Float32Array>;
  tokenLogprobs(tokens: Int32Array, offsets: Int32Array, lora?: NativeLoraAdapter | null): Promise<Float32Array>;
  embedMean(tokens: Int32Array, offsets: Int32Array, lora?: NativeLoraAdapter | null): Promise<Float32Array>;
  clone(): Promise<NativeLlmModel>;
  mergeLora(adapter: NativeLoraAdapter): Promise<NativeLlmModel>;
  device(): NativeLlmDevice;
}
export interface NativeLlmDevice {
  device: 'cpu' | 'cuda';
  /** The device copy's precision ('bf16' | 'fp32'); null on the CPU. */
  precision: 'bf16' | 'fp32' | null;
  reason: string;
  description: string;
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
  llmCreateRandom(configJson: string, seed: number, initStd: number, device?: string, precision?: string): NativeLlmModel;
  llmLoad(dir: string, device?: string, precision?: string): Promise<NativeLlmModel>;
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
    keyType?: 'float32' | 'bf16' | 'int8' | 'fp16', rerank?: number,
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
  /**
   * Regions of a file mapped private (copy-on-write): one ArrayBuffer per { offset (page-aligned),
   * bytes, capacity }, holding the file's bytes then zeros up to capacity; writes never reach the
   * file. RangeError when the file is shorter than a region.
   */
  mapFile(path: string, regions: { offset: number; bytes: number; capacity: number }[]): ArrayBuffer[];
}

/** Where the loaded addon came from: MEMQ_ADDON, a source build in build/, or the package's prebuild. */
export type AddonKind = 'MEMQ_ADDON' | 'source build' | 'prebuild';

let cached: { addon: NativeAddon; path: string; kind: AddonKind } | undefined;

/** The package root (where memq's package.json lives), from either lib/ (vitest) or dist/cjs/lib/ (build). */
export function packageRoot(): string {
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        if (JSON.parse(fs.readFileSync(pj, 'utf8')).name === 'memq') return dir;
      } catch {
        // not ours (or unreadable): keep looking upwards
      }
    }
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..');
}

// ---- environment variables the native core reads ------------------------------------------------
// The core reads MEMQ_SIMD and MEMQ_THREADS once and would ignore a value it cannot parse; the
// loader refuses such values instead, before the addon is loaded, so a typo is never silent.

/** MEMQ_SIMD: the vector ISA cap (native/core/cpu/cpu_features.cpp); unset or empty = the CPU's best. */
export const SIMD_LEVELS = ['scalar', 'avx2', 'avx512'] as const;
/** MEMQ_THREADS: the native pool's default size (native/core/cpu/thread_pool.cpp caps it at 1024). */
export const MAX_ENV_THREADS = 1024;
/** MEMQ_BACKEND: the backend a MemoryIndex without a `backend` option uses. */
export const BACKEND_REQUESTS = ['auto', 'cpu', 'cuda'] as const;

/** Throws an Error naming the variable and its accepted forms when MEMQ_SIMD / MEMQ_THREADS / MEMQ_BACKEND is malformed. */
export function checkNativeEnv(env: NodeJS.ProcessEnv = process.env): void {
  const simd = env.MEMQ_SIMD;
  if (simd !== undefined && simd !== '' && !(SIMD_LEVELS as readonly string[]).includes(simd)) {
    throw new Error(
      `MEMQ_SIMD must be one of ${SIMD_LEVELS.map((v) => `'${v}'`).join(', ')} (the highest vector ISA the kernels may use; unset or empty: the best this CPU has), got ${JSON.stringify(simd)}`,
    );
  }
  const threads = env.MEMQ_THREADS;
  if (threads !== undefined && threads !== '' && !(/^[1-9][0-9]*$/.test(threads) && Number(threads) <= MAX_ENV_THREADS)) {
    throw new Error(
      `MEMQ_THREADS must be a positive integer from 1 to ${MAX_ENV_THREADS} (the native thread pool's size; unset or empty: all cores), got ${JSON.stringify(threads)}`,
    );
  }
  const backend = env.MEMQ_BACKEND;
  if (backend !== undefined && backend !== '' && !(BACKEND_REQUESTS as readonly string[]).includes(backend)) {
    throw new Error(`MEMQ_BACKEND must be 'auto', 'cpu' or 'cuda', got ${JSON.stringify(backend)}`);
  }
}

// ---- finding and loading the addon --------------------------------------------------------------

export interface AddonCandidate {
  path: string;
  kind: AddonKind;
}

/** The prebuilt addon for this platform, as node-gyp-build picks it (prebuilds/<platform>-<arch>/*.node). */
function prebuildPath(root: string): string | undefined {
  const dir = path.join(root, 'prebuilds');
  if (!fs.existsSync(dir)) return undefined;
  let resolve: (dir: string) => string;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    resolve = require('node-gyp-build').resolve;
  } catch {
    return undefined;
  }
  try {
    const p = resolve(root);
    // node-gyp-build looks in build/ first; the loader has already tried those files
    return path.relative(dir, p).startsWith('..') ? undefined : p;
  } catch {
    return undefined; // no prebuild for this platform / arch / libc
  }
}

/**
 * The addon files the loader tries, in order: MEMQ_ADDON when set, a source build
 * (build/Release, build/Debug: `npm install` in a clone, or an installed package built with
 * MEMQ_BUILD_FROM_SOURCE=1), then the package's prebuild for this platform.
 */
export function addonCandidates(): AddonCandidate[] {
  const root = packageRoot();
  const list: AddonCandidate[] = [];
  if (process.env.MEMQ_ADDON) list.push({ path: path.resolve(process.env.MEMQ_ADDON), kind: 'MEMQ_ADDON' });
  list.push({ path: path.join(root, 'build', 'Release', 'memq.node'), kind: 'source build' });
  list.push({ path: path.join(root, 'build', 'Debug', 'memq.node'), kind: 'source build' });
  const pre = prebuildPath(root);
  if (pre) list.push({ path: pre, kind: 'prebuild' });
  return list;
}

function isMemqAddon(m: unknown): m is NativeAddon {
  const a = m as Partial<NativeAddon> | null;
  return !!a && typeof a.NativeMemoryIndex === 'function' && typeof a.backendInfo === 'function';
}

/** require() of a .node file (never of anything else: require would run it as JavaScript). */
function loadAddonFile(file: string): NativeAddon {
  if (!file.endsWith('.node')) throw new Error('not a Node addon (the file name must end in .node)');
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    throw new Error(`no such file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (!st.isFile()) throw new Error('not a file');
  let m: unknown;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    m = require(file);
  } catch (e) {
    throw new Error(`it does not load: ${(e as Error).message.split('\n')[0]}`);
  }
  if (!isMemqAddon(m)) throw new Error("it loads but is not memq's addon (no NativeMemoryIndex / backendInfo exports)");
  return m;
}

const HOW_TO_BUILD =
  "Build it from source: in a clone of the repository 'npm install' (or 'npm run build:native'); " +
  "in a project that depends on memq 'MEMQ_BUILD_FROM_SOURCE=1 npm rebuild memq' (when npm blocks install scripts, allow memq's first: 'npm install-scripts approve memq') " +
  '(needs CMake >= 3.18 and a C++17 compiler, or node-gyp\'s toolchain).';

/**
 * Loads the native addon once per process (see addonCandidates for the order). Throws an Error
 * when MEMQ_ADDON names a file that is missing or does not load as memq's addon, when a candidate
 * that exists does not load, when no candidate exists, or when MEMQ_SIMD / MEMQ_THREADS /
 * MEMQ_BACKEND is malformed (checkNativeEnv).
 */
export function loadNative(): NativeAddon {
  if (cached) return cached.addon;
  checkNativeEnv();
  const missing: string[] = [];
  for (const c of addonCandidates()) {
    if (c.kind === 'MEMQ_ADDON') {
      const raw = process.env.MEMQ_ADDON as string;
      let addon: NativeAddon;
      try {
        addon = loadAddonFile(c.path);
      } catch (e) {
        throw new Error(
          `MEMQ_ADDON=${raw}${c.path !== raw ? ` (${c.path})` : ''}: ${(e as Error).message}. ` +
            "Set MEMQ_ADDON to a built memq.node (e.g. build/Release/memq.node), or unset it to use memq's own addon.",
        );
      }
      cached = { addon, path: c.path, kind: c.kind };
      return addon;
    }
    if (!fs.existsSync(c.path)) {
      missing.push(`${c.path} (${c.kind}: missing)`);
      continue;
    }
    let addon: NativeAddon;
    try {
      addon = loadAddonFile(c.path);
    } catch (e) {
      throw new Error(
        `memq's native addon ${c.path} (${c.kind}) cannot be used: ${(e as Error).message}. ` +
          (c.kind === 'prebuild'
            ? `The prebuilt addon needs Linux x64 with glibc >= 2.27. ${HOW_TO_BUILD}`
            : `Rebuild it, or delete it to fall back to the prebuild. ${HOW_TO_BUILD}`),
      );
    }
    cached = { addon, path: c.path, kind: c.kind };
    return addon;
  }
  throw new Error(
    `no memq native addon for ${process.platform}-${process.arch} (Node ${process.version}): ` +
      `no source build in ${path.join(packageRoot(), 'build')} and no prebuild in ${path.join(packageRoot(), 'prebuilds')} fits this platform. ` +
      `${HOW_TO_BUILD}\nTried:\n  ${missing.join('\n  ')}`,
  );
}

/** The file of the loaded addon (undefined before the first loadNative()). */
export function nativePath(): string | undefined {
  return cached?.path;
}

/** Where the loaded addon came from (undefined before the first loadNative()). */
export function nativeKind(): AddonKind | undefined {
  return cached?.kind;
}
