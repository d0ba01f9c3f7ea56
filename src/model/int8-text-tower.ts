/**
 * The int8 text tower for queries (issue 19): the text tower file that would be opened (the model's own, or a
 * trained version's) quantized once with quantize-graph.ts (its default format) and kept in the model cache,
 * then opened instead of the fp32 file. Only queries go through a text tower: photos' vectors come from the
 * image tower, so nothing stored changes (same model key, same index, nothing re-encoded).
 *
 * Why: at one phrase, ViT-B/32's text tower is memory-bound on ~150 MB of fp32 layer weights read per query;
 * int8 weights are a quarter of that (BENCHMARKS.md, "int8 models" and "Cold start and the text query").
 *
 * An entry is a folder `<cacheDir>/int8-text/<key>/` holding `text_model.onnx` and `entry.json`. The key covers
 * what makes the file valid: the source file's stamp (real path, size, mtime, inode, device), the quantize format
 * and this module's format version. An entry is written in a temporary folder and renamed into place, so a
 * reader sees all of it or none; a later open reuses it without writing. A source that changed has another key:
 * its new entry is written and the old one removed. An entry whose file has another size than recorded, or that
 * ONNX Runtime cannot open, is discarded (the outcome says so) and written again. Where the cache cannot be
 * written (read-only, full, no cache dir given), the int8 file goes to a temporary file that is removed once the
 * session holds it: it works, and is quantized again at the next start. A tower that is quantized already (an
 * int8 model folder) is used as it is. The optimized-graph cache (inference/optimized-cache.ts) applies on top,
 * as for any tower file.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ClipdexError, errorMessage } from '../errors.js';
import { commitEntry, entryStaging, type FileStamp, readEntryRecord, removeStaleEntries, stampFile, stampIsCurrent } from '../util/file-keyed-cache.js';
import { QUANT_FORMAT_DEFAULT, quantizedOps, quantizeGraph } from './quantize-graph.js';
import type { TextPrecision } from './query-precision.js';

export const INT8_TEXT_CACHE_DIR = 'int8-text';
export const INT8_TEXT_FILE = 'text_model.onnx';
const ENTRY_FILE = 'entry.json';
/** Raised when what this module writes changes (the quantizer's output, the entry's layout): old entries then miss. */
const FORMAT = 'clipdex-int8-text-1';

interface EntryRecord {
  format: string;
  key: string;
  source: FileStamp;
  quantFormat: string;
  bytes: number;
  sha256: string;
  createdAt: string;
}

export interface Int8TextOptions {
  /** The model cache dir (`<cacheDir>/int8-text/…`); none: quantized into a temporary file at each open. */
  cacheDir?: string | undefined;
  /** The source is known to be quantized already (the model folder says int8): used as is, not read. */
  quantized?: boolean;
}

/**
 * Opens the int8 version of the text tower at `source` with `open` (called with the file to open, and whether
 * that file lasts, so the optimized-graph cache is asked only for a file that stays). Returns what `open` gave
 * and what became of the int8 file.
 */
export async function openInt8TextTower<T>(
  source: string,
  options: Int8TextOptions,
  open: (path: string, lasting: boolean) => Promise<T>,
): Promise<{ tower: T; precision: TextPrecision }> {
  if (options.quantized) return { tower: await open(source, true), precision: { precision: 'int8', source: 'model' } };
  // A missing file is the open's to report (MODEL_NOT_FOUND, in its words).
  if (!existsSync(source)) return { tower: await open(source, true), precision: { precision: 'fp32' } };
  const entry = options.cacheDir === undefined ? null : await Int8Entry.for(options.cacheDir, source);
  let discarded: string | undefined;
  if (entry) {
    const found = await entry.lookup();
    if (found === 'hit') {
      try {
        return { tower: await open(entry.file, true), precision: { precision: 'int8', source: 'query', state: 'hit', file: entry.file } };
      } catch (err) {
        await entry.remove();
        discarded = `the int8 text tower cached in ${entry.dir} was discarded: ONNX Runtime could not open it (${errorMessage(err)})`;
      }
    } else if (found) discarded = found.damaged;
  }
  const withDiscarded = discarded ? { discarded } : {};
  const bytes = new Uint8Array(await readFile(source));
  if (quantizedOps(bytes).length > 0) return { tower: await open(source, true), precision: { precision: 'int8', source: 'model' } };
  const quantized = quantize(bytes, source);
  let reason = 'no cache dir was given';
  if (entry) {
    const saved = await entry.write(quantized).then(
      () => null,
      (err: unknown) => errorMessage(err),
    );
    if (saved === null) {
      return { tower: await open(entry.file, true), precision: { precision: 'int8', source: 'query', state: 'written', file: entry.file, ...withDiscarded } };
    }
    reason = `the cache could not be written (${saved})`;
  }
  // Not kept: a temporary file, gone once the session holds the graph (the file is self-contained).
  const tmp = await mkdtemp(join(tmpdir(), 'clipdex-int8-text-'));
  try {
    const file = join(tmp, INT8_TEXT_FILE);
    await writeFile(file, quantized);
    return { tower: await open(file, false), precision: { precision: 'int8', source: 'query', state: 'unsaved', file: null, reason, ...withDiscarded } };
  } finally {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
  }
}

