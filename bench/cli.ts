/**
 * `memq bench …`: the benchmarks' own entry. The library does not import bench/: bin/memq.js
 * hands this command to the CLI (lib/cli/main.ts) when the build has it (dist/cjs/bench/cli.js,
 * a clone's build), and says what to do when it does not (an installed package: bench/ is not
 * shipped, since the benchmarks compare against devDependencies such as usearch and hnswlib-node,
 * need memq_bench.node from a source build and write into bench/results/ of the repository).
 * Each benchmark module is imported when its benchmark runs, so the CLI starts without them.
 */
import { parseArgs, formatHelp, CliError, type Command, type FlagSpec } from '../lib/cli/args';
import { checkOutputFile } from '../lib/cli/paths';

const PEERS = ['usearch', 'hnswlib', 'js', 'faiss'];

const spec: Record<string, FlagSpec> = {
  n: { kind: 'string', help: 'memory sizes, comma-separated (retrieval); rows of the key file (mmap, default 6500000)', defaultText: 'the full grid of bench/retrieval.ts' },
  d: { kind: 'string', help: 'key dimensions, comma-separated (retrieval)', defaultText: 'the full grid' },
  b: { kind: 'string', help: 'query batch sizes, comma-separated (retrieval)', defaultText: 'the full grid' },
  m: { kind: 'int', help: 'top-m (retrieval), 1 to 4096', default: 32, check: (v: number) => (v >= 1 && v <= 4096 ? undefined : `must be an integer in [1, 4096], got ${v}`) },
  peers: { kind: 'string', help: `peers, comma-separated subset of ${PEERS.join(',')} (retrieval)`, defaultText: PEERS.join(',') },
  quick: { kind: 'boolean', help: 'a small grid, for a smoke run' },
  url: { kind: 'string', help: 'scale: redis://HOST:PORT of a running Redis', defaultText: 'start a redis-server here' },
  actors: { kind: 'string', help: 'scale: actor counts, comma-separated, each 1 to 64', defaultText: '1,2,4' },
  episodes: { kind: 'int', help: 'scale: training episodes per actor', defaultText: '200; 40 with --quick' },
  out: { kind: 'string', help: 'result JSON path', defaultText: 'bench/results/<name>-<date>.json' },
  json: { kind: 'boolean', help: 'print the result JSON instead of the table' },
  help: { kind: 'boolean', help: 'show this help' },
};

const LIST_MAX: Record<string, number> = { n: 100_000_000, d: 65_536, b: 65_536, actors: 64 };

function list(s: string | undefined, name: string): number[] | undefined {
  if (s === undefined) return undefined;
  const v = s.split(',').map((x) => Number(x.trim()));
  const max = LIST_MAX[name];
  if (v.some((x) => !Number.isInteger(x) || x < 1 || x > max)) {
    throw new CliError(`memq bench: --${name} expects integers in [1, ${max}] separated by commas, got '${s}'`);
  }
  return v;
}

