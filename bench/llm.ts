/**
 * `memq bench llm`: tokens/s of the transformer engine from TypeScript (through the N-API
 * AsyncWorkers) for scoring admissible actions, a plain forward, LoRA training (the Mem-EM
 * M-step) and full-weight training (tiny model), on a tiny model, a ~30M-parameter one and a
 * Qwen2.5-0.5B-shaped one (random weights, vocabulary 151,936), with FLOPs per token, GFLOP/s and
 * the fraction of the machine's GEMM ceiling measured in the same run.
 *
 * Peers in the same run, on the same weights, interleaved call by call with memq's (one warm-up,
 * then a fixed number of timed rounds per model, so the run's length is bounded):
 *   - llama.cpp through node-llama-cpp: scoring, on f32 and q8_0 GGUF exports of the model
 *     (skipped when node-llama-cpp is absent; MEMQ_LLAMA_THREADS sets its threads, default memq's:
 *     MEMQ_THREADS or all cores);
 *   - PyTorch float32 on the CPU (scripts/torch_bench.py, a long-lived worker): scoring, forward,
 *     LoRA training (skipped when no python3 with torch is found; MEMQ_PYTHON names one; memq's threads);
 *   - the C++ bench (`build/bench_llm --json`, tiny and 30M, no Node): JS/native near 1 means the
 *     binding adds nothing; `build/bench_llm --gemm-only` also gives the GEMM ceiling.
 * MEMQ_BENCH_LLM_MODELS=tiny,30M,qwen0.5b picks the models (default all three; --quick: tiny).
 * The result file is named llm-cpu-loaded-<date>.json when the 1-minute load average exceeded 1
 * at the start (other work on the machine).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as readline from 'readline';
import { spawn, spawnSync, type ChildProcess } from 'child_process';
import { exportGguf } from '../lib/llm/ggufConvert';
import { LlamaCppModel, NODE_LLAMA_CPP_VERSION, nodeLlamaCppAvailable } from '../lib/llm/llamaCpp';
import { LlmModel, type LlmConfig } from '../lib/llm/model';
import { LoraAdapter, LoraTrainer, ModelTrainer } from '../lib/llm/lora';
import { packageRoot } from '../lib/native';
import { fmt, machine, nowMs, table, writeResult } from './common';

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


/** A row's timings: median seconds per call over `reps` timed calls after one warm-up, and all of them. */
export interface LlmBenchTiming {
  reps: number;
  secondsMedian: number;
  secondsMin: number;
  seconds: number[];
}

export interface LlmBenchRowTimed extends LlmBenchRow, LlmBenchTiming {
  /** gflops / the machine's GEMM ceiling measured in this run (the best of memq's, OpenBLAS', PyTorch's). */
  fractionOfGemmCeiling?: number;
}

/** The benchmark's models: the workloads' sizes and the timed repetitions are fixed per model. */
interface ModelSpec {
  name: string;
  config: LlmConfig;
  reps: number;
  score: { B: number; P: number; K: number; A: number };
  forward?: { B: number; T: number };
  lora: { B: number; T: number; last: number };
  full?: boolean;
}

export const LLM_BENCH_MODELS: Record<string, ModelSpec> = {
  tiny: { name: 'tiny', config: cfg(256, 64, 128, 2, 4, 2), reps: 10, score: { B: 8, P: 64, K: 8, A: 8 }, forward: { B: 8, T: 128 }, lora: { B: 8, T: 128, last: 16 }, full: true },
  '30M': { name: '30M', config: cfg(8192, 512, 1536, 8, 8, 4), reps: 5, score: { B: 8, P: 64, K: 8, A: 8 }, forward: { B: 8, T: 128 }, lora: { B: 8, T: 128, last: 16 } },
  // Qwen2.5-0.5B's shapes (rope_theta 1e6 as there), random weights
  'qwen0.5b': {
    name: 'qwen2.5-0.5b-shape', config: { ...cfg(151936, 896, 4864, 24, 14, 2), rope_theta: 1000000 }, reps: 3,
    score: { B: 1, P: 64, K: 8, A: 8 }, lora: { B: 1, T: 128, last: 16 },
  },
};
export const LLM_BENCH_DEFAULT_MODELS = ['tiny', '30M', 'qwen0.5b'];

