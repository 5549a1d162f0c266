import * as path from 'path';
import { parseArgs, formatHelp, CliError, type Command, type FlagSpec } from '../args';

const spec: Record<string, FlagSpec> = {
  n: { kind: 'string', help: 'memory sizes, comma-separated (retrieval)' },
  d: { kind: 'string', help: 'key dimensions, comma-separated (retrieval)' },
  b: { kind: 'string', help: 'query batch sizes, comma-separated (retrieval)' },
  m: { kind: 'int', help: 'top-m (retrieval)', default: 32 },
  peers: { kind: 'string', help: 'peers: usearch,hnswlib,js (retrieval)' },
  quick: { kind: 'boolean', help: 'a small grid, for a smoke run' },
  out: { kind: 'string', help: 'result JSON path (default bench/results/<name>-<date>.json)' },
  json: { kind: 'boolean', help: 'print the result JSON instead of the table' },
  help: { kind: 'boolean', help: 'show this help' },
};

function list(s: string | undefined, name: string): number[] | undefined {
  if (s === undefined) return undefined;
  const v = s.split(',').map((x) => Number(x.trim()));
  if (v.some((x) => !Number.isInteger(x) || x < 1)) throw new CliError(`memq bench: --${name} expects positive integers separated by commas, got '${s}'`);
  return v;
}

/**
 * A benchmark module from bench/ (compiled to dist/cjs/bench in a clone). The npm package does
 * not ship bench/: the benchmarks compare against devDependencies (usearch, hnswlib-node), run
 * the C++ bench executables of a source build and write into bench/results/ of the repository.
 */
function loadBench(name: string): any {
  const request = `../../../bench/${name}`;
  let file: string;
  try {
    file = require.resolve(request);
  } catch {
    throw new CliError(
      `memq bench: the benchmarks are not part of the installed memq package (no bench/${name} next to ${path.resolve(__dirname, '../../..')}). ` +
        "They run from a clone of the repository: 'npm install' there, then 'npx memq bench " + name + "'.",
      1,
    );
  }
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require(file);
}

export const benchCommand: Command = {
  name: 'bench',
  summary: 'benchmarks: retrieval (CPU, vs usearch/hnswlib/JS), envs, llm (engine tokens/s vs the C++ bench)',
  async run(argv, io) {
    const { flags, positionals } = parseArgs(argv, spec, 'bench');
    const what = positionals[0];
    if (flags.help || !what) {
      io.stdout(formatHelp('bench', 'retrieval|envs|llm [flags]', spec));
      return flags.help ? 0 : 2;
    }
    const log = flags.json ? () => undefined : (s: string) => io.stderr(s);
    if (what === 'retrieval') {
      const { benchRetrieval } = loadBench('retrieval');
      const quick = flags.quick as boolean;
      const r = await benchRetrieval({
        ns: list(flags.n, 'n') ?? (quick ? [10_000, 100_000] : undefined),
        ds: list(flags.d, 'd') ?? (quick ? [128, 384] : undefined),
        bs: list(flags.b, 'b') ?? (quick ? [1, 32, 256] : undefined),
        m: flags.m,
        peers: flags.peers ? String(flags.peers).split(',') : undefined,
        out: flags.out,
        log,
      });
      if (flags.json) io.stdout(JSON.stringify(r.result, null, 2) + '\n');
      else io.stdout(r.text + `\nwritten: ${r.file}\n`);
      return 0;
    }
    if (what === 'envs') {
      const r = await loadBench('envs').benchEnvs({ print: !flags.json });
      const { machine, writeResult } = loadBench('common');
      const file = writeResult('envs', { benchmark: 'envs', machine: machine(), ...r }, flags.out);
      if (flags.json) io.stdout(JSON.stringify(r, null, 2) + '\n');
      else io.stdout(`written: ${file}\n`);
      return 0;
    }
    if (what === 'llm') {
      const { benchLlm } = loadBench('llm');
      const r = await benchLlm({ quick: flags.quick, out: flags.out, log });
      if (flags.json) io.stdout(JSON.stringify(r.result, null, 2) + '\n');
      else io.stdout(r.text + `\nwritten: ${r.file}\n`);
      return 0;
    }
    throw new CliError(`memq bench: unknown benchmark '${what}' (known: retrieval, envs, llm)`);
  },
};
