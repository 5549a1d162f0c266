import * as fs from 'fs';
import * as path from 'path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

// Issue #12 item 3: the layers of the TypeScript, checked on the import graph of the sources
// (every import / export … from / import() / require() of a relative path, `import type` too:
// a reader follows those as well). The graph is read with the TypeScript parser, not regexes,
// so comments and strings that look like imports do not count.

const root = path.resolve(__dirname, '..', '..');
const rel = (f: string) => path.relative(root, f).split(path.sep).join('/');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sources(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

/** The module specifiers a file imports, with the kind of each. */
export function importsOf(file: string, text = fs.readFileSync(file, 'utf8')): { spec: string; typeOnly: boolean }[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const out: { spec: string; typeOnly: boolean }[] = [];
  const visit = (n: ts.Node) => {
    if (ts.isImportDeclaration(n) && ts.isStringLiteral(n.moduleSpecifier)) {
      out.push({ spec: n.moduleSpecifier.text, typeOnly: !!n.importClause?.isTypeOnly });
    } else if (ts.isExportDeclaration(n) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      out.push({ spec: n.moduleSpecifier.text, typeOnly: n.isTypeOnly });
    } else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference) && ts.isStringLiteral(n.moduleReference.expression)) {
      out.push({ spec: n.moduleReference.expression.text, typeOnly: n.isTypeOnly });
    } else if (ts.isCallExpression(n) && n.arguments.length >= 1) {
      const callee = n.expression;
      const isRequire = ts.isIdentifier(callee) && callee.text === 'require';
      const isResolve = ts.isPropertyAccessExpression(callee) && ts.isIdentifier(callee.expression) && callee.expression.text === 'require' && callee.name.text === 'resolve';
      if (isRequire || isResolve || callee.kind === ts.SyntaxKind.ImportKeyword) {
        const arg = n.arguments[0];
        // a computed path (`../bench/${name}`) counts by its literal head: it names a folder all the same
        if (ts.isStringLiteralLike(arg)) out.push({ spec: arg.text, typeOnly: false });
        else if (ts.isTemplateExpression(arg)) out.push({ spec: `${arg.head.text}*`, typeOnly: false });
      }
    } else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) {
      out.push({ spec: n.argument.literal.text, typeOnly: true });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** Relative paths written as string or template literals anywhere in a file (a computed require hides behind them). */
function relativeLiterals(file: string): string[] {
  const sf = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const out: string[] = [];
  const visit = (n: ts.Node) => {
    if ((ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n) || ts.isTemplateHead(n)) && /^\.\.?\//.test(n.text)) out.push(n.text);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** A relative specifier resolved to a file of the repository (or the path it names when none exists). */
function resolve(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined; // a package or a Node built-in
  const base = path.resolve(path.dirname(from), spec);
  for (const c of [base, `${base}.ts`, `${base}.js`, path.join(base, 'index.ts'), path.join(base, 'index.js')]) {
    if (fs.existsSync(c) && fs.statSync(c).isFile()) return c;
  }
  return base;
}

interface Edge { from: string; to: string; spec: string; typeOnly: boolean }

function edgesOf(files: string[]): Edge[] {
  const edges: Edge[] = [];
  for (const f of files) {
    for (const { spec, typeOnly } of importsOf(f)) {
      const to = resolve(f, spec);
      if (to) edges.push({ from: rel(f), to: rel(to), spec, typeOnly });
    }
  }
  return edges;
}

/** Strongly connected components with more than one module, or a module importing itself (Tarjan). */
export function cycles(nodes: string[], edges: { from: string; to: string }[]): string[][] {
  const adj = new Map<string, string[]>(nodes.map((n) => [n, []]));
  for (const e of edges) if (adj.has(e.from) && adj.has(e.to)) adj.get(e.from)!.push(e.to);
  const index = new Map<string, number>(), low = new Map<string, number>(), on = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  let next = 0;
  const strong = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    on.add(v);
    for (const w of adj.get(v)!) {
      if (!index.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || adj.get(v)!.includes(v)) out.push(comp.sort());
    }
  };
  for (const n of nodes) if (!index.has(n)) strong(n);
  return out;
}

const libFiles = sources(path.join(root, 'lib'));
const libEdges = edgesOf(libFiles);
const show = (es: Edge[]) => es.map((e) => `${e.from} -> ${e.to} ('${e.spec}'${e.typeOnly ? ', type only' : ''})`);

describe('the import graph of lib/', () => {
  it('reads the imports the parser sees, not look-alikes in comments and strings', () => {
    const text = [
      "import { a } from './a';",
      "import type { B } from './b';",
      "export { c } from './c';",
      "export type { D } from './d';",
      "const e = require('./e');",
      "const f = await import('./f');",
      "let g: import('./g').G;",
      "const h = require(`../../h/${name}`);",
      "// import { x } from './x';",
      "/* require('./y') */",
      "const s = \"import z from './z'\";",
    ].join('\n');
    expect(importsOf('t.ts', text)).toEqual([
      { spec: './a', typeOnly: false }, { spec: './b', typeOnly: true }, { spec: './c', typeOnly: false }, { spec: './d', typeOnly: true },
      { spec: './e', typeOnly: false }, { spec: './f', typeOnly: false }, { spec: './g', typeOnly: true }, { spec: '../../h/*', typeOnly: false },
    ]);
  });

  it('finds cycles (a hand-made graph)', () => {
    const nodes = ['a', 'b', 'c', 'd', 'e'];
    const found = cycles(nodes, [{ from: 'a', to: 'b' }, { from: 'b', to: 'c' }, { from: 'c', to: 'a' }, { from: 'c', to: 'd' }, { from: 'e', to: 'e' }]);
    expect(found).toEqual([['a', 'b', 'c'], ['e']]);
    expect(cycles(nodes, [{ from: 'a', to: 'b' }, { from: 'b', to: 'c' }, { from: 'a', to: 'c' }])).toEqual([]);
  });

  it('sees the whole library (sanity: the scan is not empty)', () => {
    expect(libFiles.length).toBeGreaterThan(50);
    expect(libEdges.some((e) => e.from === 'lib/agent/runner.ts' && e.to === 'lib/agent/config.ts')).toBe(true);
  });

  it('every relative import of lib/ resolves to a file', () => {
    const missing = libEdges.filter((e) => !fs.existsSync(path.join(root, e.to)));
    expect(show(missing)).toEqual([]);
  });

  it('lib/ never imports bench/ (the benchmarks are their own entry, bench/cli.ts) nor anything outside lib/', () => {
    const out = libEdges.filter((e) => !e.to.startsWith('lib/') && e.to !== 'package.json');
    expect(show(out)).toEqual([]);
  });

  it('no relative path in lib/ reaches into bench/, even one a computed require would use', () => {
    const hits = libFiles.flatMap((f) =>
      relativeLiterals(f).filter((t) => rel(path.resolve(path.dirname(f), t)).startsWith('bench/')).map((t) => `${rel(f)}: '${t}'`));
    expect(hits).toEqual([]);
  });

  it('lib/train never imports lib/agent (the runner owns the Mem-EM schedule; episodes live in lib/episode)', () => {
    const up = libEdges.filter((e) => e.from.startsWith('lib/train/') && e.to.startsWith('lib/agent/'));
    expect(show(up)).toEqual([]);
  });

  it('lib/episode imports neither lib/agent nor lib/train (it sits below both)', () => {
    const up = libEdges.filter((e) => e.from.startsWith('lib/episode/') && (e.to.startsWith('lib/agent/') || e.to.startsWith('lib/train/')));
    expect(show(up)).toEqual([]);
  });

  it('lib/llm/model.ts and lib/llm/lora.ts: lora imports model, never the other way', () => {
    const back = libEdges.filter((e) => e.from === 'lib/llm/model.ts' && e.to === 'lib/llm/lora.ts');
    expect(show(back)).toEqual([]);
  });

  it('no import cycle among the modules of lib/', () => {
    const found = cycles(libFiles.map(rel), libEdges);
    expect(found.map((c) => c.join(' <-> '))).toEqual([]);
  });
});

describe('bench/', () => {
  it('imports the library and itself only (no test helpers, nothing above)', () => {
    const benchEdges = edgesOf(sources(path.join(root, 'bench')));
    const out = benchEdges.filter((e) => !e.to.startsWith('lib/') && !e.to.startsWith('bench/') && e.to !== 'package.json');
    expect(show(out)).toEqual([]);
  });
});
