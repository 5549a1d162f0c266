/**
 * File mutators shared by the reader targets: truncation, byte flips, appended garbage, removed
 * or replaced files, and forgeries that keep the checksums valid ("sealed"): edited JSON fields
 * of a snapshot header, forged binary parts (keys like 3e38, ids out of order, NaN values),
 * forged journal records, and forged safetensors headers and tensor data.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { encodeRecord, readJournal } from '../../lib/memory/journal';
import { MetaColumns } from '../../lib/memory/metaColumns';
import type { FuzzRng } from './rng';
import { lit } from './values';

/**
 * Runs one mutation; a filesystem error of the mutator itself (a part removed by an earlier
 * mutation, a file turned into a directory) skips it: that is the fuzzer's business, not memq's.
 */
export function attempt(what: () => string): string {
  try {
    return what();
  } catch (err) {
    return `(mutation skipped: ${(err as Error).message.split('\n')[0]})`;
  }
}

/** Every regular file under dir (relative paths, sorted). */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const full = path.join(d, name);
      const st = fs.lstatSync(full);
      if (st.isDirectory()) walk(full);
      else if (st.isFile()) out.push(path.relative(dir, full));
    }
  };
  walk(dir);
  return out;
}

export function copyDir(src: string, dst: string): void {
  fs.cpSync(src, dst, { recursive: true });
}

/** Raw damage to one file: truncate, flip bytes, append, empty, delete, replace by a directory. */
export function damageFile(rng: FuzzRng, file: string): string {
  const rel = path.basename(file);
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) return `${rel} is not a file (unchanged)`;
  const buf = fs.readFileSync(file);
  switch (rng.int(7)) {
    case 0: {
      const n = rng.int(Math.max(1, buf.length));
      fs.writeFileSync(file, buf.subarray(0, n));
      return `truncate ${rel} to ${n} of ${buf.length} bytes`;
    }
    case 1:
    case 2: {
      if (!buf.length) return `${rel} is empty (unchanged)`;
      const flips = rng.range(1, 3);
      const at: number[] = [];
      for (let i = 0; i < flips; i++) {
        const k = rng.int(buf.length);
        buf[k] ^= 1 << rng.int(8);
        at.push(k);
      }
      fs.writeFileSync(file, buf);
      return `flip bits of ${rel} at bytes ${at.join(', ')}`;
    }
    case 3: {
      const extra = Buffer.from(rng.pick(['\n', '{}', '\0\0\0\0', 'garbage', '\xff\xfe']), 'latin1');
      fs.writeFileSync(file, Buffer.concat([buf, extra]));
      return `append ${lit(extra.toString('latin1'))} to ${rel}`;
    }
    case 4:
      fs.writeFileSync(file, '');
      return `empty ${rel}`;
    case 5:
      fs.rmSync(file);
      return `delete ${rel}`;
    default:
      fs.rmSync(file);
      fs.mkdirSync(file);
      return `replace ${rel} by a directory`;
  }
}

/** A wild JSON value for a field (the kinds of damage a forged file holds). */
export function wildJson(rng: FuzzRng, like?: unknown): unknown {
  const pool: unknown[] = [-1, 0, 1.5, 1e9, 2 ** 31, 2 ** 53, 1e300, -1e300, '3', '', null, true, [], {}, [1, 2], { a: 1 }];
  if (typeof like === 'number') pool.push(like * 2, -like, like + 0.5, like * 1e6);
  if (typeof like === 'string') pool.push(`${like}x`, like.toUpperCase(), 5);
  return rng.pick(pool);
}

// ---- snapshots -------------------------------------------------------------------------------------

const PART_FILES: Record<string, string> = { ids: 'ids.i32', keys: 'keys.f32', values: 'values.f32', meta: 'meta.bin' };

function genDir(dir: string): string | undefined {
  try {
    const m = /^snap-(\d{8})\n$/.exec(fs.readFileSync(path.join(dir, 'CURRENT'), 'utf8'));
    return m ? path.join(dir, `snap-${m[1]}`) : undefined;
  } catch {
    return undefined;
  }
}

interface Sealed {
  header: Record<string, any>;
  crc32: number;
}

/** header.json's {header, crc32} when it parses to an object header (else undefined: nothing to forge). */
function readHeader(gdir: string): Sealed | undefined {
  try {
    const s = JSON.parse(fs.readFileSync(path.join(gdir, 'header.json'), 'utf8'));
    return s && typeof s === 'object' && s.header && typeof s.header === 'object' && !Array.isArray(s.header) ? s : undefined;
  } catch {
    return undefined;
  }
}

