/**
 * The metadata part of a snapshot (format version 2, docs/memory-format.md): every case's
 * CaseMeta as columns, in one binary file `meta.bin` that a load reads whole or maps.
 *
 *   0      "MEMQMETA"                       8 bytes
 *   8      layout version (1)               uint32 LE
 *   12     L: bytes of the JSON below       uint32 LE
 *   16     JSON { count, stateEncoding, actions, sources, columns: { name: { offset, bytes } } }
 *          zeros up to the first column
 *   ...    the columns, each at a multiple of 4096 bytes (so each can be mapped on its own),
 *          in COLUMNS order, zeros between them; the file ends where the last one ends
 *
 * Columns (little-endian, one entry per case, in the snapshot's id order): visits, weight,
 * episode, step, time, seq, touched (float64); action, source (int32 codes into the JSON's
 * `actions` / `sources` tables); stateEnd (float64: where case i's state ends in stateBytes; it
 * starts where case i − 1's ends, or at 0); stateBytes (the states, concatenated, in
 * `stateEncoding`: 'utf8', or 'utf16le' when some state is not well-formed UTF-16, so a lone
 * surrogate survives the round trip as JSON did).
 *
 * The reader checks the layout (magic, JSON, every column where it must be, exactly sized, the
 * file's length, the tables) before anything is used; rows are checked by rowProblem (every row
 * at an ordinary load; at a mapped load, by the case store when it first reads them).
 */
import { LITTLE } from './fsutil';
import type { CaseMeta } from './types';
import { caseMetaProblem, META_NUMBER_FIELDS, META_NUMBER_RULE, metaNumberOk } from './validate';

export const META_MAGIC = 'MEMQMETA';
export const META_LAYOUT = 1;
/** Columns start at multiples of this (the mapping granularity of 4 KiB-page systems). */
export const META_ALIGN = 4096;

export const F64_COLUMNS = ['visits', 'weight', 'episode', 'step', 'time', 'seq', 'touched'] as const;
export type F64Column = (typeof F64_COLUMNS)[number];
export const COLUMNS = [...F64_COLUMNS, 'action', 'source', 'stateEnd', 'stateBytes'] as const;
export type ColumnName = (typeof COLUMNS)[number];
/** Bytes of one entry of each column. */
export const ELEM: Record<ColumnName, number> = {
  visits: 8, weight: 8, episode: 8, step: 8, time: 8, seq: 8, touched: 8, action: 4, source: 4, stateEnd: 8, stateBytes: 1,
};

export type StateEncoding = 'utf8' | 'utf16le';

/** A problem with the file's layout (the caller names the file). */
export class MetaLayoutError extends Error {}

/** The numeric columns a row check reads (the case store's own arrays, or a MetaColumns'). */
export interface NumericColumns {
  visits: Float64Array;
  weight: Float64Array;
  episode: Float64Array;
  step: Float64Array;
  time: Float64Array;
  seq: Float64Array;
  touched: Float64Array;
  action: Int32Array;
  source: Int32Array;
}

/**
 * First problem of row i's numbers and codes, or undefined: caseMetaProblem's rules (the shared
 * META_NUMBER_RULE, in the same order) on columns, then the codes inside their tables.
 */
export function numericRowProblem(c: NumericColumns, i: number, actions: number, sources: number): string | undefined {
  for (const f of META_NUMBER_FIELDS) if (!metaNumberOk(f, c[f][i])) return `${f} ${META_NUMBER_RULE[f]}, got ${c[f][i]}`;
  const a = c.action[i];
  if (!(a >= 0 && a < actions)) return `action code ${a} is outside the action table (${actions} entries)`;
  const s = c.source[i];
  if (!(s >= 0 && s < sources)) return `source code ${s} is outside the source table (${sources} entries)`;
  return undefined;
}

function alignUp(x: number): number {
  return Math.ceil(x / META_ALIGN) * META_ALIGN;
}

export class MetaColumns implements NumericColumns {
  private stateBuf: Buffer;

