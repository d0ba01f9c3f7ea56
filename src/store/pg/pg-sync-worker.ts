/**
 * The thread that talks to Postgres for a PgSyncConnection. The main thread posts one request on `port` and
 * sleeps on `flag` (Atomics.wait); this thread runs it with the asynchronous `pg` driver, posts the reply and
 * wakes it. One client, one request at a time, in order: exactly the semantics of the SQLite connection the
 * repositories were written for (see pg-sync-connection.ts for why the bridge is synchronous).
 */
import { type MessagePort, workerData } from 'node:worker_threads';
import pg from 'pg';
import type { PgReply, PgRequest, PgWorkerData } from './pg-sync-protocol.js';

const { port, flag, url, connectTimeoutMs, statementTimeoutMs, applicationName } = workerData as PgWorkerData & { port: MessagePort };
const wake = new Int32Array(flag);

// Values as SQLite returns them, which the repositories were written for: int8 (count(*), bigint ids and
// sizes) and numeric (a sum of bigints) as numbers — every such value clipdex stores is far below 2^53 — and
// booleans (`x IS NULL AS undated`) as 1 / 0, since SQLite has no boolean type.
const INT8 = 20;
const NUMERIC = 1700;
const BOOL = 16;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8 || oid === NUMERIC) return (v: string) => Number(v);
    if (oid === BOOL) return (v: string) => (v === 't' ? 1 : 0);
    return pg.types.getTypeParser(oid, format);
  }) as typeof pg.types.getTypeParser,
};

let client: pg.Client | null = null;
/** Set when the connection dropped: the next request says so instead of hanging on a dead socket. */
let lost: Error | null = null;

async function connect(): Promise<void> {
  lost = null;
  const c = new pg.Client({
    connectionString: url,
    connectionTimeoutMillis: connectTimeoutMs,
    statement_timeout: statementTimeoutMs,
    application_name: applicationName,
    types,
  });
  c.on('error', (err) => {
    lost = err;
  });
  await c.connect();
  client = c;
}

async function handle(req: PgRequest): Promise<PgReply> {
  switch (req.op) {
    case 'connect':
      await connect();
      return { id: req.id, rows: [], rowCount: 0 };
    case 'close':
      await client?.end().catch(() => undefined);
      client = null;
      return { id: req.id, rows: [], rowCount: 0 };
    case 'query': {
      if (lost) throw lost;
      if (!client) throw Object.assign(new Error('not connected'), { code: 'ENOTCONN' });
      const r = await client.query(req.name ? { name: req.name, text: req.text, values: req.values } : { text: req.text, values: req.values });
      // A multi-statement simple query answers with one result per statement; the last is the one asked for.
      const last = Array.isArray(r) ? (r[r.length - 1] as pg.QueryResult) : r;
      return { id: req.id, rows: last?.rows ?? [], rowCount: last?.rowCount ?? 0 };
    }
  }
}

function reply(message: PgReply): void {
  port.postMessage(message);
  Atomics.store(wake, 0, 1);
  Atomics.notify(wake, 0);
}

port.on('message', (req: PgRequest) => {
  handle(req).then(reply, (err: unknown) => {
    const e = err as { message?: string; code?: string; detail?: string; errno?: number };
    reply({ id: req.id, error: { message: e?.message ?? String(err), code: e?.code ?? null, detail: e?.detail ?? null } });
  });
});
