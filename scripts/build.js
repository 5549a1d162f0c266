#!/usr/bin/env node
'use strict';
// Builds the native addon (cmake-js; CUDA when nvcc is found, OpenBLAS when installed) and the
// TypeScript (CommonJS + an ESM wrapper). `npm install` runs this.
//   node scripts/build.js [--native-only | --ts-only] [--debug]
// Environment: MEMQ_CUDA=AUTO|ON|OFF, MEMQ_BLAS=AUTO|ON|OFF, MEMQ_SKIP_NATIVE=1,
//              MEMQ_BUILD_JOBS=N, MEMQ_CUDA_ARCHS="90" (CMAKE_CUDA_ARCHITECTURES).
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.resolve(__dirname, '..');
const args = new Set(process.argv.slice(2));

function run(cmd, argv, opts = {}) {
  const pretty = [cmd, ...argv].join(' ');
  process.stderr.write(`memq build: ${pretty}\n`);
  const r = spawnSync(cmd, argv, { stdio: 'inherit', cwd: root, ...opts });
  if (r.error) throw new Error(`${pretty}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${pretty} exited with ${r.status}`);
}

function bin(name) {
  const p = path.join(root, 'node_modules', '.bin', name);
  return fs.existsSync(p) ? p : name;
}

function buildNative() {
  if (process.env.MEMQ_SKIP_NATIVE === '1') return;
  const defs = [];
  const pass = (name) => {
    if (process.env[name]) defs.push(`--CD${name}=${process.env[name]}`);
  };
  pass('MEMQ_CUDA');
  pass('MEMQ_BLAS');
  if (process.env.MEMQ_CUDA_ARCHS) defs.push(`--CDCMAKE_CUDA_ARCHITECTURES=${process.env.MEMQ_CUDA_ARCHS}`);
  const jobs = process.env.MEMQ_BUILD_JOBS || String(Math.max(1, os.cpus().length));
  const env = { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs };
  const mode = args.has('--debug') ? ['--debug'] : [];
  run(bin('cmake-js'), ['compile', '--out', 'build', ...mode, ...defs], { env });
}

function buildTs() {
  run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json']);
  // ESM entry: re-exports the CommonJS build (one implementation, one addon instance).
  const esm = path.join(root, 'dist', 'esm');
  fs.mkdirSync(esm, { recursive: true });
  fs.writeFileSync(
    path.join(esm, 'index.mjs'),
    "// ESM entry of memq: re-exports the CommonJS build so both share one addon instance.\n" +
      "export * from '../cjs/lib/index.js';\n",
  );
  fs.writeFileSync(path.join(esm, 'index.d.mts'), "export * from '../cjs/lib/index.js';\n");
}

try {
  if (!args.has('--ts-only')) buildNative();
  if (!args.has('--native-only')) buildTs();
} catch (err) {
  process.stderr.write(`\nmemq build failed: ${err.message}\n`);
  process.exit(1);
}