  private constructor(
    readonly count: number,
    readonly visits: Float64Array,
    readonly weight: Float64Array,
    readonly episode: Float64Array,
    readonly step: Float64Array,
    readonly time: Float64Array,
    readonly seq: Float64Array,
    readonly touched: Float64Array,
    readonly action: Int32Array,
    readonly source: Int32Array,
    readonly actions: readonly string[],
    readonly sources: readonly string[],
    readonly stateEnd: Float64Array,
    readonly stateBytes: Uint8Array,
    readonly stateEncoding: StateEncoding,
  ) {
    this.stateBuf = Buffer.from(stateBytes.buffer, stateBytes.byteOffset, stateBytes.byteLength);
  }

  get length(): number {
    return this.count;
  }

  /**
   * Rows the numeric columns hold room for (≥ count): a mapped file's columns reserve room to
   * grow into, so a case store adopting them needs no copy on its first writes.
   */
  get capacity(): number {
    let c = Infinity;
    for (const f of F64_COLUMNS) c = Math.min(c, this[f].length);
    return Math.min(c, this.action.length, this.source.length);
  }

  /** Columns from CaseMeta objects; RangeError naming the first bad one (meta[i]: ...). */
  static fromObjects(metas: readonly unknown[]): MetaColumns {
    const n = metas.length;
    for (let i = 0; i < n; i++) {
      const p = caseMetaProblem(metas[i]);
      if (p) throw new RangeError(`meta[${i}]: ${p}`);
    }
    const ms = metas as readonly CaseMeta[];
    return MetaColumns.build(n, (i) => ms[i]);
  }

  /** Columns from a row reader (i → its CaseMeta), for a case store's live rows. */
  static build(n: number, row: (i: number) => CaseMeta): MetaColumns {
    const f = () => new Float64Array(n);
    const cols = { visits: f(), weight: f(), episode: f(), step: f(), time: f(), seq: f(), touched: f(), action: new Int32Array(n), source: new Int32Array(n) };
    const actions = new Map<string, number>();
    const sources = new Map<string, number>();
    const code = (m: Map<string, number>, s: string) => {
      let c = m.get(s);
      if (c === undefined) m.set(s, (c = m.size));
      return c;
    };
    const states: string[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const m = row(i);
      for (const k of F64_COLUMNS) cols[k][i] = m[k];
      cols.action[i] = code(actions, m.action);
      cols.source[i] = code(sources, m.source);
      states[i] = m.state;
    }
    return MetaColumns.fromParts(n, cols, [...actions.keys()], [...sources.keys()], (i) => states[i]);
  }

  /**
   * Columns from numeric columns of n rows (taken as they are), the code tables and the states
   * (encoded here: utf8, or utf16le when one is not well-formed UTF-16).
   */
  static fromParts(n: number, c: NumericColumns, actions: readonly string[], sources: readonly string[], state: (i: number) => string): MetaColumns {
    const states: string[] = new Array(n);
    let wellFormed = true;
    for (let i = 0; i < n; i++) {
      const st = (states[i] = state(i));
      if (wellFormed && !(st as string & { isWellFormed(): boolean }).isWellFormed()) wellFormed = false;
    }
    const enc: StateEncoding = wellFormed ? 'utf8' : 'utf16le';
    const stateEnd = new Float64Array(n);
    let total = 0;
    for (let i = 0; i < n; i++) stateEnd[i] = total += Buffer.byteLength(states[i], enc);
    const bytes = Buffer.allocUnsafe(total);
    let o = 0;
    for (let i = 0; i < n; i++) o += bytes.write(states[i], o, enc);
    return new MetaColumns(n, c.visits, c.weight, c.episode, c.step, c.time, c.seq, c.touched, c.action, c.source, actions, sources, stateEnd, bytes, enc);
  }

  /** Case i's state text. */
  state(i: number): string {
    const start = i > 0 ? this.stateEnd[i - 1] : 0;
    return this.stateBuf.toString(this.stateEncoding, start, this.stateEnd[i]);
  }

