/**
 * The statistics of an experiment table: per group (an agent, or a sweep cell's configuration)
 * and split, the mean success over seeds with its 95 % interval; for a target group, the
 * relative improvement over the best other group on each split with a bootstrap interval over
 * seeds and games, Welch's test of the difference over seeds, and (when both groups played the
 * same games under the same seeds) a paired bootstrap test on those games.
 */
import {
  bootstrapRelativeImprovement,
  meanInterval,
  pairedBootstrapDifference,
  welchTest,
  type BootstrapInterval,
  type MeanInterval,
  type PairedBootstrapResult,
  type WelchResult,
} from './index';

/** One finished run, as the table needs it. */
export interface RunRecord {
  group: string;
  seed: number;
  /** Final evaluation success per split. */
  success: Record<string, number>;
  /** Per split, the outcome of each evaluation game in game order (1 won, 0 lost), when recorded. */
  games?: Record<string, number[]>;
}

export interface TargetComparison {
  split: string;
  /** The other group with the highest mean on this split. */
  baseline: string;
  /** mean(target)/mean(baseline) − 1, bootstrap over seeds then games. */
  relative: BootstrapInterval;
  /** Welch's test of mean(target) − mean(baseline) over seeds (needs 2 seeds a side). */
  welch?: WelchResult;
  /** Paired bootstrap on the same games (same seeds, same game lists), when available. */
  paired?: PairedBootstrapResult;
}

export interface ExperimentTable {
  splits: string[];
  groups: { group: string; seeds: number[]; splits: Record<string, MeanInterval> }[];
  target?: { group: string; comparisons: TargetComparison[] };
}

export interface TableOptions {
  /** The group compared against the others (default: none). */
  target?: string;
  /** Groups the target is compared with (default: every other group). */
  baselines?: string[];
  resamples?: number;
  seed?: number;
}

/** Per-seed game outcomes of a group on a split (a seed without a game record counts as one game at its success rate). */
function seedGames(runs: RunRecord[], split: string): number[][] {
  return runs.filter((r) => r.success[split] !== undefined).map((r) => r.games?.[split] ?? [r.success[split]]);
}

export function experimentTable(runs: RunRecord[], opts: TableOptions = {}): ExperimentTable {
  const order: string[] = [];
  const byGroup = new Map<string, RunRecord[]>();
  for (const r of runs) {
    if (!byGroup.has(r.group)) order.push(r.group);
    byGroup.set(r.group, [...(byGroup.get(r.group) ?? []), r]);
  }
  const splits = [...new Set(runs.flatMap((r) => Object.keys(r.success)))];
  const groups = order.map((g) => {
    const rs = byGroup.get(g)!;
    const per: Record<string, MeanInterval> = {};
    for (const s of splits) {
      const xs = rs.map((r) => r.success[s]).filter((x): x is number => x !== undefined);
      if (xs.length) per[s] = meanInterval(xs);
    }
    return { group: g, seeds: rs.map((r) => r.seed), splits: per };
  });
  const table: ExperimentTable = { splits, groups };
  if (opts.target === undefined) return table;
  const target = opts.target;
  const tRuns = byGroup.get(target);
  if (!tRuns) throw new RangeError(`target group '${target}' is not among the runs (groups: ${order.join(', ')})`);
  const baselines = opts.baselines ?? order.filter((g) => g !== target);
  for (const b of baselines) {
    if (!byGroup.has(b)) throw new RangeError(`baseline group '${b}' is not among the runs (groups: ${order.join(', ')})`);
    if (b === target) throw new RangeError(`the target group '${target}' cannot also be a baseline`);
  }
  const comparisons: TargetComparison[] = [];
  for (const split of splits) {
    const candidates = baselines.filter((b) => groups.find((g) => g.group === b)!.splits[split] !== undefined);
    if (!candidates.length || !groups.find((g) => g.group === target)!.splits[split]) continue;
    const best = candidates.reduce((a, b) =>
      groups.find((g) => g.group === b)!.splits[split].mean > groups.find((g) => g.group === a)!.splits[split].mean ? b : a,
    );
    const bRuns = byGroup.get(best)!;
    const ta = seedGames(tRuns, split);
    const tb = seedGames(bRuns, split);
    const boot = { resamples: opts.resamples ?? 10000, seed: opts.seed ?? 1 };
    const relative = bootstrapRelativeImprovement(ta, tb, boot);
    const xa = tRuns.map((r) => r.success[split]).filter((x): x is number => x !== undefined);
    const xb = bRuns.map((r) => r.success[split]).filter((x): x is number => x !== undefined);
    const welch = xa.length >= 2 && xb.length >= 2 ? welchTest(xa, xb) : undefined;
    // Paired only when the same seeds played the same number of recorded games.
    let paired: PairedBootstrapResult | undefined;
    const seedsA = tRuns.map((r) => r.seed).sort((p, q) => p - q);
    const seedsB = bRuns.map((r) => r.seed).sort((p, q) => p - q);
    if (JSON.stringify(seedsA) === JSON.stringify(seedsB)) {
      const pa: number[][] = [];
      const pb: number[][] = [];
      let ok = true;
      for (const s of seedsA) {
        const ga = tRuns.find((r) => r.seed === s)!.games?.[split];
        const gb = bRuns.find((r) => r.seed === s)!.games?.[split];
        if (!ga || !gb || ga.length !== gb.length) {
          ok = false;
          break;
        }
        pa.push(ga);
        pb.push(gb);
      }
      if (ok) paired = pairedBootstrapDifference(pa, pb, boot);
    }
    comparisons.push({ split, baseline: best, relative, ...(welch ? { welch } : {}), ...(paired ? { paired } : {}) });
  }
  table.target = { group: target, comparisons };
  return table;
}

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}` : '-');

/** The table as text: mean ± 95 % half-width per group and split, then the target's comparisons. */
export function formatExperimentTable(t: ExperimentTable): string {
  const headers = ['group', 'seeds', ...t.splits.map((s) => `${s} (% ±95% CI)`)];
  const rows = t.groups.map((g) => [
    g.group,
    String(g.seeds.length),
    ...t.splits.map((s) => {
      const m = g.splits[s];
      if (!m) return '-';
      return m.n >= 2 ? `${pct(m.mean)} ± ${pct(m.halfWidth)}` : pct(m.mean);
    }),
  ]);
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  if (t.target) {
    out.push('', `${t.target.group} against the best other group per split:`);
    for (const c of t.target.comparisons) {
      const r = c.relative;
      let s = `  ${c.split}: vs ${c.baseline}: relative improvement ${pct(r.estimate)}% [${pct(r.lo)}, ${pct(r.hi)}] (95% bootstrap over seeds and games)`;
      if (c.welch) s += `; Welch p = ${c.welch.p.toPrecision(2)} (diff ${pct(c.welch.diff)} pts [${pct(c.welch.lo)}, ${pct(c.welch.hi)}])`;
      if (c.paired) s += `; paired bootstrap p = ${c.paired.p.toPrecision(2)} (diff [${pct(c.paired.lo)}, ${pct(c.paired.hi)}] pts)`;
      if (r.undefinedResamples) s += `; ${r.undefinedResamples} resamples with a zero baseline left out`;
      out.push(s);
    }
  }
  return out.join('\n') + '\n';
}
