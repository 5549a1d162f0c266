/**
 * SharedMemory on a real redis-server started by the test (loopback, temp dir, appendonly with
 * appendfsync always): replicas converge to the state of the log applied in order (checked
 * against a plain EpisodicMemory fed the stream by this test), in one process and across
 * processes; a killed actor's replacement bootstraps from a snapshot plus the stream; Redis
 * killed and restarted mid-run loses no acknowledged write; the local queue is bounded.
 * Skips, saying why, where redis-server is missing.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EpisodicMemory } from '../../lib/memory/episodic';
import { parseMemoryUrl, seedOfEntry, SharedMemory, SharedMemoryError } from '../../lib/scale/shared';
import { startRedis, type RedisServer } from './daemons';
import { signCases, writerKeyOf } from '../../lib/memory/provenance';
import { main } from '../../lib/cli/main';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const common = require('../fixtures/shared_common.js') as {
  MEMORY_OPTIONS: any;
  makeBatch: (seed: number, b: number) => any[];
  digest: (m: EpisodicMemory) => Promise<{ size: number; state: string; search: string; ids: number[] }>;
};
const root = path.resolve(__dirname, '..', '..');
const built = fs.existsSync(path.join(root, 'dist', 'cjs', 'lib', 'scale', 'shared.js'));
const actorScript = path.join(root, 'test', 'fixtures', 'shared_actor.js');

/** The log applied in stream order to a plain EpisodicMemory by this test (the reference). */
async function replayLog(redisUrl: string, name: string, upTo?: string, options: any = common.MEMORY_OPTIONS): Promise<EpisodicMemory> {
  const { createClient, RESP_TYPES } = require('redis');
  const c = createClient({ url: redisUrl });
  c.on('error', () => undefined);
  await c.connect();
  const bin = c.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
  const entries = await bin.xRange(`memq:${name}:log`, '-', upTo ?? '+');
  c.destroy();
  const mem = new EpisodicMemory(options);
  const seen = new Map<string, number>();
  for (const e of entries) {
    const f = e.message;
    const actor = String(f.a);
    const n = Number(String(f.n));
    if ((seen.get(actor) ?? -1) >= n) continue;
    seen.set(actor, n);
    const rest = JSON.parse(String(f.c));
    const raw = new Uint8Array(f.k);
    const keys = new Float32Array(raw.buffer);
    const d = options.dim;
    (mem as any).rng.state = seedOfEntry(String(e.id));
    await mem.write(rest.map((r: any, i: number) => ({ ...r, key: keys.subarray(i * d, (i + 1) * d) })));
  }
  return mem;
}

