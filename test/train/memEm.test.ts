import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emWeights, klDivergence, MemEm, MEM_EM_DEFAULTS, type MemEmConfig } from '../../lib/train/memEm';
import { klImprove } from '../../lib/retrieval';
import { LlmModel } from '../../lib/llm/model';
import { ModelPrior } from '../../lib/llm/modelPrior';
import { loadTokenizer } from '../../lib/llm/tokenizer';
import { buildWordPieceTokenizer, wordPieceTokenizerConfig } from '../../lib/llm/wordTokenizer';
import { defaultConfig, makeAgent, mergeConfig, validateConfig, type RunConfig } from '../../lib/agent/config';
import type { MemQAgent } from '../../lib/agent/memq';
import { readMetrics, runTraining } from '../../lib/agent/runner';
import { envNames } from '../../lib/envs/registry';
import type { EpisodeRecord } from '../../lib/agent/types';
import { main } from '../../lib/cli/main';
import { TestRng as Rng } from '../helpers/rng';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-em-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function logSoftmax(x: number[]): number[] {
  const m = Math.max(...x);
  const z = x.reduce((s, v) => s + Math.exp(v - m), 0);
  return x.map((v) => v - m - Math.log(z));
}

describe('E-step weights (MATH §11) against the native KL improvement (§5)', () => {
  it("'q' is the posterior π ∝ μ exp(Q̂/α) and 'adv' uses its soft value V, on random rows", () => {
    const rng = new Rng(11);
    for (const alpha of [0.05, 0.5, 3]) {
      for (let trial = 0; trial < 30; trial++) {
        const k = 1 + rng.int(12);
        const logPrior = logSoftmax(Array.from({ length: k }, () => 2 * rng.normal()));
        const q = Array.from({ length: k }, () => rng.normal());
        const ref = klImprove({ logPrior: Float32Array.from(logPrior), q: Float32Array.from(q), rows: 1, cols: k, alpha });
        const lp32 = Array.from(Float32Array.from(logPrior)), q32 = Array.from(Float32Array.from(q));
        const w = emWeights(q32, lp32, alpha, 'q');
        for (let a = 0; a < k; a++) {
          expect(Math.abs(w.weights[a] - ref.policy[a])).toBeLessThan(2e-6); // float32 kernel vs float64
          expect(w.q[a]).toBe(w.weights[a]);
        }
        expect(Math.abs(w.weights.reduce((s, v) => s + v, 0) - 1)).toBeLessThan(1e-12);
        const adv = emWeights(q32, lp32, alpha, 'adv');
        for (let a = 0; a < k; a++) expect(Math.abs(adv.weights[a] - Math.max(0, q32[a] - ref.value[0]))).toBeLessThan(1e-5 * (1 + Math.abs(ref.value[0])));
        // 'expq' ignores the prior: softmax(Q̂/α)
        const ex = emWeights(q32, lp32, alpha, 'expq');
        const sm = logSoftmax(q32.map((v) => v / alpha)).map(Math.exp);
        for (let a = 0; a < k; a++) expect(Math.abs(ex.weights[a] - sm[a])).toBeLessThan(1e-12);
      }
    }
  });

  it('α = 0 is the hard limit (uniform over the best actions on the prior’s support); −∞ prior entries get 0', () => {
    const lp = [Math.log(0.5), -Infinity, Math.log(0.25), Math.log(0.25)];
    const q = [1, 5, 2, 2];
    const w = emWeights(q, lp, 0, 'q');
    expect(Array.from(w.weights)).toEqual([0, 0, 0.5, 0.5]);
    const ref = klImprove({ logPrior: Float32Array.from(lp), q: Float32Array.from(q), rows: 1, cols: 4, alpha: 0 });
    for (let a = 0; a < 4; a++) expect(Math.abs(w.weights[a] - ref.policy[a])).toBeLessThan(1e-6);
    const w2 = emWeights(q, lp, 0.7, 'q');
    expect(w2.weights[1]).toBe(0);
  });

  it('KL(q ‖ p) by hand', () => {
    expect(klDivergence([0.5, 0.5, 0], [Math.log(0.25), Math.log(0.25), Math.log(0.5)])).toBeCloseTo(Math.log(2), 12);
    expect(klDivergence([1], [0])).toBe(0);
  });
});

