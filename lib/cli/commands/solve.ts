/**
 * `memq solve`: exact soft / hard solution of a finite MDP with a prior (MATH §6).
 *
 *   memq solve --mdp FILE.json [--alpha A] [--gamma G] [--method spi|svi|vi] [--tol T] [--max-iter N] --json
 */
import { CliError, formatHelp, parseArgs, type CliIO, type Command, type FlagSpec } from '../args';
import { loadMdpFile, MDP_MAX_ACTIONS, MDP_MAX_STATES, MdpValidationError, validateAlpha, validateGamma, type FiniteMdp } from '../../policy/mdp';
import { solveMdp, type SolveMethod } from '../../policy/solvers';

const METHODS: SolveMethod[] = ['spi', 'svi', 'vi'];

const spec: Record<string, FlagSpec> = {
  mdp: { kind: 'string', help: `MDP file (JSON: states ≤ ${MDP_MAX_STATES}, actions ≤ ${MDP_MAX_ACTIONS}, P [S][A][S] rows summing to 1, R [S][A], prior?, terminal?, gamma?)` },
  alpha: {
    kind: 'number',
    help: 'KL temperature α >= 0 (0 = hard max)',
    default: 1,
    check: (v: number) => (v >= 0 ? undefined : `must be >= 0, got ${v}`),
  },
  gamma: {
    kind: 'number',
    help: 'discount γ in [0, 1)',
    defaultText: "the file's gamma, else 0.95",
    check: (v: number) => (v >= 0 && v < 1 ? undefined : `must be in [0, 1), got ${v}`),
  },
  method: {
    kind: 'string',
    help: 'spi (soft policy iteration), svi (soft value iteration), vi (hard value iteration)',
    default: 'spi',
    check: (v: string) => (METHODS.includes(v as SolveMethod) ? undefined : `must be one of ${METHODS.join(', ')}, got '${v}'`),
  },
  tol: {
    kind: 'number',
    help: 'convergence tolerance (sup norm)',
    default: 1e-12,
    check: (v: number) => (v > 0 ? undefined : `must be > 0, got ${v}`),
  },
  'max-iter': {
    kind: 'int',
    help: 'iteration cap',
    defaultText: '1000 for spi, 100000 for svi and vi',
    check: (v: number) => (v >= 1 ? undefined : `must be >= 1, got ${v}`),
  },
  json: { kind: 'boolean', help: 'print the result as JSON' },
  help: { kind: 'boolean', help: 'show this help' },
};

const USAGE = '--mdp FILE.json [--alpha A] [--gamma G] [--method spi|svi|vi] [--tol T] [--max-iter N] [--json]';

function rows(flat: Float64Array, r: number, c: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < r; i++) out.push(Array.from(flat.subarray(i * c, (i + 1) * c)));
  return out;
}

async function run(argv: string[], io: CliIO): Promise<number> {
  const { flags, positionals } = parseArgs(argv, spec, 'solve');
  if (flags.help) {
    io.stdout(formatHelp('solve', USAGE, spec));
    return 0;
  }
  if (positionals.length > 0) throw new CliError(`memq solve: unexpected argument '${positionals[0]}'`);
  if (!flags.mdp) throw new CliError('memq solve: --mdp FILE.json is required');
  let mdp: FiniteMdp;
  try {
    mdp = loadMdpFile(flags.mdp);
  } catch (err) {
    if (err instanceof MdpValidationError) throw new CliError(`memq solve: ${err.message}`);
    throw err;
  }
  const method = flags.method as SolveMethod;
  let gamma: number;
  let alpha: number;
  try {
    gamma = validateGamma(flags.gamma ?? mdp.gamma ?? 0.95);
    alpha = method === 'vi' ? 0 : validateAlpha(flags.alpha);
  } catch (err) {
    throw new CliError(`memq solve: ${(err as Error).message}`);
  }
  let res;
  try {
    res = solveMdp(mdp, method, { alpha, gamma, tol: flags.tol, maxIter: flags['max-iter'] });
  } catch (err) {
    if (err instanceof RangeError) throw new CliError(`memq solve: ${flags.mdp}: ${err.message}`);
    throw err;
  }
  if (!res.converged) {
    io.stderr(`memq solve: warning: stopped after ${res.iterations} iterations before reaching --tol ${flags.tol} (residual ${res.residual.toExponential(3)})\n`);
  }
  const out = {
    V: Array.from(res.V),
    Q: rows(res.Q, mdp.S, mdp.A),
    policy: rows(res.policy, mdp.S, mdp.A),
    iterations: res.iterations,
    residual: res.residual,
  };
  if (flags.json) {
    io.stdout(JSON.stringify(out) + '\n');
    return 0;
  }
  const lines = [
    `method ${method}  alpha ${alpha}  gamma ${gamma}  states ${mdp.S}  actions ${mdp.A}`,
    `iterations ${res.iterations}  residual ${res.residual.toExponential(3)}`,
    '',
    'state  V           policy (π(a|s), a = 0..A-1)',
  ];
  for (let s = 0; s < mdp.S; s++) {
    const pi = out.policy[s].map((p) => p.toFixed(4)).join(' ');
    lines.push(`${String(s).padStart(5)}  ${out.V[s].toFixed(6).padStart(10)}  ${pi}${mdp.terminal[s] ? '  (terminal)' : ''}`);
  }
  io.stdout(lines.join('\n') + '\n');
  return 0;
}

export const solveCommand: Command = {
  name: 'solve',
  summary: 'exact soft/hard value of a finite MDP with a prior (soft policy/value iteration)',
  run,
};
