/**
 * Durable, versioned snapshots of episodic memory (format documented in docs/memory-format.md).
 *
 *   dir/CURRENT               "snap-00000007\n": the live generation (replaced atomically)
 *   dir/snap-00000007/
 *     header.json             {"header": {...}, "crc32": n}; crc32 of JSON.stringify(header)
 *     ids.i32                 count int32, little-endian
 *     keys.f32                count × dim float32, little-endian
 *     values.f32              count float32, little-endian
 *     meta.bin                every case's metadata as columns (./metaColumns), in id order
 *                             (format version 1 had meta.jsonl: one line of JSON per case; still read)
 *   dir/journal-00000007.wal  optional append-only journal of writes after generation 7
 *
 * A save writes a new generation aside (snap-<g>.tmp-<pid>-<n>/), fsyncs every file and the
 * directory, reads it back and verifies it as a load would, renames it to snap-<g>/, fsyncs,
 * then atomically replaces CURRENT (write CURRENT.tmp, fsync, rename, fsync the directory).
 * Only then are older generations removed. At every instant CURRENT names a complete, fsynced,
 * verified generation.
 * A load checks every part's byte length and CRC-32, then every row (ids increasing, keys finite
 * with a squared norm finite in float32, values finite), before building anything. A mapped load
 * (VerifyOptions.mapKeys / mapMeta) leaves the keys' and the metadata's bytes on disk: their
 * lengths and layout are checked, their CRC-32 and rows later (see SnapshotData.keysFile / metaFile).
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { loadNative } from '../native';
import { f32FromLE, f32OwnLE, fsyncDir, i32FromLE, LITTLE, leBytes, writeFileDurable } from './fsutil';
import { COLUMNS, ELEM, MetaColumns, MetaLayoutError } from './metaColumns';
import type { CaseMeta } from './types';
import { caseMetaProblem, keyRowProblem, snapshotRowProblem } from './validate';

export const SNAPSHOT_FORMAT = 'memq-episodic-memory';
/** 2: the metadata part is meta.bin (columns); 1 (read, not written): meta.jsonl. */
export const SNAPSHOT_VERSION = 2;
export const PART_NAMES = ['ids', 'keys', 'values', 'meta'] as const;
export type PartName = (typeof PART_NAMES)[number];
const PART_FILES: Record<PartName, string> = { ids: 'ids.i32', keys: 'keys.f32', values: 'values.f32', meta: 'meta.bin' };
const PART_FILES_V1: Record<PartName, string> = { ...PART_FILES, meta: 'meta.jsonl' };

/** The file of a part in a generation of format `version`. */
export function partFileName(p: PartName, version = SNAPSHOT_VERSION): string {
  return (version === 1 ? PART_FILES_V1 : PART_FILES)[p];
}

export interface PartInfo {
  file: string;
  bytes: number;
  crc32: number;
}

export interface SnapshotHeader {
  format: string;
  version: number;
  generation: number;
  dim: number;
  count: number;
  /** Kernel settings of the index ({ kernel, bandwidth | kappa | delta }). */
  kernel: Record<string, unknown>;
  /** Store options (write policy, merge rule) and counters: plain JSON. */
  options: Record<string, unknown>;
  counters: Record<string, number>;
  endianness: 'little';
  createdAt: string;
  parts: Record<PartName, PartInfo>;
  /** Present when saved with a key: HMAC-SHA-256 of every part and of the manifest (docs/memory-format.md). */
  signature?: SnapshotSignature;
}

export interface SnapshotSignature {
  alg: 'HMAC-SHA-256';
  /** Identifies the key without revealing it: hex of HMAC(key, "memq-key-id"), first 16 digits. */
  keyId: string;
  /** Per part: hex HMAC(key, "memq-snapshot-part\0" name "\0" generation "\0" bytes). */
  parts: Record<PartName, string>;
  /** hex HMAC(key, "memq-snapshot-manifest\0" JSON.stringify(header without signature)). */
  manifest: string;
}

/** Smallest key accepted (bytes). */
export const MIN_KEY_BYTES = 16;

/**
 * The signing key: the given one, else the MEMQ_MEMORY_KEY environment variable, else none.
 * A string is taken as its UTF-8 bytes. TypeError for another type, RangeError when shorter
 * than MIN_KEY_BYTES.
 */
export function resolveKey(key: string | Uint8Array | undefined, where = 'key'): Buffer | undefined {
  let k: string | Uint8Array | undefined = key;
  let name = where;
  if (k === undefined) {
    const env = process.env.MEMQ_MEMORY_KEY;
    if (env === undefined || env === '') return undefined;
    k = env;
    name = 'MEMQ_MEMORY_KEY';
  }
  if (typeof k !== 'string' && !(k instanceof Uint8Array)) throw new TypeError(`${name} must be a string or a Uint8Array, got ${k === null ? 'null' : typeof k}`);
  const buf = typeof k === 'string' ? Buffer.from(k, 'utf8') : Buffer.from(k);
  if (buf.length < MIN_KEY_BYTES) throw new RangeError(`${name} must be at least ${MIN_KEY_BYTES} bytes, got ${buf.length}`);
  return buf;
}

