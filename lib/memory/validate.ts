/**
 * Pure checks for what enters episodic memory (a write batch) and what comes back from disk
 * (snapshot rows, journal records). Nothing here touches a memory: a write validates its whole
 * batch with these before it changes any state.
 *
 * Keys and values live in float32. A finite double can still be Infinity in float32
 * (|x| ≳ 3.4028235e38), and a key of finite float32 components can have a squared norm that
 * overflows float32 (|x| ≳ 1.8e19 per component); the index refuses squared norms over 2^125
 * already (so that distances stay finite): both are caught here, with the index's bound.
 */
import type { CaseInput, CaseRows } from './types';
import { LIMITS } from '../retrieval';

/** Largest finite float32. */
export const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * Largest |x|² (summed exactly, in float64) for which every float32 accumulation of the d
 * squares, in any order and with or without FMA, stays finite. Each of the at most d + 1
 * roundings on a path of the sum grows a partial sum of non-negative terms by a factor of at
 * most (1 + 2⁻²⁴), so S·(1 + 2⁻²⁴)^(d+1) < FLOAT32_MAX is enough; (1 + (d + 2)·2⁻²³) bounds that
 * factor for any practical d. Conservative by a relative (d + 2)·2⁻²³ (1e-4 at d = 768).
 */
export function squaredNormLimit(dim: number): number {
  // The index's own bound (LIMITS.maxSquaredNorm = 2^125, far below this one) keeps every
  // distance finite too; what it refuses must not enter memory or a snapshot either.
  return Math.min(LIMITS.maxSquaredNorm, FLOAT32_MAX / (1 + (dim + 2) * 2 ** -23));
}

/** Σ x² of row r of a float32 matrix, in float64. */
export function rowSquaredNorm(keys: ArrayLike<number>, r: number, dim: number): number {
  let s = 0;
  for (let j = r * dim, e = j + dim; j < e; j++) s += keys[j] * keys[j];
  return s;
}

/**
 * First problem with row r of float32 keys, or undefined: a non-finite component, or a squared
 * norm over squaredNormLimit(dim).
 */
export function keyRowProblem(keys: Float32Array, r: number, dim: number): string | undefined {
  for (let j = 0; j < dim; j++) {
    const x = keys[r * dim + j];
    if (!Number.isFinite(x)) return `column ${j} is ${x}`;
  }
  const s = rowSquaredNorm(keys, r, dim);
  const lim = squaredNormLimit(dim);
  if (!(s <= lim)) return `squared norm ${s.toPrecision(6)} overflows float32 (must stay below ${lim.toPrecision(6)})`;
  return undefined;
}

/** Whether a double is a finite value once stored as float32. */
export function finiteFloat32(v: number): boolean {
  return Number.isFinite(Math.fround(v));
}

/** A write case after validation: key copied to float32, text and provenance defaulted. */
export interface ValidCase {
  value: number;
  state: string;
  action: string;
  episode: number;
  step: number;
  source: string;
  /** undefined: the time of the write. */
  time: number | undefined;
  weight: number | undefined;
  tdError: number | undefined;
}

export interface ValidBatch {
  /** n × dim float32 keys (a copy: later changes to the inputs do not matter). */
  keys: Float32Array;
  cases: ValidCase[];
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (ArrayBuffer.isView(v)) return v.constructor.name;
  return typeof v;
}

function optString(c: Record<string, unknown>, i: number, field: string): string {
  const v = c[field];
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new TypeError(`cases[${i}].${field} must be a string, got ${typeName(v)}`);
  return v;
}

