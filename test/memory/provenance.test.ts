/**
 * Authenticated provenance (docs/trust.md): with trust.authenticate, a write claiming a trusted
 * source must carry the writer key's MAC; without a valid one its trusted cases are stored as
 * 'unverified:<source>' (untrusted, so quarantined). The MAC is checked against an HMAC computed
 * here from the documented byte layout (not through signWrite), on random batches; every way of
 * breaking it (no MAC, another key, a changed value, key component or source, a reordered
 * batch) downgrades the batch, and the downgraded records are hidden from reads exactly as if
 * they had never been written.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MEMQ_DEFAULTS, MemQAgent } from '../../lib/agent/memq';
import { defaultConfig, mergeConfig, validateConfig, ConfigError } from '../../lib/agent/config';
import { HashingEncoder } from '../../lib/encoders/hashing';
import { envNames } from '../../lib/envs/registry';
import { UniformPrior } from '../../lib/llm/prior';
import { EpisodicMemory } from '../../lib/memory/episodic';
import { signCases, signWrite, writerKeyOf } from '../../lib/memory/provenance';
import type { CaseInput } from '../../lib/memory/types';
import { TestRng, testSeed } from '../helpers/rng';

const KEY = 'provenance-test-key-0123456789';
const OTHER = 'another-key-of-enough-bytes-42';
const dim = 8;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-provenance-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const savedEnv = process.env.MEMQ_MEMORY_KEY;
afterEach(() => {
  if (savedEnv === undefined) delete process.env.MEMQ_MEMORY_KEY;
  else process.env.MEMQ_MEMORY_KEY = savedEnv;
});

/** The documented MAC, written out here: HMAC(HMAC(key, 'memq-writer-v1'), layout). */
function referenceMac(key: string, keys: Float32Array, values: number[], sources: string[]): string {
  const writer = crypto.createHmac('sha256', Buffer.from(key, 'utf8')).update('memq-writer-v1').digest();
  const n = values.length;
  const kb = Buffer.alloc(keys.length * 4);
  keys.forEach((x, i) => kb.writeFloatLE(x, i * 4));
  const vb = Buffer.alloc(n * 8);
  values.forEach((x, i) => vb.writeDoubleLE(x, i * 8));
  return crypto.createHmac('sha256', writer).update(`memq-write-v1\0${n}\0${n ? keys.length / n : 0}\0${JSON.stringify(sources)}\0`).update(kb).update(vb).digest('hex');
}

function batch(rng: TestRng, n: number, source: string | ((i: number) => string)): CaseInput[] {
  return Array.from({ length: n }, (_, i) => ({
    key: Float32Array.from({ length: dim }, () => rng.normal()),
    value: rng.next(),
    state: `s${i}`,
    action: `a${i % 3}`,
    source: typeof source === 'string' ? source : source(i),
  }));
}

const flat = (cases: CaseInput[]) => {
  const k = new Float32Array(cases.length * dim);
  cases.forEach((c, i) => k.set(c.key as Float32Array, i * dim));
  return k;
};

const sourcesOf = (m: EpisodicMemory) => Array.from(m.ids(), (id) => m.getCase(id)!.source);

