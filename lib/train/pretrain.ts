/**
 * `memq model pretrain`: a small but meaningful domain prior. Expert transcripts of an
 * environment's training split become (prompt(state), action) pairs in exactly the format the
 * model prior scores (`${state}\n> ` then the action and an end token); a domain WordPiece
 * tokenizer is built from them; a tiny Llama/Qwen2/Qwen3 model is trained on every weight with
 * the weighted cross-entropy of MATH §11 (action tokens weight 1, prompt tokens `promptWeight`,
 * default 0) and AdamW. The result is an HF-layout model directory with its tokenizer and a
 * `pretrain.json` report: loss curve, and on held-out games of every evaluation split the
 * prior's top-1 agreement with the expert and its mean log-likelihood of the expert's action,
 * next to the uniform prior's on the same states.
 *
 * Interrupting (signal) stops after the current optimizer step; the directory is written to a
 * temporary sibling and renamed into place, so it is either absent or complete.
 */
import * as fs from 'fs';
import * as path from 'path';
import { makeEnv } from '../envs/registry';
import type { TextEnv } from '../envs/types';
import { DEFAULT_HISTORY_WINDOW } from '../episode/types';
import { runEpisode, demoEnvOptions } from '../episode/rollout';
import { LlmModel, makeLlmConfig, type LlmConfig } from '../llm/model';
import { ModelTrainer } from '../llm/lora';
import { ModelPrior } from '../llm/modelPrior';
import { loadTokenizer, type TextTokenizer } from '../llm/tokenizer';
import { pairPrompt } from '../encoders/pairFormat';
import { DEFAULT_ENCODER_DIM } from '../encoders/types';
import { buildWordPieceTokenizer, wordPieceTokenizerConfig } from '../llm/wordTokenizer';
import { CASE_RETRIEVAL_DEFAULTS, caseConditionedState, caseGain, caseMemoryOf, caseStateEncoder, sampleCases, type CaseGain, type CaseRef } from './caseCorpus';

export interface PretrainConfig {
  env: string;
  envOptions: Record<string, unknown>;
  /** 'observing' (household: the searching expert, whose moves transfer) or the env's own expert. */
  expert: 'observing' | 'env';
  /** Expert games of the training split used as the corpus. */
  games: number;
  /** Held-out expert games per evaluation split for the report (0: none). */
  evalGames: number;
  /** The agent-facing state: must equal the runs' historyWindow (default 1). */
  historyWindow: number;
  seed: number;
  model: {
    arch: 'qwen2' | 'llama' | 'qwen3';
    layers: number;
    hidden: number;
    heads: number;
    kvHeads: number;
    intermediate: number;
    initStd: number;
  };
  steps: number;
  /** Sequences (state, action pairs) per optimizer step. */
  batch: number;
  lr: number;
  weightDecay: number;
  clipNorm: number;
  /** Weight of prompt tokens in the loss (0: only the action is learned, as μ(a|s) needs). */
  promptWeight: number;
  /** Words seen fewer times than this are spelled from character pieces. */
  minWordCount: number;
  /**
   * Case-conditioned prompts (the reflect agent's `conditioning: 'prompt'`, docs/reflect.md):
   * each corpus step is trained on its plain prompt (the void case) and, with probability
   * `share`, also on a prompt carrying a case retrieved for it from the other games of the
   * corpus by the reflect agent's retrieval (state encoder of `dim`, Gaussian `bandwidth`,
   * Parzen prior over the top-`m` with `voidWeight`; case outcomes are returns under `gamma`).
   * share 0: plain prompts only.
   */
  cases: { share: number; m: number; bandwidth: number; voidWeight: number; gamma: number; dim: number; abstractIds: boolean };
}

