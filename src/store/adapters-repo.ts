/**
 * Trained adapter versions per model. The weights are an opaque BLOB (their layout belongs to the
 * trainer); at most one version per model is active, which a partial unique index enforces.
 */
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipdexError } from '../errors.js';
import { dialectOf, type SqlHandle } from './sql-handle.js';


/**
 * A text-tuned version's own text tower: a file under `<dataDir>/versions/`, named by its whole-file
 * SHA-256, recorded in the version's metrics under `textTower` (no column: the schema's next numbers are
 * taken by other work, and the migration loader refuses gaps). The file is written (temporary file +
 * rename) before the row is inserted, so a row never lacks its file; a file without a row — a run killed
 * between the two — is removed when the library opens (`removeOrphanTowers`).
 */
export interface TextTowerRef {
  /** File name inside the versions folder. */
  file: string;
  sha256: string;
}

export const VERSIONS_DIR = 'versions';
/** A tower file without its version row younger than this may be one a run beside is about to record. */
export const ORPHAN_TOWER_AGE_MS = 10 * 60_000;

/** Under the versions folder: the model folders materialized for image-tuned and jointly tuned versions. */
export const MODEL_DIRS = 'models';

export function versionsDir(dataDir: string): string {
  return join(dataDir, VERSIONS_DIR);
}

export function towerFileName(sha256: string): string {
  return `text-${sha256}.onnx`;
}

/** An image-tuned version's tower file name (the merged vision tower, by its whole-file SHA-256). */
export function imageTowerFileName(sha256: string): string {
  return `image-${sha256}.onnx`;
}

/**
 * An image-tuned version's own image tower (metrics `imageTower`, kind 'image-blocks'), or null. Its photos'
 * vectors differ from the base model's: it is searched only after the library is re-encoded with it.
 */
export function imageTowerOf(record: Pick<AdapterRecord, 'metrics'>): TextTowerRef | null {
  const t = record.metrics.imageTower as Partial<TextTowerRef> | undefined;
  if (!t || typeof t.file !== 'string' || typeof t.sha256 !== 'string') return null;
  return { file: t.file, sha256: t.sha256 };
}

/** The version's tuned text tower, or null for an adapter-only version. */
export function textTowerOf(record: Pick<AdapterRecord, 'metrics'>): TextTowerRef | null {
  const t = record.metrics.textTower as Partial<TextTowerRef> | undefined;
  if (!t || typeof t.file !== 'string' || typeof t.sha256 !== 'string') return null;
  return { file: t.file, sha256: t.sha256 };
}

export interface AdapterRecord {
  id: number;
  modelKey: string;
  version: number;
  weights: Uint8Array;
  metrics: Record<string, unknown>;
  createdAt: number;
  active: boolean;
}

/** Listing without the weights, which can be megabytes. */
export type AdapterSummary = Omit<AdapterRecord, 'weights'>;

interface Row {
  id: number;
  modelKey: string;
  version: number;
  weights?: Buffer;
  metrics: string;
  createdAt: number;
  active: number;
}

const SUMMARY = 'id, model_key AS modelKey, version, metrics, created_at AS createdAt, active';

export class AdaptersRepo {
  private readonly addStmt;
  private readonly getStmt;
  private readonly listStmt;
  private readonly listAllStmt;
  private readonly activeStmt;
  private readonly clearActiveStmt;
  private readonly setActiveStmt;
  private readonly removeStmt;
  private readonly activeIdStmt;
  private readonly weightsStmt;
  private readonly towerFilesStmt;

  constructor(
    private readonly db: SqlHandle,
    private readonly now: () => number = Date.now,
  ) {
    // The version is chosen inside the INSERT, so two trainers saving at once cannot pick the same one.
    this.addStmt = db.prepare<[string, string, Buffer, string, number], { id: number }>(
      `INSERT INTO adapters (model_key, version, weights, metrics, created_at)
       VALUES (?, (SELECT coalesce(max(version), 0) + 1 FROM adapters WHERE model_key = ?), ?, ?, ?) RETURNING id`,
    );
    this.getStmt = db.prepare<[number], Row>(`SELECT ${SUMMARY}, weights FROM adapters WHERE id = ?`);
    this.listStmt = db.prepare<[string], Row>(`SELECT ${SUMMARY} FROM adapters WHERE model_key = ? ORDER BY version`);
    this.listAllStmt = db.prepare<[], Row>(`SELECT ${SUMMARY} FROM adapters ORDER BY id`);
    this.activeStmt = db.prepare<[string], Row>(`SELECT ${SUMMARY}, weights FROM adapters WHERE model_key = ? AND active = 1`);
    this.clearActiveStmt = db.prepare<[string]>('UPDATE adapters SET active = 0 WHERE model_key = ? AND active = 1');
    this.setActiveStmt = db.prepare<[number]>('UPDATE adapters SET active = 1 WHERE id = ?');
    this.removeStmt = db.prepare<[number]>('DELETE FROM adapters WHERE id = ?');
    this.activeIdStmt = db.prepare<[string], { id: number }>('SELECT id FROM adapters WHERE model_key = ? AND active = 1');
    this.weightsStmt = db.prepare<[number], { weights: Buffer }>('SELECT weights FROM adapters WHERE id = ?');
    const fileOf = (tower: string) => (dialectOf(db) === 'postgres' ? `metrics::jsonb #>> '{${tower},file}'` : `json_extract(metrics, '$.${tower}.file')`);
    const [textFile, imageFile] = [fileOf('textTower'), fileOf('imageTower')];
    this.towerFilesStmt = db.prepare<[], { file: string }>(
      `SELECT ${textFile} AS file FROM adapters WHERE ${textFile} IS NOT NULL UNION SELECT ${imageFile} AS file FROM adapters WHERE ${imageFile} IS NOT NULL`,
    );
  }

