// EpisodicMemory.load(dir, { mmap: true }): the keys stay in the snapshot's file, mapped by the
// native index. Reference: the same snapshot loaded the ordinary way (every key read and checked).
// Searches, estimates, writes after the load, journal replay, saves (into the same directory,
// which deletes the mapped generation) and reloads must agree exactly; a damaged keys file is
// refused where the mapped load can see it (length, MAC with a key) and otherwise reported by
// verifyMappedKeys (CRC-32) and by the first search (a non-finite row), never silently used.
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EpisodicMemory, nativeAvailable } from '../../lib/memory/episodic';
import { generationName, currentGeneration, SnapshotError } from '../../lib/memory/snapshot';
import type { CaseInput } from '../../lib/memory/types';
import { MemoryIndex } from '../../lib/retrieval';
import { Mulberry32 } from '../../lib/policy/rng';
import { editMeta } from '../helpers/metaFile';
import * as crypto from 'crypto';
import * as zlib from 'zlib';

const D = 24;
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-mmap-'));
let dirCount = 0;
const freshDir = () => path.join(tmpRoot, `m${dirCount++}`);
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

function randomCases(rng: Mulberry32, n: number, episode: number): CaseInput[] {
  return Array.from({ length: n }, (_, t) => ({
    key: Float32Array.from({ length: D }, () => rng.normal()),
    value: rng.normal() * 3,
    state: `state ${rng.int(50)}`,
    action: ['open door', 'take key', 'go north'][rng.int(3)],
    episode,
    step: t,
    source: 'train',
    time: 1_700_000_000_000 + episode * 100 + t,
  }));
}

async function saved(n: number, seed: number, key?: string): Promise<{ dir: string; mem: EpisodicMemory }> {
  const mem = new EpisodicMemory({ dim: D, kernel: { kernel: 'gaussian', bandwidth: 2 } });
  const rng = new Mulberry32(seed);
  for (let e = 0; e * 100 < n; e++) await mem.write(randomCases(rng, Math.min(100, n - e * 100), e));
  const dir = freshDir();
  mem.save(dir, { fsync: false, ...(key ? { key } : {}) });
  return { dir, mem };
}

function queries(seed: number, b: number): Float32Array {
  const rng = new Mulberry32(seed);
  return Float32Array.from({ length: b * D }, () => rng.normal());
}

async function reads(mem: EpisodicMemory, q: Float32Array) {
  const s = await mem.search(q, 9);
  const e = await mem.estimate(q, 9, { voidWeight: 0.2, voidValue: 0 });
  return { ids: Array.from(s.ids), dist2: Array.from(s.dist2), kernel: Array.from(s.kernel), value: Array.from(e.value), conf: Array.from(e.confidence) };
}

function keysFile(dir: string): string {
  return path.join(dir, generationName(currentGeneration(dir)!), 'keys.f32');
}

function metaFile(dir: string): string {
  return path.join(dir, generationName(currentGeneration(dir)!), 'meta.bin');
}

/** Replace the metadata part and reseal the header (its length, CRC-32 and the header's CRC). */
function forgeMeta(dir: string, bytes: Buffer): void {
  const g = path.join(dir, generationName(currentGeneration(dir)!));
  fs.writeFileSync(path.join(g, 'meta.bin'), bytes);
  const parsed = JSON.parse(fs.readFileSync(path.join(g, 'header.json'), 'utf8'));
  parsed.header.parts.meta.bytes = bytes.length;
  parsed.header.parts.meta.crc32 = zlib.crc32(bytes);
  parsed.crc32 = zlib.crc32(JSON.stringify(parsed.header));
  fs.writeFileSync(path.join(g, 'header.json'), JSON.stringify(parsed) + '\n');
}

const sha = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

function thrown(fn: () => unknown): SnapshotError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(SnapshotError);
    return e as SnapshotError;
  }
  throw new Error('expected a SnapshotError');
}

