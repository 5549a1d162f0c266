/**
 * The resources of one Slurm array task (one sweep cell): the sweep file's `slurm` object and
 * the `memq sweep --executor slurm` flags. Checked here, before anything is written or
 * submitted, with the field named on error (docs/sweep.md lists them).
 */

export interface SlurmSettings {
  /** --partition: the partition (queue) the tasks run in (default: the cluster's default). */
  partition?: string;
  /** --time: the wall-clock limit per task, in a Slurm time format (MM, HH:MM:SS, D-HH:MM, ...). */
  time?: string;
  /** --gpus-per-task (0 or absent: none). */
  gpusPerTask?: number;
  /** --cpus-per-task (also each cell's MEMQ_THREADS unless set). */
  cpusPerTask?: number;
  /** --mem: memory per node, e.g. 4G, 800M. */
  mem?: string;
  /** At most this many tasks of the array at once (the %N of --array). */
  maxRunning?: number;
  /** Seconds before the time limit at which Slurm sends the task SIGINT, so the cell checkpoints (default 120). */
  signalSeconds?: number;
}

export const SLURM_FIELDS = ['partition', 'time', 'gpusPerTask', 'cpusPerTask', 'mem', 'maxRunning', 'signalSeconds'] as const;

const TIME_RE = /^(\d{1,4}-\d{1,2}(:\d{1,2}){0,2}|\d{1,6}(:\d{1,2}){0,2})$/;
const MEM_RE = /^\d{1,9}[KMGT]?$/;
const PARTITION_RE = /^[A-Za-z0-9._-]{1,64}(,[A-Za-z0-9._-]{1,64}){0,15}$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Checks a `slurm` object; throws RangeError/TypeError naming `where` and the field. */
export function checkSlurmSettings(raw: unknown, where = 'slurm'): SlurmSettings {
  if (!isObject(raw)) throw new TypeError(`${where} must be an object of ${SLURM_FIELDS.join(', ')}, got ${raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw}`);
  for (const k of Object.keys(raw)) {
    if (!(SLURM_FIELDS as readonly string[]).includes(k)) throw new RangeError(`${where}: unknown field '${k}' (known: ${SLURM_FIELDS.join(', ')})`);
  }
  const out: SlurmSettings = {};
  const str = (k: 'partition' | 'time' | 'mem', re: RegExp, form: string) => {
    const v = raw[k];
    if (v === undefined) return;
    if (typeof v !== 'string') throw new TypeError(`${where}.${k} must be a string (${form}), got ${JSON.stringify(v)}`);
    if (!re.test(v)) throw new RangeError(`${where}.${k} must be ${form}, got ${JSON.stringify(v)}`);
    out[k] = v;
  };
  const int = (k: 'gpusPerTask' | 'cpusPerTask' | 'maxRunning' | 'signalSeconds', lo: number, hi: number) => {
    const v = raw[k];
    if (v === undefined) return;
    if (typeof v !== 'number') throw new TypeError(`${where}.${k} must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
    if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`${where}.${k} must be an integer in [${lo}, ${hi}], got ${v}`);
    out[k] = v;
  };
  str('partition', PARTITION_RE, 'a partition name (letters, digits . _ -; a comma list allowed)');
  str('time', TIME_RE, 'a Slurm time limit: MINUTES, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS');
  str('mem', MEM_RE, 'a memory size: an integer with an optional unit K, M, G or T (e.g. 4G)');
  int('gpusPerTask', 0, 64);
  int('cpusPerTask', 1, 1024);
  int('maxRunning', 1, 100000);
  int('signalSeconds', 0, 65535);
  return out;
}
