// A failed write changes nothing (issue #11 item 4): the whole batch is validated before any
// state is touched, and a write whose index or journal throws half-way is rolled back. Saves
// are verified as read back before they become current; loads refuse rows the index cannot hold.
import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { EpisodicMemory, nativeAvailable } from '../../lib/memory/episodic';
import { JournalWriter } from '../../lib/memory/journal';
import { ReferenceIndex } from '../helpers/referenceIndex';
import { readSnapshot, SnapshotError, writeSnapshot } from '../../lib/memory/snapshot';
import { editMeta } from '../helpers/metaFile';
import type { CaseInput, MergeRule, WritePolicy } from '../../lib/memory/types';
import { FLOAT32_MAX, squaredNormLimit } from '../../lib/memory/validate';
import { Mulberry32 } from '../../lib/policy/rng';

const backends: Array<'js' | 'native'> = nativeAvailable() ? ['js', 'native'] : ['js'];
const D = 4;
const T0 = 1_700_000_000_000;
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-wsafe-'));
let dirCount = 0;
const freshDir = () => path.join(tmpRoot, `d${dirCount++}`);
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

/** Case i: key on a grid, action by parity, explicit time (so that twin memories agree). */
function cs(i: number, extra: Partial<CaseInput> = {}): CaseInput {
  return { key: [i, (i % 3) * 2, 0, 1], value: i, action: i % 2 ? 'a' : 'b', state: `s${i}`, episode: i, step: 0, time: T0 + i, tdError: (i % 5) / 2, ...extra };
}

/** The good batch: merges into stored case 1 and into its own case 10, and 3 new cases (evictions when full). */
const X: CaseInput[] = [cs(1, { value: 7, time: T0 + 100 }), cs(10), cs(11), cs(10, { value: 3, time: T0 + 101 }), cs(12)];

const policies: WritePolicy[] = [
  { kind: 'unbounded' },
  { kind: 'replay', capacity: 6 },
  { kind: 'window', size: 6 },
  { kind: 'importance', capacity: 6, weightBy: 'tdError' },
  { kind: 'importance', capacity: 6, weightBy: 'visits' },
  { kind: 'importance', capacity: 6, weightBy: 'return' },
  { kind: 'importance', capacity: 6, weightBy: 'tdError', sample: true, seed: 3 },
];
const merges: Array<MergeRule | undefined> = [
  undefined,
  { epsilon: 0.5, rate: 0.5 },
  { epsilon: 0.5, rate: 'average' },
  { epsilon: 0.5, rate: { power: 0.6 } },
];
const label = (p: WritePolicy, m: MergeRule | undefined) =>
  `${p.kind}${p.kind === 'importance' ? `/${p.weightBy}${p.sample ? '/sampled' : ''}` : ''}, merge ${m ? JSON.stringify(m.rate) : 'none'}`;

async function build(backend: 'js' | 'native', policy: WritePolicy, merge: MergeRule | undefined, journalDir?: string): Promise<EpisodicMemory> {
  const opts = { dim: D, backend, policy, merge, kernel: { kernel: 'gaussian' as const, bandwidth: 1 } };
  const mem = journalDir ? EpisodicMemory.open(journalDir, opts, { fsync: false }) : new EpisodicMemory(opts);
  await mem.write([cs(0), cs(1), cs(2), cs(3)]);
  await mem.write([cs(4), cs(5)]);
  return mem;
}

const hex = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

/**
 * Everything observable about a memory: its getters, the index's own ids / keys / values, the
 * counters and RNG, the bytes save() writes (header without its timestamp) and, when given, the
 * bytes of every file in its journal directory.
 */
function deepState(mem: EpisodicMemory, journalDir?: string): Record<string, unknown> {
  const ids = mem.ids();
  const out: Record<string, unknown> = {
    size: mem.size,
    ids: Array.from(ids),
    cases: Array.from(ids, (id) => mem.getCase(id)),
    keys: hex(mem.getKeys(ids)),
    indexSize: mem.index.size,
    indexIds: Array.from(mem.index.ids()),
    indexKeys: hex(mem.index.getKeys(mem.index.ids())),
    indexValues: Array.from(mem.index.getValues(mem.index.ids())),
    kernel: mem.kernel,
    counters: [mem.seqCounter, mem.clock, (mem as unknown as { rng: Mulberry32 }).rng.state],
  };
  const dir = freshDir();
  mem.save(dir, { fsync: false });
  const gen = path.join(dir, 'snap-00000001');
  for (const f of ['ids.i32', 'keys.f32', 'values.f32', 'meta.bin']) out[f] = fs.readFileSync(path.join(gen, f)).toString('hex');
  const { header } = JSON.parse(fs.readFileSync(path.join(gen, 'header.json'), 'utf8'));
  delete header.createdAt;
  out.header = header;
  if (journalDir) out.journalDir = dirBytes(journalDir);
  return out;
}