describe.skipIf(!nativeAvailable())('load({ mmap: true })', () => {
  it('maps the keys and reads, writes and saves exactly as an ordinary load', async () => {
    const { dir } = await saved(2500, 1);
    const plain = EpisodicMemory.load(dir);
    const mapped = EpisodicMemory.load(dir, { mmap: true });
    const st = (mapped.index as MemoryIndex).stats();
    expect(st.mappedRows).toBe(2500);
    expect(st.backend).toBe('cpu');
    expect(st.memoryBytes).toBeLessThan((plain.index as MemoryIndex).stats().memoryBytes / 2);
    expect(mapped.mappedKeys?.path).toBe(keysFile(dir));
    const q = queries(7, 13);
    expect(await reads(mapped, q)).toEqual(await reads(plain, q));
    expect(Buffer.from(mapped.getKeys(mapped.ids()).buffer).equals(Buffer.from(plain.getKeys(plain.ids()).buffer))).toBe(true);
    await mapped.verifyMappedKeys();
    // Writes after the load (into RAM after the mapped rows; enough to outgrow the reservation).
    const rng = new Mulberry32(99);
    for (let e = 0; e < 20; e++) {
      const cases = randomCases(rng, 100, 1000 + e);
      await mapped.write(cases);
      await plain.write(cases);
    }
    mapped.remove(mapped.ids().subarray(0, 700));
    plain.remove(plain.ids().subarray(0, 700));
    expect(await reads(mapped, q)).toEqual(await reads(plain, q));
    expect(mapped.toSnapshotData()).toEqual(plain.toSnapshotData());
    // Saving into the same directory deletes the mapped generation's files; the mapping keeps them.
    mapped.save(dir, { fsync: false });
    expect(fs.existsSync(mapped.mappedKeys!.path)).toBe(false);
    expect(await reads(mapped, q)).toEqual(await reads(plain, q));
    const again = EpisodicMemory.load(dir, { mmap: true });
    expect(await reads(again, q)).toEqual(await reads(plain, q));
    expect(again.toSnapshotData()).toEqual(plain.toSnapshotData());
  });

  it('replays the journal after a mapped load', async () => {
    const { dir } = await saved(800, 2);
    const writer = EpisodicMemory.load(dir, { attachJournal: true, fsync: false, mmap: true });
    const rng = new Mulberry32(5);
    for (let e = 0; e < 4; e++) await writer.write(randomCases(rng, 50, 50 + e));
    writer.remove(writer.ids().subarray(10, 30));
    writer.detachJournal();
    const plain = EpisodicMemory.load(dir);
    const mapped = EpisodicMemory.load(dir, { mmap: true });
    expect(mapped.loadReport?.journalRecords).toBeGreaterThan(0);
    const q = queries(8, 5);
    expect(await reads(mapped, q)).toEqual(await reads(plain, q));
    expect(await reads(mapped, q)).toEqual(await reads(writer, q));
  });

  it('refuses a truncated keys file at load and reports a changed one through verifyMappedKeys', async () => {
    const { dir } = await saved(300, 3);
    const file = keysFile(dir);
    const orig = fs.readFileSync(file);
    // A finite value changed: the ordinary load refuses it (CRC-32); the mapped one cannot see it
    // without reading the file, and verifyMappedKeys does.
    const changed = Buffer.from(orig);
    changed.writeFloatLE(changed.readFloatLE(40) + 1, 40);
    fs.writeFileSync(file, changed);
    expect(() => EpisodicMemory.load(dir)).toThrow(/keys\.f32 \(part 'keys'\) is corrupted: CRC-32/);
    const m = EpisodicMemory.load(dir, { mmap: true });
    await expect(m.verifyMappedKeys()).rejects.toThrow(/keys\.f32 \(part 'keys'\) is corrupted: CRC-32/);
    // Cut short: the length check refuses it at once.
    fs.writeFileSync(file, orig.subarray(0, orig.length - 4));
    let err: unknown;
    try {
      EpisodicMemory.load(dir, { mmap: true });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SnapshotError);
    expect((err as SnapshotError).part).toBe('keys');
    expect((err as Error).message).toMatch(/is truncated: \d+ bytes, the header says \d+/);
    fs.writeFileSync(file, orig);
    await EpisodicMemory.load(dir, { mmap: true }).verifyMappedKeys();
  });

  it('fails searches, not the process, on a non-finite row in a mapped file', async () => {
    const { dir } = await saved(400, 4);
    const file = keysFile(dir);
    const buf = fs.readFileSync(file);
    buf.writeFloatLE(NaN, (123 * D + 4) * 4);
    fs.writeFileSync(file, buf);
    const m = EpisodicMemory.load(dir, { mmap: true });
    const q = queries(1, 2);
    for (let i = 0; i < 2; i++) await expect(m.search(q, 3)).rejects.toThrow(new RegExp(`keys\\.f32: mapped key row 123 \\(id \\d+\\) has a non-finite value`));

    expect(() => EpisodicMemory.load(dir)).toThrow(/corrupted: CRC-32/);
    await expect(EpisodicMemory.load(dir, { mmap: true }).verifyMapped()).rejects.toThrow(/keys\.f32 \(part 'keys'\) is corrupted: CRC-32/);
    // the CRC-32 resealed (a forgery): verifyMapped still finds the row, as the first search would
    const g = path.dirname(file);
    const parsed = JSON.parse(fs.readFileSync(path.join(g, 'header.json'), 'utf8'));
    parsed.header.parts.keys.crc32 = zlib.crc32(buf);
    parsed.crc32 = zlib.crc32(JSON.stringify(parsed.header));
    fs.writeFileSync(path.join(g, 'header.json'), JSON.stringify(parsed) + '\n');
    const v = EpisodicMemory.load(dir, { mmap: true });
    let err: unknown;
    try {
      await v.verifyMapped();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SnapshotError);
    expect((err as SnapshotError).part).toBe('keys');
    expect((err as Error).message).toMatch(/keys\.f32 \(part 'keys'\): .*keys\.f32: mapped key row 123 \(id \d+\) has a non-finite value/);
  });

  it('checks the keys MAC of a signed snapshot at a mapped load', async () => {
    const key = 'a signing key of 32 bytes ......';
    const { dir } = await saved(300, 5, key);
    const q = queries(2, 3);
    const good = EpisodicMemory.load(dir, { mmap: true, key });
    expect(await reads(good, q)).toEqual(await reads(EpisodicMemory.load(dir, { key }), q));
    const file = keysFile(dir);
    const buf = fs.readFileSync(file);
    buf.writeFloatLE(buf.readFloatLE(8) * 2, 8);
    fs.writeFileSync(file, buf);
    expect(() => EpisodicMemory.load(dir, { mmap: true, key })).toThrow(/keys\.f32 \(part 'keys'\): signature check failed/);
  });

  it('maps the metadata: the same cases, writes copy-on-write, growth and compaction past the mapped rows', async () => {
    const { dir, mem } = await saved(3000, 11);
    const file = metaFile(dir);
    const before = sha(file);
    const plain = EpisodicMemory.load(dir);
    const mapped = EpisodicMemory.load(dir, { mmap: true });
    expect(mapped.mappedMeta?.path).toBe(file);
    expect(mapped.store.uncheckedRows).toBe(3000);
    for (const id of mem.ids()) expect(mapped.getCase(id)).toEqual(plain.getCase(id));
    expect(mapped.store.uncheckedRows).toBe(0);
    // new weights of mapped rows, new cases past the room the mapping
    // keeps (3000 + 1024 rows), then removals enough to compact the moved rows into RAM
    const rng = new Mulberry32(12);
    for (let e = 0; e < 15; e++) {
      const cases = randomCases(rng, 100, 500 + e);
      await mapped.write(cases);
      await plain.write(cases);
    }
    mapped.setWeights(mapped.ids().subarray(5, 9), [0.5, 2, 3, 4]);
    plain.setWeights(plain.ids().subarray(5, 9), [0.5, 2, 3, 4]);
    expect(mapped.toSnapshotData()).toEqual(plain.toSnapshotData());
    const cut = mapped.ids().subarray(0, 3000);
    mapped.remove(cut);
    plain.remove(plain.ids().subarray(0, 3000));
    expect(mapped.store.slotsUsed).toBe(mapped.size); // compacted
    expect(mapped.toSnapshotData()).toEqual(plain.toSnapshotData());
    expect(sha(file)).toBe(before);
    await mapped.verifyMapped();
  });

  it('checks mapped metadata rows when they are first read, and verifyMapped checks them all', async () => {
    const { dir, mem } = await saved(500, 13);
    const ids = mem.ids();
    forgeMeta(dir, editMeta(fs.readFileSync(metaFile(dir)), 'weight', 77, NaN));
    const e = thrown(() => EpisodicMemory.load(dir));
    expect(e.message).toMatch(new RegExp(`meta\\.bin \\(part 'meta'\\) row 77 \\(id ${ids[77]}\\): weight must be a finite number, got NaN`));
    const m = EpisodicMemory.load(dir, { mmap: true });
    const r = thrown(() => m.getCase(ids[3]));
    expect(r.part).toBe('meta');
    expect(r.row).toBe(77);
    expect(r.message).toMatch(/meta\.bin \(part 'meta'\) row 77 \(id \d+\): weight must be a finite number, got NaN/);
    expect(() => m.getCase(ids[3])).toThrow(SnapshotError); // again, not once
    await expect(EpisodicMemory.load(dir, { mmap: true }).verifyMapped()).rejects.toThrow(/row 77 .*weight must be a finite number/);
    // a changed byte the header was not resealed for: the CRC-32 through verifyMapped
    const { dir: d2 } = await saved(200, 14);
    const b = fs.readFileSync(metaFile(d2));
    b[b.length - 1] ^= 1;
    fs.writeFileSync(metaFile(d2), b);
    expect(() => EpisodicMemory.load(d2)).toThrow(/meta\.bin \(part 'meta'\) is corrupted: CRC-32/);
    const m2 = EpisodicMemory.load(d2, { mmap: true });
    await expect(m2.verifyMapped()).rejects.toThrow(/meta\.bin \(part 'meta'\) is corrupted: CRC-32/);
    // cut short, or its layout damaged: refused at the mapped load
    fs.writeFileSync(metaFile(d2), b.subarray(0, b.length - 8));
    expect(thrown(() => EpisodicMemory.load(d2, { mmap: true })).message).toMatch(/meta\.bin \(part 'meta'\) is truncated/);
    const { dir: d3 } = await saved(200, 15);
    const c = fs.readFileSync(metaFile(d3));
    forgeMeta(d3, Buffer.concat([c, Buffer.alloc(4096)]));
    expect(thrown(() => EpisodicMemory.load(d3, { mmap: true })).message).toMatch(/meta\.bin \(part 'meta'\) is malformed: it is \d+ bytes, its columns end at \d+/);
    forgeMeta(d3, Buffer.concat([Buffer.from('MEMQMETX'), c.subarray(8)]));
    expect(thrown(() => EpisodicMemory.load(d3, { mmap: true })).message).toMatch(/is malformed: it does not start with MEMQMETA/);
  });

  it('a signed snapshot: the metadata MAC is checked at the mapped load', async () => {
    const key = 'a signing key of 32 bytes ......';
    const { dir, mem } = await saved(300, 16, key);
    const m = EpisodicMemory.load(dir, { mmap: true, key });
    expect(m.mappedMeta).toBeUndefined();
    expect(m.store.uncheckedRows).toBe(0);
    expect(m.getCase(mem.ids()[5])).toEqual(mem.getCase(mem.ids()[5]));
    forgeMeta(dir, editMeta(fs.readFileSync(metaFile(dir)), 'visits', 4, 2));
    expect(thrown(() => EpisodicMemory.load(dir, { mmap: true, key })).message).toMatch(/meta\.bin \(part 'meta'\): signature check failed/);
  });

  it('EpisodicMemory.open(dir, options, { mmap: true }) maps an existing snapshot and journals after it', async () => {
    const { dir } = await saved(600, 17);
    const m = EpisodicMemory.open(dir, { dim: D }, { fsync: false, mmap: true });
    expect(m.mappedKeys?.path).toBe(keysFile(dir));
    expect(m.mappedMeta?.path).toBe(metaFile(dir));
    await m.write(randomCases(new Mulberry32(18), 30, 900));
    m.detachJournal();
    const again = EpisodicMemory.load(dir);
    expect(again.size).toBe(630);
    expect(again.toSnapshotData()).toEqual(m.toSnapshotData());
  });

  it('checks its options', async () => {
    const { dir } = await saved(10, 6);
    expect(() => EpisodicMemory.load(dir, { mmap: 'yes' as unknown as boolean })).toThrow(TypeError);
    expect(() => EpisodicMemory.load(dir, { mmap: true, backend: 'js' })).toThrow(/mmap needs the native index/);
    const empty = freshDir();
    new EpisodicMemory({ dim: D }).save(empty, { fsync: false });
    const m = EpisodicMemory.load(empty, { mmap: true });
    expect(m.size).toBe(0);
    await m.write(randomCases(new Mulberry32(1), 5, 0));
    expect((await m.search(queries(3, 1), 2)).ids[0]).toBeGreaterThanOrEqual(0);
  });

  it('MemoryIndex.mapKeys names bad arguments', () => {
    const idx = new MemoryIndex({ dim: 4 });
    expect(() => idx.mapKeys(42 as unknown as string, new Int32Array(1), new Float32Array(1))).toThrow(/file must be a path string/);
    expect(() => idx.mapKeys('/x', new Int32Array(2), new Float32Array(1))).toThrow(RangeError);
    expect(() => idx.mapKeys(path.join(tmpRoot, 'nope.f32'), new Int32Array([0]), new Float32Array(1))).toThrow(/cannot open the keys file/);
  });
});
