#!/usr/bin/env node
'use strict';
// npm run fuzz -- [--calls N] [--seed S] [--time-limit SEC] ...: the fuzz suite of test/fuzz/
// (every public entry point with random, wrong and hostile arguments; each batch in a child
// process). `--help` lists the options. With --child it is one such batch (internal).
const path = require('path');

require(path.join(__dirname, '..', 'test', 'fuzz', 'register.js'));

async function child(argv) {
  const fs = require('fs');
  const get = (name) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const dir = get('--dir');
  const onFatal = (what) => (err) => {
    // An unhandled rejection or exception escaping the library is a crash of this batch.
    process.stderr.write(`fuzz child: ${what}: ${err && err.stack ? err.stack : String(err)}\n`);
    process.exit(70);
  };
  process.on('unhandledRejection', onFatal('unhandled rejection'));
  process.on('uncaughtException', onFatal('uncaught exception'));
  const { runBatch } = require(path.join(__dirname, '..', 'test', 'fuzz', 'runner.ts'));
  const only = get('--only');
  const result = await runBatch({
    seed: Number(get('--seed')),
    batch: Number(get('--batch')),
    part: Number(get('--part') ?? 0),
    calls: Number(get('--calls')),
    dir,
    only: only ? only.split(',') : undefined,
    verbose: argv.includes('--verbose'),
    deadline: get('--deadline') ? Number(get('--deadline')) : undefined,
  });
  fs.writeFileSync(path.join(dir, 'result.json'), JSON.stringify(result));
  // After a hang a native worker thread may still be stuck, and a normal exit waits for it.
  if (result.hung) process.kill(process.pid, 'SIGKILL');
  return 0;
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv.includes('--child')) {
    return child(argv).catch((err) => {
      // A failure of the fuzzer's own code (exit code 3), told apart from a crash of memq.
      process.stderr.write(`fuzz child: harness error: ${err && err.stack ? err.stack : err}\n`);
      return 3;
    });
  }
  return require(path.join(__dirname, '..', 'test', 'fuzz', 'harness.ts')).main(argv);
}

main().then(
  (code) => {
    process.exitCode = code;
    // Native worker threads or open handles must not keep a finished run alive.
    setImmediate(() => process.exit(code));
  },
  (err) => {
    process.stderr.write(`fuzz: ${err && err.stack ? err.stack : err}\n`);
    process.exit(2);
  },
);