/** Rewrites header.json with the parts' real sizes and CRCs and a valid header CRC. */
function reseal(gdir: string, h: Record<string, any>, fixParts: boolean): void {
  if (fixParts && h.parts && typeof h.parts === 'object') {
    for (const [p, file] of Object.entries(PART_FILES)) {
      try {
        const b = fs.readFileSync(path.join(gdir, file));
        if (h.parts[p] && typeof h.parts[p] === 'object') {
          h.parts[p].bytes = b.length;
          h.parts[p].crc32 = zlib.crc32(b);
        }
      } catch {
        // a removed part stays as the header says
      }
    }
  }
  fs.writeFileSync(path.join(gdir, 'header.json'), JSON.stringify({ header: h, crc32: zlib.crc32(JSON.stringify(h)) }) + '\n');
}

function setPath(obj: Record<string, any>, keys: string[], v: unknown): void {
  let o = obj;
  for (const k of keys.slice(0, -1)) {
    if (o[k] === null || typeof o[k] !== 'object') o[k] = {};
    o = o[k];
  }
  if (v === undefined) delete o[keys[keys.length - 1]];
  else o[keys[keys.length - 1]] = v;
}

const HEADER_FIELDS: [string[], unknown[]][] = [
  [['count'], [0, -1, 1.5, 1e9, 2 ** 31, '3', null]],
  [['dim'], [0, -1, 2 ** 21, 1e9, 1.5, '4', null]],
  [['generation'], [0, 2, -1, 'x']],
  [['version'], [2, 0, -1, '1', null]],
  [['format'], ['other', null, 5]],
  [['endianness'], ['big', null]],
  [['kernel'], [null, 5, {}, { kernel: 'x' }, { kernel: 'gaussian', bandwidth: -1 }, { kernel: 'gaussian', bandwidth: 1e-46 }, { kernel: 'gaussian', bandwidth: 'wide' },
    { kernel: 'cosine', kappa: 1e6 }, { kernel: 'cosine', kappa: 100 }, { kernel: 'inverse', delta: 1e-40 }, { kernel: 'inverse', delta: 0 }]],
  [['options'], [null, 5, {}]],
  [['options', 'policy'], [null, { kind: 'replay', capacity: 0 }, { kind: 'replay', capacity: -1 }, { kind: 'replay', capacity: 1e12 }, { kind: 'x' }, { kind: 'window', size: 1.5 },
    { kind: 'importance', capacity: 2, weightBy: 'x' }, 'unbounded']],
  [['options', 'merge'], [{ epsilon: -1, rate: 0.5 }, { epsilon: 1, rate: 5 }, { epsilon: 'x', rate: 'average' }, 5, { epsilon: 0.5, rate: { power: 0 } }]],
  [['counters'], [null, 5, { seq: 'x', clock: 1e300 }, { seq: -1, clock: -1 }]],
  [['parts', 'keys', 'file'], ['../header.json', 'ids.i32', '/etc/passwd', 5]],
  [['parts', 'ids', 'bytes'], [0, 4, -4, 1e12, 'x']],
  [['parts'], [null, {}, 5]],
];

function forgeHeader(rng: FuzzRng, gdir: string): string {
  const s = readHeader(gdir);
  if (!s?.header) return 'header unreadable (unchanged)';
  const [keys, values] = rng.pick(HEADER_FIELDS);
  const v = rng.chance(0.15) ? undefined : rng.pick(values);
  setPath(s.header, keys, v);
  const fix = keys[0] !== 'parts';
  reseal(gdir, s.header, fix);
  return `sealed header: ${keys.join('.')} = ${v === undefined ? '(deleted)' : lit(v)}`;
}

