/**
 * Persistence of episodic memory (docs/memory-format.md), the parts that need no memory object:
 * checks of snapshot data and journal records as a memory needs them, the JSON body of a
 * journal record, and the HMAC chain of signed journals. Snapshots are read and written by
 * ./snapshot, journals by ./journal; EpisodicMemory (./episodic) ties them to its store.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import type { KernelSettings } from '../policy/kernels';
import { leBytes } from './fsutil';
import type { JournalRecord } from './journal';
import { MetaColumns } from './metaColumns';
import { generationName, SnapshotError, type SnapshotData } from './snapshot';
import type { CaseMeta, WritePolicy } from './types';
import { policyCapacity } from './writePlan';
import { caseMetaProblem, finiteFloat32, keyRowProblem, MAX_ID, snapshotRowProblem } from './validate';

/**
 * A writer never leaves more cases than its write policy holds, so a snapshot or a replayed
 * journal that does was forged: the message, or undefined. A policy that is not a well-formed
 * object is left to the memory's own check of its options.
 */
export function capacityProblem(size: number, policy: unknown): string | undefined {
  if (typeof policy !== 'object' || policy === null) return undefined;
  const cap = policyCapacity(policy as WritePolicy);
  // a capacity that is not a positive integer is the policy's own error (the memory checks it)
  return Number.isInteger(cap) && cap >= 1 && size > cap ? `holds ${size} cases, over the write policy's capacity of ${cap}` : undefined;
}

/**
 * Check snapshot data as a memory needs it: shapes, ids, keys and values (snapshotRowProblem),
 * every metadata line (caseMetaProblem) and the counters. `genDir` names the files in errors
 * (a SnapshotError naming the file, the part and the row); without it, errors name the field.
 */
export function checkSnapshotData(data: SnapshotData, genDir?: string): void {
  const fail = (part: string, file: string, msg: string, row?: number): never => {
    if (genDir === undefined) throw new RangeError(`snapshot data: ${part} ${msg}`);
    const f = path.join(genDir, file);
    throw new SnapshotError(`${f} (part '${part}') ${msg}`, f, part, row);
  };
  const n = data.ids.length;
  if (!(Number.isInteger(data.dim) && data.dim >= 1)) fail('header', 'header.json', `dim must be an integer >= 1, got ${data.dim}`);
  const mapped = data.keysFile !== undefined;
  if (mapped && data.keysFile!.bytes !== n * data.dim * 4) fail('keys', 'keys.f32', `has ${data.keysFile!.bytes} bytes, expected ${n} × ${data.dim} × 4`);
  if (!mapped && data.keys.length !== n * data.dim) fail('keys', 'keys.f32', `has ${data.keys.length} floats, expected ${n} × ${data.dim}`);
  if (data.values.length !== n) fail('values', 'values.f32', `has ${data.values.length} values, expected ${n}`);
  const meta = data.meta;
  const cols = meta instanceof MetaColumns;
  if (meta.length !== n) fail('meta', cols ? 'meta.bin' : 'meta.jsonl', `has ${meta.length} ${cols ? 'rows' : 'lines'}, expected ${n}`);
  const bad = snapshotRowProblem(data.ids, data.keys, data.values, data.dim, { skipKeys: mapped });
  if (bad) fail(bad.part, { ids: 'ids.i32', keys: 'keys.f32', values: 'values.f32' }[bad.part], bad.message, bad.row);
  if (cols) {
    // mapped metadata (metaFile) is checked by the case store as it reads the rows
    const p = data.metaFile ? undefined : meta.problem();
    if (p) fail('meta', 'meta.bin', `row ${p.row} (id ${data.ids[p.row]}): ${p.message}`, p.row);
  } else {
    for (let i = 0; i < n; i++) {
      const p = caseMetaProblem(meta[i]);
      if (p) fail('meta', 'meta.jsonl', `line ${i + 1} (id ${data.ids[i]}): ${p}`, i);
    }
  }
  if (typeof data.options !== 'object' || data.options === null || Array.isArray(data.options)) {
    fail('header', 'header.json', `options must be an object { policy, merge }, got ${JSON.stringify(data.options)}`);
  }
  const over = capacityProblem(n, data.options.policy);
  if (over) fail('header', 'header.json', over);
  const c = data.counters ?? {};
  for (const k of ['seq', 'clock'] as const) {
    const v = c[k];
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) fail('header', 'header.json', `counters.${k} must be an integer >= 0, got ${JSON.stringify(v)}`);
  }
  if (c.rng !== undefined && !(Number.isInteger(c.rng) && c.rng >= 0 && c.rng <= 0xffffffff)) {
    fail('header', 'header.json', `counters.rng must be a uint32, got ${JSON.stringify(c.rng)}`);
  }
}

