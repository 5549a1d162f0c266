/**
 * GGUF files (the llama.cpp / ggml model format), read and written from TypeScript.
 *
 * Layout (GGUF v3, little-endian; v2 is the same layout and is read too):
 *   u32 magic "GGUF" | u32 version | u64 tensor_count | u64 metadata_kv_count
 *   metadata_kv_count × { string key | u32 value_type | value }
 *   tensor_count × { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to general.alignment (default 32) | tensor data (each offset relative to here, aligned)
 * string = u64 byte length + UTF-8 bytes; array = u32 item type + u64 count + items.
 * ne[0] is the fastest-varying dimension: a PyTorch [out, in] weight is ne = [in, out].
 *
 * The reader trusts nothing: every count and length is checked against the bytes left in the file
 * before anything is allocated, so a forged count fails with an Error naming the field instead of
 * a huge allocation; tensor shapes, types, offsets, alignment and data extents are checked too.
 */
import * as fs from 'fs';
import { f16BitsToF32, f32ToF16Bits } from './safetensorsRaw';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml's GGML_MAX_DIMS. */
export const GGUF_MAX_DIMS = 4;
/** Longest string the reader accepts (a tokenizer.json copy fits: Qwen's is ~11 MB). */
export const GGUF_MAX_STRING = 256 * 1024 * 1024;
/** Deepest array nesting the reader accepts. */
const MAX_ARRAY_DEPTH = 4;

export enum GgufType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}
const SCALAR_SIZE: Partial<Record<GgufType, number>> = {
  [GgufType.UINT8]: 1, [GgufType.INT8]: 1, [GgufType.UINT16]: 2, [GgufType.INT16]: 2, [GgufType.UINT32]: 4,
  [GgufType.INT32]: 4, [GgufType.FLOAT32]: 4, [GgufType.BOOL]: 1, [GgufType.UINT64]: 8, [GgufType.INT64]: 8,
  [GgufType.FLOAT64]: 8,
};

/** ggml tensor types: [name, elements per block, bytes per block]. */
export const GGML_TYPES: Record<number, [string, number, number]> = {
  0: ['F32', 1, 4], 1: ['F16', 1, 2], 2: ['Q4_0', 32, 18], 3: ['Q4_1', 32, 20], 6: ['Q5_0', 32, 22], 7: ['Q5_1', 32, 24],
  8: ['Q8_0', 32, 34], 9: ['Q8_1', 32, 36], 10: ['Q2_K', 256, 84], 11: ['Q3_K', 256, 110], 12: ['Q4_K', 256, 144],
  13: ['Q5_K', 256, 176], 14: ['Q6_K', 256, 210], 15: ['Q8_K', 256, 292], 16: ['IQ2_XXS', 256, 66], 17: ['IQ2_XS', 256, 74],
  18: ['IQ3_XXS', 256, 98], 19: ['IQ1_S', 256, 50], 20: ['IQ4_NL', 32, 18], 21: ['IQ3_S', 256, 110], 22: ['IQ2_S', 256, 82],
  23: ['IQ4_XS', 256, 136], 24: ['I8', 1, 1], 25: ['I16', 1, 2], 26: ['I32', 1, 4], 27: ['I64', 1, 8], 28: ['F64', 1, 8],
  29: ['IQ1_M', 256, 56], 30: ['BF16', 1, 2], 34: ['TQ1_0', 256, 54], 35: ['TQ2_0', 256, 66], 39: ['MXFP4', 32, 17],
};
export enum GgmlType { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 }

export function ggmlTypeName(t: number): string {
  return GGML_TYPES[t]?.[0] ?? `unknown(${t})`;
}