function forgePart(rng: FuzzRng, gdir: string): string {
  const s = readHeader(gdir);
  if (!s?.header) return 'header unreadable (unchanged)';
  const h = s.header;
  const count = typeof h.count === 'number' ? h.count : 0;
  const dim = typeof h.dim === 'number' ? h.dim : 1;
  const which = rng.pick(['keys', 'ids', 'values', 'meta', 'reshape'] as const);
  let what: string;
  if (which === 'keys' && count > 0) {
    const b = fs.readFileSync(path.join(gdir, 'keys.f32'));
    const a = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
    const v = rng.pick([3e38, -3e38, NaN, Infinity, -Infinity, 1e-45, -0, 1e20]);
    const row = rng.int(count);
    if (Math.abs(v) === 3e38) for (let j = 0; j < dim; j++) a[row * dim + j] = v;
    else a[row * dim + rng.int(dim)] = v;
    fs.writeFileSync(path.join(gdir, 'keys.f32'), b);
    what = `keys row ${row} gets ${v}`;
  } else if (which === 'ids' && count > 0) {
    const b = fs.readFileSync(path.join(gdir, 'ids.i32'));
    const a = new Int32Array(b.buffer, b.byteOffset, b.length / 4);
    const k = rng.int(count);
    const v = rng.pick([-1, 2147483647, a[Math.max(0, k - 1)], -2147483648, a[k] + 1000]);
    a[k] = v;
    fs.writeFileSync(path.join(gdir, 'ids.i32'), b);
    what = `ids[${k}] = ${v}`;
  } else if (which === 'values' && count > 0) {
    const b = fs.readFileSync(path.join(gdir, 'values.f32'));
    const a = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
    const v = rng.pick([NaN, Infinity, -Infinity, 3e38]);
    a[rng.int(count)] = v;
    fs.writeFileSync(path.join(gdir, 'values.f32'), b);
    what = `a value becomes ${v}`;
  } else if (which === 'meta' && count > 0) {
    const file = path.join(gdir, 'meta.bin');
    const b = fs.readFileSync(file);
    const k = rng.int(count);
    let layout;
    try {
      layout = MetaColumns.parseLayout(b, b.length);
    } catch {
      layout = undefined;
    }
    if (layout && rng.chance(0.8)) {
      // one entry of a column: a value the rules refuse (or a near miss they accept)
      const col = rng.pick(['visits', 'weight', 'episode', 'step', 'time', 'seq', 'touched', 'action', 'source', 'stateEnd'] as const);
      const v = col === 'action' || col === 'source'
        ? rng.pick([-1, 1 << 20, layout[col === 'action' ? 'actions' : 'sources'].length])
        : rng.pick([NaN, Infinity, -1, 0, 0.5, 2 ** 53, 1e300, -0]);
      const off = layout.columns[col].offset;
      if (col === 'action' || col === 'source') b.writeInt32LE(v, off + 4 * k);
      else b.writeDoubleLE(v, off + 8 * k);
      what = `meta ${col}[${k}] = ${v}`;
    } else {
      // the layout: a byte of the JSON header or of the magic, or the file cut or extended
      const how = rng.pick(['byte', 'cut', 'extend'] as const);
      if (how === 'byte') b[rng.int(Math.min(b.length, 200))] ^= 1 << rng.int(8);
      what = `meta.bin ${how}`;
      fs.writeFileSync(file, how === 'cut' ? b.subarray(0, rng.int(b.length)) : how === 'extend' ? Buffer.concat([b, Buffer.alloc(1 + rng.int(8))]) : b);
      reseal(gdir, h, true);
      return `sealed part: ${what}`;
    }
    fs.writeFileSync(file, b);
  } else {
    // count and dim forged consistently with the key bytes (dim 2·d, count/2, or the reverse).
    if (count % 2 === 0 && count > 0 && rng.chance(0.5)) {
      h.dim = dim * 2;
      h.count = count / 2;
    } else {
      h.dim = Math.max(1, dim / 2);
      h.count = count * 2;
    }
    what = `count ${h.count}, dim ${h.dim} (key bytes unchanged)`;
  }
  reseal(gdir, h, true);
  return `sealed part: ${what}`;
}

