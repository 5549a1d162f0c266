/**
 * The fuzz table: every public entry point with its weight (how often it is drawn). Each
 * target module owns the generators of its entries' arguments and their oracles.
 * MEMQ_FUZZ_SELFTEST=1 swaps in entries that misbehave on purpose (the harness's own tests),
 * without loading memq at all.
 */
import type { Entry } from './core';

function load(): Entry[] {
  /* eslint-disable @typescript-eslint/no-var-requires */
  if (process.env.MEMQ_FUZZ_SELFTEST) return require('./selftest').selfTestEntries;
  return [
    ...require('./targets/retrieval').retrievalEntries,
    ...require('./targets/memory').memoryEntries,
    ...require('./targets/llm').llmEntries,
    ...require('./targets/cli').cliEntries,
  ];
}

export const entries: Entry[] = load();
