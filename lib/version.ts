import * as fs from 'fs';
import * as path from 'path';
import { packageRoot } from './native';

/** memq's package.json (read at run time: works from lib/ under vitest and from dist/). */
export function packageJson(): { name: string; version: string; [k: string]: unknown } {
  return JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8'));
}

export function version(): string {
  return packageJson().version;
}
