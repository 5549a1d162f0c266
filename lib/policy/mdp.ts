/**
 * Finite MDPs with a prior μ(a|s): the JSON file format, its validator and the dense float64
 * form the exact solvers work on (MATH §6).
 *
 * File: { "states": S, "actions": A, "P": [S][A][S], "R": [S][A],
 *         "prior": [S][A] (optional; uniform if absent), "terminal": [indices] (optional),
 *         "gamma": γ (optional; a CLI flag overrides it) }
 */
import * as fs from 'fs';
import type { MdpJson as BaseMdpJson } from '../envs/gridworld/mdp';

/**
 * The exact model of a finite MDP as JSON. The base shape is shared with the tabular
 * environments (lib/envs/gridworld/mdp.ts exports their model in it); the solver also reads an
 * optional discount and display names.
 */
export interface MdpJson extends BaseMdpJson {
  /** Discount factor, optional (a CLI flag overrides it). */
  gamma?: number;
  /** Optional state / action names for display. */
  stateNames?: string[];
  actionNames?: string[];
}

/** Dense float64 form: P is S·A·S row-major, R and prior are S·A. */
export interface FiniteMdp {
  S: number;
  A: number;
  P: Float64Array;
  R: Float64Array;
  prior: Float64Array;
  terminal: Uint8Array;
  gamma?: number;
}

export class MdpValidationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MdpValidationError';
  }
}

export const PROB_TOL = 1e-9;

/**
 * Size limits of an MDP file. The solvers hold P densely (S·A·S float64) and soft policy
 * iteration an S×S system, so: at most MDP_MAX_STATES states, MDP_MAX_ACTIONS actions, and
 * S·A·S ≤ MDP_MAX_TRANSITIONS (512 MiB of float64).
 */
export const MDP_MAX_STATES = 8192;
export const MDP_MAX_ACTIONS = 4096;
export const MDP_MAX_TRANSITIONS = 1 << 26;

/** A sum for an error message: 15 significant digits, so 0.8999999999999999 reads 0.9. */
function fmtSum(x: number): string {
  return String(Number(x.toPrecision(15)));
}

function fail(msg: string): never {
  throw new MdpValidationError(msg);
}

function checkCount(name: string, v: unknown, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) fail(`${name} must be a positive integer at most ${max}, got ${JSON.stringify(v)}`);
  return v;
}

function checkArray(name: string, v: unknown, len: number): unknown[] {
  if (!Array.isArray(v)) fail(`${name} must be an array of length ${len}, got ${v === null ? 'null' : typeof v}`);
  if (v.length !== len) fail(`${name} has length ${v.length}, expected ${len}`);
  return v;
}