  /** The active version's id alone (one indexed row: cheap enough to ask on every photo written). */
  activeId(modelKey: string): number | undefined {
    return this.activeIdStmt.get(modelKey)?.id;
  }

  /** A version's weights alone. */
  weights(id: number): Buffer | undefined {
    return this.weightsStmt.get(id)?.weights;
  }

  /** Saves a new version (inactive); returns it. */
  add(modelKey: string, weights: Uint8Array, metrics: Record<string, unknown> = {}): AdapterRecord {
    const json = JSON.stringify(metrics);
    const buf = Buffer.from(weights.buffer, weights.byteOffset, weights.byteLength);
    const { id } = this.addStmt.get(modelKey, modelKey, buf, json, this.now())!;
    return this.get(id)!;
  }

  get(id: number): AdapterRecord | undefined {
    const row = this.getStmt.get(id);
    return row ? toRecord(row) : undefined;
  }

  list(modelKey: string): AdapterSummary[] {
    return this.listStmt.all(modelKey).map(toSummary);
  }

  /** Every version of every model, without weights. */
  listAll(): AdapterSummary[] {
    return this.listAllStmt.all().map(toSummary);
  }

  active(modelKey: string): AdapterRecord | undefined {
    const row = this.activeStmt.get(modelKey);
    return row ? toRecord(row) : undefined;
  }

  /** Makes this version the active one for its model, in one transaction with deactivating the previous. */
  activate(id: number): AdapterSummary {
    return this.db.transaction(() => {
      const row = this.getStmt.get(id);
      if (!row) throw new ClipdexError('INVALID_ARGUMENT', `no adapter with id ${id}`);
      this.clearActiveStmt.run(row.modelKey);
      this.setActiveStmt.run(id);
      return { ...toSummary(row), active: true };
    })();
  }

  /** Leaves the model without an active adapter (search uses the base model). */
  deactivate(modelKey: string): boolean {
    return this.clearActiveStmt.run(modelKey).changes > 0;
  }

  remove(id: number): boolean {
    return this.removeStmt.run(id).changes > 0;
  }

  /** Every tower file (text or image) some version (of any model) records. */
  towerFiles(): Set<string> {
    return new Set(this.towerFilesStmt.all().map((r) => r.file));
  }

  /**
   * Removes what killed training runs left in the versions folder: towers no version records and
   * unfinished temporary files. Only clipdex's own file names there are touched. Returns the names removed.
   */
  async removeOrphanTowers(dataDir: string): Promise<string[]> {
    const dir = versionsDir(dataDir);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return [];
    }
    const kept = this.towerFiles();
    const orphans = names.filter((n) => {
      const m = /^(?:text|image)-[0-9a-f]{64}\.onnx(?:\.partial-(\d+)-[0-9a-f]+)?$/.exec(n);
      // A temporary file of a live process is a tower being written now (a run beside this one).
      return m !== null && !kept.has(n) && !(m[1] !== undefined && alive(Number(m[1])));
    });
    // A finished tower waits a moment for its row: a run in another process renames it into place, then
    // commits the version. Only a file older than that moment's generous bound is an orphan of a killed run.
    const removed: string[] = [];
    for (const n of orphans) {
      if (await youngerThan(join(dir, n), ORPHAN_TOWER_AGE_MS)) continue;
      await rm(join(dir, n), { force: true });
      removed.push(n);
    }
    return [...removed, ...(await removeDeadStagingFolders(join(dir, MODEL_DIRS)))];
  }
}

function toSummary(row: Row): AdapterSummary {
  return {
    id: row.id,
    modelKey: row.modelKey,
    version: row.version,
    metrics: JSON.parse(row.metrics) as Record<string, unknown>,
    createdAt: row.createdAt,
    active: row.active === 1,
  };
}

function toRecord(row: Row): AdapterRecord {
  const weights = new Uint8Array(row.weights!.byteLength);
  weights.set(row.weights!);
  return { ...toSummary(row), weights };
}

/**
 * The staging folders (`<name>.partial-<pid>-<suffix>`) of model folders whose writer died: an activation
 * killed while it materialized a version's model folder (hundreds of MB each). A live writer's is left; a
 * name without a pid (written before the pid was part of it) only once it is older than the orphan bound.
 */
async function removeDeadStagingFolders(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const n of names) {
    const m = /\.partial-(?:(\d+)-)?[A-Za-z0-9]{6,8}$/.exec(n);
    if (!m) continue;
    if (m[1] !== undefined ? alive(Number(m[1])) : await youngerThan(join(dir, n), ORPHAN_TOWER_AGE_MS)) continue;
    await rm(join(dir, n), { recursive: true, force: true });
    removed.push(`${MODEL_DIRS}/${n}`);
  }
  return removed;
}

async function youngerThan(path: string, ms: number): Promise<boolean> {
  return stat(path).then(
    (st) => Date.now() - st.mtimeMs < ms,
    () => true,
  );
}

function alive(pid: number): boolean {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