/** Bytes of a tensor of `n` elements whose rows have ne0 elements (ne0 must be a whole number of blocks). */
export function ggmlNbytes(type: number, ne: readonly number[]): number {
  const info = GGML_TYPES[type];
  if (!info) throw new RangeError(`unknown ggml type ${type}`);
  const [, block, bytes] = info;
  if (ne[0] % block !== 0) throw new RangeError(`${info[0]}: ne[0] = ${ne[0]} is not a multiple of the block size ${block}`);
  let rows = 1;
  for (let i = 1; i < ne.length; i++) rows *= ne[i];
  return (ne[0] / block) * bytes * rows;
}

export type GgufScalar = number | bigint | boolean | string;
/** A metadata value with its GGUF type (arrays carry their item type). */
/** An array item: a scalar, or a nested array's items. */
export type GgufItem = GgufScalar | GgufItem[];
export type GgufValue =
  | { type: Exclude<GgufType, GgufType.ARRAY>; value: GgufScalar }
  | { type: GgufType.ARRAY; itemType: GgufType; value: GgufItem[] };

export interface GgufTensorInfo {
  name: string;
  /** ggml order: ne[0] fastest. */
  ne: number[];
  type: number;
  /** Offset from the start of the data section. */
  offset: number;
  nbytes: number;
}

export interface GgufFile {
  file: string;
  version: number;
  alignment: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  /** Absolute file offset of the data section. */
  dataOffset: number;
  fileSize: number;
}

// ---------------------------------------------------------------------------------------------
// reading

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A bounds-checked cursor over a file, read through a window so headers of any size stream in. */
class Cursor {
  pos = 0;
  private buf = Buffer.alloc(0);
  private bufAt = 0;
  constructor(private readonly fd: number, readonly size: number, private readonly file: string) {}

  get left(): number {
    return this.size - this.pos;
  }

  fail(field: string, why: string): never {
    throw new Error(`${this.file}: GGUF ${field}: ${why} (at byte ${this.pos})`);
  }

  /** `n` bytes at the cursor (n checked against the file first). */
  take(n: number, field: string): Buffer {
    if (n > this.left) this.fail(field, `needs ${n} bytes but only ${this.left} are left in the file`);
    if (this.pos < this.bufAt || this.pos + n > this.bufAt + this.buf.length) {
      const want = Math.min(Math.max(n, 1 << 20), this.left);
      const b = Buffer.alloc(want);
      let got = 0;
      while (got < want) {
        const r = fs.readSync(this.fd, b, got, want - got, this.pos + got);
        if (r <= 0) this.fail(field, 'unexpected end of file');
        got += r;
      }
      this.buf = b;
      this.bufAt = this.pos;
    }
    const at = this.pos - this.bufAt;
    this.pos += n;
    return this.buf.subarray(at, at + n);
  }

  u32(field: string): number {
    return this.take(4, field).readUInt32LE(0);
  }

  /** A u64 that must fit in a safe integer. */
  u64(field: string): number {
    const v = this.take(8, field).readBigUInt64LE(0);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(field, `value ${v} is too large`);
    return Number(v);
  }

  string(field: string): string {
    const n = this.u64(`${field} length`);
    if (n > GGUF_MAX_STRING) this.fail(`${field} length`, `${n} exceeds the limit of ${GGUF_MAX_STRING} bytes`);
    if (n > this.left) this.fail(`${field} length`, `${n} exceeds the ${this.left} bytes left in the file`);
    const b = this.take(n, field);
    try {
      return UTF8.decode(b);
    } catch {
      this.fail(field, 'is not valid UTF-8');
    }
  }
}

