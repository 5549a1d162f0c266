/**
 * Pure-TS reference kernels (MATH §2) and the kernel-weighted value with the void case (§3),
 * in float64. The native MemoryIndex computes the same in float32 for batches; these are for
 * small computations (bandwidth selection, tests, the JS fallback index).
 */
export type KernelName = 'gaussian' | 'cosine' | 'inverse';

/** Kernel settings as MemoryIndex reports them (`index.kernel`). */
export interface KernelSettings {
  kernel: KernelName;
  /** Gaussian bandwidth h. */
  bandwidth?: number;
  /** Cosine concentration κ. */
  kappa?: number;
  /** Inverse-distance δ (1e-3 by default). */
  delta?: number;
}

export function kernelParam(k: KernelSettings): number {
  if (k.kernel === 'gaussian') return k.bandwidth ?? 1;
  if (k.kernel === 'cosine') return k.kappa ?? 1;
  return k.delta ?? 1e-3;
}

/** Kernel value from ‖x−y‖², and (for cosine) x·y, ‖x‖², ‖y‖². */
export function kernelFromParts(k: KernelSettings, dist2: number, dot: number, nx2: number, ny2: number): number {
  switch (k.kernel) {
    case 'gaussian': {
      const h = k.bandwidth ?? 1;
      return Math.exp(-dist2 / (2 * h * h));
    }
    case 'cosine': {
      const denom = Math.sqrt(nx2 * ny2);
      const cos = denom > 0 ? dot / denom : 0;
      return Math.exp((k.kappa ?? 1) * cos);
    }
    case 'inverse':
      return 1 / (dist2 + (k.delta ?? 1e-3));
    default:
      throw new Error(`unknown kernel ${(k as KernelSettings).kernel}`);
  }
}

/** Kernel between rows x[xi*d..] and y[yi*d..]. */
export function kernelBetween(k: KernelSettings, x: ArrayLike<number>, xi: number, y: ArrayLike<number>, yi: number, d: number): number {
  let dist2 = 0;
  let dot = 0;
  let nx2 = 0;
  let ny2 = 0;
  for (let j = 0; j < d; j++) {
    const a = x[xi * d + j];
    const b = y[yi * d + j];
    const diff = a - b;
    dist2 += diff * diff;
    dot += a * b;
    nx2 += a * a;
    ny2 += b * b;
  }
  return kernelFromParts(k, dist2, dot, nx2, ny2);
}

/**
 * MATH §3: Q̂ = (Σ k_i q_i + κ∅ q∅) / (Σ k_i + κ∅), λ = Σ k_i / (Σ k_i + κ∅).
 * With no mass at all (no cases, κ∅ = 0) the read is the void value with λ = 0.
 */
export function kernelWeightedValue(
  k: ArrayLike<number>,
  q: ArrayLike<number>,
  voidWeight = 0,
  voidValue = 0,
): { value: number; confidence: number } {
  let sk = 0;
  let skq = 0;
  for (let i = 0; i < k.length; i++) {
    sk += k[i];
    skq += k[i] * q[i];
  }
  const z = sk + voidWeight;
  if (!(z > 0)) return { value: voidValue, confidence: 0 };
  return { value: (skq + voidWeight * voidValue) / z, confidence: sk / z };
}
