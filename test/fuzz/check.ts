/**
 * Result oracles of the retrieval core against test/retrieval/reference.ts (float64): top-m
 * search (tie-robust), kernel-weighted value, klImprove. Tolerances follow the float32 kernels:
 * distances from the GEMM expansion lose ~1e-6 of ‖q‖²+‖k‖², kernels are bracketed by
 * evaluating the reference at the ends of that interval, and the kernel parameters are the
 * float32-rounded ones the core uses.
 */
import { refKlRow } from '../retrieval/reference';

export type KernelName = 'gaussian' | 'cosine' | 'inverse';
export interface KernelModel {
  kernel: KernelName;
  param: number;
}

export interface Row {
  id: number;
  key: Float32Array;
  value: number;
}

const F32_MAX = 3.4028234663852886e38;
const DIST_REL = 2e-5;
const COS_TOL = 2e-5;
const K_REL = 2e-5;
const K_ABS = 1e-37;

interface Scored {
  row: Row;
  score: number;
  tol: number;
  d2: number;
  d2tol: number;
  kLo: number;
  kHi: number;
}

function norm2(a: Float32Array, off: number, d: number): number {
  let s = 0;
  for (let j = 0; j < d; j++) s += a[off + j] * a[off + j];
  return s;
}

/** The row's score (−dist2, or cos), its tolerance, and the interval its kernel value may take. */
function score(k: KernelModel, q: Float32Array, qi: number, row: Row, d: number): Scored {
  const p = Math.fround(k.param);
  let d2 = 0;
  let dot = 0;
  for (let j = 0; j < d; j++) {
    const a = q[qi * d + j];
    const b = row.key[j];
    d2 += (a - b) * (a - b);
    dot += a * b;
  }
  const nq = norm2(q, qi * d, d);
  const nk = norm2(row.key, 0, d);
  const d2tol = DIST_REL * (nq + nk) + 1e-30;
  if (k.kernel === 'cosine') {
    // A norm that underflows in float32 makes the cosine undefined there: anything in [-1, 1].
    const ill = nq < 1e-30 || nk < 1e-30;
    const cos = nq === 0 || nk === 0 ? 0 : dot / Math.sqrt(nq * nk);
    const tol = ill ? 2 : COS_TOL;
    const lo = Math.max(-1, cos - tol);
    const hi = Math.min(1, cos + tol);
    const x = (c: number) => p * c;
    const xt = 1e-6 * Math.abs(x(cos)) + 1e-6;
    return { row, score: cos, tol, d2, d2tol, kLo: Math.exp(x(lo) - xt), kHi: Math.exp(x(hi) + xt) };
  }
  const lo = Math.max(0, d2 - d2tol);
  const hi = d2 + d2tol;
  if (k.kernel === 'gaussian') {
    // h² may underflow (or 1/2h² overflow) in float32: then the kernel is 1 at distance 0, else 0.
    const h2 = Math.fround(p * p);
    const f = (t: number) => (t === 0 ? 0 : -t / (2 * h2));
    const kAt = (t: number, side: number) => {
      const x = f(t);
      if (!Number.isFinite(x)) return 0;
      return Math.exp(x + side * (1e-6 * Math.abs(x) + 1e-7));
    };
    return { row, score: -d2, tol: d2tol, d2, d2tol, kLo: kAt(hi, -1), kHi: kAt(lo, 1) };
  }
  return { row, score: -d2, tol: d2tol, d2, d2tol, kLo: 1 / (hi + p), kHi: 1 / (lo + p) };
}

function inKernel(v: number, s: Scored): boolean {
  return v >= s.kLo * (1 - K_REL) - K_ABS && v <= s.kHi * (1 + K_REL) + K_ABS;
}

function ranked(k: KernelModel, q: Float32Array, qi: number, rows: Row[], d: number): Scored[] {
  const all = rows.map((r) => score(k, q, qi, r, d));
  all.sort((a, b) => b.score - a.score || a.row.id - b.row.id);
  return all;
}

export interface SearchOut {
  ids: Int32Array;
  kernel: Float32Array;
  dist2: Float32Array;
}