function readValue(c: Cursor, type: number, field: string, depth: number): GgufItem {
  switch (type) {
    case GgufType.UINT8: return c.take(1, field).readUInt8(0);
    case GgufType.INT8: return c.take(1, field).readInt8(0);
    case GgufType.UINT16: return c.take(2, field).readUInt16LE(0);
    case GgufType.INT16: return c.take(2, field).readInt16LE(0);
    case GgufType.UINT32: return c.take(4, field).readUInt32LE(0);
    case GgufType.INT32: return c.take(4, field).readInt32LE(0);
    case GgufType.FLOAT32: return c.take(4, field).readFloatLE(0);
    case GgufType.FLOAT64: return c.take(8, field).readDoubleLE(0);
    case GgufType.UINT64: return c.take(8, field).readBigUInt64LE(0);
    case GgufType.INT64: return c.take(8, field).readBigInt64LE(0);
    case GgufType.BOOL: {
      const b = c.take(1, field).readUInt8(0);
      if (b > 1) c.fail(field, `bool must be 0 or 1, got ${b}`);
      return b === 1;
    }
    case GgufType.STRING: return c.string(field);
    default: c.fail(field, `unknown value type ${type}`);
  }
}

function readTypedValue(c: Cursor, type: number, field: string, depth: number): GgufValue {
  if (type !== GgufType.ARRAY) {
    if (!(type in GgufType) || type > GgufType.FLOAT64) c.fail(`${field} type`, `unknown value type ${type} (0-12)`);
    return { type, value: readValue(c, type, field, depth) } as GgufValue;
  }
  if (depth >= MAX_ARRAY_DEPTH) c.fail(field, `arrays nested deeper than ${MAX_ARRAY_DEPTH}`);
  const itemType = c.u32(`${field} item type`);
  if (itemType > GgufType.FLOAT64) c.fail(`${field} item type`, `unknown value type ${itemType} (0-12)`);
  const n = c.u64(`${field} count`);
  // every item takes at least this many bytes: a forged count fails here, before any allocation
  const minItem = SCALAR_SIZE[itemType as GgufType] ?? (itemType === GgufType.ARRAY ? 12 : 8);
  if (n * minItem > c.left) c.fail(`${field} count`, `${n} items of at least ${minItem} bytes exceed the ${c.left} bytes left in the file`);
  const items: GgufItem[] = new Array(n);
  for (let i = 0; i < n; i++) {
    if (itemType === GgufType.ARRAY) {
      items[i] = readTypedValue(c, GgufType.ARRAY, `${field}[${i}]`, depth + 1).value as GgufItem;
    } else items[i] = readValue(c, itemType, `${field}[${i}]`, depth + 1);
  }
  return { type: GgufType.ARRAY, itemType, value: items };
}