function checkNumber(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${name} must be a finite number, got ${JSON.stringify(v)}`);
  return v;
}

/** Discount factor must lie in [0, 1). */
export function validateGamma(gamma: unknown, name = 'gamma'): number {
  if (typeof gamma !== 'number' || !Number.isFinite(gamma) || gamma < 0 || gamma >= 1) {
    fail(`${name} must be in [0, 1), got ${JSON.stringify(gamma)}`);
  }
  return gamma;
}

/** Temperature must be ≥ 0 (0 is the hard, greedy limit). */
export function validateAlpha(alpha: unknown, name = 'alpha'): number {
  if (typeof alpha !== 'number' || Number.isNaN(alpha) || alpha < 0) fail(`${name} must be >= 0, got ${JSON.stringify(alpha)}`);
  return alpha;
}

/**
 * Validate a parsed MDP JSON object and convert it to dense form. Errors name the field and
 * index, e.g. `P[2][1] sums to 0.98, expected 1 within 1e-9`. Prior rows are renormalised to
 * sum to exactly 1 after validation.
 */
export function mdpFromJson(json: unknown): FiniteMdp {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail('the MDP must be a JSON object');
  const j = json as Record<string, unknown>;
  const S = checkCount('states', j.states, MDP_MAX_STATES);
  const A = checkCount('actions', j.actions, MDP_MAX_ACTIONS);
  if (S * A * S > MDP_MAX_TRANSITIONS) {
    fail(`states² · actions = ${S * A * S} transition probabilities exceeds the limit of ${MDP_MAX_TRANSITIONS} (P is held densely in float64)`);
  }
  const P = new Float64Array(S * A * S);
  const R = new Float64Array(S * A);
  const prior = new Float64Array(S * A);
  const terminal = new Uint8Array(S);

  const Ps = checkArray('P', j.P, S);
  for (let s = 0; s < S; s++) {
    const row = checkArray(`P[${s}]`, Ps[s], A);
    for (let a = 0; a < A; a++) {
      const dist = checkArray(`P[${s}][${a}]`, row[a], S);
      let sum = 0;
      for (let t = 0; t < S; t++) {
        const p = checkNumber(`P[${s}][${a}][${t}]`, dist[t]);
        if (p < 0) fail(`P[${s}][${a}][${t}] is negative (${p})`);
        P[(s * A + a) * S + t] = p;
        sum += p;
      }
      if (Math.abs(sum - 1) > PROB_TOL) fail(`P[${s}][${a}] sums to ${fmtSum(sum)}, expected 1 within ${PROB_TOL}`);
    }
  }

  const Rs = checkArray('R', j.R, S);
  for (let s = 0; s < S; s++) {
    const row = checkArray(`R[${s}]`, Rs[s], A);
    for (let a = 0; a < A; a++) R[s * A + a] = checkNumber(`R[${s}][${a}]`, row[a]);
  }

  if (j.prior === undefined || j.prior === null) {
    prior.fill(1 / A);
  } else {
    const Ms = checkArray('prior', j.prior, S);
    for (let s = 0; s < S; s++) {
      const row = checkArray(`prior[${s}]`, Ms[s], A);
      let sum = 0;
      let positive = false;
      for (let a = 0; a < A; a++) {
        const p = checkNumber(`prior[${s}][${a}]`, row[a]);
        if (p < 0) fail(`prior[${s}][${a}] is negative (${p})`);
        if (p > 0) positive = true;
        prior[s * A + a] = p;
        sum += p;
      }
      if (!positive) fail(`prior[${s}] has no positive entry`);
      if (Math.abs(sum - 1) > PROB_TOL) fail(`prior[${s}] sums to ${fmtSum(sum)}, expected 1 within ${PROB_TOL}`);
      for (let a = 0; a < A; a++) prior[s * A + a] /= sum;
    }
  }

  if (j.terminal !== undefined && j.terminal !== null) {
    if (!Array.isArray(j.terminal)) fail('terminal must be an array of state indices');
    j.terminal.forEach((t, i) => {
      if (typeof t !== 'number' || !Number.isInteger(t) || t < 0 || t >= S) {
        fail(`terminal[${i}] must be a state index in [0, ${S}), got ${JSON.stringify(t)}`);
      }
      terminal[t] = 1;
    });
  }

  const mdp: FiniteMdp = { S, A, P, R, prior, terminal };
  if (j.gamma !== undefined && j.gamma !== null) mdp.gamma = validateGamma(j.gamma);
  return mdp;
}

/** Read and validate an MDP file; errors name the file. */
export function loadMdpFile(path: string): FiniteMdp {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code === 'EACCES' ? 'permission denied' : 'unreadable';
    throw new MdpValidationError(`cannot read ${path} (${why})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new MdpValidationError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  try {
    return mdpFromJson(json);
  } catch (err) {
    if (err instanceof MdpValidationError) throw new MdpValidationError(`${path}: ${err.message}`);
    throw err;
  }
}

/** Dense form back to JSON (for tests and fixtures). */
export function mdpToJson(mdp: FiniteMdp): MdpJson {
  const { S, A } = mdp;
  const P: number[][][] = [];
  const R: number[][] = [];
  const prior: number[][] = [];
  for (let s = 0; s < S; s++) {
    P.push([]);
    R.push([]);
    prior.push([]);
    for (let a = 0; a < A; a++) {
      P[s].push(Array.from(mdp.P.subarray((s * A + a) * S, (s * A + a + 1) * S)));
      R[s].push(mdp.R[s * A + a]);
      prior[s].push(mdp.prior[s * A + a]);
    }
  }
  const terminal: number[] = [];
  for (let s = 0; s < S; s++) if (mdp.terminal[s]) terminal.push(s);
  const out: MdpJson = { states: S, actions: A, P, R, prior, terminal };
  if (mdp.gamma !== undefined) out.gamma = mdp.gamma;
  return out;
}
