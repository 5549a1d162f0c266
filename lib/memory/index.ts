/** Episodic memory (MATH §1, §3–§4, §8) and its durable on-disk format (docs/memory-format.md). */
export { EpisodicMemory, createIndex, nativeAvailable } from './episodic';
export type { ImportOptions, LoadOptions, LoadReport, MemoryChange } from './episodic';
export type { CaseInput, CaseMeta, CaseRows, EpisodicMemoryOptions, MergeRule, WritePolicy, WriteReport } from './types';
export { casesFromEpisode, casesFromRows } from './episodes';
export type { EpisodeRecord } from './episodes';
export type { IndexLike, IndexSearchResult, IndexEstimateResult } from './indexLike';
export { SnapshotError, readSnapshot, writeSnapshot, resolveKey, SNAPSHOT_FORMAT, SNAPSHOT_VERSION, MIN_KEY_BYTES } from './snapshot';
export type { SnapshotData, SnapshotHeader, SnapshotSignature, SaveOptions, SaveStep } from './snapshot';
export { makeTrustPolicy, trustLevelOf, capGroupShares, capShares, cappedEstimate, detectHubs, DEFAULT_TRUST_LEVELS, DEFAULT_QUARANTINE, DEFAULT_HUBS } from './trust';
export type { TrustLevel, TrustOptions, TrustPolicy, QuarantineRule, HubRule } from './trust';
export { readJournal, JournalWriter } from './journal';
