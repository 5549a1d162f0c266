/**
 * Plain TypeScript references of the retrieval kernels (MATH §2-§5), in float64, written for
 * obviousness rather than speed. The native kernels are tested against these.
 */
export type RefKernel = { kernel: 'gaussian'; bandwidth: number } | { kernel: 'cosine'; kappa: number } | { kernel: 'inverse'; delta: number };

export function refDist2(q: Float32Array, qi: number, k: Float32Array, ki: number, d: number): number {
  let s = 0;
  for (let j = 0; j < d; j++) {
    const t = q[qi * d + j] - k[ki * d + j];
    s += t * t;
  }
  return s;
}

export function refCos(q: Float32Array, qi: number, k: Float32Array, ki: number, d: number): number {
  let dot = 0, nq = 0, nk = 0;
  for (let j = 0; j < d; j++) {
    const a = q[qi * d + j], b = k[ki * d + j];
    dot += a * b;
    nq += a * a;
    nk += b * b;
  }
  return nq === 0 || nk === 0 ? 0 : dot / Math.sqrt(nq * nk);
}

export function refKernelValue(p: RefKernel, dist2: number, cos: number): number {
  if (p.kernel === 'gaussian') return Math.exp(-dist2 / (2 * p.bandwidth * p.bandwidth));
  if (p.kernel === 'cosine') return Math.exp(p.kappa * cos);
  return 1 / (dist2 + p.delta);
}

export interface RefHit {
  row: number;
  score: number; // the ordering score: -dist2, or cos for the cosine kernel
  kernel: number;
  dist2: number;
}

/** All alive rows for one query, best first: score descending, ties to the lower row. */
export function refRanked(p: RefKernel, q: Float32Array, qi: number, keys: Float32Array, n: number, d: number, alive?: boolean[]): RefHit[] {
  const hits: RefHit[] = [];
  for (let i = 0; i < n; i++) {
    if (alive && !alive[i]) continue;
    const dist2 = refDist2(q, qi, keys, i, d);
    const cos = refCos(q, qi, keys, i, d);
    const score = p.kernel === 'cosine' ? cos : -dist2;
    hits.push({ row: i, score, kernel: refKernelValue(p, dist2, cos), dist2 });
  }
  hits.sort((a, b) => b.score - a.score || a.row - b.row);
  return hits;
}

/** MATH §3 with the void case. */
export function refKernelWeightedValue(kernels: number[], values: number[], voidWeight: number, voidValue: number) {
  let sk = 0, skq = 0;
  for (let i = 0; i < kernels.length; i++) {
    sk += kernels[i];
    skq += kernels[i] * values[i];
  }
  if (sk + voidWeight === 0) return { value: voidValue, confidence: 0 };
  return { value: (skq + voidWeight * voidValue) / (sk + voidWeight), confidence: sk / (sk + voidWeight) };
}

/** MATH §5 for one row, in float64 with explicit max subtraction. */
export function refKlRow(logPrior: number[], q: number[], alpha: number): { policy: number[]; value: number } {
  const n = logPrior.length;
  const support = logPrior.map((l) => l > -Infinity);
  if (!support.some(Boolean)) return { policy: new Array(n).fill(0), value: -Infinity };
  if (alpha === 0) {
    let best = -Infinity;
    for (let i = 0; i < n; i++) if (support[i]) best = Math.max(best, q[i]);
    const arg = q.map((v, i) => support[i] && v === best);
    const cnt = arg.filter(Boolean).length;
    return { policy: arg.map((a) => (a ? 1 / cnt : 0)), value: best };
  }
  const l = logPrior.map((lp, i) => (support[i] ? lp + q[i] / alpha : -Infinity));
  const m = Math.max(...l.filter((x) => x > -Infinity));
  let z = 0;
  for (const x of l) if (x > -Infinity) z += Math.exp(x - m);
  return { policy: l.map((x) => (x > -Infinity ? Math.exp(x - m) / z : 0)), value: alpha * (m + Math.log(z)) };
}
