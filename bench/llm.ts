/**
 * `memq bench llm`: tokens/s of the transformer engine from TypeScript (through the N-API
 * AsyncWorkers) for scoring admissible actions, a plain forward, LoRA training (the Mem-EM
 * M-step) and full-weight training (`memq model pretrain`), on a tiny model and a ~30M-parameter
 * one, with FLOPs per token — the CPU baseline of the GPU engine. The peer in the same run is the
 * C++ bench (`build/bench_llm --json`, same workloads, no Node): JS/native near 1 means the binding
 * adds nothing; the machine's own ceiling for these shapes is its GEMM rate, also in that file.
 * Other peers in the same run, on the same weights: llama.cpp scoring through node-llama-cpp (f32
 * and q8_0 GGUF exports of the model; skipped when node-llama-cpp is absent) and plain PyTorch
 * float32 on the CPU (scripts/torch_reference.py --bench: scoring, forward, LoRA training; skipped
 * when no python3 with torch is found; MEMQ_PYTHON names one; MEMQ_LLAMA_THREADS sets llama.cpp's
 * threads, default all cores as the engine).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { exportGguf } from '../lib/llm/ggufConvert';
import { LlamaCppModel, nodeLlamaCppAvailable } from '../lib/llm/llamaCpp';
import { LlmModel, type LlmConfig } from '../lib/llm/model';
import { LoraAdapter, LoraTrainer, ModelTrainer } from '../lib/llm/lora';
import { packageRoot } from '../lib/native';
import { machine, table, timeIt, writeResult } from './common';

interface Spec {
  name: string;
  config: LlmConfig;
}

function cfg(V: number, C: number, I: number, L: number, H: number, KV: number): LlmConfig {
  return {
    model_type: 'qwen2', vocab_size: V, hidden_size: C, intermediate_size: I, num_hidden_layers: L,
    num_attention_heads: H, num_key_value_heads: KV, rope_theta: 10000, rms_norm_eps: 1e-6, tie_word_embeddings: true,
  };
}

/** FLOPs per token of a forward at context ctx (2 per multiply-add; QKᵀ and PV at that context). */
export function forwardFlopsPerToken(c: LlmConfig, ctx: number): number {
  const C = c.hidden_size, I = c.intermediate_size, D = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  const QD = c.num_attention_heads * D, KD = c.num_key_value_heads * D;
  const perLayer = 2 * (C * QD + 2 * C * KD + QD * C + 3 * C * I) + 2 * 2 * c.num_attention_heads * D * ctx;
  return c.num_hidden_layers * perLayer + 2 * C * c.vocab_size;
}

function randTokens(n: number, V: number, seed: number): number[] {
  let x = seed >>> 0 || 1;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out.push(x % V);
  }
  return out;
}

/** Median seconds per call (after a warm-up), for at least minMs. */
async function secondsPerCall(fn: () => Promise<unknown>, minMs: number): Promise<number> {
  return (await timeIt(fn, minMs, 3, 1e6)).ms / 1000;
}

export interface LlmBenchRow {
  /** memq (this engine, from TypeScript), llama.cpp f32 / q8_0, or pytorch f32. */
  engine?: string;
  note?: string;
  model: string;
  params: number;
  workload: string;
  tokens: number;
  tokensPerSecond: number;
  flopsPerToken: number;
  gflops: number;
  /** The C++ bench's tokens/s for the same workload in the same run, and JS / native. */
  nativeTokensPerSecond?: number;
  ratioToNative?: number;
}

