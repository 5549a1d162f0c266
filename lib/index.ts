/**
 * memq: memory-driven self-improving LLM agents.
 * Public entry point (CommonJS build in dist/cjs; an ESM wrapper re-exports it in dist/esm).
 */
export {
  MemoryIndex,
  klImprove,
  klImproveAsync,
  backendInfo,
  setThreads,
  LIMITS,
} from './retrieval';
export type {
  MemoryIndexOptions,
  KernelOptions,
  KernelName,
  SearchResult,
  SearchOptions,
  EstimateOptions,
  EstimateResult,
  KlImproveInput,
  BackendInfo,
  BackendName,
  KeyType,
  MemoryIndexStats,
} from './retrieval';
export type { AddonKind } from './native';
export type { TextEnv, ResetOptions, ResetResult, StepResult, EnvInfo, EnvOptions } from './envs/types';

// Episodic memory, policy and exact solvers (MATH §3-§10).
export * from './memory/index';
export { SharedMemory, SharedMemoryError, parseMemoryUrl } from './scale/shared';
export type { SharedMemoryOptions, SharedMemoryStats } from './scale/shared';
export {
  improvePolicy, klImproveRow, klImproveRows, mdpFromJson, mdpToJson, loadMdpFile, MdpValidationError, softValueIteration,
  softPolicyIteration, hardValueIteration, evaluatePolicy, softBellmanResidual, solveMdp, parzenPrior, parzenPriorBatch,
  droppedMass, silvermanBandwidth, adaptiveBandwidth, crossValidatedBandwidth, chooseBandwidth, kernelWeightedValue,
  chooseAction, stateActionText, discountedReturns, SoftTdLearner, TwoTimeScaleLearner,
} from './policy/index';
export type {
  MdpJson, FiniteMdp, SolveMethod, SolveOptions, SolveResult, ParzenPrior, BandwidthRule, KernelSettings, PolicyRow,
  ImprovedPolicy, Transition, SoftTdOptions, TwoTimeScaleOptions,
} from './policy/index';

// Environments.
export { makeEnv, listEnvs, envNames, registerEnv, ProcessEnv } from './envs/index';
export type { EnvDescription, Split, EnvFactory } from './envs/index';

// Encoders, priors, agents and the run loop.
export { HashingEncoder, CachedEncoder } from './encoders/hashing';
export { PairEncoder, actionTemplate } from './encoders/pair';
export type { Encoder } from './encoders/types';
export { UniformPrior } from './llm/prior';
export { LlmModel } from './llm/model';
export type { LlmConfig, LlmInferenceOptions } from './llm/model';
export { LoraAdapter, LoraTrainer, ModelTrainer } from './llm/lora';
export type { LoraOptions, LoraAdapterConfig, TrainOptions, TrainStats, TrainerState } from './llm/lora';
export { ModelPrior, TokenizedPrior } from './llm/modelPrior';
export { LlamaCppPrior } from './llm/llamaCppPrior';
export { LlamaCppModel, nodeLlamaCppAvailable } from './llm/llamaCpp';
export { readGguf, writeGguf, quantizeQ8_0, dequantizeQ8_0 } from './llm/gguf';
export type { GgufFile, GgufTensorInfo, GgufValue } from './llm/gguf';
export { exportGguf, importGguf } from './llm/ggufConvert';
export type { GgufExportType, GgufExportOptions, GgufExportReport, GgufImportReport } from './llm/ggufConvert';
export { loadTokenizer, tokenizerFromJson, qwen3TokenizerDir, requireQwen3TokenizerDir, QWEN3_TOKENIZER_PACKAGE } from './llm/tokenizer';
export type { TextTokenizer, PackageLookup } from './llm/tokenizer';
export type { Prior } from './llm/prior';
export { MemQAgent } from './agent/memq';
export { RandomAgent, PriorAgent, NecAgent, MemRLAgent, QLearningAgent } from './agent/baselines';
export { defaultConfig, mergeConfig, validateConfig, makeAgent } from './agent/config';
export type { RunConfig, AgentName } from './agent/config';
export { runTraining, evaluate } from './agent/runner';
export type { RunSummary, EpisodeMetric, EvalMetric } from './agent/runner';
export type { Agent, StepContext, EpisodeRecord as AgentEpisode, Mode } from './agent/types';

// Plots.
export { lineChartSvg, lineChartPng, gridSvg, gridPng } from './plot/index';
export type { ChartSpec, Series } from './plot/index';
