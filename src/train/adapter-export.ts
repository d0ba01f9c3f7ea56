/**
 * Writes a fine-tuned model as ordinary ONNX files: the base model directory copied, each tower's graph
 * with the adapter appended as one MatMul after its embedding output (the output keeps its name, so
 * clipdex — or anything that reads CLIP exports — loads it like any other model). Towers whose graph
 * already normalises its output get an LpNormalization after the MatMul, so that stays true.
 */
import { copyFileSync, existsSync, linkSync, readFileSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import onnxProto from 'onnx-proto';
import { ClipdexError, errorMessage } from '../errors.js';
import type { ModelSpec } from '../model/model-dir.js';
import type { TowerSpec } from '../model/manifest.js';
import type { AdapterWeights } from '../adapter/adapter-weights.js';

const { onnx } = onnxProto;

export interface ExportInfo {
  baseModel: string;
  baseKey: string;
  adapterVersion: number;
  blend: number;
  metrics: Record<string, unknown>;
}

/** A tuned version's own tower files (the stored bytes, weights already merged). */
export interface TunedTowers {
  text?: Uint8Array;
  image?: Uint8Array;
}

export interface ExportOptions {
  /**
   * Hard-link the files the export leaves unchanged (tokenizer, configs, a tower the version does not tune)
   * instead of copying them, where the file system allows: for the model folders clipdex materializes under
   * its own data directory, where a second copy of a 250–500 MB tower per activated version is only disk.
   * Safe because model files are only ever replaced by rename (downloads, builds), never rewritten in place.
   */
  link?: boolean;
}

/** The prefix of an export's staging folder: the writing process's pid, so a clean-up can tell a dead writer's. */
export function exportStagingPrefix(out: string): string {
  return `${out}.partial-${process.pid}-`;
}

/**
 * Writes `<outDir>` (which must not exist or be empty) and returns it. A text-tuned version gives its tuned
 * text tower (`tuned`, or `{ text }`: the stored file's bytes, weights already merged), an image-tuned one
 * its image tower (`{ image }`): each is written as it is, and the tower such a version locks is copied
 * unchanged (no adapter is appended to either: such versions' adapters are the identity).
 */
export async function exportAdaptedModel(spec: ModelSpec, weights: AdapterWeights, outDir: string, info: ExportInfo, tuned?: Uint8Array | TunedTowers, options: ExportOptions = {}): Promise<string> {
  const towersGiven: TunedTowers | null = tuned === undefined ? null : tuned instanceof Uint8Array ? { text: tuned } : tuned;
  const out = resolve(outDir);
  // Checked before any file system call: a NUL or an existing file would throw outside the error handling below.
  if (out.includes('\0')) throw new ClipdexError('INVALID_ARGUMENT', 'the export folder must not contain NUL characters');
  if (existsSync(out) && !statSync(out).isDirectory()) throw new ClipdexError('INVALID_ARGUMENT', `${out} exists and is not a folder; choose a new folder`);
  if (existsSync(out) && readdirSync(out).length > 0) throw new ClipdexError('INVALID_ARGUMENT', `${out} exists and is not empty; choose a new folder`);
  const towers = [spec.vision.file, spec.text.file].map((f) => resolve(spec.dir, f));
  let tmp: string | null = null;
  try {
    // A new, uniquely named sibling: the only folder this export ever removes is one it created itself.
    mkdirSync(dirname(out), { recursive: true });
    tmp = mkdtempSync(exportStagingPrefix(out));
    // Everything but the tower graphs (and their other precision variants, which would not carry the adapter).
    copyTree(spec.dir, tmp, (abs) => !towers.includes(abs) && !(abs.endsWith('.onnx') && towers.some((t) => dirname(t) === dirname(abs))), options.link === true);
    for (const [tower, w] of [
      [spec.vision, weights.image],
      [spec.text, weights.text],
    ] as const) {
      const given = towersGiven ? (tower === spec.text ? towersGiven.text : towersGiven.image) : undefined;
      mkdirSync(dirname(join(tmp, tower.file)), { recursive: true });
      if (towersGiven && !given) {
        // The tower this version locks: the base file as it is.
        copyFile(join(spec.dir, tower.file), join(tmp, tower.file), options.link === true);
        continue;
      }
      const bytes = given ?? appendAdapter(await readFile(join(spec.dir, tower.file)), tower, w, weights.dim);
      writeFileSync(join(tmp, tower.file), bytes);
    }
    writeFileSync(join(tmp, 'clipdex-adapter.json'), `${JSON.stringify({ ...info, exportedAt: new Date().toISOString() }, null, 2)}\n`);
    // The target was empty when the export began, but copying takes long (~600 MB for a real model) and
    // someone may have put files there meanwhile: rmdir removes only an empty folder, so they are kept.
    if (existsSync(out)) {
      try {
        rmdirSync(out);
      } catch (err) {
        throw new ClipdexError('INVALID_ARGUMENT', `${out} was written to while exporting; its files were left as they are. Export to a new folder.`, { cause: err });
      }
    }
    renameSync(tmp, out);
    return out;
  } catch (err) {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    if (err instanceof ClipdexError) throw err;
    throw new ClipdexError('MODEL_INVALID', `cannot export the adapted model to ${out}: ${errorMessage(err)}`, { cause: err });
  }
}

/** `src`'s files that `keep` accepts (absolute paths), under `dst`, linked or copied; folders made as needed. */
function copyTree(src: string, dst: string, keep: (abs: string) => boolean, link: boolean): void {
  mkdirSync(dst, { recursive: true });
  for (const name of readdirSync(src)) {
    const from = resolve(src, name);
    if (!keep(from)) continue;
    const to = join(dst, name);
    // Symbolic links followed (a hub cache's snapshot folder links into its blobs by relative paths,
    // which would dangle in another folder): the folder written holds the files themselves.
    if (statSync(from).isDirectory()) copyTree(from, to, keep, link);
    else copyFile(realpathSync(from), to, link);
  }
}

function copyFile(from: string, to: string, link: boolean): void {
  if (link) {
    try {
      linkSync(from, to);
      return;
    } catch {
      // Another file system, or one without hard links: a copy.
    }
  }
  copyFileSync(from, to);
}

/** The graph with `output ← MatMul(output_base, W)` (and LpNormalization when the tower normalises). */
export function appendAdapter(modelBytes: Uint8Array, tower: TowerSpec, w: Float32Array, dim: number): Uint8Array {
  const model = onnx.ModelProto.decode(modelBytes);
  const graph = model.graph;
  if (!graph) throw new ClipdexError('MODEL_INVALID', `${tower.file} has no graph`);
  graph.node ??= [];
  graph.initializer ??= [];
  const outputs = (graph.output ?? []).map((o) => o.name ?? '');
  const name = outputs.includes(tower.output) ? tower.output : (outputs.find((o) => /embed/i.test(o)) ?? (outputs.length === 1 ? outputs[0] : undefined));
  if (!name) throw new ClipdexError('MODEL_INVALID', `${tower.file} has no output named ${tower.output}`);
  const base = `${name}_clipdex_base`;
  for (const node of graph.node) {
    node.output = (node.output ?? []).map((o) => (o === name ? base : o));
    node.input = (node.input ?? []).map((i) => (i === name ? base : i));
  }
  const weightName = 'clipdex_adapter_weight';
  // ONNX raw data is little-endian, as is every platform Node's ORT runs on.
  const raw = new Uint8Array(w.buffer, w.byteOffset, w.byteLength).slice();
  graph.initializer.push(onnx.TensorProto.create({ name: weightName, dataType: 1, dims: [dim, dim], rawData: raw }));
  const projected = tower.normalized ? `${name}_clipdex_projected` : name;
  graph.node.push(onnx.NodeProto.create({ opType: 'MatMul', input: [base, weightName], output: [projected], name: 'clipdex_adapter' }));
  if (tower.normalized) {
    graph.node.push(
      onnx.NodeProto.create({
        opType: 'LpNormalization',
        input: [projected],
        output: [name],
        name: 'clipdex_adapter_normalize',
        attribute: [
          onnx.AttributeProto.create({ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 }),
          onnx.AttributeProto.create({ name: 'p', type: onnx.AttributeProto.AttributeType.INT, i: 2 }),
        ],
      }),
    );
  }
  model.producerName = `${model.producerName || 'unknown'}+clipdex-adapter`;
  return onnx.ModelProto.encode(model).finish();
}

/** A default export folder name under the data directory. */
export function defaultExportDir(dataDir: string, modelName: string, version: number): string {
  const safe = modelName.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 60);
  return join(dataDir, 'exports', `${safe}-adapter-v${version}`);
}

/**
 * A model folder's clipdex-adapter.json when it was materialized from an image-tuned or jointly tuned version
 * (activation of such a version): which base model and version it is. null for any other folder (or an unreadable file).
 */
export function derivedModelInfo(dir: string): ExportInfo | null {
  try {
    const info = JSON.parse(readFileSync(join(dir, 'clipdex-adapter.json'), 'utf8')) as Partial<ExportInfo>;
    if (typeof info.baseModel !== 'string' || typeof info.baseKey !== 'string' || typeof info.adapterVersion !== 'number') return null;
    const kind = (info.metrics as { kind?: unknown } | undefined)?.kind;
    // Folders of versions with their own image tower: image-tuned, or both towers tuned.
    if (kind !== 'image-blocks' && kind !== 'both-towers') return null;
    return info as ExportInfo;
  } catch {
    return null;
  }
}

/** A model reference as a person reads it: a version's materialized folder by the version it holds (and where it is), anything else as given. */
export function describeModelRef(ref: string): string {
  const derived = derivedModelInfo(ref);
  return derived ? `version ${derived.adapterVersion} of ${derived.baseModel} (${ref})` : ref;
}