function runActor(args: string[]): { done: Promise<{ code: number | null; lines: any[]; stderr: string }>; child: ReturnType<typeof spawn>; acked: () => number } {
  const child = spawn(process.execPath, [actorScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: any[] = [];
  let buf = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; lines: any[]; stderr: string }>((resolve) => child.on('exit', (code) => resolve({ code, lines, stderr })));
  return { done, child, acked: () => lines.filter((l) => 'acked' in l).length };
}

const waitUntil = async (cond: () => boolean, ms: number) => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('memory URLs', () => {
  it('parses redis://HOST:PORT/NAME and refuses the rest, naming the form', () => {
    expect(parseMemoryUrl('redis://127.0.0.1:6380/gridworld-1')).toEqual({ url: 'redis://127.0.0.1:6380', name: 'gridworld-1' });
    expect(parseMemoryUrl('redis://u:p@h:1/m')).toEqual({ url: 'redis://u:p@h:1', name: 'm' });
    expect(() => parseMemoryUrl('http://h:1/m')).toThrow(/must start with redis:\/\//);
    expect(() => parseMemoryUrl('redis://h:1')).toThrow(/the path must name the memory/);
    expect(() => parseMemoryUrl('redis://h:1/a/b')).toThrow(RangeError);
    expect(() => parseMemoryUrl('nonsense')).toThrow(/redis:\/\/HOST:PORT\/NAME/);
  });
});

describe('SharedMemory on a local redis-server', () => {
  let server: RedisServer | undefined;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-redis-'));
  beforeAll(async () => {
    const r = await startRedis(path.join(tmp, 'redis'));
    server = r.server;
    if (!server) process.stderr.write(`\n[redis.test] SKIPPED: ${r.reason}\n\n`);
  }, 30_000);
  afterAll(async () => {
    await server?.stop();
  }, 30_000);

  it('three replicas in one process, writing concurrently, converge to the log applied in order', async (ctx) => {
    if (!server) return ctx.skip();
    const name = 'conv';
    const reps = await Promise.all([1, 2, 3].map(() => SharedMemory.open({ url: server!.url, name, memory: common.MEMORY_OPTIONS })));
    await Promise.all(
      reps.map(async (sm, a) => {
        for (let b = 0; b < 25; b++) {
          const report = await sm.write(common.makeBatch(a + 1, b));
          for (const id of report.caseIds) if (id >= 0) expect(sm.memory.getCase(id)).toBeDefined(); // read-your-writes
        }
      }),
    );
    await Promise.all(reps.map((sm) => sm.sync()));
    const ref = await replayLog(server.url, name);
    const want = await common.digest(ref);
    expect(want.size).toBeGreaterThan(100); // merges and evictions happened (capacity 150 of 450 cases)
    expect(want.size).toBeLessThanOrEqual(150);
    for (const sm of reps) expect(await common.digest(sm.memory)).toEqual(want);
    // The check can fail: the same batches in another order give another memory.
    const other = new EpisodicMemory(common.MEMORY_OPTIONS);
    for (let b = 24; b >= 0; b--) for (let a = 3; a >= 1; a--) await other.write(common.makeBatch(a, b));
    expect((await common.digest(other)).state).not.toBe(want.state);
    // Writes on the replica itself go through the log; forking operations are refused.
    expect(() => reps[0].memory.remove(Int32Array.of(want.ids[0]))).toThrow(SharedMemoryError);
    await expect(reps[0].write([{ key: [1, 2], value: 1 }])).rejects.toThrow(/key has length 2, expected dim 8/);
    await expect(reps[0].write([{ key: new Float32Array(8), value: NaN }])).rejects.toThrow(RangeError);
    // Options must agree with the memory's.
    await expect(SharedMemory.open({ url: server.url, name, memory: { ...common.MEMORY_OPTIONS, dim: 4 } })).rejects.toThrow(/differ from the memory's/);
    await Promise.all(reps.map((sm) => sm.close()));
  }, 60_000);

  it.skipIf(!built)('actors in child processes converge; a SIGKILLed actor is replaced by one that bootstraps from a snapshot plus the stream', async (ctx) => {
    if (!server) return ctx.skip();
    const name = 'procs';
    const a = runActor([server.url, name, '1', '30', '10']); // snapshots after its batch 10
    const b = runActor([server.url, name, '2', '30']);
    const victim = runActor([server.url, name, '3', '1000', '-1', '20']); // writes slowly until killed
    await waitUntil(() => victim.acked() >= 12, 30_000);
    victim.child.kill('SIGKILL');
    await victim.done;
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(ra.code, ra.stderr).toBe(0);
    expect(rb.code, rb.stderr).toBe(0);
    // The newcomer: from the snapshot (not from the start of the log), then the stream after it.
    const snap = await SharedMemory.open({ url: server.url, name, memory: common.MEMORY_OPTIONS });
    const full = await SharedMemory.open({ url: server.url, name, memory: common.MEMORY_OPTIONS, fromSnapshot: false });
    await snap.sync();
    await full.sync();
    expect(snap.stats().applied).toBeLessThan(full.stats().applied); // it started from the snapshot
    const ref = await common.digest(await replayLog(server.url, name));
    expect(await common.digest(snap.memory)).toEqual(ref);
    expect(await common.digest(full.memory)).toEqual(ref);
    // The replacement actor writes on, and everyone still agrees.
    const c = runActor([server.url, name, '4', '5']);
    const rc = await c.done;
    expect(rc.code, rc.stderr).toBe(0);
    await snap.sync();
    const ref2 = await common.digest(await replayLog(server.url, name));
    expect(await common.digest(snap.memory)).toEqual(ref2);
    expect(rc.lines.at(-1).digest).toEqual(ref2); // its own replica, after its last sync (nobody wrote after it)
    for (const r of [ra, rb]) expect(r.lines.at(-1).done).toBe(true);
    await snap.close();
    await full.close();
  }, 90_000);

  it('authenticated provenance: the writer MAC travels with the batch; every replica downgrades the unsigned ones alike', async (ctx) => {
    if (!server) return ctx.skip();
    const name = 'auth';
    const KEY = 'shared-writer-key-0123456789';
    const memory = { dim: 8, kernel: { kernel: 'gaussian', bandwidth: 0.5 }, trust: { authenticate: KEY, quarantine: false } } as any;
    const [a, b] = await Promise.all([0, 1].map(() => SharedMemory.open({ url: server!.url, name, memory })));
    const writer = writerKeyOf(KEY)!;
    const signedBatch = common.makeBatch(1, 0).map((c: any) => ({ ...c, source: 'train' }));
    const forgedBatch = common.makeBatch(2, 0).map((c: any) => ({ ...c, source: 'train' }));
    const ra = await a.write(signedBatch, { mac: signCases(writer, signedBatch) });
    const rb = await b.write(forgedBatch); // an actor without the key claims the agent's source
    expect(ra.unverified).toBe(0);
    expect(rb.unverified).toBe(6);
    await a.sync();
    await b.sync();
    for (const sm of [a, b]) {
      const src = Array.from(sm.memory.ids(), (id) => sm.memory.getCase(id)!.source).sort();
      expect(src).toEqual([...Array(6).fill('train'), ...Array(6).fill('unverified:train')]);
    }
    // a replica with another key (or none) cannot join: its sources would diverge
    await expect(SharedMemory.open({ url: server.url, name, memory: { ...memory, trust: { authenticate: 'another-key-0123456789abc', quarantine: false } } })).rejects.toThrow(/differ from the memory's/);
    // nor one without a trust policy (its merges would not keep sources apart)
    await expect(SharedMemory.open({ url: server.url, name, memory: { ...memory, trust: undefined } })).rejects.toThrow(/differ from the memory's/);
    await Promise.all([a.close(), b.close()]);
  }, 60_000);

  it('a snapshot into a directory on shared storage bootstraps a new replica with nothing left to replay', async (ctx) => {
    if (!server) return ctx.skip();
    const name = 'dirsnap';
    const a = await SharedMemory.open({ url: server.url, name, memory: common.MEMORY_OPTIONS });
    for (let b = 0; b < 40; b++) await a.write(common.makeBatch(5, b)); // 240 cases into capacity 150: evictions
    const snap = await a.snapshot({ dir: path.join(tmp, 'shared-storage') });
    expect(snap.streamId).toBe(a.lastId);
    expect(fs.existsSync(path.join(tmp, 'shared-storage', `${name}-${snap.streamId}`, 'CURRENT'))).toBe(true);
    const b = await SharedMemory.open({ url: server.url, name, memory: common.MEMORY_OPTIONS });
    expect(b.stats().applied).toBe(0);
    expect(b.lastId).toBe(snap.streamId);
    expect(await common.digest(b.memory)).toEqual(await common.digest(a.memory));
    // Both go on from there identically (ids continue from the restored counter, RNG per entry).
    await b.write(common.makeBatch(6, 0));
    await a.sync();
    expect(await common.digest(b.memory)).toEqual(await common.digest(a.memory));
    expect(await common.digest(a.memory)).toEqual(await common.digest(await replayLog(server.url, name)));
    await a.close();
    await b.close();
  }, 60_000);

  it('Redis killed and restarted mid-run loses no acknowledged write; the local queue is bounded', async (ctx) => {
    if (!server) return ctx.skip();
    const name = 'restart';
    const errors: string[] = [];
    const sm = await SharedMemory.open({ url: server.url, name, memory: common.MEMORY_OPTIONS, maxQueued: 8, onError: (e) => errors.push(e.message) });
    const acked: number[] = [];
    const writes: Promise<unknown>[] = [];
    for (let b = 0; b < 10; b++) {
      await sm.write(common.makeBatch(7, b));
      acked.push(b);
    }
    await server.kill(); // SIGKILL: no shutdown save, the AOF (fsync always) is what survives
    // While Redis is down: batches queue (up to 8), the 9th is refused with a clear error.
    for (let b = 10; b < 18; b++) writes.push(sm.write(common.makeBatch(7, b)).then(() => acked.push(b)));
    await expect(sm.write(common.makeBatch(7, 99))).rejects.toThrow(/8 write batches already wait for Redis .* maxQueued = 8/);
    expect(sm.stats().queued).toBe(8);
    expect(acked.length).toBe(10);
    await server.start();
    await Promise.all(writes);
    expect(acked.length).toBe(18);
    expect(errors.length).toBeGreaterThan(0);
    await sm.sync();
    // Every acknowledged batch is in the log exactly once, in write order, and the replica is the log.
    const ref = await replayLog(server.url, name);
    expect(await common.digest(sm.memory)).toEqual(await common.digest(ref));
    const { createClient } = require('redis');
    const c = createClient({ url: server.url });
    await c.connect();
    const entries = await c.xRange(`memq:${name}:log`, '-', '+');
    c.destroy();
    expect(entries.map((e: any) => Number(e.message.n))).toEqual(Array.from({ length: 18 }, (_, i) => i));
    await sm.close();
  }, 60_000);

  it.skipIf(!built)('memq run --memory redis://.../NAME --actors 2: two memq actors learn into one memory', async (ctx) => {
    if (!server) return ctx.skip();
    const tmp2 = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-actors-'));
    const url = `${server.url}/actors-cli`;
    let err = '';
    const io = { stdout: () => undefined, stderr: (t: string) => (err += t), isTTY: false };
    expect(await main(['run', '--memory', url, '--actors', '2', '--agent', 'nec', '--out', path.join(tmp2, 'x')], io)).toBe(2);
    expect(err).toMatch(/shared memory is for the memq agent/);
    expect(await main(['run', '--memory', 'redis://h:1', '--out', path.join(tmp2, 'x')], io)).toBe(2);
    expect(err).toMatch(/the path must name the memory/);
    let out = '';
    const code = await main(['run', '--memory', url, '--actors', '2', '--env', 'gridworld', '--episodes', '12', '--demos', '0', '--eval-games', '1', '--out', path.join(tmp2, 'run'), '--json'], {
      stdout: (t) => (out += t), stderr: () => undefined, isTTY: false,
    });
    expect(code, out).toBe(0);
    const r = JSON.parse(out);
    expect(r.summaries.map((s: any) => [s.seed, s.status, s.episodes])).toEqual([[1, 'complete', 12], [2, 'complete', 12]]);
    // One batch per training episode of either actor is in the log; a replica of the memory equals the log replayed.
    const opts = JSON.parse(fs.readFileSync(path.join(tmp2, 'run', 'memq-seed1', 'config.json'), 'utf8'));
    expect(opts.seed).toBe(1);
    const { createClient } = require('redis');
    const c = createClient({ url: server.url });
    await c.connect();
    expect(await c.xLen('memq:actors-cli:log')).toBe(24);
    const memOptions = JSON.parse(await c.get('memq:actors-cli:options'));
    c.destroy();
    const replica = await SharedMemory.open({ url: server.url, name: 'actors-cli', memory: memOptions });
    await replica.sync();
    expect(await common.digest(replica.memory)).toEqual(await common.digest(await replayLog(server.url, 'actors-cli', undefined, memOptions)));
    expect(replica.memory.size).toBeGreaterThan(0);
    for (const s of r.shared) expect(s.appliedOwn).toBe(12);
    await replica.close();
  }, 90_000);
});
