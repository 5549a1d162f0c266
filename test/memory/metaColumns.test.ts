// The metadata part of a snapshot (lib/memory/metaColumns.ts, format 2): CaseMeta objects → the
// file's bytes → columns → objects must give back every field exactly (−0, 2^53, any string,
// lone surrogates included); a damaged layout is refused naming what is wrong; and format 1
// snapshots (meta.jsonl), as older memq wrote them, still load to the same memory.
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { EpisodicMemory } from '../../lib/memory/episodic';
import { META_ALIGN, MetaColumns, MetaLayoutError } from '../../lib/memory/metaColumns';
import { currentGeneration, generationName, SnapshotError } from '../../lib/memory/snapshot';
import type { CaseMeta } from '../../lib/memory/types';
import { Mulberry32 } from '../../lib/policy/rng';
import '../helpers/referenceIndex';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-metacols-'));
let dirCount = 0;
const freshDir = () => path.join(tmpRoot, `d${dirCount++}`);
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

function randomString(rng: Mulberry32): string {
  const pool = ['a', 'é', '中', '😀', '\n', '"', '\\', '\u0000', ' ', 'z'];
  return Array.from({ length: rng.int(12) }, () => pool[rng.int(pool.length)]).join('');
}

function randomMeta(rng: Mulberry32): CaseMeta {
  const num = () => [0, -0, 1e300, -1e-300, 2 ** 53 - 1, rng.normal() * 1e6][rng.int(6)];
  return {
    state: randomString(rng),
    action: `act ${rng.int(4)}`,
    visits: 1 + rng.int(2 ** 20),
    weight: num(),
    episode: num(),
    step: num(),
    source: ['train', 'self', 'import:x', ''][rng.int(4)],
    time: num(),
    seq: rng.int(2 ** 30) * 2 ** 23,
    touched: rng.int(1000),
  };
}

/** Field-by-field with Object.is (toEqual would take −0 for 0). */
function same(a: CaseMeta, b: CaseMeta): boolean {
  return (Object.keys(a) as (keyof CaseMeta)[]).every((k) => Object.is(a[k], b[k])) && Object.keys(a).join() === Object.keys(b).join();
}

describe('MetaColumns', () => {
  it('round-trips random metadata through the file bytes exactly (utf8, and utf16le for lone surrogates)', () => {
    for (let seed = 1; seed <= 6; seed++) {
      const rng = new Mulberry32(seed);
      const n = [0, 1, 7, 600][seed % 4];
      const metas = Array.from({ length: n }, () => randomMeta(rng));
      if (seed % 2 === 0 && n > 1) metas[n - 1].state = `x\ud800y${metas[n - 1].state}\udfff`;
      const bytes = MetaColumns.fromObjects(metas).encode();
      const back = MetaColumns.decode(bytes);
      expect(back.stateEncoding).toBe(seed % 2 === 0 && n > 1 ? 'utf16le' : 'utf8');
      expect(back.count).toBe(n);
      for (let i = 0; i < n; i++) expect(same(back.at(i), metas[i]), `seed ${seed} row ${i}`).toBe(true);
      expect(back.problem()).toBeUndefined();
      // the bytes are a function of the metadata: encoding what was decoded gives them again
      expect(back.encode().equals(bytes)).toBe(true);
      // each column starts on the mapping alignment
      const layout = MetaColumns.parseLayout(bytes, bytes.length);
      for (const c of Object.values(layout.columns)) expect(c.offset % META_ALIGN).toBe(0);
    }
  });

  it('refuses objects that are not case metadata, naming the entry', () => {
    const ok = randomMeta(new Mulberry32(1));
    expect(() => MetaColumns.fromObjects([ok, { ...ok, visits: 0 }])).toThrow(/meta\[1\]: visits must be an integer >= 1, got 0/);
    expect(() => MetaColumns.fromObjects([null])).toThrow(/meta\[0\]: expected an object/);
    expect(() => MetaColumns.fromObjects([{ ...ok, state: 5 }])).toThrow(/meta\[0\]: state must be a string/);
  });

  it('refuses a damaged layout, saying what is wrong', () => {
    const metas = Array.from({ length: 9 }, (_, i) => randomMeta(new Mulberry32(i + 10)));
    const good = MetaColumns.fromObjects(metas).encode();
    const headerJson = () => JSON.parse(good.toString('utf8', 16, 16 + good.readUInt32LE(12)));
    const withJson = (j: unknown) => {
      // a new JSON header in the zero padding before the first column (which stays where it is)
      const b = Buffer.from(good);
      const text = Buffer.from(JSON.stringify(j));
      expect(16 + text.length).toBeLessThanOrEqual(META_ALIGN);
      b.fill(0, 16, META_ALIGN);
      text.copy(b, 16);
      b.writeUInt32LE(text.length, 12);
      return b;
    };
    const cases: [Buffer, RegExp][] = [
      [Buffer.concat([Buffer.from('XEMQMETA'), good.subarray(8)]), /does not start with MEMQMETA/],
      [good.subarray(0, 12), /does not start with MEMQMETA/],
      [good.subarray(0, good.length - 1), /is \d+ bytes, its columns end at \d+/],
      [Buffer.concat([good, Buffer.alloc(1)]), /is \d+ bytes, its columns end at \d+/],
      [(() => { const b = Buffer.from(good); b.writeUInt32LE(2, 8); return b; })(), /layout version 2/],
      [(() => { const b = Buffer.from(good); b.writeUInt32LE(1e6, 12); return b; })(), /JSON header \(1000000 bytes\) runs past/],
      [(() => { const b = Buffer.from(good); b[16] = 0x21; return b; })(), /not valid JSON/],
      [withJson({ ...headerJson(), count: 10 }), /column visits has 72 bytes, count 10 needs 80/],
      [withJson({ ...headerJson(), stateEncoding: 'latin1' }), /stateEncoding must be 'utf8' or 'utf16le'/],
      [withJson({ ...headerJson(), actions: ['a', 'a'] }), /actions repeats an entry/],
      [withJson({ ...headerJson(), sources: [1] }), /sources must be an array of strings/],
      [withJson({ ...headerJson(), columns: { ...headerJson().columns, weight: { offset: 5, bytes: 72 } } }), /column weight starts at 5, expected a multiple of 4096/],
      [withJson({ ...headerJson(), columns: { ...headerJson().columns, seq: headerJson().columns.visits } }), /column seq starts at \d+, expected a multiple of 4096 from \d+/],
    ];
    for (const [bytes, msg] of cases) {
      let err: unknown;
      try {
        MetaColumns.decode(bytes);
      } catch (e) {
        err = e;
      }
      expect(err, String(msg)).toBeInstanceOf(MetaLayoutError);
      expect((err as Error).message).toMatch(msg);
    }
    // the states must end where their bytes end
    const lay = MetaColumns.parseLayout(good, good.length);
    const b = Buffer.from(good);
    b.writeDoubleLE(b.readDoubleLE(lay.columns.stateEnd.offset + 8 * 8) - 1, lay.columns.stateEnd.offset + 8 * 8);
    expect(() => MetaColumns.decode(b)).toThrow(/its states end at byte \d+, stateBytes holds \d+/);
  });
});

