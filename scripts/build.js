#!/usr/bin/env node
'use strict';
// Builds memq.
//   node scripts/build.js [--debug]   the repository build (a clone's `npm install` runs it): the
//                                     native addon, the benchmarks' addon (memq_bench.node), the
//                                     C++ tests and benches (cmake-js, into build/; CUDA when nvcc
//                                     is found, OpenBLAS when installed) and the TypeScript (dist/:
//                                     CommonJS + an ESM wrapper)
//   --native-only | --ts-only         one half of that
//   --addon-only                      the addon alone, from source (an installed package's
//                                     source build, scripts/install.js): built in a temporary
//                                     directory with cmake-js, or node-gyp when cmake is missing;
//                                     only build/Release/memq.node stays in the package
//   --prebuild                        the portable addon shipped in the npm package: no CUDA, no
//                                     BLAS, no benchmarks' addon, libstdc++/libgcc linked statically, run-time SIMD
//                                     dispatch; built in build-prebuild/ (build/ is left alone),
//                                     copied to prebuilds/<platform>-<arch>/, checked (ldd, self-test)
//   --pack                            what `npm pack` runs (prepack): a clean TypeScript build + --prebuild
// Environment: MEMQ_CUDA=AUTO|ON|OFF, MEMQ_BLAS=AUTO|ON|OFF, MEMQ_SKIP_NATIVE=1,
//              MEMQ_BUILD_JOBS=N, MEMQ_CUDA_ARCHS="90" (CMAKE_CUDA_ARCHITECTURES).
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.resolve(__dirname, '..');
const args = new Set(process.argv.slice(2));
const jobs = process.env.MEMQ_BUILD_JOBS || String(Math.max(1, os.cpus().length));

function run(cmd, argv, opts = {}) {
  const pretty = [cmd, ...argv].join(' ');
  process.stderr.write(`memq build: ${pretty}\n`);
  const r = spawnSync(cmd, argv, { stdio: 'inherit', cwd: root, ...opts });
  if (r.error) throw new Error(`${pretty}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${pretty} exited with ${r.status === null ? `signal ${r.signal}` : r.status}`);
}

/** A package's file, resolved as Node resolves it from the package root (works when npm hoisted it). */
function resolveFrom(request) {
  try {
    return require.resolve(request, { paths: [root] });
  } catch {
    return undefined;
  }
}

/** The JS entry of a dependency's bin (run with this Node, so no PATH or shebang is needed). */
function depBin(pkg, name) {
  const pj = resolveFrom(`${pkg}/package.json`);
  if (!pj) return undefined;
  const { bin } = JSON.parse(fs.readFileSync(pj, 'utf8'));
  const rel = typeof bin === 'string' ? bin : bin && bin[name];
  return rel ? path.join(path.dirname(pj), rel) : undefined;
}

