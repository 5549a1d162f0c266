/** Independent checkers for the plot tests: a minimal PNG decoder and a small XML well-formedness parser. */
import { inflateSync } from 'zlib';

// ---------------------------------------------------------------- PNG

/** Bit-at-a-time CRC-32 (deliberately not the encoder's implementation). */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

export interface Image {
  width: number;
  height: number;
  /** RGBA, 4 bytes per pixel */
  rgba: Uint8Array;
  chunks: string[];
  filters: Set<number>;
}

/** Decode an 8-bit RGB/RGBA non-interlaced PNG, checking the signature and every chunk's CRC. */
export function decodePng(buf: Buffer): Image {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  sig.forEach((b, i) => {
    if (buf[i] !== b) throw new Error('bad PNG signature');
  });
  let pos = 8;
  const chunks: string[] = [];
  const idat: Buffer[] = [];
  let width = 0;
  let height = 0;
  let colorType = -1;
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos);
    const type = buf.toString('ascii', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    const crc = buf.readUInt32BE(pos + 8 + len);
    if (crc32(buf.subarray(pos + 4, pos + 8 + len)) !== crc) throw new Error(`CRC mismatch in ${type}`);
    chunks.push(type);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      if (data[8] !== 8) throw new Error('bit depth must be 8');
      colorType = data[9];
      if (colorType !== 2 && colorType !== 6) throw new Error('colour type must be RGB or RGBA');
      if (data[10] !== 0 || data[11] !== 0 || data[12] !== 0) throw new Error('bad compression/filter/interlace');
    } else if (type === 'IDAT') idat.push(data);
    pos += 12 + len;
    if (type === 'IEND') break;
  }
  if (pos !== buf.length) throw new Error('trailing bytes after IEND');
  if (chunks[0] !== 'IHDR' || chunks[chunks.length - 1] !== 'IEND') throw new Error('bad chunk order');
  const bpp = colorType === 6 ? 4 : 3;
  const stride = width * bpp;
  const raw = inflateSync(Buffer.concat(idat));
  if (raw.length !== (stride + 1) * height) throw new Error(`bad IDAT size ${raw.length}`);
  const px = new Uint8Array(stride * height);
  const filters = new Set<number>();
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    filters.add(f);
    for (let i = 0; i < stride; i++) {
      const v = raw[y * (stride + 1) + 1 + i];
      const a = i >= bpp ? px[y * stride + i - bpp] : 0;
      const b = y > 0 ? px[(y - 1) * stride + i] : 0;
      const c = i >= bpp && y > 0 ? px[(y - 1) * stride + i - bpp] : 0;
      let pred: number;
      if (f === 0) pred = 0;
      else if (f === 1) pred = a;
      else if (f === 2) pred = b;
      else if (f === 3) pred = Math.floor((a + b) / 2);
      else if (f === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else throw new Error(`bad filter type ${f}`);
      px[y * stride + i] = (v + pred) & 0xff;
    }
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    rgba[i * 4] = px[i * bpp];
    rgba[i * 4 + 1] = px[i * bpp + 1];
    rgba[i * 4 + 2] = px[i * bpp + 2];
    rgba[i * 4 + 3] = bpp === 4 ? px[i * bpp + 3] : 255;
  }
  return { width, height, rgba, chunks, filters };
}

export type RGB = [number, number, number];

export function pixel(img: Image, x: number, y: number): RGB {
  const i = (y * img.width + x) * 4;
  return [img.rgba[i], img.rgba[i + 1], img.rgba[i + 2]];
}

export function hexRgb(hex: string): RGB {
  const m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (!m) throw new Error(`bad hex ${hex}`);
  return [parseInt(m[1], 16), parseInt(m[2], 16), parseInt(m[3], 16)];
}

export function dist(a: RGB, b: RGB): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

export const luminance = (p: RGB): number => 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];

/** Distance from point p to segment ab. */
export function segDist(p: [number, number], a: [number, number], b: [number, number]): number {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const l2 = dx * dx + dy * dy;
  const t = l2 === 0 ? 0 : Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / l2));
  return Math.hypot(p[0] - a[0] - t * dx, p[1] - a[1] - t * dy);
}

// ---------------------------------------------------------------- XML

export interface XmlEl {
  name: string;
  attrs: Record<string, string>;
  children: XmlEl[];
  /** decoded character data directly inside this element */
  text: string;
}

const NAME = /^[A-Za-z_:][-A-Za-z0-9_:.]*/;