function dirBytes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).sort()) {
    const full = path.join(dir, name);
    if (fs.statSync(full).isDirectory()) Object.assign(out, Object.fromEntries(Object.entries(dirBytes(full)).map(([k, v]) => [`${name}/${k}`, v])));
    else out[name] = name === 'header.json' ? 'header' : fs.readFileSync(full).toString('hex');
  }
  return out;
}

/** The index and the JS copy agree. */
function checkConsistent(mem: EpisodicMemory): void {
  const ids = mem.ids();
  expect(Array.from(mem.index.ids()).sort((a, b) => a - b)).toEqual(Array.from(ids).sort((a, b) => a - b));
  expect(Array.from(mem.index.getValues(ids))).toEqual(Array.from(ids, (id) => mem.getCase(id)!.value));
}

interface BadCase {
  name: string;
  c: unknown;
  cls: typeof TypeError | typeof RangeError;
  msg: RegExp;
}
const badCases: BadCase[] = [
  // The issue's case: a finite double that is Infinity in float32, on a key that would merge.
  { name: 'value 1e39 (merging)', c: cs(1, { value: 1e39 }), cls: RangeError, msg: /^cases\[2\]\.value 1e\+39 is not representable in float32$/ },
  { name: 'value -1e39', c: cs(20, { value: -1e39 }), cls: RangeError, msg: /cases\[2\]\.value -1e\+39 is not representable in float32/ },
  { name: 'value NaN', c: cs(20, { value: NaN }), cls: RangeError, msg: /cases\[2\]\.value must be finite, got NaN/ },
  { name: 'value Infinity', c: cs(20, { value: Infinity }), cls: RangeError, msg: /cases\[2\]\.value must be finite, got Infinity/ },
  { name: 'value a string', c: cs(20, { value: '3' as unknown as number }), cls: TypeError, msg: /cases\[2\]\.value must be a number, got string/ },
  { name: 'key component 1e39', c: cs(20, { key: [1e39, 0, 0, 0] }), cls: RangeError, msg: /cases\[2\]\.key\[0\] 1e\+39 is not representable in float32/ },
  { name: 'key component NaN', c: cs(20, { key: [0, NaN, 0, 0] }), cls: RangeError, msg: /cases\[2\]\.key\[1\] is NaN/ },
  { name: 'key squared norm overflows float32', c: cs(20, { key: [2e19, 2e19, 0, 0] }), cls: RangeError, msg: /cases\[2\]\.key has squared norm 8\.0+e\+38, which overflows float32/ },
  { name: 'key of the wrong length', c: cs(20, { key: [1, 2, 3] }), cls: TypeError, msg: /cases\[2\]\.key has length 3, expected dim 4/ },
  { name: 'key not an array', c: cs(20, { key: 'abcd' as unknown as number[] }), cls: TypeError, msg: /cases\[2\]\.key must be a Float32Array or an array of 4 numbers, got string/ },
  { name: 'key component a string', c: cs(20, { key: [0, '1', 0, 0] as unknown as number[] }), cls: TypeError, msg: /cases\[2\]\.key\[1\] must be a number, got string/ },
  { name: 'action not a string', c: cs(20, { action: 5 as unknown as string }), cls: TypeError, msg: /cases\[2\]\.action must be a string, got number/ },
  { name: 'weight Infinity', c: cs(20, { weight: Infinity }), cls: RangeError, msg: /cases\[2\]\.weight must be finite, got Infinity/ },
  { name: 'tdError NaN', c: cs(20, { tdError: NaN }), cls: RangeError, msg: /cases\[2\]\.tdError must be finite, got NaN/ },
  { name: 'episode NaN', c: cs(20, { episode: NaN }), cls: RangeError, msg: /cases\[2\]\.episode must be finite/ },
  { name: 'time a string', c: cs(20, { time: 'now' as unknown as number }), cls: TypeError, msg: /cases\[2\]\.time must be a number, got string/ },
  { name: 'case null', c: null, cls: TypeError, msg: /cases\[2\] must be an object/ },
];
const withBad = (bad: unknown): CaseInput[] => [X[0], X[1], bad as CaseInput, X[2], X[3], X[4]];

