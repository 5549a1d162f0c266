/**
 * MemoryIndex on the CUDA backend (issue 6): backend selection everywhere, and on a machine with
 * a usable GPU the device store against the CPU index on the same data.
 *
 * The selection tests run on every machine and assert what that machine should do (no GPU: 'auto'
 * is the CPU with the reason, 'cuda' is an Error naming it). The comparisons run only where
 * 'auto' would pick CUDA (a device exists and the native self-test passed); elsewhere they are
 * skipped with a message saying why.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryIndex, backendInfo, type KernelOptions, type KeyType } from '../../lib/index';
import { loadNative } from '../../lib/native';
import { infoCommand } from '../../lib/cli/commands/info';
import { TestRng, testSeed } from '../helpers/rng';
import { refCos, refDist2, refKernelValue, type RefKernel } from './reference';
import { thrown } from '../helpers/errors';

const seed = testSeed();
const autoChoice = loadNative().selectBackend('auto');
const gpu = autoChoice.backend === 'cuda';
/** Why CUDA is not used here ("no CUDA driver (...)", "CUDA support not compiled in", ...). */
const whyNot = autoChoice.reason.replace(/^auto: CUDA not used: /, '');
if (gpu) {
  console.log(`cuda tests: seed ${seed} (MEMQ_TEST_SEED=${seed} reproduces); ${autoChoice.reason}`);
} else {
  console.log(`cuda tests: the GPU comparisons are SKIPPED on this machine: ${whyNot}`);
}

