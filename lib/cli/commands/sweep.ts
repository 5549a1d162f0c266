/**
 * memq sweep: a grid of configs × seeds as parallel processes, resumable, results in one
 * directory that `memq compare` reads.
 *   memq sweep FILE.json --out DIR [--parallel N] [--dry-run]    start (or continue) a sweep
 *   memq sweep DIR                                               continue it after Ctrl-C or a crash
 *   memq sweep status DIR [--json]                               what is done, partial, pending, failed
 *   memq sweep FILE.json --out DIR --executor slurm [--partition P --time T --gpus-per-task G
 *              --cpus-per-task C --mem M] [--wait]                as one Slurm job array (docs/sweep.md)
 *   memq sweep DIR --executor slurm [--wait]                      submit the cells not done yet
 */
import * as fs from 'fs';
import * as path from 'path';
import { CliError, formatHelp, parseArgs, type Command, type FlagSpec } from '../args';
import { expandSweep, initSweepDir, isSweepDir, readSweepFile, sweepStatus, SweepError, type CellStatus } from '../../sweep/index';
import { runSweepLocal } from '../../sweep/local';
import { runSweepSlurm, SlurmError } from '../../sweep/slurm';
import { checkSlurmSettings, type SlurmSettings } from '../../sweep/slurmSettings';
import { EXECUTORS, type ExecutorName, type ExecutorResult } from '../../sweep/executor';
import { packageRoot } from '../../native';

const spec: Record<string, FlagSpec> = {
  out: { kind: 'string', help: 'the sweep directory (new or empty; required with a sweep file)' },
  parallel: { kind: 'int', help: "cells at once (default: the sweep file's 'parallel', else the number of cores)", check: (v) => (v >= 1 && v <= 256 ? undefined : 'must be in [1, 256]') },
  'dry-run': { kind: 'boolean', help: 'list the cells and exit without creating anything' },
  executor: { kind: 'string', help: "local (child processes here, default) | slurm (one sbatch --array job; the directory must be shared with the nodes)", check: (v) => (EXECUTORS.includes(v) ? undefined : `must be one of ${EXECUTORS.join(', ')}, got '${v}'`) },
  partition: { kind: 'string', help: "slurm: the partition (sweep file: slurm.partition)" },
  time: { kind: 'string', help: 'slurm: time limit per cell, e.g. 2:00:00 (slurm.time)' },
  'gpus-per-task': { kind: 'int', help: 'slurm: GPUs per cell (slurm.gpusPerTask)' },
  'cpus-per-task': { kind: 'int', help: 'slurm: CPUs per cell, also its MEMQ_THREADS (slurm.cpusPerTask)' },
  mem: { kind: 'string', help: 'slurm: memory per cell, e.g. 8G (slurm.mem)' },
  'max-running': { kind: 'int', help: 'slurm: at most this many cells at once (slurm.maxRunning)' },
  wait: { kind: 'boolean', help: 'slurm: wait until the array finishes (polls squeue), then report' },
  json: { kind: 'boolean', help: 'print JSON (status, or the final state), no progress lines' },
  help: { kind: 'boolean', help: 'show this help' },
};

const USAGE = 'FILE.json --out DIR [--parallel N] [--dry-run] [--executor local|slurm ...] | DIR [--executor slurm [--wait]] | status DIR [--json]';

const SLURM_FLAGS: [string, keyof SlurmSettings][] = [
  ['partition', 'partition'],
  ['time', 'time'],
  ['gpus-per-task', 'gpusPerTask'],
  ['cpus-per-task', 'cpusPerTask'],
  ['mem', 'mem'],
  ['max-running', 'maxRunning'],
];

