/**
 * Raster back-end: draws a Scene into a supersampled RGB framebuffer (ss×ss samples per pixel, each
 * sample is inside or outside a shape), then box-filters down to an RGBA image. Anti-aliasing comes
 * from the downsampling; alpha (bands) is blended per sample.
 */
import { ADVANCE, CAP_H, fontChars, glyphCells, textWidth } from './font';
import type { Prim, Pt, Rect, Rgba, Scene } from './types';

export class Raster {
  /** samples per pixel along each axis */
  readonly ss: number;
  readonly W: number;
  readonly H: number;
  private readonly buf: Uint8ClampedArray;
  private clip = { x0: 0, y0: 0, x1: 0, y1: 0 };

  constructor(readonly width: number, readonly height: number, bg: Rgba, ss?: number) {
    const px = width * height;
    this.ss = ss ?? (px <= 1.2e6 ? 4 : px <= 4e6 ? 3 : 2);
    this.W = width * this.ss;
    this.H = height * this.ss;
    this.buf = new Uint8ClampedArray(this.W * this.H * 3);
    this.buf.set([bg.r, bg.g, bg.b]);
    for (let n = 3; n < this.buf.length; n *= 2) this.buf.copyWithin(n, 0, n); // doubling fill
    this.setClip();
  }

  /** Restrict drawing to a rectangle (output pixels); no argument = whole image. */
  setClip(r?: Rect): void {
    const s = this.ss;
    this.clip = r
      ? {
          x0: Math.max(0, Math.round(r.x * s)),
          y0: Math.max(0, Math.round(r.y * s)),
          x1: Math.min(this.W, Math.round((r.x + r.w) * s)),
          y1: Math.min(this.H, Math.round((r.y + r.h) * s)),
        }
      : { x0: 0, y0: 0, x1: this.W, y1: this.H };
  }

  /** Fill samples of row `y` whose centres lie in [xa, xb) (sample coordinates). */
  private span(y: number, xa: number, xb: number, c: Rgba): void {
    if (y < this.clip.y0 || y >= this.clip.y1) return;
    const x0 = Math.max(this.clip.x0, Math.ceil(xa - 0.5));
    const x1 = Math.min(this.clip.x1, Math.ceil(xb - 0.5));
    const b = this.buf;
    let i = (y * this.W + x0) * 3;
    if (c.a >= 1) {
      for (let x = x0; x < x1; x++, i += 3) {
        b[i] = c.r;
        b[i + 1] = c.g;
        b[i + 2] = c.b;
      }
    } else if (c.a > 0) {
      for (let x = x0; x < x1; x++, i += 3) {
        b[i] += (c.r - b[i]) * c.a;
        b[i + 1] += (c.g - b[i + 1]) * c.a;
        b[i + 2] += (c.b - b[i + 2]) * c.a;
      }
    }
  }

  /** Fill a polygon (output-pixel coordinates) with the non-zero winding rule. */
  fillPolygon(pts: Pt[], c: Rgba): void {
    if (pts.length < 3) return;
    const s = this.ss;
    const P = pts.map(([x, y]) => [x * s, y * s]);
    let ymin = Infinity;
    let ymax = -Infinity;
    for (const p of P) {
      ymin = Math.min(ymin, p[1]);
      ymax = Math.max(ymax, p[1]);
    }
    const r0 = Math.max(this.clip.y0, Math.floor(ymin));
    const r1 = Math.min(this.clip.y1 - 1, Math.ceil(ymax));
    const hits: Array<[number, number]> = [];
    for (let row = r0; row <= r1; row++) {
      const cy = row + 0.5;
      hits.length = 0;
      for (let i = 0, j = P.length - 1; i < P.length; j = i++) {
        const [ax, ay] = P[j];
        const [bx, by] = P[i];
        if (ay <= cy !== by <= cy) hits.push([ax + ((cy - ay) * (bx - ax)) / (by - ay), by > ay ? 1 : -1]);
      }
      hits.sort((a, b) => a[0] - b[0]);
      let wind = 0;
      for (let k = 0; k < hits.length - 1; k++) {
        wind += hits[k][1];
        if (wind !== 0) this.span(row, hits[k][0], hits[k + 1][0], c);
      }
    }
  }

  fillCircle(cx: number, cy: number, r: number, c: Rgba): void {
    const s = this.ss;
    const X = cx * s;
    const Y = cy * s;
    const R = r * s;
    for (let row = Math.floor(Y - R); row <= Math.ceil(Y + R); row++) {
      const dy = row + 0.5 - Y;
      if (Math.abs(dy) > R) continue;
      const dx = Math.sqrt(R * R - dy * dy);
      this.span(row, X - dx, X + dx, c);
    }
  }

  fillRect(x: number, y: number, w: number, h: number, c: Rgba): void {
    const s = this.ss;
    for (let row = Math.round(y * s); row < Math.round((y + h) * s); row++) this.span(row, x * s, (x + w) * s, c);
  }

