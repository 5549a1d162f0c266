/** Small durable-file helpers: write + fsync, directory fsync, little-endian byte views. */
import * as fs from 'fs';
import * as os from 'os';

/** Write a whole file and fsync it before closing. */
export function writeFileDurable(file: string, data: Uint8Array | string, fsync = true): void {
  const fd = fs.openSync(file, 'w');
  try {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
    if (fsync) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** fsync a directory so that renames and new entries in it are durable (no-op where unsupported). */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EPERM' && code !== 'EINVAL' && code !== 'EBADF') throw err;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Whether this host is little-endian (the byte order of every memq file). */
export const LITTLE = os.endianness() === 'LE';

/** The little-endian bytes of a 32-bit typed array (a view when the host is little-endian). */
export function leBytes(a: Float32Array | Int32Array): Buffer {
  const view = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
  if (LITTLE) return view;
  const copy = Buffer.from(view);
  copy.swap32();
  return copy;
}

/** Float32Array from little-endian bytes (always a fresh, aligned copy). */
export function f32FromLE(b: Uint8Array): Float32Array {
  return fromLE(b, new Float32Array(b.byteLength >>> 2));
}

export function i32FromLE(b: Uint8Array): Int32Array {
  return fromLE(b, new Int32Array(b.byteLength >>> 2));
}

/**
 * Float32Array over little-endian bytes that nothing else holds (a part just read): a view when
 * the host is little-endian and the bytes are their ArrayBuffer's whole (a large read; small
 * ones share Node's pool, and `.buffer` of a view would show the pool), else a copy.
 */
export function f32OwnLE(b: Uint8Array): Float32Array {
  const whole = b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.byteLength % 4 === 0;
  return LITTLE && whole ? new Float32Array(b.buffer) : f32FromLE(b);
}

/** out filled from the little-endian bytes b (one copy; swapped on a big-endian host). */
function fromLE<T extends Float32Array | Int32Array>(b: Uint8Array, out: T): T {
  const bytes = Buffer.from(out.buffer, out.byteOffset, out.byteLength);
  bytes.set(b.subarray(0, out.byteLength));
  if (!LITTLE) bytes.swap32();
  return out;
}
