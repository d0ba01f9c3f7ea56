#!/usr/bin/env node
/**
 * PGlite (PostgreSQL compiled to WASM, with pgvector and pg_trgm) served over the Postgres wire protocol to
 * many clients at once, for the tests and benchmarks.
 *
 * Why not `@electric-sql/pglite-socket`'s server: it queues every protocol message of every client on its
 * own, so two clients' extended-query messages (Parse, Bind, Execute, Sync) interleave in PGlite's single
 * session — `portal "" does not exist`, reproduced with four processes in seconds — and a message that fails
 * wedges its queue for good. Here a client's messages run as whole groups (everything up to a Sync or a
 * simple Query), one client's group at a time, and a client inside a transaction keeps the session until it
 * leaves it (or disconnects, which rolls it back). That is a real server's isolation for what clipdex does,
 * with PGlite's one backend.
 *
 * Usage: node pglite-wire-server.mjs [--port N] [--host H] [--data-dir DIR] [--from-template FILE | --save-template FILE]
 * Prints `listening on {"port":N,"host":H}` once it accepts connections.
 *
 * --save-template writes the fresh cluster (what initdb made, nothing else) to FILE before listening;
 * --from-template starts an in-memory cluster from such a file. initdb in WASM is most of a start (~8.5 s
 * of CPU against ~3 s from the file, measured under load), and the cluster it makes is the same each time.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { parseArgs } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm';
import { vector } from '@electric-sql/pglite-pgvector';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    'data-dir': { type: 'string' },
    'from-template': { type: 'string' },
    'save-template': { type: 'string' },
  },
});

const SSL_REQUEST = 80877103;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_3 = 196608;

const template = values['from-template'] ? { loadDataDir: new Blob([readFileSync(values['from-template'])]) } : {};
const db = new PGlite(values['data-dir'] ?? 'memory://', { extensions: { vector, pg_trgm }, ...template });
await db.waitReady;
if (values['save-template']) {
  // Renamed into place whole: a start beside this one reads the file only once it is complete.
  const partial = `${values['save-template']}.partial-${process.pid}`;
  writeFileSync(partial, Buffer.from(await (await db.dumpDataDir('none')).arrayBuffer()));
  renameSync(partial, values['save-template']);
}

/** The client whose group runs now, or whose transaction holds the session. */
let owner = null;
/** @type {{ client: object; resume: () => void }[]} */
const waiting = [];

function acquire(client) {
  if (owner === client) return Promise.resolve();
  if (owner === null) {
    owner = client;
    return Promise.resolve();
  }
  return new Promise((resume) => waiting.push({ client, resume }));
}

function release(client) {
  if (owner !== client) return;
  const next = waiting.shift();
  owner = next ? next.client : null;
  next?.resume();
}

async function runGroup(client, messages) {
  await acquire(client);
  try {
    for (const message of messages) {
      await db.execProtocolRawStream(message, {
        onRawData: (data) => {
          if (!client.socket.destroyed) client.socket.write(Buffer.from(data));
        },
      });
    }
  } finally {
    if (!db.isInTransaction() || client.closed) {
      if (client.closed && db.isInTransaction()) await db.exec('ROLLBACK').catch(() => undefined);
      release(client);
    }
  }
}

function serve(socket) {
  socket.setNoDelay(true);
  const client = { socket, closed: false };
  let buffer = Buffer.alloc(0);
  let started = false;
  let group = [];
  let chain = Promise.resolve();
  const enqueue = (messages) => {
    chain = chain.then(() => (client.closed ? undefined : runGroup(client, messages))).catch(() => socket.destroy());
  };

  socket.on('data', (chunk) => {
    buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
    for (;;) {
      if (!started) {
        // Untyped start-up packets: SSLRequest (answered "no"), CancelRequest (not supported), StartupMessage.
        if (buffer.length < 8) return;
        const length = buffer.readInt32BE(0);
        if (buffer.length < length) return;
        const code = buffer.readInt32BE(4);
        const packet = buffer.subarray(0, length);
        buffer = buffer.subarray(length);
        if (code === SSL_REQUEST) socket.write('N');
        else if (code === CANCEL_REQUEST) socket.end();
        else if (code === PROTOCOL_3) {
          started = true;
          enqueue([new Uint8Array(packet)]);
        } else socket.destroy();
        continue;
      }
      if (buffer.length < 5) return;
      const length = 1 + buffer.readInt32BE(1);
      if (buffer.length < length) return;
      const type = String.fromCharCode(buffer[0]);
      const message = new Uint8Array(buffer.subarray(0, length));
      buffer = buffer.subarray(length);
      if (type === 'X') {
        socket.end();
        return;
      }
      group.push(message);
      // Sync ends an extended-query group, Query is a group of its own; Flush asks for what is buffered.
      if (type === 'S' || type === 'Q' || type === 'H') {
        enqueue(group);
        group = [];
      }
    }
  });
  const close = () => {
    if (client.closed) return;
    client.closed = true;
    const queued = waiting.findIndex((w) => w.client === client);
    if (queued >= 0) waiting.splice(queued, 1);
    // Holding the session in a transaction: roll it back and let the next client in.
    chain = chain.then(async () => {
      if (owner === client) {
        if (db.isInTransaction()) await db.exec('ROLLBACK').catch(() => undefined);
        release(client);
      }
    });
  };
  socket.on('close', close);
  socket.on('error', close);
}

const server = createServer(serve);
server.listen(Number(values.port), values.host, () => {
  const { port } = server.address();
  console.log(`listening on ${JSON.stringify({ port, host: values.host })}`);
});

const stop = () => {
  server.close();
  db.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 3000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
