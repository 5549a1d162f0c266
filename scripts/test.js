#!/usr/bin/env node
'use strict';
// npm test: the C++ tests (ctest, no Node involved) then the vitest suite.
//   node scripts/test.js [--cpp-only | --js-only] [vitest args...]
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');
const argv = process.argv.slice(2);
const cppOnly = argv.includes('--cpp-only');
const jsOnly = argv.includes('--js-only');
const rest = argv.filter((a) => a !== '--cpp-only' && a !== '--js-only');

function run(cmd, args, opts = {}) {
  process.stderr.write(`memq test: ${[cmd, ...args].join(' ')}\n`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.error) {
    process.stderr.write(`${r.error.message}\n`);
    return 1;
  }
  return r.status === null ? 1 : r.status;
}

let status = 0;
if (!jsOnly) {
  const buildDir = process.env.MEMQ_CTEST_DIR || path.join(root, 'build');
  if (!fs.existsSync(path.join(buildDir, 'CTestTestfile.cmake'))) {
    process.stderr.write(`memq test: no C++ test build in ${buildDir}; run 'npm install' (or 'npm run build:native') first\n`);
    status = 1;
  } else {
    status = run('ctest', ['--test-dir', buildDir, '--output-on-failure', '-j', '1']) || status;
  }
}
if (!cppOnly && status === 0) {
  status = run(process.execPath, [path.join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...rest]) || status;
}
process.exit(status);
