/**
 * KL-regularised policy improvement (MATH §5):
 *
 *   π(a|s) = μ(a|s) exp(Q(s,a)/α) / Z(s),   V(s) = α log Z(s).
 *
 * Two entries, for two different needs:
 *  - `improvePolicy`: THE policy of memq's agents — Mem-Q acting (lib/agent/memq.ts) and the
 *    E-step of Mem-EM (lib/train/memEm.ts) — through the native `klImprove` kernel (float32 in
 *    and out, float64 inside), one call for one or many states. α = 0 is the kernel's greedy
 *    limit: uniform over the actions whose Q equals the maximum on the support of μ.
 *  - `klImproveRow` / `klImproveRows`: the same operator in float64 for the exact solvers of
 *    finite MDPs (§6, lib/policy/solvers.ts) and the tabular soft-TD learner (§7,
 *    lib/policy/td.ts), which need float64 to reach their fixed points to 1e-10.
 * There is no run-time fallback between them: without the addon, improvePolicy throws the
 * addon's error.
 */
// The addon itself is loaded lazily, on the first native call.
import { klImprove as nativeKlImprove } from '../retrieval';

/** One state's row: log μ(·|s) (−∞ allowed: μ = 0) and Q(s, ·) over its admissible actions. */
export interface PolicyRow {
  logPrior: ArrayLike<number>;
  q: ArrayLike<number>;
}

/** π(·|s) per row (one Float32Array of the row's length each) and V(s) per row. */
export interface ImprovedPolicy {
  policy: Float32Array[];
  value: Float32Array;
}

const asFloat32 = (x: ArrayLike<number>): Float32Array => (x instanceof Float32Array ? x : Float32Array.from(x));

/**
 * π ∝ μ exp(Q/α) and V = α log Σ μ exp(Q/α) (MATH §5) for the admissible actions of one or many
 * states, in one native klImprove call. One row is passed to the kernel as it is (no packing, no
 * copy when its arrays are Float32Arrays); several are packed ragged (rowLengths) into one batch.
 * Row r's policy is a view of row r of the batch.
 */
export function improvePolicy(rows: readonly PolicyRow[], alpha: number): ImprovedPolicy {
  rows.forEach((r, i) => {
    if (r.logPrior.length !== r.q.length) {
      throw new RangeError(`improvePolicy: rows[${i}] has ${r.logPrior.length} log-prior entries and ${r.q.length} values (one each per action)`);
    }
  });
  if (rows.length === 1) {
    const { logPrior, q } = rows[0];
    const r = nativeKlImprove({ logPrior: asFloat32(logPrior), q: asFloat32(q), rows: 1, cols: q.length, alpha });
    return { policy: [r.policy], value: r.value };
  }
  let cols = 0;
  for (const r of rows) cols = Math.max(cols, r.q.length);
  const logPrior = new Float32Array(rows.length * cols).fill(-Infinity);
  const q = new Float32Array(rows.length * cols);
  const rowLengths = new Int32Array(rows.length);
  rows.forEach((r, i) => {
    logPrior.set(r.logPrior, i * cols);
    q.set(r.q, i * cols);
    rowLengths[i] = r.q.length;
  });
  const out = nativeKlImprove({ logPrior, q, rows: rows.length, cols, alpha, rowLengths });
  return { policy: rows.map((r, i) => out.policy.subarray(i * cols, i * cols + r.q.length)), value: out.value };
}

/**
 * The same operator for one row in float64 (the exact solvers' and the tabular learner's), in
 * log space around c = max over the support of Q so that neither small nor large α loses
 * precision: V = c + α log Σ μ exp((Q − c)/α). Rows with μ = 0 get π = 0. α = 0 is the hard
 * limit: V = max over the support, π ∝ μ on the argmax set. α = ∞ gives π = μ and V = Σ μ Q.
 */
export function klImproveRow(
  mu: ArrayLike<number>,
  muOff: number,
  q: ArrayLike<number>,
  qOff: number,
  n: number,
  alpha: number,
  piOut?: Float64Array | number[],
  piOff = 0,
): number {
  let c = -Infinity;
  let any = false;
  for (let a = 0; a < n; a++) {
    if (mu[muOff + a] > 0) {
      any = true;
      const qa = q[qOff + a];
      if (qa > c) c = qa;
    }
  }
  if (!any) throw new Error('klImproveRow: the prior row has no positive entry');
  if (alpha === Infinity) {
    let v = 0;
    for (let a = 0; a < n; a++) {
      const m = mu[muOff + a];
      if (piOut) piOut[piOff + a] = m;
      if (m > 0) v += m * q[qOff + a];
    }
    return v;
  }
  if (alpha === 0) {
    let mass = 0;
    for (let a = 0; a < n; a++) if (mu[muOff + a] > 0 && q[qOff + a] === c) mass += mu[muOff + a];
    if (piOut) {
      for (let a = 0; a < n; a++) {
        const m = mu[muOff + a];
        piOut[piOff + a] = m > 0 && q[qOff + a] === c ? m / mass : 0;
      }
    }
    return c;
  }
  // ℓ_a = log μ_a + (Q_a − c)/α ≤ log μ_a ; m = max ℓ.
  let m = -Infinity;
  let muSum = 0;
  for (let a = 0; a < n; a++) {
    const mua = mu[muOff + a];
    if (mua > 0) {
      muSum += mua;
      const l = Math.log(mua) + (q[qOff + a] - c) / alpha;
      if (l > m) m = l;
    }
  }
  let sumExp = 0;
  let sumExpm1 = 0; // Σ μ (exp(x) − 1): accurate when Σ μ exp(x) is close to Σ μ (large α)
  for (let a = 0; a < n; a++) {
    const mua = mu[muOff + a];
    if (mua > 0) {
      const x = (q[qOff + a] - c) / alpha;
      sumExp += Math.exp(Math.log(mua) + x - m);
      sumExpm1 += mua * Math.expm1(x);
    }
  }
  if (piOut) {
    for (let a = 0; a < n; a++) {
      const mua = mu[muOff + a];
      piOut[piOff + a] = mua > 0 ? Math.exp(Math.log(mua) + (q[qOff + a] - c) / alpha - m) / sumExp : 0;
    }
  }
  // log Σ μ e^x = log(muSum + sumExpm1); prefer log1p when the ratio is near 1.
  const rel = sumExpm1 / muSum;
  const logZ = rel > -0.5 ? Math.log(muSum) + Math.log1p(rel) : m + Math.log(sumExp);
  return c + alpha * logZ;
}

/** Batched wrapper: rows × cols prior μ and Q (row-major); returns π and V. */
export function klImproveRows(
  mu: ArrayLike<number>,
  q: ArrayLike<number>,
  rows: number,
  cols: number,
  alpha: number,
): { policy: Float64Array; value: Float64Array } {
  const policy = new Float64Array(rows * cols);
  const value = new Float64Array(rows);
  for (let r = 0; r < rows; r++) value[r] = klImproveRow(mu, r * cols, q, r * cols, cols, alpha, policy, r * cols);
  return { policy, value };
}
