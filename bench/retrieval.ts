/**
 * CPU retrieval benchmark (issue: retrieval core): memq's fused search against usearch's
 * exactSearch, hnswlib-node's BruteforceSearch and a plain JS loop, all on the same keys and
 * queries in the same run, plus this machine's own ceilings measured in the same run (the GEMM
 * rate of the GEMM memq uses, and the memory read bandwidth).
 *
 * Peers that would take too long on a cell run a sample of the queries; their queries/s is
 * measured on that sample (each query is independent work for them) and marked `sampled`.
 */
import * as os from 'os';
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { MemoryIndex } from '../lib/retrieval';
import { measureCeilings } from './ceilings';
import { machine, nowMs, randomFloats, table, timeIt, writeResult, timeInterleaved } from './common';

export interface RetrievalBenchOptions {
  ns?: number[];
  ds?: number[];
  bs?: number[];
  m?: number;
  peers?: string[];
  /** memq key types to run (default float32, bf16, int8); compressed types also run with rerank. */
  keyTypes?: ('float32' | 'bf16' | 'int8')[];
  /** Oversample factor of the compressed types' re-rank rows (default 4). */
  rerank?: number;
  /** Seconds each peer may spend per cell before sampling. */
  peerBudgetS?: number;
  out?: string;
  log?: (s: string) => void;
}

interface Row {
  n: number;
  d: number;
  b: number;
  m: number;
  impl: string;
  ms: number;
  qps: number;
  gflops: number;
  pctGemm?: number;
  pctBandwidth?: number;
  vsUsearch?: number;
  sampled?: string;
  top1Agreement?: number;
  keyType?: string;
  /** queries/s over memq float32's queries/s in the same cell. */
  vsMemqFloat32?: number;
  /** Fraction of memq float32's top-m ids found in this row's top-m (same queries). */
  recallAtM?: number;
  /** The index's host memory (MemoryIndex.stats().memoryBytes, reserved rows included) per key. */
  hostBytesPerKey?: number;
}

