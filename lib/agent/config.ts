/**
 * Run configuration of `memq run`: defaults, validation (clear errors naming the field), and
 * construction of the agent it describes.
 */
import { HashingEncoder, CachedEncoder } from '../encoders/hashing';
import { PairEncoder } from '../encoders/pair';
import { AbstractingEncoder } from '../encoders/abstract';
import { ModelEncoder } from '../encoders/model';
import { DEFAULT_ENCODER_DIM, type Encoder } from '../encoders/types';
import { UniformPrior, type Prior } from '../llm/prior';
import { LLM_DEVICES, LlmModel, type LlmDeviceName } from '../llm/model';
import { ModelPrior } from '../llm/modelPrior';
import { LlamaCppPrior } from '../llm/llamaCppPrior';
import { loadTokenizer } from '../llm/tokenizer';
import { MemQAgent, MEMQ_DEFAULTS } from './memq';
import { ReflectAgent, REFLECT_DEFAULTS } from './reflect';
import { MemEm, MEM_EM_DEFAULTS, validateMemEm, type MemEmConfig } from '../train/memEm';
import { caseStateEncoder } from '../train/caseCorpus';
import { MemRLAgent, MEMRL_DEFAULTS, NecAgent, NEC_DEFAULTS, PriorAgent, QLearningAgent, QLEARN_DEFAULTS, RandomAgent } from './baselines';
import type { Agent } from './types';
import { DEFAULT_HISTORY_WINDOW } from '../episode/types';
import { makeTrustPolicy, type TrustOptions } from '../memory/trust';
import { writerKeyOf } from '../memory/provenance';
import { envReturnRange } from '../envs/registry';
import { LIMITS } from '../retrieval';

export const AGENT_NAMES = ['memq', 'prior', 'nec', 'memrl', 'random', 'qlearn', 'reflect'] as const;
export type AgentName = (typeof AGENT_NAMES)[number];

export interface RunConfig {
  env: string;
  envOptions: Record<string, unknown>;
  agent: AgentName;
  episodes: number;
  /** Greedy evaluation with memory frozen every K training episodes (0: only at the end). */
  evalEvery: number;
  /** Evaluation splits (default: the env's non-train splits). */
  evalSplits?: string[];
  /** Games per evaluation split (default: the whole fixed set, capped by evalGamesCap). */
  evalGames?: number;
  /** Expert demonstration episodes written to memory before learning. */
  demos: number;
  /**
   * Which expert demonstrates: 'observing' uses an expert that acts only on what the agent can
   * observe (household's searching expert: it looks in receptacles instead of walking to the
   * hidden object, so its moves transfer to new games); 'env' the environment's default expert.
   */
  demoExpert: 'observing' | 'env';
  seed: number;
  /** Agent-facing state: how many recent (action, observation) pairs follow the task. */
  historyWindow: number;
  /** Checkpoint every N episodes (and always on interrupt and at the end). */
  checkpointEvery: number;
  /** Keys: [state ; action] halves (pair, default) or the hashed joined text (hashing). */
  /**
   * Keys: [state ; action] halves of hashed text (pair, default), the hashed joined text
   * (hashing), or the model prior's mean-pooled hidden states (model; needs a model prior;
   * modelLora 'current' reads through Mem-EM's adapter as it is, 'base' the frozen weights).
   * abstractIds drops instance numbers ("apple 2" → "apple") before encoding.
   */
  encoder: { kind: 'pair' | 'hashing' | 'model'; dim: number; actionWeight: number; abstractIds: boolean; modelLora: 'base' | 'current' };
  /** μ(a|s): uniform, or a language model directory (HF layout + tokenizer.json): 'model'. */
  /**
   * device/precision: where the model runs (LlmModel.load's options: 'cpu' by default, 'cuda',
   * 'auto'; bf16 or fp32 on the device).
   */
  prior:
    | { kind: 'uniform' }
    | { kind: 'model'; dir: string; lengthNormalize?: boolean; endToken?: boolean; device?: LlmDeviceName; precision?: 'bf16' | 'fp32' }
    /** A GGUF file scored by llama.cpp (node-llama-cpp, optional); no Mem-EM (see llamaCppPrior.ts). */
    | { kind: 'gguf'; file: string; lengthNormalize?: boolean; endToken?: boolean; threads?: number };
  /** Mem-EM (MATH §11): every em.every training episodes, LoRA steps on the model prior (needs prior.kind 'model'). */
  em: MemEmConfig;
  /** The reflective agent (agent 'reflect', lib/agent/reflect.ts): retrieval actions over cases. */
  reflect: Omit<typeof REFLECT_DEFAULTS, 'tdRate'> & { tdRate: number };
  memq: {
    alpha: number;
    m: number;
    voidWeight: number;
    voidValue: number;
    gamma: number;
    kernel: 'gaussian' | 'cosine' | 'inverse';
    bandwidth: number;
    kappa: number;
    delta: number;
    bandwidthRule: 'fixed' | 'silverman' | 'adaptive';
    capacity: number;
    mergeEpsilon: number;
    mergeRate: number;
    tdRate: number;
    target: 'mc' | 'td' | 'mix';
    /**
     * Trust policy of the memory (docs/trust.md); null: none (native fast path). In a run config
     * valueRange may also be 'env': the return range the environment declares.
     */
    trust: (Omit<TrustOptions, 'valueRange'> & { valueRange?: TrustOptions['valueRange'] | 'env' }) | null;
  };
  nec: typeof NEC_DEFAULTS;
  memrl: typeof MEMRL_DEFAULTS;
  qlearn: typeof QLEARN_DEFAULTS;
}

