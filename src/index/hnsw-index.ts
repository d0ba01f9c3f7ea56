/**
 * HNSW engine: hnswlib-node behind the VectorIndex interface, plus what hnswlib does not track itself
 * (which labels are deleted, the ef to search with) and the checks that keep a bad file away from it.
 *
 * Space 'cosine': hnswlib implements it as inner product on vectors it normalises itself, so scores are
 * true cosines even for a caller's unnormalised query. Measured on 20k 512-d vectors, 'cosine' and 'ip'
 * build and search at the same speed (within noise) with the same recall; the extra O(d) normalisation is
 * lost in the graph walk.
 */
import { open, stat } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import type { HierarchicalNSW } from 'hnswlib-node';
import { ClipdexError, errorMessage } from '../errors.js';
import { hnswlib, hnswlibBuild } from './hnswlib-binding.js';
import { LabelSet } from './label-set.js';
import { checkK, checkLabel, checkQuery, type EngineSearchOptions, type SearchHit, type VectorIndex } from './vector-index.js';

export interface HnswParams {
  /** Graph degree. 16 is hnswlib's usual default; recall is then tuned through ef. */
  M: number;
  /** Build-time candidate list. 100 builds ~1.8× faster than 200 here; the ef tuning restores recall. */
  efConstruction: number;
  seed: number;
}

export const DEFAULT_HNSW_PARAMS: HnswParams = { M: 16, efConstruction: 100, seed: 100 };

/**
 * A vector as the addon takes it: clipdex's build reads a Float32Array in one copy; the stock build wants
 * number[] (its typings say so too, hence the cast).
 */
const asInput: (v: Float32Array) => number[] = hnswlibBuild.float32Input ? (v) => v as unknown as number[] : (v) => Array.from(v);

export class HnswIndex implements VectorIndex {
  readonly engine = 'hnsw' as const;
  /** Labels ever added and not marked deleted. */
  private readonly live: LabelSet;
  private readonly deleted: LabelSet;
  /** The ef searches use (hnswlib does not save it; the index state file does). */
  ef = 64;

  private constructor(
    private readonly raw: HierarchicalNSW,
    readonly dim: number,
    live: LabelSet,
    deleted: LabelSet,
  ) {
    this.live = live;
    this.deleted = deleted;
  }

  static create(dim: number, capacity: number, params: HnswParams = DEFAULT_HNSW_PARAMS): HnswIndex {
    const raw = new hnswlib.HierarchicalNSW('cosine', dim);
    raw.initIndex({ maxElements: Math.max(16, capacity), m: params.M, efConstruction: params.efConstruction, randomSeed: params.seed });
    return new HnswIndex(raw, dim, new LabelSet(), new LabelSet());
  }

  /**
   * Loads a file as it is (a library opens through `loadVerified`, which checks it first). `deletedLabels`
   * comes from the state file: hnswlib keeps deletion marks in the file but offers no way to read them back.
   */
  static async load(path: string, dim: number, deletedLabels: readonly number[]): Promise<HnswIndex> {
    const raw = await HnswIndex.readRaw(path, dim);
    return HnswIndex.fromRaw(raw, dim, raw.getIdsList(), deletedLabels);
  }

  private static async readRaw(path: string, dim: number): Promise<HierarchicalNSW> {
    const raw = new hnswlib.HierarchicalNSW('cosine', dim);
    try {
      await raw.readIndex(path); // runs on libuv's thread pool: the event loop keeps serving
    } catch (err) {
      throw new ClipdexError('INDEX_BUILD_FAILED', `cannot load HNSW index ${path}: ${errorMessage(err)}`, { cause: err });
    }
    if (raw.getNumDimensions() !== dim) {
      throw new ClipdexError('DIMENSION_MISMATCH', `HNSW index ${path} has ${raw.getNumDimensions()} dimensions, expected ${dim}`);
    }
    return raw;
  }

  private static fromRaw(raw: HierarchicalNSW, dim: number, labels: Iterable<number>, deletedLabels: readonly number[]): HnswIndex {
    const deleted = new LabelSet(deletedLabels);
    const live = new LabelSet();
    for (const id of labels) if (!deleted.has(id)) live.add(id);
    return new HnswIndex(raw, dim, live, deleted);
  }

  /**
   * Loads a saved graph only if it passes every check: size and header against what the state file says
   * (dimension, element count, M) before hnswlib sees the file, then the checksum of the whole file. The
   * checksum pass runs while hnswlib loads (one read each, on two threads, so an open costs the longer of
   * the two rather than their sum) and collects every element's label on the way (hnswlib's getIdsList
   * would be another 0.1–0.4 s at 1M). Loading before the checksum is known is safe because hnswlib's
   * loader only copies bytes and checks sizes: a corrupt graph does harm only when searched, and a graph
   * whose checksum fails is dropped unsearched. Returns the index, or the reason it must not be used.
   */
  static async loadVerified(path: string, expected: ExpectedFile, deletedLabels: readonly number[]): Promise<HnswIndex | { problem: string }> {
    const shape = await checkHnswFileShape(path, expected);
    if ('problem' in shape) return shape;
    const labels = new LabelCollector(shape.header);
    const [loaded, checksum] = await Promise.allSettled([HnswIndex.readRaw(path, expected.dim), fileCrc32(path, (chunk, at) => labels.take(chunk, at))]);
    if (checksum.status === 'rejected') return { problem: `index file unreadable (${errorMessage(checksum.reason)})` };
    if (checksum.value.crc32 !== expected.crc32) {
      return { problem: `index file checksum ${checksum.value.crc32.toString(16)} does not match ${expected.crc32.toString(16)} (corrupt)` };
    }
    if (loaded.status === 'rejected') return { problem: errorMessage(loaded.reason) };
    return HnswIndex.fromRaw(loaded.value, expected.dim, labels.labels, deletedLabels);
  }