describe('the issue #11 example', () => {
  for (const backend of backends) {
    it(`[${backend}] value 1e39 merged into a stored case: refused, nothing changes, save/load still work`, async () => {
      const mem = new EpisodicMemory({ dim: 2, backend, merge: { epsilon: 0.1, rate: 0.5 } });
      await mem.write([{ key: [1, 0], value: 1, time: T0 }]);
      const before = deepState(mem);
      const p = mem.write([{ key: [1, 0], value: 1e39 }]);
      await expect(p).rejects.toThrow('cases[0].value 1e+39 is not representable in float32');
      await expect(p).rejects.toBeInstanceOf(RangeError);
      expect(deepState(mem)).toEqual(before);
      expect(mem.getCase(0)).toMatchObject({ value: 1, visits: 1 });
      const dir = freshDir();
      mem.save(dir, { fsync: false });
      expect(deepState(EpisodicMemory.load(dir, { backend }))).toEqual(before);
      await mem.write([{ key: [1, 0], value: 3 }]);
      expect(mem.getCase(0)).toMatchObject({ value: 2, visits: 2 });
    });
  }
});

for (const backend of backends) {
  describe(`a bad case anywhere in a batch changes nothing [${backend}]`, () => {
    for (const policy of policies) {
      for (const merge of merges) {
        it(label(policy, merge), async () => {
          const dir = freshDir();
          const twinDir = freshDir();
          const mem = await build(backend, policy, merge, dir);
          const twin = await build(backend, policy, merge, twinDir);
          const before = deepState(mem, dir);
          expect(deepState(twin, twinDir)).toEqual({ ...before, journalDir: before.journalDir });
          // Validation is the same pure function whatever the policy: every kind of bad case on
          // one full combination, the state-dependent ones (a merge) everywhere.
          const full = policy.kind === 'importance' && policy.sample && merge?.rate === 0.5;
          for (const bad of full ? badCases : badCases.filter((b) => /merging|squared norm|null/.test(b.name))) {
            const p = mem.write(withBad(bad.c));
            await expect(p, bad.name).rejects.toThrow(bad.msg);
            await expect(p, bad.name).rejects.toBeInstanceOf(bad.cls);
            expect(deepState(mem, dir), bad.name).toEqual(before);
          }
          // Then a good write works, exactly as on a memory that never saw the bad ones.
          const r = await mem.write(X);
          expect(r).toEqual(await twin.write(X));
          const after = deepState(mem, dir);
          expect(after).toEqual(deepState(twin, twinDir));
          expect(after).not.toEqual(before);
          checkConsistent(mem);
          // And the journal replays to the same memory.
          const { journalDir: _j, ...rest } = after;
          const back = EpisodicMemory.load(dir, { backend });
          expect(deepState(back)).toEqual(rest);
          mem.detachJournal();
          twin.detachJournal();
        });
      }
    }
  });
}

/** Route the memory's index through a proxy that counts method calls and throws at the given ones. */
function inject(mem: EpisodicMemory, failAt: number[]) {
  const real = mem.index;
  const log: string[] = [];
  mem.index = new Proxy(real, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        log.push(String(prop));
        if (failAt.includes(log.length)) throw new Error(`injected failure in ${String(prop)} (call ${log.length})`);
        return v.apply(target, args);
      };
    },
  });
  return { log, restore: () => (mem.index = real) };
}

/** A state with ids replaced by their rank (for comparisons after ids were used up by a rollback). */
function withoutIds(st: Record<string, unknown>): Record<string, unknown> {
  const { ids: _a, indexIds: _b, 'ids.i32': _c, journalDir: _d, header, ...rest } = st;
  const { parts, ...h } = header as { parts: Record<string, unknown> };
  return { ...rest, header: { ...h, parts: { ...parts, ids: undefined } }, cases: (st.cases as Array<Record<string, unknown>>).map(({ id: _id, ...c }) => c) };
}

for (const backend of backends) {
  describe(`the index failing at any call of a write: rolled back [${backend}]`, () => {
    for (const policy of policies) {
      it(`${label(policy, undefined).split(',')[0]}, every merge rule`, async () => {
        for (const merge of merges) {
          const where = label(policy, merge);
          // The calls a good write makes, and the state it leads to.
          const probeDir = freshDir();
          const probe = await build(backend, policy, merge, probeDir);
          const pr = inject(probe, []);
          await probe.write(X);
          pr.restore();
          const calls = [...pr.log];
          expect(calls, where).toContain('add');
          if (policy.kind !== 'unbounded') expect(calls, where).toContain('remove');
          // (Under replay the merged-into case is the oldest, and is evicted by the same write.)
          if (merge && policy.kind !== 'replay') expect(calls, where).toContain('updateValues');
          const expected = deepState(probe, probeDir);
          probe.detachJournal();
          for (let k = 1; k <= calls.length; k++) {
            const dir = freshDir();
            const mem = await build(backend, policy, merge, dir);
            const before = deepState(mem, dir);
            const h = inject(mem, [k]);
            await expect(mem.write(X), `${where}, failing ${calls[k - 1]}`).rejects.toThrow(`injected failure in ${calls[k - 1]} (call ${k})`);
            h.restore();
            expect(deepState(mem, dir), `${where}, failing ${calls[k - 1]}`).toEqual(before);
            checkConsistent(mem);
            // The same write then succeeds. Only a failed last step (remove) uses up the ids of the
            // rolled-back additions, so the new cases get other ids; everything else is identical.
            await mem.write(X);
            const got = deepState(mem, dir);
            if (calls[k - 1] === 'remove') expect(withoutIds(got), where).toEqual(withoutIds(expected));
            else expect(got, `${where}, failing ${calls[k - 1]}`).toEqual(expected);
            checkConsistent(mem);
            const { journalDir: _j, ...rest } = got;
            expect(deepState(EpisodicMemory.load(dir, { backend })), where).toEqual(rest);
            mem.detachJournal();
          }
        }
      });
    }
  });
}

