import { afterAll, afterEach, describe, expect, it } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { EpisodicMemory } from '../../lib/memory/episodic';
import { SnapshotError } from '../../lib/memory/snapshot';
import { appendMetaRow } from '../helpers/metaFile';
import type { CaseInput } from '../../lib/memory/types';
import { TestRng } from '../helpers/rng';
import '../helpers/referenceIndex'; // registers the float64 ReferenceIndex as backend 'js'

const D = 4;
const KEY = 'k'.repeat(12) + '-memq-test-key';
const OTHER = 'another-key-of-the-same-length!!';
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-signed-'));
let n = 0;
const fresh = () => path.join(root, `m${n++}`);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const savedEnv = process.env.MEMQ_MEMORY_KEY;
afterEach(() => {
  if (savedEnv === undefined) delete process.env.MEMQ_MEMORY_KEY;
  else process.env.MEMQ_MEMORY_KEY = savedEnv;
});

async function memory(): Promise<EpisodicMemory> {
  const mem = new EpisodicMemory({ dim: D, backend: 'js', kernel: { kernel: 'gaussian', bandwidth: 1 } });
  const rng = new TestRng(4);
  const cases: CaseInput[] = Array.from({ length: 12 }, (_, i) => ({ key: Array.from({ length: D }, () => rng.normal()), value: 0.3 + 0.01 * i, source: 'self', state: `s${i}`, action: 'a' }));
  await mem.write(cases);
  return mem;
}

const genDir = (dir: string) => path.join(dir, fs.readFileSync(path.join(dir, 'CURRENT'), 'utf8').trim());
const readHeader = (dir: string) => JSON.parse(fs.readFileSync(path.join(genDir(dir), 'header.json'), 'utf8')).header;

/** Replace parts' bytes and rewrite the header's lengths, CRC-32s and its own CRC: what a forger does. */
function forge(dir: string, change: { parts?: Record<string, Buffer>; header?: (h: any) => void }): void {
  const g = genDir(dir);
  const h = readHeader(dir);
  for (const [p, buf] of Object.entries(change.parts ?? {})) {
    fs.writeFileSync(path.join(g, h.parts[p].file), buf);
    h.parts[p].bytes = buf.length;
    h.parts[p].crc32 = zlib.crc32(buf);
  }
  change.header?.(h);
  fs.writeFileSync(path.join(g, 'header.json'), JSON.stringify({ header: h, crc32: zlib.crc32(JSON.stringify(h)) }) + '\n');
}

const part = (dir: string, file: string) => fs.readFileSync(path.join(genDir(dir), file));

/** The attack: append one record, a copy of an existing key with value 1e6, CRCs recomputed. */
function appendRecord(dir: string): void {
  const h = readHeader(dir);
  const ids = part(dir, 'ids.i32');
  const keys = part(dir, 'keys.f32');
  const values = part(dir, 'values.f32');
  const meta = part(dir, 'meta.bin');
  const lastId = ids.readInt32LE(ids.length - 4);
  const id = Buffer.alloc(4);
  id.writeInt32LE(lastId + 1);
  const v = Buffer.alloc(4);
  v.writeFloatLE(1e6);
  forge(dir, {
    parts: {
      ids: Buffer.concat([ids, id]),
      keys: Buffer.concat([keys, keys.subarray(0, 4 * D)]),
      values: Buffer.concat([values, v]),
      meta: appendMetaRow(meta),
    },
    header: (hh) => {
      hh.count = h.count + 1;
    },
  });
}

function refused(fn: () => unknown, partName: string, msg: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SnapshotError);
  expect((err as SnapshotError).part).toBe(partName);
  expect((err as Error).message).toMatch(msg);
}