export function defaultPretrainConfig(): PretrainConfig {
  return {
    env: 'household',
    envOptions: {},
    expert: 'observing',
    games: 400,
    evalGames: 40,
    historyWindow: DEFAULT_HISTORY_WINDOW,
    seed: 1,
    model: { arch: 'qwen2', layers: 2, hidden: 96, heads: 4, kvHeads: 2, intermediate: 256, initStd: 0.02 },
    steps: 600,
    batch: 32,
    lr: 3e-3,
    weightDecay: 0.01,
    clipNorm: 1.0,
    promptWeight: 0,
    minWordCount: 2,
    cases: { share: 0, ...CASE_RETRIEVAL_DEFAULTS, dim: DEFAULT_ENCODER_DIM, abstractIds: false },
  };
}

export interface ExpertStep {
  state: string;
  action: string;
  admissible: string[];
  /** Index of the step's game in its collection, and the step's reward. */
  game?: number;
  reward?: number;
}

export interface PretrainProgress {
  phase: 'collect' | 'train' | 'eval';
  done: number;
  total: number;
  loss?: number;
}

export interface PriorAgreement {
  split: string;
  states: number;
  /** Fraction of states where argmax μ(a|s) is the expert's action. */
  top1: number;
  /** Mean log μ(expert action | s). */
  meanLogLik: number;
  /** The uniform prior on the same states: 1/K agreement in expectation, mean log(1/K). */
  uniformTop1: number;
  uniformMeanLogLik: number;
}

export interface PretrainReport {
  status: 'complete' | 'interrupted';
  config: PretrainConfig;
  corpus: { games: number; pairs: number; tokens: number; vocab: number; wins: number };
  params: number;
  steps: number;
  /** Mean training loss per logged window: [step, loss]. */
  lossCurve: [number, number][];
  agreement: PriorAgreement[];
  /**
   * Case-conditioned prompts trained on, and on held-out expert steps of each evaluation split
   * (cases retrieved from the corpus) the mean log-probability gain of the case's action from
   * carrying the case in the prompt, for relevant cases (the case's action is the expert's) and
   * irrelevant ones. Absent with cases.share 0.
   */
  cases?: { prompts: number; gain: ({ split: string } & CaseGain)[] };
  seconds: { collect: number; train: number; eval: number };
  trainTokensPerSecond: number;
}

/** Seeds of the corpus games: a stream disjoint from `memq run`'s training and demo seeds. */
export function pretrainSeed(seed: number, j: number): number {
  return (Math.imul(seed + 7, 2654435761) + j * 2 + 0x60000000) >>> 0;
}

/** Expert steps of `games` episodes (train split by seed, or a fixed evaluation set by index). */
export async function collectExpertSteps(
  env: TextEnv, games: number, reset: (j: number) => { seed?: number; split?: string; gameIndex?: number }, historyWindow: number,
  signal?: AbortSignal, onGame?: (j: number) => void,
): Promise<{ steps: ExpertStep[]; wins: number; games: number }> {
  const steps: ExpertStep[] = [];
  let wins = 0;
  let j = 0;
  for (; j < games && !signal?.aborted; j++) {
    const ep = await runEpisode(env, null, 'demo', j, reset(j), historyWindow);
    wins += ep.won ? 1 : 0;
    for (const s of ep.steps) steps.push({ state: s.state, action: s.action, admissible: s.admissible, game: j, reward: s.reward });
    onGame?.(j + 1);
  }
  return { steps, wins, games: j };
}

