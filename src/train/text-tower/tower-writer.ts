/**
 * The tuned tensors merged back into the tower's own graph: the same nodes, inputs and outputs, only the
 * tuned initializers' values changed (transposed back where the export stores them [out, in]; q, k and v put
 * back as their rows of a fused OpenCLIP in_proj matrix and bias, which stays one initializer). No adapter
 * node is added, so whatever loads the original tower loads this one.
 *
 * Files are written beside their target under a temporary name and renamed into place: a run killed or
 * cancelled mid-write leaves the old file (or none), never half of a new one.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { ClipdexError } from '../../errors.js';
import { cloneGraph, writeGraph } from '../graph-grad/onnx-ir.js';
import { storedTensors as storedIn } from '../tower-naming.js';
import { locate, type TextTower } from './tower-source.js';
import type { ModelSpec } from '../../model/model-dir.js';

/**
 * The initializers these canonical tensors live in, by their names in the tower's graph, with the tuned values
 * written in: in the graph's own layout and dims, whole (a fused in_proj keeps any third not given here).
 */
export function storedTensors(tower: TextTower, tensors: ReadonlyMap<string, Float32Array>): Map<string, { dims: number[]; data: Float32Array }> {
  return storedIn(tower.graph, (name) => locate(tower, name), tensors);
}

/** The tower's graph with these canonical tensors replaced. */
export function mergedTowerBytes(tower: TextTower, tensors: ReadonlyMap<string, Float32Array>): Uint8Array {
  const g = cloneGraph(tower.graph);
  for (const [name, { data }] of storedTensors(tower, tensors)) g.initializers.set(name, { ...g.initializers.get(name)!, data });
  return writeGraph(g);
}

function cancelled(what = 'the tuned text tower'): ClipdexError {
  return new ClipdexError('INVALID_ARGUMENT', `writing ${what} was cancelled`);
}

/** Writes `bytes` to `target` through a temporary file in the same folder, synced before the rename; `what` names it in the cancel error. */
export async function writeFileAtomic(target: string, bytes: Uint8Array, signal?: AbortSignal, what?: string): Promise<void> {
  const path = resolve(target);
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const fh = await open(temp, 'w');
    try {
      // In slices, so a cancel lands between them instead of after 250 MB.
      const slice = 16 << 20;
      for (let at = 0; at < bytes.length; at += slice) {
        if (signal?.aborted) throw cancelled(what);
        await fh.write(bytes, at, Math.min(slice, bytes.length - at));
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (signal?.aborted) throw cancelled(what);
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/**
 * A complete model folder at `outDir`: a copy of the tower's folder with the text tower replaced by `bytes`,
 * loadable as `--model outDir`. Built in a staging folder beside it and renamed, so it appears whole or not at all.
 */
export async function writeTunedModelDir(tower: TextTower, bytes: Uint8Array, outDir: string, signal?: AbortSignal): Promise<string> {
  return writeModelDirWithTower(tower.spec, tower.spec.text.file, /^text_model.*\.onnx(_data)?$/, bytes, outDir, signal);
}

/**
 * The model folder `spec.dir` copied to `outDir` with `towerFile` replaced by `bytes`, built in a staging folder
 * beside it and renamed. The tower's other variants (files named like `variants` beside it: transformers.js'
 * _fp16, _quantized) are left out: they would still hold the old weights.
 */
export async function writeModelDirWithTower(spec: ModelSpec, towerFile: string, variants: RegExp, bytes: Uint8Array, outDir: string, signal?: AbortSignal, what?: string): Promise<string> {
  const out = resolve(outDir);
  if (existsSync(out) && (await readdir(out)).length > 0) throw new ClipdexError('INVALID_ARGUMENT', `${out} is not empty`);
  if (signal?.aborted) throw cancelled(what);
  const staging = `${out}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const file = resolve(spec.dir, towerFile);
    const stale = (p: string) => dirname(p) === dirname(file) && p !== file && variants.test(p.slice(dirname(p).length + 1));
    await cp(spec.dir, staging, { recursive: true, filter: (p) => !stale(resolve(p)) });
    if (signal?.aborted) throw cancelled(what);
    await writeFileAtomic(join(staging, towerFile), bytes, signal, what);
    if (signal?.aborted) throw cancelled(what);
    await rm(out, { recursive: true, force: true });
    await rename(staging, out);
    return out;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}
