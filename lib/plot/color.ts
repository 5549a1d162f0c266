import type { Rgba } from './types';

/**
 * Okabe–Ito colour-blind-safe palette, reordered so the first colours have good contrast on white
 * (black and yellow, the weakest on a white background next to black text, come last).
 */
export const PALETTE: readonly string[] = [
  '#0072B2', // blue
  '#D55E00', // vermillion
  '#009E73', // bluish green
  '#E69F00', // orange
  '#CC79A7', // reddish purple
  '#56B4E9', // sky blue
  '#000000', // black
  '#F0E442', // yellow
];

export function rgba(r: number, g: number, b: number, a = 1): Rgba {
  return { r, g, b, a };
}

/** Parse '#rgb', '#rrggbb' or 'rgb(r, g, b)'; anything else gives undefined. */
export function parseColor(s: string | undefined): Rgba | undefined {
  if (!s) return undefined;
  const t = s.trim();
  let m = /^#([0-9a-f])([0-9a-f])([0-9a-f])$/i.exec(t);
  if (m) return rgba(parseInt(m[1] + m[1], 16), parseInt(m[2] + m[2], 16), parseInt(m[3] + m[3], 16));
  m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(t);
  if (m) return rgba(parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16));
  m = /^rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)$/i.exec(t);
  if (m) {
    const c = [m[1], m[2], m[3]].map((v) => Math.min(255, Number(v)));
    return rgba(c[0], c[1], c[2]);
  }
  return undefined;
}

/** Colour of series `i`: its own valid colour, else the palette entry. */
export function seriesColor(color: string | undefined, i: number): Rgba {
  return parseColor(color) ?? (parseColor(PALETTE[i % PALETTE.length]) as Rgba);
}

export function toHex(c: Rgba): string {
  const h = (v: number) => Math.round(Math.max(0, Math.min(255, v))).toString(16).padStart(2, '0');
  return `#${h(c.r)}${h(c.g)}${h(c.b)}`;
}
