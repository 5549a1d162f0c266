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
} from './retrieval';
export type { TextEnv, ResetOptions, ResetResult, StepResult, EnvInfo, EnvOptions } from './envs/types';