  /** Case i's metadata as a fresh object (fields in CaseMeta's order). */
  at(i: number): CaseMeta {
    return {
      state: this.state(i),
      action: this.actions[this.action[i]],
      visits: this.visits[i],
      weight: this.weight[i],
      episode: this.episode[i],
      step: this.step[i],
      source: this.sources[this.source[i]],
      time: this.time[i],
      seq: this.seq[i],
      touched: this.touched[i],
    };
  }

  toObjects(): CaseMeta[] {
    return Array.from({ length: this.count }, (_, i) => this.at(i));
  }

  /** Row i's state bounds: where it ends must not precede where it starts, nor pass the bytes. */
  stateProblem(i: number): string | undefined {
    const start = i > 0 ? this.stateEnd[i - 1] : 0;
    const end = this.stateEnd[i];
    if (!(Number.isInteger(end) && end >= start && end <= this.stateBytes.length)) {
      return `state ends at byte ${end}, expected an integer from ${start} to ${this.stateBytes.length}`;
    }
    if (this.stateEncoding === 'utf16le' && (end - start) % 2 !== 0) return `state has an odd number of bytes (${end - start}) in utf16le`;
    return undefined;
  }

  /** First problem of row i (numbers, codes, state bounds), or undefined. */
  rowProblem(i: number): string | undefined {
    return numericRowProblem(this, i, this.actions.length, this.sources.length) ?? this.stateProblem(i);
  }

  /** First bad row in [from, to), or undefined. */
  problem(from = 0, to = this.count): { row: number; message: string } | undefined {
    for (let i = from; i < to; i++) {
      const p = this.rowProblem(i);
      if (p) return { row: i, message: p };
    }
    return undefined;
  }

  /**
   * The same rows with numeric columns of their own (capacity = count), for a case store that
   * must not write into these (they are the caller's); the states, never written, are shared.
   */
  copyNumeric(): MetaColumns {
    const n = this.count;
    const f = (a: Float64Array) => a.slice(0, n);
    return new MetaColumns(n, f(this.visits), f(this.weight), f(this.episode), f(this.step), f(this.time), f(this.seq), f(this.touched),
      this.action.slice(0, n), this.source.slice(0, n), this.actions, this.sources, this.stateEnd, this.stateBytes, this.stateEncoding);
  }

  /** The same rows with every source replaced by `name` (an untrusted load's rewrite). */
  withSource(name: string): MetaColumns {
    const source = new Int32Array(this.source.length);  // zeros: code 0 of [name]
    return new MetaColumns(this.count, this.visits, this.weight, this.episode, this.step, this.time, this.seq, this.touched,
      this.action, source, this.actions, [name], this.stateEnd, this.stateBytes, this.stateEncoding);
  }

  /** The layout of the file: its JSON header and each column's offset and length. */
  private layout(): { head: Buffer; offsets: Record<ColumnName, number>; total: number } {
    const sizes: Record<ColumnName, number> = {} as Record<ColumnName, number>;
    for (const c of COLUMNS) sizes[c] = c === 'stateBytes' ? this.stateBytes.length : this.count * ELEM[c];
    // The JSON names the offsets, which depend on the JSON's length: grow a guess until it fits.
    let first = META_ALIGN;
    for (;;) {
      const offsets = {} as Record<ColumnName, number>;
      let at = first;
      for (const c of COLUMNS) {
        offsets[c] = at;
        at = alignUp(at + sizes[c]);
      }
      const columns: Record<string, { offset: number; bytes: number }> = {};
      for (const c of COLUMNS) columns[c] = { offset: offsets[c], bytes: sizes[c] };
      const json = JSON.stringify({ count: this.count, stateEncoding: this.stateEncoding, actions: this.actions, sources: this.sources, columns });
      const head = Buffer.alloc(16 + Buffer.byteLength(json));
      head.write(META_MAGIC, 0, 'latin1');
      head.writeUInt32LE(META_LAYOUT, 8);
      head.writeUInt32LE(head.length - 16, 12);
      head.write(json, 16, 'utf8');
      if (head.length <= first) {
        const last = COLUMNS[COLUMNS.length - 1];
        return { head, offsets, total: offsets[last] + sizes[last] };
      }
      first = alignUp(head.length);
    }
  }

