import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { EpisodicMemory, nativeAvailable } from '../../lib/memory/episodic';
import { currentGeneration, generationName, readSnapshot, SnapshotError, writeSnapshot, type SaveStep } from '../../lib/memory/snapshot';
import type { CaseInput } from '../../lib/memory/types';
import type { MetaColumns } from '../../lib/memory/metaColumns';
import { Mulberry32 } from '../../lib/policy/rng';
import '../helpers/referenceIndex'; // registers the float64 ReferenceIndex as backend 'js'

const backends: Array<'js' | 'native'> = nativeAvailable() ? ['js', 'native'] : ['js'];
const D = 6;
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-persist-'));
let dirCount = 0;
const freshDir = () => path.join(tmpRoot, `m${dirCount++}`);
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

function randomCases(rng: Mulberry32, n: number, episode: number): CaseInput[] {
  return Array.from({ length: n }, (_, t) => ({
    key: Float32Array.from({ length: D }, () => Math.round(rng.normal() * 4) / 4),
    value: rng.normal() * 10,
    state: `room ${rng.int(5)} — “quoted” ✓`,
    action: ['open door', 'take key', 'go north'][rng.int(3)],
    episode,
    step: t,
    source: 'test',
    time: 1_700_000_000_000 + episode * 100 + t,
    tdError: Math.abs(rng.normal()),
  }));
}

async function populated(backend: 'js' | 'native', seed = 1): Promise<EpisodicMemory> {
  const mem = new EpisodicMemory({
    dim: D,
    backend,
    kernel: { kernel: 'gaussian', bandwidth: 0.7 },
    policy: { kind: 'importance', capacity: 60, weightBy: 'tdError' },
    merge: { epsilon: 0.3, rate: 0.5 },
  });
  const rng = new Mulberry32(seed);
  for (let e = 0; e < 12; e++) await mem.write(randomCases(rng, 10, e));
  return mem;
}

/** Everything observable about a memory, for exact comparison. */
function state(mem: EpisodicMemory) {
  const ids = mem.ids();
  return {
    ids: Array.from(ids),
    keys: Buffer.from(mem.getKeys(ids).buffer).toString('hex'),
    indexValues: Array.from(mem.index.getValues(ids)),
    cases: Array.from(ids, (id) => mem.getCase(id)),
    kernel: mem.kernel,
    policy: mem.policy,
    merge: mem.merge,
    counters: [mem.seqCounter, mem.clock],
  };
}

for (const backend of backends) {
  describe(`snapshots [${backend}]`, () => {
    it('round trip is identical, and the loaded memory behaves identically afterwards', async () => {
      const mem = await populated(backend);
      expect(mem.size).toBe(60);
      const dir = freshDir();
      const res = mem.save(dir);
      expect(res.generation).toBe(1);
      const back = EpisodicMemory.load(dir, { backend });
      expect(state(back)).toEqual(state(mem));
      const rng = new Mulberry32(77);
      const queries = Float32Array.from({ length: 8 * D }, () => rng.normal());
      expect(await back.estimate(queries, 5, { voidWeight: 0.1 })).toEqual(await mem.estimate(queries, 5, { voidWeight: 0.1 }));
      // Same writes afterwards → same state (counters and policy state were restored).
      const more = randomCases(new Mulberry32(5), 15, 99);
      await mem.write(more);
      await back.write(more);
      expect(state(back)).toEqual(state(mem));
    });

    it('a second save replaces the first generation; the empty memory round-trips', async () => {
      const dir = freshDir();
      const mem = await populated(backend, 2);
      mem.save(dir);
      await mem.write(randomCases(new Mulberry32(3), 5, 50));
      expect(mem.save(dir).generation).toBe(2);
      expect(fs.readdirSync(dir).sort()).toEqual(['CURRENT', 'snap-00000002']);
      expect(state(EpisodicMemory.load(dir, { backend }))).toEqual(state(mem));
      const empty = new EpisodicMemory({ dim: 3, backend, kernel: { kernel: 'cosine', kappa: 4 } });
      const d2 = freshDir();
      empty.save(d2);
      const e2 = EpisodicMemory.load(d2, { backend });
      expect(e2.size).toBe(0);
      expect(e2.kernel).toEqual({ kernel: 'cosine', kappa: 4 });
    });
  });
}

