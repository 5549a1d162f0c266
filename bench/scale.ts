/**
 * memq bench scale: one memory shared through Redis (lib/scale/shared.ts), measured on this
 * machine against a redis-server it starts itself (loopback, appendonly, appendfsync always).
 *   1. The write path: ms per write batch of the in-process EpisodicMemory against SharedMemory
 *      (XADD, fsync, XREAD back, apply), same batches, same memory options as the memq agent.
 *   2. Actors: `memq run --memory ... --actors N` for N = 1, 2, 4 on gridworld: environment
 *      steps per second over all actors, and the replica lag each actor measured (ms from another
 *      actor's XADD to its own apply), against the same work with an in-process memory.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { EpisodicMemory } from '../lib/memory/episodic';
import type { CaseInput } from '../lib/memory/types';
import { packageRoot } from '../lib/native';
import { SharedMemory } from '../lib/scale/shared';
import { machine, nowMs, table, writeResult } from './common';

export interface ScaleBenchOptions {
  /** redis://HOST:PORT of a running Redis (default: start redis-server here). */
  url?: string;
  actors?: number[];
  episodes?: number;
  batches?: number;
  quick?: boolean;
  out?: string;
  log?: (s: string) => void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function startRedis(): Promise<{ url: string; stop: () => Promise<void> }> {
  const which = spawnSync('bash', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const bin = which.status === 0 ? which.stdout.trim() : '';
  if (!bin) throw new Error('memq bench scale: redis-server is not installed (apt-get install -y redis-server), or pass --url redis://HOST:PORT');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-bench-redis-'));
  const port = await freePort();
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], { stdio: 'ignore' });
  const t0 = Date.now();
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    if (child.exitCode !== null || Date.now() - t0 > 10_000) throw new Error(`memq bench scale: redis-server did not start on port ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: async () => {
      if (child.exitCode === null) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await gone;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An episode's worth of cases: `n` keys of dim `d` (unit vectors), values in [0, 1]. */
function batch(seed: number, n: number, d: number): CaseInput[] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const key = new Float32Array(d);
    let s = 0;
    for (let j = 0; j < d; j++) {
      key[j] = r() - 0.5;
      s += key[j] * key[j];
    }
    for (let j = 0; j < d; j++) key[j] /= Math.sqrt(s);
    return { key, value: r(), action: `a${i % 4}`, state: `s${seed}-${i}`, step: i, episode: seed };
  });
}

function stats(xs: number[]): { mean: number; p50: number; p99: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { mean: xs.reduce((a, b) => a + b, 0) / xs.length, p50: s[Math.floor(s.length / 2)], p99: s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] };
}

async function sharedWrites(url: string, options: { dim: number } & Record<string, unknown>, batches: number, casesPerBatch: number): Promise<number[]> {
  const sm = await SharedMemory.open({ url, name: `bench-write-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`, memory: options as any });
  const t: number[] = [];
  for (let b = 0; b < batches; b++) {
    const cases = batch(b + 1, casesPerBatch, options.dim);
    const t0 = nowMs();
    await sm.write(cases);
    t.push(nowMs() - t0);
  }
  await sm.close();
  return t;
}

async function writePath(url: string, batches: number, log: (s: string) => void, ownRedis: boolean) {
  // The memq agent's memory: dim 512 keys, gaussian kernel, replay 50k, merge within 0.05.
  const options = { dim: 512, kernel: { kernel: 'gaussian' as const, bandwidth: 0.4 }, policy: { kind: 'replay' as const, capacity: 50_000 }, merge: { epsilon: 0.05, rate: 0.5 } };
  const casesPerBatch = 20;
  const local = new EpisodicMemory(options);
  const tLocal: number[] = [];
  for (let b = 0; b < batches; b++) {
    const cases = batch(b + 1, casesPerBatch, options.dim);
    const t0 = nowMs();
    await local.write(cases);
    tLocal.push(nowMs() - t0);
  }
  const tShared = await sharedWrites(url, options, batches, casesPerBatch);
  // The same with appendfsync everysec (up to a second of acknowledged writes at risk on a crash of Redis's host).
  let tEverysec: number[] | undefined;
  if (ownRedis) {
    const { createClient } = require('redis');
    const c = createClient({ url });
    await c.connect();
    await c.configSet('appendfsync', 'everysec');
    tEverysec = await sharedWrites(url, options, batches, casesPerBatch);
    await c.configSet('appendfsync', 'always');
    c.destroy();
  }
  const entryBytes = casesPerBatch * options.dim * 4 + JSON.stringify(batch(1, casesPerBatch, options.dim).map(({ key: _k, ...r }) => r)).length;
  const res = { batches, casesPerBatch, dim: options.dim, entryBytes, localMs: stats(tLocal), sharedMs: stats(tShared), sharedEverysecMs: tEverysec ? stats(tEverysec) : null, sizeAfter: local.size };
  log(`write path: local ${res.localMs.mean.toFixed(3)} ms/batch, shared ${res.sharedMs.mean.toFixed(3)} ms/batch (fsync always)${res.sharedEverysecMs ? `, ${res.sharedEverysecMs.mean.toFixed(3)} ms/batch (fsync everysec)` : ''} (${batches} batches of ${casesPerBatch} cases, dim ${options.dim})\n`);
  return res;
}

/** Bootstrap: a memory of `cases` cases written through the log; snapshot; a new replica from the snapshot vs from the whole stream. */
async function bootstrap(url: string, cases: number, log: (s: string) => void) {
  const options = { dim: 512, kernel: { kernel: 'gaussian' as const, bandwidth: 0.4 }, policy: { kind: 'replay' as const, capacity: 1_000_000 } };
  const name = `bench-boot-${Date.now()}`;
  const per = 200;
  const sm = await SharedMemory.open({ url, name, memory: options });
  const t0 = nowMs();
  for (let b = 0; b * per < cases; b++) await sm.write(batch(1000 + b, per, options.dim));
  const fillSeconds = (nowMs() - t0) / 1000;
  let t = nowMs();
  const snap = await sm.snapshot();
  const snapshotMs = nowMs() - t;
  t = nowMs();
  const fromSnap = await SharedMemory.open({ url, name, memory: options });
  const fromSnapshotMs = nowMs() - t;
  t = nowMs();
  const fromLog = await SharedMemory.open({ url, name, memory: options, fromSnapshot: false });
  const fromLogMs = nowMs() - t;
  const res = {
    cases: sm.memory.size,
    dim: options.dim,
    fillSeconds,
    appendCasesPerSecond: sm.memory.size / fillSeconds,
    snapshotBytes: snap.bytes,
    snapshotMs,
    bootstrapFromSnapshotMs: fromSnapshotMs,
    bootstrapFromLogMs: fromLogMs,
    replayCasesPerSecond: fromLog.memory.size / (fromLogMs / 1000),
    restoreCasesPerSecond: fromSnap.memory.size / (fromSnapshotMs / 1000),
  };
  for (const m of [sm, fromSnap, fromLog]) await m.close();
  log(`bootstrap: ${res.cases} cases (dim 512): snapshot ${(res.snapshotBytes / 1e6).toFixed(1)} MB in ${res.snapshotMs.toFixed(0)} ms; new replica from it ${res.bootstrapFromSnapshotMs.toFixed(0)} ms, from the whole log ${res.bootstrapFromLogMs.toFixed(0)} ms\n`);
  return res;
}

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(packageRoot(), 'bin', 'memq.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

function stepsOf(dir: string): number {
  let steps = 0;
  for (const line of fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').split('\n')) {
    if (!line) continue;
    const m = JSON.parse(line);
    if (m.kind === 'episode' && m.source === 'train') steps += m.steps;
  }
  return steps;
}

async function actorsRun(url: string, n: number, episodes: number, tmp: string, log: (s: string) => void) {
  const out = path.join(tmp, `actors-${n}`);
  const common = ['--env', 'gridworld', '--episodes', String(episodes), '--demos', '0', '--eval-games', '1', '--out', out, '--json'];
  const t0 = nowMs();
  const r = await runCli(['run', '--memory', `${url}/bench-actors-${n}-${Date.now()}`, '--actors', String(n), ...common]);
  const wall = (nowMs() - t0) / 1000;
  if (r.code !== 0) throw new Error(`memq run --actors ${n} failed (exit ${r.code}): ${r.stderr.slice(-2000)}`);
  const res = JSON.parse(r.stdout) as { summaries: { seed: number; wallSeconds: number }[]; shared: Record<string, number | string>[] };
  const dirs = fs.readdirSync(out).filter((d) => d.startsWith('memq-seed'));
  const steps = dirs.reduce((a, d) => a + stepsOf(path.join(out, d)), 0);
  const trainWall = Math.max(...res.summaries.map((s) => s.wallSeconds));
  const lags = res.shared.map((s) => ({ mean: Number(s.lagMeanMs), max: Number(s.lagMaxMs), samples: Number(s.lagSamples), writeMs: Number(s.writeMeanMs) }));
  const row = {
    actors: n,
    episodesPerActor: episodes,
    steps,
    wallSeconds: wall,
    trainWallSeconds: trainWall,
    stepsPerSecond: steps / trainWall,
    lagMeanMs: lags.length ? lags.reduce((a, l) => a + l.mean * l.samples, 0) / Math.max(1, lags.reduce((a, l) => a + l.samples, 0)) : 0,
    lagMaxMs: lags.length ? Math.max(...lags.map((l) => l.max)) : 0,
    writeMeanMs: lags.length ? lags.reduce((a, l) => a + l.writeMs, 0) / lags.length : 0,
  };
  log(`actors ${n}: ${row.steps} steps, ${row.stepsPerSecond.toFixed(0)} steps/s, lag mean ${row.lagMeanMs.toFixed(2)} ms max ${row.lagMaxMs.toFixed(1)} ms, write ${row.writeMeanMs.toFixed(2)} ms\n`);
  return row;
}

async function inProcessRun(episodes: number, tmp: string, log: (s: string) => void) {
  const out = path.join(tmp, 'in-process');
  const r = await runCli(['run', '--agent', 'memq', '--env', 'gridworld', '--episodes', String(episodes), '--demos', '0', '--eval-games', '1', '--out', out, '--json']);
  if (r.code !== 0) throw new Error(`memq run failed (exit ${r.code}): ${r.stderr.slice(-2000)}`);
  const s = JSON.parse(r.stdout) as { wallSeconds: number };
  const steps = stepsOf(path.join(out, 'memq-seed1'));
  const row = { actors: 0, episodesPerActor: episodes, steps, trainWallSeconds: s.wallSeconds, stepsPerSecond: steps / s.wallSeconds };
  log(`in-process memory (no Redis): ${steps} steps, ${row.stepsPerSecond.toFixed(0)} steps/s\n`);
  return row;
}

export async function benchScale(opts: ScaleBenchOptions = {}) {
  const log = opts.log ?? (() => undefined);
  const quick = opts.quick ?? false;
  const redis = opts.url ? { url: opts.url, stop: async () => undefined } : await startRedis();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-bench-scale-'));
  try {
    const episodes = opts.episodes ?? (quick ? 40 : 200);
    const write = await writePath(redis.url, opts.batches ?? (quick ? 100 : 500), log, !opts.url);
    const boot = await bootstrap(redis.url, quick ? 4000 : 20_000, log);
    const baseline = await inProcessRun(episodes, tmp, log);
    const actors = [];
    for (const n of opts.actors ?? [1, 2, 4]) actors.push(await actorsRun(redis.url, n, episodes, tmp, log));
    const result = { benchmark: 'scale', machine: machine(), redis: opts.url ? 'external' : 'redis-server on loopback, appendonly yes, appendfsync always', loadAverage: os.loadavg(), write, bootstrap: boot, baseline, actors };
    const file = writeResult('scale', result, opts.out);
    const text =
      table(['path', 'mean ms/batch', 'p50', 'p99'], [
        ['EpisodicMemory.write (in-process)', write.localMs.mean, write.localMs.p50, write.localMs.p99],
        ['SharedMemory.write (Redis log + apply), appendfsync always', write.sharedMs.mean, write.sharedMs.p50, write.sharedMs.p99],
        ...(write.sharedEverysecMs ? [['SharedMemory.write, appendfsync everysec', write.sharedEverysecMs.mean, write.sharedEverysecMs.p50, write.sharedEverysecMs.p99]] : []),
      ]) +
      `\nbootstrap of ${boot.cases} cases: snapshot ${(boot.snapshotBytes / 1e6).toFixed(1)} MB in ${boot.snapshotMs.toFixed(0)} ms; new replica from the snapshot ${boot.bootstrapFromSnapshotMs.toFixed(0)} ms, from the whole log ${boot.bootstrapFromLogMs.toFixed(0)} ms\n\n` +
      table(['actors', 'steps', 'steps/s (all actors)', 'lag mean ms', 'lag max ms', 'write ms'], [
        ['in-process', baseline.steps, baseline.stepsPerSecond, '-', '-', '-'],
        ...actors.map((a) => [a.actors, a.steps, a.stepsPerSecond, a.lagMeanMs, a.lagMaxMs, a.writeMeanMs] as (string | number)[]),
      ]);
    return { result, file, text };
  } finally {
    await redis.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