const savedEnv = process.env.MEMQ_BACKEND;
function setEnv(v: string | undefined) {
  if (v === undefined) delete process.env.MEMQ_BACKEND;
  else process.env.MEMQ_BACKEND = v;
}
afterEach(() => setEnv(savedEnv));

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('backend selection (every machine)', () => {
  it("'auto' resolves to the native choice, with the reason", () => {
    setEnv(undefined);
    const index = new MemoryIndex({ dim: 4, backend: 'auto' });
    const dflt = new MemoryIndex({ dim: 4 });
    const info = backendInfo();
    if (gpu) {
      expect(index.backend).toBe('cuda');
      expect(index.backendReason).toMatch(/passed the self-test/);
    } else {
      expect(index.backend).toBe('cpu');
      expect(index.backendReason).toMatch(/^auto: CUDA not used: /);
      // why: not compiled in (node-gyp, CPU-only CMake), or no driver / device / usable device
      expect(whyNot).toMatch(
        info.cudaCompiled ? /no CUDA driver|no CUDA device|compute capability|CUDA driver .* too old|no kernel image|self-test/ : /CUDA support not compiled in/,
      );
      expect(index.backendReason).toContain(whyNot);
    }
    expect(dflt.backend).toBe(index.backend);
    expect(info.backend).toBe(index.backend);
    expect(info.reason).toBe(autoChoice.reason);
    expect(info.requested).toBe('auto');
    expect(info.error).toBeUndefined();
    const st = index.stats();
    expect(st.backend).toBe(index.backend);
    expect(st.keyType).toBe('float32');
    expect(st.backendReason).toBe(index.backendReason);
    expect(index.keyType).toBe('float32');
  });

  it("'cpu' is always the CPU; the self-test is not needed for it", () => {
    setEnv(undefined);
    const index = new MemoryIndex({ dim: 3, backend: 'cpu' });
    expect(index.backend).toBe('cpu');
    expect(index.backendReason).toBe('cpu: requested');
    expect(index.stats()).toMatchObject({ backend: 'cpu', keyType: 'float32', dim: 3 });
  });

  it.skipIf(gpu)("'cuda' where it cannot be used: an Error naming the reason", () => {
    setEnv(undefined);
    const err = thrown(() => new MemoryIndex({ dim: 4, backend: 'cuda' }));
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(TypeError);
    expect(err.message).toMatch(/^backend 'cuda' is not available: /);
    expect(err.message).toContain(whyNot);
    // the native constructor refuses too (creation failure -> Error with the Status text)
    const N = loadNative().NativeMemoryIndex;
    const nerr = thrown(() => new N(4, 0, 1, 0, 'cuda', 'float32'));
    expect(nerr).toBeInstanceOf(Error);
    expect(nerr.message).toMatch(/^MemoryIndex \(backend 'cuda'\): /);
    expect(nerr.message).toMatch(backendInfo().cudaCompiled ? /CUDA|device|driver/ : /CUDA support not compiled in/);
  });

  it('MEMQ_BACKEND: cpu / cuda / auto / empty / garbage', () => {
    setEnv('cpu');
    const c = new MemoryIndex({ dim: 2 });
    expect(c.backend).toBe('cpu');
    expect(c.backendReason).toBe('cpu: requested (MEMQ_BACKEND=cpu)');
    expect(new MemoryIndex({ dim: 2, backend: 'auto' }).backend).toBe('cpu'); // the env applies to 'auto'
    expect(backendInfo()).toMatchObject({ backend: 'cpu', requested: 'cpu' });

    setEnv('cuda');
    expect(new MemoryIndex({ dim: 2, backend: 'cpu' }).backend).toBe('cpu'); // an explicit backend wins
    if (gpu) {
      expect(new MemoryIndex({ dim: 2 }).backend).toBe('cuda');
      expect(backendInfo()).toMatchObject({ backend: 'cuda', requested: 'cuda' });
    } else {
      const err = thrown(() => new MemoryIndex({ dim: 2 }));
      expect(err).toBeInstanceOf(Error);
      expect(err.message).toMatch(/^backend 'cuda' \(MEMQ_BACKEND=cuda\) is not available: /);
      expect(err.message).toContain(whyNot);
      const info = backendInfo(); // reports, does not throw
      expect(info.requested).toBe('cuda');
      expect(info.error).toBe(err.message);
      expect(info.backend).toBe('cpu');
    }

    for (const v of ['auto', '']) {
      setEnv(v);
      expect(new MemoryIndex({ dim: 2 }).backend).toBe(gpu ? 'cuda' : 'cpu');
    }

    setEnv('garbage');
    const err = thrown(() => new MemoryIndex({ dim: 2 }));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toBe(`MEMQ_BACKEND must be 'auto', 'cpu' or 'cuda', got "garbage"`);
    expect(thrown(() => new MemoryIndex({ dim: 2, backend: 'auto' }))).toBeInstanceOf(TypeError);
    expect(new MemoryIndex({ dim: 2, backend: 'cpu' }).backend).toBe('cpu');
    const info = backendInfo();
    expect(info.error).toMatch(/MEMQ_BACKEND must be 'auto', 'cpu' or 'cuda'/);
    expect(info.requested).toBe('garbage');
  });

  it('bad backend / keyType options: TypeErrors naming the option', () => {
    setEnv(undefined);
    const bad: [() => unknown, RegExp][] = [
      [() => new MemoryIndex({ dim: 2, backend: 'gpu' as any }), /backend must be 'auto', 'cpu' or 'cuda', got "gpu"/],
      [() => new MemoryIndex({ dim: 2, keyType: 'int4' as any }), /keyType must be 'float32', 'bf16', 'int8' or 'fp16', got "int4"/],
      [() => new MemoryIndex({ dim: 2, backend: 'cpu', keyType: 'fp16' }), /keyType 'fp16' needs the CUDA backend; the CPU backend stores 'float32', 'bf16' or 'int8' keys \(backend resolved to 'cpu': cpu: requested\)/],
      [() => new MemoryIndex({ dim: 2, backend: 'cpu', rerank: 4 }), /rerank needs the CPU backend with keyType 'bf16' or 'int8'/],
    ];
    if (!gpu) {
      bad.push([
        () => new MemoryIndex({ dim: 2, backend: 'auto', keyType: 'fp16' }),
        new RegExp(`keyType 'fp16' needs the CUDA backend.*${escapeRe(whyNot)}`),
      ]);
    } else {
      bad.push([() => new MemoryIndex({ dim: 2, backend: 'cuda', keyType: 'int8' }), /keyType 'int8' is not supported on the CUDA backend/]);
    }
    for (const [fn, msg] of bad) {
      const err = thrown(fn);
      expect(err, String(msg)).toBeInstanceOf(TypeError);
      expect(err.message).toMatch(msg);
    }
    expect(new MemoryIndex({ dim: 2, backend: 'cpu', keyType: 'float32' }).keyType).toBe('float32');
    // the native constructor checks the same
    const N = loadNative().NativeMemoryIndex;
    expect(thrown(() => new N(2, 0, 1, 0, 'cpu', 'fp16')).message).toMatch(/keyType 'fp16' needs backend 'cuda'/);
    expect(thrown(() => new N(2, 0, 1, 0, 'cpu', 'float32', 4)).message).toMatch(/rerank needs keyType 'bf16' or 'int8'/);
    expect(new MemoryIndex({ dim: 2, backend: 'cpu', keyType: 'int8' }).stats().keyType).toBe('int8');
    expect(thrown(() => new MemoryIndex({ dim: 2, backend: 'cpu', keyType: 'int8', rerank: 1.5 }))).toBeInstanceOf(RangeError);
    expect(thrown(() => new N(2, 0, 1, 0, 'gpu' as any))).toBeInstanceOf(TypeError);
    expect(thrown(() => new N(2, 0, 1, 0, 'cpu', 'half' as any))).toBeInstanceOf(TypeError);
  });

  it('memq info --json shows the backend choice and the reason', async () => {
    setEnv(undefined);
    let out = '';
    const io = { stdout: (t: string) => (out += t), stderr: () => {}, isTTY: false };
    expect(await infoCommand.run(['--json'], io)).toBe(0);
    const json = JSON.parse(out);
    expect(json.backend).toBe(gpu ? 'cuda' : 'cpu');
    expect(json.reason).toBe(autoChoice.reason);
    expect(json.requested).toBe('auto');
    expect(typeof json.cudaCompiled).toBe('boolean');
    setEnv('garbage');
    out = '';
    expect(await infoCommand.run(['--json'], io)).toBe(0);
    expect(JSON.parse(out).error).toMatch(/MEMQ_BACKEND must be/);
  });
});

