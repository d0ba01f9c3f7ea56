/**
 * The embeddings of the queries users asked, per model key, so ef is tuned on queries like theirs
 * (issue 19): `<indexDir>/<key>/queries.log`, beside the graph it tunes, the last CAPACITY distinct ones.
 *
 * A file rather than a table: the graph files already live here, both store backends (SQLite and Postgres)
 * keep their HNSW graphs here, and nothing in the database needs to join on it.
 *
 * Crash safety, the same way as the graph files: records are fixed-size with a CRC of their own, so a
 * torn or garbled append is recognised and dropped (never misread); the file is only ever shrunk by
 * writing a compacted copy, fsyncing it and renaming it over the old one, so a crash leaves either the
 * old or the new file. Appends are not fsynced: losing the last few queries in a power cut costs nothing.
 *
 * Record: magic u32 | dim u32 | crc32 of the vector bytes u32 | dim × float32 (little-endian).
 */
import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { QUERY_LOG_FILE } from './index-files.js';
import { normalized } from './vector-index.js';

export { QUERY_LOG_FILE };

/** Distinct queries kept; the oldest go first. */
export const QUERY_LOG_CAPACITY = 512;
/** Logged queries needed before ef is tuned on them instead of synthetic ones. */
export const MIN_LOGGED_QUERIES = 100;

const MAGIC = 0x4c51_4443; // "CDQL"
const HEADER = 12;

export function queryLogPath(keyFolder: string): string {
  return join(keyFolder, QUERY_LOG_FILE);
}

/** The logged queries in a file, oldest first, distinct (a repeat counts at its latest position). Missing file: none. */
export function readQueryLog(path: string, dim: number): Float32Array[] {
  return parse(readOrEmpty(path), dim).vectors;
}

function readOrEmpty(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return Buffer.alloc(0);
    throw err;
  }
}

function parse(buf: Buffer, dim: number): { vectors: Float32Array[]; clean: boolean } {
  const size = HEADER + dim * 4;
  const byKey = new Map<string, Float32Array>();
  let clean = buf.length % size === 0;
  for (let at = 0; at + size <= buf.length; at += size) {
    const body = buf.subarray(at + HEADER, at + size);
    if (buf.readUInt32LE(at) !== MAGIC || buf.readUInt32LE(at + 4) !== dim || buf.readUInt32LE(at + 8) !== crc32(body)) {
      // A torn append, or a record of another dimension (the key's model changed): skipped, never misread.
      clean = false;
      continue;
    }
    const v = new Float32Array(dim);
    Buffer.from(v.buffer).set(body);
    const key = digest(body);
    byKey.delete(key);
    byKey.set(key, v);
  }
  return { vectors: [...byKey.values()], clean };
}

function digest(bytes: Uint8Array): string {
  return createHash('sha1').update(bytes).digest('base64');
}

function record(v: Float32Array): Buffer {
  const body = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  const out = Buffer.alloc(HEADER + body.length);
  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt32LE(v.length, 4);
  out.writeUInt32LE(crc32(body), 8);
  body.copy(out, HEADER);
  return out;
}

/** Writes `vectors` as the whole log: temp file, fsync, rename. */
function rewrite(path: string, vectors: readonly Float32Array[]): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    for (const v of vectors) writeSync(fd, record(v));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/**
 * The log of one key, held by the index manager. `note` is on the search path: a hash, a Set lookup and,
 * for a new query, one small append (2 KB at 512-d); the file is compacted when it holds twice CAPACITY
 * records. Failures (a full or read-only disk) are swallowed: tuning data is never worth failing a search.
 */
export class QueryLog {
  private readonly seen = new Set<string>();
  private records = 0;
  private distinct: number;

  private constructor(
    readonly path: string,
    readonly dim: number,
    readonly capacity: number,
    vectors: Float32Array[],
  ) {
    for (const v of vectors) this.seen.add(digest(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)));
    this.records = vectors.length;
    this.distinct = vectors.length;
  }

  /** Opens (and repairs: a torn tail or a stale record is dropped by rewriting the file) the log at `path`. */
  static open(path: string, dim: number, capacity = QUERY_LOG_CAPACITY): QueryLog {
    let vectors: Float32Array[] = [];
    try {
      const parsed = parse(readOrEmpty(path), dim);
      vectors = parsed.vectors.slice(-capacity);
      if (!parsed.clean || vectors.length < parsed.vectors.length) rewrite(path, vectors);
    } catch {
      vectors = [];
    }
    return new QueryLog(path, dim, capacity, vectors);
  }

  /** Distinct queries logged (at most `capacity` once compacted; approximate between compactions). */
  get size(): number {
    return Math.min(this.capacity, this.distinct);
  }

  /** Records a query's embedding (normalised); a query already in the log is not written again. True when written. */
  note(query: Float32Array): boolean {
    if (query.length !== this.dim) return false;
    const v = normalized(query);
    const key = digest(new Uint8Array(v.buffer));
    if (this.seen.has(key)) return false;
    try {
      appendFileSync(this.path, record(v));
      this.seen.add(key);
      this.records++;
      this.distinct++;
      if (this.records >= 2 * this.capacity) this.compact();
      return true;
    } catch {
      // Not worth failing a search over; the next query tries again.
      return false;
    }
  }

  /** Keeps only the newest `capacity` distinct queries. */
  compact(): void {
    const kept = parse(readOrEmpty(this.path), this.dim).vectors.slice(-this.capacity);
    rewrite(this.path, kept);
    this.seen.clear();
    for (const v of kept) this.seen.add(digest(new Uint8Array(v.buffer)));
    this.records = kept.length;
    this.distinct = kept.length;
  }
}
