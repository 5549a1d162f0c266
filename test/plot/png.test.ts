import { crc32 as zlibCrc32 } from 'zlib';
import { describe, expect, it } from 'vitest';
import { encodePng } from '../../lib/plot';
import { crc32, decodePng } from './helpers';

function noise(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    // mix smooth gradients (favouring Sub/Up/Avg/Paeth) with noise
    b[i] = i % 7 === 0 ? s >>> 24 : (i * 3 + (i >> 5)) & 0xff;
  }
  return b;
}

describe('PNG encoder', () => {
  it('the test CRC agrees with a known value and with zlib', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    const b = noise(1000, 1);
    expect(crc32(b)).toBe(zlibCrc32(b) >>> 0);
  });

  for (const channels of [3, 4] as const) {
    it(`round-trips ${channels === 4 ? 'RGBA' : 'RGB'} pixels through an independent decoder`, () => {
      const w = 37;
      const h = 23;
      const px = noise(w * h * channels, 7 + channels);
      const png = encodePng(px, w, h, channels);
      const img = decodePng(png);
      expect(img.chunks).toEqual(['IHDR', 'IDAT', 'IEND']);
      expect([img.width, img.height]).toEqual([w, h]);
      for (let i = 0; i < w * h; i++)
        for (let c = 0; c < 4; c++) {
          const want = c < channels ? px[i * channels + c] : 255;
          if (img.rgba[i * 4 + c] !== want) throw new Error(`pixel ${i} channel ${c}: ${img.rgba[i * 4 + c]} != ${want}`);
        }
    });
  }

  it('a corrupted byte is caught by the CRC check', () => {
    const png = encodePng(noise(8 * 8 * 4, 3), 8, 8, 4);
    expect(() => decodePng(png)).not.toThrow();
    const bad = Buffer.from(png);
    bad[8 + 8 + 5] ^= 1; // inside IHDR data
    expect(() => decodePng(bad)).toThrow(/CRC/);
  });

  it('rejects a wrongly sized pixel buffer', () => {
    expect(() => encodePng(Buffer.alloc(10), 2, 2, 4)).toThrow();
  });
});