/** Rewrite the current generation of dir as format 1 (meta.jsonl), as memq before format 2 wrote it. */
function toFormat1(dir: string, lines?: (ls: string[]) => void): void {
  const g = path.join(dir, generationName(currentGeneration(dir)!));
  const metas = MetaColumns.decode(fs.readFileSync(path.join(g, 'meta.bin'))).toObjects();
  const ls = metas.map((m) => JSON.stringify(m));
  lines?.(ls);
  const body = Buffer.from(ls.map((l) => l + '\n').join(''), 'utf8');
  fs.rmSync(path.join(g, 'meta.bin'));
  fs.writeFileSync(path.join(g, 'meta.jsonl'), body);
  const parsed = JSON.parse(fs.readFileSync(path.join(g, 'header.json'), 'utf8'));
  parsed.header.version = 1;
  parsed.header.parts.meta = { file: 'meta.jsonl', bytes: body.length, crc32: zlib.crc32(body) };
  parsed.crc32 = zlib.crc32(JSON.stringify(parsed.header));
  fs.writeFileSync(path.join(g, 'header.json'), JSON.stringify(parsed) + '\n');
}

describe('format 1 snapshots (meta.jsonl)', () => {
  async function saved(): Promise<{ dir: string; mem: EpisodicMemory }> {
    const rng = new Mulberry32(3);
    const mem = new EpisodicMemory({ dim: 3, kernel: { kernel: 'gaussian', bandwidth: 1 }, backend: 'js' });
    await mem.write(Array.from({ length: 40 }, (_, t) => ({ key: [rng.normal(), rng.normal(), t], value: rng.normal(), state: `s${t} é`, action: `a${t % 3}`, step: t })));
    const dir = freshDir();
    mem.save(dir, { fsync: false });
    return { dir, mem };
  }

  it('load as before, to the same memory; the next save writes format 2', async () => {
    const { dir, mem } = await saved();
    toFormat1(dir);
    const m = EpisodicMemory.load(dir, { backend: 'js' });
    expect(m.toSnapshotData()).toEqual(mem.toSnapshotData());
    const out = freshDir();
    m.save(out, { fsync: false });
    const g = path.join(out, generationName(currentGeneration(out)!));
    expect(fs.existsSync(path.join(g, 'meta.bin'))).toBe(true);
    expect(JSON.parse(fs.readFileSync(path.join(g, 'header.json'), 'utf8')).header.version).toBe(2);
    expect(EpisodicMemory.load(out, { backend: 'js' }).toSnapshotData()).toEqual(mem.toSnapshotData());
  });

  it('a bad line is refused naming the line and the id', async () => {
    const { dir } = await saved();
    toFormat1(dir, (ls) => {
      ls[6] = ls[6].replace(/"visits":\d+/, '"visits":0');
    });
    let err: unknown;
    try {
      EpisodicMemory.load(dir, { backend: 'js' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SnapshotError);
    expect((err as Error).message).toMatch(/meta\.jsonl \(part 'meta'\) line 7 \(id 6\): visits must be an integer >= 1, got 0/);
    expect((err as SnapshotError).row).toBe(6);
  });
});
