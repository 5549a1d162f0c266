/** Linear scales and "nice" axis ticks (steps of 1, 2 or 5 × 10^k). */

export interface NiceTicks {
  /** the nice step between ticks */
  step: number;
  /** first tick <= min and last tick >= max (the "nice" extended range) */
  min: number;
  max: number;
  ticks: number[];
}

const EPS = 1e-9;

/** Round away float noise such as 0.30000000000000004. */
function clean(v: number): number {
  const r = Number(v.toPrecision(12));
  return r === 0 ? 0 : r; // no -0
}

/**
 * The smallest step in {1, 2, 5} × 10^k such that the nice range
 * [floor(min/step)·step, ceil(max/step)·step] has at most `maxIntervals` intervals.
 */
export function niceTicks(min: number, max: number, maxIntervals = 5): NiceTicks {
  if (!Number.isFinite(min) || !Number.isFinite(max)) throw new RangeError('niceTicks: non-finite bounds');
  if (min > max) [min, max] = [max, min];
  const n = Math.max(1, Math.floor(maxIntervals));
  if (max - min === 0) {
    const d = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= d;
    max += d;
  }
  let k = Math.floor(Math.log10((max - min) / n));
  for (;;) {
    for (const m of [1, 2, 5]) {
      const step = m * 10 ** k;
      const lo = Math.floor(min / step + EPS);
      const hi = Math.ceil(max / step - EPS);
      if (hi - lo <= n) {
        const ticks: number[] = [];
        for (let i = lo; i <= hi; i++) ticks.push(clean(i * step));
        return { step: clean(step), min: ticks[0], max: ticks[ticks.length - 1], ticks };
      }
    }
    k++;
  }
}

/** Map [d0, d1] linearly onto [r0, r1]. */
export function linearScale(d0: number, d1: number, r0: number, r1: number): (v: number) => number {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) / span) * (r1 - r0);
}

/**
 * Tick labels, all with the same number of decimals: the fewest that show every tick exactly.
 * Values of 10 000 and more use k / M suffixes.
 */
export function formatTicks(ticks: number[], step: number): string[] {
  const maxAbs = Math.max(0, ...ticks.map(Math.abs));
  const [div, suffix] = maxAbs >= 1e7 ? [1e6, 'M'] : maxAbs >= 1e4 ? [1e3, 'k'] : [1, ''];
  const vals = [...ticks, step].map((t) => t / div);
  let decimals = 0;
  while (decimals < 12 && !vals.every((v) => Math.abs(Number(v.toFixed(decimals)) - v) <= 1e-9 * Math.max(1, Math.abs(v)))) decimals++;
  return ticks.map((t) => {
    const s = (t / div).toFixed(decimals);
    if (Number(s) === 0) return suffix ? '0' : s.replace('-', '');
    return s + suffix;
  });
}
