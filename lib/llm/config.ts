/**
 * The model's configuration: the HF config.json fields the engine reads and memq's own words
 * for a decoder's shape. Shared by lib/llm/model.ts, lora.ts and the callers that make models.
 */

/** The fields of an HF config.json the engine reads (others are kept when saving). */
export interface LlmConfig {
  model_type: 'qwen2' | 'llama' | 'qwen3';
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim?: number;
  rms_norm_eps?: number;
  rope_theta?: number;
  tie_word_embeddings?: boolean;
  attention_bias?: boolean;
  max_position_embeddings?: number;
  [k: string]: unknown;
}

/** The shape of a decoder, in memq's words (for makeLlmConfig). */
export interface LlmShape {
  arch: 'qwen2' | 'llama' | 'qwen3';
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  ropeTheta?: number;
  tied?: boolean;
}

/** An HF config.json for a shape (architectures, rms_norm_eps 1e-6, 4096 positions). */
export function makeLlmConfig(s: LlmShape): LlmConfig {
  return {
    architectures: [s.arch === 'llama' ? 'LlamaForCausalLM' : s.arch === 'qwen3' ? 'Qwen3ForCausalLM' : 'Qwen2ForCausalLM'],
    model_type: s.arch,
    vocab_size: s.vocab,
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    rope_theta: s.ropeTheta ?? 10000,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: s.tied ?? false,
    max_position_embeddings: 4096,
  };
}
