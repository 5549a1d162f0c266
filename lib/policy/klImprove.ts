/**
 * KL-regularised policy improvement (MATH §5), one row at a time, in float64.
 *
 *   π(a|s) = μ(a|s) exp(Q(s,a)/α) / Z(s),   V(s) = α log Z(s).
 *
 * Computed in log space around c = max over the support of Q, so that neither small nor large
 * α loses precision: V = c + α log Σ μ exp((Q − c)/α). Rows with μ = 0 get π = 0.
 * α = 0 is the hard limit: V = max over the support, π ∝ μ on the argmax set.
 * α = ∞ gives π = μ and V = Σ μ Q.
 *
 * This is the pure-TS reference; the native `klImprove` does the same for batches in float32.
 */
// The addon itself is loaded lazily, on the first native call.
import { klImprove as nativeKlImprove } from '../retrieval';

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

/**
 * The same operator for a ragged batch through the native kernel (float32, one call):
 * row r has rowLengths[r] valid entries of `cols`. μ = 0 becomes log μ = −∞ (π = 0 there).
 * Falls back to the float64 reference above when the addon is not built.
 */
export function klImproveBatch(
  mu: ArrayLike<number>,
  q: ArrayLike<number>,
  rows: number,
  cols: number,
  alpha: number,
  rowLengths?: ArrayLike<number>,
): { policy: Float32Array; value: Float32Array; native: boolean } {
  const logPrior = new Float32Array(rows * cols);
  const qf = new Float32Array(rows * cols);
  for (let i = 0; i < rows * cols; i++) {
    logPrior[i] = mu[i] > 0 ? Math.log(mu[i]) : -Infinity;
    qf[i] = q[i] ?? 0;
  }
  const lens = rowLengths ? Int32Array.from(rowLengths) : undefined;
  try {
    const r = nativeKlImprove({ logPrior, q: qf, rows, cols, alpha, rowLengths: lens });
    return { ...r, native: true };
  } catch (err) {
    if (!/native addon is not built/.test(String((err as Error)?.message))) throw err;
  }
  const policy = new Float32Array(rows * cols);
  const value = new Float32Array(rows);
  const pi = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const n = lens ? lens[r] : cols;
    if (n === 0) {
      value[r] = -Infinity; // log of an empty sum, as the native kernel reports it
      continue;
    }
    value[r] = klImproveRow(mu, r * cols, q, r * cols, n, alpha, pi, 0);
    for (let a = 0; a < n; a++) policy[r * cols + a] = pi[a];
  }
  return { policy, value, native: false };
}
