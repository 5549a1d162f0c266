/** Minimal PNG encoder: 8-bit RGBA or RGB, one IDAT, adaptive per-row filter (PNG spec heuristic). */
import * as zlib from 'zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Table-driven CRC-32, used where zlib.crc32 (Node >= 20.15) is missing. */
let table: Uint32Array | undefined;
function crc32(data: Buffer, prev = 0): number {
  const native = (zlib as { crc32?: (d: Buffer, v?: number) => number }).crc32;
  if (native) return native(data, prev) >>> 0;
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let c = ~prev >>> 0;
  for (const b of data) c = table[(c ^ b) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(data, crc32(head.subarray(4))), 0);
  return Buffer.concat([head, data, crc]);
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Filter each scanline with the type (0–4) whose output has the smallest sum of |signed bytes|. */
function filterRows(px: Buffer, width: number, height: number, bpp: number): Buffer {
  const stride = width * bpp;
  const out = Buffer.alloc((stride + 1) * height);
  const zero = Buffer.alloc(stride);
  const cand = Array.from({ length: 5 }, () => Buffer.alloc(stride));
  for (let y = 0; y < height; y++) {
    const row = px.subarray(y * stride, (y + 1) * stride);
    const up = y > 0 ? px.subarray((y - 1) * stride, y * stride) : zero;
    row.copy(cand[0]);
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? row[i - bpp] : 0;
      const b = up[i];
      const c = i >= bpp ? up[i - bpp] : 0;
      cand[1][i] = row[i] - a;
      cand[2][i] = row[i] - b;
      cand[3][i] = row[i] - ((a + b) >> 1);
      cand[4][i] = row[i] - paeth(a, b, c);
    }
    let best = 0;
    let bestCost = Infinity;
    for (let f = 0; f < 5; f++) {
      const o = cand[f];
      let cost = 0;
      for (let i = 0; i < stride; i++) cost += o[i] < 128 ? o[i] : 256 - o[i];
      if (cost < bestCost) {
        bestCost = cost;
        best = f;
      }
    }
    out[y * (stride + 1)] = best;
    cand[best].copy(out, y * (stride + 1) + 1);
  }
  return out;
}

/**
 * Encode `pixels` (row-major, `channels` bytes per pixel: 4 = RGBA, 3 = RGB) as a PNG file.
 */
export function encodePng(pixels: Buffer, width: number, height: number, channels: 3 | 4 = 4): Buffer {
  if (pixels.length !== width * height * channels) throw new RangeError('encodePng: pixel buffer size mismatch');
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = channels === 4 ? 6 : 2; // colour type: RGBA / RGB
  ihdr[10] = 0; // deflate
  ihdr[11] = 0; // adaptive filtering
  ihdr[12] = 0; // no interlace
  const idat = zlib.deflateSync(filterRows(pixels, width, height, channels), { level: 9 });
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]);
}

/** Drop the alpha channel of an RGBA buffer. */
export function rgbaToRgb(rgba: Buffer): Buffer {
  const out = Buffer.alloc((rgba.length / 4) * 3);
  for (let i = 0, o = 0; i < rgba.length; i += 4, o += 3) {
    out[o] = rgba[i];
    out[o + 1] = rgba[i + 1];
    out[o + 2] = rgba[i + 2];
  }
  return out;
}
