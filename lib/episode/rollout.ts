/**
 * One episode of an environment, played by an actor (an agent, lib/agent) or by the env's own
 * expert (demonstrations, the pretraining corpus): the loop the runner (lib/agent/runner.ts) and
 * the prior's pretraining (lib/train/pretrain.ts) share. Below both: imports neither.
 */
import type { EnvInfo, TextEnv } from '../envs/types';
import { stateText, type Actor, type EpisodeRecord, type Mode, type StepContext, type StepRecord } from './types';

/** The run settings the demonstrating env depends on (a RunConfig has them). */
export interface DemoEnvConfig {
  env: string;
  envOptions: Record<string, unknown>;
  demoExpert: 'observing' | 'env';
}

/** Runs one episode; learning hooks only in train mode; 'demo' follows the env's expert (agent unused, may be null). */
export async function runEpisode(
  env: TextEnv, agent: Actor | null, mode: Mode | 'demo', episode: number, reset: Parameters<TextEnv['reset']>[0], historyWindow: number,
): Promise<EpisodeRecord> {
  const r = await env.reset(reset);
  let info: EnvInfo = r.info;
  const history: { action?: string; observation: string }[] = [{ observation: r.observation }];
  const steps: StepRecord[] = [];
  let total = 0;
  let won = false;
  const ctxOf = (obs: string, inf: EnvInfo, step: number): StepContext => ({
    episode, step, task: inf.task, observation: obs, admissible: inf.admissibleActions, state: stateText(inf.task, history, historyWindow), info: inf,
  });
  let ctx = ctxOf(r.observation, info, 0);
  for (let t = 0; ; t++) {
    if (ctx.admissible.length === 0) break;
    let a: number;
    if (mode === 'demo') {
      const action = env.expertAction?.();
      if (action === undefined) throw new Error(`env ${env.name} has no expert planner: --demos needs one`);
      a = ctx.admissible.indexOf(action);
      if (a < 0) throw new Error(`the expert's action '${action}' is not admissible`);
    } else {
      if (!agent) throw new TypeError('runEpisode: an agent is required outside demo mode');
      a = await agent.act(ctx, mode);
    }
    const action = ctx.admissible[a];
    const s = await env.step(action);
    total += s.reward;
    won = won || s.info.won;
    steps.push({ state: ctx.state, action, actionIndex: a, admissible: ctx.admissible, reward: s.reward });
    history.push({ action, observation: s.observation });
    info = s.info;
    const done = s.terminated || s.truncated;
    const next = done ? null : ctxOf(s.observation, info, t + 1);
    if (mode === 'train') await agent?.observe?.(ctx, a, s.reward, next);
    if (done || !next) break;
    ctx = next;
  }
  return { episode, task: info.task, taskType: info.taskType, steps, won, totalReward: total, source: mode === 'demo' ? 'demo' : 'train' };
}

/** Env options of the demonstrating env: environments with an observing expert get it asked for. */
export function demoEnvOptions(config: DemoEnvConfig): Record<string, unknown> {
  const observing: Record<string, Record<string, unknown>> = { household: { expert: 'search' } };
  return config.demoExpert === 'observing' && observing[config.env] ? { ...config.envOptions, ...observing[config.env] } : config.envOptions;
}
