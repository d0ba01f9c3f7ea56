/**
 * The four folders of ../shared/photos/labeled indexed with the self-built model (seed 11) into a data dir,
 * no labels: the start of every training suite. Indexing the 113 photos is ~7 s of both cores under load and
 * gives the same rows, vectors and thumbnails every time, so it is done once per test process and each
 * caller gets a copy of its own (data dir, cache dir and model folder, a fraction of a second to copy).
 * Unit files share their worker process (vitest.config.ts: isolate false), so the template serves several.
 */
import { cpSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Library } from '../../src/library/library.js';
import { indexFiles, tinyModel } from './library-fixture.js';
import { processScratch } from './run-scratch.js';
import { sharedPath } from './shared.js';

export const LABELED_FOLDERS = ['fishes', 'tools', 'renewable', 'others'] as const;

export interface LabeledLibrary {
  /** Where the copy lives: `data`, `cache` and `model` under it. */
  dir: string;
  dataDir: string;
  cacheDir: string;
  modelDir: string;
  /** The folder's photo files, sorted, as indexed. */
  files: Map<string, string[]>;
  /** Their photo ids, in the order of `files`. */
  ids: Map<string, number[]>;
}

interface Template {
  dir: string;
  files: Map<string, string[]>;
  ids: Map<string, number[]>;
}

let template: Promise<Template> | null = null;

async function makeTemplate(labeled: string): Promise<Template> {
  // The worker process outlives every file that copies from it; the run's end removes the template.
  const dir = processScratch('labeled-library');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const model = await tinyModel(dir);
  const library = await Library.open({ dataDir: join(dir, 'data'), model, cacheDir: join(dir, 'cache') });
  const files = new Map<string, string[]>();
  const ids = new Map<string, number[]>();
  try {
    for (const folder of LABELED_FOLDERS) {
      const paths = readdirSync(join(labeled, folder)).filter((f) => f.endsWith('.webp')).sort().map((f) => join(labeled, folder, f));
      files.set(folder, paths);
      ids.set(folder, await indexFiles(library, labeled, paths));
    }
  } finally {
    await library.close();
  }
  return { dir, files, ids };
}

/**
 * A closed library of the labeled photos copied under `dest` (created if missing), as if indexed there:
 * open it with `Library.open({ dataDir, model: modelDir, cacheDir })` or hand its folders to the CLI.
 */
export async function labeledLibrary(dest: string): Promise<LabeledLibrary> {
  const labeled = sharedPath('photos', 'labeled');
  if (!labeled) throw new Error('../shared/photos/labeled is missing');
  template ??= makeTemplate(labeled);
  let made: Template;
  try {
    made = await template;
  } catch (err) {
    template = null;
    throw err;
  }
  mkdirSync(dest, { recursive: true });
  for (const part of ['data', 'cache', 'model']) cpSync(join(made.dir, part), join(dest, part), { recursive: true });
  return {
    dir: dest,
    dataDir: join(dest, 'data'),
    cacheDir: join(dest, 'cache'),
    modelDir: join(dest, 'model'),
    files: new Map([...made.files].map(([k, v]) => [k, [...v]])),
    ids: new Map([...made.ids].map(([k, v]) => [k, [...v]])),
  };
}
