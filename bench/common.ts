/** Shared pieces of the benchmarks: timing, machine description, result files, tables. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { backendInfo } from '../lib/retrieval';
import { packageRoot } from '../lib/native';
import { version } from '../lib/version';

export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Runs fn repeatedly (after one warm-up) for at least minMs and minReps; median ms per call. */
export async function timeIt(fn: () => unknown, minMs = 1000, minReps = 3, maxReps = 1000): Promise<{ ms: number; reps: number }> {
  await fn();
  const times: number[] = [];
  const start = nowMs();
  while ((times.length < minReps || nowMs() - start < minMs) && times.length < maxReps) {
    const t0 = nowMs();
    await fn();
    times.push(nowMs() - t0);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)], reps: times.length };
}

/**
 * Several calls timed in rounds (after one warm-up each): every round times one call of each, in
 * turn, so that a slow stretch of a shared machine falls on all of them alike; at least minReps
 * rounds and until every call has been timed for minMs in total (at most maxReps rounds).
 * Median ms per call of each.
 */
export async function timeInterleaved(fns: (() => unknown)[], minMs = 1000, minReps = 3, maxReps = 1000): Promise<{ ms: number; reps: number }[]> {
  for (const fn of fns) await fn();
  const times: number[][] = fns.map(() => []);
  const spent = fns.map(() => 0);
  for (let r = 0; r < maxReps && (r < minReps || spent.some((t) => t < minMs)); r++) {
    for (let i = 0; i < fns.length; i++) {
      const t0 = nowMs();
      await fns[i]();
      const dt = nowMs() - t0;
      times[i].push(dt);
      spent[i] += dt;
    }
  }
  return times.map((t) => {
    const s = [...t].sort((a, b) => a - b);
    return { ms: s[Math.floor(s.length / 2)], reps: s.length };
  });
}

export function machine() {
  const info = backendInfo();
  return {
    host: os.hostname(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    memq: version(),
    simd: info.simd,
    blas: info.blas,
    threads: info.threads,
    date: new Date().toISOString(),
    /** 1, 5 and 15 minute load averages when this was called (other jobs on a shared VM). */
    loadAverage: os.loadavg(),
  };
}

export function writeResult(name: string, data: unknown, outFile?: string): string {
  const file = outFile ?? path.join(packageRoot(), 'bench', 'results', `${name}-${new Date().toISOString().slice(0, 10)}.json`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
  return file;
}

export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (typeof c === "number" ? (Number.isInteger(c) ? String(c) : fmt(c)) : c)))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? '').length)));
  return cells.map((r, k) => r.map((c, i) => String(c ?? '').padStart(widths[i])).join('  ') + (k === 0 ? '\n' + widths.map((w) => '-'.repeat(w)).join('  ') : '')).join('\n') + '\n';
}

export function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 1e5) return x.toExponential(2);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(2);
}

/** Fast deterministic uniform(-1,1) floats (xorshift32), for large benchmark inputs. */
export function randomFloats(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  fillRandom(a, a.length, seed >>> 0 || 1);
  return a;
}

/** Fills a[0..n) as randomFloats does from xorshift32 state s; returns the next state (to continue a stream in chunks). */
export function fillRandom(a: Float32Array, n: number, s: number): number {
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    a[i] = s / 2147483648 - 1;
  }
  return s;
}