export function defaultConfig(): RunConfig {
  const k = MEMQ_DEFAULTS.kernel as { kernel: 'gaussian'; bandwidth?: number };
  return {
    env: 'household',
    envOptions: {},
    agent: 'memq',
    episodes: 150,
    evalEvery: 0,
    demos: 30,
    demoExpert: 'observing',
    seed: 1,
    historyWindow: DEFAULT_HISTORY_WINDOW,
    checkpointEvery: 25,
    encoder: { kind: 'pair', dim: DEFAULT_ENCODER_DIM, actionWeight: 0.5, abstractIds: false, modelLora: 'base' },
    prior: { kind: 'uniform' },
    em: { ...MEM_EM_DEFAULTS, targets: [...MEM_EM_DEFAULTS.targets] },
    memq: {
      alpha: MEMQ_DEFAULTS.alpha,
      m: MEMQ_DEFAULTS.m,
      voidWeight: MEMQ_DEFAULTS.voidWeight,
      voidValue: MEMQ_DEFAULTS.voidValue,
      gamma: MEMQ_DEFAULTS.gamma,
      kernel: k.kernel,
      bandwidth: k.bandwidth ?? 0.4,
      kappa: 10,
      delta: 1e-3,
      bandwidthRule: 'fixed',
      capacity: (MEMQ_DEFAULTS.policy as { capacity: number }).capacity,
      mergeEpsilon: MEMQ_DEFAULTS.merge.epsilon,
      mergeRate: MEMQ_DEFAULTS.merge.rate as number,
      tdRate: MEMQ_DEFAULTS.tdRate,
      target: MEMQ_DEFAULTS.target,
      trust: null,
    },
    reflect: { ...REFLECT_DEFAULTS, tdRate: REFLECT_DEFAULTS.tdRate as number },
    nec: { ...NEC_DEFAULTS },
    memrl: { ...MEMRL_DEFAULTS },
    qlearn: { ...QLEARN_DEFAULTS },
  };
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Deep-merges a user config (from --config FILE or flags) into the defaults, refusing unknown keys. */
export function mergeConfig(base: RunConfig, patch: unknown, where = 'config'): RunConfig {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
    throw new ConfigError(`${where} must be a JSON object, got ${patch === null ? 'null' : Array.isArray(patch) ? 'an array' : typeof patch}`);
  }
  const out: any = structuredClone(base);
  const walk = (dst: any, src: any, prefix: string) => {
    for (const [k, v] of Object.entries(src)) {
      const name = prefix ? `${prefix}.${k}` : k;
      const open = prefix === 'envOptions';
      if (!prefix && k === 'prior') {
        // a prior is replaced whole (its fields depend on its kind); validateConfig checks it
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${where}: 'prior' must be an object like {"kind": "uniform"} or {"kind": "model", "dir": "DIR"}, got ${JSON.stringify(v)}`);
        dst.prior = v;
        continue;
      }
      if (!open && !(k in dst) && !['evalSplits', 'evalGames'].includes(k)) {
        throw new ConfigError(`${where}: unknown field '${name}' (known: ${Object.keys(dst).join(', ')})`);
      }
      if (!open && dst[k] !== null && typeof dst[k] === 'object' && !Array.isArray(dst[k])) {
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${where}: '${name}' must be an object, got ${JSON.stringify(v)}`);
        walk(dst[k], v, name);
      } else {
        dst[k] = v;
      }
    }
  };
  walk(out, patch, '');
  return out;
}