// ---- GPU comparisons -------------------------------------------------------------------------

const KERNELS: KernelOptions[] = [
  { kernel: 'gaussian', bandwidth: 0.7 },
  { kernel: 'cosine', kappa: 5 },
  { kernel: 'inverse', delta: 1e-3 },
];

function toRef(o: KernelOptions): RefKernel {
  if (o.kernel === 'cosine') return { kernel: 'cosine', kappa: o.kappa ?? 1 };
  if (o.kernel === 'inverse') return { kernel: 'inverse', delta: o.delta ?? 1e-3 };
  return { kernel: 'gaussian', bandwidth: (o as { bandwidth?: number }).bandwidth ?? 1 };
}

// Tolerances, device (3xTF32 or exact 16-bit products, float32 sums) vs the CPU's float32, for
// rows of norm ~1 (docs/cuda.md, Precision): dist2 within DIST_ATOL; kernel values slot by slot
// within KERNEL_RTOL relative plus what a dist2 (cos) error of D2_ERR (COS_ERR) makes of the
// kernel (it matters for the inverse kernel near dist2 = 0, where k = 1/δ); a slot may hold
// another id than the CPU's only when the two rows' float64 kernel values are equal within
// TIE_RTOL (+ the same error term): an exact or near tie.
const KERNEL_RTOL = 2e-5;
const KERNEL_ATOL = 1e-7;
const TIE_RTOL = 1e-5;
const D2_ERR = 1e-5;
const COS_ERR = 2e-6;
const DIST_ATOL = 4e-5;
const EST_RTOL = 1e-4;