describe('authenticated provenance', () => {
  it('signWrite equals the documented HMAC layout on random batches', () => {
    const rng = new TestRng(testSeed());
    const writer = writerKeyOf(KEY)!;
    for (let t = 0; t < 20; t++) {
      const cases = batch(rng, 1 + rng.int(6), (i) => (i % 2 ? 'train' : `import:x${t}`));
      const want = referenceMac(KEY, flat(cases), cases.map((c) => c.value), cases.map((c) => c.source!));
      expect(signWrite(writer, flat(cases), cases.map((c) => c.value), cases.map((c) => c.source!))).toBe(want);
      expect(signCases(writer, cases)).toBe(want);
    }
    // one source for all rows = that source repeated; no source = ''
    const cases = batch(rng, 3, 'train');
    expect(signWrite(writer, flat(cases), cases.map((c) => c.value), 'train')).toBe(referenceMac(KEY, flat(cases), cases.map((c) => c.value), ['train', 'train', 'train']));
    expect(signWrite(writer, flat(cases), cases.map((c) => c.value))).toBe(referenceMac(KEY, flat(cases), cases.map((c) => c.value), ['', '', '']));
  });

  it('a valid MAC keeps the claimed sources; none, another key or any changed field downgrades the trusted ones', async () => {
    const rng = new TestRng(testSeed() + 1);
    const writer = writerKeyOf(KEY)!;
    const fresh = () => new EpisodicMemory({ dim, kernel: { kernel: 'gaussian', bandwidth: 1 }, trust: { authenticate: KEY, quarantine: false } });
    const mixed = (i: number) => ['train', 'demo', 'import:vendor', ''][i % 4];
    // signed: as claimed, through write and writeRows
    const cases = batch(rng, 8, mixed);
    const m1 = fresh();
    const r1 = await m1.write(cases, { mac: signCases(writer, cases) });
    expect(r1.unverified).toBe(0);
    expect(sourcesOf(m1)).toEqual(cases.map((c) => c.source));
    const m2 = fresh();
    const r2 = await m2.writeRows(flat(cases), cases.map((c) => c.value), { source: cases.map((c) => c.source!) }, { mac: signCases(writer, cases) });
    expect(r2.unverified).toBe(0);
    expect(sourcesOf(m2)).toEqual(cases.map((c) => c.source));
    // broken in every way: the trusted cases are stored as unverified:<source>, the import as it was
    const downgraded = cases.map((c) => (c.source === 'import:vendor' ? c.source : `unverified:${c.source}`));
    const mac = signCases(writer, cases);
    const tamper: [string, CaseInput[], string | undefined][] = [
      ['no mac', cases, undefined],
      ['another key', cases, signCases(writerKeyOf(OTHER)!, cases)],
      ['a value changed', cases.map((c, i) => (i === 5 ? { ...c, value: c.value + 1e-9 } : c)), mac],
      ['a key component changed', cases.map((c, i) => (i === 2 ? { ...c, key: Float32Array.from(c.key as Float32Array, (x, j) => (j === 3 ? x + 1e-3 : x)) } : c)), mac],
      ['a source changed', cases.map((c, i) => (i === 2 ? { ...c, source: 'self' } : c)), mac],
      ['reordered', [...cases].reverse(), mac],
      ['a malformed mac', cases, 'zz' + mac.slice(2)],
    ];
    for (const [what, cs, m] of tamper) {
      const mem = fresh();
      const r = await mem.write(cs, m === undefined ? undefined : { mac: m });
      const want = cs.map((c) => (c.source === 'import:vendor' ? c.source : `unverified:${c.source}`));
      expect(sourcesOf(mem), what).toEqual(want);
      expect(r.unverified, what).toBe(want.filter((s) => s.startsWith('unverified:')).length);
      expect(mem.trustLevel(want[0]), what).toBe('untrusted');
    }
    expect(downgraded.filter((s) => s.startsWith('unverified:')).length).toBe(6);
    // without authenticate nothing is checked and the report has no 'unverified'
    const plain = new EpisodicMemory({ dim, trust: { quarantine: false } });
    const rp = await plain.write(cases);
    expect(rp.unverified).toBeUndefined();
    expect(sourcesOf(plain)).toEqual(cases.map((c) => c.source));
    await expect(m1.write(cases, 'mac' as never)).rejects.toThrow(/write options must be an object/);
  });

  it('forged self-writes are quarantined: reads equal those of the memory without them', async () => {
    const rng = new TestRng(testSeed() + 2);
    const trust = { authenticate: KEY, valueRange: { min: 0, max: 1 } };
    const writer = writerKeyOf(KEY)!;
    const own = batch(rng, 40, 'train');
    const forged = own.slice(0, 5).map((c) => ({ ...c, value: 1e6, action: 'attack' }));
    const attacked = new EpisodicMemory({ dim, kernel: { kernel: 'gaussian', bandwidth: 1.5 }, trust });
    const clean = new EpisodicMemory({ dim, kernel: { kernel: 'gaussian', bandwidth: 1.5 }, trust });
    for (const m of [attacked, clean]) await m.write(own, { mac: signCases(writer, own) });
    const rep = await attacked.write(forged); // the public write path, no key
    expect(rep.unverified).toBe(5);
    const hidden = new Set(Array.from(await attacked.quarantined()));
    for (const id of rep.caseIds) expect(hidden.has(id)).toBe(true);
    const q = new Float32Array(10 * dim).map(() => rng.normal());
    const a = await attacked.estimate(q, 8);
    const b = await clean.estimate(q, 8);
    for (let i = 0; i < 10; i++) expect(Math.abs(a.value[i] - b.value[i])).toBeLessThan(1e-6);
  });

  it('MemQAgent signs its own writes; run configs take authenticate as true/false only', async () => {
    const encoder = new HashingEncoder({ dim: 16 });
    const agent = new MemQAgent({ ...MEMQ_DEFAULTS, encoder, prior: new UniformPrior(), seed: 1, trust: { authenticate: KEY } });
    const ep = {
      episode: 0, task: 't', taskType: 'x', won: true, totalReward: 1, source: 'train' as const,
      steps: [0, 1, 2].map((t) => ({ state: `state ${t}`, action: `act ${t}`, reward: t === 2 ? 1 : 0, admissible: ['a'] })),
    };
    await agent.endEpisode(ep as never);
    expect(sourcesOf(agent.memory)).toEqual(['train', 'train', 'train']);
    expect((await agent.memory.quarantined()).length).toBe(0);
    // the same episode written by someone without the key
    await agent.memory.writeRows(new Float32Array(16).fill(0.25), [1], { source: 'train' });
    expect(sourcesOf(agent.memory).at(-1)).toBe('unverified:train');
    // run configs: a key never goes into config.json; true needs MEMQ_MEMORY_KEY
    const cfg = (authenticate: unknown) => validateConfig(mergeConfig(defaultConfig(), { memq: { trust: { authenticate } } } as never), envNames());
    expect(() => cfg(KEY)).toThrow(/authenticate must be true or false in a run config/);
    delete process.env.MEMQ_MEMORY_KEY;
    expect(() => cfg(true)).toThrow(ConfigError);
    expect(() => cfg(true)).toThrow(/MEMQ_MEMORY_KEY/);
    process.env.MEMQ_MEMORY_KEY = KEY;
    expect(() => cfg(true)).not.toThrow();
    expect(() => new EpisodicMemory({ dim, trust: { authenticate: 'short' } })).toThrow(/at least 16 bytes/);
    expect(() => new EpisodicMemory({ dim, trust: { authenticate: 7 as never } })).toThrow(/trust.authenticate must be true, false, a key string or a Uint8Array/);
  });

  it('import: a snapshot signed with the memory key keeps a trusted source; one signed with another key is unverified; an unsigned one only comes in untrusted', async () => {
    const rng = new TestRng(testSeed() + 3);
    const src = new EpisodicMemory({ dim });
    await src.write(batch(rng, 6, 'train'));
    const signedDir = path.join(tmp, 'signed');
    src.save(signedDir, { key: KEY });
    const dst = new EpisodicMemory({ dim, trust: { authenticate: KEY, quarantine: false } });
    const r = await dst.import(signedDir, { source: 'demo', key: KEY });
    expect(r.unverified).toBe(0);
    expect(new Set(sourcesOf(dst))).toEqual(new Set(['demo']));
    // signed with another key, given by the caller: verified, but not the memory key holder's
    const foreignDir = path.join(tmp, 'foreign');
    src.save(foreignDir, { key: OTHER });
    const dst2 = new EpisodicMemory({ dim, trust: { authenticate: KEY, quarantine: false } });
    const r2 = await dst2.import(foreignDir, { source: 'demo', key: OTHER });
    expect(r2.unverified).toBe(6);
    expect(new Set(sourcesOf(dst2))).toEqual(new Set(['unverified:demo']));
    const unsignedDir = path.join(tmp, 'unsigned');
    src.save(unsignedDir);
    await expect(dst.import(unsignedDir, { source: 'demo', key: KEY })).rejects.toThrow(/can only be imported under an untrusted source/);
  });
});
