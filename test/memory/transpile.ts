// Transpile lib/ TypeScript to CommonJS JS in a temp dir, for child processes (Node 20 cannot
// run .ts). Syntax-only (ts.transpileModule): fast and independent of others' type errors.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ts from 'typescript';

const ROOT = path.resolve(__dirname, '../..');

export function transpileLib(files: string[]): string {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-js-'));
  for (const rel of files) {
    const src = fs.readFileSync(path.join(ROOT, rel), 'utf8');
    const js = ts.transpileModule(src, {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
      fileName: rel,
    }).outputText;
    const dest = path.join(out, rel.replace(/\.ts$/, '.js'));
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.writeFileSync(dest, js);
  }
  return out;
}

/** The given lib/ entry files and every lib/ file they import, transitively (relative imports). */
export function importClosure(entries: string[]): string[] {
  const seen = new Set<string>();
  const stack = [...entries];
  while (stack.length) {
    const rel = stack.pop()!;
    if (seen.has(rel)) continue;
    seen.add(rel);
    const src = fs.readFileSync(path.join(ROOT, rel), 'utf8');
    const re = /(?:from\s+|require\(\s*|import\(\s*)'(\.{1,2}\/[^']+)'/g;
    for (let m = re.exec(src); m; m = re.exec(src)) {
      const base = path.join(path.dirname(rel), m[1]);
      for (const cand of [`${base}.ts`, path.join(base, 'index.ts')]) {
        if (fs.existsSync(path.join(ROOT, cand))) {
          stack.push(cand.split(path.sep).join('/'));
          break;
        }
      }
    }
  }
  return [...seen];
}

/** What the crash-test child needs (and the float64 ReferenceIndex it runs the memory on). */
export function memoryLibFiles(): string[] {
  return importClosure(['lib/memory/episodic.ts', 'lib/memory/snapshot.ts', 'test/helpers/referenceIndex.ts']);
}