/** FAISS (Debian python3-faiss) on the same keys and queries, as a subprocess. */
function runFaiss(keys: Float32Array, q: Float32Array, n: number, d: number, bs: number[], m: number, notes: string[]): any | undefined {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-faiss-'));
  try {
    fs.writeFileSync(path.join(dir, 'keys.f32'), Buffer.from(keys.buffer, keys.byteOffset, keys.byteLength));
    fs.writeFileSync(path.join(dir, 'q.f32'), Buffer.from(q.buffer, q.byteOffset, q.byteLength));
    // FAISS uses OpenBLAS for the flat index: let it pick its own kernels in this subprocess only.
    const env = { ...process.env };
    delete env.OPENBLAS_CORETYPE;
    delete env.OPENBLAS_L2_SIZE;
    const py = process.env.MEMQ_FAISS_PYTHON ?? '/usr/bin/python3';
    // bench/faiss_peer.py next to this file (ts sources) or in the package's bench/ (dist/cjs/bench)
    const script = [path.join(__dirname, 'faiss_peer.py'), path.resolve(__dirname, '../../../bench/faiss_peer.py')].find((f) => fs.existsSync(f));
    if (!script) {
      notes.push('faiss not run: bench/faiss_peer.py not found');
      return undefined;
    }
    const r = spawnSync(py, [script, path.join(dir, 'keys.f32'), path.join(dir, 'q.f32'), String(n), String(d), bs.join(','), String(m), '0.3'], { env, maxBuffer: 1 << 28, encoding: 'utf8' });
    if (r.status !== 0) {
      notes.push(`faiss not run: ${py} exited ${r.status}: ${(r.stderr || String(r.error)).split('\n').filter(Boolean).slice(-1)[0]}`);
      return undefined;
    }
    const res = JSON.parse(r.stdout);
    res.ompWaitPolicy = env.OMP_WAIT_POLICY ?? 'unset (libgomp default: spin, then sleep)';
    return res;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function recall(ids: ArrayLike<number>, ref: ArrayLike<number>, b: number, m: number): number {
  let hit = 0;
  for (let i = 0; i < b; i++) {
    const want = new Set<number>();
    for (let s = 0; s < m; s++) want.add(Number(ref[i * m + s]));
    for (let s = 0; s < m; s++) hit += want.has(Number(ids[i * m + s])) ? 1 : 0;
  }
  return hit / (b * m);
}

/** Symmetric int8 with one scale (max|x| / 127 over x unless given), as usearch's i8 vectors are. */
function quantizeGlobalI8(x: Float32Array, scale?: number): { data: Int8Array; scale: number } {
  let s = scale;
  if (s === undefined) {
    let mx = 0;
    for (let i = 0; i < x.length; i++) mx = Math.max(mx, Math.abs(x[i]));
    s = mx > 0 ? mx / 127 : 1;
  }
  const data = new Int8Array(x.length);
  for (let i = 0; i < x.length; i++) data[i] = Math.max(-127, Math.min(127, Math.round(x[i] / s)));
  return { data, scale: s };
}

function tryRequire(name: string): any {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require(name);
  } catch (err) {
    return { __error: (err as Error).message.split('\n')[0] };
  }
}

/** Plain JS brute force: squared L2 distance and a sorted top-m insertion list. */
function jsSearch(keys: Float32Array, n: number, d: number, q: Float32Array, qi: number, m: number): Int32Array {
  const bestD = new Float64Array(m).fill(Infinity);
  const bestI = new Int32Array(m).fill(-1);
  const off = qi * d;
  for (let i = 0; i < n; i++) {
    let s = 0;
    const ko = i * d;
    for (let j = 0; j < d; j++) {
      const t = q[off + j] - keys[ko + j];
      s += t * t;
    }
    if (s < bestD[m - 1]) {
      let p = m - 1;
      while (p > 0 && bestD[p - 1] > s) {
        bestD[p] = bestD[p - 1];
        bestI[p] = bestI[p - 1];
        p--;
      }
      bestD[p] = s;
      bestI[p] = i;
    }
  }
  return bestI;
}

export async function benchRetrieval(opts: RetrievalBenchOptions = {}) {
  const log = opts.log ?? ((s: string) => process.stderr.write(s));
  const ns = opts.ns ?? [10_000, 100_000, 1_000_000];
  const ds = opts.ds ?? [128, 384, 768];
  const bs = opts.bs ?? [1, 32, 256];
  const m = opts.m ?? 32;
  const peers = opts.peers ?? ['usearch', 'hnswlib', 'js', 'faiss'];
  const keyTypes = opts.keyTypes ?? ['float32', 'bf16', 'int8'];
  const rerankK = opts.rerank ?? 4;
  let faissInfo: { version: string; compileOptions: string; ompThreads: number; ompWaitPolicy: string; build: string } | undefined;
  const budget = (opts.peerBudgetS ?? 3) * 1000;
  const threads = os.cpus().length;

  log('measuring ceilings (GEMM rate of the GEMM memq uses; read bandwidth) ...\n');
  const ceil = measureCeilings(256, 4096, 384, 2.0, 2 * 2 ** 30);
  log(`  GEMM ${ceil.gemmGflops.toFixed(1)} GFLOP/s (${ceil.gemmKernel}; gemm_abt ${ceil.gemmAbtGflops.toFixed(1)} with ${ceil.blas}, tile kernel ${ceil.tileGflops.toFixed(1)}; ${ceil.gemmShape}, ${ceil.threads} threads); read bandwidth ${ceil.bandwidthGBs.toFixed(1)} GB/s\n`);

  const usearch = peers.includes('usearch') ? tryRequire('usearch') : undefined;
  const hnswlib = peers.includes('hnswlib') ? tryRequire('hnswlib-node') : undefined;
  const notes: string[] = [];
  if (usearch?.__error) notes.push(`usearch not available: ${usearch.__error}`);
  if (hnswlib?.__error) notes.push(`hnswlib-node not available: ${hnswlib.__error} (build it: cd node_modules/hnswlib-node && npx node-gyp rebuild)`);

  const rows: Row[] = [];
  for (const n of ns) {
    for (const d of ds) {
      log(`N=${n} d=${d}: generating keys ...\n`);
      const keys = randomFloats(n * d, n + d);
      const index = new MemoryIndex({ dim: d, kernel: 'gaussian', bandwidth: 1 });
      const compressed: { name: string; keyType: 'bf16' | 'int8'; index: MemoryIndex }[] = [];
      for (const kt of keyTypes.filter((x) => x !== 'float32') as ('bf16' | 'int8')[]) {
        compressed.push({ name: `memq ${kt}`, keyType: kt, index: new MemoryIndex({ dim: d, kernel: 'gaussian', bandwidth: 1, keyType: kt }) });
        compressed.push({ name: `memq ${kt} rerank x${rerankK}`, keyType: kt, index: new MemoryIndex({ dim: d, kernel: 'gaussian', bandwidth: 1, keyType: kt, rerank: rerankK }) });
      }
      for (let i = 0; i < n; i += 65536) {
        const hi = Math.min(n, i + 65536);
        index.add(keys.subarray(i * d, hi * d), new Float32Array(hi - i));
        for (const c of compressed) c.index.add(keys.subarray(i * d, hi * d), new Float32Array(hi - i));
      }
      let usearchI8: { data: Int8Array; scale: number } | undefined;
      let hnsw: any;
      if (hnswlib && !hnswlib.__error) {
        const t0 = nowMs();
        hnsw = new hnswlib.BruteforceSearch('l2', d);
        hnsw.initIndex(n);
        const row = new Array(d);
        let i = 0;
        for (; i < n; i++) {
          for (let j = 0; j < d; j++) row[j] = keys[i * d + j];
          hnsw.addPoint(row, i);
          if ((i & 1023) === 0 && nowMs() - t0 > budget * 20) break;
        }
        if (i < n) {
          notes.push(`hnswlib-node: filling ${n} points of d=${d} point by point took too long; skipped at N=${n}, d=${d}`);
          hnsw = undefined;
        }
      }
      const bmax = Math.max(...bs);
      const allQ = randomFloats(bmax * d, 7 * n + d);
      const faiss = peers.includes('faiss') ? runFaiss(keys, allQ, n, d, bs, m, notes) : undefined;
      if (faiss && !faissInfo) {
        faissInfo = { version: faiss.version, compileOptions: faiss.compile_options, ompThreads: faiss.omp_threads, ompWaitPolicy: faiss.ompWaitPolicy, build: "Debian's python3-faiss (generic build, not compiled for this CPU)" };
      }
      // memq's rows for every B first, then the peers: usearch's and FAISS's thread pools can
      // keep spinning after a call and slowed the next memq row by up to 40 %.
      const memqOf = new Map<number, { memqRow: Row; memqIds: Int32Array; memqTop1: number[] }>();
      for (const b of bs) {
        const q = allQ.subarray(0, b * d);
        const flops = 2 * b * n * d;
        const base: Omit<Row, 'impl' | 'ms' | 'qps' | 'gflops'> = { n, d, b, m };
        // memq (all threads): float32 and every compressed index timed in interleaved rounds, so
        // that the ratios between them do not ride on one row's stretch of a shared machine
        const out = { ids: new Int32Array(b * m), kernel: new Float32Array(b * m), dist2: new Float32Array(b * m) };
        const outs = compressed.map(() => ({ ids: new Int32Array(b * m), kernel: new Float32Array(b * m), dist2: new Float32Array(b * m) }));
        const timed = await timeInterleaved([() => index.search(q, m, { out }), ...compressed.map((c, k) => () => c.index.search(q, m, { out: outs[k] }))], 1500, 5);
        const t = timed[0];
        const memqRow: Row = {
          ...base, impl: 'memq', ms: t.ms, qps: (b / t.ms) * 1000, gflops: flops / t.ms / 1e6,
          pctGemm: (flops / t.ms / 1e6 / ceil.gemmGflops) * 100,
          pctBandwidth: ((n * d * 4) / t.ms / 1e6 / ceil.bandwidthGBs) * 100,
        };
        rows.push(memqRow);
        const memqTop1 = Array.from({ length: b }, (_, i) => out.ids[i * m]);
        const memqIds = out.ids.slice();
        memqRow.keyType = 'float32';
        memqRow.hostBytesPerKey = index.stats().memoryBytes / n;
        // memq on compressed keys (ids are insertion order = rows, as for float32)
        for (const [k, c] of compressed.entries()) {
          const o2 = outs[k];
          const tc = timed[k + 1];
          const qps = (b / tc.ms) * 1000;
          rows.push({ ...base, impl: c.name, keyType: c.keyType, ms: tc.ms, qps, gflops: flops / tc.ms / 1e6, vsMemqFloat32: qps / memqRow.qps, recallAtM: recall(o2.ids, memqIds, b, m), hostBytesPerKey: c.index.stats().memoryBytes / n });
        }
        memqOf.set(b, { memqRow, memqIds, memqTop1 });
      }
      for (const b of bs) {
        const q = allQ.subarray(0, b * d);
        const flops = 2 * b * n * d;
        const base: Omit<Row, 'impl' | 'ms' | 'qps' | 'gflops'> = { n, d, b, m };
        const { memqRow, memqIds, memqTop1 } = memqOf.get(b)!;
        // FAISS flat / SQfp16 / SQ8 (all threads, OpenMP)
        for (const fr of faiss ? faiss.rows.filter((x: any) => x.b === b) : []) {
          const qps = b / fr.s;
          rows.push({ ...base, impl: `faiss ${fr.index}`, keyType: fr.index === 'SQfp16' ? 'fp16' : fr.index === 'SQ8' ? 'int8 (per-dim ranges)' : 'float32', ms: fr.s * 1000, qps, gflops: flops / fr.s / 1e9, vsMemqFloat32: qps / memqRow.qps, recallAtM: recall(fr.ids, memqIds, b, m), top1Agreement: Array.from({ length: b }, (_, i) => (fr.ids[i * m] === memqTop1[i] ? 1 : 0) as number).reduce((a, x) => a + x, 0) / b });
        }
        // usearch exactSearch (all threads)
        let usQps: number | undefined;
        if (usearch && !usearch.__error) {
          let bq = b;
          const probe = nowMs();
          let res = usearch.exactSearch(keys, q.subarray(0, Math.min(b, 4) * d), d, m, usearch.MetricKind.L2sq, threads);
          const perQ = (nowMs() - probe) / Math.min(b, 4);
          if (perQ * b > budget) bq = Math.max(1, Math.min(b, Math.floor(budget / perQ)));
          const qs = q.subarray(0, bq * d);
          const tu = await timeIt(() => { res = usearch.exactSearch(keys, qs, d, m, usearch.MetricKind.L2sq, threads); }, 1000, 2, 50);
          usQps = (bq / tu.ms) * 1000;
          let agree = 0;
          for (let i = 0; i < bq; i++) agree += Number(res.keys[i * m]) === memqTop1[i] ? 1 : 0;
          rows.push({ ...base, impl: 'usearch.exactSearch', ms: tu.ms * (b / bq), qps: usQps, gflops: (2 * bq * n * d) / tu.ms / 1e6, sampled: bq < b ? `${bq}/${b}` : undefined, top1Agreement: agree / bq });
          // usearch's int8 mode: exactSearch over Int8Array vectors (raw int8, no scales), so keys
          // and queries share one scale, max|x| / 127 over the keys. usearch has no f16 exact
          // search from JavaScript (its f16/bf16 scalar kinds are those of its HNSW Index).
          if (keyTypes.includes('int8')) {
            const k8 = (usearchI8 ??= quantizeGlobalI8(keys));
            const q8 = quantizeGlobalI8(qs, k8.scale).data;
            let r8 = usearch.exactSearch(k8.data, q8, d, m, usearch.MetricKind.L2sq, threads);
            const t8 = await timeIt(() => { r8 = usearch.exactSearch(k8.data, q8, d, m, usearch.MetricKind.L2sq, threads); }, 1000, 2, 50);
            const ids8 = Int32Array.from({ length: bq * m }, (_, i) => Number(r8.keys[i]));
            const qps8 = (bq / t8.ms) * 1000;
            rows.push({ ...base, impl: 'usearch.exactSearch i8', keyType: 'int8 (one global scale)', ms: t8.ms * (b / bq), qps: qps8, gflops: (2 * bq * n * d) / t8.ms / 1e6, sampled: bq < b ? `${bq}/${b}` : undefined, vsMemqFloat32: qps8 / memqRow.qps, recallAtM: recall(ids8, memqIds.subarray(0, bq * m), bq, m), hostBytesPerKey: d });
          }
        }
        // hnswlib-node BruteforceSearch (one query per call, one thread)
        if (hnsw) {
          let done = 0;
          let agree = 0;
          const t0 = nowMs();
          const qrow = new Array(d);
          while (done < b && (done < 1 || nowMs() - t0 < budget)) {
            for (let j = 0; j < d; j++) qrow[j] = q[done * d + j];
            const r = hnsw.searchKnn(qrow, m);
            agree += r.neighbors[0] === memqTop1[done] ? 1 : 0;
            done++;
          }
          const ms = nowMs() - t0;
          rows.push({ ...base, impl: 'hnswlib.Bruteforce', ms: ms * (b / done), qps: (done / ms) * 1000, gflops: (2 * done * n * d) / ms / 1e6, sampled: done < b ? `${done}/${b}` : undefined, top1Agreement: agree / done });
        }
        // plain JS loop (one thread)
        if (peers.includes('js')) {
          let done = 0;
          let agree = 0;
          const t0 = nowMs();
          while (done < b && (done < 1 || nowMs() - t0 < budget)) {
            agree += jsSearch(keys, n, d, q, done, m)[0] === memqTop1[done] ? 1 : 0;
            done++;
          }
          const ms = nowMs() - t0;
          rows.push({ ...base, impl: 'plain JS', ms: ms * (b / done), qps: (done / ms) * 1000, gflops: (2 * done * n * d) / ms / 1e6, sampled: done < b ? `${done}/${b}` : undefined, top1Agreement: agree / done });
        }
        if (usQps) for (const r of rows.filter((x) => x.n === n && x.d === d && x.b === b)) r.vsUsearch = r.qps / usQps;
        for (const r of rows.filter((x) => x.n === n && x.d === d && x.b === b && x.vsMemqFloat32 === undefined)) r.vsMemqFloat32 = r.qps / memqRow.qps;
        log(`  B=${b}: ` + rows.filter((x) => x.n === n && x.d === d && x.b === b).map((r) => `${r.impl} ${r.qps.toFixed(0)} q/s`).join(', ') + '\n');
      }
      hnsw = undefined;
    }
  }
  const result = {
    benchmark: 'retrieval-cpu',
    machine: machine(),
    ceilings: { gemmGflops: ceil.gemmGflops, gemmKernel: ceil.gemmKernel, gemmAbtGflops: ceil.gemmAbtGflops, tileGflops: ceil.tileGflops, gemmShape: ceil.gemmShape, gemm: ceil.blas, bandwidthGBs: ceil.bandwidthGBs, bandwidthBytes: ceil.bandwidthBytes, threads: ceil.threads },
    m,
    keyTypes,
    rerank: rerankK,
    faiss: faissInfo,
    notes,
    rows,
  };
  const file = writeResult(`retrieval-cpu`, result, opts.out);
  const text = table(
    ['N', 'd', 'B', 'impl', 'q/s', 'GFLOP/s', '%GEMM', '%BW', 'x memq fp32', 'recall@M', 'x usearch', 'sampled', 'top1=memq'],
    rows.map((r) => [r.n, r.d, r.b, r.impl, r.qps, r.gflops, r.impl === 'memq' ? r.pctGemm! : '', r.impl === 'memq' ? r.pctBandwidth! : '', r.vsMemqFloat32 ?? '', r.recallAtM ?? '', r.vsUsearch ?? '', r.sampled ?? '', r.top1Agreement ?? '']),
  );
  return { result, file, text };
}