/** A case's metadata as written: one line of meta.jsonl, one journal upsert's meta. */
export function metaLine(m: CaseMeta): Record<string, unknown> {
  return { ...m };
}

/** The JSON part of a journal record: the counters after the change and what it changed. */
export function recordBody(
  seq: number,
  clock: number,
  rng: number,
  kernel: KernelSettings,
  removed: Int32Array,
  added: Int32Array,
  upserts: { id: number; value: number; meta: CaseMeta }[],
): Record<string, unknown> {
  return {
    seq,
    clock,
    rng,
    kernel,
    removed: Array.from(removed),
    added: Array.from(added),
    upserts: upserts.map((u) => ({ id: u.id, value: u.value, meta: metaLine(u.meta) })),
  };
}

/** First problem with a journal record's shape and contents, or undefined. */
export function journalRecordProblem(rec: JournalRecord, dim: number): string | undefined {
  const b = rec.body as Record<string, unknown>;
  const isId = (x: unknown) => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= MAX_ID;
  for (const k of ['seq', 'clock'] as const) {
    if (!(Number.isSafeInteger(b[k]) && (b[k] as number) >= 0)) return `${k} must be an integer >= 0, got ${JSON.stringify(b[k])}`;
  }
  if (b.rng !== undefined && !(Number.isInteger(b.rng) && (b.rng as number) >= 0 && (b.rng as number) <= 0xffffffff)) return `rng must be a uint32, got ${JSON.stringify(b.rng)}`;
  if (b.kernel !== undefined && (typeof b.kernel !== 'object' || b.kernel === null)) return 'kernel must be an object';
  if (!Array.isArray(b.removed) || !b.removed.every(isId)) return 'removed must be an array of ids';
  if (!Array.isArray(b.added) || !b.added.every(isId)) return 'added must be an array of ids';
  for (let i = 1; i < b.added.length; i++) if (b.added[i] <= b.added[i - 1]) return `added ids must be strictly increasing (added[${i}] = ${b.added[i]})`;
  if (!Array.isArray(b.upserts)) return 'upserts must be an array';
  const ups = new Set<number>();
  for (let i = 0; i < b.upserts.length; i++) {
    const u = b.upserts[i] as { id?: unknown; value?: unknown; meta?: unknown };
    if (typeof u !== 'object' || u === null || !isId(u.id)) return `upserts[${i}].id must be an id`;
    if (typeof u.value !== 'number' || !finiteFloat32(u.value)) return `upserts[${i}] (id ${u.id}): value ${JSON.stringify(u.value)} is not a finite float32`;
    const p = caseMetaProblem(u.meta);
    if (p) return `upserts[${i}] (id ${u.id}): meta: ${p}`;
    ups.add(u.id as number);
  }
  for (const id of b.added as number[]) if (!ups.has(id)) return `added id ${id} has no upsert (value and meta)`;
  if (rec.keys.length !== b.added.length * dim) return `holds ${rec.keys.length} key floats for ${b.added.length} added cases of dim ${dim}`;
  for (let r = 0; r < b.added.length; r++) {
    const p = keyRowProblem(rec.keys, r, dim);
    if (p) return `key of added id ${(b.added as number[])[r]}: ${p}`;
  }
  return undefined;
}

/**
 * MAC of journal record `index` of generation `gen`: HMAC-SHA-256(key, "memq-journal\0" gen
 * "\0" index "\0" prev "\0" ‖ JSON of the body without its mac ‖ the added keys' bytes), where
 * prev is the MAC of the record before (for record 0: the snapshot's manifest MAC, "" unsigned).
 */
export function journalMac(key: Buffer, gen: number, index: number, prev: string, body: Record<string, unknown>, keys: Float32Array): string {
  const { mac: _m, ...rest } = body;
  return crypto.createHmac('sha256', key).update(`memq-journal\0${gen}\0${index}\0${prev}\0`).update(JSON.stringify(rest)).update(leBytes(keys)).digest('hex');
}

export function sameMac(a: string, b: string): boolean {
  return a.length === b.length && crypto.timingSafeEqual(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** The manifest MAC of a generation's header ("" when unsigned or unreadable: load checks the snapshot itself). */
export function snapshotManifest(dir: string, gen: number): string {
  try {
    const h = JSON.parse(fs.readFileSync(path.join(dir, generationName(gen), 'header.json'), 'utf8'));
    const m = h?.header?.signature?.manifest;
    return typeof m === 'string' ? m : '';
  } catch {
    return '';
  }
}
