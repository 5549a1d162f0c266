/** Episodic memory (MATH §1, §3–§4, §8) and its durable on-disk format (docs/memory-format.md). */
export { EpisodicMemory, createIndex, nativeAvailable } from './episodic';
export type { LoadOptions, LoadReport, MemoryChange } from './episodic';
export type { CaseInput, CaseMeta, EpisodicMemoryOptions, MergeRule, WritePolicy, WriteReport } from './types';
export { ReferenceIndex } from './referenceIndex';
export { casesFromEpisode } from './episodes';
export type { EpisodeRecord } from './episodes';
export type { IndexLike, IndexSearchResult, IndexEstimateResult } from './indexLike';
export { SnapshotError, readSnapshot, writeSnapshot, SNAPSHOT_FORMAT, SNAPSHOT_VERSION } from './snapshot';
export type { SnapshotData, SnapshotHeader, SaveOptions, SaveStep } from './snapshot';
export { readJournal, JournalWriter } from './journal';