/** Reads and validates the header, metadata and tensor table of a GGUF file (not the tensor data). */
export function readGguf(file: string): GgufFile {
  if (typeof file !== 'string') throw new TypeError('file must be a path string');
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new Error(`${file}: cannot open (${(e as Error).message})`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    const c = new Cursor(fd, size, file);
    const magic = c.u32('magic');
    if (magic !== GGUF_MAGIC) c.fail('magic', `expected "GGUF", got 0x${magic.toString(16).padStart(8, '0')}`);
    const version = c.u32('version');
    if (version !== 2 && version !== 3) c.fail('version', `${version} is not supported (2 or 3)`);
    const nTensors = c.u64('tensor_count');
    const nKv = c.u64('metadata_kv_count');
    // the smallest kv is a 0-length key + type + 1-byte value (13 bytes); the smallest tensor info 24 bytes
    if (nKv * 13 > c.left) c.fail('metadata_kv_count', `${nKv} entries cannot fit in the ${c.left} bytes left`);
    if (nTensors * 24 > c.left) c.fail('tensor_count', `${nTensors} tensors cannot fit in the ${c.left} bytes left`);
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < nKv; i++) {
      const key = c.string(`metadata[${i}].key`);
      if (metadata.has(key)) c.fail(`metadata key '${key}'`, 'appears twice');
      const type = c.u32(`metadata '${key}' type`);
      metadata.set(key, readTypedValue(c, type, `metadata '${key}'`, 0));
    }
    let alignment = GGUF_DEFAULT_ALIGNMENT;
    const al = metadata.get('general.alignment');
    if (al) {
      if (al.type !== GgufType.UINT32) c.fail('general.alignment', 'must be a u32');
      alignment = al.value as number;
      if (alignment === 0 || (alignment & (alignment - 1)) !== 0) c.fail('general.alignment', `${alignment} is not a power of two`);
    }
    const tensors: GgufTensorInfo[] = [];
    const names = new Set<string>();
    for (let i = 0; i < nTensors; i++) {
      const name = c.string(`tensor[${i}].name`);
      const f = `tensor '${name}'`;
      if (names.has(name)) c.fail(f, 'name appears twice');
      names.add(name);
      const nDims = c.u32(`${f} n_dims`);
      if (nDims < 1 || nDims > GGUF_MAX_DIMS) c.fail(`${f} n_dims`, `${nDims} is not in 1..${GGUF_MAX_DIMS}`);
      const ne: number[] = [];
      let numel = 1;
      for (let d = 0; d < nDims; d++) {
        const n = c.u64(`${f} ne[${d}]`);
        if (n < 1) c.fail(`${f} ne[${d}]`, 'must be >= 1');
        numel *= n;
        if (numel > Number.MAX_SAFE_INTEGER) c.fail(`${f} shape`, 'element count overflows');
        ne.push(n);
      }
      const type = c.u32(`${f} type`);
      if (!GGML_TYPES[type]) c.fail(`${f} type`, `unknown ggml type ${type}`);
      const [tn, block] = GGML_TYPES[type];
      if (ne[0] % block !== 0) c.fail(`${f} ne[0]`, `${ne[0]} is not a multiple of the ${tn} block size ${block}`);
      const offset = c.u64(`${f} offset`);
      if (offset % alignment !== 0) c.fail(`${f} offset`, `${offset} is not a multiple of general.alignment ${alignment}`);
      tensors.push({ name, ne, type, offset, nbytes: ggmlNbytes(type, ne) });
    }
    const dataOffset = Math.ceil(c.pos / alignment) * alignment;
    if (dataOffset > size && nTensors > 0) c.fail('data section', `starts at ${dataOffset}, past the end of the file (${size} bytes)`);
    const dataLen = size - dataOffset;
    const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
    let end = 0;
    for (const t of sorted) {
      if (t.offset < end) c.fail(`tensor '${t.name}' offset`, `${t.offset} overlaps the previous tensor (which ends at ${end})`);
      if (t.offset + t.nbytes > dataLen) {
        c.fail(`tensor '${t.name}' data`, `[${t.offset}, ${t.offset + t.nbytes}) lies outside the ${dataLen}-byte data section`);
      }
      end = t.offset + t.nbytes;
    }
    return { file, version, alignment, metadata, tensors, dataOffset, fileSize: size };
  } finally {
    fs.closeSync(fd);
  }
}

/** The bytes of one tensor (read from disk). */
export function readGgufTensorData(g: GgufFile, t: GgufTensorInfo): Uint8Array {
  const fd = fs.openSync(g.file, 'r');
  try {
    if (fs.fstatSync(fd).size !== g.fileSize) throw new Error(`${g.file}: changed size since its header was read`);
    const b = Buffer.alloc(t.nbytes);
    let got = 0;
    while (got < t.nbytes) {
      const r = fs.readSync(fd, b, got, t.nbytes - got, g.dataOffset + t.offset + got);
      if (r <= 0) throw new Error(`${g.file}: tensor '${t.name}': unexpected end of file`);
      got += r;
    }
    return new Uint8Array(b.buffer, b.byteOffset, b.length);
  } finally {
    fs.closeSync(fd);
  }
}

// typed metadata getters that name the key when it is missing or has the wrong type
function kvErr(g: GgufFile, key: string, want: string): Error {
  const v = g.metadata.get(key);
  return new Error(`${g.file}: GGUF metadata '${key}' ${v ? `must be ${want}, got type ${GgufType[v.type] ?? v.type}` : `is missing (${want})`}`);
}
const INT_TYPES = new Set([GgufType.UINT8, GgufType.INT8, GgufType.UINT16, GgufType.INT16, GgufType.UINT32, GgufType.INT32, GgufType.UINT64, GgufType.INT64]);