function optNumber(c: Record<string, unknown>, i: number, field: string): number | undefined {
  const v = c[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number') throw new TypeError(`cases[${i}].${field} must be a number, got ${typeName(v)}`);
  if (!Number.isFinite(v)) throw new RangeError(`cases[${i}].${field} must be finite, got ${v}`);
  return v;
}

/**
 * Check a whole write batch before anything is written: each case an object; key an array or
 * typed array of `dim` numbers, every component finite in float32, the squared norm finite in
 * float32 (see squaredNormLimit); value a number representable as a finite float32; the texts
 * strings; episode, step, time, weight, tdError finite numbers when given. TypeError for a wrong
 * type or length, RangeError for a bad value, each naming the case and the field.
 */
export function validateBatch(cases: unknown, dim: number): ValidBatch {
  if (!Array.isArray(cases)) throw new TypeError(`cases must be an array of { key, value, ... }, got ${typeName(cases)}`);
  const n = cases.length;
  const keys = new Float32Array(n * dim);
  const out: ValidCase[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const c = cases[i] as CaseInput & Record<string, unknown>;
    if (typeof c !== 'object' || c === null || Array.isArray(c)) {
      throw new TypeError(`cases[${i}] must be an object { key, value, ... }, got ${typeName(c)}`);
    }
    const key = c.key as unknown;
    const isTyped = ArrayBuffer.isView(key) && !(key instanceof DataView) && !(key instanceof BigInt64Array) && !(key instanceof BigUint64Array);
    if (!Array.isArray(key) && !isTyped) {
      throw new TypeError(`cases[${i}].key must be a Float32Array or an array of ${dim} numbers, got ${typeName(key)}`);
    }
    const k = key as ArrayLike<unknown>;
    if (k.length !== dim) throw new TypeError(`cases[${i}].key has length ${k.length}, expected dim ${dim}`);
    for (let j = 0; j < dim; j++) {
      const x = k[j];
      if (typeof x !== 'number') throw new TypeError(`cases[${i}].key[${j}] must be a number, got ${typeName(x)}`);
      if (!Number.isFinite(x)) throw new RangeError(`cases[${i}].key[${j}] is ${x}, expected a finite number`);
      const f = Math.fround(x);
      if (!Number.isFinite(f)) throw new RangeError(`cases[${i}].key[${j}] ${x} is not representable in float32`);
      keys[i * dim + j] = f;
    }
    const s = rowSquaredNorm(keys, i, dim);
    if (!(s <= squaredNormLimit(dim))) {
      throw new RangeError(`cases[${i}].key has squared norm ${s.toPrecision(6)}, which overflows float32 (the index needs |key|² below ${squaredNormLimit(dim).toPrecision(6)})`);
    }
    const v = c.value as unknown;
    if (typeof v !== 'number') throw new TypeError(`cases[${i}].value must be a number, got ${typeName(v)}`);
    if (!Number.isFinite(v)) throw new RangeError(`cases[${i}].value must be finite, got ${v}`);
    if (!finiteFloat32(v)) throw new RangeError(`cases[${i}].value ${v} is not representable in float32`);
    out[i] = {
      value: v,
      state: optString(c, i, 'state'),
      action: optString(c, i, 'action'),
      source: optString(c, i, 'source'),
      episode: optNumber(c, i, 'episode') ?? -1,
      step: optNumber(c, i, 'step') ?? -1,
      time: optNumber(c, i, 'time'),
      weight: optNumber(c, i, 'weight'),
      tdError: optNumber(c, i, 'tdError'),
    };
  }
  return { keys, cases: out };
}

/**
 * Check a flat write batch (EpisodicMemory.writeRows) before anything is written, with the
 * rules of validateBatch: keys a Float32Array of n × dim (n = values.length), values finite in
 * float32, each metadata column absent, one value for every row, or n values. Errors name the
 * argument, the row and the column (`rows.step[3]`).
 */
export function validateRows(keys: unknown, values: unknown, rows: unknown, dim: number): ValidBatch {
  if (!(keys instanceof Float32Array)) throw new TypeError(`keys must be a Float32Array of n × dim (${dim}) floats, got ${typeName(keys)}`);
  const isNums = (v: unknown) => Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array));
  if (!isNums(values)) throw new TypeError(`values must be an array or typed array of numbers (one per key row), got ${typeName(values)}`);
  const vals = values as ArrayLike<unknown>;
  const n = vals.length;
  if (keys.length !== n * dim) throw new TypeError(`keys has ${keys.length} floats, expected ${n} rows (values.length) × dim ${dim}`);
  if (rows !== undefined && (typeof rows !== 'object' || rows === null || Array.isArray(rows))) {
    throw new TypeError(`rows must be an object of per-row columns { state, action, episode, step, source, time, weight, tdError }, got ${typeName(rows)}`);
  }
  const r = (rows ?? {}) as Record<string, unknown>;
  const column = (field: string, kind: 'string' | 'number'): ((i: number) => unknown) => {
    const v = r[field];
    if (v === undefined || v === null) return () => undefined;
    if (typeof v === kind) return () => v;
    if (!(kind === 'string' ? Array.isArray(v) : isNums(v))) {
      throw new TypeError(`rows.${field} must be a ${kind}${kind === 'string' ? ' or an array of strings' : ' or an array of numbers'} (one per row), got ${typeName(v)}`);
    }
    const a = v as ArrayLike<unknown>;
    if (a.length !== n) throw new TypeError(`rows.${field} has length ${a.length}, expected ${n} (one per row)`);
    return (i) => a[i];
  };
  const cols = {
    state: column('state', 'string'),
    action: column('action', 'string'),
    source: column('source', 'string'),
    episode: column('episode', 'number'),
    step: column('step', 'number'),
    time: column('time', 'number'),
    weight: column('weight', 'number'),
    tdError: column('tdError', 'number'),
  };
  const str = (f: 'state' | 'action' | 'source', i: number): string => {
    const v = cols[f](i);
    if (v === undefined || v === null) return '';
    if (typeof v !== 'string') throw new TypeError(`rows.${f}[${i}] must be a string, got ${typeName(v)}`);
    return v;
  };
  const num = (f: 'episode' | 'step' | 'time' | 'weight' | 'tdError', i: number): number | undefined => {
    const v = cols[f](i);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number') throw new TypeError(`rows.${f}[${i}] must be a number, got ${typeName(v)}`);
    if (!Number.isFinite(v)) throw new RangeError(`rows.${f}[${i}] must be finite, got ${v}`);
    return v;
  };
  const out: ValidCase[] = new Array(n);
  const lim = squaredNormLimit(dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < dim; j++) {
      const x = keys[i * dim + j];
      if (!Number.isFinite(x)) throw new RangeError(`keys row ${i} column ${j} is ${x}, expected a finite number`);
    }
    const s2 = rowSquaredNorm(keys, i, dim);
    if (!(s2 <= lim)) throw new RangeError(`keys row ${i} has squared norm ${s2.toPrecision(6)}, which overflows float32 (the index needs |key|² below ${lim.toPrecision(6)})`);
    const v = vals[i];
    if (typeof v !== 'number') throw new TypeError(`values[${i}] must be a number, got ${typeName(v)}`);
    if (!Number.isFinite(v)) throw new RangeError(`values[${i}] must be finite, got ${v}`);
    if (!finiteFloat32(v)) throw new RangeError(`values[${i}] ${v} is not representable in float32`);
    out[i] = {
      value: v,
      state: str('state', i),
      action: str('action', i),
      source: str('source', i),
      episode: num('episode', i) ?? -1,
      step: num('step', i) ?? -1,
      time: num('time', i),
      weight: num('weight', i),
      tdError: num('tdError', i),
    };
  }
  // A copy: later changes to the caller's keys do not reach the memory.
  return { keys: keys.slice(), cases: out };
}

