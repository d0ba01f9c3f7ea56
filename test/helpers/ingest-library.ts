/** Helpers for the ingest engine tests: a library on the self-built model, and "can search find this file". */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { hasImageExtension } from '../../src/ingest/file-rules.js';
import { Library } from '../../src/library/library.js';
import { noise } from './ingest-fixtures.js';

export async function openLibrary(dataDir: string, modelDir: string): Promise<Library> {
  return Library.open({ dataDir, model: modelDir, session: { providers: ['cpu'] } });
}

/**
 * The id search returns first for the file's own picture, embedded here independently of ingestion
 * (the library's model, the batch preprocessing path), with its score.
 */
export async function searchByFile(lib: Library, path: string): Promise<{ id: number; score: number } | undefined> {
  const { model, index } = lib.requireModel();
  const [result] = await model.embedImages([path]);
  if (!result?.ok) throw new Error(`cannot embed ${path}: ${result?.ok === false ? result.error.message : 'no result'}`);
  const [hit] = await index.search(result.embedding, 1);
  return hit;
}

/** True when search by the file's own picture finds this image id, with the same vector (cosine ~1). */
export async function findsItself(lib: Library, path: string, id: number): Promise<boolean> {
  const hit = await searchByFile(lib, path);
  return hit?.id === id && hit.score > 0.999;
}

/** Every file with an image extension under `dir`, recursively. */
export function imageFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...imageFilesUnder(p));
    else if (entry.isFile() && hasImageExtension(entry.name)) out.push(p);
  }
  return out.sort();
}

/** A small distinct JPEG in memory (seeded noise): every seed a different hash and embedding. */
export function tinyJpeg(seed: number, width = 32, height = 24): Promise<Buffer> {
  return sharp(noise(width, height, seed), { raw: { width, height, channels: 3 } }).jpeg({ quality: 85 }).toBuffer();
}