describe('atomic saves: a crash at any step leaves the previous snapshot loadable', () => {
  const steps: SaveStep[] = [
    'mkdir', 'part:ids', 'part:keys', 'part:values', 'part:meta', 'header',
    'fsync-temp-dir', 'verify', 'rename-generation', 'write-current-tmp', 'rename-current', 'cleanup',
  ];
  for (const failAt of steps) {
    it(`crash before '${failAt}'`, async () => {
      const dir = freshDir();
      const mem = await populated('js', 4);
      mem.save(dir);
      const before = state(mem);
      await mem.write(randomCases(new Mulberry32(9), 20, 70));
      const after = state(mem);
      expect(after).not.toEqual(before);
      expect(() => mem.save(dir, { beforeStep: (s) => { if (s === failAt) throw new Error(`crash at ${s}`); } })).toThrow(`crash at ${failAt}`);
      const loaded = state(EpisodicMemory.load(dir, { backend: 'js' }));
      // Until CURRENT is replaced the old snapshot is current; after that, the new one.
      expect(loaded).toEqual(failAt === 'cleanup' ? after : before);
      // The next save succeeds and clears the leftovers of the crashed one.
      const g = mem.save(dir).generation;
      expect(fs.readdirSync(dir).sort()).toEqual(['CURRENT', `snap-${String(g).padStart(8, '0')}`]);
      expect(state(EpisodicMemory.load(dir, { backend: 'js' }))).toEqual(after);
    });
  }
});

describe('damaged snapshots are refused, naming the file and part', () => {
  let dir = '';
  let gen = '';
  const snapshotFiles = ['header.json', 'ids.i32', 'keys.f32', 'values.f32', 'meta.bin'];
  const partOf: Record<string, string> = { 'header.json': 'header', 'ids.i32': 'ids', 'keys.f32': 'keys', 'values.f32': 'values', 'meta.bin': 'meta' };
  beforeAll(async () => {
    dir = freshDir();
    (await populated('js', 6)).save(dir);
    gen = path.join(dir, 'snap-00000001');
  });
  const damaged = (mutate: (file: string) => void, file: string): SnapshotError => {
    const copy = freshDir();
    fs.cpSync(dir, copy, { recursive: true });
    mutate(path.join(copy, 'snap-00000001', file));
    try {
      EpisodicMemory.load(copy, { backend: 'js' });
    } catch (err) {
      expect(err).toBeInstanceOf(SnapshotError);
      return err as SnapshotError;
    }
    throw new Error(`damage to ${file} was not detected`);
  };
  for (const file of snapshotFiles) {
    it(`${file}: every flipped byte position tried is detected`, () => {
      const size = fs.statSync(path.join(gen, file)).size;
      const rng = new Mulberry32(size);
      const positions = [0, size - 1, Math.floor(size / 2), ...Array.from({ length: 6 }, () => rng.int(size))];
      for (const pos of positions) {
        for (const mask of [0x01, 0x80]) {
          const err = damaged((f) => {
            const b = fs.readFileSync(f);
            b[pos] ^= mask;
            fs.writeFileSync(f, b);
          }, file);
          expect(err.message).toContain(file);
          expect(err.message).toMatch(new RegExp(`part '${partOf[file]}'|part '\\w+'`));
        }
      }
    });
    it(`${file}: truncation (1 byte, half, empty) and extra bytes are detected`, () => {
      const size = fs.statSync(path.join(gen, file)).size;
      for (const keep of [size - 1, Math.floor(size / 2), 0]) {
        const err = damaged((f) => fs.truncateSync(f, keep), file);
        expect(err.message).toContain(file);
        if (file !== 'header.json') expect(err.message).toMatch(/truncated/);
      }
      const err = damaged((f) => fs.appendFileSync(f, 'x'), file);
      expect(err.message).toContain(file);
    });
    it(`${file}: a missing file is reported`, () => {
      const err = damaged((f) => fs.rmSync(f), file);
      expect(err.message).toContain(file);
    });
  }
  it('a damaged or dangling CURRENT is reported', () => {
    for (const text of ['snap-0000000x\n', 'snap-00000009\n', '']) {
      const copy = freshDir();
      fs.cpSync(dir, copy, { recursive: true });
      fs.writeFileSync(path.join(copy, 'CURRENT'), text);
      expect(() => EpisodicMemory.load(copy, { backend: 'js' })).toThrow(/CURRENT/);
    }
    expect(() => EpisodicMemory.load(freshDir(), { backend: 'js' })).toThrow(/no memq snapshot/);
  });
  it('a newer format version is refused with an upgrade hint', () => {
    const copy = freshDir();
    const data = readSnapshot(dir).data;
    writeSnapshot(copy, data);
    const hfile = path.join(copy, 'snap-00000001', 'header.json');
    const parsed = JSON.parse(fs.readFileSync(hfile, 'utf8'));
    parsed.header.version = 3;
    parsed.crc32 = require('zlib').crc32(JSON.stringify(parsed.header));
    fs.writeFileSync(hfile, JSON.stringify(parsed) + '\n');
    expect(() => readSnapshot(copy)).toThrow(/version 3 is newer/);
  });
});