  get size(): number {
    return this.live.size;
  }

  /** Labels stored in the graph, deleted ones included (they still cost memory and search time). */
  get labelCount(): number {
    return this.raw.getCurrentCount();
  }

  get deletedCount(): number {
    return this.deleted.size;
  }

  get capacity(): number {
    return this.raw.getMaxElements();
  }

  has(id: number): boolean {
    return this.live.has(id);
  }

  deletedLabels(): number[] {
    return this.deleted.toArray();
  }

  liveLabels(): IterableIterator<number> {
    return this.live[Symbol.iterator]();
  }

  /**
   * Adds or replaces (hnswlib updates a known label in place and clears its deletion mark).
   * Synchronous and ~1 ms at 512-d: bulk work belongs in the build worker.
   */
  add(id: number, vector: Float32Array): void {
    checkLabel(id);
    if (vector.length !== this.dim) throw new ClipdexError('DIMENSION_MISMATCH', `vector has ${vector.length} dimensions, the index holds ${this.dim}`);
    const known = this.live.has(id) || this.deleted.has(id);
    if (!known && this.raw.getCurrentCount() >= this.raw.getMaxElements()) {
      this.raw.resizeIndex(Math.ceil(this.raw.getMaxElements() * 1.5) + 16);
    }
    this.raw.addPoint(asInput(vector), id);
    this.deleted.delete(id);
    this.live.add(id);
  }

  remove(id: number): boolean {
    if (!this.live.has(id)) return false;
    this.raw.markDelete(id);
    this.live.delete(id);
    this.deleted.add(id);
    return true;
  }

  /** The stored (normalised) vector. */
  vector(id: number): Float32Array | undefined {
    if (!this.live.has(id)) return undefined;
    return Float32Array.from(this.raw.getPoint(id));
  }

  async search(query: Float32Array, k: number, options: EngineSearchOptions = {}): Promise<SearchHit[]> {
    return this.searchSync(query, k, options);
  }

  /** hnswlib searches synchronously (well under a millisecond at the tuned ef). */
  searchSync(query: Float32Array, k: number, options: EngineSearchOptions = {}): SearchHit[] {
    checkK(k);
    checkQuery(query, this.dim);
    const n = Math.min(k, this.live.size);
    if (n === 0) return [];
    this.raw.setEf(Math.max(options.ef ?? this.ef, n));
    const input = asInput(query);
    const result = options.filter ? this.raw.searchKnn(input, n, options.filter) : this.raw.searchKnn(input, n);
    const hits: SearchHit[] = [];
    for (let i = 0; i < result.neighbors.length; i++) hits.push({ id: result.neighbors[i]!, score: 1 - result.distances[i]! });
    return hits;
  }

  /** Writes the graph to `path` (hnswlib's own format; the caller makes it atomic). */
  async write(path: string): Promise<void> {
    try {
      await this.raw.writeIndex(path);
    } catch (err) {
      throw new ClipdexError('INDEX_BUILD_FAILED', `cannot write HNSW index ${path}: ${errorMessage(err)}`, { cause: err });
    }
  }
}

/** hnswlib's file header (x86-64 / aarch64 layout: size_t = 8, int = 4). */
export interface HnswHeader {
  maxElements: number;
  count: number;
  sizePerElement: number;
  labelOffset: number;
  dim: number;
  M: number;
  maxM0: number;
  maxLevel: number;
}

const HEADER_BYTES = 96;

/**
 * Reads and sanity-checks hnswlib's header: hnswlib trusts these numbers blindly, and a bad one can make
 * it read or allocate wildly and crash the process instead of throwing. Null with a reason when bad.
 */
