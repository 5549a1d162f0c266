/**
 * The fuzz table: every public entry point with its weight (how often it is drawn). Each
 * target module owns the generators of its entries' arguments and their oracles.
 */
import type { Entry } from './core';
import { selfTestEntries } from './selftest';
import { cliEntries } from './targets/cli';
import { llmEntries } from './targets/llm';
import { memoryEntries } from './targets/memory';
import { retrievalEntries } from './targets/retrieval';

export const entries: Entry[] = process.env.MEMQ_FUZZ_SELFTEST
  ? selfTestEntries
  : [...retrievalEntries, ...memoryEntries, ...llmEntries, ...cliEntries];
