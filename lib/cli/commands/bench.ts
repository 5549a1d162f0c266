import { parseArgs, formatHelp, CliError, type Command, type FlagSpec } from '../args';

const spec: Record<string, FlagSpec> = {
  n: { kind: 'string', help: 'memory sizes, comma-separated (retrieval)' },
  d: { kind: 'string', help: 'key dimensions, comma-separated (retrieval)' },
  b: { kind: 'string', help: 'query batch sizes, comma-separated (retrieval)' },
  m: { kind: 'int', help: 'top-m (retrieval)', default: 32 },
  peers: { kind: 'string', help: 'peers: usearch,hnswlib,js (retrieval)' },
  quick: { kind: 'boolean', help: 'a small grid, for a smoke run' },
  url: { kind: 'string', help: 'scale: redis://HOST:PORT of a running Redis (default: start redis-server here)' },
  actors: { kind: 'string', help: 'scale: actor counts, comma-separated (default 1,2,4)' },
  episodes: { kind: 'int', help: 'scale: training episodes per actor (default 200; --quick 40)' },
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

export const benchCommand: Command = {
  name: 'bench',
  summary: 'benchmarks: retrieval (CPU, vs usearch/hnswlib/JS), envs, llm (engine tokens/s vs the C++ bench), scale (shared memory through Redis)',
  async run(argv, io) {
    const { flags, positionals } = parseArgs(argv, spec, 'bench');
    const what = positionals[0];
    if (flags.help || !what) {
      io.stdout(formatHelp('bench', 'retrieval|envs|llm|scale [flags]', spec));
      return flags.help ? 0 : 2;
    }
    const log = flags.json ? () => undefined : (s: string) => io.stderr(s);
    if (what === 'retrieval') {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const { benchRetrieval } = require('../../../bench/retrieval');
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
      let mod: any;
      try {
        // eslint-disable-next-line @typescript-eslint/no-var-requires
        mod = require('../../../bench/envs');
      } catch {
        throw new CliError('memq bench: the envs benchmark is not available in this build');
      }
      const r = await mod.benchEnvs({ print: !flags.json });
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const { machine, writeResult } = require('../../../bench/common');
      const file = writeResult('envs', { benchmark: 'envs', machine: machine(), ...r }, flags.out);
      if (flags.json) io.stdout(JSON.stringify(r, null, 2) + '\n');
      else io.stdout(`written: ${file}\n`);
      return 0;
    }
    if (what === 'llm') {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const { benchLlm } = require('../../../bench/llm');
      const r = await benchLlm({ quick: flags.quick, out: flags.out, log });
      if (flags.json) io.stdout(JSON.stringify(r.result, null, 2) + '\n');
      else io.stdout(r.text + `\nwritten: ${r.file}\n`);
      return 0;
    }
    if (what === 'scale') {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const { benchScale } = require('../../../bench/scale');
      const r = await benchScale({ url: flags.url, actors: list(flags.actors, 'actors'), episodes: flags.episodes, quick: flags.quick, out: flags.out, log });
      if (flags.json) io.stdout(JSON.stringify(r.result, null, 2) + '\n');
      else io.stdout(r.text + `\nwritten: ${r.file}\n`);
      return 0;
    }
    throw new CliError(`memq bench: unknown benchmark '${what}' (known: retrieval, envs, llm, scale)`);
  },
};