function decodeEntities(s: string, where: string): string {
  if (s.includes('<')) throw new Error(`raw '<' in ${where}`);
  return s.replace(/&([^;]*);?/g, (m, ent: string) => {
    if (!m.endsWith(';')) throw new Error(`unterminated entity in ${where}: ${m}`);
    const named: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    if (ent in named) return named[ent];
    if (/^#[0-9]+$/.test(ent)) return String.fromCodePoint(Number(ent.slice(1)));
    if (/^#x[0-9a-f]+$/i.test(ent)) return String.fromCodePoint(parseInt(ent.slice(2), 16));
    throw new Error(`unknown entity &${ent}; in ${where}`);
  });
}

/**
 * Parse an XML document strictly enough for our output: optional <?xml?> prolog and comments, one root
 * element, balanced tags, quoted unique attributes, valid entities, no stray '<' / '&'.
 */
export function parseXml(src: string): XmlEl {
  let i = 0;
  const stack: XmlEl[] = [];
  let root: XmlEl | undefined;
  const skipWs = () => {
    while (i < src.length && /\s/.test(src[i])) i++;
  };
  while (i < src.length) {
    if (src.startsWith('<?', i)) {
      const end = src.indexOf('?>', i);
      if (end < 0 || (i !== 0 && !src.startsWith('<?xml', i))) throw new Error('bad processing instruction');
      i = end + 2;
    } else if (src.startsWith('<!--', i)) {
      const end = src.indexOf('-->', i);
      if (end < 0) throw new Error('unterminated comment');
      i = end + 3;
    } else if (src.startsWith('</', i)) {
      i += 2;
      const m = NAME.exec(src.slice(i));
      if (!m) throw new Error('bad end tag');
      i += m[0].length;
      skipWs();
      if (src[i] !== '>') throw new Error('bad end tag');
      i++;
      const open = stack.pop();
      if (!open || open.name !== m[0]) throw new Error(`mismatched </${m[0]}> (open: ${open?.name})`);
    } else if (src[i] === '<') {
      i++;
      const m = NAME.exec(src.slice(i));
      if (!m) throw new Error(`bad tag at ${i}`);
      i += m[0].length;
      const el: XmlEl = { name: m[0], attrs: {}, children: [], text: '' };
      for (;;) {
        const before = i;
        skipWs();
        if (src.startsWith('/>', i) || src[i] === '>') break;
        if (i === before) throw new Error(`attributes must be separated by whitespace in <${el.name}>`);
        const a = NAME.exec(src.slice(i));
        if (!a) throw new Error(`bad attribute in <${el.name}>`);
        i += a[0].length;
        if (src[i] !== '=' || (src[i + 1] !== '"' && src[i + 1] !== "'")) throw new Error(`unquoted attribute ${a[0]}`);
        const q = src[i + 1];
        const end = src.indexOf(q, i + 2);
        if (end < 0) throw new Error('unterminated attribute');
        if (a[0] in el.attrs) throw new Error(`duplicate attribute ${a[0]}`);
        el.attrs[a[0]] = decodeEntities(src.slice(i + 2, end), `attribute ${a[0]}`);
        i = end + 1;
      }
      const selfClose = src.startsWith('/>', i);
      i += selfClose ? 2 : 1;
      if (stack.length) stack[stack.length - 1].children.push(el);
      else if (root) throw new Error('more than one root element');
      else root = el;
      if (!selfClose) stack.push(el);
    } else {
      const end = src.indexOf('<', i);
      const text = src.slice(i, end < 0 ? src.length : end);
      i += text.length;
      if (!stack.length) {
        if (text.trim()) throw new Error('text outside the root element');
      } else stack[stack.length - 1].text += decodeEntities(text, 'text');
    }
  }
  if (stack.length) throw new Error(`unclosed <${stack[stack.length - 1].name}>`);
  if (!root) throw new Error('no root element');
  return root;
}

export function findAll(el: XmlEl, pred: (e: XmlEl) => boolean, out: XmlEl[] = []): XmlEl[] {
  if (pred(el)) out.push(el);
  for (const c of el.children) findAll(c, pred, out);
  return out;
}

/** Subpaths of an SVG path made of absolute M/L commands (and Z). */
export function parsePathD(d: string): Array<Array<[number, number]>> {
  const runs: Array<Array<[number, number]>> = [];
  const re = /([MLZ])\s*(?:(-?[\d.]+(?:e-?\d+)?)[\s,]+(-?[\d.]+(?:e-?\d+)?))?/gi;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(d))) {
    if (d.slice(consumed, m.index).trim()) throw new Error(`unparsed path data: ${d.slice(consumed, m.index)}`);
    consumed = m.index + m[0].length;
    if (m[1] === 'Z') continue;
    const p: [number, number] = [Number(m[2]), Number(m[3])];
    if (m[1] === 'M') runs.push([p]);
    else runs[runs.length - 1].push(p);
  }
  if (d.slice(consumed).trim()) throw new Error('unparsed path tail');
  return runs;
}
