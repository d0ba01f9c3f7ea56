/**
 * A Postgres connection with the synchronous API of better-sqlite3 (SqlHandle), so the repositories, the
 * transactions that group them and everything above run unchanged on either backend.
 *
 * Why synchronous: every layer of clipdex was built on SQLite, whose driver is synchronous (a statement is a
 * function call of a few microseconds), and its transactions are synchronous blocks. Making the store
 * asynchronous would mean an `await` at every one of several hundred call sites and transactions that other
 * requests interleave with; a sync bridge keeps one set of behaviours. The cost is that the calling thread
 * waits for each round trip (the bridge adds 0.08 ms to the driver's own 0.33 ms per point query against
 * PGlite: `npm run bench:scale`, BENCHMARKS.md);
 * the statement timeout bounds the longest wait. The vector search (pgvector, store/pg/pg-vector-repo.ts)
 * goes through here too: a few ms per query on the tests' PGlite (test/pg-vector-index.test.ts), during
 * which the event loop waits; moving the long queries to an asynchronous connection is the next step.
 *
 * How: a worker thread owns an asynchronous `pg` client; a call posts its request on a MessageChannel and
 * sleeps on a shared Int32 (Atomics.wait) until the worker has posted the reply and set it.
 */
import { MessageChannel, type MessagePort, receiveMessageOnPort, type Worker } from 'node:worker_threads';
import { ClipdexError } from '../../errors.js';
import { spawnWorker } from '../../util/spawn-worker.js';
import type { SqlHandle, SqlRunResult, SqlStatement, SqlTransaction } from '../sql-handle.js';
import { bindValues, type TranslatedSql, translateSql } from './pg-sql.js';
import type { PgReply, PgRequest, PgWorkerData } from './pg-sync-protocol.js';

export interface PgConnectOptions {
  /** How long connecting may take (default 10 s). */
  connectTimeoutMs?: number;
  /** The server cancels a statement running longer than this (default 30 s). */
  statementTimeoutMs?: number;
  /** Shown in pg_stat_activity (default "clipdex"). */
  applicationName?: string;
  /**
   * How long past the statement timeout a server that says nothing is waited for before the connection is
   * called unreachable (default 5 s): a server cancels a slow statement itself; silence means a dead link.
   */
  answerMarginMs?: number;
}

/** An error of the server for one statement: SQLSTATE in `code` (23505 unique violation, 57014 canceled…). */
export class PgStatementError extends Error {
  constructor(
    message: string,
    readonly code: string | null,
    readonly detail: string | null,
  ) {
    super(message);
    this.name = 'PgStatementError';
  }
}

/** SQLSTATE classes and socket errors that mean "no usable connection", not "this statement failed". */
function isConnectionFailure(code: string | null): boolean {
  if (!code) return true;
  return /^(08|28|3D|57P0[1-3])/.test(code) || /^E[A-Z]+$/.test(code);
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(an unparsable connection URL)';
  }
}

type Mode = 'deferred' | 'immediate';

/** How long the connection thread may take to start, beyond the connect timeout. */
const WORKER_START_MS = 30_000;

export class PgSyncConnection implements SqlHandle {
  readonly dialect = 'postgres' as const;
  private readonly flag: Int32Array;
  private seq = 0;
  private depth = 0;
  private closed = false;
  private noDeadline = false;
  private readonly translations = new Map<string, { sql: TranslatedSql; name: string }>();
  /**
   * Prepared statement names are per session, but a session may outlive this connection object or be shared
   * (a pooler in session mode, PGlite's single backend): a random prefix keeps two connections' names apart.
   */
  private readonly namePrefix = `clipdex_${Math.random().toString(36).slice(2, 10)}_`;

  private constructor(
    private readonly worker: Worker,
    private readonly port: MessagePort,
    flag: SharedArrayBuffer,
    private readonly url: string,
    private readonly waitMs: number,
  ) {
    this.flag = new Int32Array(flag);
  }

  /** Connects (synchronously, like opening a SQLite file); a server that cannot be reached is a clear error. */
  static open(url: string, options: PgConnectOptions = {}): PgSyncConnection {
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    const statementTimeoutMs = options.statementTimeoutMs ?? 30_000;
    const flag = new SharedArrayBuffer(4);
    const { port1, port2 } = new MessageChannel();
    const data: PgWorkerData & { port: MessagePort } = {
      flag,
      url,
      connectTimeoutMs,
      statementTimeoutMs,
      applicationName: options.applicationName ?? 'clipdex',
      port: port2,
    };
    const worker = spawnWorker(import.meta.url, 'pg-sync-worker', data, { code: 'DATABASE_UNREACHABLE', what: 'the Postgres connection thread' }, [port2]);
    worker.unref();
    // A statement may take as long as the server lets it run; past that (and a margin), silence means a dead link.
    const conn = new PgSyncConnection(worker, port1, flag, url, statementTimeoutMs + (options.answerMarginMs ?? 5_000));
    try {
      // The first answer also waits for the thread to start (loading the driver, seconds on a busy machine):
      // the driver's own connect timeout bounds the network part.
      conn.call({ id: 0, op: 'connect' }, connectTimeoutMs + WORKER_START_MS);
    } catch (err) {
      conn.close();
      throw err;
    }
    return conn;
  }

  /** Runs one statement (`$1…` parameters) and returns its rows. */
  query<R = Record<string, unknown>>(text: string, values: unknown[] = [], name?: string): { rows: R[]; rowCount: number } {
    const reply = this.call({ id: 0, op: 'query', text, values, ...(name ? { name } : {}) });
    return { rows: reply.rows.map(restoreBuffers) as R[], rowCount: reply.rowCount };
  }