function forgeJournal(rng: FuzzRng, dir: string): string {
  const gdir = genDir(dir);
  const gen = gdir ? Number(path.basename(gdir).slice(5)) : 1;
  const file = path.join(dir, `journal-${String(gen).padStart(8, '0')}.wal`);
  let recs;
  try {
    recs = readJournal(file, gen).records;
  } catch {
    return 'journal unreadable (unchanged)';
  }
  const head = Buffer.alloc(16);
  Buffer.from('MEMQWAL\0', 'latin1').copy(head, 0);
  head.writeUInt32LE(1, 8);
  head.writeUInt32LE(gen, 12);
  let what: string;
  if (!recs.length || rng.chance(0.3)) {
    // a forged record of its own
    const id = rng.pick([0, 1, 5, 1000, -1, 2147483647]);
    const body: Record<string, unknown> = { seq: 1, clock: 1, removed: [], added: [id], upserts: [{ id, value: 1, meta: { action: 'a' } }] };
    const k = rng.int(4);
    if (k === 1) body.upserts = [];
    if (k === 2) body.removed = [rng.pick([0, 99999, -5])];
    if (k === 3) body.kernel = rng.pick([{ kernel: 'x' }, { kernel: 'gaussian', bandwidth: -1 }, null]);
    const keys = new Float32Array(rng.pick([0, 1, 3, 64])).fill(rng.pick([0.5, NaN, 3e38]));
    recs.push({ body, keys });
    what = `appended record ${lit(body)} with ${keys.length} key floats (${keys[0]})`;
  } else {
    const r = rng.pick(recs);
    const b = r.body as Record<string, any>;
    const field = rng.pick(['added', 'removed', 'upserts', 'seq', 'kernel', 'keys'] as const);
    if (field === 'keys') {
      r.keys = r.keys.slice(0, Math.max(0, r.keys.length - 1));
      what = 'a record loses one key float';
    } else {
      b[field] = wildJson(rng, b[field]);
      what = `a record's ${field} = ${lit(b[field])}`;
    }
  }
  fs.writeFileSync(file, Buffer.concat([head, ...recs.map((r) => encodeRecord(r))]));
  return `sealed journal: ${what}`;
}

/** 1–3 mutations of a saved memory directory; returns what was done. */
export function mutateSnapshotDir(rng: FuzzRng, dir: string): string[] {
  const done: string[] = [];
  const n = rng.weighted([[6, 1], [2, 2], [1, 3]] as const);
  for (let i = 0; i < n; i++) {
    const gdir = genDir(dir);
    const kind = rng.weighted([[3, 'damage'], [3, 'header'], [4, 'part'], [2, 'journal'], [1, 'current']] as const);
    if (kind === 'current') {
      const v = rng.pick(['snap-99999999\n', 'garbage', 'snap-00000001', '../snap-00000001\n', '', 'snap-0000000a\n']);
      done.push(attempt(() => {
        fs.writeFileSync(path.join(dir, 'CURRENT'), v);
        return `CURRENT = ${lit(v)}`;
      }));
    } else if (kind === 'header' && gdir) done.push(attempt(() => forgeHeader(rng, gdir)));
    else if (kind === 'part' && gdir) done.push(attempt(() => forgePart(rng, gdir)));
    else if (kind === 'journal') done.push(attempt(() => forgeJournal(rng, dir)));
    else {
      const files = listFiles(dir);
      if (!files.length) break;
      const f = rng.pick(files);
      done.push(attempt(() => damageFile(rng, path.join(dir, f)).replace(path.basename(f), f)));
    }
  }
  return done;
}

// ---- safetensors -------------------------------------------------------------------------------------

interface StFile {
  header: Record<string, any>;
  data: Buffer;
}

export function readSafetensors(file: string): StFile | undefined {
  try {
    const b = fs.readFileSync(file);
    const n = Number(b.readBigUInt64LE(0));
    const header = JSON.parse(b.subarray(8, 8 + n).toString('utf8'));
    if (header === null || typeof header !== 'object' || Array.isArray(header)) return undefined;
    return { header, data: b.subarray(8 + n) };
  } catch {
    return undefined;
  }
}

