// What the command of commands/worker-cmd.ts does, loaded when it runs (see lazy.ts); its options and help stay there.
import type { Command } from 'commander';
import { ClipdexError } from '../../errors.js';
import { EncodeWorker } from '../../ingest/encode-worker.js';
import type { IngestEvent } from '../../ingest/ingest-events.js';
import { PathMap, parsePathMapping } from '../../ingest/path-map.js';
import { Library } from '../../library/library.js';
import { IngestStore } from '../../ingest/ingest-store.js';
import { libraryLocation } from '../../store/open-store.js';
import { EXIT, globalOptions, libraryOptions, log, TOWERS_WHEN_USED } from '../context.js';
import { createProgress } from '../progress.js';

export const actionWorker = async (o: { pathMap: string[]; lease: string; exitWhenIdle?: boolean }, cmd: Command) => {
  const g = globalOptions(cmd);
  // Usage errors before the model loads (seconds) or the database is reached.
  const leaseSeconds = Number(o.lease);
  if (!Number.isFinite(leaseSeconds) || leaseSeconds < 5 || leaseSeconds > 86_400) {
    throw new ClipdexError('INVALID_ARGUMENT', `--lease takes seconds between 5 and 86400; got "${o.lease}"`);
  }
  const pathMap = new PathMap(o.pathMap.map(parsePathMapping));
  if (libraryLocation(g.dataDir, g.databaseUrl).kind !== 'postgres') {
    throw new ClipdexError(
      'INVALID_ARGUMENT',
      'clipdex worker encodes for a library in Postgres: give --db postgres://… (or CLIPDEX_DATABASE_URL). An embedded library is encoded by `clipdex index` or `clipdex serve`.',
    );
  }
  const lib = await Library.open({ ...libraryOptions(g), session: TOWERS_WHEN_USED });
  let worker: EncodeWorker | null = null;
  let stopping = false;
  const progress = g.json ? null : createProgress('Encoding');
  let stopped: () => void = () => {};
  const stopRequested = new Promise<void>((resolve) => {
    stopped = resolve;
  });
  const stop = () => {
    if (stopping) process.exit(EXIT.failure);
    stopping = true;
    log('\nclipdex: stopping after the photos in hand; the others go back to the queue (again to quit at once)');
    stopped();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    const started = Date.now();
    const queue = new IngestStore(lib.store.db);
    let pending = 0;
    let countedAt = 0;
    const onEvent = (e: IngestEvent) => {
      if (g.json) {
        // One line per photo recorded, for whatever drives the worker.
        if (e.type === 'indexed') process.stdout.write(`${JSON.stringify({ event: 'indexed', imageId: e.imageId, path: e.path, encoded: e.encoded })}\n`);
        else if (e.type === 'error') process.stdout.write(`${JSON.stringify({ event: 'error', imageId: e.imageId, path: e.path, code: e.code, message: e.message })}\n`);
        else if (e.type === 'notice' || e.type === 'failure') process.stdout.write(`${JSON.stringify({ event: e.type, code: e.code, message: e.message })}\n`);
        return;
      }
      if (e.type === 'notice' || e.type === 'failure') log(`clipdex: ${e.message}`);
      if (e.type === 'indexed' || e.type === 'error') {
        const s = worker?.status();
        // The queue's length, counted at most once a second: a count per photo would cost a large library dearly.
        if (Date.now() - countedAt >= 1000) {
          pending = queue.queueCount();
          countedAt = Date.now();
        }
        if (s) progress?.update(s.done, s.done + pending, `${s.errors} error${s.errors === 1 ? '' : 's'}`);
      }
    };
    worker = await EncodeWorker.start(lib, { leaseMs: leaseSeconds * 1000, pathMap, onEvent });
    if (!g.json) log(`clipdex: worker ${worker.claimant} encoding with ${lib.modelRef}; lease ${leaseSeconds} s`);
    await (o.exitWhenIdle ? Promise.race([worker.idle(), stopRequested]) : stopRequested);
    const s = worker.status();
    await worker.close();
    progress?.stop();
    const seconds = (Date.now() - started) / 1000;
    if (g.json) process.stdout.write(`${JSON.stringify({ event: 'done', ...s, seconds: Number(seconds.toFixed(2)) })}\n`);
    else process.stdout.write(`Worker done in ${seconds.toFixed(1)} s: ${s.encoded} encoded, ${s.done - s.encoded - s.errors} reused or moved, ${s.errors} failed.\n`);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    progress?.stop();
    await worker?.close();
    await lib.close();
  }
};
