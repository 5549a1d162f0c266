/** Cases of episodic memory (MATH §1) and the options of the store. */
import type { KernelSettings } from '../policy/kernels';
import type { TrustOptions } from './trust';

/** Provenance and bookkeeping of a case; the key and value live in the index. */
export interface CaseMeta {
  /** State text s_c. */
  state: string;
  /** Action text a_c (the merge rule only merges cases of the same action). */
  action: string;
  /** Visit count n_c. */
  visits: number;
  /** Weight w_c (importance-weighted eviction). */
  weight: number;
  episode: number;
  step: number;
  source: string;
  /** Wall-clock time of the first write (ms since the epoch). */
  time: number;
  /** Insertion order (replay-buffer age). */
  seq: number;
  /** Order of the last write, insert or merge (sliding-window recency). */
  touched: number;
}

/** A case to write: a key, a return / value, and optional text and provenance. */
export interface CaseInput {
  key: Float32Array | number[];
  value: number;
  state?: string;
  action?: string;
  episode?: number;
  step?: number;
  source?: string;
  time?: number;
  /** Explicit weight (overrides the weightBy rule). */
  weight?: number;
  /** |TD error| of the case, for weightBy 'tdError'. */
  tdError?: number;
}

/**
 * Per-row metadata of a flat write (EpisodicMemory.writeRows): each column is absent, one value
 * for every row, or an array with one entry per row (the defaults are those of CaseInput).
 */
export interface CaseRows {
  state?: string | readonly string[];
  action?: string | readonly string[];
  episode?: number | ArrayLike<number>;
  step?: number | ArrayLike<number>;
  source?: string | readonly string[];
  time?: number | ArrayLike<number>;
  /** Explicit weights (override the weightBy rule). */
  weight?: number | ArrayLike<number>;
  /** |TD error| per row, for weightBy 'tdError'. */
  tdError?: number | ArrayLike<number>;
}

/** MATH §8 write policies. */
export type WritePolicy =
  | { kind: 'unbounded' }
  /** Append; when full, evict the oldest inserted case. */
  | { kind: 'replay'; capacity: number }
  /** Keep the W most recently written cases (a merge counts as a write). */
  | { kind: 'window'; size: number }
  /** When full, evict the lowest weight (ties: the oldest), or sample eviction ∝ 1/w. */
  | { kind: 'importance'; capacity: number; weightBy: 'tdError' | 'visits' | 'return'; sample?: boolean; seed?: number };

/** NEC's near-duplicate merge: same action within ε → q ← q + η (G − q), n ← n + 1. */
export interface MergeRule {
  /** Euclidean radius ε. */
  epsilon: number;
  /**
   * η: a constant in (0, 1]; 'average' for η = 1/n (n = visits after the increment: a running
   * mean); or { power: p } for η = 1/n^p, p ∈ (0, 1] (a decaying slow-clock step, MATH §7).
   */
  rate: number | 'average' | { power: number };
  /**
   * How many nearest stored cases to examine first per new key (default 8). When all of them
   * lie within ε without a same-action match, the search widens (×4) until one is found or the
   * candidates leave the ε-ball: exact for the distance kernels (gaussian, inverse); with the
   * cosine kernel the candidates are ranked by cosine, not distance.
   */
  candidates?: number;
}

export interface EpisodicMemoryOptions {
  dim: number;
  kernel?: KernelSettings;
  policy?: WritePolicy;
  merge?: MergeRule;
  /**
   * 'native' or 'auto' (the default; the same: the native addon, which the package ships
   * prebuilt). 'js' is test-only (the float64 ReferenceIndex of test/helpers); passed without it,
   * it is refused with an error naming this option.
   */
  backend?: 'native' | 'js' | 'auto';
  /**
   * Trust policy for reads and writes (docs/trust.md): source levels, share caps, value
   * clipping, quarantine, hub detection. Absent: reads take the native fast path and every
   * source is read alike.
   */
  trust?: TrustOptions;
  /** @internal Where the native index runs; load({ mmap: true }) asks for 'cpu' (mapped keys). */
  indexBackend?: 'cpu';
}

export interface WriteReport {
  /** Ids of newly stored cases (in input order, for the inputs that were appended). */
  added: Int32Array;
  /** Ids of stored cases a new case was merged into (one per merged input). */
  merged: Int32Array;
  /** Ids evicted by the write policy. */
  evicted: Int32Array;
  /** Per input: the id it ended up in, or −1 if it was dropped at once (batch larger than capacity). */
  caseIds: Int32Array;
  /**
   * Under authenticated provenance (trust.authenticate) only: how many cases of the batch
   * claimed a trusted source without a valid MAC and were stored as 'unverified:<source>'.
   */
  unverified?: number;
}

/** Options of one write. */
export interface WriteOptions {
  /** The batch's MAC under the writer key (`signWrite` / `signCases`, lib/memory/provenance.ts). */
  mac?: string;
}