function quantize(bytes: Uint8Array, source: string): Uint8Array {
  let result: ReturnType<typeof quantizeGraph>;
  try {
    result = quantizeGraph(bytes, { format: QUANT_FORMAT_DEFAULT });
  } catch (err) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `cannot make an int8 text tower of ${source}: ${errorMessage(err)} (use query precision fp32)`, { cause: err });
  }
  if (result.weights === 0) {
    throw new ClipdexError('MODEL_UNSUPPORTED', `cannot make an int8 text tower of ${source}: it has no float32 MatMul or Gemm weight to quantize (use query precision fp32)`);
  }
  return result.bytes;
}

/** The cache's view of one source file's int8 entry. */
class Int8Entry {
  private constructor(
    private readonly root: string,
    private readonly source: FileStamp,
    private readonly key: string,
  ) {}

  static async for(cacheDir: string, sourcePath: string): Promise<Int8Entry> {
    // Not the ctime: hard-linking the base tower into a trained version's model folder moves it, and the int8
    // file of the same bytes need not be made again.
    const source = await stampFile(sourcePath, { ctime: false });
    const key = createHash('sha256').update(JSON.stringify({ format: FORMAT, quantFormat: QUANT_FORMAT_DEFAULT, source })).digest('hex').slice(0, 24);
    return new Int8Entry(join(resolve(cacheDir), INT8_TEXT_CACHE_DIR), source, key);
  }

  get dir(): string {
    return join(this.root, this.key);
  }

  get file(): string {
    return join(this.dir, INT8_TEXT_FILE);
  }

  /** 'hit' when a whole entry is there, null when none is, `{ damaged }` when one fails its checks (it is removed). */
  async lookup(): Promise<'hit' | { damaged: string } | null> {
    const read = await readEntryRecord<EntryRecord>(this.dir, ENTRY_FILE);
    if ('unreadable' in read) return this.reject(`its ${ENTRY_FILE} cannot be read (${read.unreadable})`);
    if ('missing' in read) {
      // Nothing there, or a folder that is no entry (removed, and written again).
      const there = await stat(this.dir).then(() => true, () => false);
      return there ? this.reject(`its ${ENTRY_FILE} is missing`) : null;
    }
    const record = read.record;
    if (record.format !== FORMAT || record.key !== this.key) return this.reject(`its ${ENTRY_FILE} describes another entry`);
    const size = await stat(this.file).then((s) => s.size, () => null);
    if (size === null) return this.reject(`${INT8_TEXT_FILE} is missing`);
    if (size !== record.bytes) return this.reject(`${INT8_TEXT_FILE} has ${size} bytes, not ${record.bytes}`);
    return 'hit';
  }

  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }

  private async reject(why: string): Promise<{ damaged: string }> {
    await this.remove();
    return { damaged: `the int8 text tower cached in ${this.dir} was discarded: ${why}` };
  }

  /** Writes the entry in a temporary folder and renames it into place; then removes the stale ones. */
  async write(bytes: Uint8Array): Promise<void> {
    const staging = await entryStaging(this.root, this.key);
    await commitEntry(staging, this.dir, ENTRY_FILE, async (): Promise<EntryRecord> => {
      await writeFile(join(staging.tmp, INT8_TEXT_FILE), bytes);
      return {
        format: FORMAT,
        key: this.key,
        source: this.source,
        quantFormat: QUANT_FORMAT_DEFAULT,
        bytes: bytes.length,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        createdAt: new Date().toISOString(),
      };
    });
    await this.removeStale();
  }

  /**
   * Entries of this source made before it changed, entries whose source changed or is gone, and folders that are
   * no entry: each holds a tower's int8 weights (tens of MB). A session still using one keeps what it read.
   */
  private async removeStale(): Promise<void> {
    await removeStaleEntries<EntryRecord>(this.root, this.key, ENTRY_FILE, async (record) => {
      const source = record.source;
      return !source || source.path === this.source.path || !(await stampIsCurrent(source));
    });
  }
}
