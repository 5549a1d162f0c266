/** Policy and learning (MATH §4–§7, §9–§10) and the exact solvers of finite MDPs (§6). */
export { improvePolicy, klImproveRow, klImproveRows } from './klImprove';
export type { PolicyRow, ImprovedPolicy } from './klImprove';
export { logSumExp, softmax } from './logSumExp';
export { mdpFromJson, mdpToJson, loadMdpFile, MdpValidationError, validateAlpha, validateGamma } from './mdp';
export type { MdpJson, FiniteMdp } from './mdp';
export {
  softValueIteration,
  softPolicyIteration,
  hardValueIteration,
  evaluatePolicy,
  softBellmanResidual,
  softValue,
  backup,
  solveMdp,
} from './solvers';
export type { SolveMethod, SolveOptions, SolveResult } from './solvers';
export { solveLinearSystem } from './linalg';
export { parzenPrior, parzenPriorBatch, droppedMass } from './parzen';
export type { ParzenPrior } from './parzen';
export {
  silvermanBandwidth,
  adaptiveBandwidth,
  crossValidatedBandwidth,
  leaveOneOutErrors,
  chooseBandwidth,
  meanStd,
} from './bandwidth';
export type { BandwidthRule } from './bandwidth';
export { kernelWeightedValue, kernelBetween, kernelFromParts } from './kernels';
export type { KernelSettings } from './kernels';
export { chooseAction, stateActionText, GREEDY_TIE_TOLERANCE } from './memq';
export { discountedReturns } from './returns';
export { SoftTdLearner, TwoTimeScaleLearner, softTdStep } from './td';
export type { Transition, SoftTdOptions, TwoTimeScaleOptions, SlowMemoryWriter } from './td';
export { Mulberry32 } from './rng';
export { AgentRng } from './agentRng';
