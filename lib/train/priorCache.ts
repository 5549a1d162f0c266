/**
 * The domain prior of the main job, built by `memq model pretrain` on first use and cached in
 * the user's cache directory, keyed by the pretrain config and the package version:
 *   $MEMQ_CACHE/priors/<env>-<key>/   (default MEMQ_CACHE: $XDG_CACHE_HOME/memq, else ~/.cache/memq)
 * Never inside the repository or a run directory. Two processes building the same prior at once
 * both train; the first to finish moves its model into place and the other uses it.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { version } from '../version';
import { pretrainPrior, type PretrainConfig, type PretrainProgress, type PretrainReport } from './pretrain';

/** Where memq caches what it builds for itself (MEMQ_CACHE overrides). */
export function cacheRoot(): string {
  const env = process.env.MEMQ_CACHE;
  if (env !== undefined) {
    if (env.trim() === '') throw new TypeError('MEMQ_CACHE must name a directory (it is set but empty)');
    return path.resolve(env);
  }
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache'), 'memq');
}

/** The cache key of a pretrain config: its canonical JSON and memq's version. */
export function priorKey(config: PretrainConfig): string {
  // A config without case prompts (cases.share 0) trains exactly what the configs before the
  // `cases` field trained: it keeps their key, so an existing cached prior stays valid.
  if (config.cases && config.cases.share === 0) {
    const { cases: _plain, ...rest } = config;
    config = rest as PretrainConfig;
  }
  const canonical = (v: unknown): unknown =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])]))
      : v;
  return crypto.createHash('sha256').update(JSON.stringify({ config: canonical(config), memq: version() })).digest('hex').slice(0, 16);
}

export function priorCacheDir(config: PretrainConfig): string {
  return path.join(cacheRoot(), 'priors', `${config.env}-${priorKey(config)}`);
}

function complete(dir: string): boolean {
  return ['config.json', 'tokenizer.json', 'cache.json'].every((f) => fs.existsSync(path.join(dir, f)));
}

export interface CachedPrior {
  dir: string;
  /** True when this call trained it (false: it was in the cache). */
  built: boolean;
  seconds: number;
  report?: PretrainReport;
}

/** The cached prior for `config`, training it first when the cache has none. */
export async function cachedPrior(
  config: PretrainConfig,
  hooks: { signal?: AbortSignal; onBuild?: (dir: string) => void; onProgress?: (p: PretrainProgress) => void } = {},
): Promise<CachedPrior> {
  const dir = priorCacheDir(config);
  if (complete(dir)) return { dir, built: false, seconds: 0 };
  hooks.onBuild?.(dir);
  const t0 = Date.now();
  const staging = path.join(path.dirname(dir), `.build-${path.basename(dir)}-${process.pid}`);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  fs.rmSync(staging, { recursive: true, force: true });
  let report: PretrainReport;
  try {
    report = await pretrainPrior(config, staging, { signal: hooks.signal, onProgress: hooks.onProgress });
    fs.writeFileSync(path.join(staging, 'cache.json'), JSON.stringify({ key: priorKey(config), memq: version(), config }, null, 2) + '\n');
    if (complete(dir)) {
      fs.rmSync(staging, { recursive: true, force: true }); // another process finished first
    } else {
      fs.rmSync(dir, { recursive: true, force: true }); // an incomplete leftover of a killed build
      fs.renameSync(staging, dir);
    }
  } catch (e) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw e;
  }
  return { dir, built: true, seconds: (Date.now() - t0) / 1000, report };
}
