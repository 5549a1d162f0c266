#!/usr/bin/env node
'use strict';
// memq's `npm install` step.
//  - In a clone of the repository (TypeScript sources present): the full build from source,
//    scripts/build.js (addon, C++ tests and benches, TypeScript).
//  - In an installed package (npm ships dist/ and a prebuilt addon): use the prebuild for this
//    platform when it loads and passes the self-test (scripts/selftest.js); otherwise, or when
//    asked with MEMQ_BUILD_FROM_SOURCE=1 or `npm install --build-from-source`, build the addon
//    alone from source (`build.js --addon-only`: cmake-js, or node-gyp when cmake is missing),
//    which leaves only build/Release/memq.node in the package. CUDA kernels are built when nvcc
//    is on the PATH during such a source build (MEMQ_CUDA=AUTO|ON|OFF as in the repository).
// The run-time loader (lib/native.ts) does not depend on this step having run: with install
// scripts disabled it still finds the prebuild.
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const say = (s) => process.stderr.write(`memq install: ${s}\n`);

function truthy(v) {
  return v !== undefined && /^(1|true|yes|on|memq)$/i.test(String(v).trim());
}

function buildScript(argv) {
  const r = spawnSync(process.execPath, [path.join(__dirname, 'build.js'), ...argv], { stdio: 'inherit', cwd: root });
  return r.status === 0;
}

function selfTest(file) {
  const r = spawnSync(process.execPath, [path.join(__dirname, 'selftest.js'), file], { encoding: 'utf8', cwd: root });
  if (r.status === 0) return { ok: true, report: r.stdout.trim() };
  const why = (r.stderr || r.stdout || '').trim().split('\n').slice(-3).join(' | ');
  return { ok: false, report: why || (r.signal ? `killed by ${r.signal}` : `exit status ${r.status}`) };
}

/** The prebuild node-gyp-build would pick for this platform (prebuilds/ only, never build/). */
function findPrebuild() {
  process.env.PREBUILDS_ONLY = '1'; // read by node-gyp-build when it loads (this process only)
  let ngb;
  try {
    ngb = require('node-gyp-build');
  } catch (e) {
    return { file: undefined, why: `node-gyp-build is not installed (${e.message.split('\n')[0]})` };
  }
  try {
    return { file: ngb.resolve(root) };
  } catch (e) {
    return { file: undefined, why: `no prebuild fits this platform (${e.message.split('\n')[0].trim()})` };
  }
}

function main() {
  const clone = fs.existsSync(path.join(root, 'lib', 'index.ts')) && fs.existsSync(path.join(root, 'tsconfig.json'));
  if (clone) {
    // the repository: everything from source, as before (the TypeScript is a devDependency)
    return buildScript([]) ? 0 : 1;
  }

  const asked = truthy(process.env.MEMQ_BUILD_FROM_SOURCE) || truthy(process.env.npm_config_build_from_source);
  const sourceBuild = path.join(root, 'build');
  if (!asked) {
    const { file, why } = findPrebuild();
    if (file) {
      const t = selfTest(file);
      if (t.ok) {
        // a source build left by an earlier install would win at load time; this install chose the prebuild
        fs.rmSync(sourceBuild, { recursive: true, force: true });
        say(`using the prebuilt addon ${path.relative(root, file)}: ${t.report}`);
        return 0;
      }
      say(`the prebuilt addon ${path.relative(root, file)} cannot be used here: ${t.report}`);
    } else {
      say(why);
    }
    say('building the addon from source instead (CMake >= 3.18 and a C++17 compiler, or node-gyp\'s toolchain)');
  } else {
    say('building the addon from source (MEMQ_BUILD_FROM_SOURCE / --build-from-source)');
  }

  if (!buildScript(['--addon-only'])) {
    fs.rmSync(sourceBuild, { recursive: true, force: true });
    say(
      'the source build failed (see above). memq needs either the prebuilt addon (Linux x64, glibc >= 2.27) ' +
        'or a toolchain: CMake >= 3.18 with a C++17 compiler (g++ >= 9 / clang >= 10), or Python 3 + make + a C++17 compiler for node-gyp.',
    );
    return 1;
  }
  const built = path.join(sourceBuild, 'Release', 'memq.node');
  const t = selfTest(built);
  if (!t.ok) {
    fs.rmSync(sourceBuild, { recursive: true, force: true });
    say(`the addon built from source fails its self-test: ${t.report}`);
    return 1;
  }
  say(`using the addon built from source ${path.relative(root, built)}: ${t.report}`);
  return 0;
}

process.exitCode = main();