describe('signed snapshots (HMAC-SHA-256)', () => {
  it('a signed snapshot loads with its key; the signature names the key without revealing it', async () => {
    const mem = await memory();
    const dir = fresh();
    mem.save(dir, { key: KEY, fsync: false });
    const sig = readHeader(dir).signature;
    expect(sig.alg).toBe('HMAC-SHA-256');
    expect(Object.keys(sig.parts)).toEqual(['ids', 'keys', 'values', 'meta']);
    expect(JSON.stringify(readHeader(dir))).not.toContain(KEY);
    const back = EpisodicMemory.load(dir, { key: KEY, backend: 'js' });
    expect(back.size).toBe(12);
    // and through the environment variable
    process.env.MEMQ_MEMORY_KEY = KEY;
    expect(EpisodicMemory.load(dir, { backend: 'js' }).size).toBe(12);
  });

  it("without a key, the issue's forged record loads silently; with the key it is refused, naming the part", async () => {
    const mem = await memory();
    const dir = fresh();
    mem.save(dir, { key: KEY, fsync: false });
    appendRecord(dir);
    const loose = EpisodicMemory.load(dir, { backend: 'js' });
    expect(loose.size).toBe(13);
    const q = loose.getKeys(Int32Array.from([0]));
    expect((await loose.estimate(q, 4, { voidWeight: 0 })).value[0]).toBeGreaterThan(1e4);
    refused(() => EpisodicMemory.load(dir, { key: KEY, backend: 'js' }), 'ids', /ids\.i32 \(part 'ids'\): signature check failed/);
  });

  it('a flipped value (CRCs rewritten) is refused naming values', async () => {
    const dir = fresh();
    (await memory()).save(dir, { key: KEY, fsync: false });
    const values = Buffer.from(part(dir, 'values.f32'));
    values.writeFloatLE(1e6, 8);
    forge(dir, { parts: { values } });
    refused(() => EpisodicMemory.load(dir, { key: KEY, backend: 'js' }), 'values', /values\.f32 \(part 'values'\): signature check failed/);
  });

  it('a swapped part (the same part of an older signed generation, CRCs rewritten) is refused naming it', async () => {
    const mem = await memory();
    const dir = fresh();
    mem.save(dir, { key: KEY, fsync: false });
    const oldMeta = part(dir, 'meta.bin');
    await mem.setWeights(Int32Array.from([0]), [0.5]);
    mem.save(dir, { key: KEY, fsync: false });
    forge(dir, { parts: { meta: oldMeta } });
    refused(() => EpisodicMemory.load(dir, { key: KEY, backend: 'js' }), 'meta', /meta\.bin \(part 'meta'\): signature check failed/);
    // swapping two parts of equal length within a generation (ids ↔ values)
    const dir2 = fresh();
    mem.save(dir2, { key: KEY, fsync: false });
    forge(dir2, { parts: { ids: part(dir2, 'values.f32'), values: part(dir2, 'ids.i32') } });
    refused(() => EpisodicMemory.load(dir2, { key: KEY, backend: 'js' }), 'ids', /signature check failed/);
  });

  it('a changed header field is refused naming the header; unsigned and foreign snapshots name the signature', async () => {
    const mem = await memory();
    const dir = fresh();
    mem.save(dir, { key: KEY, fsync: false });
    forge(dir, { header: (h) => (h.kernel = { kernel: 'gaussian', bandwidth: 0.01 }) });
    refused(() => EpisodicMemory.load(dir, { key: KEY, backend: 'js' }), 'header', /manifest mismatch/);
    const unsigned = fresh();
    mem.save(unsigned, { fsync: false });
    refused(() => EpisodicMemory.load(unsigned, { key: KEY, backend: 'js' }), 'signature', /unsigned/);
    const foreign = fresh();
    mem.save(foreign, { key: OTHER, fsync: false });
    refused(() => EpisodicMemory.load(foreign, { key: KEY, backend: 'js' }), 'signature', /another key/);
    // the signature itself removed
    const stripped = fresh();
    mem.save(stripped, { key: KEY, fsync: false });
    forge(stripped, { header: (h) => delete h.signature });
    refused(() => EpisodicMemory.load(stripped, { key: KEY, backend: 'js' }), 'signature', /unsigned/);
  });

  it('keys are checked: too short or of the wrong type', async () => {
    const mem = await memory();
    expect(() => mem.save(fresh(), { key: 'short', fsync: false })).toThrow(RangeError);
    expect(() => mem.save(fresh(), { key: 42 as any, fsync: false })).toThrow(TypeError);
    process.env.MEMQ_MEMORY_KEY = 'tiny';
    expect(() => mem.save(fresh(), { fsync: false })).toThrow(/MEMQ_MEMORY_KEY must be at least 16 bytes/);
  });

  it('an unsigned or foreign snapshot comes in only as an untrusted source, quarantined', async () => {
    const mem = await memory();
    const foreign = fresh();
    mem.save(foreign, { key: OTHER, fsync: false });
    // load as untrusted: every source rewritten, the policy's quarantine holds them
    const loaded = EpisodicMemory.load(foreign, { key: KEY, untrustedSource: 'import:vendor', backend: 'js', trust: {} });
    expect(new Set([...Array.from(loaded.ids())].map((id) => loaded.getCase(id)!.source))).toEqual(new Set(['import:vendor']));
    expect((await loaded.quarantined()).length).toBe(12);
    expect(() => EpisodicMemory.load(foreign, { key: KEY, untrustedSource: 'self', backend: 'js' })).toThrow(/rated trusted/);
    // import into a memory of our own
    const ours = new EpisodicMemory({ dim: D, backend: 'js', trust: {} });
    await expect(ours.import(foreign, { source: 'self', key: KEY })).rejects.toThrow(/only be imported under an untrusted source/);
    const rep = await ours.import(foreign, { source: 'import:vendor', key: KEY });
    expect(rep.added.length).toBe(12);
    expect(ours.getCase(rep.added[0])!.trust).toBe('untrusted');
    expect((await ours.search(ours.getKeys(Int32Array.from([rep.added[0]])), 3)).ids[0]).toBe(-1);
    // a snapshot signed with our key may come in as trusted
    const signed = fresh();
    mem.save(signed, { key: KEY, fsync: false });
    const rep2 = await new EpisodicMemory({ dim: D, backend: 'js' }).import(signed, { source: 'demo', key: KEY });
    expect(rep2.added.length).toBe(12);
    // damage is still damage: a tampered signed snapshot is not quietly imported as untrusted either way
    appendRecord(signed);
    await expect(new EpisodicMemory({ dim: D, backend: 'js' }).import(signed, { source: 'demo', key: KEY })).rejects.toThrow(/untrusted source/);
  });

  it('journal records: signed and chained with the key; unsigned, changed or reordered records are refused by number', async () => {
    const { readJournal, encodeRecord, JOURNAL_MAGIC } = await import('../../lib/memory/journal');
    const mem = await memory();
    const dir = fresh();
    mem.save(dir, { key: KEY, fsync: false });
    mem.attachJournal(dir, { fsync: false, key: KEY });
    await mem.write([{ key: [0, 0, 0, 0], value: 0.25, source: 'self' }]);
    await mem.write([{ key: [1, 0, 0, 0], value: 0.5, source: 'self' }]);
    await mem.write([{ key: [2, 0, 0, 0], value: 0.75, source: 'self' }]);
    mem.detachJournal();
    const back = EpisodicMemory.load(dir, { key: KEY, backend: 'js' });
    expect(back.size).toBe(15);
    expect(back.loadReport!.journalRecords).toBe(3);
    const jfile = path.join(dir, fs.readdirSync(dir).find((f) => f.startsWith('journal-'))!);
    const original = fs.readFileSync(jfile);
    const gen = Number(/journal-(\d+)/.exec(jfile)![1]);
    const rewrite = (edit: (recs: any[]) => any[]) => {
      const recs = readJournal(jfile, gen).records;
      const head = original.subarray(0, 16);
      expect(head.subarray(0, 8).equals(JOURNAL_MAGIC)).toBe(true);
      fs.writeFileSync(jfile, Buffer.concat([head, ...edit(recs).map((r) => encodeRecord(r))]));
    };
    // a changed value in record 1 (CRCs re-encoded)
    rewrite((recs) => {
      (recs[1].body.upserts as any[])[0].value = 1e6;
      return recs;
    });
    refused(() => EpisodicMemory.load(dir, { key: KEY, backend: 'js' }), 'journal record 1', /signature check failed/);
    // two records swapped
    fs.writeFileSync(jfile, original);
    rewrite((recs) => [recs[0], recs[2], recs[1]]);
    refused(() => EpisodicMemory.load(dir, { key: KEY, backend: 'js' }), 'journal record 1', /signature check failed/);
    // a forged unsigned record appended
    fs.writeFileSync(jfile, original);
    rewrite((recs) => {
      const extra = structuredClone(recs[2]);
      delete extra.body.mac;
      extra.body.added = [99];
      (extra.body.upserts as any[])[0].id = 99;
      return [...recs, extra];
    });
    refused(() => EpisodicMemory.load(dir, { key: KEY, backend: 'js' }), 'journal record 3', /unsigned/);
    // without the key the records are not checked; with replayJournal: false the snapshot alone loads
    expect(EpisodicMemory.load(dir, { backend: 'js' }).size).toBe(16);
    expect(EpisodicMemory.load(dir, { key: KEY, backend: 'js', replayJournal: false }).size).toBe(12);
    // open() with the key: appends continue the chain across a reload, checkpoint() signs the new generation
    fs.writeFileSync(jfile, original);
    const reopened = EpisodicMemory.open(dir, { dim: D, backend: 'js' }, { fsync: false, key: KEY });
    await reopened.write([{ key: [3, 0, 0, 0], value: 0.1, source: 'self' }]);
    expect(EpisodicMemory.load(dir, { key: KEY, backend: 'js' }).size).toBe(16);
    reopened.checkpoint();
    await reopened.write([{ key: [4, 0, 0, 0], value: 0.1, source: 'self' }]);
    reopened.detachJournal();
    expect(EpisodicMemory.load(dir, { key: KEY, backend: 'js' }).size).toBe(17);
    // records written without the key after a signed snapshot are refused with it
    const d2 = fresh();
    mem.save(d2, { key: KEY, fsync: false });
    mem.attachJournal(d2, { fsync: false });
    await mem.write([{ key: [5, 0, 0, 0], value: 0.1, source: 'self' }]);
    mem.detachJournal();
    refused(() => EpisodicMemory.load(d2, { key: KEY, backend: 'js' }), 'journal record 0', /unsigned/);
  });
});
