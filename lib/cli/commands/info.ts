import * as os from 'os';
import { parseArgs, formatHelp, type Command, type FlagSpec } from '../args';
import { backendInfo } from '../../retrieval';
import { version } from '../../version';

const spec: Record<string, FlagSpec> = {
  json: { kind: 'boolean', help: 'print JSON' },
  help: { kind: 'boolean', help: 'show this help' },
};

export const infoCommand: Command = {
  name: 'info',
  summary: 'backend (cpu/cuda), threads, SIMD, BLAS and versions',
  async run(argv, io) {
    const { flags } = parseArgs(argv, spec, 'info');
    if (flags.help) {
      io.stdout(formatHelp('info', '[--json]', spec));
      return 0;
    }
    const info = {
      memq: version(),
      node: process.version,
      napi: process.versions.napi,
      platform: `${process.platform}-${process.arch}`,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      ...backendInfo(),
    };
    if (flags.json) {
      io.stdout(JSON.stringify(info, null, 2) + '\n');
    } else {
      const rows = Object.entries(info).map(([k, v]) => `${k.padEnd(14)} ${String(v)}`);
      io.stdout(rows.join('\n') + '\n');
    }
    return 0;
  },
};