  /** A straight segment as a filled quad of the given width (butt ends). */
  segment(a: Pt, b: Pt, width: number, c: Rgba): void {
    const dx = b[0] - a[0];
    const dy = b[1] - a[1];
    const len = Math.hypot(dx, dy);
    if (len < 1e-9) return;
    const nx = (-dy / len) * (width / 2);
    const ny = (dx / len) * (width / 2);
    this.fillPolygon(
      [
        [a[0] + nx, a[1] + ny],
        [b[0] + nx, b[1] + ny],
        [b[0] - nx, b[1] - ny],
        [a[0] - nx, a[1] - ny],
      ],
      c,
    );
  }

  /** A polyline with round joins and caps (opaque colours only: overlaps are painted twice). */
  polyline(run: Pt[], width: number, c: Rgba): void {
    for (let i = 1; i < run.length; i++) this.segment(run[i - 1], run[i], width, c);
    for (const p of run) this.fillCircle(p[0], p[1], width / 2, c);
  }

  toRgba(): Buffer {
    const { width: w, height: h, ss, W, buf } = this;
    const out = Buffer.alloc(w * h * 4);
    const n = ss * ss;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        let r = 0;
        let g = 0;
        let b = 0;
        for (let sy = 0; sy < ss; sy++) {
          let i = ((y * ss + sy) * W + x * ss) * 3;
          for (let sx = 0; sx < ss; sx++, i += 3) {
            r += buf[i];
            g += buf[i + 1];
            b += buf[i + 2];
          }
        }
        const o = (y * w + x) * 4;
        out[o] = Math.round(r / n);
        out[o + 1] = Math.round(g / n);
        out[o + 2] = Math.round(b / n);
        out[o + 3] = 255;
      }
    }
    return out;
  }
}

/** Split a polyline into its "on" pieces for a dash pattern (the pattern runs on across vertices). */
export function dashRun(run: Pt[], dash: number[]): Pt[][] {
  if (!dash.length || dash.reduce((a, b) => a + b, 0) <= 0) return [run];
  const out: Pt[][] = [];
  let di = 0;
  let left = dash[0];
  let on = true;
  let cur: Pt[] = [run[0]];
  for (let i = 1; i < run.length; i++) {
    const a = run[i - 1];
    const b = run[i];
    const len = Math.hypot(b[0] - a[0], b[1] - a[1]);
    let pos = 0;
    while (len - pos > left) {
      pos += left;
      const t = pos / len;
      const p: Pt = [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t];
      if (on) {
        cur.push(p);
        out.push(cur);
        cur = [];
      } else cur = [p];
      on = !on;
      di = (di + 1) % dash.length;
      left = dash[di];
    }
    left -= len - pos;
    if (on) cur.push(b);
  }
  if (on && cur.length > 1) out.push(cur);
  return out;
}

function drawText(r: Raster, p: Extract<Prim, { t: 'text' }>): void {
  const s = p.size;
  const w = textWidth(p.text, s);
  const off = p.anchor === 'start' ? 0 : p.anchor === 'middle' ? -Math.round(w / 2) : -w;
  fontChars(p.text).forEach((ch, k) => {
    for (const [c, row] of glyphCells(ch)) {
      const u = off + (k * ADVANCE + c) * s; // along the text
      const v = (row - CAP_H) * s; // down from the baseline
      if (p.rotate) r.fillRect(p.x + v, p.y - u - s, s, s, p.color);
      else r.fillRect(p.x + u, p.y + v, s, s, p.color);
    }
  });
}

function drawPrim(r: Raster, p: Prim): void {
  r.setClip('clip' in p ? p.clip : undefined);
  switch (p.t) {
    case 'rect':
      r.fillRect(p.x, p.y, p.w, p.h, p.fill);
      break;
    case 'line':
      for (const piece of p.dash ? dashRun([[p.x1, p.y1], [p.x2, p.y2]], p.dash) : [[[p.x1, p.y1], [p.x2, p.y2]] as Pt[]])
        r.segment(piece[0], piece[piece.length - 1], p.width, p.color);
      break;
    case 'path':
      for (const run of p.runs) {
        if (run.length < 2) continue; // isolated points are drawn as markers
        for (const piece of p.dash ? dashRun(run, p.dash) : [run]) r.polyline(piece, p.width, p.color);
      }
      break;
    case 'poly':
      for (const run of p.runs) r.fillPolygon(run, p.fill);
      break;
    case 'dot':
      r.fillCircle(p.x, p.y, p.r, p.fill);
      break;
    case 'text':
      drawText(r, p);
      break;
  }
}

/** Rasterise a scene to width×height RGBA (8 bits per channel, opaque). */
export function renderScene(scene: Scene, ss?: number): Buffer {
  const r = new Raster(scene.width, scene.height, scene.background, ss);
  for (const prims of scene.charts) for (const p of prims) drawPrim(r, p);
  return r.toRgba();
}