/**
 * First problem with a stored case's metadata (as read back from disk), or undefined: the texts
 * strings, visits an integer ≥ 1, seq and touched integers ≥ 0, the other numbers finite.
 */
export function caseMetaProblem(m: unknown): string | undefined {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return `expected an object, got ${typeName(m)}`;
  const r = m as Record<string, unknown>;
  for (const f of ['state', 'action', 'source'] as const) {
    if (typeof r[f] !== 'string') return `${f} must be a string, got ${typeName(r[f])}`;
  }
  for (const f of META_NUMBER_FIELDS) if (!metaNumberOk(f, r[f])) return `${f} ${META_NUMBER_RULE[f]}, got ${JSON.stringify(r[f])}`;
  return undefined;
}

/** CaseMeta's numeric fields, in the order their rules are checked (objects and columns alike). */
export const META_NUMBER_FIELDS = ['weight', 'episode', 'step', 'time', 'visits', 'seq', 'touched'] as const;
export type MetaNumberField = (typeof META_NUMBER_FIELDS)[number];

/** Each numeric field's rule, as errors word it ("visits must be an integer >= 1, got 0"). */
export const META_NUMBER_RULE: Record<MetaNumberField, string> = {
  weight: 'must be a finite number',
  episode: 'must be a finite number',
  step: 'must be a finite number',
  time: 'must be a finite number',
  visits: 'must be an integer >= 1',
  seq: 'must be an integer >= 0',
  touched: 'must be an integer >= 0',
};