/** A tiny model prior over a small domain vocabulary. */
function tinyPrior(seed = 3): { prior: ModelPrior; dir: string } {
  const dir = fs.mkdtempSync(path.join(root, 'tok-'));
  const texts = ['task: put a cup in the fridge', 'you see a cup 1 and a fridge 1', 'go to fridge 1', 'take cup 1', 'look', 'open fridge 1', 'put cup 1 in fridge 1', '>'];
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(buildWordPieceTokenizer(texts)));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(wordPieceTokenizerConfig()));
  const tok = loadTokenizer(dir);
  const model = LlmModel.createRandom({
    model_type: 'qwen2', vocab_size: tok.vocabSize, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: true,
  }, { seed, initStd: 0.1 });
  return { prior: new ModelPrior(model, tok, { endToken: tok.tokenToId(tok.eosToken!) }), dir };
}

const STATES = [
  { state: 'task: put a cup in the fridge\nyou see a cup 1 and a fridge 1', actions: ['go to fridge 1', 'take cup 1', 'look', 'open fridge 1'] },
  { state: 'task: put a cup in the fridge\n> take cup 1\nyou see a fridge 1', actions: ['go to fridge 1', 'look', 'put cup 1 in fridge 1'] },
];

function episodeOf(states: typeof STATES): EpisodeRecord {
  return {
    episode: 0, task: 't', steps: states.map((s) => ({ state: s.state, action: s.actions[0], actionIndex: 0, admissible: s.actions, reward: 0 })),
    won: false, totalReward: 0, source: 'train',
  };
}

