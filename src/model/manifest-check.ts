/**
 * Whether a model folder is what a manifest says it is. `models import DIR --as clip-vit-b-32` took a 64-d
 * self-built model as the 512-d ViT-B/32, and `models list` and `doctor` then reported it as that model;
 * the folder's own files (export layout, config, the graphs' declared inputs, outputs and shapes, checksums)
 * are compared with the manifest, and every difference is named.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { openSession } from '../inference/onnx-runtime.js';
import { LAYOUT_IO } from './clip-onnx-graph.js';
import type { ModelManifest, TowerSpec } from './manifest.js';
import { detectLayout, readModelDir } from './model-dir.js';

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** What in `dir` differs from `manifest`, one sentence each; empty when the folder is that model. */
export async function manifestDifferences(dir: string, manifest: ModelManifest): Promise<string[]> {
  const layout = detectLayout(dir);
  if (layout !== manifest.layout) {
    // Different files altogether: the other comparisons would only repeat it.
    return [`export layout: the folder is an ${layout} export (${LAYOUT_IO[layout].vision.file}), ${manifest.id} is ${manifest.layout} (${manifest.vision.file})`];
  }
  const missing = (manifest.source?.files ?? []).map((f) => f.path).filter((f) => !existsSync(join(dir, ...f.split('/'))));
  for (const file of [manifest.vision.file, manifest.text.file]) if (!missing.includes(file) && !existsSync(join(dir, file))) missing.push(file);
  if (missing.length > 0) return [`files: the folder lacks ${missing.join(', ')}`];
  const differences: string[] = [];
  for (const file of manifest.source?.files ?? []) {
    const path = join(dir, ...file.path.split('/'));
    if (!file.sha256 || !existsSync(path)) continue;
    const actual = await sha256File(path);
    if (actual !== file.sha256) differences.push(`${file.path}: sha256 ${actual} (the manifest has ${file.sha256})`);
  }
  const spec = await readModelDir(dir, manifest);
  if (spec.embeddingDim !== null && spec.embeddingDim !== manifest.embeddingDim) {
    differences.push(`embedding dimension: ${spec.embeddingDim} in the folder's config.json, ${manifest.embeddingDim} in the manifest`);
  }
  if (spec.preprocess.size !== manifest.preprocess.size) {
    differences.push(`image size: ${spec.preprocess.size}px in the folder's preprocessing config, ${manifest.preprocess.size}px in the manifest`);
  }
  for (const [what, tower] of [
    ['image', manifest.vision],
    ['text', manifest.text],
  ] as const) {
    differences.push(...(await towerDifferences(dir, tower, what, manifest)));
  }
  return differences;
}

/** The graph's declared names and output width against the manifest's; read from a CPU session, then released. */
async function towerDifferences(dir: string, tower: TowerSpec, what: 'image' | 'text', manifest: ModelManifest): Promise<string[]> {
  const { session } = await openSession(join(dir, tower.file), { providers: ['cpu'], threads: 1 });
  try {
    const out: string[] = [];
    const inputs = session.inputMetadata.map((m) => m.name);
    if (!inputs.includes(tower.input)) out.push(`${what} graph ${tower.file}: inputs ${inputs.join(', ')}, the manifest names ${tower.input}`);
    const output = session.outputMetadata.find((m) => m.name === tower.output);
    if (!output) {
      out.push(`${what} graph ${tower.file}: outputs ${session.outputMetadata.map((m) => m.name).join(', ')}, the manifest names ${tower.output}`);
      return out;
    }
    const width = output.isTensor ? output.shape[output.shape.length - 1] : undefined;
    if (typeof width === 'number' && width > 0 && width !== manifest.embeddingDim) {
      out.push(`embedding dimension: the ${what} graph outputs ${width}-d ${tower.output}, the manifest says ${manifest.embeddingDim}`);
    }
    return out;
  } finally {
    await session.release();
  }
}
