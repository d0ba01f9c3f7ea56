/** Opens a library's database wherever it is: a SQLite file, or a Postgres server. */
import { libraryPaths, openDatabase, type StoreDatabase, type StoreLocation } from './database.js';
import { ClipdexError } from '../errors.js';
import { isPostgresUrl, openPostgresDatabase } from './pg/pg-database.js';

export interface OpenStoreOptions {
  /** Opens without migrating or writing the schema (the index build worker); it must be current. */
  readonly?: boolean;
  /** Tests' own migrations folder (for Postgres: the folder of its dialect). */
  migrationsDir?: string;
}

export function openStore(location: StoreLocation, options: OpenStoreOptions = {}): StoreDatabase {
  const o = { ...(options.readonly ? { readonly: true } : {}), ...(options.migrationsDir ? { migrationsDir: options.migrationsDir } : {}) };
  return location.kind === 'postgres' ? openPostgresDatabase(location.url, o) : openDatabase(location.path, o);
}

/** The library's database: Postgres when a URL is given (only a postgres:// one is), else `<dataDir>/library.db`. */
export function libraryLocation(dataDir: string, databaseUrl?: string): StoreLocation {
  if (!databaseUrl) return { kind: 'sqlite', path: libraryPaths(dataDir).database };
  if (!isPostgresUrl(databaseUrl)) {
    throw new ClipdexError('INVALID_ARGUMENT', 'the database must be a postgres:// (or postgresql://) URL; without --db the library is a SQLite file in the data dir');
  }
  return { kind: 'postgres', url: databaseUrl };
}