describe('Mem-EM M-step (LoRA on the model prior)', () => {
  const cfg = (over: Partial<MemEmConfig> = {}): MemEmConfig => ({ ...MEM_EM_DEFAULTS, every: 1, steps: 1, states: 2, lr: 1e-2, ...over });
  // Q̂ that strongly prefers one action per state (as memory would after successes)
  const good = new Map([[STATES[0].state, 'take cup 1'], [STATES[1].state, 'put cup 1 in fridge 1']]);
  const source = {
    alpha: 0.2,
    async estimateQMany(items: { state: string; actions: string[] }[]) {
      return items.map(({ state, actions }) => Float32Array.from(actions, (a) => (a === good.get(state) ? 1 : 0)));
    },
  };

  it("'mle' sequences: prompt tokens weight 0, action (+ end) tokens weight w(s, a), small weights dropped", async () => {
    const { prior } = tinyPrior();
    const em = new MemEm(cfg({ minWeight: 0.05, loss: 'mle' }), prior, 1);
    const graded = {
      alpha: 1,
      estimateQMany: async (items: { state: string; actions: string[] }[]) =>
        items.map(({ state, actions }) => Float32Array.from(actions, (a) => (a === good.get(state) ? 1 : a === 'look' ? -3 : 0))),
    };
    const targets = await em.eStep(graded, STATES);
    const { seqs, weights } = em.sequences(targets);
    let k = 0, dropped = 0;
    for (const t of targets) {
      const prompt = prior.promptTokens(t.state);
      t.actions.forEach((a, j) => {
        if (t.weights[j] === 0) {
          expect(t.q[j]).toBeLessThan(0.05);
          dropped++;
          return;
        }
        const at = prior.actionTokens(a);
        expect(seqs[k]).toEqual([...prompt, ...at]);
        expect(weights[k]).toEqual([...prompt.map(() => 0), ...at.map(() => t.weights[j])]);
        k++;
      });
    }
    expect(k).toBe(seqs.length);
    expect(dropped).toBe(2); // 'look' in both states
    expect(k).toBe(5);
  });

  it("'kl' sequences carry the exact gradient of KL(q ‖ μ_θ): finite differences along the adapter's update", async () => {
    // d/dε KL(q ‖ μ_{θ+εΔ}) at ε = 0 equals the directional derivative of the linearised loss
    // Σ w_t·nll_t (w from klSequences) — both computed here from the engine's scores.
    const { prior } = tinyPrior();
    const em = new MemEm(cfg(), prior, 1);
    const rnd = new Rng(5);
    const p0 = Float32Array.from({ length: em.lora.numParams }, () => 0.05 * rnd.normal());
    await em.lora.setParams(p0);
    const targets = await em.eStep(source, STATES);
    const { seqs, weights, kl } = await em.klSequences(targets);
    expect(Math.abs(kl - (await em.meanKl(targets)))).toBeLessThan(1e-12);
    const dir = Float32Array.from({ length: p0.length }, () => rnd.normal() * 0.02);
    const at = async (eps: number) => {
      await em.lora.setParams(p0.map((x, i) => x + eps * dir[i]));
      const klv = await em.meanKl(targets);
      const lps = await prior.model.tokenLogprobs(seqs, { lora: em.lora });
      let lin = 0;
      seqs.forEach((_, i) => weights[i].forEach((w, t) => (lin += -w * lps[i][t])));
      return { klv, lin };
    };
    const h = 0.5;
    const [plus, minus] = [await at(h), await at(-h)];
    const dKl = (plus.klv - minus.klv) / (2 * h);
    const dLin = (plus.lin - minus.lin) / (2 * h);
    expect(Math.abs(dKl)).toBeGreaterThan(1e-4);
    expect(Math.abs(dLin - dKl)).toBeLessThan(0.05 * Math.abs(dKl) + 1e-6);
  });

  for (const loss of ['kl', 'mle'] as const) {
    it(`'${loss}': rounds raise μ of the actions memory prefers; the base model is untouched`, async () => {
      const { prior } = tinyPrior();
      const em = new MemEm(cfg({ steps: 2, states: 2, loss }), prior, 1);
      expect(em.observe(episodeOf(STATES))).toBe(true);
      const before = await prior.logPriorMany(STATES);
      const base = await prior.model.tokenLogprobs([prior.promptTokens(STATES[0].state)]);
      const kls: number[] = [];
      for (let r = 0; r < 5; r++) {
        const ev = (await em.run(source, r + 1))!;
        if (loss === 'kl') expect(ev.klAfter, `round ${r}`).toBeLessThan(ev.klBefore);
        expect(ev.pairs).toBeGreaterThan(0);
        kls.push(ev.klAfter);
      }
      expect(kls[4]).toBeLessThan(kls[0]);
      const after = await prior.logPriorMany(STATES);
      STATES.forEach((s, i) => {
        const j = s.actions.indexOf(good.get(s.state)!);
        expect(after[i][j]).toBeGreaterThan(before[i][j] + 0.05);
      });
      // the adapter carries the change: without it the model is what it was
      expect(await prior.model.tokenLogprobs([prior.promptTokens(STATES[0].state)])).toEqual(base);
      expect(em.drainEvents()).toHaveLength(5);
      expect(em.drainEvents()).toHaveLength(0);
    });
  }

  it("a policy source (the reflect agent's π_M): targets are its normalised policy, rounds lower KL(q ‖ μ_θ); only weight 'q'", async () => {
    const { prior } = tinyPrior();
    // an unnormalised action policy that prefers the good action (as π_M would after successes)
    const policySource = {
      async actionPolicyMany(items: { state: string; actions: string[] }[]) {
        return items.map(({ state, actions }) => Float64Array.from(actions, (a) => (a === good.get(state) ? 6 : 1)));
      },
    };
    const em = new MemEm(cfg({ steps: 2, states: 2 }), prior, 1);
    em.observe(episodeOf(STATES));
    const targets = await em.eStep(policySource, STATES);
    targets.forEach((t, i) => {
      const z = 6 + (STATES[i].actions.length - 1);
      t.actions.forEach((a, k) => expect(t.q[k]).toBeCloseTo((a === good.get(t.state) ? 6 : 1) / z, 14));
      expect(Array.from(t.weights)).toEqual(Array.from(t.q).map((x) => (x < MEM_EM_DEFAULTS.minWeight ? 0 : x)));
    });
    for (let r = 0; r < 3; r++) {
      const ev = (await em.run(policySource, r + 1))!;
      expect(ev.klAfter, `round ${r}`).toBeLessThan(ev.klBefore);
    }
    const bad = { async actionPolicyMany(items: { actions: string[] }[]) { return items.map((it) => new Float64Array(it.actions.length).fill(NaN)); } };
    await expect(em.eStep(bad, STATES)).rejects.toThrow(/must be finite and >= 0/);
    const adv = new MemEm(cfg({ weight: 'adv', loss: 'mle' }), tinyPrior().prior, 1);
    await expect(adv.eStep(policySource, STATES)).rejects.toThrow(/em.weight 'adv' needs Q̂ over actions/);
  });

  it('save/load restores adapter, AdamW moments, pool and RNG: the next round is bit-identical', async () => {
    const a = tinyPrior();
    const emA = new MemEm(cfg({ steps: 2 }), a.prior, 1);
    emA.observe(episodeOf(STATES));
    await emA.run(source, 1);
    const dir = path.join(root, 'em-ckpt');
    await emA.save(dir);
    const evA = await emA.run(source, 2);
    const b = tinyPrior();
    const emB = new MemEm(cfg({ steps: 2 }), b.prior, 99);
    await emB.load(dir);
    const evB = await emB.run(source, 2);
    const { seconds: _a, ...ra } = evA!;
    const { seconds: _b, ...rb } = evB!;
    expect(rb).toEqual(ra);
    expect(Array.from(emB.lora.getParams())).toEqual(Array.from(emA.lora.getParams()));
  });

  it("the agent's batched Q̂ for the E-step equals its per-state estimates", async () => {
    const agent = makeAgent(mergeConfig(defaultConfig(), { env: 'household', agent: 'memq' })) as MemQAgent;
    const empty = await agent.estimateQMany(STATES);
    STATES.forEach((st, i) => expect(Array.from(empty[i])).toEqual(Array(st.actions.length).fill(0)));
    const ep = episodeOf(STATES);
    ep.steps[1].reward = 1;
    await agent.endEpisode(ep);
    expect(agent.memorySize()).toBeGreaterThan(0);
    const many = await agent.estimateQMany(STATES);
    for (let i = 0; i < STATES.length; i++) {
      const one = (await agent.estimate(STATES[i].state, STATES[i].actions)).value;
      expect(Array.from(many[i])).toEqual(Array.from(one));
    }
    expect(many.flatMap((v) => Array.from(v)).some((x) => x > 0)).toBe(true);
  });

  it('config validation names the field', () => {
    const base = defaultConfig();
    const bad = (patch: object) => () => validateConfig(mergeConfig(base, patch), envNames());
    expect(bad({ em: { every: 2 } })).toThrow(/needs a model prior/);
    expect(bad({ prior: { kind: 'model', dir: '/x' }, em: { every: 2, steps: 0 } })).toThrow(/em\.steps must be an integer/);
    expect(bad({ prior: { kind: 'model', dir: '/x' }, em: { every: 2, weight: 'kl' } })).toThrow(/em\.weight must be 'q', 'expq' or 'adv'/);
    expect(bad({ prior: { kind: 'model', dir: '/x' }, em: { every: 2, loss: 'ce' } })).toThrow(/em\.loss must be 'kl' or 'mle'/);
    expect(bad({ prior: { kind: 'model', dir: '/x' }, em: { every: 2, weight: 'adv' } })).toThrow(/needs em\.loss 'mle'/);
    expect(bad({ prior: { kind: 'model', dir: '/x' }, em: { every: 2, lr: 0 } })).toThrow(/em\.lr must be a number in \(0/);
    expect(bad({ em: { evry: 2 } })).toThrow(/unknown field 'em\.evry'/);
  });
});

describe('memq model pretrain + memq run --em-every (household)', () => {
  const model = path.join(root, 'prior');
  let err = '';
  const io = { stdout: () => undefined, stderr: (t: string) => (err += t), isTTY: false };

  beforeAll(async () => {
    const code = await main(['model', 'pretrain', '--env', 'household', '--games', '12', '--eval-games', '3', '--steps', '40', '--batch', '16',
      '--hidden', '32', '--heads', '4', '--kv-heads', '2', '--intermediate', '64', '--layers', '2', '--out', model, '--json'], io);
    expect(code, err).toBe(0);
  });

  it('writes a loadable HF model with its tokenizer and a report whose loss fell', () => {
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'pretrain.json']) expect(fs.existsSync(path.join(model, f)), f).toBe(true);
    const rep = JSON.parse(fs.readFileSync(path.join(model, 'pretrain.json'), 'utf8'));
    expect(rep.status).toBe('complete');
    expect(rep.lossCurve.at(-1)[1]).toBeLessThan(0.7 * rep.lossCurve[0][1]);
    expect(rep.corpus.wins).toBe(12);
    expect(rep.agreement.map((a: any) => a.split)).toEqual(['train (corpus)', 'valid_seen', 'valid_unseen']);
    expect(fs.readdirSync(root).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('refuses a non-empty output directory and bad flags (exit 2)', async () => {
    let e = '';
    const io2 = { stdout: () => undefined, stderr: (t: string) => (e += t), isTTY: false };
    expect(await main(['model', 'pretrain', '--out', model, '--games', '1', '--steps', '1'], io2)).toBe(2);
    expect(e).toMatch(/not (an )?empty/);
    expect(await main(['model', 'pretrain', '--out', path.join(root, 'p2'), '--env', 'chess'], io2)).toBe(2);
    expect(e).toMatch(/--env must be one of/);
    expect(await main(['model', 'pretrain', '--out', path.join(root, 'p3'), '--hidden', '30', '--heads', '4'], io2)).toBe(2);
    expect(e).toMatch(/hidden \(30\) must be a multiple of (--)?heads/);
  });

  /**
   * A household run of `agent` with Mem-EM every 2 episodes: it completes with em events at
   * 2, 4, …; then the same run cut at episode 3 and resumed gives the same metrics, evaluations
   * and adapter bytes. Returns the full run's directory and its em events.
   */
  async function emRunResumes(agent: 'memq' | 'reflect', episodes: number): Promise<{ full: string; ems: any[]; cfg: RunConfig }> {
    const cfg: RunConfig = mergeConfig(defaultConfig(), {
      env: 'household', agent, episodes, demos: 2, evalGames: 2, checkpointEvery: 1,
      prior: { kind: 'model', dir: model }, em: { every: 2, steps: 2, states: 4 },
    });
    validateConfig(cfg, envNames());
    const full = path.join(root, `${agent}-em-full`);
    const a = await runTraining(cfg, full);
    expect(a.status).toBe('complete');
    const ems = readMetrics(full).filter((m: any) => m.kind === 'em') as any[];
    expect(ems.map((m) => m.episode)).toEqual(Array.from({ length: episodes / 2 }, (_, k) => 2 * (k + 1)));
    for (const m of ems) for (const k of ['klBefore', 'klAfter', 'loss', 'gradNorm']) expect(Number.isFinite(m[k]), k).toBe(true);
    const cut = path.join(root, `${agent}-em-cut`);
    const ctrl = new AbortController();
    const b1 = await runTraining(cfg, cut, { signal: ctrl.signal, onProgress: (p) => { if (p.phase === 'train' && p.episode === 3) ctrl.abort(); } });
    expect(b1.status).toBe('interrupted');
    const b = await runTraining(cfg, cut, {}, true);
    const strip = (ms: any[]) => ms.map(({ seconds, ...rest }) => rest);
    expect(strip(readMetrics(cut))).toEqual(strip(readMetrics(full)));
    expect(b.evals).toEqual(a.evals);
    const p = (d: string) => fs.readFileSync(path.join(d, 'checkpoint', 'agent', 'em', 'adapter', 'adapter_model.safetensors'));
    expect(p(cut).equals(p(full))).toBe(true);
    return { full, ems, cfg };
  }

  it('a run with Mem-EM writes em metrics, saves the adapter, and resumes to the same result', async () => {
    const { full, ems } = await emRunResumes('memq', 6);
    // (the KL decrease of an M-step is asserted in the controlled tests above; here, the mechanics)
    for (const m of ems) {
      expect(m.states).toBe(8);
      expect(m.pairs).toBeGreaterThan(8);
    }
    const adapterCfg = JSON.parse(fs.readFileSync(path.join(full, 'checkpoint', 'agent', 'em', 'adapter', 'adapter_config.json'), 'utf8'));
    expect(adapterCfg.peft_type).toBe('LORA');
  });

  it('the reflect agent with Mem-EM: em metrics, its E-step target is π_M, and it resumes to the same result', async () => {
    const { cfg } = await emRunResumes('reflect', 4);
    // weight 'adv' needs Q̂ over actions, which the reflect agent does not have
    expect(() => validateConfig(mergeConfig(cfg, { em: { weight: 'adv' } }), envNames())).toThrow(/em.weight must be 'q' for the reflect agent/);
  }, 120_000);

  it('memq run --em-every without a model prior is refused (exit 2)', async () => {
    let e = '';
    const code = await main(['run', '--agent', 'memq', '--em-every', '2', '--out', path.join(root, 'noprior')], { stdout: () => undefined, stderr: (t) => (e += t), isTTY: false });
    expect(code).toBe(2);
    expect(e).toMatch(/needs a model prior/);
  });
});