  /** The file's bytes. */
  encode(): Buffer {
    const { head, offsets, total } = this.layout();
    const out = Buffer.alloc(total);
    head.copy(out, 0);
    for (const c of COLUMNS) {
      const a = this.column(c);
      const bytes = Buffer.from(a.buffer, a.byteOffset, c === 'stateBytes' ? a.byteLength : this.count * ELEM[c]);
      bytes.copy(out, offsets[c]);
      if (!LITTLE && ELEM[c] > 1) {
        const view = out.subarray(offsets[c], offsets[c] + bytes.length);
        if (ELEM[c] === 8) view.swap64();
        else view.swap32();
      }
    }
    return out;
  }

  private column(c: ColumnName): Float64Array | Int32Array | Uint8Array {
    return c === 'stateBytes' ? this.stateBytes : this[c];
  }

  /**
   * From the file's first 16 bytes: how many bytes its head takes (the 16, then the JSON), for a
   * reader that reads only the head (parseLayout's input). MetaLayoutError without the magic.
   */
  static headBytes(first: Uint8Array): number {
    const b = Buffer.from(first.buffer, first.byteOffset, first.byteLength);
    if (b.length < 16 || b.toString('latin1', 0, 8) !== META_MAGIC) throw new MetaLayoutError(`does not start with ${META_MAGIC}`);
    return 16 + b.readUInt32LE(12);
  }

  /**
   * Read the file's layout from its first bytes (the magic, the JSON, where every column lies):
   * MetaLayoutError when anything is not as the writer leaves it. `size`: the file's length.
   */
  static parseLayout(first: Uint8Array, size: number): MetaLayout {
    const b = Buffer.from(first.buffer, first.byteOffset, first.byteLength);
    const len = MetaColumns.headBytes(b) - 16;
    const ver = b.readUInt32LE(8);
    if (ver !== META_LAYOUT) throw new MetaLayoutError(`has layout version ${ver}, this memq reads ${META_LAYOUT}`);
    if (16 + len > b.length) throw new MetaLayoutError(`its JSON header (${len} bytes) runs past ${b.length} bytes`);
    let j: { count?: unknown; stateEncoding?: unknown; actions?: unknown; sources?: unknown; columns?: Record<string, { offset?: unknown; bytes?: unknown }> };
    try {
      j = JSON.parse(b.toString('utf8', 16, 16 + len));
    } catch {
      throw new MetaLayoutError('its JSON header is not valid JSON');
    }
    if (typeof j !== 'object' || j === null) throw new MetaLayoutError('its JSON header is not an object');
    const count = j.count;
    if (!(Number.isSafeInteger(count) && (count as number) >= 0)) throw new MetaLayoutError(`count must be an integer >= 0, got ${JSON.stringify(count)}`);
    const n = count as number;
    if (j.stateEncoding !== 'utf8' && j.stateEncoding !== 'utf16le') throw new MetaLayoutError(`stateEncoding must be 'utf8' or 'utf16le', got ${JSON.stringify(j.stateEncoding)}`);
    const table = (name: 'actions' | 'sources'): string[] => {
      const t = j[name];
      if (!Array.isArray(t) || !t.every((s) => typeof s === 'string')) throw new MetaLayoutError(`${name} must be an array of strings`);
      if (new Set(t).size !== t.length) throw new MetaLayoutError(`${name} repeats an entry`);
      return t as string[];
    };
    const actions = table('actions');
    const sources = table('sources');
    const cols = j.columns;
    if (typeof cols !== 'object' || cols === null) throw new MetaLayoutError('columns must be an object');
    const where = {} as Record<ColumnName, { offset: number; bytes: number }>;
    let at = 16 + len;
    for (const c of COLUMNS) {
      const e = cols[c];
      const off = e?.offset, bytes = e?.bytes;
      if (!(Number.isSafeInteger(off) && Number.isSafeInteger(bytes) && (bytes as number) >= 0)) throw new MetaLayoutError(`column ${c} is missing or malformed`);
      if ((off as number) % META_ALIGN !== 0 || (off as number) < at) throw new MetaLayoutError(`column ${c} starts at ${off}, expected a multiple of ${META_ALIGN} from ${at}`);
      if (c !== 'stateBytes' && bytes !== n * ELEM[c]) throw new MetaLayoutError(`column ${c} has ${bytes} bytes, count ${n} needs ${n * ELEM[c]}`);
      where[c] = { offset: off as number, bytes: bytes as number };
      at = (off as number) + (bytes as number);
    }
    if (at !== size) throw new MetaLayoutError(`is ${size} bytes, its columns end at ${at}`);
    if (Object.keys(cols).length !== COLUMNS.length) throw new MetaLayoutError(`columns must be exactly ${COLUMNS.join(', ')}`);
    return { count: n, stateEncoding: j.stateEncoding, actions, sources, columns: where };
  }

