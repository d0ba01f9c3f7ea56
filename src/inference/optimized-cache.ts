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
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { arch, cpus, platform } from 'node:os';
import { basename, join, resolve } from 'node:path';

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

interface SourceStamp {
  path: string;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  dev: number;
}

interface EntryRecord {
  format: string;
  key: string;
  source: SourceStamp;
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
    private readonly source: SourceStamp,
    private readonly settings: GraphSettings,
    private readonly key: string,
  ) {}

  /** The cache's view of one model file; null when the file cannot be read (the open then reports it). */
  static async for(cacheDir: string, modelPath: string, settings: GraphSettings): Promise<OptimizedGraphCache | null> {
    let path: string;
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      // The file itself, not the way to it: a model reached through a link is the same model (and entry).
      path = await realpath(resolve(modelPath));
      st = await stat(path);
    } catch {
      return null;
    }
    const source: SourceStamp = { path, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, dev: st.dev };
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
    let record: EntryRecord;
    try {
      record = JSON.parse(await readFile(join(dir, ENTRY_FILE), 'utf8')) as EntryRecord;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      return this.reject(`its ${ENTRY_FILE} cannot be read (${(err as Error).message})`);
    }
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
    await mkdir(this.root, { recursive: true });
    const tmp = join(this.root, `.tmp-${this.key}-${randomBytes(4).toString('hex')}`);
    await mkdir(tmp);
    const discard = () => rm(tmp, { recursive: true, force: true }).then(() => undefined, () => undefined);
    return {
      graph: join(tmp, GRAPH_FILE),
      weightsName: WEIGHTS_FILE,
      discard,
      commit: async () => {
        try {
          const graphBytes = readFileSync(join(tmp, GRAPH_FILE));
          const weights = await stat(join(tmp, WEIGHTS_FILE)).catch(() => null);
          const record: EntryRecord = {
            format: FORMAT,
            key: this.key,
            source: this.source,
            settings: this.settings,
            graphBytes: graphBytes.length,
            graphSha256: createHash('sha256').update(graphBytes).digest('hex'),
            weightsBytes: weights?.size ?? 0,
          };
          await writeFile(join(tmp, ENTRY_FILE), JSON.stringify(record));
          // Another process may have written the same entry meanwhile: then its copy stays and this one goes.
          await rename(tmp, this.dir).catch(async (err: NodeJS.ErrnoException) => {
            if (err.code === 'ENOTEMPTY' || err.code === 'EEXIST' || err.code === 'EPERM') return discard();
            throw err;
          });
        } catch (err) {
          await discard();
          throw err;
        }
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
    let names: string[];
    try {
      names = await readdir(this.root);
    } catch {
      return;
    }
    const mine = basename(this.dir);
    for (const name of names) {
      if (name === mine) continue;
      const dir = join(this.root, name);
      if (name.startsWith('.tmp-')) {
        // Left by a process killed while writing; a day is far longer than any write.
        const st = await stat(dir).catch(() => null);
        if (st && Date.now() - st.mtimeMs > 86_400_000) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
        continue;
      }
      let record: EntryRecord | null = null;
      try {
        record = JSON.parse(await readFile(join(dir, ENTRY_FILE), 'utf8')) as EntryRecord;
      } catch {
        record = null;
      }
      const source = record?.source;
      const st = source ? await stat(source.path).catch(() => null) : null;
      const current = st !== null && st.size === source!.size && st.mtimeMs === source!.mtimeMs && st.ctimeMs === source!.ctimeMs && st.ino === source!.ino;
      // Another provider's entry of the same file stays (both may be used); an older runtime's does not.
      const outdated = source?.path === this.source.path && (!current || record!.settings?.runtimeVersion !== this.settings.runtimeVersion);
      if (!record || !current || outdated) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}