/** A python3 that imports torch (MEMQ_PYTHON first), or undefined. */
function torchPython(): string | undefined {
  for (const py of [process.env.MEMQ_PYTHON, 'python3', '/usr/bin/python3'].filter((x): x is string => !!x)) {
    const r = spawnSync(py, ['-c', 'import torch, numpy'], { encoding: 'utf8' });
    if (r.status === 0) return py;
  }
  return undefined;
}

/** scripts/torch_bench.py as a long-lived worker: one JSON command per line, one JSON answer per line. */
class TorchWorker {
  private waiting: ((line: string | undefined) => void)[] = [];
  private stderr = '';
  private closed = false;
  info: { torch: string; threads: number; blas: string } = { torch: '?', threads: 0, blas: '?' };
  private constructor(private readonly proc: ChildProcess) {
    const rl = readline.createInterface({ input: proc.stdout! });
    rl.on('line', (l) => this.waiting.shift()?.(l));
    proc.stderr!.on('data', (d) => (this.stderr = (this.stderr + String(d)).slice(-2000)));
    proc.on('exit', () => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w(undefined);
    });
  }

  private next(): Promise<any> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error(`the PyTorch worker exited: ${this.stderr}`));
      this.waiting.push((l) => (l === undefined ? reject(new Error(`the PyTorch worker exited: ${this.stderr}`)) : resolve(JSON.parse(l))));
    });
  }

  static async start(py: string, dir: string, threads: number): Promise<TorchWorker> {
    const script = path.join(packageRoot(), 'scripts', 'torch_bench.py');
    // MEMQ_TORCH_BLAS_DIR: a directory with the libblas.so.3 PyTorch should load (Debian's torch links the
    // reference BLAS through libblas.so.3, ~0.4 GFLOP/s; an OpenBLAS there makes a fair peer)
    const env: NodeJS.ProcessEnv = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads) };
    const blasDir = process.env.MEMQ_TORCH_BLAS_DIR;
    if (blasDir) env.LD_LIBRARY_PATH = [blasDir, process.env.LD_LIBRARY_PATH].filter(Boolean).join(path.delimiter);
    const w = new TorchWorker(spawn(py, [script, dir, '--threads', String(threads)], { stdio: ['pipe', 'pipe', 'pipe'], env }));
    w.info = await w.next();
    return w;
  }

  /** Runs one command; its own wall time in seconds (measured in Python around the call). */
  async call(cmd: Record<string, unknown>): Promise<number> {
    const answer = this.next();
    this.proc.stdin!.write(JSON.stringify(cmd) + '\n');
    const r = await answer;
    if (r.error) throw new Error(`PyTorch ${cmd.op}: ${r.error}`);
    return r.seconds;
  }

  close(): void {
    if (!this.closed) this.proc.stdin!.end(JSON.stringify({ op: 'quit' }) + '\n');
  }
}

/** Seconds of timed calls a row aims at: rounds = min(the model's reps, this / the warm-up call), at least MIN_REPS. */
const ROW_BUDGET_S = 15;
const MIN_REPS = 2;

interface Runner {
  engine: string;
  note?: string;
  /** One call; its seconds. */
  run: () => Promise<number>;
}

async function wallSeconds(fn: () => Promise<unknown>): Promise<number> {
  const t0 = nowMs();
  await fn();
  return (nowMs() - t0) / 1000;
}

/**
 * The runners of one workload interleaved: each warms up once, then `reps` rounds in which every
 * runner makes one timed call, so that the load of a shared machine falls on all of them alike.
 * A runner that throws is reported and left out.
 */
