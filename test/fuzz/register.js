'use strict';
// Lets plain `node` require the TypeScript sources (lib/ and test/fuzz/) of the fuzz suite:
// each .ts file is transpiled to CommonJS on first use (ts.transpileModule: syntax only, no type
// check) and the result is cached on disk by path, size and mtime, so child processes after the
// first start fast. The fuzz suite runs the current sources, never a stale dist/ build.
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const Module = require('module');

const cacheDir = path.join(os.tmpdir(), `memq-fuzz-ts-cache-${process.getuid ? process.getuid() : 0}`);
let ts;

function compile(file) {
  const st = fs.statSync(file);
  const key = crypto.createHash('sha1').update(`${file}\0${st.size}\0${st.mtimeMs}`).digest('hex');
  const cached = path.join(cacheDir, `${key}.js`);
  try {
    return fs.readFileSync(cached, 'utf8');
  } catch {
    // not cached yet
  }
  ts ??= require('typescript');
  const out = ts.transpileModule(fs.readFileSync(file, 'utf8'), {
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      esModuleInterop: true,
      inlineSourceMap: true,
    },
    fileName: file,
  }).outputText;
  try {
    fs.mkdirSync(cacheDir, { recursive: true });
    const tmp = `${cached}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, out);
    fs.renameSync(tmp, cached);
  } catch {
    // a read-only tmp: compile every time
  }
  return out;
}

if (!Module._extensions['.ts']) {
  Module._extensions['.ts'] = function loadTs(module, filename) {
    module._compile(compile(filename), filename);
  };
}