/** A search result against the rows (live, in insertion order); undefined when right. */
export function checkSearch(k: KernelModel, rows: Row[], d: number, q: Float32Array, m: number, res: SearchOut): string | undefined {
  const b = q.length / d;
  if (!(res && res.ids instanceof Int32Array && res.kernel instanceof Float32Array && res.dist2 instanceof Float32Array)) {
    return 'result is not { ids: Int32Array, kernel: Float32Array, dist2: Float32Array }';
  }
  for (const f of ['ids', 'kernel', 'dist2'] as const) {
    if (res[f].length !== b * m) return `${f}.length ${res[f].length}, expected b*m = ${b * m}`;
  }
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (let qi = 0; qi < b; qi++) {
    const all = ranked(k, q, qi, rows, d);
    const count = Math.min(m, rows.length);
    const seen = new Set<number>();
    let prev: Scored | undefined;
    for (let j = 0; j < m; j++) {
      const at = `query ${qi} slot ${j}`;
      const id = res.ids[qi * m + j];
      const kv = res.kernel[qi * m + j];
      const dv = res.dist2[qi * m + j];
      if (j >= count) {
        if (id !== -1 || kv !== 0 || dv !== Infinity) return `${at}: empty slot holds id ${id}, kernel ${kv}, dist2 ${dv} (expected -1, 0, Infinity)`;
        continue;
      }
      const row = byId.get(id);
      if (!row) return `${at}: id ${id} is not a live case (live: ${rows.length})`;
      if (seen.has(id)) return `${at}: id ${id} twice`;
      seen.add(id);
      const s = all.find((x) => x.row.id === id)!;
      if (!Number.isFinite(kv) || kv < 0) return `${at}: kernel ${kv} is not finite and >= 0 (reference ${s.kLo}..${s.kHi})`;
      if (!inKernel(kv, s)) return `${at}: kernel ${kv} for id ${id}, reference in [${s.kLo}, ${s.kHi}]`;
      if (!Number.isFinite(dv)) return `${at}: dist2 ${dv} is not finite (reference ${s.d2})`;
      if (Math.abs(dv - s.d2) > s.d2tol) return `${at}: dist2 ${dv} for id ${id}, reference ${s.d2} ± ${s.d2tol}`;
      if (prev && s.score > prev.score + s.tol + prev.tol) return `${at}: not sorted: id ${id} (score ${s.score}) after id ${prev.row.id} (score ${prev.score})`;
      prev = s;
    }
    if (count > 0) {
      // Completeness: no unreturned case beats the worst returned one beyond the tolerance.
      const worst = prev!;
      for (const s of all) {
        if (seen.has(s.row.id)) continue;
        if (s.score > worst.score + s.tol + worst.tol) {
          return `query ${qi}: id ${s.row.id} (score ${s.score}) is missing from the top-${m}, which returned id ${worst.row.id} (score ${worst.score})`;
        }
      }
    }
  }
  return undefined;
}

export interface EstimateOut {
  value: Float32Array;
  confidence: Float32Array;
}

