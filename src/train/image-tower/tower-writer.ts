/**
 * The tuned tensors merged back into the image tower's own graph, as the text side's tower-writer.ts does:
 * the same nodes, inputs and outputs, only the tuned initializers' values changed (transposed back where the
 * export stores them [out, in]; q, k and v put back as their thirds of a fused OpenCLIP in_proj matrix and
 * bias, which stays one initializer), so whatever loads the original tower loads this one. Files appear whole or
 * not at all (temporary name, then rename).
 */
import { cloneGraph, writeGraph } from '../graph-grad/onnx-ir.js';
import { writeFileAtomic, writeModelDirWithTower } from '../text-tower/tower-writer.js';
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

/**
 * A complete model folder at `outDir`: a copy of the tower's folder with the image tower replaced by `bytes`,
 * loadable as `--model outDir`. Built in a staging folder beside it and renamed.
 */
export async function writeTunedImageModelDir(tower: ImageTower, bytes: Uint8Array, outDir: string, signal?: AbortSignal): Promise<string> {
  return writeModelDirWithTower(tower.spec, tower.spec.vision.file, /^vision_model.*\.onnx(_data)?$/, bytes, outDir, signal, IMAGE_TOWER);
}
