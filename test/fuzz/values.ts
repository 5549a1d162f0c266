/**
 * Argument material for the fuzz generators: typed arrays in every buffer kind (plain, a view
 * into a larger buffer, SharedArrayBuffer, resizable, detached), wrong-typed stand-ins, wild
 * numbers, and `lit()`, which renders any argument as JavaScript source for the replay line.
 */
import type { FuzzRng } from './rng';

export type ErrClass = 'TypeError' | 'RangeError' | 'Error';

/**
 * What a call may do. `ok`: it may succeed (a valid call; then its result is checked).
 * `errors`: the classes it may throw. A call with a defect must throw one of the classes its
 * defects allow; `maybe` records an outcome that is allowed but not required.
 */
export class Expect {
  ok = true;
  readonly errors = new Set<ErrClass>();
  readonly why: string[] = [];
  /** Thrown errors must mention one of these (file readers name the file). */
  names?: string[];

  /** A defect: the call must throw one of `classes`. */
  bad(classes: ErrClass | ErrClass[], why: string): this {
    this.ok = false;
    for (const c of [classes].flat()) this.errors.add(c);
    this.why.push(why);
    return this;
  }

  /** Allowed, not required: the call may also throw one of `classes`. */
  maybe(classes: ErrClass | ErrClass[], why: string): this {
    for (const c of [classes].flat()) this.errors.add(c);
    this.why.push(`maybe: ${why}`);
    return this;
  }

  /** Shape mismatches: the project uses both TypeError (README) and RangeError (lengths). */
  shape(why: string): this {
    return this.bad(['TypeError', 'RangeError'], why);
  }

  text(): string {
    const cls = [...this.errors].join('|') || 'no error';
    return this.ok ? `success${this.errors.size ? ` or ${cls}` : ''}` : cls;
  }
}

// ---- rendering arguments as source ---------------------------------------------------------

const tags = new WeakMap<object, (inner: string) => string>();

function tag<T extends object>(v: T, wrap: (inner: string) => string): T {
  tags.set(v, wrap);
  return v;
}

const LIT_MAX = 24;

/** JavaScript source for `v` (arrays longer than 24 are cut with a count). */
export function lit(v: unknown, depth = 0): string {
  if (typeof v === 'number') {
    if (Object.is(v, -0)) return '-0';
    return String(v);
  }
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v.length > 200 ? `${v.slice(0, 200)}…` : v);
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'function') return '<function>';
  if (depth > 4) return '…';
  const wrap = tags.get(v as object);
  let inner: string;
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    const a = v as unknown as ArrayLike<number | bigint> & { constructor: { name: string } };
    const items = Array.from({ length: Math.min(a.length, LIT_MAX) }, (_, i) => lit(a[i]));
    const more = a.length > LIT_MAX ? `, /* ${a.length - LIT_MAX} more */` : '';
    inner = `${a.constructor.name}.from([${items.join(', ')}${more}])`;
  } else if (v instanceof DataView) {
    inner = `new DataView(new ArrayBuffer(${v.byteLength}))`;
  } else if (Array.isArray(v)) {
    const items = v.slice(0, LIT_MAX).map((x) => lit(x, depth + 1));
    inner = `[${items.join(', ')}${v.length > LIT_MAX ? `, /* ${v.length - LIT_MAX} more */` : ''}]`;
  } else if (v instanceof ArrayBuffer) {
    inner = `new ArrayBuffer(${v.byteLength})`;
  } else {
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null && proto.constructor?.name) inner = `<${proto.constructor.name}>`;
    else {
      const entries = Object.entries(v as object).map(([k, x]) => `${/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k)}: ${lit(x, depth + 1)}`);
      inner = `{ ${entries.join(', ')} }`;
    }
  }
  return wrap ? wrap(inner) : inner;
}

// ---- typed arrays in every buffer kind ---------------------------------------------------------

export type BufKind = 'plain' | 'view' | 'shared' | 'resizable' | 'detached';
type TypedCtor = Float32ArrayConstructor | Int32ArrayConstructor;

/** Detaches `a`'s buffer (its length becomes 0); the bytes move to a clone that is dropped. */
export function detach<T extends ArrayBufferView>(a: T): T {
  if (!(a.buffer instanceof ArrayBuffer)) return a;
  structuredClone(a.buffer, { transfer: [a.buffer] });
  return a;
}

function make(ctor: TypedCtor, data: ArrayLike<number>, kind: BufKind): Float32Array | Int32Array {
  const n = data.length;
  const bytes = n * 4;
  let a: Float32Array | Int32Array;
  if (kind === 'view') {
    // A subarray view at a non-zero offset inside a larger, poisoned buffer.
    const pad = 3;
    const whole = new ctor(n + 2 * pad).fill(ctor === Float32Array ? NaN : 0x7eadbeef);
    a = whole.subarray(pad, pad + n);
    a.set(data);
    return tag(a, (s) => `view(${s})`);
  }
  if (kind === 'shared') {
    a = new ctor(new SharedArrayBuffer(Math.max(bytes, 0)) as unknown as ArrayBuffer);
    a.set(data);
    return tag(a, (s) => `shared(${s})`);
  }
  if (kind === 'resizable') {
    const ab = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(bytes, { maxByteLength: bytes + 64 });
    a = new ctor(ab);
    a.set(data);
    return tag(a, (s) => `resizable(${s})`);
  }
  a = ctor.from(data);
  if (kind === 'detached') {
    const before = lit(a);
    detach(a);
    return tag(a, () => `detach(${before})`);
  }
  return a;
}