/** MATH §3 with the void case, over the reference top-m (skipped where the top-m is a near tie). */
export function checkEstimate(
  k: KernelModel, rows: Row[], d: number, q: Float32Array, m: number, voidWeight: number, voidValue: number, res: EstimateOut,
): string | undefined {
  const b = q.length / d;
  if (!(res && res.value instanceof Float32Array && res.confidence instanceof Float32Array)) {
    return 'result is not { value: Float32Array, confidence: Float32Array }';
  }
  if (res.value.length !== b || res.confidence.length !== b) return `value/confidence lengths ${res.value.length}/${res.confidence.length}, expected ${b}`;
  const w = Math.fround(voidWeight);
  const q0 = Math.fround(voidValue);
  for (let qi = 0; qi < b; qi++) {
    const v = res.value[qi];
    const c = res.confidence[qi];
    const at = `query ${qi}`;
    if (!Number.isFinite(v)) return `${at}: value ${v} is not finite`;
    if (!(c >= 0 && c <= 1)) return `${at}: confidence ${c} is not in [0, 1]`;
    const all = ranked(k, q, qi, rows, d);
    const top = all.slice(0, Math.min(m, all.length));
    if (top.length === 0) {
      if (Math.abs(v - q0) > 1e-6 * Math.abs(q0) || c !== 0) return `${at}: empty memory gives value ${v}, confidence ${c}; expected ${q0}, 0`;
      continue;
    }
    if (all.length > m) {
      // The top-m set is ambiguous when a kept row's score interval reaches a dropped row's: a
      // boundary tie, or a row whose score float32 cannot pin down (a cosine with a key whose
      // squared norm underflows: its interval is the whole [-1, 1]).
      let keptLo = Infinity;
      let droppedHi = -Infinity;
      for (let i = 0; i < all.length; i++) {
        if (i < m) keptLo = Math.min(keptLo, all[i].score - all[i].tol);
        else droppedHi = Math.max(droppedHi, all[i].score + all[i].tol);
      }
      if (keptLo <= droppedHi) continue;
    }
    let lo = 0;
    let hi = 0;
    let sk = 0;
    let skq = 0;
    let qmax = Math.abs(q0);
    for (const s of top) {
      lo += s.kLo;
      hi += s.kHi;
      const mid = (s.kLo + s.kHi) / 2;
      sk += mid;
      skq += mid * s.row.value;
      qmax = Math.max(qmax, Math.abs(s.row.value));
    }
    if (hi + w < 1e-30 || !Number.isFinite(hi)) continue; // all kernels underflow (or overflow): ill-conditioned
    const den = sk + w;
    const ref = (skq + w * q0) / den;
    let spread = 0;
    for (const s of top) spread += (s.kHi - s.kLo) * Math.abs(s.row.value - ref);
    const vtol = spread / Math.max(lo + w, 1e-300) + 2e-5 * qmax + 1e-30;
    if (!(Math.abs(v - ref) <= vtol)) return `${at}: value ${v}, reference ${ref} ± ${vtol}`;
    const cref = sk / den;
    const ctol = ((hi - lo) * Math.max(w, 1e-300)) / Math.max((lo + w) ** 2, 1e-300) + 2e-5;
    if (w > 0 && !(Math.abs(c - cref) <= ctol)) return `${at}: confidence ${c}, reference ${cref} ± ${ctol}`;
    if (w === 0 && lo > 1e-30 && Math.abs(c - 1) > 1e-5) return `${at}: confidence ${c} with voidWeight 0, expected 1`;
  }
  return undefined;
}

/** klImprove's outputs against refKlRow per row (ragged rows: zeros past the row length). */
export function checkKl(
  lp: Float32Array, q: Float32Array, rows: number, cols: number, alpha: number, rowLengths: Int32Array | number[] | undefined,
  res: { policy: Float32Array; value: Float32Array },
): string | undefined {
  if (!(res && res.policy instanceof Float32Array && res.value instanceof Float32Array)) return 'result is not { policy, value } Float32Arrays';
  if (res.policy.length !== rows * cols || res.value.length !== rows) return `policy/value lengths ${res.policy.length}/${res.value.length}, expected ${rows * cols}/${rows}`;
  const a = Math.fround(alpha);
  for (let r = 0; r < rows; r++) {
    const len = rowLengths ? rowLengths[r] : cols;
    const ref = refKlRow(Array.from(lp.subarray(r * cols, r * cols + len)), Array.from(q.subarray(r * cols, r * cols + len)), a);
    const v = res.value[r];
    if (ref.value === -Infinity) {
      if (v !== -Infinity) return `row ${r}: value ${v}, expected -Infinity (no support)`;
    } else if (Math.abs(ref.value) > F32_MAX) {
      // V itself is beyond float32 (e.g. α·log μ with μ = e^-3e38 and α = 1e7): only ±max or ±∞ fit.
      if (!(Math.sign(v) === Math.sign(ref.value) && Math.abs(v) >= F32_MAX * 0.999)) return `row ${r}: value ${v}, reference ${ref.value} (beyond float32)`;
    } else {
      if (!Number.isFinite(v)) return `row ${r}: value ${v} is not finite (reference ${ref.value})`;
      const tol = 1e-5 * Math.max(1, Math.abs(ref.value));
      if (Math.abs(v - ref.value) > tol) return `row ${r}: value ${v}, reference ${ref.value}`;
    }
    let sum = 0;
    for (let c = 0; c < cols; c++) {
      const got = res.policy[r * cols + c];
      const want = c < len ? ref.policy[c] : 0;
      if (!(Math.abs(got - want) <= 1e-6 + 1e-5 * want)) return `row ${r} col ${c}: policy ${got}, reference ${want}`;
      sum += got;
    }
    if (ref.value !== -Infinity && Math.abs(sum - 1) > 1e-4) return `row ${r}: policy sums to ${sum}`;
  }
  return undefined;
}