async function interleaved(runners: Runner[], reps: number, log: (s: string) => void): Promise<Map<Runner, LlmBenchTiming>> {
  const live: Runner[] = [];
  const repsOf = new Map<Runner, number>();
  for (const r of runners) {
    try {
      const warm = await r.run();
      live.push(r);
      // time bound: a runner whose warm-up took long gets fewer rounds (at least MIN_REPS)
      repsOf.set(r, Math.max(MIN_REPS, Math.min(reps, Math.floor(ROW_BUDGET_S / Math.max(warm, 1e-9)))));
    } catch (e) {
      log(`${r.engine} failed: ${(e as Error).message.slice(0, 400)}\n`);
    }
  }
  const times = new Map<Runner, number[]>(live.map((r) => [r, []]));
  for (let i = 0; i < reps; i++) {
    for (const r of live) {
      if (!times.has(r) || i >= repsOf.get(r)!) continue;
      try {
        times.get(r)!.push(await r.run());
      } catch (e) {
        log(`${r.engine} failed: ${(e as Error).message.slice(0, 400)}\n`);
        times.delete(r);
      }
    }
  }
  const out = new Map<Runner, LlmBenchTiming>();
  for (const [r, t] of times) {
    const s = [...t].sort((a, b) => a - b);
    out.set(r, { reps: t.length, secondsMedian: s[Math.floor(s.length / 2)], secondsMin: s[0], seconds: t });
  }
  return out;
}

interface CeilingSample {
  source: string;
  shape: string;
  gflops: number;
  before: string;
}

function nativeExe(): string {
  return path.join(packageRoot(), 'build', process.platform === 'win32' ? 'bench_llm.exe' : 'bench_llm');
}

/** The GEMM rate of memq's sgemm (and OpenBLAS when built in) from build/bench_llm --gemm-only. */
function nativeGemm(before: string, threads: number): CeilingSample[] {
  const exe = nativeExe();
  if (!fs.existsSync(exe)) return [];
  const r = spawnSync(exe, ['--json', '--gemm-only', '--quick', '--threads', String(threads)], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) return [];
  try {
    const g = JSON.parse(r.stdout).gemm;
    const out: CeilingSample[] = [{ source: 'memq sgemm_nt (build/bench_llm)', shape: g.shape, gflops: g.memq_gflops, before }];
    if (g.openblas_gflops) out.push({ source: 'OpenBLAS cblas_sgemm (build/bench_llm)', shape: g.shape, gflops: g.openblas_gflops, before });
    return out;
  } catch {
    return [];
  }
}

function loadavg(): number[] {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}

