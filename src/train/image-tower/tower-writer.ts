/**
 * The tuned tensors merged back into the image tower's own graph, as the text side's tower-writer.ts does:
 * the same nodes, inputs and outputs, only the tuned initializers' values changed (transposed back where the
 * export stores them [out, in]; q, k and v put back as their thirds of a fused OpenCLIP in_proj matrix and
 * bias, which stays one initializer), so whatever loads the original tower loads this one. Files appear whole or
 * not at all (temporary name, then rename).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, readdir, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ClipdexError } from '../../errors.js';
import { cloneGraph, writeGraph } from '../graph-grad/onnx-ir.js';
import { writeFileAtomic } from '../text-tower/tower-writer.js';
import { type ImageTower, storedImageTensors } from './tower-source.js';

export { writeFileAtomic };

/** The image tower's graph with these canonical tensors replaced. */
export function mergedImageTowerBytes(tower: ImageTower, tensors: ReadonlyMap<string, Float32Array>): Uint8Array {
  const g = cloneGraph(tower.graph);
  for (const [name, { data }] of storedImageTensors(tower, tensors)) g.initializers.set(name, { ...g.initializers.get(name)!, data });
  return writeGraph(g);
}

/** How the cancel error names what was being written. */
export const IMAGE_TOWER = 'the tuned image tower';

function cancelled(): ClipdexError {
  return new ClipdexError('INVALID_ARGUMENT', `writing ${IMAGE_TOWER} was cancelled`);
}

/**
 * A complete model folder at `outDir`: a copy of the tower's folder with the image tower replaced by `bytes`,
 * loadable as `--model outDir`. Built in a staging folder beside it and renamed.
 */
export async function writeTunedImageModelDir(tower: ImageTower, bytes: Uint8Array, outDir: string, signal?: AbortSignal): Promise<string> {
  const out = resolve(outDir);
  if (existsSync(out) && (await readdir(out)).length > 0) throw new ClipdexError('INVALID_ARGUMENT', `${out} is not empty`);
  if (signal?.aborted) throw cancelled();
  const staging = `${out}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    // Other variants of the image tower (transformers.js' _fp16, _quantized) would still hold the old weights.
    const visionFile = resolve(tower.spec.dir, tower.spec.vision.file);
    const stale = (p: string) => dirname(p) === dirname(visionFile) && p !== visionFile && /^vision_model.*\.onnx(_data)?$/.test(p.slice(dirname(p).length + 1));
    await cp(tower.spec.dir, staging, { recursive: true, filter: (p) => !stale(resolve(p)) });
    if (signal?.aborted) throw cancelled();
    await writeFileAtomic(join(staging, tower.spec.vision.file), bytes, signal, IMAGE_TOWER);
    if (signal?.aborted) throw cancelled();
    await rm(out, { recursive: true, force: true });
    await rename(staging, out);
    return out;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}
