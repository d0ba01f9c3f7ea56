/**
 * ONNX Runtime's optimized graphs kept on disk, so that a tower opens without parsing, resolving and
 * optimising its whole model again.
 *
 * Why: for ViT-B/32's text tower (242 MB) most of a session's creation is not the optimisation itself but
 * reading the protobuf into memory (every weight copied out of the parse), then moving the weights into the
 * session (BENCHMARKS.md, "Cold start"). An optimized graph saved with its weights as external data is a
 * 50 kB graph and a weights file that ORT maps into memory instead of copying: opened with optimizations
 * off, the text tower took a quarter of the time and half the memory here, with the same outputs.
 *
 * An entry is a folder `<cacheDir>/ort-optimized/<name>-<key>/` holding `graph.onnx`, `weights.bin` and
 * `entry.json`. The key covers what makes a saved graph valid: the source file's stamp (path, size, mtime,
 * ctime, inode, device — the stamp model-key.ts trusts to skip re-hashing), the runtime's version, the
 * provider, the optimization level and the CPU (at level 'all' ORT may lay out a graph for this CPU's
 * instructions). An entry is written in a temporary folder and renamed into place, so a reader sees all
 * of it or none; entry.json, written last, records the files' sizes and the graph's SHA-256. The weights
 * are not hashed at each open (that is as long as a cold read of them): they are trusted as the model
 * files themselves are. An entry that fails these checks, or that ORT cannot open, is removed and written
 * again from the source model.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { arch, cpus, platform } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { commitEntry, entryStaging, type FileStamp, readEntryRecord, removeStaleEntries, stampFile, stampIsCurrent } from '../util/file-keyed-cache.js';

export const OPTIMIZED_CACHE_DIR = 'ort-optimized';
const FORMAT = 'clipdex-ort-optimized-1';
export const GRAPH_FILE = 'graph.onnx';
export const WEIGHTS_FILE = 'weights.bin';
const ENTRY_FILE = 'entry.json';

/** What the saved graph depends on besides the source file. */
export interface GraphSettings {
  runtimeVersion: string;
  provider: string;
  optimizationLevel: string;
}

interface EntryRecord {
  format: string;
  key: string;
  source: FileStamp;
  settings: GraphSettings;
  graphBytes: number;
  graphSha256: string;
  weightsBytes: number;
}

/** A usable entry: open `graph` with optimizations off. */
export interface CacheHit {
  graph: string;
  dir: string;
}

/** Where a new entry is being written: the session saves its graph to `graph`, then `commit` puts it in place. */
export interface PendingEntry {
  graph: string;
  weightsName: string;
  commit(): Promise<void>;
  discard(): Promise<void>;
}

function cpuName(): string {
  return `${platform()}/${arch()}/${cpus()[0]?.model?.trim() ?? 'unknown cpu'}`;
}

export class OptimizedGraphCache {
  private constructor(
    private readonly root: string,
    private readonly source: FileStamp,
    private readonly settings: GraphSettings,
    private readonly key: string,
  ) {}

  /** The cache's view of one model file; null when the file cannot be read (the open then reports it). */
  static async for(cacheDir: string, modelPath: string, settings: GraphSettings): Promise<OptimizedGraphCache | null> {
    let source: FileStamp;
    try {
      // ctime too: the stamp model-key.ts trusts to skip re-hashing.
      source = await stampFile(modelPath, { ctime: true });
    } catch {
      return null;
    }
    const key = createHash('sha256').update(JSON.stringify({ format: FORMAT, source, settings, cpu: cpuName() })).digest('hex').slice(0, 24);
    return new OptimizedGraphCache(join(resolve(cacheDir), OPTIMIZED_CACHE_DIR), source, settings, key);
  }

  /** The entry's folder: the model file's name for a person looking at the cache, the key for the rest. */
  get dir(): string {
    const name = basename(this.source.path).replace(/\.onnx$/i, '').replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 60);
    return join(this.root, `${name}-${this.key}`);
  }

  /**
   * The entry for this source, when it is whole: null when there is none (or it is stale: a changed source
   * has another key) and `{ damaged }` when one is there but fails its checks (it is removed).
   */
  async lookup(): Promise<CacheHit | { damaged: string } | null> {
    const dir = this.dir;
    const read = await readEntryRecord<EntryRecord>(dir, ENTRY_FILE);
    if ('missing' in read) return null;
    if ('unreadable' in read) return this.reject(`its ${ENTRY_FILE} cannot be read (${read.unreadable})`);
    const record = read.record;
    if (record.format !== FORMAT || record.key !== this.key) return this.reject(`its ${ENTRY_FILE} describes another entry`);
    try {
      const [graph, weights] = await Promise.all([stat(join(dir, GRAPH_FILE)), stat(join(dir, WEIGHTS_FILE)).catch(() => null)]);
      if (graph.size !== record.graphBytes) return this.reject(`${GRAPH_FILE} has ${graph.size} bytes, not ${record.graphBytes}`);
      if ((weights?.size ?? 0) !== record.weightsBytes) return this.reject(`${WEIGHTS_FILE} has ${weights?.size ?? 0} bytes, not ${record.weightsBytes}`);
      // The graph is small (kilobytes): hashing it is cheap, and a flipped byte there could change what runs.
      const sha = createHash('sha256').update(readFileSync(join(dir, GRAPH_FILE))).digest('hex');
      if (sha !== record.graphSha256) return this.reject(`${GRAPH_FILE} is not the one written`);
    } catch (err) {
      return this.reject(`it cannot be read (${(err as Error).message})`);
    }
    return { graph: join(dir, GRAPH_FILE), dir };
  }

  /** Removes this source's entry (after ORT failed to open it, or it failed a check). */
  async remove(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }

  private async reject(why: string): Promise<{ damaged: string }> {
    await this.remove();
    return { damaged: `the optimized graph cached in ${this.dir} was discarded: ${why}` };
  }

  /** A temporary folder for the session to save into; `commit` renames it into place. */
  async begin(): Promise<PendingEntry> {
    const staging = await entryStaging(this.root, this.key);
    return {
      graph: join(staging.tmp, GRAPH_FILE),
      weightsName: WEIGHTS_FILE,
      discard: staging.discard,
      commit: async () => {
        await commitEntry(staging, this.dir, ENTRY_FILE, async (): Promise<EntryRecord> => {
          const graphBytes = readFileSync(join(staging.tmp, GRAPH_FILE));
          const weights = await stat(join(staging.tmp, WEIGHTS_FILE)).catch(() => null);
          return {
            format: FORMAT,
            key: this.key,
            source: this.source,
            settings: this.settings,
            graphBytes: graphBytes.length,
            graphSha256: createHash('sha256').update(graphBytes).digest('hex'),
            weightsBytes: weights?.size ?? 0,
          };
        });
        await this.removeStale();
      },
    };
  }

  /**
   * Entries of a source file made before it changed or by an older runtime, entries whose source is gone and
   * folders that are no entry: each entry holds a copy of a tower's weights (hundreds of MB). A session still using one keeps its mapping (the files go
   * from the folder, not from memory); where the system refuses to remove a file in use, it stays until the
   * next write.
   */
  private async removeStale(): Promise<void> {
    await removeStaleEntries<EntryRecord>(this.root, basename(this.dir), ENTRY_FILE, async (record) => {
      const source = record.source;
      if (!source || !(await stampIsCurrent(source))) return true;
      // Another provider's entry of the same file stays (both may be used); an older runtime's does not.
      return source.path === this.source.path && record.settings?.runtimeVersion !== this.settings.runtimeVersion;
    });
  }
}
