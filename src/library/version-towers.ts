/**
 * Where a version's trained text tower is, on this machine. A tower is a file under `<dataDir>/versions/`,
 * written by the machine that trained it; on a library in Postgres it is also stored in the database
 * (store/version-towers-repo.ts), so every other machine fetches it once into its own versions folder —
 * checked against the recorded SHA-256 before it is used — and searches with the version like the first.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipdexError } from '../errors.js';
import { type AdapterRecord, imageTowerOf, textTowerOf, type TextTowerRef, versionsDir } from '../store/adapters-repo.js';
import type { StoreDatabase } from '../store/database.js';
import { VersionTowersRepo } from '../store/version-towers-repo.js';

const isPostgres = (store: StoreDatabase) => store.location.kind === 'postgres';

/** On a library in Postgres, stores a tower just trained so other machines can use it; nothing on SQLite. */
export function shareTower(store: StoreDatabase, sha256: string, bytes: Uint8Array): void {
  if (isPostgres(store)) new VersionTowersRepo(store.db).put(sha256, bytes);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isFile(),
    () => false,
  );
}

/**
 * The path of the version's tower on this machine, fetched from the database first when the library is in
 * Postgres and this machine does not have it. Whether the file is the one trained is the caller's check
 * (the fetched one is checked here before it is put in place).
 */
export async function towerPath(store: StoreDatabase, dataDir: string, ref: TextTowerRef): Promise<string> {
  const path = join(versionsDir(dataDir), ref.file);
  if ((await exists(path)) || !isPostgres(store)) return path;
  const repo = new VersionTowersRepo(store.db);
  if (!repo.has(ref.sha256)) {
    throw new ClipdexError(
      'ADAPTER_INVALID',
      `the text tower of this version (${ref.file}) is neither on this machine nor in the database: it was trained before towers were shared; activate it on the machine that trained it`,
    );
  }
  await mkdir(versionsDir(dataDir), { recursive: true });
  const tmp = `${path}.partial-${process.pid}-${randomBytes(4).toString('hex')}`;
  const hash = createHash('sha256');
  try {
    const fh = await open(tmp, 'w');
    try {
      for (const part of repo.read(ref.sha256)) {
        hash.update(part);
        await fh.write(part);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    const sha = hash.digest('hex');
    if (sha !== ref.sha256) {
      throw new ClipdexError('ADAPTER_INVALID', `the text tower stored in the database for ${ref.file} is damaged (SHA-256 ${sha}, recorded ${ref.sha256})`);
    }
    await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
  return path;
}

/**
 * `clipdex migrate`: every tower the versions record goes with them — into the Postgres target's table from
 * this machine's files, or from the Postgres source's table into the new data dir (when not copied as a
 * file already). A tower that is missing or damaged is named in `missing` (its version stays, and says so
 * when activated); the copy goes on.
 */
export async function carryTowers(
  from: { store: StoreDatabase; dataDir: string },
  to: { store: StoreDatabase; dataDir: string },
  versions: readonly Pick<AdapterRecord, 'metrics'>[],
): Promise<{ carried: number; missing: string[] }> {
  let carried = 0;
  const missing: string[] = [];
  // Text- and image-tuned versions' towers alike (both live in the versions folder, named by SHA-256).
  for (const ref of versions.flatMap((v) => [textTowerOf(v), imageTowerOf(v)])) {
    if (!ref) continue;
    if (isPostgres(to.store)) {
      // Read once: checked against the recorded SHA-256, then stored.
      const bytes = await readFile(join(versionsDir(from.dataDir), ref.file)).catch(() => null);
      if (!bytes || createHash('sha256').update(bytes).digest('hex') !== ref.sha256) missing.push(ref.file);
      else if (new VersionTowersRepo(to.store.db).put(ref.sha256, bytes)) carried++;
    } else if (!(await exists(join(versionsDir(to.dataDir), ref.file))) && isPostgres(from.store)) {
      try {
        await towerPath(from.store, to.dataDir, ref);
        carried++;
      } catch (err) {
        if (!(err instanceof ClipdexError && err.code === 'ADAPTER_INVALID')) throw err;
        missing.push(ref.file);
      }
    }
  }
  return { carried, missing };
}
