/**
 * Append-only journal of memory writes after a snapshot generation (docs/memory-format.md).
 *
 *   file header (16 bytes): "MEMQWAL\0" | u32 version | u32 generation      (little-endian)
 *   record:                 u32 payload length | u32 CRC-32 of those 4 length bytes |
 *                           u32 CRC-32 of payload | payload
 *   payload:                u32 JSON length | JSON (utf-8) | float32 keys of the added cases (LE)
 *
 * Each write batch (an episode) is one record, fsynced when asked, so a crash loses at most the
 * batch in progress. Reading stops at a torn tail (a record cut short by a crash) and reports
 * it; a damaged record followed by more data is corruption, and is refused. The length has its
 * own CRC so a damaged length is told apart from a record cut short.
 */
import * as fs from 'fs';
import * as zlib from 'zlib';
import { f32FromLE, leBytes } from './fsutil';
import { SnapshotError } from './snapshot';

export const JOURNAL_MAGIC = Buffer.from('MEMQWAL\0', 'latin1');
export const JOURNAL_VERSION = 1;
const FILE_HEADER = 16;
const FRAME = 12;

export interface JournalRecord {
  /** JSON part: what changed (removed ids, upserted cases with values and metadata, counters). */
  body: Record<string, unknown>;
  /** Keys of the cases added by this record, in the order of body.added. */
  keys: Float32Array;
}

function fileHeader(generation: number): Buffer {
  const b = Buffer.alloc(FILE_HEADER);
  JOURNAL_MAGIC.copy(b, 0);
  b.writeUInt32LE(JOURNAL_VERSION, 8);
  b.writeUInt32LE(generation, 12);
  return b;
}

export function encodeRecord(rec: JournalRecord): Buffer {
  const json = Buffer.from(JSON.stringify(rec.body), 'utf8');
  const keys = leBytes(rec.keys);
  const payload = Buffer.alloc(4 + json.length + keys.length);
  payload.writeUInt32LE(json.length, 0);
  json.copy(payload, 4);
  keys.copy(payload, 4 + json.length);
  const frame = Buffer.alloc(FRAME);
  frame.writeUInt32LE(payload.length, 0);
  frame.writeUInt32LE(zlib.crc32(frame.subarray(0, 4)), 4);
  frame.writeUInt32LE(zlib.crc32(payload), 8);
  return Buffer.concat([frame, payload]);
}

export class JournalWriter {
  private fd: number;

  private constructor(
    readonly file: string,
    fd: number,
    private readonly sync: boolean,
  ) {
    this.fd = fd;
  }

  /**
   * Open for appending. A new file gets a header; an existing one must belong to `generation`
   * and is first cut back to `validBytes` (dropping a torn tail) when given.
   */
  static open(file: string, generation: number, opts: { fsync?: boolean; validBytes?: number } = {}): JournalWriter {
    const sync = opts.fsync ?? true;
    const exists = fs.existsSync(file);
    const fd = fs.openSync(file, exists ? 'r+' : 'w+');
    try {
      if (!exists || fs.fstatSync(fd).size === 0) {
        fs.writeSync(fd, fileHeader(generation), 0, FILE_HEADER, 0);
        if (sync) fs.fsyncSync(fd);
      } else if (opts.validBytes !== undefined) {
        fs.ftruncateSync(fd, opts.validBytes);
        if (sync) fs.fsyncSync(fd);
      }
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    return new JournalWriter(file, fd, sync);
  }

  /**
   * Append one record (fsynced when asked); returns the offset it starts at, for truncateTo.
   * When the write or the fsync fails, the partial record is cut off again (best effort) before
   * the error is rethrown, so that later records do not follow garbage.
   */
  append(rec: JournalRecord): number {
    const buf = encodeRecord(rec);
    const end = fs.fstatSync(this.fd).size;
    try {
      let off = 0;
      while (off < buf.length) off += fs.writeSync(this.fd, buf, off, buf.length - off, end + off);
      if (this.sync) fs.fsyncSync(this.fd);
    } catch (err) {
      try {
        fs.ftruncateSync(this.fd, end);
      } catch {
        // The reader treats a cut-short last record as a torn tail.
      }
      throw err;
    }
    return end;
  }

  /** Cut the journal back to `offset` (an append's return value): undoes that record and any after it. */
  truncateTo(offset: number): void {
    fs.ftruncateSync(this.fd, offset);
    if (this.sync) fs.fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd >= 0) {
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }
}

export interface JournalReadResult {
  records: JournalRecord[];
  /** Bytes up to the end of the last valid record. */
  validBytes: number;
  /** Bytes of a torn tail that were ignored (0 when the journal ended cleanly). */
  tornBytes: number;
}

/** Read a journal; missing file → no records. */
export function readJournal(file: string, generation: number): JournalReadResult {
  if (!fs.existsSync(file)) return { records: [], validBytes: 0, tornBytes: 0 };
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (err) {
    throw new SnapshotError(`${file} (part 'journal') cannot be read: ${(err as Error).message}`, file, 'journal');
  }
  if (buf.length < FILE_HEADER) {
    // A crash while creating the file: nothing was journalled yet.
    return { records: [], validBytes: 0, tornBytes: buf.length };
  }
  if (!buf.subarray(0, 8).equals(JOURNAL_MAGIC)) throw new SnapshotError(`${file} (part 'journal header') is not a memq journal`, file, 'journal header');
  const version = buf.readUInt32LE(8);
  if (version !== JOURNAL_VERSION) throw new SnapshotError(`${file} (part 'journal header'): journal version ${version}, this memq reads version ${JOURNAL_VERSION}`, file, 'journal header');
  const gen = buf.readUInt32LE(12);
  if (gen !== generation) throw new SnapshotError(`${file} (part 'journal header') belongs to generation ${gen}, expected ${generation}`, file, 'journal header');
  const records: JournalRecord[] = [];
  let off = FILE_HEADER;
  while (off < buf.length) {
    const torn = () => ({ records, validBytes: off, tornBytes: buf.length - off });
    if (buf.length - off < FRAME) return torn();
    const len = buf.readUInt32LE(off);
    const where = `journal record ${records.length}`;
    if (zlib.crc32(buf.subarray(off, off + 4)) !== buf.readUInt32LE(off + 4)) {
      // A frame that never got written (zeros after a crash) is a torn tail; anything else is damage.
      if (buf.subarray(off).every((x) => x === 0)) return torn();
      throw new SnapshotError(`${file} (part '${where}') is corrupted: bad length field at byte ${off}`, file, where);
    }
    const end = off + FRAME + len;
    if (end > buf.length) return torn();
    const payload = buf.subarray(off + FRAME, end);
    if (zlib.crc32(payload) !== buf.readUInt32LE(off + 8)) {
      // The last record, garbled by a crash: a torn tail. Anything after it: corruption.
      if (end === buf.length) return torn();
      throw new SnapshotError(`${file} (part '${where}') is corrupted: CRC-32 mismatch at byte ${off}`, file, where);
    }
    const jlen = payload.readUInt32LE(0);
    if (4 + jlen > payload.length || (payload.length - 4 - jlen) % 4 !== 0) {
      throw new SnapshotError(`${file} (part '${where}') is malformed`, file, where);
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(payload.subarray(4, 4 + jlen).toString('utf8'));
    } catch {
      throw new SnapshotError(`${file} (part '${where}') is malformed: bad JSON`, file, where);
    }
    records.push({ body, keys: f32FromLE(payload.subarray(4 + jlen)) });
    off = end;
  }
  return { records, validBytes: off, tornBytes: 0 };
}