/** A saved config.json (possibly from an older version, without newer fields) over the defaults. */
export function configFromDisk(saved: unknown, where = 'config.json'): RunConfig {
  return mergeConfig(defaultConfig(), saved, where);
}

export function validateConfig(c: RunConfig, envNames: string[]): RunConfig {
  const fail = (m: string) => {
    throw new ConfigError(m);
  };
  const int = (name: string, v: unknown, lo: number, hi = Number.MAX_SAFE_INTEGER) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) fail(`${name} must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  };
  const num = (name: string, v: unknown, lo: number, hi = Infinity, openLo = false) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi || (openLo && v === lo)) {
      fail(`${name} must be a number in ${openLo ? '(' : '['}${lo}, ${hi}], got ${JSON.stringify(v)}`);
    }
  };
  if (!envNames.includes(c.env)) fail(`env must be one of ${envNames.join(', ')}, got ${JSON.stringify(c.env)}`);
  if (!(AGENT_NAMES as readonly string[]).includes(c.agent)) fail(`agent must be one of ${AGENT_NAMES.join(', ')}, got ${JSON.stringify(c.agent)}`);
  int('episodes', c.episodes, 0, 1e7);
  int('evalEvery', c.evalEvery, 0, 1e7);
  int('demos', c.demos, 0, 1e6);
  if (!['observing', 'env'].includes(c.demoExpert)) fail(`demoExpert must be 'observing' or 'env', got ${JSON.stringify(c.demoExpert)}`);
  int('seed', c.seed, 0, 2 ** 31 - 1);
  int('historyWindow', c.historyWindow, 1, 64);
  int('checkpointEvery', c.checkpointEvery, 1, 1e7);
  if (c.evalGames !== undefined) int('evalGames', c.evalGames, 1, 1e6);
  if (c.evalSplits !== undefined && (!Array.isArray(c.evalSplits) || c.evalSplits.some((s) => typeof s !== 'string'))) fail('evalSplits must be an array of split names');
  int('encoder.dim', c.encoder.dim, 8, 1 << 16);
  if (!['pair', 'hashing', 'model'].includes(c.encoder.kind)) fail(`encoder.kind must be 'pair', 'hashing' or 'model', got ${JSON.stringify(c.encoder.kind)}`);
  if (c.encoder.kind === 'model' && c.prior.kind !== 'model') fail("encoder.kind 'model' reads the model prior's hidden states: it needs prior.kind 'model' (--prior model:DIR)");
  if (typeof c.encoder.abstractIds !== 'boolean') fail(`encoder.abstractIds must be true or false, got ${JSON.stringify(c.encoder.abstractIds)}`);
  if (!['base', 'current'].includes(c.encoder.modelLora)) fail(`encoder.modelLora must be 'base' or 'current', got ${JSON.stringify(c.encoder.modelLora)}`);
  if (c.encoder.kind === 'pair' && c.encoder.dim % 2 !== 0) fail(`encoder.dim must be even for the pair encoder, got ${c.encoder.dim}`);
  num('encoder.actionWeight', c.encoder.actionWeight, 0, 1, true);
  if (c.encoder.actionWeight >= 1) fail(`encoder.actionWeight must be in (0, 1), got ${c.encoder.actionWeight}`);
  if (!['uniform', 'model', 'gguf'].includes(c.prior.kind)) fail(`prior.kind must be 'uniform', 'model' or 'gguf', got ${JSON.stringify(c.prior.kind)}`);
  if (c.prior.kind === 'model' && (typeof c.prior.dir !== 'string' || !c.prior.dir)) fail('prior.dir must name a model directory when prior.kind is "model"');
  if (c.prior.kind === 'model' && c.prior.device !== undefined && !LLM_DEVICES.includes(c.prior.device)) {
    fail(`prior.device must be 'cpu', 'cuda' or 'auto', got ${JSON.stringify(c.prior.device)}`);
  }
  if (c.prior.kind === 'model' && c.prior.precision !== undefined && !['bf16', 'fp32'].includes(c.prior.precision)) {
    fail(`prior.precision must be 'bf16' or 'fp32', got ${JSON.stringify(c.prior.precision)}`);
  }
  if (c.prior.kind === 'gguf' && (typeof c.prior.file !== 'string' || !c.prior.file)) fail('prior.file must name a .gguf file when prior.kind is "gguf"');
  if (c.prior.kind === 'gguf' && c.prior.threads !== undefined) int('prior.threads', c.prior.threads, 1, 1024);
  if (c.em.every > 0 && c.prior.kind === 'gguf') {
    fail('em.every > 0 (Mem-EM) needs the memq engine (LoRA gradients; llama.cpp only runs forward): ' +
      'memq model import FILE.gguf --out DIR, then --prior model:DIR (export the result with memq model export DIR --lora ADAPTER)');
  }
  if (c.em.every > 0 && c.prior.kind !== 'model') fail('em.every > 0 (Mem-EM) needs a model prior: --prior model:DIR');
  // Mem-EM applies to the memq agent (its memory gives the E-step's Q̂) and the reflect agent
  // (its marginal action policy π_M is the E-step's target); other agents ignore c.em.
  if (c.em.every > 0 && c.agent === 'reflect' && c.em.weight !== 'q') fail(`em.weight must be 'q' for the reflect agent (its E-step target is its own action policy, not a Q̂ over actions), got ${JSON.stringify(c.em.weight)}`);
  try {
    validateMemEm(c.em);
  } catch (e) {
    fail((e as Error).message);
  }
  const q = c.memq;
  num('memq.alpha', q.alpha, 0);
  int('memq.m', q.m, 1, 4096);
  num('memq.voidWeight', q.voidWeight, 0);
  num('memq.voidValue', q.voidValue, -Infinity);
  num('memq.gamma', q.gamma, 0, 1);
  if (q.gamma >= 1) fail(`memq.gamma must be in [0, 1), got ${q.gamma}`);
  if (!['gaussian', 'cosine', 'inverse'].includes(q.kernel)) fail(`memq.kernel must be gaussian, cosine or inverse, got ${JSON.stringify(q.kernel)}`);
  // The index's own limits (LIMITS in lib/retrieval), checked here so that a bad run config is
  // refused as bad input before anything runs: kappa <= 88, delta >= 1e-30, and a bandwidth
  // that stays > 0 in float32.
  num('memq.bandwidth', q.bandwidth, 0, Infinity, true);
  if (!(Math.fround(q.bandwidth) > 0)) fail(`memq.bandwidth must stay > 0 in float32 (at least ~1.4e-45), got ${q.bandwidth}`);
  num('memq.kappa', q.kappa, 0, LIMITS.maxKappa, true);
  num('memq.delta', q.delta, LIMITS.minDelta, Infinity);
  if (!['fixed', 'silverman', 'adaptive'].includes(q.bandwidthRule)) fail(`memq.bandwidthRule must be fixed, silverman or adaptive, got ${JSON.stringify(q.bandwidthRule)}`);
  int('memq.capacity', q.capacity, 1, 2 ** 31 - 1);
  num('memq.mergeEpsilon', q.mergeEpsilon, 0);
  num('memq.mergeRate', q.mergeRate, 0, 1, true);
  num('memq.tdRate', q.tdRate, 0, 1);
  if (!['mc', 'td', 'mix'].includes(q.target)) fail(`memq.target must be mc, td or mix, got ${JSON.stringify(q.target)}`);
  if (q.trust !== null) {
    try {
      makeTrustPolicy(resolveTrust(q.trust, c)!);
      const auth = (q.trust as { authenticate?: unknown }).authenticate;
      // a key never goes into config.json: true takes it from MEMQ_MEMORY_KEY
      if (auth !== undefined && typeof auth !== 'boolean') throw new TypeError('authenticate must be true or false in a run config (the key comes from MEMQ_MEMORY_KEY, never from config.json)');
      writerKeyOf(auth);
    } catch (e) {
      fail(`memq.trust: ${(e as Error).message}`);
    }
  }
  const r = c.reflect;
  num('reflect.alpha', r.alpha, 0);
  int('reflect.m', r.m, 1, 4096);
  num('reflect.voidWeight', r.voidWeight, 0, Infinity, true);
  num('reflect.gamma', r.gamma, 0, 1);
  if (r.gamma >= 1) fail(`reflect.gamma must be in [0, 1), got ${r.gamma}`);
  num('reflect.bandwidth', r.bandwidth, 0, Infinity, true);
  num('reflect.qInit', r.qInit, -1e6, 1e6);
  num('reflect.qBandwidth', r.qBandwidth, 0, Infinity, true);
  num('reflect.tdRate', r.tdRate, 0, 1, true);
  num('reflect.priorMix', r.priorMix, 0, 1);
  if (!['project', 'prompt'].includes(r.conditioning)) fail(`reflect.conditioning must be 'project' or 'prompt', got ${JSON.stringify(r.conditioning)}`);
  if (r.conditioning === 'prompt' && c.prior.kind !== 'model') fail("reflect.conditioning 'prompt' scores a case-carrying prompt with the model prior: it needs prior.kind 'model'");
  if (!['fixed', 'learned'].includes(r.gate)) fail(`reflect.gate must be 'fixed' or 'learned', got ${JSON.stringify(r.gate)}`);
  num('reflect.gateLr', r.gateLr, 0, 10);
  num('reflect.explore', r.explore, 0, 1);
  int('reflect.capacity', r.capacity, 1, 2 ** 31 - 1);
  int('nec.k', c.nec.k, 1, 4096);
  num('nec.epsilon', c.nec.epsilon, 0, 1);
  num('memrl.epsilon', c.memrl.epsilon, 0, 1);
  num('memrl.lambda', c.memrl.lambda, 0, 1);
  num('qlearn.epsilon', c.qlearn.epsilon, 0, 1);
  num('qlearn.lr', c.qlearn.lr, 0, 1, true);
  return c;
}

export function makeEncoder(c: RunConfig, prior?: Prior): Encoder {
  const inner = makeBaseEncoder(c, prior);
  return c.encoder.abstractIds ? new AbstractingEncoder(inner) : inner;
}

function makeBaseEncoder(c: RunConfig, prior?: Prior): Encoder {
  if (c.encoder.kind === 'hashing') return new CachedEncoder(new HashingEncoder({ dim: c.encoder.dim }));
  if (c.encoder.kind === 'model') {
    if (!(prior instanceof ModelPrior)) throw new ConfigError("encoder.kind 'model' needs a loaded model prior");
    const p = prior;
    return new ModelEncoder({ model: p.model, tokenizer: p.tokenizer, lora: c.encoder.modelLora, adapter: () => p.lora });
  }
  const half = c.encoder.dim / 2;
  return new CachedEncoder(new PairEncoder({
    state: new CachedEncoder(new HashingEncoder({ dim: half })),
    action: new CachedEncoder(new HashingEncoder({ dim: half, seed: 7 })),
    actionWeight: c.encoder.actionWeight,
  }));
}

/** The prior a config names; a model prior loads its model and tokenizer (async). */
export async function makePrior(c: RunConfig): Promise<Prior> {
  if (c.prior.kind === 'uniform') return new UniformPrior();
  if (c.prior.kind === 'gguf') {
    return LlamaCppPrior.load(c.prior.file, { lengthNormalize: c.prior.lengthNormalize ?? true, endToken: c.prior.endToken, threads: c.prior.threads });
  }
  const dir = c.prior.dir;
  const device = { device: c.prior.device, precision: c.prior.precision };
  const [model, tokenizer] = await Promise.all([LlmModel.load(dir, device), Promise.resolve().then(() => loadTokenizer(dir))]);
  // Append the tokenizer's end-of-text token to each action unless told not to (see ModelPrior).
  const endToken = c.prior.endToken !== false && tokenizer.eosToken !== undefined ? tokenizer.tokenToId(tokenizer.eosToken) : undefined;
  return new ModelPrior(model, tokenizer, { lengthNormalize: c.prior.lengthNormalize ?? true, endToken });
}

/** makeAgent with the config's prior loaded first (the runner's entry). */
export async function makeAgentAsync(c: RunConfig): Promise<Agent> {
  return makeAgent(c, await makePrior(c));
}

/**
 * The memory's trust options of a run: valueRange 'env' becomes the return range the
 * environment declares (envReturnRange); a ConfigError when it declares none.
 */
export function resolveTrust(t: RunConfig['memq']['trust'], c: Pick<RunConfig, 'env' | 'envOptions'>): TrustOptions | undefined {
  if (t === null) return undefined;
  if (t.valueRange !== 'env') return t as TrustOptions;
  const range = envReturnRange(c.env, c.envOptions);
  if (!range) throw new ConfigError(`memq.trust.valueRange 'env': environment '${c.env}' declares no return range; give { min, max } or 'learned'`);
  return { ...t, valueRange: range };
}

/** Mem-EM on the prior of a memq or reflect agent when em.every > 0 (a model prior), else null. */
function memEmFor(c: RunConfig, prior: Prior, seed: number): MemEm | null {
  if (c.em.every <= 0) return null;
  if (!(prior instanceof ModelPrior)) throw new ConfigError('Mem-EM (em.every > 0) needs a model prior');
  return new MemEm(c.em, prior, seed);
}

export function makeAgent(c: RunConfig, priorIn?: Prior): Agent {
  const seed = (c.seed * 7919 + 17) >>> 0;
  if (!priorIn && c.prior.kind !== 'uniform') throw new ConfigError('a model prior must be loaded first: use makeAgentAsync');
  const prior = priorIn ?? new UniformPrior();
  const encoder = makeEncoder(c, prior);
  switch (c.agent) {
    case 'memq': {
      const q = c.memq;
      const kernel =
        q.kernel === 'gaussian' ? { kernel: 'gaussian' as const, bandwidth: q.bandwidth }
        : q.kernel === 'cosine' ? { kernel: 'cosine' as const, kappa: q.kappa }
        : { kernel: 'inverse' as const, delta: q.delta };
      const rule =
        q.bandwidthRule === 'fixed' ? { rule: 'fixed' as const, h: q.bandwidth }
        : q.bandwidthRule === 'silverman' ? { rule: 'silverman' as const }
        : { rule: 'adaptive' as const, h0: q.bandwidth };
      const agent = new MemQAgent({
        encoder, prior, alpha: q.alpha, m: q.m, voidWeight: q.voidWeight, voidValue: q.voidValue, gamma: q.gamma,
        kernel, bandwidth: rule as any, policy: { kind: 'replay', capacity: q.capacity },
        merge: q.mergeEpsilon > 0 ? { epsilon: q.mergeEpsilon, rate: q.mergeRate } : undefined,
        tdRate: q.tdRate, target: q.target, seed, trust: resolveTrust(q.trust, c),
      });
      agent.em = memEmFor(c, prior, seed);
      return agent;
    }
    case 'prior':
      return new PriorAgent(prior, seed);
    case 'random':
      return new RandomAgent(seed);
    case 'nec':
      return new NecAgent({ encoder, ...c.nec, seed });
    case 'memrl':
      // MemRL keys cases by the state alone (its phase 1 is a state-similarity filter); the
      // frozen model (the prior) acts where no retrieved case is usable
      return new MemRLAgent({ encoder: new CachedEncoder(new HashingEncoder({ dim: c.encoder.dim })), prior, ...c.memrl, seed });
    case 'qlearn':
      return new QLearningAgent({ ...c.qlearn, seed });
    case 'reflect': {
      // Keys of states alone (the retrieval is over past situations), a separate hash for the
      // case half of Q's keys, and a small action encoder for projecting a case's action.
      const r = c.reflect;
      const wrap = (e: Encoder) => (c.encoder.abstractIds ? new AbstractingEncoder(e) : e);
      const agent = new ReflectAgent({
        // the state encoder of the case-conditioned pretraining corpus (caseStateEncoder)
        stateEncoder: c.encoder.kind === 'model' ? encoder : caseStateEncoder(c.encoder.dim, c.encoder.abstractIds),
        caseEncoder: wrap(new CachedEncoder(new HashingEncoder({ dim: c.encoder.dim, seed: 11 }))),
        actionEncoder: new CachedEncoder(new HashingEncoder({ dim: 128, seed: 7 })),
        prior, ...r, writeCases: true, seed,
      });
      agent.em = memEmFor(c, prior, seed);
      return agent;
    }
  }
}