  /**
   * Columns over the file's bytes (read whole): views where aligned, copies otherwise; the last
   * state must end at the end of stateBytes. Rows are not checked (rowProblem / problem).
   */
  static decode(file: Uint8Array): MetaColumns {
    const layout = MetaColumns.parseLayout(file, file.length);
    const slice = (c: ColumnName) => file.subarray(layout.columns[c].offset, layout.columns[c].offset + layout.columns[c].bytes);
    return MetaColumns.fromLayout(layout, (c) => slice(c), 0);
  }

  /**
   * Columns over a layout, each from `bytesOf(column)` (a Uint8Array over the column's bytes,
   * then, for the numeric columns, `extraRows` rows of room when it is from a mapping).
   */
  static fromLayout(layout: MetaLayout, bytesOf: (c: ColumnName) => Uint8Array, extraRows: number): MetaColumns {
    const n = layout.count;
    const typed = <T extends Float64Array | Int32Array>(c: ColumnName, Ctor: { new (b: ArrayBufferLike, o: number, l: number): T; BYTES_PER_ELEMENT: number }): T => {
      const b = bytesOf(c);
      const rows = c === 'stateEnd' ? n : n + extraRows;
      if (b.byteOffset % Ctor.BYTES_PER_ELEMENT === 0 && LITTLE && b.buffer.byteLength - b.byteOffset >= rows * Ctor.BYTES_PER_ELEMENT) {
        return new Ctor(b.buffer, b.byteOffset, rows);
      }
      const copy = Buffer.alloc(rows * Ctor.BYTES_PER_ELEMENT);
      copy.set(b.subarray(0, n * Ctor.BYTES_PER_ELEMENT));
      if (!LITTLE) {
        if (Ctor.BYTES_PER_ELEMENT === 8) copy.swap64();
        else copy.swap32();
      }
      return new Ctor(copy.buffer, copy.byteOffset, rows);
    };
    const f = (c: F64Column | 'stateEnd') => typed(c, Float64Array);
    const stateEnd = f('stateEnd');
    const stateBytes = bytesOf('stateBytes').subarray(0, layout.columns.stateBytes.bytes);
    if ((n > 0 ? stateEnd[n - 1] : 0) !== stateBytes.length) {
      throw new MetaLayoutError(`its states end at byte ${n > 0 ? stateEnd[n - 1] : 0}, stateBytes holds ${stateBytes.length}`);
    }
    return new MetaColumns(n, f('visits'), f('weight'), f('episode'), f('step'), f('time'), f('seq'), f('touched'),
      typed('action', Int32Array), typed('source', Int32Array), layout.actions, layout.sources, stateEnd, stateBytes, layout.stateEncoding);
  }
}

export interface MetaLayout {
  count: number;
  stateEncoding: StateEncoding;
  actions: string[];
  sources: string[];
  columns: Record<ColumnName, { offset: number; bytes: number }>;
}
