import { cp, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { ClipdexError } from '../errors.js';
import { cacheDir, modelCacheDir } from './cache-dir.js';
import { writePullMarker } from './hub-download.js';
import type { ModelManifest } from './manifest.js';
import { manifestDifferences, sha256File } from './manifest-check.js';
import { readModelDir } from './model-dir.js';
import { LOCAL_REVISION, manifestCacheDir } from './model-registry.js';

export interface ImportResult {
  id: string;
  dir: string;
  files: number;
  bytes: number;
}

/**
 * Copies a model directory (downloaded elsewhere, or written by build-tiny) into the cache, for machines
 * that cannot reach the hub. With a manifest, the folder must be that model (every listed file there, and
 * layout, dimension, I/O names and checksums as the manifest says); without one the model is registered
 * under `local-<name>`. Files are copied to a staging dir and renamed, and the same
 * completion marker as a pull is written, so a half-finished import is never taken for a model.
 */
export async function importModel(
  sourceDir: string,
  options: { manifest?: ModelManifest; name?: string; cacheRoot?: string },
): Promise<ImportResult> {
  const src = resolve(sourceDir);
  // Refuse what would not load, before copying hundreds of megabytes.
  await readModelDir(src, options.manifest);
  const manifest = options.manifest;
  let id: string;
  let target: string;
  let files: string[];
  if (manifest) {
    // A folder registered under a manifest's id is reported and used as that model: it must be that model.
    const differences = await manifestDifferences(src, manifest);
    if (differences.length > 0) {
      throw new ClipdexError(
        'INVALID_ARGUMENT',
        `${src} is not ${manifest.id}: ${differences.join('; ')}. Nothing was imported. Import it without --as to use it as a model of its own ` +
          `(local-<name>), or give the --as id it matches (\`clipdex models list\`)`,
        { details: { id: manifest.id, differences } },
      );
    }
    id = manifest.id;
    target = manifestCacheDir(manifest, options.cacheRoot);
    files = (manifest.source?.files ?? []).map((f) => f.path);
  } else {
    const name = options.name ?? src.split(sep).filter(Boolean).pop() ?? 'model';
    id = name.startsWith('local-') ? name : `local-${name}`;
    target = modelCacheDir(id, LOCAL_REVISION, options.cacheRoot ?? cacheDir());
    files = await listFiles(src);
  }
  const staging = `${target}.import-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  const entries: { path: string; size: number; sha256: string }[] = [];
  for (const rel of files) {
    const from = join(src, ...rel.split('/'));
    const to = join(staging, ...rel.split('/'));
    await cp(from, to);
    entries.push({ path: rel, size: (await stat(to)).size, sha256: await sha256File(to) });
  }
  await writePullMarker(staging, {
    version: 1,
    repo: manifest?.source?.repo ?? id,
    revision: manifest?.source?.revision ?? LOCAL_REVISION,
    completedAt: new Date().toISOString(),
    files: entries,
  });
  await rm(target, { recursive: true, force: true });
  await mkdir(resolve(target, '..'), { recursive: true });
  await rename(staging, target);
  return { id, dir: target, files: entries.length, bytes: entries.reduce((a, e) => a + e.size, 0) };
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile() && !e.name.startsWith('.')) out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  await walk(dir);
  return out.sort();
}

