/** SVG back-end: serialises a Scene as a standalone SVG document. */
import { toHex } from './color';
import { textWidth } from './font';
import type { Prim, Pt, Rect, Rgba, Scene } from './types';

/** Escape text for XML content and attribute values; drop characters XML 1.0 forbids. */
export function escapeXml(s: string): string {
  return s
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, '')
    .replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

const num = (v: number): string => String(Math.round(v * 100) / 100);

function paint(attr: 'fill' | 'stroke', c: Rgba): string {
  return `${attr}="${toHex(c)}"${c.a < 1 ? ` ${attr}-opacity="${num(c.a)}"` : ''}`;
}

function runsToD(runs: Pt[][], close: boolean): string {
  return runs
    .map((r) => r.map(([x, y], i) => `${i ? 'L' : 'M'}${num(x)} ${num(y)}`).join(' ') + (close ? ' Z' : ''))
    .join(' ');
}

/** Monospace at 10 px per font size unit has a 6-px advance, like the bitmap font. */
const FONT = 'DejaVu Sans Mono, Menlo, Consolas, monospace';

export function sceneToSvg(scene: Scene): string {
  const clips = new Map<string, string>();
  const clipRef = (r: Rect | undefined): string => {
    if (!r) return '';
    const key = [r.x, r.y, r.w, r.h].map(num).join(' ');
    let id = clips.get(key);
    if (!id) clips.set(key, (id = `memq-clip-${clips.size}`));
    return ` clip-path="url(#${id})"`;
  };
  const cls = (p: Prim): string => (p.cls ? ` class="${escapeXml(p.cls)}"` : '');
  const el = (p: Prim): string => {
    switch (p.t) {
      case 'rect':
        return `<rect${cls(p)} x="${num(p.x)}" y="${num(p.y)}" width="${num(p.w)}" height="${num(p.h)}" ${paint('fill', p.fill)}/>`;
      case 'line':
        return `<line${cls(p)} x1="${num(p.x1)}" y1="${num(p.y1)}" x2="${num(p.x2)}" y2="${num(p.y2)}" ${paint('stroke', p.color)} stroke-width="${num(p.width)}"${p.dash ? ` stroke-dasharray="${p.dash.map(num).join(' ')}"` : ''}/>`;
      case 'path':
        return `<path${cls(p)}${p.name !== undefined ? ` data-series="${escapeXml(p.name)}"` : ''} d="${runsToD(p.runs, false)}" fill="none" ${paint('stroke', p.color)} stroke-width="${num(p.width)}" stroke-linejoin="round" stroke-linecap="round"${p.dash ? ` stroke-dasharray="${p.dash.map(num).join(' ')}"` : ''}${clipRef(p.clip)}/>`;
      case 'poly':
        return `<path${cls(p)}${p.name !== undefined ? ` data-series="${escapeXml(p.name)}"` : ''} d="${runsToD(p.runs, true)}" ${paint('fill', p.fill)} stroke="none"${clipRef(p.clip)}/>`;
      case 'dot':
        return `<circle${cls(p)}${p.name !== undefined ? ` data-series="${escapeXml(p.name)}"` : ''} cx="${num(p.x)}" cy="${num(p.y)}" r="${num(p.r)}" ${paint('fill', p.fill)}${clipRef(p.clip)}/>`;
      case 'text': {
        const anchor = p.anchor === 'start' ? '' : ` text-anchor="${p.anchor}"`;
        const rot = p.rotate ? ` transform="rotate(-90 ${num(p.x)} ${num(p.y)})"` : '';
        // textLength pins the width to the bitmap font's, so both back-ends lay out identically
        const len = textWidth(p.text, p.size);
        return `<text${cls(p)} x="${num(p.x)}" y="${num(p.y)}" font-size="${10 * p.size}"${anchor} ${paint('fill', p.color)} textLength="${len}" lengthAdjust="spacingAndGlyphs"${rot}>${escapeXml(p.text)}</text>`;
      }
    }
  };
  const body = scene.charts.map((prims) => `<g class="chart">\n${prims.map(el).join('\n')}\n</g>`).join('\n');
  const defs = [...clips].map(([key, id]) => {
    const [x, y, w, h] = key.split(' ');
    return `<clipPath id="${id}"><rect x="${x}" y="${y}" width="${w}" height="${h}"/></clipPath>`;
  });
  const { width: w, height: h } = scene;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="${FONT}">`,
    defs.length ? `<defs>${defs.join('')}</defs>` : '',
    `<rect class="background" x="0" y="0" width="${w}" height="${h}" ${paint('fill', scene.background)}/>`,
    body,
    '</svg>',
    '',
  ]
    .filter((l) => l !== '')
    .join('\n') + '\n';
}
