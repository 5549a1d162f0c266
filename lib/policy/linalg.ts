/**
 * Dense linear solve by Gaussian elimination with partial pivoting (float64, in place).
 * Used for exact policy evaluation: (I − γ P_π) V = r_π − α KL_π (MATH §6).
 */
export function solveLinearSystem(A: Float64Array, b: Float64Array, n: number): Float64Array {
  if (A.length !== n * n || b.length !== n) throw new Error('solveLinearSystem: shape mismatch');
  for (let k = 0; k < n; k++) {
    // Partial pivoting: the largest |entry| in column k at or below the diagonal.
    let piv = k;
    let best = Math.abs(A[k * n + k]);
    for (let i = k + 1; i < n; i++) {
      const v = Math.abs(A[i * n + k]);
      if (v > best) {
        best = v;
        piv = i;
      }
    }
    if (!(best > 0)) throw new Error(`solveLinearSystem: singular matrix (column ${k})`);
    if (piv !== k) {
      for (let j = 0; j < n; j++) {
        const t = A[k * n + j];
        A[k * n + j] = A[piv * n + j];
        A[piv * n + j] = t;
      }
      const t = b[k];
      b[k] = b[piv];
      b[piv] = t;
    }
    const d = A[k * n + k];
    for (let i = k + 1; i < n; i++) {
      const f = A[i * n + k] / d;
      if (f === 0) continue;
      A[i * n + k] = 0;
      for (let j = k + 1; j < n; j++) A[i * n + j] -= f * A[k * n + j];
      b[i] -= f * b[k];
    }
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = b[i];
    for (let j = i + 1; j < n; j++) s -= A[i * n + j] * x[j];
    x[i] = s / A[i * n + i];
  }
  return x;
}