function hmacHex(key: Buffer, ...chunks: (string | Uint8Array)[]): string {
  const h = crypto.createHmac('sha256', key);
  for (const c of chunks) h.update(c);
  return h.digest('hex');
}

export function keyId(key: Buffer): string {
  return hmacHex(key, 'memq-key-id').slice(0, 16);
}

/** The MAC of part p of a generation, before its bytes (update with them, then digest). */
function partHmac(key: Buffer, p: PartName, generation: number): crypto.Hmac {
  return crypto.createHmac('sha256', key).update(`memq-snapshot-part\0${p}\0${generation}\0`);
}

function partMac(key: Buffer, p: PartName, generation: number, bytes: Uint8Array): string {
  return partHmac(key, p, generation).update(bytes).digest('hex');
}

function manifestMac(key: Buffer, header: SnapshotHeader): string {
  const { signature: _s, ...rest } = header;
  return hmacHex(key, 'memq-snapshot-manifest\0', JSON.stringify(rest));
}

function sameHex(a: unknown, b: string): boolean {
  if (typeof a !== 'string' || a.length !== b.length) return false;
  return crypto.timingSafeEqual(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** How a read checks signatures: with a key, an unsigned snapshot or a bad MAC is refused. */
export interface VerifyOptions {
  key?: Buffer;
  /**
   * Leave the keys part on disk for a memory-mapped index (load(dir, { mmap: true })): its length
   * is checked, its CRC-32 and rows are not read (see SnapshotData.keysFile); with a key its MAC
   * is still checked, streaming the file.
   */
  mapKeys?: boolean;
  /**
   * Map the metadata part (format 2) instead of reading it: its length and layout are checked,
   * its CRC-32 and rows are not (see SnapshotData.metaFile); with a key its MAC is checked.
   */
  mapMeta?: boolean;
}

export interface SnapshotData {
  dim: number;
  kernel: Record<string, unknown>;
  options: Record<string, unknown>;
  counters: Record<string, number>;
  ids: Int32Array;
  /** count × dim floats; empty when keyRows gives them. */
  keys: Float32Array;
  /**
   * For a writer, instead of `keys`: rows [row0, row0 + rows) of the keys, asked for in chunks of
   * about 16 MiB, so a memory whose keys are not in RAM (mapped) is saved without holding them.
   */
  keyRows?: (row0: number, rows: number) => Float32Array;
  values: Float32Array;
  /**
   * Every case's metadata, in the order of ids: columns (as read), or CaseMeta objects (a
   * writer's input; checked and made columns by writeSnapshot).
   */
  meta: MetaColumns | readonly unknown[];
  /**
   * Read with mapKeys: the keys were not read (`keys` is empty); they are this file's
   * count × dim little-endian float32, with this CRC-32 (not checked yet: EpisodicMemory.verifyMapped).
   */
  keysFile?: { path: string; bytes: number; crc32: number };
  /**
   * Read with mapMeta: `meta` is columns over this file mapped copy-on-write; its CRC-32 and its
   * rows are not checked yet (a case store checks rows as it reads them; EpisodicMemory.verifyMapped
   * reads the whole file). Absent when signed and checked with a key (the MAC covered the bytes).
   */
  metaFile?: { path: string; bytes: number; crc32: number };
}

export class SnapshotError extends Error {
  constructor(
    message: string,
    readonly file?: string,
    readonly part?: string,
    /** The bad row (case) of a part, when one is to blame. */
    readonly row?: number,
  ) {
    super(message);
    this.name = 'SnapshotError';
  }
}

/** Steps of a save, in order; a test hook may throw at any of them to simulate a crash. */
export type SaveStep =
  | 'mkdir'
  | 'part:ids'
  | 'part:keys'
  | 'part:values'
  | 'part:meta'
  | 'header'
  | 'fsync-temp-dir'
  | 'verify'
  | 'rename-generation'
  | 'write-current-tmp'
  | 'rename-current'
  | 'cleanup';

export interface SaveOptions {
  /** fsync files and directories (default true; false only for tests that do not need it). */
  fsync?: boolean;
  /** Called before each step; throwing aborts the save there (crash injection). */
  beforeStep?: (step: SaveStep) => void;
  /**
   * Extra check of the data as read back from the new generation (before it becomes current);
   * throw to refuse the save. genDir is the temporary directory holding it.
   */
  verify?: (data: SnapshotData, genDir: string) => void;
  /** Sign the snapshot with this key (HMAC-SHA-256); default: MEMQ_MEMORY_KEY when set. */
  key?: string | Uint8Array;
  /** Bytes of keys per chunk when data.keyRows gives them (default 16 MiB; at least one row). */
  keyChunkBytes?: number;
}

const GEN_RE = /^snap-(\d{8})$/;

export function generationName(gen: number): string {
  return `snap-${String(gen).padStart(8, '0')}`;
}

export function journalName(gen: number): string {
  return `journal-${String(gen).padStart(8, '0')}.wal`;
}

function listGenerations(dir: string): number[] {
  if (!fs.existsSync(dir)) return [];
  const gens: number[] = [];
  for (const name of fs.readdirSync(dir)) {
    const m = GEN_RE.exec(name) ?? /^snap-(\d{8})\.tmp-/.exec(name);
    if (m) gens.push(Number(m[1]));
  }
  return gens;
}

/** The generation CURRENT names, or undefined when there is no CURRENT. */
export function currentGeneration(dir: string): number | undefined {
  const file = path.join(dir, 'CURRENT');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new SnapshotError(`cannot read ${file}: ${(err as Error).message}`, file, 'CURRENT');
  }
  const m = /^snap-(\d{8})\n$/.exec(text);
  if (!m) throw new SnapshotError(`${file} is corrupted: expected "snap-<8 digits>\\n", got ${JSON.stringify(text.slice(0, 40))}`, file, 'CURRENT');
  return Number(m[1]);
}

function crcHeader(header: SnapshotHeader): number {
  return zlib.crc32(JSON.stringify(header));
}

/** Write `data` as a new generation in `dir` and make it current. Returns the generation. */
export function writeSnapshot(dir: string, data: SnapshotData, opts: SaveOptions = {}): { generation: number; path: string } {
  const key = resolveKey(opts.key);
  const sync = opts.fsync ?? true;
  if (opts.keyChunkBytes !== undefined && !(Number.isSafeInteger(opts.keyChunkBytes) && opts.keyChunkBytes >= 1)) {
    throw new RangeError(`keyChunkBytes must be an integer >= 1, got ${opts.keyChunkBytes}`);
  }
  const step = (s: SaveStep) => opts.beforeStep?.(s);
  const n = data.ids.length;
  const stream = data.keyRows !== undefined;
  if (stream && data.keys.length !== 0) throw new RangeError('keys must be empty when keyRows gives the keys');
  if (!stream && data.keys.length !== n * data.dim) throw new RangeError(`keys has ${data.keys.length} floats, expected count × dim = ${n * data.dim}`);
  if (data.values.length !== n || data.meta.length !== n) throw new RangeError('values and meta must have one entry per id');
  // Objects are checked as they are made columns (fromObjects); given columns, here.
  let cols: MetaColumns;
  try {
    cols = data.meta instanceof MetaColumns ? data.meta : MetaColumns.fromObjects(data.meta);
  } catch (err) {
    throw new RangeError(`save: ${(err as Error).message}; the snapshot would not load, nothing was written`);
  }
  const badMeta = data.meta instanceof MetaColumns ? cols.problem() : undefined;
  if (badMeta) throw new RangeError(`save: meta row ${badMeta.row}: ${badMeta.message}; the snapshot would not load, nothing was written`);
  // Refuse at once what a load would refuse: no doomed generation is written.
  const bad = snapshotRowProblem(data.ids, data.keys, data.values, data.dim, { skipKeys: stream });
  if (bad) throw new RangeError(`save: ${bad.part} ${bad.message}; the snapshot would not load, nothing was written`);

  step('mkdir');
  fs.mkdirSync(dir, { recursive: true });
  const cur = currentGeneration(dir) ?? 0;
  const gen = Math.max(cur, ...listGenerations(dir)) + 1;
  const finalName = generationName(gen);
  const tmpName = `${finalName}.tmp-${process.pid}-${Date.now()}`;
  const tmp = path.join(dir, tmpName);
  fs.mkdirSync(tmp);

  const bodies: Record<PartName, Uint8Array> = {
    ids: leBytes(data.ids),
    keys: stream ? new Uint8Array(0) : leBytes(data.keys),
    values: leBytes(data.values),
    meta: cols.encode(),
  };
  const parts = {} as Record<PartName, PartInfo>;
  const macs = {} as Record<PartName, string>;
  for (const p of PART_NAMES) {
    step(`part:${p}` as SaveStep);
    const file = path.join(tmp, PART_FILES[p]);
    if (p === 'keys' && stream) {
      const h = key ? partHmac(key, p, gen) : undefined;
      try {
        parts[p] = { file: PART_FILES[p], ...writeKeyRows(file, data, sync, h, chunkRows(data.dim, opts.keyChunkBytes)) };
      } catch (err) {
        if (err instanceof RangeError) fs.rmSync(tmp, { recursive: true, force: true });
        throw err;
      }
      if (h) macs[p] = h.digest('hex');
      continue;
    }
    writeFileDurable(file, bodies[p], sync);
    parts[p] = { file: PART_FILES[p], bytes: bodies[p].length, crc32: zlib.crc32(bodies[p]) };
    if (key) macs[p] = partMac(key, p, gen, bodies[p]);
  }
  const header: SnapshotHeader = {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION,
    generation: gen,
    dim: data.dim,
    count: n,
    kernel: data.kernel,
    options: data.options,
    counters: data.counters,
    endianness: 'little',
    createdAt: new Date().toISOString(),
    parts,
  };
  if (key) {
    header.signature = { alg: 'HMAC-SHA-256', keyId: keyId(key), parts: macs, manifest: manifestMac(key, header) };
  }
  step('header');
  writeFileDurable(path.join(tmp, 'header.json'), JSON.stringify({ header, crc32: crcHeader(header) }) + '\n', sync);
  step('fsync-temp-dir');
  if (sync) fsyncDir(tmp);
  step('verify');
  verifyWritten(dir, tmp, gen, data, opts.verify, key, chunkRows(data.dim, opts.keyChunkBytes));
  step('rename-generation');
  fs.renameSync(tmp, path.join(dir, finalName));
  if (sync) fsyncDir(dir);
  step('write-current-tmp');
  const curTmp = path.join(dir, `CURRENT.tmp-${process.pid}`);
  writeFileDurable(curTmp, `${finalName}\n`, sync);
  step('rename-current');
  fs.renameSync(curTmp, path.join(dir, 'CURRENT'));
  if (sync) fsyncDir(dir);
  step('cleanup');
  removeStale(dir, gen);
  return { generation: gen, path: path.join(dir, finalName) };
}

/** Rows of keys per streamed chunk (about `bytes`, 16 MiB by default). */
function chunkRows(dim: number, bytes = 16 << 20): number {
  return Math.max(1, Math.floor(bytes / (4 * dim)));
}

/**
 * The keys part from data.keyRows, chunk by chunk: every row checked as a load would (a bad one
 * is a RangeError: nothing is made current), the CRC-32 and the MAC (h) computed on the way.
 */
function writeKeyRows(file: string, data: SnapshotData, sync: boolean, h: crypto.Hmac | undefined, per: number): { bytes: number; crc32: number } {
  const { dim, ids } = data;
  const n = ids.length;
  const fd = fs.openSync(file, 'w');
  let crc = 0;
  let bytes = 0;
  try {
    for (let r0 = 0; r0 < n; r0 += per) {
      const rows = Math.min(per, n - r0);
      const chunk = data.keyRows!(r0, rows);
      if (!(chunk instanceof Float32Array) || chunk.length !== rows * dim) {
        throw new RangeError(`save: keyRows(${r0}, ${rows}) must return ${rows * dim} floats (a Float32Array), got ${chunk instanceof Float32Array ? chunk.length : typeof chunk}; nothing was written`);
      }
      for (let r = 0; r < rows; r++) {
        const p = keyRowProblem(chunk, r, dim);
        if (p) throw new RangeError(`save: keys row ${r0 + r} (id ${ids[r0 + r]}): ${p}; the snapshot would not load, nothing was written`);
      }
      const b = leBytes(chunk);
      for (let off = 0; off < b.length; ) off += fs.writeSync(fd, b, off, b.length - off);
      crc = zlib.crc32(b, crc);
      h?.update(b);
      bytes += b.length;
    }
    if (sync) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return { bytes, crc32: crc };
}

/**
 * A keys part as a load checks it (its CRC-32, every row), read in chunks: for a generation
 * whose keys were written from keyRows, which are not held in memory at once.
 */
function checkKeysFile(file: string, keysFile: { bytes: number; crc32: number }, dim: number, ids: Int32Array, per: number): void {
  const buf = new Float32Array(per * dim);
  let crc = 0;
  let r0 = 0;
  const total = readChunks(file, Buffer.from(buf.buffer), (bytes) => {
    crc = zlib.crc32(bytes, crc);
    if (!LITTLE) bytes.swap32();
    const rows = Math.min(Math.floor(bytes.length / (4 * dim)), ids.length - r0);
    for (let r = 0; r < rows; r++) {
      const p = keyRowProblem(buf, r, dim);
      if (p) throw new SnapshotError(`${file} (part 'keys') row ${r0 + r} (id ${ids[r0 + r]}): ${p}`, file, 'keys', r0 + r);
    }
    r0 += rows;
  });
  checkLength(file, 'keys', total, keysFile.bytes);
  checkCrc(file, 'keys', crc, keysFile.crc32);
}

/**
 * Read a file start to end through `buf`: fn gets each chunk (buf filled, the last one may be
 * shorter) as a view of buf. Returns the bytes read.
 */
function readChunks(file: string, buf: Buffer, fn: (chunk: Buffer) => void): number {
  const fd = fs.openSync(file, 'r');
  let total = 0;
  try {
    for (;;) {
      let got = 0;
      while (got < buf.length) {
        const k = fs.readSync(fd, buf, got, buf.length - got, null);
        if (k === 0) break;
        got += k;
      }
      if (got > 0) fn(buf.subarray(0, got));
      total += got;
      if (got < buf.length) return total;
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Read a freshly written generation back from disk and check it as a load would (header, every
 * part's length and CRC-32, every row), plus that it holds what was meant to be written; on any
 * failure the temporary directory is removed and a SnapshotError says that CURRENT was left alone.
 * Keys written from keyRows are checked in chunks (they are not read into memory whole).
 */
function verifyWritten(dir: string, tmp: string, gen: number, data: SnapshotData, extra: SaveOptions['verify'], key: Buffer | undefined, per: number): void {
  try {
    const stream = data.keyRows !== undefined;
    const back = readGeneration(tmp, { key, mapKeys: stream });
    if (stream) checkKeysFile(back.data.keysFile!.path, back.data.keysFile!, data.dim, back.data.ids, per);
    const h = back.header;
    const hfile = path.join(tmp, 'header.json');
    if (h.generation !== gen || h.count !== data.ids.length || h.dim !== data.dim) {
      throw new SnapshotError(`${hfile}: reads back as generation ${h.generation}, ${h.count} × ${h.dim}; wrote generation ${gen}, ${data.ids.length} × ${data.dim}`, hfile, 'header');
    }
    extra?.(back.data, tmp);
  } catch (err) {
    try {
      fs.rmSync(tmp, { recursive: true, force: true });
    } catch {
      // Left for the next save's cleanup.
    }
    const cur = path.join(dir, 'CURRENT');
    const why = err instanceof Error ? err.message : String(err);
    throw new SnapshotError(
      `save: the new generation ${generationName(gen)} failed verification after writing, so ${cur} was left as it was: ${why}`,
      err instanceof SnapshotError ? err.file : tmp,
      err instanceof SnapshotError ? err.part : 'verify',
      err instanceof SnapshotError ? err.row : undefined,
    );
  }
}

/** Remove generations other than `keep`, leftovers of interrupted saves, and old journals. */
export function removeStale(dir: string, keep: number): void {
  for (const name of fs.readdirSync(dir)) {
    const full = path.join(dir, name);
    const gm = GEN_RE.exec(name);
    const jm = /^journal-(\d{8})\.wal$/.exec(name);
    if ((gm && Number(gm[1]) !== keep) || /^snap-\d{8}\.tmp-/.test(name)) {
      fs.rmSync(full, { recursive: true, force: true });
    } else if ((jm && Number(jm[1]) < keep) || /^CURRENT\.tmp-/.test(name)) {
      fs.rmSync(full, { force: true });
    }
  }
}

/** The part's MAC read from its file in chunks (a mapped keys part is never held in memory). */
function partMacOfFile(key: Buffer, p: PartName, generation: number, file: string): string {
  const h = partHmac(key, p, generation);
  readChunks(file, Buffer.allocUnsafe(8 << 20), (chunk) => h.update(chunk));
  return h.digest('hex');
}

/** The part's file, after its header entry is checked (PartInfo with the expected file name). */
function partFile(genDir: string, p: PartName, info: PartInfo | undefined, version: number): string {
  const name = partFileName(p, version);
  if (!info || typeof info.bytes !== 'number' || typeof info.crc32 !== 'number' || info.file !== name) {
    throw new SnapshotError(`${path.join(genDir, 'header.json')}: part '${p}' is missing or malformed in the header`, path.join(genDir, 'header.json'), p);
  }
  return path.join(genDir, name);
}

/** A part's length against its header entry ('truncated' / 'too long'). */
function checkLength(file: string, p: PartName, size: number, bytes: number): void {
  if (size !== bytes) {
    const how = size < bytes ? 'truncated' : 'too long';
    throw new SnapshotError(`${file} (part '${p}') is ${how}: ${size} bytes, the header says ${bytes}`, file, p);
  }
}

/** A part's CRC-32 against its header entry ('corrupted'). */
function checkCrc(file: string, p: PartName, crc: number, want: number): void {
  if (crc !== want) {
    const hex = (x: number) => x.toString(16).padStart(8, '0');
    throw new SnapshotError(`${file} (part '${p}') is corrupted: CRC-32 ${hex(crc)}, the header says ${hex(want)}`, file, p);
  }
}

/** A part left on disk (mapped): its header entry and its file's length, nothing read. */
function checkPartLength(genDir: string, p: PartName, info: PartInfo | undefined, version: number): undefined {
  const file = partFile(genDir, p, info, version);
  let size: number;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw new Error('not a regular file');
    size = st.size;
  } catch (err) {
    throw new SnapshotError(`${file} (part '${p}') cannot be read: ${(err as Error).message}`, file, p);
  }
  checkLength(file, p, size, info!.bytes);
  return undefined;
}

/**
 * The CRC-32 check a mapped load skipped: reads the part's file (keys, meta) in chunks, yielding
 * to the event loop between them, and throws the SnapshotError a load would ('corrupted' /
 * 'truncated').
 */
export async function verifyPartFile(keysFile: { path: string; bytes: number; crc32: number }, part: PartName = 'keys'): Promise<void> {
  const file = keysFile.path;
  const fh = await fs.promises.open(file, 'r');
  let crc = 0;
  let total = 0;
  try {
    const chunk = Buffer.allocUnsafe(8 << 20);
    for (;;) {
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      crc = zlib.crc32(chunk.subarray(0, bytesRead), crc);
      total += bytesRead;
    }
  } finally {
    await fh.close();
  }
  checkLength(file, part, total, keysFile.bytes);
  checkCrc(file, part, crc, keysFile.crc32);
}

function readPart(genDir: string, p: PartName, info: PartInfo | undefined, version: number): Buffer {
  const file = partFile(genDir, p, info, version);
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    throw new SnapshotError(`${file} (part '${p}') cannot be read: ${(err as Error).message}`, file, p);
  }
  checkLength(file, p, buf.length, info!.bytes);
  checkCrc(file, p, zlib.crc32(buf), info!.crc32);
  return buf;
}

/** Read and verify a generation directory; nothing is returned unless every part checks out. */
export function readGeneration(genDir: string, verify: VerifyOptions = {}): { header: SnapshotHeader; data: SnapshotData } {
  const hfile = path.join(genDir, 'header.json');
  let raw: string;
  try {
    raw = fs.readFileSync(hfile, 'utf8');
  } catch (err) {
    throw new SnapshotError(`${hfile} (part 'header') cannot be read: ${(err as Error).message}`, hfile, 'header');
  }
  let parsed: { header: SnapshotHeader; crc32: number };
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new SnapshotError(`${hfile} (part 'header') is corrupted or truncated: not valid JSON (${(err as Error).message})`, hfile, 'header');
  }
  if (!parsed || typeof parsed !== 'object' || !parsed.header || typeof parsed.crc32 !== 'number') {
    throw new SnapshotError(`${hfile} (part 'header') is corrupted: expected {"header": {...}, "crc32": n}`, hfile, 'header');
  }
  // The writer's bytes are canonical: anything else (a cut newline, extra bytes) is damage.
  if (raw !== JSON.stringify(parsed) + '\n') {
    throw new SnapshotError(`${hfile} (part 'header') is corrupted or truncated: not the bytes the writer produced`, hfile, 'header');
  }
  const h = parsed.header;
  if (crcHeader(h) !== parsed.crc32) throw new SnapshotError(`${hfile} (part 'header') is corrupted: CRC-32 mismatch`, hfile, 'header');
  if (h.format !== SNAPSHOT_FORMAT) throw new SnapshotError(`${hfile}: not a memq episodic-memory snapshot (format ${JSON.stringify(h.format)})`, hfile, 'header');
  if (h.version > SNAPSHOT_VERSION) {
    throw new SnapshotError(`${hfile}: format version ${h.version} is newer than this memq reads (${SNAPSHOT_VERSION}); upgrade memq`, hfile, 'header');
  }
  if (!(Number.isInteger(h.dim) && h.dim >= 1 && Number.isInteger(h.count) && h.count >= 0)) {
    throw new SnapshotError(`${hfile}: bad dim/count (${h.dim}, ${h.count})`, hfile, 'header');
  }
  if (!(Number.isInteger(h.version) && h.version >= 1)) throw new SnapshotError(`${hfile}: bad format version ${JSON.stringify(h.version)}`, hfile, 'header');
  const v = h.version;
  const expect: Record<PartName, number | undefined> = { ids: h.count * 4, keys: h.count * h.dim * 4, values: h.count * 4, meta: undefined };
  const mapMeta = verify.mapMeta === true && v >= 2;
  const bufs = {} as Record<PartName, Buffer | undefined>;
  for (const p of PART_NAMES) {
    const info = h.parts?.[p];
    if (info && expect[p] !== undefined && info.bytes !== expect[p]) {
      throw new SnapshotError(`${hfile}: part '${p}' has ${info.bytes} bytes, but count ${h.count} × dim ${h.dim} needs ${expect[p]}`, hfile, p);
    }
    const mapped = (p === 'keys' && verify.mapKeys) || (p === 'meta' && mapMeta);
    bufs[p] = mapped ? checkPartLength(genDir, p, info, v) : readPart(genDir, p, info, v);
  }
  if (verify.key) checkSignature(genDir, h, bufs, verify.key, v);
  const metaFile = path.join(genDir, partFileName('meta', v));
  const ids = i32FromLE(bufs.ids!);
  const meta = bufs.meta ? readMeta(bufs.meta, metaFile, v, ids, h.count) : mapMetaFile(metaFile, h.count);
  // the keys part's buffer is this read's alone: viewed in place (no second copy of the largest part)
  const keys = bufs.keys ? f32OwnLE(bufs.keys) : new Float32Array(0);
  const values = f32FromLE(bufs.values!);
  const bad = snapshotRowProblem(ids, keys, values, h.dim, { skipKeys: !bufs.keys });
  if (bad) {
    const file = path.join(genDir, partFileName(bad.part, v));
    throw new SnapshotError(`${file} (part '${bad.part}') ${bad.message}`, file, bad.part, bad.row);
  }
  const onDisk = (p: PartName) => ({ path: path.join(genDir, partFileName(p, v)), bytes: h.parts[p].bytes, crc32: h.parts[p].crc32 });
  return {
    header: h,
    data: {
      dim: h.dim,
      kernel: h.kernel,
      options: h.options,
      counters: h.counters,
      ids,
      keys,
      values,
      meta,
      ...(bufs.keys ? {} : { keysFile: onDisk('keys') }),
      // a MAC checked with the key covered the mapped bytes, which the writer had checked
      ...(bufs.meta || verify.key ? {} : { metaFile: onDisk('meta') }),
    },
  };
}

/**
 * The metadata part as read: format 2's columns (layout checked here, rows by the memory), or
 * format 1's JSON lines (each checked here, then made columns).
 */
function readMeta(buf: Buffer, file: string, version: number, ids: Int32Array, count: number): MetaColumns {
  if (version >= 2) {
    let cols: MetaColumns;
    try {
      cols = MetaColumns.decode(buf);
    } catch (err) {
      if (!(err instanceof MetaLayoutError)) throw err;
      throw new SnapshotError(`${file} (part 'meta') is malformed: it ${err.message}`, file, 'meta');
    }
    if (cols.count !== count) throw new SnapshotError(`${file} (part 'meta') has ${cols.count} rows, expected ${count}`, file, 'meta');
    return cols;
  }
  const lines = buf.toString('utf8').split('\n');
  if (lines.pop() !== '' || lines.length !== count) {
    throw new SnapshotError(`${file} (part 'meta') has ${lines.length} lines, expected ${count}`, file, 'meta');
  }
  const objs = lines.map((l, i) => {
    let m: unknown;
    try {
      m = JSON.parse(l);
    } catch {
      throw new SnapshotError(`${file} (part 'meta') line ${i + 1} is not valid JSON`, file, 'meta');
    }
    const p = caseMetaProblem(m);
    if (p) throw new SnapshotError(`${file} (part 'meta') line ${i + 1} (id ${ids[i]}): ${p}`, file, 'meta', i);
    return m;
  });
  return MetaColumns.build(count, (i) => objs[i] as CaseMeta); // every line checked above
}

/** Rows of room a mapped metadata part keeps for the cases written after the load. */
function mappedRoom(count: number): number {
  return count + 1024;
}

/**
 * The metadata part (format 2) mapped copy-on-write, each column on its own with room to grow
 * (MetaColumns.capacity); its layout is read and checked, its rows are not. Where a column
 * cannot be mapped (a page size above the 4 KiB alignment), the part is read instead.
 */
function mapMetaFile(file: string, count: number): MetaColumns {
  let size = 0;
  let layout;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      size = fs.fstatSync(fd).size;
      const head = Buffer.alloc(16);
      fs.readSync(fd, head, 0, 16, 0);
      const first = Buffer.alloc(Math.min(size, MetaColumns.headBytes(head)));
      fs.readSync(fd, first, 0, first.length, 0);
      layout = MetaColumns.parseLayout(first, size);
    } finally {
      fs.closeSync(fd);
    }
  } catch (err) {
    if (err instanceof MetaLayoutError) throw new SnapshotError(`${file} (part 'meta') is malformed: it ${err.message}`, file, 'meta');
    throw new SnapshotError(`${file} (part 'meta') cannot be read: ${(err as Error).message}`, file, 'meta');
  }
  if (layout.count !== count) throw new SnapshotError(`${file} (part 'meta') has ${layout.count} rows, expected ${count}`, file, 'meta');
  const room = mappedRoom(count) - count;
  const regions = COLUMNS.map((c) => {
    const { offset, bytes } = layout.columns[c];
    const grows = c !== 'stateBytes' && c !== 'stateEnd';
    return { offset, bytes, capacity: grows ? bytes + room * ELEM[c] : bytes };
  });
  let addon;
  try {
    addon = loadNative();
  } catch (err) {
    throw new RangeError(`load: mmap needs the native addon, which did not load: ${(err as Error).message}`);
  }
  let bufs: ArrayBuffer[];
  try {
    bufs = addon.mapFile(file, regions);
  } catch (err) {
    if (err instanceof RangeError && /page size/.test(err.message)) {
      const buf = fs.readFileSync(file);
      return readMeta(buf, file, 2, new Int32Array(0), count);
    }
    throw new SnapshotError(`${file} (part 'meta') cannot be mapped: ${(err as Error).message}`, file, 'meta');
  }
  const byName = new Map(COLUMNS.map((c, i) => [c, new Uint8Array(bufs[i])]));
  try {
    return MetaColumns.fromLayout(layout, (c) => byName.get(c)!, room);
  } catch (err) {
    if (!(err instanceof MetaLayoutError)) throw err;
    throw new SnapshotError(`${file} (part 'meta') is malformed: it ${err.message}`, file, 'meta');
  }
}

/**
 * Check a generation's signature with `key`: refused (SnapshotError naming the part) when it is
 * unsigned ('signature'), signed with another key ('signature'), when a part's bytes do not
 * match its MAC (that part: 'ids', 'keys', 'values', 'meta'), or when the manifest does not
 * ('header'). Parts are checked before the manifest, so a changed part is named even when its
 * length and CRC-32 in the header were rewritten to match.
 */
function checkSignature(genDir: string, h: SnapshotHeader, bufs: Record<PartName, Buffer | undefined>, key: Buffer, version: number): void {
  const hfile = path.join(genDir, 'header.json');
  const sig = h.signature;
  if (!sig || typeof sig !== 'object') {
    throw new SnapshotError(
      `${hfile} (part 'signature'): the snapshot is unsigned but a key is set; load it as untrusted (load(dir, { untrustedSource: 'import:NAME' }) or EpisodicMemory.import)`,
      hfile,
      'signature',
    );
  }
  if (sig.alg !== 'HMAC-SHA-256') throw new SnapshotError(`${hfile} (part 'signature'): unknown signature algorithm ${JSON.stringify(sig.alg)}`, hfile, 'signature');
  const ours = keyId(key);
  if (sig.keyId !== ours) {
    throw new SnapshotError(`${hfile} (part 'signature'): signed with another key (key id ${JSON.stringify(sig.keyId)}, ours ${ours}); load it as untrusted`, hfile, 'signature');
  }
  for (const p of PART_NAMES) {
    const file = path.join(genDir, partFileName(p, version));
    const b = bufs[p];
    const mac = b ? partMac(key, p, h.generation, b) : partMacOfFile(key, p, h.generation, file);
    if (!sameHex(sig.parts?.[p], mac)) {
      throw new SnapshotError(`${file} (part '${p}'): signature check failed (HMAC-SHA-256 mismatch): the part was changed or does not belong to this generation`, file, p);
    }
  }
  if (!sameHex(sig.manifest, manifestMac(key, h))) {
    throw new SnapshotError(`${hfile} (part 'header'): signature check failed (HMAC-SHA-256 of the manifest mismatch): the header was changed`, hfile, 'header');
  }
}

/** Read the current generation of a snapshot directory (signature checked when verify.key is set). */
export function readSnapshot(dir: string, verify: VerifyOptions = {}): { generation: number; header: SnapshotHeader; data: SnapshotData } {
  const gen = currentGeneration(dir);
  if (gen === undefined) {
    throw new SnapshotError(`${dir} holds no memq snapshot (${path.join(dir, 'CURRENT')} is missing)`, path.join(dir, 'CURRENT'), 'CURRENT');
  }
  const genDir = path.join(dir, generationName(gen));
  if (!fs.existsSync(genDir)) {
    throw new SnapshotError(`${path.join(dir, 'CURRENT')} names ${generationName(gen)}, which does not exist`, path.join(dir, 'CURRENT'), 'CURRENT');
  }
  const { header, data } = readGeneration(genDir, verify);
  if (header.generation !== gen) {
    throw new SnapshotError(`${genDir}/header.json says generation ${header.generation}, CURRENT says ${gen}`, path.join(genDir, 'header.json'), 'header');
  }
  return { generation: gen, header, data };
}