export function f32(data: ArrayLike<number>, kind: BufKind = 'plain'): Float32Array {
  return make(Float32Array, data, kind) as Float32Array;
}

export function i32(data: ArrayLike<number>, kind: BufKind = 'plain'): Int32Array {
  return make(Int32Array, data, kind) as Int32Array;
}

/**
 * A buffer kind for an input array, and what it implies: detached buffers are TypeErrors;
 * shared and resizable buffers may be accepted (then the result must be right) or refused
 * with a TypeError.
 */
export function pickKind(rng: FuzzRng, e: Expect, name: string, pOdd = 0.12): BufKind {
  if (!rng.chance(pOdd)) return rng.chance(0.25) ? 'view' : 'plain';
  const kind = rng.pick<BufKind>(['shared', 'resizable', 'detached', 'view']);
  if (kind === 'detached') e.bad('TypeError', `${name} is detached`);
  if (kind === 'shared' || kind === 'resizable') e.maybe('TypeError', `${name} is ${kind}`);
  return kind;
}

/** A Float32Array argument built from `data` in a random kind (the defect recorded in `e`). */
export function f32Arg(rng: FuzzRng, e: Expect, name: string, data: ArrayLike<number>, pOdd = 0.12): Float32Array {
  return f32(data, pickKind(rng, e, name, pOdd));
}

export function i32Arg(rng: FuzzRng, e: Expect, name: string, data: ArrayLike<number>, pOdd = 0.12): Int32Array {
  return i32(data, pickKind(rng, e, name, pOdd));
}

/** Something that is not a Float32Array (for a Float32Array argument): a TypeError. */
export function notF32(rng: FuzzRng, data: ArrayLike<number>): unknown {
  const n = data.length;
  return rng.pick<() => unknown>([
    () => Float64Array.from(data),
    () => Int32Array.from(data),
    () => new Uint8Array(n * 4),
    () => Array.from(data),
    () => new DataView(new ArrayBuffer(n * 4)),
    () => new ArrayBuffer(n * 4),
    () => null,
    () => undefined,
    () => 'abc',
    () => n,
    () => ({ length: n }),
    () => Symbol('x'),
  ])();
}

/** Something that is neither an Int32Array nor an array of int32 integers: a TypeError. */
export function notI32(rng: FuzzRng, data: ArrayLike<number>): unknown {
  const n = data.length;
  return rng.pick<() => unknown>([
    () => Float32Array.from(data),
    () => Uint32Array.from(data),
    () => BigInt64Array.from(Array.from(data, (x) => BigInt(Math.trunc(x)))),
    () => new Uint8Array(n * 4),
    () => null,
    () => 'abc',
    () => n,
    () => ({ length: n }),
    () => [...Array.from(data), 'x'],
    () => [...Array.from(data), {}],
  ])();
}

// ---- wild numbers -------------------------------------------------------------------------------

/** Values that are not numbers at all (for a number argument): TypeErrors. */
export function notNumber(rng: FuzzRng): unknown {
  return rng.pick<unknown>(['3', '', 'abc', {}, [], [2], true, 3n, Symbol('n'), () => 1]);
}

/**
 * An integer argument in [lo, hi]: usually `valid()`, with probability pBad a defect recorded
 * in `e` (NaN/±Infinity and out-of-range integers: RangeError; non-integers: TypeError or
 * RangeError; non-numbers: TypeError). `optional`: undefined is valid (a default).
 */
export function intArg(
  rng: FuzzRng, e: Expect, name: string, valid: () => number, lo: number, hi: number, pBad = 0.08, optional = false,
): unknown {
  if (!rng.chance(pBad)) return valid();
  const kind = rng.int(9);
  switch (kind) {
    case 0:
      e.bad('RangeError', `${name} below ${lo}`);
      return lo - 1 - rng.int(3) * rng.pick([1, 1000, 2 ** 31]);
    case 1:
      if (hi >= Number.MAX_SAFE_INTEGER) return valid();
      e.bad('RangeError', `${name} above ${hi}`);
      return hi + 1 + rng.int(3) * rng.pick([1, 1000, 2 ** 31]);
    case 2: {
      const v = rng.pick([NaN, Infinity, -Infinity]);
      e.bad('RangeError', `${name} is ${v}`);
      return v;
    }
    case 3: {
      // a fraction the double keeps (1e-9 vanishes beside 2^31, 0.5 beside 2^53)
      const v = valid();
      const x = [v + rng.pick([0.5, 1e-9, -0.25]), v + 0.5].find((y) => !Number.isInteger(y));
      if (x === undefined) return v;
      e.bad(['TypeError', 'RangeError'], `${name} is not an integer`);
      return x;
    }
    case 4:
      if (optional) return undefined;
      e.bad('TypeError', `${name} is undefined`);
      return undefined;
    case 5:
      if (optional) {
        e.maybe('TypeError', `${name} is null`);
        return null;
      }
      e.bad('TypeError', `${name} is null`);
      return null;
    default: {
      const v = notNumber(rng);
      e.bad('TypeError', `${name} is not a number`);
      return v;
    }
  }
}

/** Finite floats of every scale, for valid data. */
export function niceFloat(rng: FuzzRng): number {
  switch (rng.int(8)) {
    case 0:
      return rng.range(-3, 3);
    case 1:
      return 0;
    case 2:
      return rng.normal() * 10 ** rng.range(-6, 6);
    default:
      return rng.normal();
  }
}