function kernelTol(p: RefKernel, k: number, rtol: number): number {
  const a = Math.abs(k);
  const slope =
    p.kernel === 'gaussian' ? (a / (2 * p.bandwidth * p.bandwidth)) * D2_ERR : p.kernel === 'inverse' ? a * a * D2_ERR : p.kappa * a * COS_ERR;
  return KERNEL_ATOL + rtol * a + slope;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round to the nearest bfloat16 (ties to even), as the store does on upload (cuda_host.cpp). */
function roundBf16(x: number): number {
  f32[0] = x;
  let u = u32[0];
  if ((u & 0x7fffffff) >>> 0 > 0x7f800000) return f32[0];
  u = (u + 0x7fff + ((u >>> 16) & 1)) >>> 0;
  u32[0] = (u & 0xffff0000) >>> 0;
  return f32[0];
}

function roundHalfEven(v: number): number {
  const fl = Math.floor(v);
  const diff = v - fl;
  if (diff > 0.5) return fl + 1;
  if (diff < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}

/** Round to the nearest float16 (ties to even) as a float; |x| >= 65520 -> ±Infinity. */
function roundFp16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  const sign = (u & 0x80000000) !== 0;
  const a = (u & 0x7fffffff) >>> 0;
  if (a > 0x7f800000) return f32[0];
  if (a >= 0x477ff000) return sign ? -Infinity : Infinity;
  let r: number;
  if (a < 0x38800000) {
    u32[0] = a;
    r = roundHalfEven(f32[0] * 16777216) / 16777216; // multiples of 2^-24, exact in float32
  } else {
    u32[0] = ((a + 0xfff + ((a >>> 13) & 1)) & 0xffffe000) >>> 0;
    r = f32[0];
  }
  return Math.fround(sign ? -r : r);
}

function rounded(a: Float32Array, t: KeyType): Float32Array {
  if (t === 'float32') return a;
  const f = t === 'bf16' ? roundBf16 : roundFp16;
  return a.map((x) => f(x));
}

function poisonSearch(bm: number) {
  return { ids: new Int32Array(bm).fill(0x7eadbeef), kernel: new Float32Array(bm).fill(NaN), dist2: new Float32Array(bm).fill(NaN) };
}

type Hits = { ids: Int32Array; kernel: Float32Array; dist2: Float32Array };

/**
 * The device result against the CPU index's on the same (rounded) keys and queries.
 * keyOf(id): the key as stored (rounded); live: the ids alive at the time of the search.
 */
function compareSearch(
  gpuRes: Hits, cpuRes: Hits, queries: Float32Array, b: number, m: number, d: number,
  keyOf: (id: number) => Float32Array | undefined, live: Set<number>, p: RefKernel, label: string,
) {
  expect(gpuRes.ids.length).toBe(b * m);
  const refK = (qi: number, id: number) => {
    const k = keyOf(id)!;
    return refKernelValue(p, refDist2(queries, qi, k, 0, d), refCos(queries, qi, k, 0, d));
  };
  for (let qi = 0; qi < b; qi++) {
    const seen = new Set<number>();
    for (let j = 0; j < m; j++) {
      const s = qi * m + j;
      const where = `${label}: query ${qi} slot ${j}`;
      const ig = gpuRes.ids[s], ic = cpuRes.ids[s];
      const kg = gpuRes.kernel[s], kc = cpuRes.kernel[s];
      const dg = gpuRes.dist2[s];
      if (ic === -1) {
        expect(ig, `${where}: empty on the CPU`).toBe(-1);
        expect(kg, where).toBe(0);
        expect(dg, where).toBe(Infinity);
        continue;
      }
      expect(live.has(ig), `${where}: id ${ig} is not a live id`).toBe(true);
      expect(seen.has(ig), `${where}: id ${ig} returned twice`).toBe(false);
      seen.add(ig);
      // the sorted kernel values agree slot by slot
      expect(Math.abs(kg - kc), `${where}: kernel ${kg} vs CPU ${kc}`).toBeLessThanOrEqual(kernelTol(p, kc, KERNEL_RTOL));
      if (j > 0) expect(kg, where).toBeLessThanOrEqual(gpuRes.kernel[s - 1]);
      // the kernel value and dist2 are the returned row's own
      const k = keyOf(ig)!;
      const rd2 = refDist2(queries, qi, k, 0, d);
      const rk = refKernelValue(p, rd2, refCos(queries, qi, k, 0, d));
      expect(Math.abs(kg - rk), `${where}: kernel ${kg} vs its row's ${rk}`).toBeLessThanOrEqual(kernelTol(p, rk, KERNEL_RTOL));
      expect(Math.abs(dg - rd2), `${where}: dist2 ${dg} vs ${rd2}`).toBeLessThanOrEqual(DIST_ATOL);
      // another id than the CPU's only among equal kernel values
      if (ig !== ic) {
        const a = refK(qi, ig), c = refK(qi, ic);
        expect(Math.abs(a - c), `${where}: id ${ig} (kernel ${a}) instead of ${ic} (kernel ${c}) without a tie`).toBeLessThanOrEqual(
          kernelTol(p, c, TIE_RTOL),
        );
      }
    }
  }
}

function compareEstimate(
  g: { value: Float32Array; confidence: Float32Array }, c: { value: Float32Array; confidence: Float32Array }, label: string,
) {
  expect(g.value.length).toBe(c.value.length);
  for (let i = 0; i < c.value.length; i++) {
    expect(Math.abs(g.value[i] - c.value[i]), `${label}: value[${i}] ${g.value[i]} vs ${c.value[i]}`).toBeLessThanOrEqual(
      EST_RTOL * Math.max(1, Math.abs(c.value[i])),
    );
    expect(Math.abs(g.confidence[i] - c.confidence[i]), `${label}: confidence[${i}]`).toBeLessThanOrEqual(
      EST_RTOL * Math.max(1e-3, Math.abs(c.confidence[i])),
    );
  }
}

/** A CUDA index and a CPU index fed the same operations (the CPU one sees rounded keys/queries). */
class Pair {
  readonly g: MemoryIndex;
  readonly c: MemoryIndex;
  readonly keys = new Map<number, Float32Array>(); // id -> stored (rounded) key
  constructor(readonly d: number, public k: KernelOptions, readonly keyType: KeyType = 'float32', capacity = 0) {
    this.g = new MemoryIndex({ dim: d, ...k, backend: 'cuda', keyType, capacity } as any);
    this.c = new MemoryIndex({ dim: d, ...k, backend: 'cpu', capacity } as any);
  }
  add(keys: Float32Array, values: Float32Array): Int32Array {
    const rk = rounded(keys, this.keyType);
    const ig = this.g.add(keys, values);
    const ic = this.c.add(rk, values);
    expect(Array.from(ig)).toEqual(Array.from(ic));
    ig.forEach((id, i) => this.keys.set(id, rk.slice(i * this.d, (i + 1) * this.d)));
    return ig;
  }
  live(): Set<number> {
    return new Set(this.c.ids());
  }
  checkState(label: string) {
    const ids = this.c.ids();
    expect(Array.from(this.g.ids()), label).toEqual(Array.from(ids));
    expect(this.g.size).toBe(this.c.size);
    expect(this.g.stats().nextId).toBe(this.c.stats().nextId);
    expect(Array.from(this.g.getValues(ids))).toEqual(Array.from(this.c.getValues(ids)));
    expect(Array.from(this.g.getKeys(ids))).toEqual(Array.from(this.c.getKeys(ids)));
    const probe = Int32Array.from([...Array.from(ids).slice(0, 20), -1, 2147483647, this.c.stats().nextId]);
    expect(Array.from(probe, (id) => this.g.has(id))).toEqual(Array.from(probe, (id) => this.c.has(id)));
  }
  async checkSearch(queries: Float32Array, m: number, label: string) {
    const b = queries.length / this.d;
    const rq = rounded(queries, this.keyType);
    const out = poisonSearch(b * m);
    const gr = await this.g.search(queries, m, { out });
    expect(gr.ids).toBe(out.ids);
    // the caller's buffers are fully written
    expect(out.ids.some((x) => x === 0x7eadbeef), `${label}: ids left unwritten`).toBe(false);
    expect(out.kernel.some((x) => Number.isNaN(x)), `${label}: kernel left unwritten`).toBe(false);
    expect(out.dist2.some((x) => Number.isNaN(x)), `${label}: dist2 left unwritten`).toBe(false);
    const cr = await this.c.search(rq, m);
    const live = this.live();
    compareSearch(gr, cr, rq, b, m, this.d, (id) => this.keys.get(id), live, toRef(this.k), label);
    const gs = this.g.searchSync(queries, m);
    compareSearch(gs, cr, rq, b, m, this.d, (id) => this.keys.get(id), live, toRef(this.k), `${label} (sync)`);
    for (const [voidWeight, voidValue] of [[0, 0], [0.1, 0], [2.5, -1.5]]) {
      const eo = { value: new Float32Array(b).fill(NaN), confidence: new Float32Array(b).fill(NaN) };
      const ge = await this.g.estimate(queries, m, { voidWeight, voidValue, out: eo });
      expect(ge.value).toBe(eo.value);
      expect(eo.value.some((x) => Number.isNaN(x)) || eo.confidence.some((x) => Number.isNaN(x)), `${label}: estimate left unwritten`).toBe(false);
      const ce = this.c.estimateSync(rq, m, { voidWeight, voidValue });
      compareEstimate(ge, ce, `${label} estimate (${voidWeight}, ${voidValue})`);
      compareEstimate(this.g.estimateSync(queries, m, { voidWeight, voidValue }), ce, `${label} estimateSync`);
    }
  }
}

describe.skipIf(!gpu)(`MemoryIndex backend 'cuda' against the CPU index${gpu ? '' : ` (SKIPPED: ${whyNot})`}`, () => {
  // (n, d, b, m): empty, N < m, d not a multiple of 64, B = 1 and B > 1, large m.
  const SHAPES: [number, number, number, number][] = [
    [0, 7, 3, 5],
    [3, 16, 2, 5],
    [1, 1, 1, 1],
    [97, 17, 4, 10],
    [1000, 33, 7, 64],
    [2500, 128, 1, 32],
    [3000, 96, 64, 16],
    [600, 20, 3, 512],
    [5000, 9, 2, 4096],
  ];
  for (const k of KERNELS) {
    for (const [n, d, b, m] of SHAPES) {
      it(`${k.kernel} n=${n} d=${d} b=${b} m=${m}: search and estimate`, async () => {
        const rng = new TestRng(seed + n * 31 + d * 7 + b + m);
        const pair = new Pair(d, k);
        expect(pair.g.backend).toBe('cuda');
        expect(pair.g.stats()).toMatchObject({ backend: 'cuda', keyType: 'float32', dim: d });
        pair.add(rng.keys(n, d), new Float32Array(n).map(() => rng.normal() * 3));
        // queries as an unaligned subarray view of a larger buffer
        const big = new Float32Array(b * d + 3);
        big.set(rng.keys(b, d), 1);
        await pair.checkSearch(big.subarray(1, 1 + b * d), m, `${k.kernel} n=${n}`);
      });
    }
  }

  it('exact duplicates: the lower id first, as on the CPU', async () => {
    const rng = new TestRng(seed ^ 0x51);
    const d = 24;
    const base = rng.keys(40, d);
    const keys = new Float32Array(200 * d);
    for (let i = 0; i < 200; i++) keys.set(base.subarray((i % 40) * d, (i % 40 + 1) * d), i * d);
    for (const k of KERNELS) {
      const pair = new Pair(d, k);
      pair.add(keys, new Float32Array(200).map((_, i) => i));
      await pair.checkSearch(base.slice(0, 3 * d), 12, `duplicates ${k.kernel}`);
      const res = await pair.g.search(base.slice(0, 3 * d), 12);
      for (let qi = 0; qi < 3; qi++) {
        expect(Array.from(res.ids.subarray(qi * 12, qi * 12 + 5))).toEqual([qi, qi + 40, qi + 80, qi + 120, qi + 160]);
      }
    }
  });

  it('add / addWithIds / updateValues / remove / compact / clear sequences match the CPU index', async () => {
    const rng = new TestRng(seed ^ 0x11);
    const d = 29;
    const pair = new Pair(d, { kernel: 'gaussian', bandwidth: 0.8 });
    for (let round = 0; round < 30; round++) {
      const n = 1 + rng.int(300);
      pair.add(rng.keys(n, d), new Float32Array(n).map(() => rng.normal()));
      const live = Array.from(pair.c.ids());
      const upd = live.filter(() => rng.next() < 0.1);
      if (upd.length > 0) upd.push(upd[0]); // a repeated id: the last value wins on both
      const nv = new Float32Array(upd.length).map(() => rng.normal());
      pair.g.updateValues(upd, nv);
      pair.c.updateValues(upd, nv);
      const rm = live.filter(() => rng.next() < 0.3);
      pair.g.remove(rm);
      pair.c.remove(rm);
      if (round % 7 === 6) {
        pair.g.compact();
        pair.c.compact();
      }
      pair.checkState(`round ${round}`);
      if (round % 5 === 4) await pair.checkSearch(rng.keys(5, d), 40, `round ${round}`);
    }
    // the same errors, and nothing changes
    const bad: [(i: MemoryIndex) => unknown, RegExp][] = [
      [(i) => i.remove([pair.c.ids()[0], pair.c.ids()[0]]), /must not repeat/],
      [(i) => i.remove([pair.c.ids()[0], 99999999]), /unknown id: ids\[1\] = 99999999/],
      [(i) => i.updateValues([99999999], Float32Array.of(1)), /unknown id: ids\[0\] = 99999999/],
      [(i) => i.getKeys([99999999]), /unknown id/],
      [(i) => i.getValues([99999999]), /unknown id/],
      [(i) => i.addWithIds([0], new Float32Array(d), new Float32Array(1)), /strictly increasing/],
    ];
    for (const [fn, msg] of bad) {
      const eg = thrown(() => fn(pair.g));
      const ec = thrown(() => fn(pair.c));
      expect(eg.constructor).toBe(ec.constructor);
      expect(eg.message).toMatch(msg);
      expect(ec.message).toMatch(msg);
    }
    pair.checkState('after errors');
    // addWithIds above every issued id, then add continues after them
    const next = pair.c.stats().nextId;
    const wk = rng.keys(3, d);
    const wv = Float32Array.of(1, 2, 3);
    pair.g.addWithIds([next + 5, next + 9, next + 10], wk, wv);
    pair.c.addWithIds([next + 5, next + 9, next + 10], wk, wv);
    [next + 5, next + 9, next + 10].forEach((id, i) => pair.keys.set(id, wk.slice(i * d, (i + 1) * d)));
    pair.add(rng.keys(2, d), Float32Array.of(4, 5));
    pair.checkState('after addWithIds');
    await pair.checkSearch(rng.keys(4, d), 25, 'after addWithIds');
    // setKernel
    for (const k of KERNELS) {
      pair.g.setKernel(k);
      pair.c.setKernel(k);
      pair.k = k;
      await pair.checkSearch(rng.keys(3, d), 17, `setKernel ${k.kernel}`);
    }
    // clear keeps issuing new ids, as on the CPU
    pair.g.clear();
    pair.c.clear();
    pair.checkState('after clear');
    await pair.checkSearch(rng.keys(2, d), 4, 'empty after clear');
    pair.add(rng.keys(10, d), new Float32Array(10).fill(1));
    pair.checkState('after clear + add');
    await pair.checkSearch(rng.keys(2, d), 4, 'after clear + add');
  });

  it('removed ids are never returned; automatic and explicit compaction keep ids and results', async () => {
    const rng = new TestRng(seed ^ 0x77);
    const n = 6000, d = 40;
    const pair = new Pair(d, { kernel: 'inverse', delta: 1e-3 });
    const ids = pair.add(rng.keys(n, d), new Float32Array(n).map(() => rng.normal()));
    pair.g.remove(ids.filter((_, i) => i % 5 === 1)); // 20%: tombstones only
    pair.c.remove(ids.filter((_, i) => i % 5 === 1));
    expect(pair.g.stats().rows).toBe(n);
    await pair.checkSearch(rng.keys(5, d), 50, 'tombstones');
    pair.g.remove(ids.filter((_, i) => i % 5 === 2)); // 40%: compacts automatically
    pair.c.remove(ids.filter((_, i) => i % 5 === 2));
    expect(pair.g.stats().rows).toBe(pair.c.stats().rows);
    pair.checkState('auto compaction');
    await pair.checkSearch(rng.keys(5, d), 50, 'auto compaction');
    pair.g.remove(ids.filter((_, i) => i % 5 === 3));
    pair.c.remove(ids.filter((_, i) => i % 5 === 3));
    pair.g.compact();
    pair.c.compact();
    expect(pair.g.stats().rows).toBe(pair.g.size);
    pair.checkState('compact');
    await pair.checkSearch(rng.keys(5, d), 50, 'compact');
  });

  it('capacity: the same RangeError, the index unchanged', () => {
    const pair = new Pair(4, { kernel: 'gaussian', bandwidth: 1 }, 'float32', 5);
    pair.add(new Float32Array(12), new Float32Array(3));
    const eg = thrown(() => pair.g.add(new Float32Array(12), new Float32Array(3)));
    const ec = thrown(() => pair.c.add(new Float32Array(12), new Float32Array(3)));
    expect(eg).toBeInstanceOf(RangeError);
    expect(ec).toBeInstanceOf(RangeError);
    expect(eg.message).toMatch(/capacity/);
    pair.checkState('capacity');
    expect(pair.g.capacity).toBe(5);
  });

  for (const keyType of ['bf16', 'fp16'] as KeyType[]) {
    it(`${keyType} keys: the CPU index on ${keyType}-rounded keys and queries`, async () => {
      const rng = new TestRng(seed ^ (keyType === 'bf16' ? 0xb16 : 0xf16));
      for (const k of KERNELS) {
        for (const [n, d, b, m] of [[1500, 64, 5, 32], [700, 19, 3, 200], [4000, 128, 33, 8]] as const) {
          const pair = new Pair(d, k, keyType);
          expect(pair.g.keyType).toBe(keyType);
          expect(pair.g.stats().keyType).toBe(keyType);
          const keys = rng.keys(n, d);
          pair.add(keys, new Float32Array(n).map(() => rng.normal() * 3));
          // the stored keys are the rounded ones
          const some = Int32Array.from({ length: 10 }, (_, i) => (i * 37) % n);
          const got = pair.g.getKeys(some);
          some.forEach((id, i) => expect(Array.from(got.subarray(i * d, (i + 1) * d))).toEqual(Array.from(pair.keys.get(id)!)));
          await pair.checkSearch(rng.keys(b, d), m, `${keyType} ${k.kernel} n=${n} d=${d}`);
          pair.g.remove(some);
          pair.c.remove(some);
          await pair.checkSearch(rng.keys(b, d), m, `${keyType} ${k.kernel} after remove`);
        }
      }
      if (keyType === 'fp16') {
        const g = new MemoryIndex({ dim: 2, backend: 'cuda', keyType: 'fp16' });
        expect(thrown(() => g.add(Float32Array.of(70000, 0), Float32Array.of(0))).message).toMatch(/outside the range of fp16/);
        expect(g.size).toBe(0);
      }
    });
  }

  it('overlapping async searches and writes give the results of running them in call order', async () => {
    const rng = new TestRng(seed ^ 0x33);
    const d = 32, m = 8, per = 400;
    const batches = Array.from({ length: 12 }, () => rng.keys(per, d));
    const queries = Array.from({ length: 12 }, () => rng.keys(16, d));
    const k: KernelOptions = { kernel: 'cosine', kappa: 3 };
    // sequential on the CPU: add batch i (and remove some), then search queries i
    const seq = new MemoryIndex({ dim: d, ...k, backend: 'cpu' });
    const keyOf = new Map<number, Float32Array>();
    const want: Hits[] = [];
    const liveAt: Set<number>[] = [];
    const removals = (i: number) => Int32Array.from({ length: 50 }, (_, j) => i * per + j * 2);
    for (let i = 0; i < batches.length; i++) {
      seq.add(batches[i], new Float32Array(per)).forEach((id, r) => keyOf.set(id, batches[i].slice(r * d, (r + 1) * d)));
      if (i % 3 === 2) seq.remove(removals(i));
      want.push(await seq.search(queries[i], m));
      liveAt.push(new Set(seq.ids()));
    }
    // on the device, fired without awaiting: each search sees the state when it was called
    const con = new MemoryIndex({ dim: d, ...k, backend: 'cuda' });
    const pending: Promise<Hits>[] = [];
    for (let i = 0; i < batches.length; i++) {
      con.add(batches[i], new Float32Array(per));
      if (i % 3 === 2) con.remove(removals(i));
      pending.push(con.search(queries[i], m));
      pending.push(con.search(queries[i], m));
    }
    const got = await Promise.all(pending);
    for (let i = 0; i < batches.length; i++) {
      for (const g of [got[2 * i], got[2 * i + 1]]) {
        compareSearch(g, want[i], queries[i], 16, m, d, (id) => keyOf.get(id), liveAt[i], toRef(k), `step ${i}`);
      }
    }
  });
});