function shuffleInPlace<T>(a: T[], seed: number): void {
  let x = seed >>> 0 || 1;
  for (let i = a.length - 1; i > 0; i--) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    const j = x % (i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
}

/** μ's agreement with the expert on given steps (one batched scoring call per chunk). */
export async function priorAgreement(prior: ModelPrior, steps: ExpertStep[], split: string): Promise<PriorAgreement> {
  let top1 = 0, ll = 0, uTop1 = 0, uLl = 0;
  const chunk = 64;
  for (let i = 0; i < steps.length; i += chunk) {
    const part = steps.slice(i, i + chunk);
    const lps = await prior.logPriorMany(part.map((s) => ({ state: s.state, actions: s.admissible })));
    part.forEach((s, k) => {
      const lp = lps[k];
      const e = s.admissible.indexOf(s.action);
      let best = 0;
      for (let a = 1; a < lp.length; a++) if (lp[a] > lp[best]) best = a;
      top1 += best === e ? 1 : 0;
      ll += lp[e];
      uTop1 += 1 / s.admissible.length;
      uLl += -Math.log(s.admissible.length);
    });
  }
  const n = Math.max(1, steps.length);
  return { split, states: steps.length, top1: top1 / n, meanLogLik: ll / n, uniformTop1: uTop1 / n, uniformMeanLogLik: uLl / n };
}

function validate(c: PretrainConfig): void {
  const int = (name: string, v: number, lo: number, hi = 1e9) => {
    if (!Number.isInteger(v) || v < lo || v > hi) throw new RangeError(`${name} must be an integer in [${lo}, ${hi}], got ${v}`);
  };
  const num = (name: string, v: number, lo: number, hi: number, openLo = false) => {
    if (!Number.isFinite(v) || v < lo || v > hi || (openLo && v === lo)) throw new RangeError(`${name} must be a number in ${openLo ? '(' : '['}${lo}, ${hi}], got ${v}`);
  };
  int('games', c.games, 1, 1e6);
  int('evalGames', c.evalGames, 0, 1e6);
  int('historyWindow', c.historyWindow, 1, 64);
  int('steps', c.steps, 0, 1e8);
  int('batch', c.batch, 1, 1e5);
  num('lr', c.lr, 0, 1, true);
  num('weightDecay', c.weightDecay, 0, 1);
  num('clipNorm', c.clipNorm, 0, 1e6);
  num('promptWeight', c.promptWeight, 0, 1);
  int('minWordCount', c.minWordCount, 1, 1e6);
  if (!c.cases || typeof c.cases !== 'object') throw new RangeError(`cases must be an object like ${JSON.stringify(defaultPretrainConfig().cases)}, got ${JSON.stringify(c.cases)}`);
  num('cases.share', c.cases.share, 0, 1);
  int('cases.m', c.cases.m, 1, 4096);
  num('cases.bandwidth', c.cases.bandwidth, 0, 1e6, true);
  num('cases.voidWeight', c.cases.voidWeight, 0, 1e6);
  num('cases.gamma', c.cases.gamma, 0, 1);
  int('cases.dim', c.cases.dim, 1, 1 << 16);
  if (typeof c.cases.abstractIds !== 'boolean') throw new RangeError(`cases.abstractIds must be true or false, got ${JSON.stringify(c.cases.abstractIds)}`);
  const m = c.model;
  if (!['qwen2', 'llama', 'qwen3'].includes(m.arch)) throw new RangeError(`arch must be qwen2, llama or qwen3, got '${m.arch}'`);
  for (const k of ['layers', 'hidden', 'heads', 'kvHeads', 'intermediate'] as const) int(k, m[k], 1, 1 << 16);
  if (m.hidden % m.heads !== 0) throw new RangeError(`hidden (${m.hidden}) must be a multiple of heads (${m.heads})`);
  if (m.heads % m.kvHeads !== 0) throw new RangeError(`kvHeads (${m.kvHeads}) must divide heads (${m.heads})`);
  num('initStd', m.initStd, 0, 10, true);
  if (!['observing', 'env'].includes(c.expert)) throw new RangeError(`expert must be 'observing' or 'env', got '${c.expert}'`);
}

/**
 * Collects the corpus, builds the tokenizer and the model, trains, evaluates, and writes `out`.
 * `out` must not hold a model yet.
 */
export async function pretrainPrior(
  config: PretrainConfig, out: string,
  hooks: {
    signal?: AbortSignal; onProgress?: (p: PretrainProgress) => void;
    /** A corpus to train on instead of the env's expert games (each step with its game and reward). */
    corpus?: ExpertStep[];
  } = {},
): Promise<PretrainReport> {
  validate(config);
  const dir = path.resolve(out);
  if (fs.existsSync(dir) && (!fs.statSync(dir).isDirectory() || fs.readdirSync(dir).length > 0)) {
    throw new Error(`${dir} exists and is not an empty directory: pretrain writes a new model directory`);
  }
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    // 1. Corpus: expert transcripts of the training split.
    const t0 = Date.now();
    const env = makeEnv(config.env, demoEnvOptions({ env: config.env, envOptions: config.envOptions, demoExpert: config.expert }));
    const trainSplit = env.splits[0];
    const corpus = hooks.corpus
      ? { steps: hooks.corpus, wins: 0, games: new Set(hooks.corpus.map((s) => s.game)).size }
      : await collectExpertSteps(
        env, config.games, (j) => ({ seed: pretrainSeed(config.seed, j), split: trainSplit }), config.historyWindow, hooks.signal,
        (j) => hooks.onProgress?.({ phase: 'collect', done: j, total: config.games }),
      );
    if (corpus.steps.length === 0) throw new Error(`the ${config.env} expert produced no steps in ${corpus.games} games`);

    // 1b. Case-conditioned prompts: a case from another game for a `share` of the steps.
    const cc = config.cases;
    const caseOpts = { encoder: caseStateEncoder(cc.dim, cc.abstractIds), m: cc.m, bandwidth: cc.bandwidth, voidWeight: cc.voidWeight, gamma: cc.gamma, seed: config.seed };
    const caseMem = cc.share > 0 ? await caseMemoryOf(corpus.steps.map((s) => ({ state: s.state, action: s.action, game: s.game!, reward: s.reward! })), caseOpts) : null;
    let caseOf: (CaseRef | null)[] = corpus.steps.map(() => null);
    if (caseMem) {
      const sampled = await sampleCases(caseMem, corpus.steps.map((s) => ({ state: s.state, game: s.game! })), caseOpts);
      let x = (config.seed * 2654435761 + 0x9e37) >>> 0 || 1;
      caseOf = sampled.map((c) => {
        x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
        return c && x / 4294967296 < cc.share ? c : null;
      });
    }
    const prompts = corpus.steps.map((s, k) => (caseOf[k] ? caseConditionedState(s.state, caseOf[k]!) : null));

    // 2. Tokenizer over everything the prior will read: states, case prompts, admissible actions, the prompt marker.
    const texts = function* () {
      for (const [k, s] of corpus.steps.entries()) {
        yield pairPrompt(s.state);
        if (prompts[k]) yield pairPrompt(prompts[k]!);
        yield* s.admissible;
      }
    };
    fs.writeFileSync(path.join(tmp, 'tokenizer.json'), JSON.stringify(buildWordPieceTokenizer(texts(), { minCount: config.minWordCount })));
    fs.writeFileSync(path.join(tmp, 'tokenizer_config.json'), JSON.stringify(wordPieceTokenizerConfig(), null, 2));
    const tokenizer: TextTokenizer = loadTokenizer(tmp);

    // 3. Model.
    const m = config.model;
    const endToken = tokenizer.eosToken !== undefined ? tokenizer.tokenToId(tokenizer.eosToken) : undefined;
    const llmConfig: LlmConfig = {
      ...makeLlmConfig({ arch: m.arch, vocab: tokenizer.vocabSize, hidden: m.hidden, intermediate: m.intermediate, layers: m.layers, heads: m.heads, kvHeads: m.kvHeads, tied: true }),
      eos_token_id: endToken,
    };
    const model = LlmModel.createRandom(llmConfig, { seed: config.seed, initStd: m.initStd });
    const prior = new ModelPrior(model, tokenizer, { endToken });
    const seqs: number[][] = [];
    const weights: number[][] = [];
    for (const [k, st] of corpus.steps.entries()) {
      for (const prompt of prompts[k] ? [st.state, prompts[k]!] : [st.state]) {
        const one = prior.trainingSequences(prompt, [st.action], () => 1, config.promptWeight);
        seqs.push(...one.seqs);
        weights.push(...one.weights);
      }
    }
    const tokens = seqs.reduce((n, s) => n + s.length, 0);
    const tCollect = (Date.now() - t0) / 1000;

    // 4. Train every weight (ModelTrainer: weighted CE, AdamW, clipping), shuffled epochs.
    const t1 = Date.now();
    const trainer = new ModelTrainer(model, { lr: config.lr, weightDecay: config.weightDecay, clipNorm: config.clipNorm });
    const order = seqs.map((_, i) => i);
    let cursor = order.length;
    let epoch = 0;
    const lossCurve: [number, number][] = [];
    const logEvery = Math.max(1, Math.round(config.steps / 50));
    let windowLoss = 0, windowN = 0, trainedTokens = 0, step = 0;
    for (; step < config.steps && !hooks.signal?.aborted; step++) {
      const idx: number[] = [];
      while (idx.length < Math.min(config.batch, order.length)) {
        if (cursor >= order.length) {
          shuffleInPlace(order, (config.seed * 7919 + epoch++) >>> 0);
          cursor = 0;
        }
        idx.push(order[cursor++]);
      }
      await trainer.accumulate(idx.map((i) => seqs[i]), idx.map((i) => weights[i]));
      const st = await trainer.step();
      trainedTokens += idx.reduce((n, i) => n + seqs[i].length, 0);
      windowLoss += st.loss;
      windowN++;
      if ((step + 1) % logEvery === 0 || step + 1 === config.steps) {
        lossCurve.push([step + 1, windowLoss / windowN]);
        windowLoss = 0;
        windowN = 0;
      }
      hooks.onProgress?.({ phase: 'train', done: step + 1, total: config.steps, loss: st.loss });
    }
    const tTrain = (Date.now() - t1) / 1000;

    // 5. Held-out agreement with the expert, next to the uniform prior.
    const t2 = Date.now();
    const agreement: PriorAgreement[] = [];
    const gain: ({ split: string } & CaseGain)[] = [];
    if (config.evalGames > 0 && !hooks.signal?.aborted) {
      const trainSample = corpus.steps.slice(0, Math.min(corpus.steps.length, 2000));
      agreement.push(await priorAgreement(prior, trainSample, `${trainSplit} (corpus)`));
      for (const split of env.splits.slice(1)) {
        const size = env.evalSetSize(split);
        const games = Math.min(config.evalGames, Number.isFinite(size) ? size : config.evalGames);
        const held = await collectExpertSteps(env, games, (g) => ({ split, gameIndex: g, seed: g }), config.historyWindow, hooks.signal);
        agreement.push(await priorAgreement(prior, held.steps, split));
        if (caseMem) {
          // held-out games: every corpus case may be retrieved (game −1 matches none)
          const cs = await sampleCases(caseMem, held.steps.map((s) => ({ state: s.state, game: -1 })), { ...caseOpts, seed: config.seed + 1 });
          gain.push({ split, ...(await caseGain(prior, held.steps, cs)) });
        }
        hooks.onProgress?.({ phase: 'eval', done: agreement.length, total: env.splits.length });
      }
    }
    await env.close();
    const tEval = (Date.now() - t2) / 1000;

    const report: PretrainReport = {
      status: step >= config.steps ? 'complete' : 'interrupted',
      config,
      corpus: { games: corpus.games, pairs: corpus.steps.length, tokens, vocab: tokenizer.vocabSize, wins: corpus.wins },
      params: model.numParams,
      steps: step,
      lossCurve,
      agreement,
      ...(caseMem ? { cases: { prompts: prompts.filter((p) => p !== null).length, gain } } : {}),
      seconds: { collect: tCollect, train: tTrain, eval: tEval },
      trainTokensPerSecond: tTrain > 0 ? trainedTokens / tTrain : 0,
    };
    model.save(tmp);
    fs.writeFileSync(path.join(tmp, 'pretrain.json'), JSON.stringify(report, null, 2) + '\n');
    // Into place: an existing empty directory is replaced; anything else was refused above.
    if (fs.existsSync(dir)) fs.rmdirSync(dir);
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    fs.renameSync(tmp, dir);
    return report;
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
