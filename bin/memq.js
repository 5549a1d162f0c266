#!/usr/bin/env node
'use strict';
// The memq CLI. The TypeScript build lives in dist/cjs; `npm install` produces it.
let main;
try {
  ({ main } = require('../dist/cjs/lib/cli/main.js'));
} catch (err) {
  process.stderr.write(
    `memq: the build is missing (${err && err.message}).\nRun 'npm install' (or 'npm run build') in the memq package first.\n`,
  );
  process.exit(1);
}

// `memq bench`: the benchmarks are their own entry (bench/cli.ts, built to dist/cjs/bench in a
// clone); the library never imports them. An installed package does not ship bench/: there the
// command only says where the benchmarks run.
const path = require('path');
const fs = require('fs');
const BENCHMARKS = ['retrieval', 'envs', 'llm', 'scale'];
const benchEntry = path.join(__dirname, '..', 'dist', 'cjs', 'bench', 'cli.js');
let benchCommand;
if (fs.existsSync(benchEntry)) {
  ({ benchCommand } = require(benchEntry));
} else {
  benchCommand = {
    name: 'bench',
    summary: 'benchmarks (from a clone of the repository; not part of the installed package)',
    async run(argv, io) {
      const what = argv.find((a) => BENCHMARKS.includes(a)) || 'retrieval';
      io.stderr(
        `memq bench: the benchmarks are not part of the installed memq package (no bench/${what} next to ${path.dirname(path.dirname(benchEntry))}). ` +
          `They run from a clone of the repository: 'npm install' there, then 'npx memq bench ${what}'.\n`,
      );
      return 1;
    },
  };
}
const controller = new AbortController();
let interrupts = 0;
process.on('SIGINT', () => {
  interrupts += 1;
  if (interrupts === 1) {
    process.stderr.write('\nmemq: interrupt received; finishing the current unit of work and saving (Ctrl-C again to abort now)\n');
    controller.abort();
  } else {
    process.exit(130);
  }
});
// Started by `memq sweep` (an IPC channel to the sweep): stop cleanly, as on Ctrl-C, when the
// sweep process goes away, so a killed sweep leaves no cell running on its own. The channel
// must not keep this process alive.
if (process.channel) {
  process.channel.unref();
  process.on('disconnect', () => {
    if (!controller.signal.aborted) controller.abort();
  });
}
main(process.argv.slice(2), { signal: controller.signal }, [benchCommand]).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`memq: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  },
);
