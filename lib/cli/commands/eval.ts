/** memq eval --run DIR [--split S]: greedy evaluation of a run's saved agent, memory frozen. */
import { CliError, formatHelp, parseArgs, type Command, type FlagSpec } from '../args';
import { evaluate, evalSplitsOf, loadRunAgent } from '../../agent/runner';
import { makeEnv } from '../../envs/registry';
import { ProgressReporter } from '../progress';

const spec: Record<string, FlagSpec> = {
  run: { kind: 'string', help: 'run directory (with config.json and a checkpoint)' },
  split: { kind: 'string[]', help: 'split(s) to evaluate (default: every evaluation split)' },
  games: { kind: 'int', help: 'games per split (default: the whole fixed set)' },
  json: { kind: 'boolean', help: 'print JSON' },
  help: { kind: 'boolean', help: 'show this help' },
};

export const evalCommand: Command = {
  name: 'eval',
  summary: "evaluate a run's saved agent on evaluation splits",
  async run(argv, io) {
    const { flags } = parseArgs(argv, spec, 'eval');
    if (flags.help) {
      io.stdout(formatHelp('eval', '--run DIR [--split S] [--games N]', spec));
      return 0;
    }
    if (!flags.run) throw new CliError('memq eval: --run DIR is required');
    let loaded;
    try {
      loaded = await loadRunAgent(flags.run);
    } catch (e) {
      throw new CliError(`memq eval: ${(e as Error).message}`);
    }
    const { config, agent, episodes } = loaded;
    if (flags.games !== undefined) {
      if (flags.games < 1) throw new CliError('memq eval: --games must be >= 1');
      config.evalGames = flags.games;
    }
    const env = makeEnv(config.env, config.envOptions);
    const splits: string[] = flags.split.length ? flags.split : evalSplitsOf(config, env);
    for (const s of splits) if (!env.splits.includes(s)) throw new CliError(`memq eval: --split ${s}: ${config.env} has splits ${env.splits.join(', ')}`);
    const progress = new ProgressReporter(io.stderr, flags.json ? 'off' : io.isTTY ? 'tty' : 'plain', `[${config.agent}]`);
    const results = [];
    for (const split of splits) {
      results.push(await evaluate(config, agent, split, episodes, { onProgress: (p) => progress.update(p) }, env));
      progress.done();
    }
    await env.close();
    if (flags.json) io.stdout(JSON.stringify(results, null, 2) + '\n');
    else for (const r of results) io.stdout(`${config.agent} ${r.split}: success ${(100 * r.success).toFixed(1)}% over ${r.games} games (mean reward ${r.meanReward.toFixed(3)}, mean steps ${r.meanSteps.toFixed(1)})\n`);
    return 0;
  },
};
