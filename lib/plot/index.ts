/**
 * Learning-curve plots rendered in pure JS: SVG documents and PNG files from the same layout.
 *
 *   lineChartSvg(spec) / lineChartPng(spec)        one chart
 *   gridSvg(charts, cols) / gridPng(charts, cols)  small multiples side by side (memq compare)
 */
import { chartPrims, DEFAULT_HEIGHT, DEFAULT_WIDTH, STYLE } from './chart';
import { encodePng, rgbaToRgb } from './png';
import { renderScene } from './raster';
import { sceneToSvg } from './svg';
import type { ChartSpec, Scene } from './types';

export type { ChartSpec, Series } from './types';
export { niceTicks, formatTicks, linearScale } from './scale';
export type { NiceTicks } from './scale';
export { chartLayout } from './chart';
export type { ChartLayout } from './chart';
export { PALETTE } from './color';
export { encodePng } from './png';
export { escapeXml } from './svg';

const dims = (c: ChartSpec) => ({
  w: Math.max(120, Math.round(c.width ?? DEFAULT_WIDTH)),
  h: Math.max(100, Math.round(c.height ?? DEFAULT_HEIGHT)),
});

function singleScene(spec: ChartSpec): Scene {
  const { w, h } = dims(spec);
  return { width: w, height: h, background: STYLE.background, charts: [chartPrims(spec)] };
}

/** Charts in a grid of `columns`; every cell is as large as the largest chart. */
function gridScene(charts: ChartSpec[], columns: number): Scene {
  const cols = Math.max(1, Math.min(Math.floor(columns) || 1, Math.max(1, charts.length)));
  const rows = Math.max(1, Math.ceil(charts.length / cols));
  const cellW = charts.length ? Math.max(...charts.map((c) => dims(c).w)) : DEFAULT_WIDTH;
  const cellH = charts.length ? Math.max(...charts.map((c) => dims(c).h)) : DEFAULT_HEIGHT;
  return {
    width: cols * cellW,
    height: rows * cellH,
    background: STYLE.background,
    charts: charts.map((c, i) => chartPrims(c, (i % cols) * cellW, Math.floor(i / cols) * cellH)),
  };
}

/** A standalone SVG document. */
export function lineChartSvg(spec: ChartSpec): string {
  return sceneToSvg(singleScene(spec));
}

/** A PNG file (8-bit RGB). */
export function lineChartPng(spec: ChartSpec): Buffer {
  const s = singleScene(spec);
  return encodePng(rgbaToRgb(renderScene(s)), s.width, s.height, 3);
}

/** Several charts side by side, `columns` per row, as one SVG document. */
export function gridSvg(charts: ChartSpec[], columns: number): string {
  return sceneToSvg(gridScene(charts, columns));
}

/** Several charts side by side, `columns` per row, as one PNG file. */
export function gridPng(charts: ChartSpec[], columns: number): Buffer {
  const s = gridScene(charts, columns);
  return encodePng(rgbaToRgb(renderScene(s)), s.width, s.height, 3);
}
