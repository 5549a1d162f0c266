import { spawnSync } from 'child_process';
import { describe, expect, it } from 'vitest';
import { loadNative, nativePath } from '../../lib/native';

// Under RLIMIT_AS = 2 GB, libuv aborts the process when it cannot start its thread pool (seen
// with gdb: abort() in libuv's threadpool init_once, on the first async call made after the
// failed 2 GB allocations). That is Node's, not memq's: the script starts the pool (one fs call)
// before memory gets tight, so the calls below test memq alone.
describe('limits: an allocation that fails under the limit', () => {
  it('an allocation that fails under the limit is an Error, sync and async (never an abort)', () => {
    // A child process under RLIMIT_AS = 2 GB: b*m = 2^28 cannot be allocated there.
    const probe = spawnSync('prlimit', ['--version'], { encoding: 'utf8' });
    if (probe.status !== 0) return; // util-linux prlimit not installed: nothing to run it under
    const script = `
      require('fs').readFile(__filename === '[eval]' ? '/dev/null' : __filename, () => {
      const n = require(${JSON.stringify((loadNative(), nativePath()))});
      const ix = new n.NativeMemoryIndex(4, 0, 1, 0, 'cpu');
      ix.add(new Float32Array([1, 0, 0, 0]), new Float32Array([1]));
      const out = [];
      const t = (f) => { try { f(); out.push('ok'); } catch (e) { out.push(e.constructor.name + ': ' + e.message); } };
      t(() => ix.searchSync(new Float32Array(64), 1 << 24));
      t(() => ix.estimateSync(new Float32Array(64), 1 << 24, 0, 0));
      t(() => n.klImprove(new Float32Array(1 << 28), new Float32Array(1 << 28), 1 << 28, 1, 1));
      ix.estimate(new Float32Array(64), 1 << 24, 0, 0, { value: new Float32Array(16), confidence: new Float32Array(16) })
        .then(() => out.push('resolved'), (e) => out.push(e.constructor.name + ': ' + e.message))
        .then(() => console.log(JSON.stringify(out)));
      });`;
    const r = spawnSync('prlimit', ['--as=2000000000', process.execPath, '-e', script], { encoding: 'utf8' });
    expect(r.status, `${r.signal} ${r.stderr} ${r.stdout} ${nativePath()}`).toBe(0);
    const out: string[] = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(out).toHaveLength(4);
    expect(out[0]).toMatch(/^Error: out of memory while allocating 268435456 x 4 bytes for MemoryIndex\.searchSync results/);
    expect(out[1]).toMatch(/^Error: MemoryIndex\.estimateSync: out of memory while allocating 268435456 rows for search results \(b\*m = 16\*16777216\)/);
    // klImprove's inputs (2 GB) themselves cannot be allocated there, or its outputs cannot.
    expect(out[2]).toMatch(/^(RangeError: Array buffer allocation failed|Error: out of memory)/);
    expect(out[3]).toMatch(/^Error: MemoryIndex\.estimate: out of memory while allocating 268435456 rows/);
  });
});
