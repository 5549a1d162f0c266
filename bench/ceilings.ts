/**
 * This machine's ceilings (the GEMM rate of the faster of gemm_abt and the search's own tile
 * kernel, the memory read bandwidth),
 * measured in the same run as a benchmark. They come from memq_bench.node, the benchmarks' own
 * small addon (native/bench_addon): the production addon (memq.node) has no benchmark-only
 * exports. A source build makes it next to memq.node (cmake-js: build/Release/memq_bench.node;
 * node-gyp: the memq_bench target); the prebuild and an installed package do not have it.
 */
import * as fs from 'fs';
import * as path from 'path';
import { loadNative, nativePath, packageRoot } from '../lib/native';

export interface Ceilings {
  /** The faster of gemmAbtGflops and tileGflops (gemmKernel says which). */
  gemmGflops: number;
  /** gemm_abt: OpenBLAS's sgemm when linked, else the built-in kernels plus a transposed copy of C. */
  gemmAbtGflops: number;
  /** The fused search's own product: packed queries times key tiles, C^T consumed in place. */
  tileGflops: number;
  gemmKernel: string;
  gemmShape: string;
  bandwidthGBs: number;
  bandwidthBytes: number;
  threads: number;
  blas: string;
}

interface BenchAddon {
  measureCeilings(b: number, n: number, d: number, seconds: number, bandwidthBytes: number): Ceilings;
}

const FILE = 'memq_bench.node';

/** Where memq_bench.node is looked for: MEMQ_BENCH_ADDON alone when set, else next to the loaded memq.node, then build/. */
export function benchAddonCandidates(): string[] {
  if (process.env.MEMQ_BENCH_ADDON) return [path.resolve(process.env.MEMQ_BENCH_ADDON)];
  loadNative();
  const main = nativePath();
  const root = packageRoot();
  const list = [
    ...(main ? [path.join(path.dirname(main), FILE)] : []),
    path.join(root, 'build', 'Release', FILE),
    path.join(root, 'build', 'Debug', FILE),
  ];
  return [...new Set(list)];
}

let cached: BenchAddon | undefined;

/** Loads memq_bench.node once; an Error saying how to build it when it is missing or is not it. */
export function loadBenchAddon(): BenchAddon {
  if (cached) return cached;
  const tried = benchAddonCandidates();
  const file = tried.find((f) => fs.existsSync(f));
  if (!file) {
    throw new Error(
      `the benchmarks' addon ${FILE} (machine ceilings) is missing; tried ${tried.join(', ')}. ` +
        "It is built with memq.node by a source build in a clone of the repository ('npm run build:native', or 'npx node-gyp rebuild'); " +
        'the prebuilt addon does not include it. MEMQ_BENCH_ADDON=/path/to/memq_bench.node selects another build.',
    );
  }
  let m: Partial<BenchAddon>;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    m = require(file);
  } catch (e) {
    throw new Error(`the benchmarks' addon ${file} does not load (${(e as Error).message.split('\n')[0]}); rebuild it with 'npm run build:native'`);
  }
  if (typeof m.measureCeilings !== 'function') throw new Error(`${file} is not memq's benchmark addon (no measureCeilings export)`);
  cached = m as BenchAddon;
  return cached;
}

/** measureCeilings(b, n, d, seconds, bandwidthBytes): each pool thread runs (b x d)(n x d)^T GEMMs for ~seconds; best of 5 streaming reads of bandwidthBytes. */
export function measureCeilings(b: number, n: number, d: number, seconds: number, bandwidthBytes: number): Ceilings {
  return loadBenchAddon().measureCeilings(b, n, d, seconds, bandwidthBytes);
}