function hasCommand(cmd) {
  const r = spawnSync(cmd, ['--version'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

function cmakeDefs() {
  const defs = [];
  for (const name of ['MEMQ_CUDA', 'MEMQ_BLAS']) if (process.env[name]) defs.push(`--CD${name}=${process.env[name]}`);
  if (process.env.MEMQ_CUDA_ARCHS) defs.push(`--CDCMAKE_CUDA_ARCHITECTURES=${process.env.MEMQ_CUDA_ARCHS}`);
  return defs;
}

// `compile` configures only a fresh directory (later -D flags are ignored); `reconfigure` runs
// the configure step every time, so a kept directory (build-prebuild/) always gets these flags.
function cmakeJs(outDir, defs, { reconfigure = false } = {}) {
  const cli = depBin('cmake-js', 'cmake-js');
  if (!cli) throw new Error("the package 'cmake-js' is not installed (it is a dependency of memq; reinstall)");
  const mode = args.has('--debug') ? ['--debug'] : [];
  const env = { ...process.env, CMAKE_BUILD_PARALLEL_LEVEL: jobs };
  if (reconfigure) {
    run(process.execPath, [cli, 'configure', '--out', outDir, ...mode, ...defs], { env });
    run(process.execPath, [cli, 'build', '--out', outDir, ...mode], { env });
  } else {
    run(process.execPath, [cli, 'compile', '--out', outDir, ...mode, ...defs], { env });
  }
  return path.join(outDir, args.has('--debug') ? 'Debug' : 'Release', 'memq.node');
}

/** npm's node-gyp: a dependency, npm_config_node_gyp (npm sets it for scripts), next to npm, or on PATH. */
function findNodeGyp() {
  const tried = [];
  const candidates = [
    resolveFrom('node-gyp/bin/node-gyp.js'),
    process.env.npm_config_node_gyp,
    process.env.npm_execpath && path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(path.dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  for (const c of candidates) {
    if (!c) continue;
    if (fs.existsSync(c)) return { cmd: process.execPath, argv: [c] };
    tried.push(c);
  }
  if (hasCommand('node-gyp')) return { cmd: 'node-gyp', argv: [] };
  throw new Error(`node-gyp not found (tried ${tried.join(', ')} and node-gyp on PATH)`);
}

/** Node's headers next to this node (an installed prefix has include/node): no download needed. */
function localNodeDir() {
  if (process.env.npm_config_nodedir) return undefined;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const inc = path.join(prefix, 'include', 'node');
  return fs.existsSync(path.join(inc, 'node_api.h')) && fs.existsSync(path.join(inc, 'common.gypi')) ? prefix : undefined;
}

function buildNative() {
  if (process.env.MEMQ_SKIP_NATIVE === '1') return;
  cmakeJs('build', cmakeDefs());
}

function installAddon(from) {
  const dest = path.join(root, 'build', 'Release', 'memq.node');
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(from, dest);
  process.stderr.write(`memq build: installed ${path.relative(root, dest)} (${(fs.statSync(dest).size / 1048576).toFixed(1)} MB)\n`);
  return dest;
}

/** The addon alone, from source, leaving only build/Release/memq.node behind. */
function buildAddonOnly() {
  if (hasCommand('cmake')) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-build-'));
    try {
      return installAddon(cmakeJs(tmp, ['--CDMEMQ_TESTS=OFF', '--CDMEMQ_BENCH_ADDON=OFF', ...cmakeDefs()]));
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  process.stderr.write('memq build: cmake not found; building the CPU addon with node-gyp (binding.gyp, no CUDA)\n');
  const gyp = findNodeGyp();
  const nodedir = localNodeDir();
  const buildDir = path.join(root, 'build');
  const keep = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-addon-'));
  try {
    run(gyp.cmd, [...gyp.argv, 'rebuild', '-j', jobs, ...(nodedir ? [`--nodedir=${nodedir}`] : [])]);
    const built = path.join(buildDir, 'Release', 'memq.node');
    fs.copyFileSync(built, path.join(keep, 'memq.node'));
    fs.rmSync(buildDir, { recursive: true, force: true });
    return installAddon(path.join(keep, 'memq.node'));
  } catch (err) {
    fs.rmSync(buildDir, { recursive: true, force: true });
    throw err;
  } finally {
    fs.rmSync(keep, { recursive: true, force: true });
  }
}

function isMusl() {
  if (process.platform !== 'linux') return false;
  const report = process.report && process.report.getReport ? process.report.getReport() : undefined;
  return !(report && report.header && report.header.glibcVersionRuntime);
}

/** The prebuild's file: prebuilds/<platform>-<arch>/memq.napi[.glibc|.musl].node (node-gyp-build's tags). */
function prebuildFile() {
  const libc = process.platform === 'linux' ? (isMusl() ? '.musl' : '.glibc') : '';
  return path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, `memq.napi${libc}.node`);
}

/** Checks the prebuild's shared-library needs (Linux: only the C runtime) and reports its glibc floor. */
function checkLinkage(file, glibcFloorCheck) {
  if (process.platform !== 'linux') return;
  const ldd = spawnSync('ldd', [file], { encoding: 'utf8' });
  if (ldd.error || ldd.status !== 0) {
    process.stderr.write(`memq build: ldd unavailable (${ldd.error ? ldd.error.message : ldd.stderr.trim()}); linkage not checked\n`);
    return;
  }
  const allowed = /^(linux-vdso|linux-gate|ld-linux[-\w.]*|libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s)\.so/;
  const libs = ldd.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).filter(Boolean);
  const extra = libs.filter((l) => !allowed.test(path.basename(l)));
  if (extra.length) throw new Error(`the prebuild needs shared libraries outside the C runtime: ${extra.join(', ')}`);
  process.stderr.write(`memq build: ${path.relative(root, file)} needs ${libs.map((l) => path.basename(l)).join(' ')}\n`);
  const objdump = spawnSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (!objdump.error && objdump.status === 0) {
    const versions = [...objdump.stdout.matchAll(/GLIBC_(\d+)\.(\d+)(?:\.(\d+))?/g)].map((m) => [+m[1], +m[2], +(m[3] || 0)]);
    versions.sort((a, b) => a[0] - b[0] || a[1] - b[1] || a[2] - b[2]);
    const max = versions[versions.length - 1];
    const cxx = /GLIBCXX_|CXXABI_/.test(objdump.stdout);
    if (cxx) throw new Error('the prebuild imports libstdc++ symbols (GLIBCXX_/CXXABI_): the static runtime did not take');
    if (max) {
      const floor = max.slice(0, max[2] ? 3 : 2).join('.');
      process.stderr.write(`memq build: the prebuild needs glibc >= ${floor} and no libstdc++\n`);
      // Node 20's own Linux binaries need glibc 2.28; a prebuild needing more would not load everywhere Node does
      if (glibcFloorCheck && (max[0] > 2 || (max[0] === 2 && max[1] > 28))) {
        const newer = [...new Set([...objdump.stdout.matchAll(/GLIBC_(2\.(?:29|[3-9]\d)[.\d]*)\)?\s+(\S+)\s*$/gm)].map((m) => `${m[2]}@${m[1]}`))];
        throw new Error(`the prebuild needs glibc ${floor} > 2.28 (symbols: ${newer.join(', ')}); add them to MEMQ_GLIBC_COMPAT`);
      }
    }
  }
}

function selfTest(file, env = {}) {
  const r = spawnSync(process.execPath, [path.join(__dirname, 'selftest.js'), file], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
  });
  const label = Object.entries(env).map(([k, v]) => `${k}=${v} `).join('');
  if (r.status !== 0) throw new Error(`self-test of ${file} failed (${label.trim() || 'default'}): ${(r.stderr || r.stdout || '').trim() || `status ${r.status}, signal ${r.signal}`}`);
  process.stderr.write(`memq build: self-test ${label}${path.relative(root, file)}: ${r.stdout.trim()}\n`);
}

function buildPrebuild() {
  const glibcCompat = process.platform === 'linux' && process.arch === 'x64' && !isMusl();
  const built = cmakeJs('build-prebuild', [
    '--CDMEMQ_CUDA=OFF',
    '--CDMEMQ_BLAS=OFF',
    '--CDMEMQ_TESTS=OFF',
    '--CDMEMQ_BENCH_ADDON=OFF',
    '--CDMEMQ_NATIVE_ARCH=OFF',
    `--CDMEMQ_STATIC_RUNTIME=${process.platform === 'linux' ? 'ON' : 'OFF'}`,
    `--CDMEMQ_GLIBC_COMPAT=${glibcCompat ? 'ON' : 'OFF'}`,
  ], { reconfigure: true });
  const dest = prebuildFile();
  fs.rmSync(path.join(root, 'prebuilds'), { recursive: true, force: true });
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(built, dest);
  if (process.platform === 'linux' && hasCommand('strip')) run('strip', ['--strip-unneeded', dest]);
  process.stderr.write(`memq build: wrote ${path.relative(root, dest)} (${(fs.statSync(dest).size / 1048576).toFixed(2)} MB)\n`);
  checkLinkage(dest, glibcCompat);
  // every dispatch level this CPU has (the levels above it are capped to it, so they repeat)
  for (const simd of ['scalar', 'avx2', 'avx512']) selfTest(dest, { MEMQ_SIMD: simd });
}

function buildTs(clean) {
  const tsc = resolveFrom('typescript/bin/tsc');
  if (!tsc) {
    throw new Error("the TypeScript compiler is not installed (a devDependency): run 'npm install' in the repository (the npm package ships dist/ prebuilt)");
  }
  if (clean) fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true });
  run(process.execPath, [tsc, '-p', 'tsconfig.json']);
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
  if (args.has('--addon-only')) buildAddonOnly();
  else if (args.has('--prebuild')) buildPrebuild();
  else if (args.has('--pack')) {
    buildTs(true);
    buildPrebuild();
  } else {
    if (!args.has('--ts-only')) buildNative();
    if (!args.has('--native-only')) buildTs(false);
  }
} catch (err) {
  process.stderr.write(`\nmemq build failed: ${err.message}\n`);
  process.exit(1);
}