describe('the journal failing, and a rollback failing', () => {
  for (const backend of backends) {
    it(`[${backend}] a journal append that throws leaves the memory, its index and its journal unchanged`, async () => {
      const dir = freshDir();
      const mem = await build(backend, { kind: 'replay', capacity: 6 }, { epsilon: 0.5, rate: 0.5 }, dir);
      const before = deepState(mem, dir);
      const writer = (mem as unknown as { journal: { writer: JournalWriter } }).journal.writer;
      const append = writer.append;
      writer.append = () => {
        throw new Error('ENOSPC: no space left on device');
      };
      await expect(mem.write(X)).rejects.toThrow(/ENOSPC/);
      expect(() => mem.remove(mem.ids().slice(0, 1))).toThrow(/ENOSPC/);
      expect(() => mem.setWeights(mem.ids().slice(0, 1), [5])).toThrow(/ENOSPC/);
      expect(() => mem.setKernel({ kernel: 'gaussian', bandwidth: 0.25 })).toThrow(/ENOSPC/);
      expect(deepState(mem, dir)).toEqual(before);
      writer.append = append;
      await mem.write(X);
      const { journalDir: _j, ...rest } = deepState(mem, dir);
      expect(deepState(EpisodicMemory.load(dir, { backend }))).toEqual(rest);
      mem.detachJournal();
    });

    it(`[${backend}] when undoing fails too, the memory refuses every later change`, async () => {
      const mem = await build(backend, { kind: 'replay', capacity: 6 }, undefined);
      // Fail the last call (remove) and the undo after it (removing the added cases again).
      const pmem = await build(backend, { kind: 'replay', capacity: 6 }, undefined);
      const pr = inject(pmem, []);
      await pmem.write(X);
      pr.restore();
      const last = pr.log.length;
      expect(pr.log[last - 1]).toBe('remove');
      const h = inject(mem, [last, last + 1]);
      await expect(mem.write(X)).rejects.toThrow(/episodic memory is inconsistent: a change failed \(injected failure in remove.*undoing it failed too \(injected failure in remove/);
      h.restore();
      await expect(mem.write([cs(30)])).rejects.toThrow(/inconsistent/);
      expect(() => mem.save(freshDir())).toThrow(/inconsistent/);
      expect(() => mem.remove(Int32Array.of(0))).toThrow(/inconsistent/);
    });
  }
});

describe('other changes are all or nothing', () => {
  for (const backend of backends) {
    it(`[${backend}] remove and setWeights validate every id and weight first`, async () => {
      const mem = await build(backend, { kind: 'importance', capacity: 6, weightBy: 'tdError' }, undefined);
      const before = deepState(mem);
      const [a, b] = mem.ids();
      expect(() => mem.remove(Int32Array.of(a, 999))).toThrow(/remove: unknown case id 999 \(ids\[1\]\)/);
      expect(() => mem.remove(Int32Array.of(a, b, a))).toThrow(/remove: case id \d+ appears twice \(ids\[2\]\)/);
      expect(() => mem.setWeights(Int32Array.of(a, 999), [1, 2])).toThrow(RangeError);
      expect(() => mem.setWeights(Int32Array.of(a, b), [1, NaN])).toThrow(/setWeights: weights\[1\] must be finite, got NaN/);
      expect(() => mem.setWeights(Int32Array.of(a, b), [1])).toThrow(TypeError);
      expect(deepState(mem)).toEqual(before);
      mem.setWeights(Int32Array.of(a, b), [7, 8]);
      expect([mem.getCase(a)!.weight, mem.getCase(b)!.weight]).toEqual([7, 8]);
    });
  }

  it('a remove made while a write awaits its merge search: the write re-plans', async () => {
    for (const backend of backends) {
      const mem = await build(backend, { kind: 'unbounded' }, { epsilon: 0.5, rate: 0.5 });
      const target = mem.ids()[1]; // stored case 1, which X[0] merges into
      expect(mem.getCase(target)!.state).toBe('s1');
      const p = mem.write(X);
      mem.remove(Int32Array.of(target)); // runs before the write's search resumes
      const r = await p;
      expect(r.merged).toHaveLength(0); // nothing left to merge into: appended
      expect(r.caseIds[0]).toBe(r.added[0]);
      expect(mem.getCase(r.caseIds[0])).toMatchObject({ state: 's1', value: 7, visits: 1 });
      checkConsistent(mem);
    }
  });
});

describe('values at the edge of float32', () => {
  for (const backend of backends) {
    it(`[${backend}] ±FLT_MAX values and keys just under the squared-norm limit are stored, merged, saved and loaded`, async () => {
      const mem = new EpisodicMemory({ dim: D, backend, merge: { epsilon: 0.5, rate: 'average' } });
      const big = Math.sqrt(squaredNormLimit(D) / 2) * 0.999;
      await mem.write([
        { key: [big, big, 0, 0], value: FLT(1), time: T0 },
        { key: [5, 0, 0, 0], value: FLOAT32_MAX, time: T0 },
        { key: [5, 0, 0, 0], value: FLOAT32_MAX, time: T0 },
        { key: [9, 0, 0, 0], value: -FLOAT32_MAX, time: T0 },
        { key: [9, 0, 0, 0], value: FLOAT32_MAX, time: T0 },
      ]);
      expect(Array.from(mem.ids(), (id) => mem.getCase(id)!.value)).toEqual([1, FLOAT32_MAX, 0]);
      await mem.write([{ key: [5, 0, 0, 0], value: FLOAT32_MAX, time: T0 }]);
      expect(mem.getCase(mem.ids()[1])).toMatchObject({ value: FLOAT32_MAX, visits: 3 });
      // 3.402823565e38 > FLT_MAX rounds to FLT_MAX in float32: representable (the midpoint
      // 3.4028235677973366e38 rounds to Infinity and is refused).
      await expect(mem.write([{ key: [20, 0, 0, 0], value: 3.4028235677973366e38 }])).rejects.toThrow(/not representable in float32/);
      await mem.write([{ key: [20, 0, 0, 0], value: 3.402823565e38, time: T0 }]);
      expect(mem.getCase(mem.ids()[3])!.value).toBe(FLOAT32_MAX);
      const dir = freshDir();
      mem.save(dir, { fsync: false });
      expect(deepState(EpisodicMemory.load(dir, { backend }))).toEqual(deepState(mem));
    });
  }
});
const FLT = Math.fround;

// ---------- saves verified before they become current; loads refusing unusable rows ----------

/** Replace a part's bytes in generation 1 of dir, fixing the header's size and CRCs (so only the content is bad). */
function rewritePart(dir: string, file: string, bytes: Buffer): void {
  const gen = path.join(dir, 'snap-00000001');
  fs.writeFileSync(path.join(gen, file), bytes);
  const hfile = path.join(gen, 'header.json');
  const parsed = JSON.parse(fs.readFileSync(hfile, 'utf8'));
  const part = Object.values(parsed.header.parts as Record<string, { file: string; bytes: number; crc32: number }>).find((p) => p.file === file)!;
  part.bytes = bytes.length;
  part.crc32 = zlib.crc32(bytes);
  parsed.crc32 = zlib.crc32(JSON.stringify(parsed.header));
  fs.writeFileSync(hfile, JSON.stringify(parsed) + '\n');
}

describe('save verifies the new generation before making it current', () => {
  it('bytes damaged between writing and the switch: refused, CURRENT unchanged, no leftovers', async () => {
    const dir = freshDir();
    const mem = await build('js', { kind: 'replay', capacity: 6 }, undefined);
    mem.save(dir, { fsync: false });
    const before = dirBytes(dir);
    await mem.write(X);
    for (const file of ['ids.i32', 'keys.f32', 'values.f32', 'meta.bin', 'header.json']) {
      let err: unknown;
      try {
        mem.save(dir, {
          fsync: false,
          beforeStep: (s) => {
            if (s !== 'verify') return;
            const tmp = fs.readdirSync(dir).find((n) => n.includes('.tmp-'))!;
            const f = path.join(dir, tmp, file);
            const b = fs.readFileSync(f);
            b[b.length >> 1] ^= 0x10;
            fs.writeFileSync(f, b);
          },
        });
      } catch (e) {
        err = e;
      }
      expect(err, file).toBeInstanceOf(SnapshotError);
      expect((err as Error).message).toMatch(/save: the new generation snap-00000002 failed verification after writing, so .*CURRENT was left as it was/);
      expect((err as Error).message).toContain(file);
      expect(dirBytes(dir)).toEqual(before);
    }
    expect(mem.save(dir, { fsync: false }).generation).toBe(2);
    expect(deepState(EpisodicMemory.load(dir, { backend: 'js' }))).toEqual(deepState(mem));
  });

  it('a memory whose state could not be loaded back is not saved (values, keys, metadata: before writing)', async () => {
    for (const backend of backends) {
      const dir = freshDir();
      const mem = await build(backend, { kind: 'unbounded' }, undefined);
      mem.save(dir, { fsync: false });
      const before = dirBytes(dir);
      const id = mem.ids()[2];
      // The index refuses non-finite values, so the store's @internal test hook stands in for a
      // corrupted state: value reads of id report Infinity.
      mem.store.corruptForTest(id, { value: Infinity });
      expect(() => mem.save(dir, { fsync: false })).toThrow(/save: values row 2 \(id \d+\) is Infinity, expected a finite value; the snapshot would not load, nothing was written/);
      expect(dirBytes(dir)).toEqual(before);
      mem.store.corruptForTest(id, { value: undefined });
      mem.store.corruptForTest(id, { weight: NaN });
      expect(() => mem.save(dir, { fsync: false })).toThrow(/save: meta row 2: weight must be a finite number, got NaN; the snapshot would not load, nothing was written/);
      expect(dirBytes(dir)).toEqual(before);
      expect(readSnapshot(dir).generation).toBe(1);
    }
  });

  it('writeSnapshot refuses, before writing, rows a load would refuse', () => {
    const dir = freshDir();
    const M = { state: 's', action: 'a', visits: 1, weight: 1, episode: 0, step: 0, source: 'train', time: 0, seq: 0, touched: 0 };
    const data = (keys: number[], values: number[]) => ({
      dim: 2, kernel: {}, options: {}, counters: {}, ids: Int32Array.of(0, 1), keys: Float32Array.from(keys), values: Float32Array.from(values), meta: [M, M],
    });
    expect(() => writeSnapshot(dir, data([0, 0, 3e19, 0], [1, 2]))).toThrow(/save: keys row 1 \(id 1\): squared norm 9\.0+e\+38 overflows float32/);
    expect(() => writeSnapshot(dir, data([0, 0, 1, NaN], [1, 2]))).toThrow(/save: keys row 1 \(id 1\): column 1 is NaN/);
    expect(() => writeSnapshot(dir, data([0, 0, 1, 0], [NaN, 2]))).toThrow(/save: values row 0 \(id 0\) is NaN/);
    const bad = { dim: 2, kernel: {}, options: {}, counters: {}, ids: Int32Array.of(0, 1), keys: new Float32Array(4), values: new Float32Array(2) };
    expect(() => writeSnapshot(dir, { ...bad, meta: [M, { ...M, visits: 0 }] })).toThrow(/save: meta\[1\]: visits must be an integer >= 1, got 0; the snapshot would not load, nothing was written/);
    expect(() => writeSnapshot(dir, { ...bad, meta: [M, { g: 1 }] })).toThrow(/save: meta\[1\]: state must be a string/);
    expect(fs.existsSync(dir)).toBe(false);
  });
});

describe('load refuses rows the index cannot hold, naming the file, the part and the row', () => {
  async function saved(): Promise<{ dir: string; mem: EpisodicMemory }> {
    const dir = freshDir();
    const mem = await build('js', { kind: 'unbounded' }, undefined);
    mem.save(dir, { fsync: false });
    return { dir, mem };
  }
  const loadErr = (dir: string): SnapshotError => {
    try {
      EpisodicMemory.load(dir, { backend: 'js' });
    } catch (e) {
      expect(e).toBeInstanceOf(SnapshotError);
      return e as SnapshotError;
    }
    throw new Error('load did not refuse');
  };

  it('a key whose squared norm overflows float32, a non-finite key or value', async () => {
    const cases: Array<[string, (k: Float32Array, v: Float32Array) => void, string, RegExp]> = [
      ['keys.f32', (k) => k.set([2e19, 2e19], 3 * D), 'keys', /keys\.f32 \(part 'keys'\) row 3 \(id 3\): squared norm 8\.0+e\+38 overflows float32/],
      ['keys.f32', (k) => (k[2 * D + 1] = Infinity), 'keys', /keys\.f32 \(part 'keys'\) row 2 \(id 2\): column 1 is Infinity/],
      ['values.f32', (_k, v) => (v[4] = NaN), 'values', /values\.f32 \(part 'values'\) row 4 \(id 4\) is NaN, expected a finite value/],
      ['values.f32', (_k, v) => (v[0] = -Infinity), 'values', /values\.f32 \(part 'values'\) row 0 \(id 0\) is -Infinity/],
    ];
    for (const [file, mutate, part, msg] of cases) {
      const { dir, mem } = await saved();
      const snap = readSnapshot(dir).data;
      mutate(snap.keys, snap.values);
      rewritePart(dir, file, Buffer.from((file === 'keys.f32' ? snap.keys : snap.values).buffer));
      const err = loadErr(dir);
      expect(err.message).toMatch(msg);
      expect(err.message).toContain(path.join(dir, 'snap-00000001', file));
      expect(err.part).toBe(part);
      expect(err.row).toBe(Number(/row (\d+)/.exec(err.message)![1]));
      expect(mem.size).toBe(6);
    }
  });

  it('ids out of order, malformed metadata', async () => {
    let { dir } = await saved();
    rewritePart(dir, 'ids.i32', Buffer.from(Int32Array.of(0, 1, 5, 3, 4, 6).buffer));
    expect(loadErr(dir).message).toMatch(/ids\.i32 \(part 'ids'\) row 3: id 3 does not follow 5/);
    ({ dir } = await saved());
    rewritePart(dir, 'ids.i32', Buffer.from(Int32Array.of(0, 1, 2, 3, 4, 2147483647).buffer));
    expect(loadErr(dir).message).toMatch(/ids\.i32 \(part 'ids'\) row 5: id 2147483647 is reserved/);
    ({ dir } = await saved());
    fs.mkdirSync(path.join(dir, 'journal-00000001.wal'));
    expect(loadErr(dir).message).toMatch(/journal-00000001\.wal \(part 'journal'\) cannot be read: EISDIR/);
    ({ dir } = await saved());
    const meta = fs.readFileSync(path.join(dir, 'snap-00000001', 'meta.bin'));
    rewritePart(dir, 'meta.bin', editMeta(meta, 'weight', 4, NaN));
    const err = loadErr(dir);
    expect(err.message).toMatch(/meta\.bin \(part 'meta'\) row 4 \(id 4\): weight must be a finite number, got NaN/);
    expect(err.row).toBe(4);
    for (const [col, v, msg] of [
      ['visits', 0.5, /row 1 \(id 1\): visits must be an integer >= 1, got 0\.5/],
      ['seq', -1, /row 1 \(id 1\): seq must be an integer >= 0, got -1/],
      ['action', 7, /row 1 \(id 1\): action code 7 is outside the action table/],
      ['source', -1, /row 1 \(id 1\): source code -1 is outside the source table/],
      ['stateEnd', 1e9, /row 1 \(id 1\): state ends at byte 1000000000/],
    ] as const) {
      ({ dir } = await saved());
      rewritePart(dir, 'meta.bin', editMeta(fs.readFileSync(path.join(dir, 'snap-00000001', 'meta.bin')), col, 1, v));
      const e = loadErr(dir);
      expect(e.message, col).toMatch(msg);
      expect(e.part).toBe('meta');
    }
  });

  it('a journal record holding an unrepresentable value or an overflowing key', async () => {
    for (const [body, keys, msg] of [
      [{ removed: [], added: [], upserts: [{ id: 0, value: 1e39 }] }, [], /upserts\[0\] \(id 0\): value 1e\+39 is not a finite float32/],
      [{ removed: [], added: [10], upserts: [{ id: 10, value: 1 }] }, [2e19, 2e19, 0, 0], /key of added id 10: squared norm 8\.0+e\+38 overflows float32/],
      [{ removed: [], added: [10], upserts: [] }, [1, 0, 0, 0], /added id 10 has no upsert/],
    ] as const) {
      const dir = freshDir();
      const mem = await build('js', { kind: 'unbounded' }, undefined, dir);
      const meta = { ...mem.getCase(0)! } as Record<string, unknown>;
      delete meta.id;
      delete meta.value;
      const w = (mem as unknown as { journal: { writer: JournalWriter } }).journal.writer;
      w.append({ body: { seq: 9, clock: 9, ...body, upserts: body.upserts.map((u) => ({ ...u, meta })) }, keys: Float32Array.from(keys) });
      mem.detachJournal();
      const err = loadErr(dir);
      expect(err.message).toMatch(/journal-00000001\.wal \(part 'journal record 2'\) is malformed: /);
      expect(err.message).toMatch(msg);
    }
  });
});

describe('the RNG of sampled eviction is saved and journalled', () => {
  it('a loaded memory evicts exactly as the original would have', async () => {
    const policy: WritePolicy = { kind: 'importance', capacity: 5, weightBy: 'tdError', sample: true, seed: 11 };
    const rng = new Mulberry32(4);
    const batch = (e: number) => Array.from({ length: 3 }, (_, t) => cs(100 + e * 3 + t, { tdError: 0.1 + rng.next(), episode: e }));
    const dir = freshDir();
    const mem = EpisodicMemory.open(dir, { dim: D, backend: 'js', policy }, { fsync: false });
    for (let e = 0; e < 3; e++) await mem.write(batch(e));
    mem.checkpoint();
    for (let e = 3; e < 6; e++) await mem.write(batch(e)); // in the journal
    const back = EpisodicMemory.load(dir, { backend: 'js' });
    expect(deepState(back)).toEqual(deepState(mem));
    for (let e = 6; e < 12; e++) {
      const b = batch(e);
      expect(await back.write(b)).toEqual(await mem.write(b));
    }
    expect(deepState(back)).toEqual(deepState(mem));
    mem.detachJournal();
  });
});

describe('ReferenceIndex refuses what the native index refuses, all or nothing', () => {
  it('keys with an overflowing squared norm, non-finite values', () => {
    const idx = new ReferenceIndex({ dim: 2, kernel: 'gaussian', bandwidth: 1 });
    idx.add(Float32Array.of(1, 2), Float32Array.of(3));
    expect(() => idx.add(Float32Array.of(0, 0, 2e19, 2e19), Float32Array.of(1, 2))).toThrow(/keys row 1: squared norm 8\.0+e\+38 overflows float32/);
    expect(() => idx.add(Float32Array.of(0, 0), Float32Array.of(Infinity))).toThrow(RangeError);
    expect(() => idx.updateValues(Int32Array.of(0), Float32Array.of(NaN))).toThrow(/values\[0\] is NaN/);
    expect(() => idx.add(Float32Array.of(0, 0, 0), Float32Array.of(1))).toThrow(TypeError);
    expect(Array.from(idx.ids())).toEqual([0]);
    expect(Array.from(idx.getValues(Int32Array.of(0)))).toEqual([3]);
  });
});

describe('forged headers, constructor arguments, coverage radius', () => {
  it('a header whose options, kernel or dim the store refuses: a SnapshotError naming header.json', async () => {
    const forged: Array<[string, (h: Record<string, any>) => void]> = [
      ['policy', (h) => (h.options.policy = { kind: 'replay', capacity: 0 })],
      ['merge', (h) => (h.options.merge = { epsilon: 1, rate: 5 })],
      ['options null', (h) => (h.options = null)],
      ['kernel', (h) => (h.kernel = { kernel: 'x' })],
    ];
    for (const [what, mutate] of forged) {
      const dir = freshDir();
      (await build('js', { kind: 'unbounded' }, undefined)).save(dir, { fsync: false });
      const hfile = path.join(dir, 'snap-00000001', 'header.json');
      const parsed = JSON.parse(fs.readFileSync(hfile, 'utf8'));
      mutate(parsed.header);
      parsed.crc32 = zlib.crc32(JSON.stringify(parsed.header));
      fs.writeFileSync(hfile, JSON.stringify(parsed) + '\n');
      let err: unknown;
      try {
        EpisodicMemory.load(dir, { backend: 'js' });
      } catch (e) {
        err = e;
      }
      expect(err, what).toBeInstanceOf(SnapshotError);
      expect((err as Error).message, what).toMatch(/header\.json \(part 'header'\)(: the stored dim, kernel or options cannot be used: | options must be an object)/);
    }
  });

  it('constructor: dim and backend of the wrong type or kind are TypeErrors', () => {
    expect(() => new EpisodicMemory({ dim: null as unknown as number })).toThrow(TypeError);
    expect(() => new EpisodicMemory({ dim: Symbol('x') as unknown as number })).toThrow(/dim must be an integer >= 1, got symbol/);
    expect(() => new EpisodicMemory({ dim: 0 })).toThrow(RangeError);
    expect(() => new EpisodicMemory({ dim: 2, backend: 'gpu' as 'js' })).toThrow(/backend must be 'native', 'js' or 'auto', got "gpu"/);
    expect(() => new EpisodicMemory({ dim: 2, backend: 5 as unknown as 'js' })).toThrow(TypeError);
  });

  for (const backend of backends) {
    it(`[${backend}] coverageRadius is the distance to the nearest key, also under the cosine kernel`, async () => {
      const mem = new EpisodicMemory({ dim: 2, backend, kernel: { kernel: 'cosine', kappa: 1 } });
      // The query (1, 0) is at angle 0 from (10, 0) but nearer to (0.5, 0.5).
      await mem.write([{ key: [10, 0], value: 0 }, { key: [0.5, 0.5], value: 0 }]);
      const r = await mem.coverageRadius(Float32Array.of(1, 0));
      expect(r.distances[0]).toBeCloseTo(Math.SQRT1_2, 6);
      await expect(mem.coverageRadius([1, 0] as unknown as Float32Array)).rejects.toThrow(TypeError);
      await expect(mem.coverageRadius(Float32Array.of(1, 0, 0))).rejects.toThrow(/multiple of dim/);
    });
  }
});