export function writeSafetensors(file: string, st: StFile, headerText?: string, forgedLen?: bigint): void {
  const text = Buffer.from(headerText ?? JSON.stringify(st.header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(forgedLen ?? BigInt(text.length));
  fs.writeFileSync(file, Buffer.concat([len, text, st.data]));
}

/** One forgery of a safetensors file: header length, JSON, dtype, shape, offsets, or data. */
export function forgeSafetensors(rng: FuzzRng, file: string): string {
  const st = readSafetensors(file);
  const rel = path.basename(file);
  if (!st) return damageFile(rng, file);
  const names = Object.keys(st.header).filter((k) => k !== '__metadata__');
  if (!names.length) return `${rel}: no tensors (unchanged)`;
  const name = rng.pick(names);
  const t = st.header[name] as { dtype: string; shape: number[]; data_offsets: number[] };
  if (!t || typeof t !== 'object' || !Array.isArray(t.shape) || !Array.isArray(t.data_offsets)) return damageFile(rng, file);
  const kind = rng.int(12);
  switch (kind) {
    case 0: {
      const v = rng.pick([0n, 1n, 2n ** 63n, 2n ** 64n - 1n, 100000001n, BigInt(st.data.length) * 2n + 100n]);
      writeSafetensors(file, st, undefined, v);
      return `${rel}: header length field = ${v}`;
    }
    case 1: {
      const text = JSON.stringify(st.header);
      const cut = text.slice(0, rng.int(text.length));
      writeSafetensors(file, st, rng.pick([cut, `${text}junk`, `[${text}]`, text.replace('{', '{"x":1,'), text.replace('{', '{"__metadata__":{"a":5},')]));
      return `${rel}: header JSON forged`;
    }
    case 2:
      t.dtype = rng.pick(['F16', 'BF16', 'F64', 'I32', 'U8', 'F8_E4M3', 'bogus', 5 as unknown as string]);
      break;
    case 3:
      t.shape = rng.pick<unknown[]>([[], [0], [-1], [1e9, 1e9], [2 ** 62], [1.5], ['2'], [...t.shape].reverse(), [...t.shape, 1], [t.shape.reduce((a, b) => a * b, 1)]]) as number[];
      break;
    case 4:
      t.data_offsets = rng.pick([[0, 0], [t.data_offsets[1], t.data_offsets[0]], [t.data_offsets[0], t.data_offsets[1] + 4], [-4, t.data_offsets[1]],
        [0, 2 ** 62], [t.data_offsets[0] + 4, t.data_offsets[1] + 4], [t.data_offsets[0]], [1.5, 2], 'x' as unknown as number[]]);
      break;
    case 5:
      delete st.header[name];
      break;
    case 6:
      st.header[`${name}.extra`] = { ...t };
      break;
    case 7:
      st.header[name] = rng.pick([null, 5, 'x', [], { dtype: 'F32' }, { ...t, extra: 1 }]);
      break;
    case 8: {
      st.data = st.data.subarray(0, rng.int(st.data.length + 1));
      break;
    }
    case 9: {
      // NaN/Inf/huge weights inside a tensor (the file stays well-formed)
      const [b, e] = t.data_offsets;
      if (e > b && t.dtype === 'F32') {
        const v = rng.pick([NaN, Infinity, 3e38, -3e38, 1e-45]);
        st.data.writeFloatLE(v, b + 4 * rng.int((e - b) / 4));
        writeSafetensors(file, st);
        return `${rel}: a weight of ${name} = ${v}`;
      }
      return `${rel}: ${name} not F32 (unchanged)`;
    }
    case 10:
      st.header.__metadata__ = rng.pick([{ format: 5 }, 'x', [], null, { format: 'pt' }]);
      break;
    default:
      return damageFile(rng, file);
  }
  writeSafetensors(file, st);
  return `${rel}: ${name} forged (${kind === 5 ? 'removed' : kind === 6 ? 'duplicated under another name' : lit(st.header[name])})`;
}

/** One forgery of a JSON config file: a field set to a wild value, removed, or the text broken. */
export function forgeJsonFile(rng: FuzzRng, file: string, fields: Record<string, unknown[]>): string {
  const rel = path.basename(file);
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return damageFile(rng, file);
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return damageFile(rng, file);
  const r = rng.next();
  if (r < 0.1) return damageFile(rng, file);
  if (r < 0.15) {
    const v = rng.pick(['[]', 'null', '5', '"x"', '{"a":', '{}', '1e309', '{"a":1e309}', '\ufeff{}']);
    fs.writeFileSync(file, v);
    return `${rel} = ${v}`;
  }
  const keys = Object.keys(fields);
  const k = rng.pick(keys);
  let v: unknown;
  let text: string | undefined;
  if (rng.chance(0.1)) v = undefined;
  else if (rng.chance(0.6)) v = rng.pick(fields[k]);
  else v = wildJson(rng, obj[k]);
  if (v === undefined) delete obj[k];
  else obj[k] = v;
  if (rng.chance(0.05)) text = JSON.stringify(obj).replace(/}$/, `,"${k}":1e309}`);
  fs.writeFileSync(file, text ?? JSON.stringify(obj, null, 2));
  return `${rel}: ${k} = ${text ? '1e309 (duplicate key)' : v === undefined ? '(deleted)' : lit(v)}`;
}
