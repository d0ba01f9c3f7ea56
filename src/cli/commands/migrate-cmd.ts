import { Command } from 'commander';
import { lazyAction } from '../lazy.js';

/** `clipdex migrate --to <postgres://…|dir>`: the library, copied to the other backend without re-encoding. */
export function migrateCommand(): Command {
  return new Command('migrate')
    .requiredOption('--to <postgres-url|dir>', 'an empty Postgres database (postgres://user:password@host/db) or an empty data dir')
    .description('copy this library into Postgres + pgvector, or from Postgres back into a SQLite data dir, without re-encoding')
    .addHelpText(
      'after',
      '\nEvery photo keeps its id, its vectors, its labels and trained versions. From the data dir (default) to Postgres:\n' +
        '  clipdex migrate --to postgres://me:secret@db.lan/photos\n' +
        'then run every command with --db postgres://… (or CLIPDEX_DATABASE_URL). Back from Postgres to a new data dir:\n' +
        '  clipdex --db postgres://me:secret@db.lan/photos migrate --to ~/clipdex-data\n' +
        'The source is only read. The target must be empty; a failure leaves it as it was.',
    )
    .action(lazyAction(() => import('../actions/migrate-cmd.js'), 'actionMigrate'));
}
