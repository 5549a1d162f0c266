/**
 * The `memq solve` MDP file format, shared by the tabular environments (which export their
 * exact model in it) and the solvers in lib/policy/ (which read it).
 *
 *   { "states": S, "actions": A,
 *     "P": [S][A][S]   P[s][a][s'] = probability of s' after taking a in s (rows sum to 1),
 *     "R": [S][A]      expected immediate reward of taking a in s,
 *     "prior"?: [S][A] a reference policy mu(a|s) (rows sum to 1; docs/math.md §6),
 *     "terminal"?: [indices] states that absorb with zero reward (P[t][a][t] = 1, R[t][a] = 0) }
 */

export interface MdpJson {
  states: number;
  actions: number;
  P: number[][][];
  R: number[][];
  prior?: number[][];
  terminal?: number[];
}

/**
 * Check an MdpJson's shape and invariants; returns it unchanged, or throws a RangeError that
 * names the first offending entry. `tol` is the allowed deviation of a probability row sum from 1.
 */
export function validateMdp(m: MdpJson, tol = 1e-9): MdpJson {
  const fail = (msg: string): never => {
    throw new RangeError(`MDP: ${msg}`);
  };
  if (!m || typeof m !== 'object') fail('not an object');
  const S = m.states;
  const A = m.actions;
  if (!Number.isInteger(S) || S <= 0) fail(`"states" must be a positive integer, got ${S}`);
  if (!Number.isInteger(A) || A <= 0) fail(`"actions" must be a positive integer, got ${A}`);
  if (!Array.isArray(m.P) || m.P.length !== S) fail(`"P" must have ${S} rows`);
  if (!Array.isArray(m.R) || m.R.length !== S) fail(`"R" must have ${S} rows`);
  for (let s = 0; s < S; s++) {
    if (!Array.isArray(m.P[s]) || m.P[s].length !== A) fail(`P[${s}] must have ${A} entries`);
    if (!Array.isArray(m.R[s]) || m.R[s].length !== A) fail(`R[${s}] must have ${A} entries`);
    for (let a = 0; a < A; a++) {
      const row = m.P[s][a];
      if (!Array.isArray(row) || row.length !== S) fail(`P[${s}][${a}] must have ${S} entries`);
      let sum = 0;
      for (let t = 0; t < S; t++) {
        const p = row[t];
        if (typeof p !== 'number' || !(p >= 0 && p <= 1)) fail(`P[${s}][${a}][${t}] = ${p} is not a probability`);
        sum += p;
      }
      if (Math.abs(sum - 1) > tol) fail(`P[${s}][${a}] sums to ${sum}, not 1`);
      if (typeof m.R[s][a] !== 'number' || !Number.isFinite(m.R[s][a])) fail(`R[${s}][${a}] = ${m.R[s][a]} is not finite`);
    }
  }
  if (m.prior !== undefined) {
    if (!Array.isArray(m.prior) || m.prior.length !== S) fail(`"prior" must have ${S} rows`);
    for (let s = 0; s < S; s++) {
      const row = m.prior[s];
      if (!Array.isArray(row) || row.length !== A) fail(`prior[${s}] must have ${A} entries`);
      let sum = 0;
      for (let a = 0; a < A; a++) {
        if (!(row[a] >= 0)) fail(`prior[${s}][${a}] = ${row[a]} is negative or not a number`);
        sum += row[a];
      }
      if (Math.abs(sum - 1) > tol) fail(`prior[${s}] sums to ${sum}, not 1`);
    }
  }
  if (m.terminal !== undefined) {
    if (!Array.isArray(m.terminal)) fail('"terminal" must be an array of state indices');
    for (const t of m.terminal!) {
      if (!Number.isInteger(t) || t < 0 || t >= S) fail(`terminal state ${t} out of range [0, ${S})`);
      for (let a = 0; a < A; a++) {
        if (Math.abs(m.P[t][a][t] - 1) > tol) fail(`terminal state ${t} must absorb: P[${t}][${a}][${t}] = ${m.P[t][a][t]}`);
        if (m.R[t][a] !== 0) fail(`terminal state ${t} must have zero reward: R[${t}][${a}] = ${m.R[t][a]}`);
      }
    }
  }
  return m;
}

/** Draw s' ~ P[s][a] with one uniform number u in [0, 1). */
export function sampleNext(P: number[][][], s: number, a: number, u: number): number {
  const row = P[s][a];
  let acc = 0;
  let last = -1;
  for (let t = 0; t < row.length; t++) {
    if (row[t] <= 0) continue;
    acc += row[t];
    last = t;
    if (u < acc) return t;
  }
  return last; // u beyond the rounded sum: the last state with mass
}