export const benchCommand: Command = {
  name: 'bench',
  summary: 'benchmarks: retrieval (CPU, vs usearch/hnswlib/JS), envs, llm (engine tokens/s vs the C++ bench), scale (shared memory through Redis)',
  async run(argv, io) {
    const { flags, positionals } = parseArgs(argv, spec, 'bench');
    const what = positionals[0];
    if (flags.help || !what) {
      io.stdout(formatHelp('bench', 'retrieval|envs|llm|scale|mmap [flags]', spec));
      return flags.help ? 0 : 2;
    }
    if (!['retrieval', 'envs', 'llm', 'scale', 'mmap'].includes(what)) throw new CliError(`memq bench: unknown benchmark '${what}' (known: retrieval, envs, llm, scale, mmap)`);
    if (positionals.length > 1) throw new CliError(`memq bench: unexpected argument '${positionals[1]}' (flags start with --)`);
    // every argument is checked before a benchmark runs (they take minutes)
    if (flags.out !== undefined) flags.out = checkOutputFile(`memq bench: --out ${flags.out}`, flags.out);
    if (what !== 'retrieval') {
      const only = (what === 'mmap' ? ['b', 'peers'] : ['n', 'd', 'b', 'peers']).find((k) => flags[k] !== undefined);
      if (only) throw new CliError(`memq bench: --${only} applies to the retrieval benchmark only`);
    }
    if (what !== 'scale') {
      const only = ['url', 'actors', 'episodes'].find((k) => flags[k] !== undefined);
      if (only) throw new CliError(`memq bench: --${only} applies to the scale benchmark only`);
    }
    if (flags.peers !== undefined) {
      const bad = String(flags.peers).split(',').map((p) => p.trim()).filter((p) => !PEERS.includes(p));
      if (bad.length) throw new CliError(`memq bench: --peers expects a comma-separated subset of ${PEERS.join(',')}, got '${bad[0]}'`);
    }
    const log = flags.json ? () => undefined : (s: string) => io.stderr(s);
    if (what === 'retrieval') {
      const quick = flags.quick as boolean;
      const ns = list(flags.n, 'n') ?? (quick ? [10_000, 100_000] : undefined);
      const ds = list(flags.d, 'd') ?? (quick ? [128, 384] : undefined);
      const bs = list(flags.b, 'b') ?? (quick ? [1, 32, 256] : undefined);
      const keyBytes = Math.max(...(ns ?? [0])) * Math.max(...(ds ?? [0])) * 4;
      if (keyBytes > 16 * 2 ** 30) throw new CliError(`memq bench: --n × --d needs ${(keyBytes / 2 ** 30).toFixed(0)} GiB of float32 keys, over the limit of 16 GiB`);
      const { benchRetrieval } = await import('./retrieval');
      const r = await benchRetrieval({
        ns,
        ds,
        bs,
        m: flags.m,
        peers: flags.peers ? String(flags.peers).split(',').map((p: string) => p.trim()) : undefined,
        out: flags.out,
        log,
      });
      if (flags.json) io.stdout(JSON.stringify(r.result, null, 2) + '\n');
      else io.stdout(r.text + `\nwritten: ${r.file}\n`);
      return 0;
    }
    if (what === 'mmap') {
      const ns = list(flags.n, 'n');
      const ds = list(flags.d, 'd');
      if ((ns && ns.length !== 1) || (ds && ds.length !== 1)) throw new CliError('memq bench mmap: --n and --d take one number each');
      const { benchMmap } = await import('./mmap');
      const quick = flags.quick as boolean;
      const r = await benchMmap({ n: ns?.[0] ?? (quick ? 200_000 : undefined), d: ds?.[0], memoryN: quick ? 50_000 : undefined, out: flags.out, log });
      if (flags.json) io.stdout(JSON.stringify(r.result, null, 2) + '\n');
      else io.stdout(r.text + `\nwritten: ${r.file}\n`);
      return 0;
    }
    if (what === 'envs') {
      const r = await (await import('./envs')).benchEnvs({ print: !flags.json });
      const { machine, writeResult } = await import('./common');
      const file = writeResult('envs', { benchmark: 'envs', machine: machine(), ...r }, flags.out);
      if (flags.json) io.stdout(JSON.stringify(r, null, 2) + '\n');
      else io.stdout(`written: ${file}\n`);
      return 0;
    }
    if (what === 'llm') {
      const { benchLlm } = await import('./llm');
      const r = await benchLlm({ quick: flags.quick, out: flags.out, log });
      if (flags.json) io.stdout(JSON.stringify(r.result, null, 2) + '\n');
      else io.stdout(r.text + `\nwritten: ${r.file}\n`);
      return 0;
    }
    if (what === 'scale') {
      const { benchScale } = await import('./scale');
      const r = await benchScale({ url: flags.url, actors: list(flags.actors, 'actors'), episodes: flags.episodes, quick: flags.quick, out: flags.out, log });
      if (flags.json) io.stdout(JSON.stringify(r.result, null, 2) + '\n');
      else io.stdout(r.text + `\nwritten: ${r.file}\n`);
      return 0;
    }
    throw new CliError(`memq bench: unknown benchmark '${what}' (known: retrieval, envs, llm, scale)`);
  },
};