export function parseHnswHeader(buf: Buffer, fileBytes: number): { header: HnswHeader } | { problem: string } {
  if (buf.byteLength < HEADER_BYTES) return { problem: `file is ${buf.byteLength} bytes, shorter than the ${HEADER_BYTES}-byte header` };
  const u64 = (o: number) => Number(buf.readBigUInt64LE(o));
  const offsetLevel0 = u64(0);
  const maxElements = u64(8);
  const count = u64(16);
  const sizePerElement = u64(24);
  const labelOffset = u64(32);
  const offsetData = u64(40);
  const maxLevel = buf.readInt32LE(48);
  const enterPoint = buf.readUInt32LE(52);
  const maxM = u64(56);
  const maxM0 = u64(64);
  const M = u64(72);
  const dim = (labelOffset - offsetData) / 4;
  if (offsetLevel0 !== 0) return { problem: 'header offset is not 0' };
  if (M < 2 || M > 4096 || maxM !== M || maxM0 !== 2 * M) return { problem: `implausible M=${M} maxM=${maxM} maxM0=${maxM0}` };
  if (offsetData !== maxM0 * 4 + 4) return { problem: 'data offset does not match M' };
  if (!Number.isInteger(dim) || dim <= 0) return { problem: 'implausible dimension' };
  if (sizePerElement !== labelOffset + 8) return { problem: 'element size does not match the dimension' };
  if (count > maxElements) return { problem: `element count ${count} exceeds capacity ${maxElements}` };
  // An empty graph has level -1 and no entry point.
  if (maxLevel < (count === 0 ? -1 : 0) || maxLevel > 64) return { problem: `implausible level ${maxLevel}` };
  if (count > 0 && enterPoint >= count) return { problem: 'entry point out of range' };
  const minimum = HEADER_BYTES + count * sizePerElement + count * 4;
  if (fileBytes < minimum) return { problem: `file is ${fileBytes} bytes, at least ${minimum} expected for ${count} elements` };
  return { header: { maxElements, count, sizePerElement, labelOffset, dim, M, maxM0, maxLevel } };
}

/** CRC-32 of a whole file, read in chunks (zlib.crc32: ~3.6 GB/s here); `onChunk` sees each chunk too. */
export async function fileCrc32(path: string, onChunk?: (chunk: Buffer, at: number) => void, chunkBytes = 8 << 20): Promise<{ crc32: number; bytes: number }> {
  const fh = await open(path, 'r');
  try {
    const chunk = Buffer.allocUnsafe(chunkBytes);
    let crc = 0;
    let bytes = 0;
    for (;;) {
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      crc = crc32(chunk.subarray(0, bytesRead), crc);
      onChunk?.(chunk.subarray(0, bytesRead), bytes);
      bytes += bytesRead;
    }
    return { crc32: crc, bytes };
  } finally {
    await fh.close();
  }
}

export interface ExpectedFile {
  bytes: number;
  crc32: number;
  dim: number;
  labels: number;
  M: number;
}

/** Size and header against the state file: the header, or the reason the file must not be loaded. */
async function checkHnswFileShape(path: string, expected: ExpectedFile): Promise<{ header: HnswHeader } | { problem: string }> {
  const problem = (text: string) => ({ problem: text });
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    return problem(`index file missing (${errorMessage(err)})`);
  }
  if (size !== expected.bytes) return problem(`index file is ${size} bytes, ${expected.bytes} expected (truncated or replaced)`);
  const fh = await open(path, 'r');
  let head: Buffer;
  try {
    head = Buffer.alloc(HEADER_BYTES);
    await fh.read(head, 0, HEADER_BYTES, 0);
  } finally {
    await fh.close();
  }
  const parsed = parseHnswHeader(head, size);
  if ('problem' in parsed) return problem(`index file header: ${parsed.problem}`);
  const h = parsed.header;
  if (h.dim !== expected.dim) return problem(`index file has dimension ${h.dim}, ${expected.dim} expected`);
  if (h.count !== expected.labels) return problem(`index file has ${h.count} elements, ${expected.labels} expected`);
  if (h.M !== expected.M) return problem(`index file has M=${h.M}, ${expected.M} expected`);
  return parsed;
}

/**
 * Every element's label, picked out of the file as it streams past (hnswlib's layout: a 96-byte header,
 * then per element its level-0 links, vector and 8-byte label, \`sizePerElement\` bytes in all).
 */
export class LabelCollector {
  readonly labels: Float64Array;
  private next = 0;
  /** Bytes of a label cut by a chunk boundary. */
  private readonly pending = Buffer.alloc(8);
  private have = 0;

  constructor(private readonly header: Pick<HnswHeader, 'count' | 'sizePerElement' | 'labelOffset'>) {
    this.labels = new Float64Array(header.count);
  }

  /** Feeds the file's bytes [at, at + chunk.length), in order. */
  take(chunk: Buffer, at: number): void {
    const { count, sizePerElement, labelOffset } = this.header;
    const end = at + chunk.length;
    while (this.next < count) {
      const pos = HEADER_BYTES + this.next * sizePerElement + labelOffset;
      if (this.have === 0 && pos >= at && pos + 8 <= end) {
        const o = pos - at;
        this.labels[this.next++] = chunk.readUInt32LE(o) + chunk.readUInt32LE(o + 4) * 2 ** 32;
        continue;
      }
      const from = Math.max(pos + this.have, at);
      if (from >= end) return;
      const n = Math.min(8 - this.have, end - from);
      chunk.copy(this.pending, this.have, from - at, from - at + n);
      this.have += n;
      if (this.have < 8) return;
      this.labels[this.next++] = this.pending.readUInt32LE(0) + this.pending.readUInt32LE(4) * 2 ** 32;
      this.have = 0;
    }
  }
}