export function ggufInt(g: GgufFile, key: string, dflt?: number): number {
  const v = g.metadata.get(key);
  if (!v) {
    if (dflt !== undefined) return dflt;
    throw kvErr(g, key, 'an integer');
  }
  if (!INT_TYPES.has(v.type)) throw kvErr(g, key, 'an integer');
  const n = Number(v.value);
  if (!Number.isSafeInteger(n)) throw new Error(`${g.file}: GGUF metadata '${key}' = ${v.value} is out of range`);
  return n;
}
export function ggufFloat(g: GgufFile, key: string, dflt?: number): number {
  const v = g.metadata.get(key);
  if (!v) {
    if (dflt !== undefined) return dflt;
    throw kvErr(g, key, 'a number');
  }
  if (v.type !== GgufType.FLOAT32 && v.type !== GgufType.FLOAT64 && !INT_TYPES.has(v.type)) throw kvErr(g, key, 'a number');
  return Number(v.value);
}
export function ggufString(g: GgufFile, key: string): string | undefined {
  const v = g.metadata.get(key);
  if (!v) return undefined;
  if (v.type !== GgufType.STRING) throw kvErr(g, key, 'a string');
  return v.value as string;
}
export function ggufStringArray(g: GgufFile, key: string): string[] | undefined {
  const v = g.metadata.get(key);
  if (!v) return undefined;
  if (v.type !== GgufType.ARRAY || v.itemType !== GgufType.STRING) throw kvErr(g, key, 'an array of strings');
  return v.value as string[];
}

// ---------------------------------------------------------------------------------------------
// writing

export interface GgufWriteTensor {
  name: string;
  ne: number[];
  type: number;
  data: Uint8Array;
}

/** A growable little-endian byte buffer (the header of a GGUF file). */
class ByteWriter {
  buf = Buffer.alloc(1 << 16);
  len = 0;
  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const b = Buffer.alloc(Math.max(this.buf.length * 2, this.len + n));
    this.buf.copy(b, 0, 0, this.len);
    this.buf = b;
  }
  u8(v: number): void { this.ensure(1); this.buf.writeUInt8(v, this.len); this.len += 1; }
  i8(v: number): void { this.ensure(1); this.buf.writeInt8(v, this.len); this.len += 1; }
  u16(v: number): void { this.ensure(2); this.buf.writeUInt16LE(v, this.len); this.len += 2; }
  i16(v: number): void { this.ensure(2); this.buf.writeInt16LE(v, this.len); this.len += 2; }
  u32(v: number): void { this.ensure(4); this.buf.writeUInt32LE(v, this.len); this.len += 4; }
  i32(v: number): void { this.ensure(4); this.buf.writeInt32LE(v, this.len); this.len += 4; }
  f32(v: number): void { this.ensure(4); this.buf.writeFloatLE(v, this.len); this.len += 4; }
  f64(v: number): void { this.ensure(8); this.buf.writeDoubleLE(v, this.len); this.len += 8; }
  u64(v: number | bigint): void { this.ensure(8); this.buf.writeBigUInt64LE(BigInt(v), this.len); this.len += 8; }
  i64(v: number | bigint): void { this.ensure(8); this.buf.writeBigInt64LE(BigInt(v), this.len); this.len += 8; }
  str(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.u64(n);
    this.ensure(n);
    this.buf.write(s, this.len, 'utf8');
    this.len += n;
  }
}

function writeScalar(w: ByteWriter, type: GgufType, v: GgufScalar): void {
  switch (type) {
    case GgufType.UINT8: return w.u8(v as number);
    case GgufType.INT8: return w.i8(v as number);
    case GgufType.UINT16: return w.u16(v as number);
    case GgufType.INT16: return w.i16(v as number);
    case GgufType.UINT32: return w.u32(v as number);
    case GgufType.INT32: return w.i32(v as number);
    case GgufType.FLOAT32: return w.f32(v as number);
    case GgufType.FLOAT64: return w.f64(v as number);
    case GgufType.UINT64: return w.u64(v as number | bigint);
    case GgufType.INT64: return w.i64(v as number | bigint);
    case GgufType.BOOL: return w.u8(v ? 1 : 0);
    case GgufType.STRING: return w.str(v as string);
    default: throw new TypeError(`GGUF value type ${type} is not a scalar`);
  }
}

