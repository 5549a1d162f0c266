/**
 * `memq envs [--json]`: the registered environments, their task types and splits.
 */
import { CliError, formatHelp, parseArgs, type Command, type FlagSpec } from '../args';
import { listEnvs } from '../../envs/registry';

const spec: Record<string, FlagSpec> = {
  json: { kind: 'boolean', help: 'print JSON' },
  help: { kind: 'boolean', help: 'show this help' },
};

export const envsCommand: Command = {
  name: 'envs',
  summary: 'list the environments (task types, splits, eval-set sizes)',
  async run(argv, io) {
    const { flags, positionals } = parseArgs(argv, spec, 'envs');
    if (flags.help) {
      io.stdout(formatHelp('envs', '[--json]', spec));
      return 0;
    }
    if (positionals.length > 0) throw new CliError(`memq envs: unexpected argument '${positionals[0]}'`);
    const envs = listEnvs();
    if (flags.json) {
      io.stdout(JSON.stringify(envs, null, 2) + '\n');
      return 0;
    }
    const lines: string[] = [];
    for (const e of envs) {
      lines.push(`${e.name.padEnd(10)} ${e.description}`);
      lines.push(`${''.padEnd(10)} task types: ${e.taskTypes.length > 0 ? e.taskTypes.join(', ') : '(given by the program)'}`);
      const splits = e.splits.map((s) => (e.evalSetSizes[s] == null ? s : `${s} (${e.evalSetSizes[s]} games)`));
      lines.push(`${''.padEnd(10)} splits: ${splits.join(', ')}`);
      lines.push(`${''.padEnd(10)} options: ${e.options}`);
    }
    io.stdout(lines.join('\n') + '\n');
    return 0;
  },
};