  // biome-ignore lint/complexity/noBannedTypes: `{}` is better-sqlite3's own constraint for named parameters
  prepare<P extends unknown[] | {} = unknown[], R = unknown>(source: string): P extends unknown[] ? SqlStatement<P, R> : SqlStatement<[P], R> {
    let prepared = this.translations.get(source);
    if (!prepared) {
      prepared = { sql: translateSql(source), name: `${this.namePrefix}${this.translations.size + 1}` };
      this.translations.set(source, prepared);
    }
    const { sql, name } = prepared;
    const rows = (args: unknown[]) => this.query(sql.text, bindValues(sql, args), name);
    const statement: SqlStatement<unknown[], unknown> = {
      run: (...args): SqlRunResult => {
        const r = rows(args);
        const id = r.rows[0]?.id;
        return { changes: r.rowCount, lastInsertRowid: typeof id === 'number' ? id : 0 };
      },
      get: (...args) => rows(args).rows[0],
      all: (...args) => rows(args).rows,
      iterate: (...args) => rows(args).rows[Symbol.iterator](),
    };
    return statement as never;
  }

  /** Several statements separated by semicolons, no parameters (migrations). */
  exec(source: string): this {
    this.query(source);
    return this;
  }

  // biome-ignore lint/suspicious/noExplicitAny: the variance of SqlHandle's (better-sqlite3's) signature
  transaction<F extends (...params: any[]) => unknown>(fn: F): SqlTransaction<F> {
    const run =
      (mode: Mode) =>
      (...args: unknown[]): unknown =>
        this.inTransaction(mode, () => fn(...args));
    return Object.assign(run('deferred'), { deferred: run('deferred'), immediate: run('immediate') }) as unknown as SqlTransaction<F>;
  }

  /**
   * Runs `fn` without the bridge's deadline: for statements that take as long as they take (an HNSW index
   * built over a whole library), which also lift the server's statement timeout for their transaction.
   */
  unbounded<T>(fn: () => T): T {
    const previous = this.noDeadline;
    this.noDeadline = true;
    try {
      return fn();
    } finally {
      this.noDeadline = previous;
    }
  }

  /**
   * BEGIN…COMMIT, or a savepoint inside an outer transaction, as better-sqlite3 nests them. `immediate` has no
   * Postgres counterpart (there is no database-wide write lock): code that reads then writes rows other
   * connections may write takes row locks (`FOR UPDATE`) itself.
   */
  private inTransaction<T>(_mode: Mode, body: () => T): T {
    const savepoint = this.depth > 0 ? `clipdex_sp_${this.depth}` : null;
    this.query(savepoint ? `SAVEPOINT ${savepoint}` : 'BEGIN');
    this.depth++;
    let result: T;
    try {
      result = body();
      if (result && typeof (result as { then?: unknown }).then === 'function') {
        throw new TypeError('a transaction function cannot return a promise: the statements after its first await would run outside it');
      }
    } catch (err) {
      this.depth--;
      try {
        this.query(savepoint ? `ROLLBACK TO SAVEPOINT ${savepoint}` : 'ROLLBACK');
        if (savepoint) this.query(`RELEASE SAVEPOINT ${savepoint}`);
      } catch {
        // The connection itself failed: the server rolls the transaction back when the session ends.
      }
      throw err;
    }
    this.depth--;
    this.query(savepoint ? `RELEASE SAVEPOINT ${savepoint}` : 'COMMIT');
    return result;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.call({ id: 0, op: 'close' }, 5_000);
    } catch {
      // closing a connection that never opened or already dropped
    }
    this.port.close();
    void this.worker.terminate();
  }

  private call(request: PgRequest, waitMs = this.noDeadline ? Number.POSITIVE_INFINITY : this.waitMs): Extract<PgReply, { rows: unknown }> {
    if (this.closed && request.op !== 'close') throw new ClipdexError('DATABASE_UNREACHABLE', `the connection to ${redactUrl(this.url)} is closed`);
    const id = ++this.seq;
    Atomics.store(this.flag, 0, 0);
    this.port.postMessage({ ...request, id });
    const deadline = Date.now() + waitMs;
    for (;;) {
      for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) {
        const reply = m.message as PgReply;
        // A reply to a call that already timed out arrives late: it answers nothing now.
        if (reply.id !== id) continue;
        if (reply.error) throw this.failure(request, reply.error);
        return reply;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new ClipdexError('DATABASE_UNREACHABLE', `the Postgres server at ${redactUrl(this.url)} did not answer within ${Math.round(waitMs / 1000)} s`);
      }
      Atomics.wait(this.flag, 0, 0, left);
      Atomics.store(this.flag, 0, 0);
    }
  }

  private failure(request: PgRequest, error: { message: string; code: string | null; detail: string | null }): Error {
    if (request.op === 'connect' || isConnectionFailure(error.code)) {
      const what = error.code === '28P01' || error.code === '28000' ? 'refused the login' : error.code === '3D000' ? 'has no such database' : 'cannot be reached';
      return new ClipdexError('DATABASE_UNREACHABLE', `the Postgres server at ${redactUrl(this.url)} ${what}: ${error.message}${error.code ? ` (${error.code})` : ''}`, {
        details: { code: error.code },
      });
    }
    const text = request.op === 'query' ? request.text.replace(/\s+/g, ' ').slice(0, 200) : request.op;
    return new PgStatementError(`postgres: ${error.message}${error.detail ? ` (${error.detail})` : ''} in: ${text}`, error.code, error.detail);
  }
}

/** Structured clone turns a Buffer into a plain Uint8Array; the repositories expect Buffers, as from SQLite. */
function restoreBuffers(row: Record<string, unknown>): Record<string, unknown> {
  for (const key in row) {
    const v = row[key];
    if (v instanceof Uint8Array && !Buffer.isBuffer(v)) row[key] = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  }
  return row;
}
