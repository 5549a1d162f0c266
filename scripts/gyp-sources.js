#!/usr/bin/env node
'use strict';
// Lists native sources for binding.gyp (gyp has no globbing): `node scripts/gyp-sources.js KIND`
// with KIND = generic | avx2 | avx512 | avx512dp (AVX512_BF16 + AVX512_VNNI) | addon | bench (memq_bench.node, the benchmarks' addon). Paths are relative to the package root.
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
function walk(dir) {
  const out = [];
  for (const e of fs.readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) {
      out.push(...walk(rel)); // native/core/cuda/*.cpp are host code that compiles to stubs without CUDA
    } else if (e.name.endsWith('.cpp')) {
      out.push(rel);
    }
  }
  return out.sort();
}
const kind = process.argv[2];
let files;
if (kind === 'addon') files = walk('native/addon');
else if (kind === 'bench') files = walk('native/bench_addon');
else {
  const core = walk('native/core');
  if (kind === 'avx2') files = core.filter((f) => f.endsWith('_avx2.cpp'));
  else if (kind === 'avx512') files = core.filter((f) => f.endsWith('_avx512.cpp'));
  else if (kind === 'avx512dp') files = core.filter((f) => f.endsWith('_avx512dp.cpp'));
  else if (kind === 'generic') files = core.filter((f) => !/_avx(2|512|512dp)\.cpp$/.test(f));
  else {
    process.stderr.write('usage: gyp-sources.js generic|avx2|avx512|avx512dp|addon|bench\n');
    process.exit(2);
  }
}
process.stdout.write(files.join(' ') + '\n');
