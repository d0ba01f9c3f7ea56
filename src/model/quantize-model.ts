import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { ClipdexError } from '../errors.js';
import { COMPLETE_MARKER } from './download-source.js';
import { type ModelQuantization, type ModelSpec, QUANTIZATION_FILE, readModelDir } from './model-dir.js';
import { QUANT_FORMAT_DEFAULT, type QuantFormat, quantizeGraph, quantizedOps } from './quantize-graph.js';

export interface QuantizeModelOptions {
  out: string;
  /** The fp32 model's key (library/model-key.ts), recorded so a reader can tell what the int8 folder came from. */
  sourceKey: string;
  /** How the user named the source (an id or a directory). */
  sourceRef: string;
  format?: QuantFormat;
  /** quantize-graph.ts `fuseSharedInput` (default true): Q, K and V as one quantized MatMul. */
  fuseSharedInput?: boolean;
  force?: boolean;
  onProgress?: (e: QuantizeProgress) => void;
}

export interface QuantizeProgress {
  tower: 'image' | 'text';
  stage: 'read' | 'quantize' | 'write';
  /** Weights quantized so far over both towers, and their total (known once both towers are read). */
  done: number;
  total: number;
}

export interface QuantizedModel {
  dir: string;
  format: QuantFormat;
  towers: { tower: 'image' | 'text'; file: string; weights: number; nodes: number; fused: number; bytesBefore: number; bytesAfter: number }[];
  copied: string[];
}

/** Other tower variants (fp16, an export's own quantized files) and download markers are not carried over. */
function skipped(rel: string, towerFiles: string[]): boolean {
  if (towerFiles.includes(rel)) return true;
  const name = rel.split('/').pop()!;
  return name === COMPLETE_MARKER || name === QUANTIZATION_FILE || /\.onnx(_data|\.data)?$/.test(name);
}

/**
 * Writes an int8 copy of a model folder: both towers' MatMul/Gemm weights quantized (quantize-graph.ts), every other
 * file (config, tokenizer, preprocessing) copied, and QUANTIZATION_FILE saying int8 and the source's key. Built in a
 * staging folder beside `out` and renamed at the end, so an interrupted run leaves no folder that looks like a model.
 */
export async function quantizeModel(spec: ModelSpec, options: QuantizeModelOptions): Promise<QuantizedModel> {
  if (spec.quantization) {
    throw new ClipdexError('INVALID_ARGUMENT', `${spec.dir} is an int8 model already (quantized from ${spec.quantization.sourceRef}); quantize its fp32 source instead`);
  }
  const format = options.format ?? QUANT_FORMAT_DEFAULT;
  const out = resolve(options.out);
  if (out === resolve(spec.dir) || out.startsWith(`${resolve(spec.dir)}${sep}`)) {
    throw new ClipdexError('INVALID_ARGUMENT', `--out ${out} is inside the source model folder; write the int8 model elsewhere`);
  }
  if (existsSync(out) && (await readdir(out)).length > 0 && !options.force) {
    throw new ClipdexError('INVALID_ARGUMENT', `${out} is not empty (use --force to replace it)`);
  }
  const towers = [
    { tower: 'image' as const, file: spec.vision.file },
    { tower: 'text' as const, file: spec.text.file },
  ];
  // Read and check both before writing anything: a quantized or unreadable tower is refused up front.
  const sources = await Promise.all(towers.map(async (t) => ({ ...t, bytes: new Uint8Array(await readFile(join(spec.dir, t.file))) })));
  for (const s of sources) {
    const ops = quantizedOps(s.bytes);
    if (ops.length > 0) {
      throw new ClipdexError('INVALID_ARGUMENT', `${join(spec.dir, s.file)} is quantized already (it has ${ops.join(', ')}); quantize an fp32 model`);
    }
  }

  const staging = `${out}.quantize-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    const written: QuantizedModel['towers'] = [];
    let before = 0;
    let grandTotal = 0;
    for (const s of sources) {
      options.onProgress?.({ tower: s.tower, stage: 'read', done: before, total: grandTotal });
      const result = quantizeGraph(s.bytes, {
        format,
        fuseSharedInput: options.fuseSharedInput,
        onWeight: (done, total) => options.onProgress?.({ tower: s.tower, stage: 'quantize', done: before + done, total: grandTotal + total }),
      });
      if (result.weights === 0) {
        throw new ClipdexError('MODEL_UNSUPPORTED', `${join(spec.dir, s.file)} has no float32 MatMul or Gemm weight to quantize`);
      }
      before += result.weights;
      grandTotal += result.weights;
      options.onProgress?.({ tower: s.tower, stage: 'write', done: before, total: grandTotal });
      const target = join(staging, ...s.file.split('/'));
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, result.bytes);
      written.push({ tower: s.tower, file: s.file, weights: result.weights, nodes: result.nodes, fused: result.fused, bytesBefore: result.bytesBefore, bytesAfter: result.bytesAfter });
    }
    const copied: string[] = [];
    for (const rel of await listFiles(spec.dir)) {
      if (skipped(rel, towers.map((t) => t.file))) continue;
      await cp(join(spec.dir, ...rel.split('/')), join(staging, ...rel.split('/')));
      copied.push(rel);
    }
    const fusedGroups = written.reduce((n, t) => n + t.fused, 0);
    const marker: ModelQuantization & { formulationNote: string; fusedSharedInput: number; createdAt: string } = {
      precision: 'int8',
      formulation: format,
      // Linear layers on one activation (attention's Q, K, V) written as one quantized MatMul + Split: how many groups.
      fusedSharedInput: fusedGroups,
      formulationNote: 'MatMul/Gemm weights int8, per output channel (MatMulNBits: per block of 32); activations and every other op float32',
      sourceKey: options.sourceKey,
      sourceRef: options.sourceRef,
      createdAt: new Date().toISOString(),
    };
    await writeFile(join(staging, QUANTIZATION_FILE), `${JSON.stringify(marker, null, 2)}\n`);
    // The written folder must read as a model of the same layout before it replaces anything.
    const check = await readModelDir(staging);
    if (check.layout !== spec.layout || check.vision.file !== spec.vision.file || check.text.file !== spec.text.file) {
      throw new ClipdexError('MODEL_INVALID', `the int8 folder reads as ${check.layout} (${check.vision.file}, ${check.text.file}), not as its source`);
    }
    await rm(out, { recursive: true, force: true });
    await mkdir(dirname(out), { recursive: true });
    await rename(staging, out);
    return { dir: out, format, towers: written, copied };
  } catch (err) {
    await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw err;
  }
}

async function listFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) found.push(relative(dir, p).split(sep).join('/'));
    }
  };
  await walk(dir);
  return found.sort();
}
