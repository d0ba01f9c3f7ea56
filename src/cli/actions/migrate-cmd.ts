// What commands/migrate-cmd.ts does, loaded when it runs (see lazy.ts).
import { cp, mkdir, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ClipdexError } from '../../errors.js';
import { AdaptersRepo, VERSIONS_DIR } from '../../store/adapters-repo.js';
import { carryTowers } from '../../library/version-towers.js';
import { copyLibrary } from '../../store/library-copy.js';
import { libraryLocation, openStore } from '../../store/open-store.js';
import { isPostgresUrl } from '../../store/pg/pg-database.js';
import { globalOptions, log, printJson } from '../context.js';
import { createProgress } from '../progress.js';

async function isEmptyDir(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

export const actionMigrate = async (opts: { to: string }, cmd: Command) => {
  const g = globalOptions(cmd);
  const toPostgres = isPostgresUrl(opts.to);
  const targetDir = toPostgres ? null : resolve(opts.to);
  if (targetDir && !(await isEmptyDir(targetDir))) {
    throw new ClipdexError('INVALID_ARGUMENT', `${targetDir} is not empty; clipdex migrate --to <dir> writes a new library into an empty (or new) folder`);
  }
  const from = openStore(libraryLocation(g.dataDir, g.databaseUrl));
  try {
    if (toPostgres === (from.location.kind === 'postgres')) {
      throw new ClipdexError(
        'INVALID_ARGUMENT',
        toPostgres
          ? 'this library is already in Postgres; to copy it to another server, first migrate it to a data dir'
          : 'this library is a SQLite file already; --to <dir> copies a Postgres library (--db postgres://…) into a data dir',
      );
    }
    if (targetDir) await mkdir(targetDir, { recursive: true });
    const to = openStore(toPostgres ? { kind: 'postgres', url: opts.to } : libraryLocation(targetDir!));
    const progress = createProgress('Copying');
    try {
      const result = copyLibrary(from, to, (p) => progress.update(p.done, p.total, p.table));
      progress.stop();
      // Trained text towers are files beside the database; a new data dir gets them (and the thumbnails, so
      // the page shows photos at once). A Postgres target keeps using this machine's data dir for both.
      if (targetDir) {
        for (const sub of [VERSIONS_DIR, 'thumbnails']) {
          await cp(join(g.dataDir, sub), join(targetDir, sub), { recursive: true, errorOnExist: false }).catch((err: NodeJS.ErrnoException) => {
            if (err.code !== 'ENOENT') throw err;
          });
        }
      }
      // Towers this machine does not have as files come from the Postgres source; into Postgres they all go.
      const towers = await carryTowers({ store: from, dataDir: g.dataDir }, { store: to, dataDir: targetDir ?? g.dataDir }, new AdaptersRepo(to.db).listAll());
      for (const file of towers.missing) log(`clipdex: the text tower ${file} is missing or damaged here and was not carried; its version can be activated only where an intact copy is`);
      if (g.json) printJson({ from: from.path, to: to.path, rows: result.rows });
      else {
        const r = result.rows;
        log(
          `Copied ${r.images ?? 0} photos, ${r.embeddings ?? 0} vectors, ${r.labeled_pairs ?? 0} labels and ${r.adapters ?? 0} trained versions from ${from.path} to ${to.path}.`,
        );
        log(toPostgres ? `Use it with --db ${to.path} (or CLIPDEX_DATABASE_URL); the data dir ${g.dataDir} is unchanged.` : `Use it with --data-dir ${targetDir}.`);
      }
    } finally {
      progress.stop();
      to.close();
    }
  } finally {
    from.close();
  }
};
