// Without the test helper, backend 'js' (the float64 ReferenceIndex, now test-only) is refused
// with an error naming the option; this file deliberately does not import test/helpers/referenceIndex.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, expect, it } from 'vitest';
import { EpisodicMemory } from '../../lib/memory/episodic';

describe("backend 'js' outside the tests", () => {
  it('is refused, naming the option and what to pass instead', () => {
    expect(() => new EpisodicMemory({ dim: 2, backend: 'js' })).toThrow(/backend 'js' is no longer available.*omit the backend option or pass 'native'/);
  });

  it('load refuses it the same way (not as a damaged snapshot)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memq-backend-'));
    try {
      new EpisodicMemory({ dim: 2 }).save(dir, { fsync: false });
      expect(() => EpisodicMemory.load(dir, { backend: 'js' })).toThrow(/^backend 'js' is no longer available/);
      expect(EpisodicMemory.load(dir).backend).toBe('native');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
