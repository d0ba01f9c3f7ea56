/**
 * The connection every repository is written against: the part of better-sqlite3's API they use, so that a
 * better-sqlite3 Database is one (the embedded backend) and a PgSyncConnection is the other (`--db
 * postgres://…`). Synchronous by design, as the repositories are; the Postgres side says why that holds up.
 */

// biome-ignore lint/suspicious/noExplicitAny: the same variance better-sqlite3's own Transaction type uses
type AnyFunction = (...params: any[]) => unknown;
type ArgumentTypes<F extends AnyFunction> = F extends (...args: infer A) => unknown ? A : never;

export interface SqlRunResult {
  changes: number;
  lastInsertRowid: number | bigint;
}

export interface SqlStatement<P extends unknown[] = unknown[], R = unknown> {
  run(...params: P): SqlRunResult;
  get(...params: P): R | undefined;
  all(...params: P): R[];
  iterate(...params: P): IterableIterator<R>;
}

export interface SqlTransaction<F extends AnyFunction> {
  (...params: ArgumentTypes<F>): ReturnType<F>;
  deferred(...params: ArgumentTypes<F>): ReturnType<F>;
  immediate(...params: ArgumentTypes<F>): ReturnType<F>;
}

export interface SqlHandle {
  // biome-ignore lint/complexity/noBannedTypes: `{}` is better-sqlite3's own constraint for named parameters
  prepare<P extends unknown[] | {} = unknown[], R = unknown>(source: string): P extends unknown[] ? SqlStatement<P, R> : SqlStatement<[P], R>;
  transaction<F extends AnyFunction>(fn: F): SqlTransaction<F>;
  exec(source: string): unknown;
}

export type SqlDialect = 'sqlite' | 'postgres';

/** Which SQL a handle speaks: a repository with a statement only one dialect has picks by this. */
export function dialectOf(db: SqlHandle): SqlDialect {
  return (db as { dialect?: SqlDialect }).dialect ?? 'sqlite';
}