describe('journal: a crash loses at most the episode in progress', () => {
  const episode = (e: number): CaseInput[] =>
    Array.from({ length: 5 }, (_, t) => ({ key: [e, t, 0, 1, 0, 0], value: e, episode: e, step: t, action: 'a' }));

  it('writes after the snapshot are replayed; a checkpoint compacts the journal', async () => {
    const dir = freshDir();
    const mem = EpisodicMemory.open(dir, { dim: D, backend: 'js', policy: { kind: 'replay', capacity: 12 }, merge: { epsilon: 0.1, rate: 0.5 } });
    for (let e = 0; e < 4; e++) await mem.write(episode(e));
    await mem.write(episode(1)); // merges into episode 1's cases
    mem.setBandwidth({ rule: 'fixed', h: 0.25 }); // kernel changes are journalled too
    mem.remove(mem.ids().slice(0, 1));
    // "Crash": drop the object without saving.
    const back = EpisodicMemory.load(dir, { backend: 'js' });
    expect(back.loadReport).toEqual({ generation: 1, journalRecords: 7, journalTornBytes: 0 });
    expect(back.kernel).toEqual({ kernel: 'gaussian', bandwidth: 0.25 });
    expect(state(back)).toEqual(state(mem));
    mem.checkpoint();
    expect(fs.readdirSync(dir).sort()).toEqual(['CURRENT', 'journal-00000002.wal', 'snap-00000002']);
    await mem.write(episode(9));
    const again = EpisodicMemory.load(dir, { backend: 'js' });
    expect(again.loadReport!.journalRecords).toBe(1);
    expect(state(again)).toEqual(state(mem));
    mem.detachJournal();
  });

  it('a torn tail is dropped (and cut off before appending); damage before the tail is refused', async () => {
    const dir = freshDir();
    const mem = EpisodicMemory.open(dir, { dim: D, backend: 'js' });
    const snapshots: ReturnType<typeof state>[] = [];
    for (let e = 0; e < 4; e++) {
      await mem.write(episode(e));
      snapshots.push(state(mem));
    }
    mem.detachJournal();
    const jfile = path.join(dir, 'journal-00000001.wal');
    const full = fs.readFileSync(jfile);
    const sizes: number[] = [];
    // Record boundaries: replay prefixes to find them.
    for (let cut = full.length - 1; cut > 16; cut -= 7) {
      fs.writeFileSync(jfile, full.subarray(0, cut));
      const back = EpisodicMemory.load(dir, { backend: 'js' });
      const k = back.loadReport!.journalRecords;
      expect(k).toBeLessThan(4);
      expect(back.loadReport!.journalTornBytes).toBeGreaterThan(0);
      expect(state(back).ids).toEqual(k === 0 ? [] : snapshots[k - 1].ids);
      sizes.push(k);
    }
    expect(new Set(sizes)).toEqual(new Set([0, 1, 2, 3]));
    // Reopen after a torn tail: the tail is cut, new records follow the valid ones.
    fs.writeFileSync(jfile, full.subarray(0, full.length - 3));
    const reopened = EpisodicMemory.load(dir, { backend: 'js', attachJournal: true });
    await reopened.write(episode(7));
    reopened.detachJournal();
    const r2 = EpisodicMemory.load(dir, { backend: 'js' });
    expect(r2.loadReport).toEqual({ generation: 1, journalRecords: 4, journalTornBytes: 0 });
    expect(Array.from(r2.ids(), (id) => r2.getCase(id)!.value)).toEqual([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 7, 7, 7, 7, 7]);
    // Flipped bytes in any but the last record (or in the file header) are corruption.
    const good = fs.readFileSync(jfile);
    const lastStart = good.length - (full.length - 16) / 4; // records here are equal-sized
    const rng = new Mulberry32(12);
    for (let trial = 0; trial < 40; trial++) {
      const pos = trial < 4 ? [0, 8, 12, 15][trial] : 16 + rng.int(lastStart - 16);
      const b = Buffer.from(good);
      b[pos] ^= 1 << rng.int(8);
      fs.writeFileSync(jfile, b);
      expect(() => EpisodicMemory.load(dir, { backend: 'js' }), `flip at ${pos}`).toThrow(/journal-00000001\.wal \(part 'journal (header|record \d+)'/);
    }
    fs.writeFileSync(jfile, good);
    expect(EpisodicMemory.load(dir, { backend: 'js' }).size).toBe(20);
  });
});


describe('a snapshot or journal holding more cases than its write policy allows', () => {
  it('is refused at load, naming the part (a writer never leaves more)', async () => {
    const mem = new EpisodicMemory({ dim: D, backend: 'js', policy: { kind: 'replay', capacity: 10 } });
    await mem.write(randomCases(new Mulberry32(3), 5, 0));
    const data = mem.toSnapshotData();
    const dir = freshDir();
    writeSnapshot(dir, { ...data, options: { ...data.options, policy: { kind: 'replay', capacity: 3 } } }, { fsync: false });
    expect(() => EpisodicMemory.load(dir, { backend: 'js' })).toThrow(/header\.json \(part 'header'\) holds 5 cases, over the write policy's capacity of 3/);
    const ok = freshDir();
    writeSnapshot(ok, { ...data, options: { ...data.options, policy: { kind: 'replay', capacity: 5 } } }, { fsync: false });
    expect(EpisodicMemory.load(ok, { backend: 'js' }).size).toBe(5);
  });
});

describe('fromSnapshotData', () => {
  it('copies: memories built from one data object, and the object, do not change each other', async () => {
    const mem = new EpisodicMemory({ dim: D, backend: 'js', merge: { epsilon: 1e-3, rate: 0.5 } });
    const cases = randomCases(new Mulberry32(8), 30, 0);
    await mem.write(cases);
    const data = mem.toSnapshotData();
    const before = JSON.stringify((data.meta as MetaColumns).toObjects());
    const a = EpisodicMemory.fromSnapshotData(data, 'js');
    const b = EpisodicMemory.fromSnapshotData(data, 'js');
    const bBefore = b.toSnapshotData();
    // merges into a's stored cases change their visits, weights and touched in a's columns
    await a.write(cases.slice(0, 10));
    a.setWeights(a.ids().subarray(0, 3), [5, 6, 7]);
    expect(a.getCase(a.ids()[0])!.weight).toBe(5);
    expect(b.toSnapshotData()).toEqual(bBefore);
    expect(JSON.stringify((data.meta as MetaColumns).toObjects())).toBe(before);
  });
});

describe('keys written in chunks (keyRows: what save does)', () => {
  const part = (dir: string, f: string) => fs.readFileSync(path.join(dir, generationName(currentGeneration(dir)!), f));
  const header = (dir: string) => JSON.parse(part(dir, 'header.json').toString('utf8')).header;

  it('the generation is byte for byte the one written from whole keys, for every chunk size, signed or not', async () => {
    const mem = new EpisodicMemory({ dim: D, backend: 'js' });
    await mem.write(randomCases(new Mulberry32(21), 53, 0));
    const whole = mem.toSnapshotData();
    for (const key of [undefined, 'a signing key of 32 bytes ......']) {
      const ref = freshDir();
      writeSnapshot(ref, whole, { fsync: false, key });
      for (const chunk of [1, 4 * D - 1, 4 * D * 7, 4 * D * 53, 1 << 24]) {
        const dir = freshDir();
        // rows handed out in chunks, poisoned beyond the rows asked for
        let calls = 0;
        const keyRows = (r0: number, rows: number) => {
          calls++;
          const out = new Float32Array(rows * D).fill(NaN);
          out.set(whole.keys.subarray(r0 * D, (r0 + rows) * D));
          return out;
        };
        writeSnapshot(dir, { ...whole, keys: new Float32Array(0), keyRows }, { fsync: false, key, keyChunkBytes: chunk });
        expect(calls, `chunk ${chunk}`).toBe(Math.ceil(53 / Math.max(1, Math.floor(chunk / (4 * D)))));
        for (const f of ['ids.i32', 'keys.f32', 'values.f32', 'meta.bin']) expect(part(dir, f).equals(part(ref, f)), `${f}, chunk ${chunk}`).toBe(true);
        const [a, b] = [header(dir), header(ref)];
        expect(a.parts).toEqual(b.parts);
        expect(a.signature?.parts).toEqual(b.signature?.parts);
        expect(EpisodicMemory.load(dir, { backend: 'js', ...(key ? { key } : {}) }).toSnapshotData()).toEqual(whole);
      }
    }
  });

  it('a bad row in a later chunk: refused naming the row and id, nothing left behind', async () => {
    const mem = new EpisodicMemory({ dim: D, backend: 'js' });
    await mem.write(randomCases(new Mulberry32(22), 40, 0));
    const whole = mem.toSnapshotData();
    const dir = freshDir();
    mem.save(dir, { fsync: false });
    const before = fs.readdirSync(dir).sort();
    const keyRows = (r0: number, rows: number) => {
      const out = whole.keys.slice(r0 * D, (r0 + rows) * D);
      if (r0 <= 33 && 33 < r0 + rows) out[(33 - r0) * D + 2] = Infinity;
      return out;
    };
    expect(() => writeSnapshot(dir, { ...whole, keys: new Float32Array(0), keyRows }, { fsync: false, keyChunkBytes: 4 * D * 8 })).toThrow(
      new RegExp(`save: keys row 33 \\(id ${whole.ids[33]}\\): column 2 is Infinity; the snapshot would not load, nothing was written`),
    );
    expect(fs.readdirSync(dir).sort()).toEqual(before);
    expect(() => writeSnapshot(dir, { ...whole, keyRows })).toThrow(/keys must be empty when keyRows gives the keys/);
    expect(() => writeSnapshot(dir, { ...whole, keys: new Float32Array(0), keyRows: () => new Float32Array(3) })).toThrow(/keyRows\(0, 40\) must return 240 floats/);
    expect(() => writeSnapshot(dir, whole, { keyChunkBytes: 0 })).toThrow(/keyChunkBytes must be an integer >= 1, got 0/);
    expect(fs.readdirSync(dir).sort()).toEqual(before);
  });
});