function writeValue(w: ByteWriter, v: GgufValue): void {
  if (v.type !== GgufType.ARRAY) return writeScalar(w, v.type, v.value as GgufScalar);
  if (v.itemType === GgufType.ARRAY) throw new TypeError('nested arrays are not written');
  w.u32(v.itemType);
  w.u64(v.value.length);
  for (const item of v.value) writeScalar(w, v.itemType, item as GgufScalar);
}

/** Writes a GGUF v3 file (metadata in map order, tensors in array order, data aligned). */
export function writeGguf(file: string, metadata: Map<string, GgufValue>, tensors: GgufWriteTensor[]): void {
  const alignment = metadata.has('general.alignment') ? (metadata.get('general.alignment')!.value as number) : GGUF_DEFAULT_ALIGNMENT;
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.size);
  for (const [k, v] of metadata) {
    w.str(k);
    w.u32(v.type);
    writeValue(w, v);
  }
  let off = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    const want = ggmlNbytes(t.type, t.ne);
    if (t.data.length !== want) throw new Error(`GGUF writer: tensor '${t.name}' has ${t.data.length} bytes, ${ggmlTypeName(t.type)} ${JSON.stringify(t.ne)} needs ${want}`);
    w.str(t.name);
    w.u32(t.ne.length);
    for (const n of t.ne) w.u64(n);
    w.u32(t.type);
    w.u64(off);
    offsets.push(off);
    off = Math.ceil((off + want) / alignment) * alignment;
  }
  const pad = Math.ceil(w.len / alignment) * alignment - w.len;
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, w.buf, 0, w.len);
    fs.writeSync(fd, Buffer.alloc(pad));
    let pos = 0;
    tensors.forEach((t, i) => {
      if (offsets[i] > pos) fs.writeSync(fd, Buffer.alloc(offsets[i] - pos));
      fs.writeSync(fd, t.data);
      pos = offsets[i] + t.data.length;
    });
    if (off > pos) fs.writeSync(fd, Buffer.alloc(off - pos));
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// Q8_0: blocks of 32 values, an f16 scale d = max|x| / 127 then 32 int8 q = round(x / d); x ≈ d·q.

export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % 32 !== 0) throw new RangeError(`Q8_0 needs a multiple of 32 values, got ${x.length}`);
  const nb = x.length / 32;
  const out = new Uint8Array(nb * 34);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[32 * b + j]));
    const d = Math.fround(amax / 127);
    const id = d !== 0 ? 1 / d : 0;
    dv.setUint16(34 * b, f32ToF16Bits(d), true);
    for (let j = 0; j < 32; j++) {
      const v = Math.fround(x[32 * b + j] * id);
      // round half away from zero (as C's roundf)
      const q = Math.sign(v) * Math.floor(Math.abs(v) + 0.5);
      dv.setInt8(34 * b + 2 + j, Math.max(-127, Math.min(127, q)));
    }
  }
  return out;
}

export function dequantizeQ8_0(data: Uint8Array, n: number): Float32Array {
  if (n % 32 !== 0 || data.length !== (n / 32) * 34) throw new RangeError(`Q8_0: ${data.length} bytes do not hold ${n} values`);
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new Float32Array(n);
  for (let b = 0; b < n / 32; b++) {
    const d = f16BitsToF32(dv.getUint16(34 * b, true));
    for (let j = 0; j < 32; j++) out[32 * b + j] = d * dv.getInt8(34 * b + 2 + j);
  }
  return out;
}
