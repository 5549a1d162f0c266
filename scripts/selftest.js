#!/usr/bin/env node
'use strict';
// A quick check that a memq addon file loads and searches correctly on this machine: a small
// gaussian-kernel top-m search compared with a brute-force answer computed here in plain JS.
// The installer runs it on the prebuild (and on a fresh source build) before using it; the
// packer runs it on the prebuild under each SIMD level this CPU has.
//   node scripts/selftest.js /path/to/memq.node      exit 0 and one line on stdout when it passes
// It runs in a child process of the caller, so a binary that cannot run here (missing shared
// library, too-new glibc, illegal instruction) fails this process, not the installer.

function rng(seed) {
  // xorshift32: fixed inputs, independent of the addon
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296 - 0.5;
  };
}

function selfTest(file) {
  if (!/\.node$/.test(file)) throw new Error(`${file}: not a .node file`);
  const addon = require(file);
  if (typeof addon.NativeMemoryIndex !== 'function' || typeof addon.backendInfo !== 'function') {
    throw new Error(`${file} loads but is not memq's addon (no NativeMemoryIndex / backendInfo)`);
  }
  const dim = 19; // not a multiple of any vector width: exercises the tails of the SIMD kernels
  const n = 300;
  const b = 5;
  const m = 7;
  const bandwidth = 0.8;
  const r = rng(20260);
  const keys = new Float32Array(n * dim).map(() => r());
  const values = new Float32Array(n).map((_, i) => i);
  const queries = new Float32Array(b * dim).map(() => r());
  const index = new addon.NativeMemoryIndex(dim, 0 /* gaussian */, bandwidth, 0, 'cpu');
  const ids = index.add(keys, values);
  for (let i = 0; i < n; i++) if (ids[i] !== i) throw new Error(`add returned id ${ids[i]} for row ${i}`);
  const got = index.searchSync(queries, m);
  for (let q = 0; q < b; q++) {
    const d2 = [];
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let k = 0; k < dim; k++) {
        const t = queries[q * dim + k] - keys[i * dim + k];
        s += t * t;
      }
      d2.push([s, i]);
    }
    d2.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    for (let j = 0; j < m; j++) {
      const [wantD2, wantId] = d2[j];
      const id = got.ids[q * m + j];
      const dist2 = got.dist2[q * m + j];
      const kernel = got.kernel[q * m + j];
      const wantK = Math.exp(-wantD2 / (2 * bandwidth * bandwidth));
      if (id !== wantId) throw new Error(`query ${q} rank ${j}: id ${id}, brute force says ${wantId}`);
      if (!(Math.abs(dist2 - wantD2) <= 1e-4 * (1 + wantD2))) {
        throw new Error(`query ${q} rank ${j}: dist2 ${dist2}, brute force says ${wantD2}`);
      }
      if (!(Math.abs(kernel - wantK) <= 1e-4)) throw new Error(`query ${q} rank ${j}: kernel ${kernel}, want ${wantK}`);
    }
  }
  const info = addon.backendInfo();
  return `search matches brute force (simd ${info.simd}, ${info.threads} threads, blas ${info.blas}, cuda ${info.cudaCompiled ? 'compiled' : 'not compiled'}, built by ${info.buildSystem})`;
}

if (require.main === module) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node scripts/selftest.js /path/to/memq.node\n');
    process.exit(2);
  }
  try {
    process.stdout.write(selfTest(require('path').resolve(file)) + '\n');
  } catch (err) {
    process.stderr.write(`${(err && err.message) || err}\n`);
    process.exit(1);
  }
}

module.exports = { selfTest };
