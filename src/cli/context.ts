import type { Command } from 'commander';
import { cacheDir, dataDir } from '../model/cache-dir.js';
import { DEFAULT_MODEL_ID } from '../model/model-registry.js';

export { EXIT, exitCodeFor } from './exit-codes.js';

/** Options every command takes, resolved flag → env → default. */
export interface GlobalOptions {
  /** --model or $CLIPDEX_MODEL; undefined: the library's recorded model (Library.open decides). */
  model: string | undefined;
  /** The model a command that opens no library works on: `model`, else the default model. */
  modelOrDefault: string;
  dataDir: string;
  /** --db or $CLIPDEX_DATABASE_URL: the library is in Postgres (thumbnails and models stay in the folders). */
  databaseUrl: string | undefined;
  cacheDir: string;
  json: boolean;
}

/**
 * Session options for a command that may encode nothing (a label, a version, a search by photo id): each
 * tower opens at its first use. For ViT-B/32 each is seconds of reading and optimising the graph.
 */
export const TOWERS_WHEN_USED = { lazyImageTower: true, lazyTextTower: true } as const;

/** What every command that opens the library hands Library.open. */
export function libraryOptions(g: GlobalOptions): { dataDir: string; model: string | undefined; cacheDir: string; databaseUrl?: string } {
  return { dataDir: g.dataDir, model: g.model, cacheDir: g.cacheDir, ...(g.databaseUrl ? { databaseUrl: g.databaseUrl } : {}) };
}

export function globalOptions(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals<{ model?: string; dataDir?: string; db?: string; cacheDir?: string; json?: boolean }>();
  return {
    model: o.model ?? process.env.CLIPDEX_MODEL,
    modelOrDefault: o.model ?? process.env.CLIPDEX_MODEL ?? DEFAULT_MODEL_ID,
    dataDir: dataDir(o.dataDir),
    databaseUrl: o.db ?? (process.env.CLIPDEX_DATABASE_URL || undefined),
    cacheDir: cacheDir(o.cacheDir),
    json: o.json === true,
  };
}

/** Machine-readable results go to stdout; everything meant for a person goes to stderr in --json mode. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function log(message: string): void {
  process.stderr.write(`${message}\n`);
}
