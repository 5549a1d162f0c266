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
main(process.argv.slice(2), { signal: controller.signal }).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`memq: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  },
);
