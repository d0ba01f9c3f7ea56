import { existsSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClipdexError, errorMessage } from '../errors.js';
import { cacheDir, modelCacheDir } from './cache-dir.js';
import { isPulled, readPullMarker } from './hub-download.js';
import { MODEL_FAMILIES, type ModelFamily, type ModelLayout, type ModelManifest } from './manifest.js';
import { readModelDir, type ModelSpec } from './model-dir.js';

export const DEFAULT_MODEL_ID = 'clip-vit-b-32';

/** Revision directory of models imported without a manifest (`local-<name>`). */
export const LOCAL_REVISION = 'local';

/** models/ in the installed package (same relative place from src/ and dist/). */
export const MANIFEST_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models');

/** Reads and checks every manifest, so a bad one is reported by name at start-up, not at first use. */
export async function listManifests(dir = MANIFEST_DIR): Promise<ModelManifest[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
  return Promise.all(
    files.map(async (f) => {
      const path = join(dir, f);
      let raw: unknown;
      try {
        raw = JSON.parse(await readFile(path, 'utf8'));
      } catch (err) {
        throw new ClipdexError('MODEL_INVALID', `model manifest ${path}: ${errorMessage(err)}`, { cause: err });
      }
      return validateManifest(raw, path);
    }),
  );
}

/** A model imported without a manifest (`models import DIR` → `local-<name>`), as found in the cache. */
export interface LocalModel {
  id: string;
  dir: string;
  /** null when the folder no longer reads as a model (`error` says why). */
  layout: ModelLayout | null;
  embeddingDim: number | null;
  importedAt: string;
  error?: string;
}

/** Every completed `local-…` import in the cache, by id; they have no manifest, so only the cache knows them. */
export async function listLocalModels(root = cacheDir()): Promise<LocalModel[]> {
  const modelsDir = join(resolve(root), 'models');
  if (!existsSync(modelsDir)) return [];
  const ids = (await readdir(modelsDir)).filter((name) => name.startsWith('local-')).sort();
  const found: LocalModel[] = [];
  for (const id of ids) {
    const dir = modelCacheDir(id, LOCAL_REVISION, root);
    const marker = existsSync(dir) ? await readPullMarker(dir) : null;
    if (!marker) continue; // an import that never finished
    try {
      const spec = await readModelDir(dir);
      found.push({ id, dir, layout: spec.layout, embeddingDim: spec.embeddingDim, importedAt: marker.completedAt });
    } catch (err) {
      found.push({ id, dir, layout: null, embeddingDim: null, importedAt: marker.completedAt, error: errorMessage(err) });
    }
  }
  return found;
}

export async function findManifest(id: string, dir = MANIFEST_DIR): Promise<ModelManifest | undefined> {
  return (await listManifests(dir)).find((m) => m.id === id);
}

/** Where a pulled model lives in the cache. */
export function manifestCacheDir(m: ModelManifest, root = cacheDir()): string {
  return modelCacheDir(m.id, m.source?.revision ?? 'local', root);
}

export interface ResolveOptions {
  cacheRoot?: string;
  manifestDir?: string;
}

/**
 * Turns `--model` into a loadable spec: an existing directory is read as a model in either layout;
 * otherwise it must be a manifest id whose files have been pulled (or imported) into the cache.
 */
export async function resolveModel(ref: string, options: ResolveOptions = {}): Promise<ModelSpec> {
  if (looksLikePath(ref) || existsSync(ref)) {
    if (!existsSync(ref) || !statSync(ref).isDirectory()) {
      throw new ClipdexError('MODEL_NOT_FOUND', `model directory not found: ${resolve(ref)}`);
    }
    return readModelDir(ref);
  }
  const manifests = await listManifests(options.manifestDir);
  const manifest = manifests.find((m) => m.id === ref);
  if (!manifest) {
    const local = modelCacheDir(ref, LOCAL_REVISION, options.cacheRoot ?? cacheDir());
    if (existsSync(local) && (await readPullMarker(local))) return readModelDir(local);
    throw new ClipdexError(
      'MODEL_NOT_FOUND',
      `unknown model "${ref}": not a directory, not an imported local model, and not one of ${manifests.map((m) => m.id).join(', ')}`,
    );
  }
  if (!manifest.supported) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `model ${manifest.id} is not supported yet: ${manifest.unsupportedReason ?? 'no reason given'}`);
  }
  const dir = manifestCacheDir(manifest, options.cacheRoot);
  if (!existsSync(dir) || (manifest.source && !(await isPulled(dir, manifest.source)))) {
    throw new ClipdexError(
      'MODEL_NOT_FOUND',
      `model ${manifest.id} is not downloaded (expected in ${dir}). Run \`clipdex models pull ${manifest.id}\`, ` +
        `or on an offline machine copy its files there with \`clipdex models import <dir> --as ${manifest.id}\``,
    );
  }
  return readModelDir(dir, manifest);
}