function uptime(): string {
  const r = spawnSync('uptime', [], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : `loadavg ${loadavg().join(' ')}`;
}

function scoreName(s: ModelSpec['score']): string {
  return `score ${s.B} prompts x${s.P} + ${s.B}x${s.K} cands x${s.A}`;
}

export interface BenchLlmOptions {
  quick?: boolean;
  out?: string;
  log?: (s: string) => void;
  /** false: memq alone (no llama.cpp, no PyTorch). */
  peers?: boolean;
  /** Keys of LLM_BENCH_MODELS (default: MEMQ_BENCH_LLM_MODELS, comma-separated, else all three; --quick: tiny). */
  models?: string[];
}

export async function benchLlm(opts: BenchLlmOptions = {}) {
  const log = opts.log ?? (() => undefined);
  const envModels = process.env.MEMQ_BENCH_LLM_MODELS?.split(',').map((s) => s.trim()).filter(Boolean);
  const names = opts.models ?? envModels ?? (opts.quick ? ['tiny'] : LLM_BENCH_DEFAULT_MODELS);
  const unknown = names.filter((n) => !LLM_BENCH_MODELS[n]);
  if (unknown.length) throw new RangeError(`models must be a subset of ${Object.keys(LLM_BENCH_MODELS).join(', ')} (MEMQ_BENCH_LLM_MODELS), got '${unknown[0]}'`);
  // the peers get memq's thread count (MEMQ_THREADS, default all cores)
  const threads = machine().threads || os.cpus().length;
  const llamaThreads = Number(process.env.MEMQ_LLAMA_THREADS) || threads;
  const started = nowMs();
  const load = { uptimeStart: uptime(), loadavgStart: loadavg(), uptimeEnd: '', loadavgEnd: [] as number[] };
  const rows: LlmBenchRowTimed[] = [];
  const ceiling: CeilingSample[] = [];
  const skipped: string[] = [];
  const py = opts.peers === false ? undefined : torchPython();
  const haveLlama = opts.peers !== false && (await nodeLlamaCppAvailable());
  if (opts.peers !== false && !py) log('pytorch peer skipped: no python3 with torch (set MEMQ_PYTHON)\n');
  if (opts.peers !== false && !haveLlama) log('llama.cpp peer skipped: node-llama-cpp is not installed\n');

  for (const name of names) {
    const spec = { ...LLM_BENCH_MODELS[name] };
    if (opts.quick) spec.reps = Math.min(spec.reps, 3);
    const c = spec.config;
    const V = c.vocab_size;
    const head = 2 * c.hidden_size * V;
    log(`${spec.name}: creating the model...\n`);
    const model = LlmModel.createRandom(c, { seed: 1, initStd: 0.02 });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-bench-llm-'));
    let torch: TorchWorker | undefined;
    const llama: { type: string; lc: LlamaCppModel }[] = [];
    try {
      if (py || haveLlama) model.save(dir);
      if (py) {
        try {
          torch = await TorchWorker.start(py, dir, threads);
        } catch (e) {
          log(`pytorch peer failed to start: ${(e as Error).message.slice(0, 400)}\n`);
        }
      }
      // the machine's GEMM ceiling, measured now (before this model's rows)
      ceiling.push(...nativeGemm(spec.name, threads));
      if (torch) {
        const t = torch;
        const g = await interleaved([{ engine: 'pytorch', run: () => t.call({ op: 'gemm', m: 1024, n: 1536, k: 512 }) }], 2, log);
        let torchGflops = 0;
        for (const tm of g.values()) {
          torchGflops = (2 * 1024 * 1536 * 512) / tm.secondsMedian * 1e-9;
          ceiling.push({ source: `PyTorch ${t.info.torch} torch.matmul (BLAS ${t.info.blas})`, shape: '1024x1536x512 (A B^T)', gflops: torchGflops, before: spec.name });
        }
        // a reference (unoptimised) BLAS would take many minutes per row above the tiny model: skipped, said so
        const memqGflops = Math.max(0, ...ceiling.filter((x) => x.before === spec.name && x.source.startsWith('memq')).map((x) => x.gflops));
        if (spec.name !== 'tiny' && memqGflops > 0 && torchGflops < 0.05 * memqGflops) {
          const why = `pytorch peer skipped for ${spec.name}: its BLAS (${t.info.blas}) ran torch.matmul at ${fmt(torchGflops)} GFLOP/s against memq's ${fmt(memqGflops)} (a reference BLAS?); MEMQ_TORCH_BLAS_DIR names a directory with an optimised libblas.so.3`;
          log(why + '\n');
          skipped.push(why);
          t.close();
          torch = undefined;
        }
      }
      const add = (r: Runner, t: LlmBenchTiming, workload: string, tokens: number, fpt: number) => {
        const tps = tokens / t.secondsMedian;
        rows.push({ engine: r.engine, model: spec.name, params: model.numParams, workload, tokens, tokensPerSecond: tps, flopsPerToken: fpt, gflops: tps * fpt * 1e-9, note: r.note, ...t });
        log(`${spec.name} ${r.engine} ${workload}: ${Math.round(tps)} tokens/s (median of ${t.reps})\n`);
      };
      const torchNote = () => `torch ${torch!.info.torch}, ${torch!.info.threads} threads, BLAS ${torch!.info.blas} (scripts/torch_bench.py)`;

      // scoring: B prompts of P tokens, K candidates of A tokens each (the prompt's K/V shared)
      {
        const { B, P, K, A } = spec.score;
        const pt = randTokens(B * P, V, 2), ct = randTokens(B * K * A, V, 3);
        const prompts = Array.from({ length: B }, (_, b) => pt.slice(b * P, (b + 1) * P));
        const cands = Array.from({ length: B }, (_, b) => Array.from({ length: K }, (_, k) => ct.slice((b * K + k) * A, (b * K + k + 1) * A)));
        const ntok = B * P + B * K * A;
        const fl = (B * P * (forwardFlopsPerToken(c, P / 2) - head) + B * K * A * (forwardFlopsPerToken(c, P + A / 2) - head) + B * K * A * head) / ntok;
        const runners: Runner[] = [{ engine: 'memq', run: () => wallSeconds(() => model.score(prompts, cands)) }];
        if (torch) {
          const t = torch;
          runners.push({ engine: 'pytorch f32', note: `${torchNote()}; prompt K/V cached and shared by its candidates`, run: () => t.call({ op: 'score', ...spec.score }) });
        }
        if (haveLlama) {
          for (const type of ['f32', 'q8_0'] as const) {
            const file = path.join(dir, `model.${type}.gguf`);
            exportGguf(dir, file, { type });
            const lc = await LlamaCppModel.load(file, { threads: llamaThreads });
            llama.push({ type, lc });
            runners.push({
              engine: `llama.cpp ${type}`,
              note: `node-llama-cpp ${NODE_LLAMA_CPP_VERSION}, ${llamaThreads} threads, F32 KV cache: prompt evaluated once, each candidate appended, read and erased (logits at the scored positions; the next token chosen in C++, the distribution not copied into JS)`,
              run: () => wallSeconds(async () => {
                for (let b = 0; b < B; b++) await lc.evaluateLikeScore(prompts[b], cands[b]);
              }),
            });
          }
        }
        const res = await interleaved(runners, spec.reps, log);
        for (const [r, t] of res) add(r, t, scoreName(spec.score), ntok, fl);
        for (const { lc } of llama.splice(0)) await lc.dispose();
      }
      // forward: B x T, log-prob of every token
      const lw = spec.lora;
      const seqs = Array.from({ length: lw.B }, (_, b) => randTokens(lw.T, V, 4 + b));
      if (spec.forward) {
        const { B, T } = spec.forward;
        const fseqs = Array.from({ length: B }, (_, b) => randTokens(T, V, 4 + b));
        const runners: Runner[] = [{ engine: 'memq', run: () => wallSeconds(() => model.tokenLogprobs(fseqs)) }];
        if (torch) {
          const t = torch;
          runners.push({ engine: 'pytorch f32', note: torchNote(), run: () => t.call({ op: 'forward', B, T }) });
        }
        const res = await interleaved(runners, spec.reps, log);
        for (const [r, t] of res) add(r, t, `forward ${B} x ${T} (token logprobs)`, B * T, forwardFlopsPerToken(c, T / 2));
      }
      // LoRA training: loss on the last tokens of each sequence; one accumulate + AdamW step per batch
      const fwd = forwardFlopsPerToken(c, lw.T / 2) - head;
      {
        const weights = seqs.map(() => Array.from({ length: lw.T }, (_, t) => (t >= lw.T - lw.last ? 1 : 0)));
        // r = 8 on all seven projections; frozen base: forward + input-gradient backward ≈ 2× forward
        const lora = LoraAdapter.create(model, { r: 8, alpha: 16, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] }, 1);
        const tr = new LoraTrainer(model, lora, { lr: 1e-4 });
        const runners: Runner[] = [{ engine: 'memq', run: () => wallSeconds(async () => { await tr.accumulate(seqs, weights); await tr.step(); }) }];
        if (torch) {
          const t = torch;
          runners.push({ engine: 'pytorch f32', note: `${torchNote()}; autograd, torch.optim.AdamW`, run: () => t.call({ op: 'lora', ...lw, r: 8 }) });
        }
        const res = await interleaved(runners, spec.reps, log);
        for (const [r, t] of res) add(r, t, `LoRA train ${lw.B} x ${lw.T} (r=8, all 7)`, lw.B * lw.T, 2 * fwd + (2 * head * lw.last) / lw.T);
      }
      if (spec.full) {
        // full-weight training (pretraining a tiny prior): forward + input and weight gradients ≈ 3× forward
        const weights = seqs.map(() => Array.from({ length: lw.T }, (_, t) => (t >= lw.T - lw.last ? 1 : 0)));
        const tr = new ModelTrainer(await model.clone(), { lr: 1e-4 });
        const res = await interleaved([{ engine: 'memq', run: () => wallSeconds(async () => { await tr.accumulate(seqs, weights); await tr.step(); }) }], spec.reps, log);
        for (const [r, t] of res) add(r, t, `full-weight train ${lw.B} x ${lw.T}`, lw.B * lw.T, 3 * fwd + (3 * head * lw.last) / lw.T);
      }
    } finally {
      for (const { lc } of llama) await lc.dispose();
      torch?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // the rows so far, in case a long run is stopped (the final write replaces this file)
    const partialFile = opts.out ?? path.join(os.tmpdir(), 'memq-bench-llm-partial.json');
    fs.writeFileSync(partialFile, JSON.stringify({ benchmark: 'llm-cpu', partial: true, machine: machine(), load: { ...load, uptimeNow: uptime() }, gemmCeiling: ceiling, rows }, null, 2) + '\n');
  }
  ceiling.push(...nativeGemm('end', threads));
  const best = ceiling.reduce((m, s) => Math.max(m, s.gflops), 0);
  if (best > 0) for (const r of rows) if (Number.isFinite(r.gflops)) r.fractionOfGemmCeiling = r.gflops / best;

  // The C++ bench of the same workloads (tiny and 30M), in the same run: JS/native near 1 means the binding adds nothing.
  let native: any = null;
  const exe = nativeExe();
  if (fs.existsSync(exe) && names.some((n) => n === 'tiny' || n === '30M')) {
    log('running the C++ peer (build/bench_llm --json)...\n');
    const r = spawnSync(exe, ['--json', '--quick', '--threads', String(threads)], { encoding: 'utf8', maxBuffer: 1 << 24 });
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
  load.uptimeEnd = uptime();
  load.loadavgEnd = loadavg();
  // memq against each peer on the same model and workload, in the same run
  const ratios = rows.filter((r) => r.engine !== 'memq').map((p) => {
    const m = rows.find((r) => r.engine === 'memq' && r.model === p.model && r.workload === p.workload);
    return m ? { model: p.model, workload: p.workload, peer: p.engine, memqOverPeer: m.tokensPerSecond / p.tokensPerSecond } : undefined;
  }).filter((x) => x !== undefined);
  const result = {
    benchmark: 'llm-cpu',
    machine: machine(),
    load,
    // other work on the machine when the bench started (its own threads raise the load after that)
    loaded: load.loadavgStart[0] > 1,
    seconds: (nowMs() - started) / 1000,
    models: names,
    note: 'tokens/s from TypeScript through the N-API AsyncWorkers (memq) and the peers on the same random weights, each workload\'s engines interleaved (one warm-up each, then rounds of one timed call per engine), median of the timed calls; FLOPs: 2 per multiply-add, attention at the average context, the LM head only where the workload reads it (the same count on every engine\'s row); fractionOfGemmCeiling: GFLOP/s over the best GEMM rate measured in this run (gemmCeiling); nativeTokensPerSecond: build/bench_llm (C++, same workloads, tiny and 30M) after the rows',
    gemmCeiling: { bestGflops: best, samples: ceiling },
    skipped,
    ratios,
    rows,
    native: native ?? 'build/bench_llm not found, failed, or no tiny/30M model in this run',
  };
  const file = writeResult(`llm-cpu${result.loaded ? '-loaded' : ''}`, result, opts.out);
  const text = table(
    ['engine', 'model', 'workload', 'tokens/s', 'MFLOP/tok', 'GFLOP/s', '% ceiling', 'reps', 'C++ tokens/s', 'JS/C++'],
    rows.map((r) => [r.engine ?? 'memq', r.model, r.workload, Math.round(r.tokensPerSecond), Number.isFinite(r.flopsPerToken) ? r.flopsPerToken / 1e6 : '-',
      Number.isFinite(r.gflops) ? r.gflops : '-', r.fractionOfGemmCeiling !== undefined ? 100 * r.fractionOfGemmCeiling : '-', r.reps,
      r.nativeTokensPerSecond ? Math.round(r.nativeTokensPerSecond) : '-', r.ratioToNative ?? '-']),
  ) + `\nGEMM ceiling ${fmt(best)} GFLOP/s; load ${load.uptimeStart} -> ${load.uptimeEnd}; ${Math.round(result.seconds)} s\n`;
  return { result, file, text };
}
