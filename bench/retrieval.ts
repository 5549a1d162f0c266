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
import { MemoryIndex } from '../lib/retrieval';
import { measureCeilings } from './ceilings';
import { machine, nowMs, randomFloats, table, timeIt, writeResult } from './common';

export interface RetrievalBenchOptions {
  ns?: number[];
  ds?: number[];
  bs?: number[];
  m?: number;
  peers?: string[];
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
  const peers = opts.peers ?? ['usearch', 'hnswlib', 'js'];
  const budget = (opts.peerBudgetS ?? 3) * 1000;
  const threads = os.cpus().length;

  log('measuring ceilings (GEMM rate of the GEMM memq uses; read bandwidth) ...\n');
  const ceil = measureCeilings(256, 4096, 384, 2.0, 2 * 2 ** 30);
  log(`  GEMM ${ceil.gemmGflops.toFixed(1)} GFLOP/s (${ceil.blas}, ${ceil.gemmShape}, ${ceil.threads} threads); read bandwidth ${ceil.bandwidthGBs.toFixed(1)} GB/s\n`);

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
      for (let i = 0; i < n; i += 65536) {
        const hi = Math.min(n, i + 65536);
        index.add(keys.subarray(i * d, hi * d), new Float32Array(hi - i));
      }
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
      for (const b of bs) {
        const q = allQ.subarray(0, b * d);
        const flops = 2 * b * n * d;
        const base: Omit<Row, 'impl' | 'ms' | 'qps' | 'gflops'> = { n, d, b, m };
        // memq (all threads)
        const out = { ids: new Int32Array(b * m), kernel: new Float32Array(b * m), dist2: new Float32Array(b * m) };
        const t = await timeIt(() => index.search(q, m, { out }), 1000, 3);
        const memqRow: Row = {
          ...base, impl: 'memq', ms: t.ms, qps: (b / t.ms) * 1000, gflops: flops / t.ms / 1e6,
          pctGemm: (flops / t.ms / 1e6 / ceil.gemmGflops) * 100,
          pctBandwidth: ((n * d * 4) / t.ms / 1e6 / ceil.bandwidthGBs) * 100,
        };
        rows.push(memqRow);
        const memqTop1 = Array.from({ length: b }, (_, i) => out.ids[i * m]);
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
        log(`  B=${b}: ` + rows.filter((x) => x.n === n && x.d === d && x.b === b).map((r) => `${r.impl} ${r.qps.toFixed(0)} q/s`).join(', ') + '\n');
      }
      hnsw = undefined;
    }
  }
  const result = {
    benchmark: 'retrieval-cpu',
    machine: machine(),
    ceilings: { gemmGflops: ceil.gemmGflops, gemmShape: ceil.gemmShape, gemm: ceil.blas, bandwidthGBs: ceil.bandwidthGBs, bandwidthBytes: ceil.bandwidthBytes, threads: ceil.threads },
    m,
    notes,
    rows,
  };
  const file = writeResult(`retrieval-cpu`, result, opts.out);
  const text = table(
    ['N', 'd', 'B', 'impl', 'q/s', 'GFLOP/s', '%GEMM', '%BW', 'x usearch', 'sampled', 'top1=memq'],
    rows.map((r) => [r.n, r.d, r.b, r.impl, r.qps, r.gflops, r.impl === 'memq' ? r.pctGemm! : '', r.impl === 'memq' ? r.pctBandwidth! : '', r.vsUsearch ?? '', r.sampled ?? '', r.top1Agreement ?? '']),
  );
  return { result, file, text };
}