function looksLikePath(ref: string): boolean {
  return ref.startsWith('.') || ref.startsWith('/') || ref.startsWith('~') || ref.includes('\\');
}

function fail(path: string, what: string): never {
  throw new ClipdexError('MODEL_INVALID', `model manifest ${path}: ${what}`);
}

function validateManifest(raw: unknown, path: string): ModelManifest {
  if (typeof raw !== 'object' || raw === null) fail(path, 'not a JSON object');
  const m = raw as Record<string, unknown>;
  const str = (k: string) => (typeof m[k] === 'string' && (m[k] as string).length > 0 ? (m[k] as string) : fail(path, `"${k}" must be a non-empty string`));
  const pos = (k: string) => (Number.isInteger(m[k]) && (m[k] as number) > 0 ? (m[k] as number) : fail(path, `"${k}" must be a positive integer`));
  str('id');
  str('description');
  if (typeof m.supported !== 'boolean') fail(path, '"supported" must be true or false');
  if (m.layout !== 'hf' && m.layout !== 'openclip') fail(path, '"layout" must be "hf" or "openclip"');
  pos('embeddingDim');
  pos('contextLength');
  if (typeof m.logitScale !== 'number' || !(m.logitScale > 0)) fail(path, '"logitScale" must be a positive number');
  if (m.logitBias !== undefined && (typeof m.logitBias !== 'number' || !Number.isFinite(m.logitBias))) fail(path, '"logitBias" must be a number');
  if (m.family !== undefined && !MODEL_FAMILIES.includes(m.family as ModelFamily)) fail(path, `"family" must be one of ${MODEL_FAMILIES.join(', ')}`);
  if (m.languages !== undefined && (!Array.isArray(m.languages) || m.languages.length === 0 || !m.languages.every((l) => typeof l === 'string' && l.length > 0))) {
    fail(path, '"languages" must be a non-empty list of language names or codes');
  }
  if (m.crossmodal3600 !== undefined) {
    const c = m.crossmodal3600 as Record<string, unknown>;
    const recall = c?.recall as Record<string, unknown> | undefined;
    if (typeof c?.source !== 'string' || c.source === '' || typeof recall !== 'object' || recall === null || Object.keys(recall).length === 0) {
      fail(path, '"crossmodal3600" needs a non-empty "recall" (language → percent) and its "source"');
    }
    for (const [language, v] of Object.entries(recall)) {
      if (typeof v !== 'number' || !(v >= 0 && v <= 100)) fail(path, `"crossmodal3600.recall.${language}" must be a percentage from 0 to 100`);
    }
  }
  if (m.notes !== undefined && typeof m.notes !== 'string') fail(path, '"notes" must be text');
  const prep = m.preprocess as Record<string, unknown> | undefined;
  if (!prep || !Number.isInteger(prep.size)) fail(path, '"preprocess.size" must be an integer');
  if (prep.resizeMode !== 'shortest' && prep.resizeMode !== 'squash') fail(path, '"preprocess.resizeMode" must be shortest or squash');
  if (!['bicubic', 'bilinear', 'nearest'].includes(prep.interpolation as string)) fail(path, '"preprocess.interpolation" is not known');
  for (const k of ['mean', 'std']) {
    const v = prep[k];
    if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => typeof x === 'number')) fail(path, `"preprocess.${k}" must be three numbers`);
  }
  for (const tower of ['vision', 'text']) {
    const t = m[tower] as Record<string, unknown> | undefined;
    if (!t || typeof t.file !== 'string' || typeof t.input !== 'string' || typeof t.output !== 'string' || typeof t.normalized !== 'boolean') {
      fail(path, `"${tower}" needs file, input, output (strings) and normalized (boolean)`);
    }
  }
  if (m.source !== undefined) {
    const s = m.source as Record<string, unknown>;
    if (typeof s.repo !== 'string' || typeof s.revision !== 'string' || !Array.isArray(s.files) || s.files.length === 0) {
      fail(path, '"source" needs repo, revision and a non-empty files list');
    }
    for (const f of s.files as unknown[]) {
      const file = f as Record<string, unknown>;
      if (typeof file.path !== 'string') fail(path, 'every source file needs a "path"');
      if (file.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(String(file.sha256))) fail(path, `bad sha256 for ${file.path}`);
    }
  }
  return m as unknown as ModelManifest;
}