function readSpec(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new CliError(`memq sweep: ${file}: cannot read the sweep file (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CliError(`memq sweep: ${file}: not valid JSON (${(e as Error).message})`);
  }
}

function statusTable(cells: CellStatus[]): string {
  const counts = { done: 0, partial: 0, pending: 0, failed: 0 };
  for (const c of cells) counts[c.state]++;
  const rows = cells.map((c) => [c.id, c.state, `${c.episodesDone}/${c.episodes}`, c.state === 'failed' ? `exit ${c.exitCode}, log ${c.log}` : '']);
  const headers = ['cell', 'state', 'episodes', ''];
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((x, i) => x.padEnd(widths[i])).join('  ').trimEnd();
  return (
    [line(headers), ...rows.map(line)].join('\n') +
    `\n\n${cells.length} cells: ${counts.done} done, ${counts.partial} partial, ${counts.pending} pending, ${counts.failed} failed\n`
  );
}

export const sweepCommand: Command = {
  name: 'sweep',
  summary: 'a grid of configs × seeds as parallel, resumable runs (docs/sweep.md)',
  async run(argv, io) {
    const { flags, positionals } = parseArgs(argv, spec, 'sweep');
    if (flags.help || positionals.length === 0) {
      io.stdout(formatHelp('sweep', USAGE, spec));
      return flags.help ? 0 : 2;
    }
    try {
      if (positionals[0] === 'status') {
        if (positionals.length !== 2) throw new CliError(`memq sweep status: expects one sweep directory, got ${positionals.length - 1}`);
        const root = path.resolve(positionals[1]);
        if (!isSweepDir(root)) throw new CliError(`memq sweep status: ${positionals[1]} is not a sweep directory (no sweep.json)`);
        const cells = sweepStatus(root);
        if (flags.json) io.stdout(JSON.stringify(cells.map(({ summary: _s, ...c }) => c), null, 2) + '\n');
        else io.stdout(statusTable(cells));
        return 0;
      }
      if (positionals.length !== 1) throw new CliError(`memq sweep: expects one sweep file or directory, got ${positionals.length}`);
      const target = path.resolve(positionals[0]);
      let root: string;
      let parallel: number | undefined = flags.parallel;
      const executor = (flags.executor ?? 'local') as ExecutorName;
      const slurmPatch: Record<string, unknown> = {};
      for (const [flag, field] of SLURM_FLAGS) if (flags[flag] !== undefined) slurmPatch[field] = flags[flag];
      if (executor !== 'slurm') {
        const given = [...SLURM_FLAGS.map(([f]) => f).filter((f) => flags[f] !== undefined), ...(flags.wait ? ['wait'] : [])];
        if (given.length) throw new CliError(`memq sweep: --${given[0]} is for --executor slurm`);
      } else {
        if (flags.parallel !== undefined) throw new CliError('memq sweep: --parallel is for the local executor; with slurm use --max-running');
        try {
          checkSlurmSettings(slurmPatch, 'flags');
        } catch (e) {
          const field = /flags\.(\w+)/.exec((e as Error).message)?.[1];
          const flag = SLURM_FLAGS.find(([, f]) => f === field)?.[0];
          throw new CliError(`memq sweep: ${flag ? `--${flag}` : 'flags'}: ${(e as Error).message.replace(/^flags\.\w+ /, '')}`);
        }
      }
      let stat: fs.Stats | undefined;
      try {
        stat = fs.statSync(target);
      } catch {
        throw new CliError(`memq sweep: ${positionals[0]} does not exist (expected a sweep file or a sweep directory)`);
      }
      if (stat.isDirectory()) {
        if (!isSweepDir(target)) throw new CliError(`memq sweep: ${positionals[0]} is a directory without sweep.json; pass a sweep file and --out DIR to start one`);
        if (flags.out !== undefined && path.resolve(flags.out) !== target) throw new CliError('memq sweep: --out is for new sweeps; a sweep directory continues in place');
        root = target;
        parallel ??= readSweepFile(root).spec.parallel;
      } else {
        const plan = expandSweep(readSpec(target), positionals[0]);
        if (flags['dry-run']) {
          const list = plan.cells.map((c) => ({ id: c.id, agent: c.agent, seed: c.seed, variant: c.variant, params: c.params }));
          if (flags.json) io.stdout(JSON.stringify(list, null, 2) + '\n');
          else io.stdout(list.map((c) => c.id).join('\n') + `\n\n${list.length} cells\n`);
          return 0;
        }
        if (flags.out === undefined) throw new CliError('memq sweep: --out DIR is required to start a sweep (the directory that will hold every cell)');
        root = path.resolve(flags.out);
        initSweepDir(root, plan);
        parallel ??= plan.spec.parallel;
      }
      const cells = readSweepFile(root).cells.length;
      if (!flags.json) io.stderr(`memq sweep: ${cells} cells in ${root}\n`);
      let result: ExecutorResult;
      if (executor === 'slurm') {
        let settings: SlurmSettings;
        try {
          settings = checkSlurmSettings({ ...(readSweepFile(root).spec.slurm ?? {}), ...slurmPatch }, 'slurm settings');
        } catch (e) {
          throw new CliError(`memq sweep: ${(e as Error).message}`);
        }
        const r = await runSweepSlurm(root, {
          settings,
          cliPath: path.join(packageRoot(), 'bin', 'memq.js'),
          wait: flags.wait,
          signal: io.signal,
          onEvent: (e) => {
            if (flags.json) return;
            if (e.kind === 'submit') io.stderr(`submitted job ${e.job}: ${e.cells} cell(s), array ${e.array} (${e.script})\n`);
            else if (e.kind === 'skip') io.stderr(`skipped ${e.cells.length} cell(s): ${e.reason === 'done' ? 'done' : 'already queued or running'}\n`);
            else if (e.kind === 'nothing') io.stderr(`nothing to submit: ${e.reason}\n`);
            else if (e.kind === 'poll') io.stderr(`job ${e.job}: ${e.active} task(s) queued or running; ${e.done}/${e.total} cells done\n`);
            else if (!e.ok) io.stderr(`sacct unavailable (${e.message}); failures are read from the cells' exit.json\n`);
          },
        });
        if (flags.json) {
          io.stdout(JSON.stringify({ root, executor, job: r.job ?? null, submitted: r.submitted, waited: r.waited, done: r.done, cells, failed: r.failed, interrupted: r.interrupted }, null, 2) + '\n');
          if (r.interrupted) return 130;
          return r.failed.length ? 1 : 0;
        }
        if (!r.waited) {
          io.stdout(statusTable(r.status));
          io.stdout(r.job ? `follow: memq sweep status ${root}   (squeue -j ${r.job})\n` : r.done === cells ? `compare: memq compare ${root}\n` : `follow: memq sweep status ${root}\n`);
          return r.interrupted ? 130 : 0;
        }
        result = r;
      } else {
        result = await runSweepLocal(root, {
          parallel,
          signal: io.signal,
          cliPath: path.join(packageRoot(), 'bin', 'memq.js'),
          onEvent: (e) => {
            if (flags.json) return;
            if (e.kind === 'start') io.stderr(`[${e.index}/${e.total}] ${e.id}: ${e.resumed ? 'resumed' : 'started'} (pid ${e.pid})\n`);
            else if (e.kind === 'wait') io.stderr(`${e.id}: waiting for process ${e.pid} of an earlier call to finish\n`);
            else io.stderr(`[${e.index}/${e.total}] ${e.id}: ${e.state} after ${e.seconds.toFixed(0)} s${e.state === 'failed' ? ` (exit ${e.code}; log ${e.log})` : ''}\n`);
          },
        });
      }
      if (flags.json) {
        io.stdout(JSON.stringify({ root, done: result.done, cells, failed: result.failed, interrupted: result.interrupted }, null, 2) + '\n');
      } else {
        io.stdout(statusTable(result.status));
        if (result.done === cells) io.stdout(`compare: memq compare ${root}\n`);
        else io.stdout(`continue: memq sweep ${root}${executor === 'slurm' ? ' --executor slurm' : ''}\n`);
      }
      if (result.interrupted) return 130;
      return result.failed.length ? 1 : 0;
    } catch (e) {
      if (e instanceof SweepError || e instanceof SlurmError) throw new CliError(`memq sweep: ${e.message}`, e instanceof SlurmError ? 1 : 2);
      throw e;
    }
  },
};
