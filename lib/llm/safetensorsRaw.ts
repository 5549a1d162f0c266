/**
 * Raw safetensors I/O for format conversion (GGUF export/import): tensors as bytes with their
 * dtype and shape, no conversion. The engine's own reader (native/core/llm/safetensors.cpp) is
 * the one that validates files for inference; this one checks what a converter relies on
 * (header length, JSON, dtype, shape × size == byte range inside the data area) and names the
 * file and field when a check fails.
 */
import * as fs from 'fs';

export type StDtype = 'F32' | 'F16' | 'BF16' | 'F64';
export const ST_DTYPE_SIZE: Record<StDtype, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

export interface RawTensor {
  dtype: StDtype;
  /** Row-major, outermost first (PyTorch order). */
  shape: number[];
  /** Little-endian bytes, exactly numel × dtype size. */
  data: Uint8Array;
}

/** Reads every tensor of a .safetensors file (insertion order of the header). */
export function readSafetensorsRaw(file: string): Map<string, RawTensor> {
  const buf = fs.readFileSync(file);
  if (buf.length < 8) throw new Error(`${file}: shorter than the 8-byte header length`);
  const n = buf.readBigUInt64LE(0);
  if (n > BigInt(buf.length - 8)) throw new Error(`${file}: header length ${n} exceeds the file (${buf.length} bytes)`);
  const headerLen = Number(n);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8'));
  } catch (e) {
    throw new Error(`${file}: header is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw new Error(`${file}: header is not a JSON object`);
  const dataStart = 8 + headerLen;
  const dataLen = buf.length - dataStart;
  const out = new Map<string, RawTensor>();
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = info?.dtype as StDtype;
    const size = ST_DTYPE_SIZE[dtype];
    if (size === undefined) throw new Error(`${file}: ${name}.dtype ${JSON.stringify(info?.dtype)} is not F32, F16, BF16 or F64`);
    const shape = info.shape;
    if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) throw new Error(`${file}: ${name}.shape must be an array of non-negative integers`);
    const off = info.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw new Error(`${file}: ${name}.data_offsets must be two non-negative integers`);
    }
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    const [begin, end] = off as number[];
    if (!(begin <= end && end <= dataLen && end - begin === count * size)) {
      throw new Error(`${file}: ${name}.data_offsets [${begin}, ${end}] do not match shape ${JSON.stringify(shape)} × ${size} B within ${dataLen} data bytes`);
    }
    out.set(name, { dtype, shape: [...(shape as number[])], data: new Uint8Array(buf.buffer, buf.byteOffset + dataStart + begin, end - begin) });
  }
  return out;
}

/** Writes tensors (in map order, tightly packed; header padded with spaces to 8 bytes). */
export function writeSafetensorsRaw(file: string, tensors: Map<string, RawTensor>, metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let off = 0;
  for (const [name, t] of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count * ST_DTYPE_SIZE[t.dtype] !== t.data.length) throw new Error(`${name}: shape [${t.shape}] × ${t.dtype} does not match ${t.data.length} bytes`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, len);
    fs.writeSync(fd, Buffer.from(json));
    for (const t of tensors.values()) fs.writeSync(fd, t.data);
  } finally {
    fs.closeSync(fd);
  }
}

/** The tensors of an HF model directory: model.safetensors, or the shards of model.safetensors.index.json. */
export function readModelTensorsRaw(dir: string): Map<string, RawTensor> {
  const single = `${dir}/model.safetensors`;
  if (fs.existsSync(single)) return readSafetensorsRaw(single);
  const indexFile = `${dir}/model.safetensors.index.json`;
  if (!fs.existsSync(indexFile)) throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json`);
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
  } catch (e) {
    throw new Error(`${indexFile}: not valid JSON (${(e as Error).message})`);
  }
  const shards = new Set(Object.values(index.weight_map ?? {}));
  if (shards.size === 0) throw new Error(`${indexFile}: weight_map names no shard`);
  const out = new Map<string, RawTensor>();
  for (const s of shards) {
    if (typeof s !== 'string' || s.includes('/') || s.includes('\\')) throw new Error(`${indexFile}: weight_map names a bad shard ${JSON.stringify(s)}`);
    for (const [k, v] of readSafetensorsRaw(`${dir}/${s}`)) out.set(k, v);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// float conversions (bit-exact, IEEE round-to-nearest-even)

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 bits → float16 bits, round to nearest even (overflow → ±Inf, NaN kept NaN). */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal: ±0
    mant |= 0x800000;
    const shift = 14 - e; // 14..24
    const half = 1 << (shift - 1);
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // may carry into the exponent (correct, up to Inf)
  return sign | h;
}

/** float16 bits → number (exact). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float32 → bfloat16 bits, round to nearest even (NaN stays a quiet NaN). */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff)) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

/** Decodes any float dtype to float32 values. */
export function toFloat32(dtype: StDtype, data: Uint8Array): Float32Array {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = data.byteLength / ST_DTYPE_SIZE[dtype];
  const out = new Float32Array(n);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
      break;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(8 * i, true);
      break;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16BitsToF32(dv.getUint16(2 * i, true));
      break;
    case 'BF16':
      for (let i = 0; i < n; i++) out[i] = bf16BitsToF32(dv.getUint16(2 * i, true));
      break;
  }
  return out;
}

/** float32 values as little-endian bytes of a dtype (F16/BF16 rounded to nearest even). */
export function fromFloat32(dtype: StDtype, v: Float32Array): Uint8Array {
  const out = new Uint8Array(v.length * ST_DTYPE_SIZE[dtype]);
  const dv = new DataView(out.buffer);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < v.length; i++) dv.setFloat32(4 * i, v[i], true);
      break;
    case 'F64':
      for (let i = 0; i < v.length; i++) dv.setFloat64(8 * i, v[i], true);
      break;
    case 'F16':
      for (let i = 0; i < v.length; i++) dv.setUint16(2 * i, f32ToF16Bits(v[i]), true);
      break;
    case 'BF16':
      for (let i = 0; i < v.length; i++) dv.setUint16(2 * i, f32ToBf16Bits(v[i]), true);
      break;
  }
  return out;
}
