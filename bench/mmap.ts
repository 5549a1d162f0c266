/**
 * `memq bench mmap`: opening a large memory with memory-mapped keys against reading it.
 *
 *  A. Index level, at the size (default 6.5M × 384 float32 = 10 GB of keys): a key file
 *     written here, dropped from the page cache (GNU dd iflag=nocache), then
 *     MemoryIndex.mapKeys (the open), the first search (pages the file in and checks the rows),
 *     later searches (B = 1 and 256, M = 32); beside it, in the same run, the time to read the
 *     file from a cold cache (the least an ordinary load must spend) and the disk's throughput.
 *  B. Memory level at the same size: A's key file becomes the keys part of a snapshot (the
 *     other parts written by writeSnapshot with 1-float keys, then the header's dim and keys
 *     entry set to the real file: 10 GB of keys cannot be held twice in RAM here), and
 *     EpisodicMemory.load(dir, { mmap: true }) opens it cold, then the first metadata read
 *     (getCase: one chunk of rows checked), the same searches, then 100 writes and a save into a
 *     new directory (keys streamed in chunks; anonymous RSS before and after). An ordinary load
 *     of it would need the keys in RAM about three times over; it is not run.
 *  C. Memory level, smaller (default 1M × 384): a snapshot written by writeSnapshot, then
 *     EpisodicMemory.load with and without mmap, cold, and the same searches on both (ids
 *     compared), and verifyMapped (the CRCs and rows the mapped load left).
 * Files go to a temporary directory (under `dir` when the caller gives one) and are removed at the end.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { EpisodicMemory } from '../lib/memory/episodic';
import { MetaColumns } from '../lib/memory/metaColumns';
import { currentGeneration, generationName, writeSnapshot } from '../lib/memory/snapshot';
import { MemoryIndex } from '../lib/retrieval';
import { fillRandom, fmt, machine, nowMs, randomFloats, table, writeResult } from './common';

export interface MmapBenchOptions {
  n?: number;
  d?: number;
  memoryN?: number;
  dir?: string;
  out?: string;
  log?: (s: string) => void;
}

/** Writes n × d uniform(-1, 1) float32 keys in chunks; returns their CRC-32. */
function writeKeys(file: string, n: number, d: number, seed: number): number {
  const fd = fs.openSync(file, 'w');
  let crc = 0;
  let s = seed >>> 0 || 1;
  const rowsPer = Math.max(1, Math.floor((16 << 20) / (4 * d)));
  const buf = new Float32Array(rowsPer * d);
  try {
    for (let r0 = 0; r0 < n; r0 += rowsPer) {
      const rows = Math.min(rowsPer, n - r0);
      s = fillRandom(buf, rows * d, s);
      const bytes = Buffer.from(buf.buffer, 0, rows * d * 4);
      crc = zlib.crc32(bytes, crc);
      fs.writeSync(fd, bytes);
    }
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return crc;
}

/** Case i's metadata in the benches' memories. */
function benchMeta(n: number): MetaColumns {
  return MetaColumns.build(n, (i) => ({ state: `state ${i % 1000} of a kitchen`, action: `a${i % 7}`, visits: 1, weight: 1, episode: i >> 6, step: i & 63, source: 'train', time: 0, seq: i, touched: i }));
}

const BENCH_OPTIONS = { policy: { kind: 'unbounded' }, merge: null };

/** A memory of n cases with these n × d keys, saved in the documented format (writeSnapshot). */
function writeBenchSnapshot(dir: string, n: number, d: number, keys: Float32Array): void {
  writeSnapshot(
    dir,
    {
      dim: d,
      kernel: { kernel: 'gaussian', bandwidth: 1 },
      options: BENCH_OPTIONS,
      counters: { seq: n, clock: n },
      ids: new Int32Array(n).map((_, i) => i),
      keys,
      values: new Float32Array(n).map((_, i) => Math.sin(i)),
      meta: benchMeta(n),
    },
    { fsync: false },
  );
}

/**
 * A snapshot of n cases whose keys part is keyFile (n × d float32 with CRC-32 crc), moved into
 * it: the other parts by writeSnapshot (with 1-float keys), then the header's dim and keys entry
 * set and the header's CRC-32 sealed again, as docs/memory-format.md defines them.
 */
function snapshotAroundKeys(dir: string, keyFile: string, n: number, d: number, crc: number): void {
  writeBenchSnapshot(dir, n, 1, new Float32Array(n));
  const gen = path.join(dir, generationName(currentGeneration(dir)!));
  fs.renameSync(keyFile, path.join(gen, 'keys.f32'));
  const hfile = path.join(gen, 'header.json');
  const parsed = JSON.parse(fs.readFileSync(hfile, 'utf8'));
  parsed.header.dim = d;
  parsed.header.parts.keys = { file: 'keys.f32', bytes: n * d * 4, crc32: crc };
  parsed.crc32 = zlib.crc32(JSON.stringify(parsed.header));
  fs.writeFileSync(hfile, JSON.stringify(parsed) + '\n');
}

/** Drops every part of the current generation from the page cache. */
function dropSnapshot(dir: string): boolean {
  const gen = path.join(dir, generationName(currentGeneration(dir)!));
  return fs.readdirSync(gen).map((f) => dropCache(path.join(gen, f))).every(Boolean);
}

/** Drops a file from the page cache (GNU dd's nocache); false where that is not possible. */
function dropCache(file: string): boolean {
  try {
    execFileSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Reads a file start to end in 16 MiB chunks; seconds. */
function readThrough(file: string): number {
  const t0 = nowMs();
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(16 << 20);
  try {
    while (fs.readSync(fd, buf, 0, buf.length, null) > 0) {
      // reading is the work
    }
  } finally {
    fs.closeSync(fd);
  }
  return (nowMs() - t0) / 1000;
}

function queries(b: number, d: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: b * d }, () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

async function timed<T>(fn: () => Promise<T> | T): Promise<{ s: number; v: T }> {
  const t0 = nowMs();
  const v = await fn();
  return { s: (nowMs() - t0) / 1000, v };
}

export async function benchMmap(opts: MmapBenchOptions = {}) {
  const log = opts.log ?? (() => undefined);
  const n = opts.n ?? 6_500_000;
  const d = opts.d ?? 384;
  const memN = opts.memoryN ?? 1_000_000;
  const m = 32;
  const root = fs.mkdtempSync(path.join(opts.dir ?? os.tmpdir(), 'memq-bench-mmap-'));
  const rows: (string | number)[][] = [];
  const result: Record<string, unknown> = { benchmark: 'mmap', machine: machine(), m };
  try {
    // ---- A: the index over a large mapped key file ------------------------------------------
    const keyFile = path.join(root, 'keys.f32');
    log(`writing ${n} × ${d} keys (${fmt((n * d * 4) / 2 ** 30)} GiB) to ${keyFile}…\n`);
    const w = await timed(() => writeKeys(keyFile, n, d, 3));
    const keyCrc = w.v;
    const cold = dropCache(keyFile);
    const readCold = readThrough(keyFile);
    dropCache(keyFile);
    const ids = new Int32Array(n).map((_, i) => i);
    const values = new Float32Array(n).fill(0.5);
    const idx = new MemoryIndex({ dim: d, backend: 'cpu' });
    const open = await timed(() => idx.mapKeys(keyFile, ids, values));
    const q1 = queries(1, d, 1);
    const q256 = queries(256, d, 2);
    const first = await timed(() => idx.search(q1, m));
    const second = await timed(() => idx.search(q1, m));
    const third = await timed(() => idx.search(queries(1, d, 9), m));
    const batch = await timed(() => idx.search(q256, m));
    const gib = (n * d * 4) / 2 ** 30;
    result.index = {
      n,
      d,
      keyGiB: gib,
      writeSeconds: w.s,
      cacheDropped: cold,
      coldReadSeconds: readCold,
      coldReadGBs: (n * d * 4) / 1e9 / readCold,
      openSeconds: open.s,
      firstSearchSeconds: first.s,
      secondSearchSeconds: second.s,
      thirdSearchSeconds: third.s,
      b256SearchSeconds: batch.s,
      memoryBytes: idx.stats().memoryBytes,
      mappedRows: idx.stats().mappedRows,
    };
    rows.push([`index ${n}×${d} (${fmt(gib)} GiB)`, 'mapKeys', open.s, first.s, second.s, batch.s, `cold read of the file: ${fmt(readCold)} s`]);
    idx.clear();

    // ---- B: EpisodicMemory.load(dir, { mmap: true }) of a memory of that size ---------------
    const big = path.join(root, 'big');
    log(`writing the other parts of a ${n} × ${d} snapshot around the key file…\n`);
    snapshotAroundKeys(big, keyFile, n, d, keyCrc);
    const qs1 = queries(1, d, 5);
    const qs256 = queries(256, d, 6);
    const pick = (size: number) => (size * 0.6180339887) | 0;
    const bigRun = async () => {
      const dropped = dropSnapshot(big);
      const load = await timed(() => EpisodicMemory.load(big, { mmap: true }));
      const c1 = await timed(() => load.v.getCase(pick(n)));
      const s1 = await timed(() => load.v.search(qs1, m));
      const s1b = await timed(() => load.v.search(qs1, m));
      const s256 = await timed(() => load.v.search(qs256, m));
      return { dropped, load, c1, s1, s1b, s256 };
    };
    const b1 = await bigRun();
    // Writes after the load, then a save into a new directory: the keys stream from the mapping
    // to the file in 16 MiB chunks (and are checked back the same way), never held whole.
    const anonKiB = () => Number(/RssAnon:\s+(\d+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1] ?? NaN);
    await b1.load.v.write(Array.from({ length: 100 }, (_, i) => ({ key: queries(1, d, 100 + i), value: 1, state: `new ${i}`, action: 'a0' })));
    const anonBefore = anonKiB();
    const saved = await timed(() => b1.load.v.save(path.join(root, 'big-saved'), { fsync: false }));
    const anonAfter = anonKiB();
    fs.rmSync(path.join(root, 'big-saved'), { recursive: true, force: true });
    result.bigMemory = {
      n,
      d,
      keyGiB: gib,
      metaBytes: fs.statSync(path.join(big, generationName(currentGeneration(big)!), 'meta.bin')).size,
      cacheDropped: b1.dropped,
      mmap: {
        loadSeconds: b1.load.s,
        firstCaseSeconds: b1.c1.s,
        firstSearchSeconds: b1.s1.s,
        searchB1Seconds: b1.s1b.s,
        searchB256Seconds: b1.s256.s,
        memoryBytes: (b1.load.v.index as MemoryIndex).stats().memoryBytes,
      },
      plain: 'not run: an ordinary load holds the keys about three times over (file buffer, float copy, index)',
      saveAfter100Writes: { seconds: saved.s, cases: n + 100, rssAnonMiBBefore: anonBefore / 1024, rssAnonMiBAfter: anonAfter / 1024 },
    };
    rows.push([`memory ${n}×${d} (${fmt(gib)} GiB)`, 'load mmap', b1.load.s, b1.s1.s, b1.s1b.s, b1.s256.s, `first getCase ${fmt(b1.c1.s * 1000)} ms; save ${fmt(saved.s)} s`]);
    (b1.load.v.index as MemoryIndex).clear();
    fs.rmSync(big, { recursive: true, force: true });

    // ---- C: EpisodicMemory.load with and without mmap, smaller --------------------------------
    const dir = path.join(root, 'mem');
    log(`writing a ${memN} × ${d} snapshot to ${dir}…\n`);
    writeBenchSnapshot(dir, memN, d, randomFloats(memN * d, 7));
    const mem: Record<string, unknown> = { n: memN, d, keyGiB: (memN * d * 4) / 2 ** 30 };
    const idsOf: Record<string, Int32Array> = {};
    for (const mode of ['plain', 'mmap'] as const) {
      dropSnapshot(dir);
      const load = await timed(() => EpisodicMemory.load(dir, mode === 'mmap' ? { mmap: true } : {}));
      const c1 = await timed(() => load.v.getCase(pick(memN)));
      const s1 = await timed(() => load.v.search(qs1, m));
      const s1b = await timed(() => load.v.search(qs1, m));
      const s256 = await timed(() => load.v.search(qs256, m));
      const s256b = await timed(() => load.v.search(qs256, m));
      const verify = await timed(() => load.v.verifyMapped());
      idsOf[mode] = s256b.v.ids;
      mem[mode] = {
        loadSeconds: load.s,
        firstCaseSeconds: c1.s,
        firstSearchSeconds: s1.s,
        searchB1Seconds: s1b.s,
        searchB256FirstSeconds: s256.s,
        searchB256Seconds: s256b.s,
        verifyMappedSeconds: verify.s,
        memoryBytes: (load.v.index as MemoryIndex).stats().memoryBytes,
      };
      rows.push([`memory ${memN}×${d}`, mode === 'mmap' ? 'load mmap' : 'load', load.s, s1.s, s1b.s, s256b.s, mode === 'mmap' ? `verifyMapped ${fmt(verify.s)} s` : '']);
    }
    mem.sameIds = Buffer.from(idsOf.plain.buffer).equals(Buffer.from(idsOf.mmap.buffer));
    result.memory = mem;
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  const text = table(['data', 'open', 'open s', 'first search s (B=1)', 'next search s (B=1)', 'search s (B=256)', 'note'], rows);
  const file = writeResult('mmap', result, opts.out);
  return { result, text, file };
}