/** A python3 that imports torch (MEMQ_PYTHON first), or undefined. */
function torchPython(): string | undefined {
  for (const py of [process.env.MEMQ_PYTHON, 'python3', '/usr/bin/python3'].filter((x): x is string => !!x)) {
    const r = spawnSync(py, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
    if (r.status === 0) return py;
  }
  return undefined;
}

const SCORE_WORKLOAD = 'score 8 prompts x64 + 8x8 cands x8';

/** The peers of one model on its saved weights: llama.cpp scoring (f32, q8_0) and PyTorch rows. */
async function peerRows(s: Spec, model: LlmModel, minMs: number, log: (s: string) => void, scoreFlops: number): Promise<LlmBenchRow[]> {
  const rows: LlmBenchRow[] = [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-bench-llm-'));
  try {
    model.save(dir);
    const V = s.config.vocab_size;
    const B = 8, P = 64, K = 8, A = 8;
    const pt = randTokens(B * P, V, 2), ct = randTokens(B * K * A, V, 3);
    const prompts = Array.from({ length: B }, (_, b) => pt.slice(b * P, (b + 1) * P));
    const cands = Array.from({ length: B }, (_, b) => Array.from({ length: K }, (_, k) => ct.slice((b * K + k) * A, (b * K + k + 1) * A)));
    const ntok = B * P + B * K * A;
    if (await nodeLlamaCppAvailable()) {
      for (const type of ['f32', 'q8_0'] as const) {
        const file = path.join(dir, `model.${type}.gguf`);
        exportGguf(dir, file, { type });
        // llama.cpp's spinning thread pool collapses on an oversubscribed machine: MEMQ_LLAMA_THREADS overrides
        const lc = await LlamaCppModel.load(file, { threads: Number(process.env.MEMQ_LLAMA_THREADS) || os.cpus().length });
        try {
          const t = await secondsPerCall(async () => {
            for (let b = 0; b < B; b++) await lc.score(prompts[b], cands[b], false);
          }, minMs);
          rows.push({
            engine: `llama.cpp ${type}`, model: s.name, params: model.numParams, workload: SCORE_WORKLOAD, tokens: ntok,
            tokensPerSecond: ntok / t, flopsPerToken: scoreFlops, gflops: (ntok / t) * scoreFlops * 1e-9,
            note: 'node-llama-cpp: prompt evaluated once, each candidate appended and erased; the full next-token distribution crosses into JS per position',
          });
          log(`${s.name} llama.cpp ${type} scoring: ${Math.round(ntok / t)} tokens/s\n`);
        } finally {
          await lc.dispose();
        }
      }
    } else log('llama.cpp peer skipped: node-llama-cpp is not installed\n');
    const py = torchPython();
    if (py) {
      const script = path.join(packageRoot(), 'scripts', 'torch_reference.py');
      const r = spawnSync(py, [script, '--bench', dir, '--min-seconds', String(minMs / 1000), '--threads', String(os.cpus().length)], { encoding: 'utf8', maxBuffer: 1 << 24 });
      if (r.status === 0) {
        const j = JSON.parse(r.stdout);
        for (const row of j.rows) {
          const fl = row.workload === SCORE_WORKLOAD ? scoreFlops : undefined;
          rows.push({
            engine: 'pytorch f32', model: s.name, params: model.numParams, workload: row.workload, tokens: row.tokens,
            tokensPerSecond: row.tokens_per_s, flopsPerToken: fl ?? NaN, gflops: fl ? row.tokens_per_s * fl * 1e-9 : NaN,
            note: `torch ${j.torch}, ${j.threads} threads${row.note ? `; ${row.note}` : ''}`,
          });
          log(`${s.name} pytorch ${row.workload}: ${Math.round(row.tokens_per_s)} tokens/s\n`);
        }
      } else log(`pytorch peer failed: ${r.stderr.slice(-500)}\n`);
    } else log('pytorch peer skipped: no python3 with torch (set MEMQ_PYTHON)\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

export async function benchLlm(opts: { quick?: boolean; out?: string; log?: (s: string) => void; peers?: boolean } = {}) {
  const log = opts.log ?? (() => undefined);
  const minMs = opts.quick ? 300 : 2000;
  const specs: Spec[] = [{ name: 'tiny', config: cfg(256, 64, 128, 2, 4, 2) }];
  if (!opts.quick) specs.push({ name: '30M', config: cfg(8192, 512, 1536, 8, 8, 4) });
  const rows: LlmBenchRow[] = [];
  const peers: (() => Promise<LlmBenchRow[]>)[] = [];
  for (const s of specs) {
    const V = s.config.vocab_size;
    const model = LlmModel.createRandom(s.config, { seed: 1, initStd: 0.02 });
    const head = 2 * s.config.hidden_size * V;
    const add = (workload: string, tokens: number, secs: number, fpt: number) => {
      const r: LlmBenchRow = { engine: 'memq', model: s.name, params: model.numParams, workload, tokens, tokensPerSecond: tokens / secs, flopsPerToken: fpt, gflops: (tokens / secs) * fpt * 1e-9 };
      rows.push(r);
      log(`${s.name} ${workload}: ${Math.round(r.tokensPerSecond)} tokens/s\n`);
    };
    // scoring: 8 prompts of 64 tokens, 8 candidates of 8 tokens each (prompt K/V shared)
    {
      const B = 8, P = 64, K = 8, A = 8;
      const pt = randTokens(B * P, V, 2), ct = randTokens(B * K * A, V, 3);
      const prompts = Array.from({ length: B }, (_, b) => pt.slice(b * P, (b + 1) * P));
      const cands = Array.from({ length: B }, (_, b) => Array.from({ length: K }, (_, k) => ct.slice((b * K + k) * A, (b * K + k + 1) * A)));
      const t = await secondsPerCall(() => model.score(prompts, cands), minMs);
      const ntok = B * P + B * K * A;
      const fl = (B * P * (forwardFlopsPerToken(s.config, P / 2) - head) + B * K * A * (forwardFlopsPerToken(s.config, P + A / 2) - head) + B * K * A * head) / ntok;
      add(SCORE_WORKLOAD, ntok, t, fl);
      if (opts.peers !== false) peers.push(() => peerRows(s, model, minMs, log, fl));
    }
    // forward: 8 x 128, log-prob of every token
    const B = 8, T = 128;
    const seqs = Array.from({ length: B }, (_, b) => randTokens(T, V, 4 + b));
    {
      const t = await secondsPerCall(() => model.tokenLogprobs(seqs), minMs);
      add('forward 8 x 128 (token logprobs)', B * T, t, forwardFlopsPerToken(s.config, T / 2));
    }
    // training: loss on the last 16 tokens of each sequence; one accumulate + AdamW step per batch
    const weights = seqs.map(() => Array.from({ length: T }, (_, t) => (t >= T - 16 ? 1 : 0)));
    const trainStep = (tr: LoraTrainer | ModelTrainer) => secondsPerCall(async () => {
      await tr.accumulate(seqs, weights);
      await tr.step();
    }, minMs);
    const fwd = forwardFlopsPerToken(s.config, T / 2) - head;
    {
      // LoRA: r = 8 on all seven projections; frozen base: forward + input-gradient backward ≈ 2× forward
      const lora = LoraAdapter.create(model, { r: 8, alpha: 16, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] }, 1);
      add('LoRA train 8 x 128 (r=8, all 7)', B * T, await trainStep(new LoraTrainer(model, lora, { lr: 1e-4 })), 2 * fwd + (2 * head * 16) / T);
    }
    if (s.name === 'tiny') {
      // full-weight training (pretraining a tiny prior): forward + input and weight gradients ≈ 3× forward
      add('full-weight train 8 x 128', B * T, await trainStep(new ModelTrainer(await model.clone(), { lr: 1e-4 })), 3 * fwd + (3 * head * 16) / T);
    }
  }

  // PyTorch and llama.cpp on the same weights (after memq's rows, so they do not share the CPU)
  for (const p of peers) rows.push(...(await p()));

  // The peer: the C++ bench of the same workloads, in the same run.
  let native: any = null;
  const exe = path.join(packageRoot(), 'build', process.platform === 'win32' ? 'bench_llm.exe' : 'bench_llm');
  if (fs.existsSync(exe)) {
    log('running the C++ peer (build/bench_llm --json)...\n');
    const r = spawnSync(exe, opts.quick ? ['--json', '--quick'] : ['--json'], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status === 0) {
      try {
        native = JSON.parse(r.stdout);
      } catch {
        native = null;
      }
    }
  }
  if (native?.models) {
    for (const row of rows.filter((r) => r.engine === 'memq')) {
      const m = native.models.find((x: any) => x.model === row.model);
      const n = m?.results?.find((x: any) => x.workload === row.workload);
      if (n) {
        row.nativeTokensPerSecond = n.tokens_per_s;
        row.ratioToNative = row.tokensPerSecond / n.tokens_per_s;
      }
    }
  }
  const result = {
    benchmark: 'llm-cpu',
    machine: machine(),
    note: 'tokens/s from TypeScript through the N-API AsyncWorkers; nativeTokensPerSecond: build/bench_llm (C++, same workloads) in the same run; FLOPs: 2 per multiply-add, attention at the average context (the workload\'s FLOPs, also on the peer rows: a peer that recomputes the prompt does more work than counted); peers on the same weights: llama.cpp via node-llama-cpp (f32/q8_0 GGUF), PyTorch float32 CPU (scripts/torch_reference.py --bench)',
    rows,
    native: native ?? 'build/bench_llm not found or failed (it is built by cmake-js with the addon)',
  };
  const file = writeResult('llm-cpu', result, opts.out);
  const text = table(
    ['engine', 'model', 'workload', 'tokens/s', 'MFLOP/tok', 'GFLOP/s', 'C++ tokens/s', 'JS/C++'],
    rows.map((r) => [r.engine ?? 'memq', r.model, r.workload, Math.round(r.tokensPerSecond), Number.isFinite(r.flopsPerToken) ? r.flopsPerToken / 1e6 : '-',
      Number.isFinite(r.gflops) ? r.gflops : '-', r.nativeTokensPerSecond ? Math.round(r.nativeTokensPerSecond) : '-', r.ratioToNative ?? '-']),
  );
  return { result, file, text };
}
