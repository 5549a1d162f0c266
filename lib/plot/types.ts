/** Public chart description + the small scene graph that both back-ends (SVG, raster) draw. */

export interface Series {
  name: string;
  x: number[];
  y: number[];
  /** optional spread band, same length as y */
  lo?: number[];
  hi?: number[];
  /** '#rgb', '#rrggbb' or 'rgb(r,g,b)'; defaults to the palette colour for the series index */
  color?: string;
  dashed?: boolean;
  /** draw a marker at every point (e.g. evaluation points), not only at isolated ones */
  markers?: boolean;
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** default 800 */
  width?: number;
  /** default 480 */
  height?: number;
  yMin?: number;
  yMax?: number;
  /**
   * Pixels kept free between the plot's top and bottom edges and the ends of the y domain
   * (default 0), so that a curve running at yMin or yMax is not hidden under the axis line.
   */
  yInset?: number;
}

/** Colour with 0..255 channels and alpha in 0..1. */
export interface Rgba {
  r: number;
  g: number;
  b: number;
  a: number;
}

export type Pt = [number, number];

export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** Drawing primitives, in output pixel coordinates (y down). */
export type Prim =
  | { t: 'rect'; x: number; y: number; w: number; h: number; fill: Rgba; cls?: string }
  /** straight line with butt caps (grid, axes, ticks, legend swatches) */
  | { t: 'line'; x1: number; y1: number; x2: number; y2: number; color: Rgba; width: number; dash?: number[]; cls?: string }
  /** polyline(s) with round joins/caps; each run is drawn separately (NaN gaps) */
  | { t: 'path'; runs: Pt[][]; color: Rgba; width: number; dash?: number[]; clip?: Rect; cls?: string; name?: string }
  /** filled polygon(s), one per run */
  | { t: 'poly'; runs: Pt[][]; fill: Rgba; clip?: Rect; cls?: string; name?: string }
  | { t: 'dot'; x: number; y: number; r: number; fill: Rgba; clip?: Rect; cls?: string; name?: string }
  /**
   * Text in the built-in 5x7 font scaled by `size` (advance 6*size, cap height 7*size).
   * (x, y) is the anchor point on the baseline; `rotate` turns the text -90° about it (reads bottom-up).
   */
  | { t: 'text'; x: number; y: number; text: string; size: number; anchor: 'start' | 'middle' | 'end'; color: Rgba; rotate?: boolean; cls?: string };

export interface Scene {
  width: number;
  height: number;
  background: Rgba;
  /** one list of primitives per chart (grids have several) */
  charts: Prim[][];
}