/** Whether x keeps field f's rule (META_NUMBER_RULE). */
export function metaNumberOk(f: MetaNumberField, x: unknown): boolean {
  if (typeof x !== 'number') return false;
  if (f === 'visits') return Number.isInteger(x) && x >= 1;
  if (f === 'seq' || f === 'touched') return Number.isSafeInteger(x) && x >= 0;
  return Number.isFinite(x);
}

/** Largest case id (2³¹ − 1 is reserved by the index). */
export const MAX_ID = 0x7ffffffe;

/** Where the rows of a snapshot go wrong: the part, the row (and its id) and what is wrong. */
export interface RowProblem {
  part: 'ids' | 'keys' | 'values';
  row: number;
  message: string;
}

/**
 * First bad row of snapshot arrays, or undefined: ids strictly increasing and >= 0, every key
 * row finite with a squared norm finite in float32, every value finite.
 */
export function snapshotRowProblem(ids: Int32Array, keys: Float32Array, values: Float32Array, dim: number, opts: { skipKeys?: boolean } = {}): RowProblem | undefined {
  const n = ids.length;
  // One quick pass over ids and values (millions of rows at a mapped load); the loops below
  // find and name the first problem only when there is one.
  let prev = -1;
  let clean = true;
  for (let i = 0; i < n && clean; i++) {
    const id = ids[i];
    if (id <= prev || id > MAX_ID) clean = false;
    prev = id;
  }
  for (let i = 0; i < n && clean; i++) {
    const v = values[i];
    if (v - v !== 0) clean = false; // NaN or ±Infinity
  }
  if (clean && opts.skipKeys) return undefined;
  for (let i = 0; i < (clean ? 0 : n); i++) {
    if (ids[i] < 0) return { part: 'ids', row: i, message: `row ${i}: id ${ids[i]} is negative` };
    if (ids[i] === MAX_ID + 1) return { part: 'ids', row: i, message: `row ${i}: id ${ids[i]} is reserved (ids go up to ${MAX_ID})` };
    if (i > 0 && ids[i] <= ids[i - 1]) return { part: 'ids', row: i, message: `row ${i}: id ${ids[i]} does not follow ${ids[i - 1]} (ids must be strictly increasing)` };
  }
  // Mapped keys (load with mmap) are checked by the index's first search instead.
  for (let i = 0; i < (opts.skipKeys ? 0 : n); i++) {
    const p = keyRowProblem(keys, i, dim);
    if (p) return { part: 'keys', row: i, message: `row ${i} (id ${ids[i]}): ${p}` };
  }
  for (let i = 0; i < (clean ? 0 : n); i++) {
    if (!Number.isFinite(values[i])) return { part: 'values', row: i, message: `row ${i} (id ${ids[i]}) is ${values[i]}, expected a finite value` };
  }
  return undefined;
}
