// What the commands of commands/serve.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ClipdexError, errorMessage } from '../../errors.js';
import { libraryLocation } from '../../store/open-store.js';
import { ThreadImageEncoder } from '../../ingest/encoder-thread.js';
import { Library } from '../../library/library.js';
import { requireFolders } from '../../ingest/folder-check.js';
import { globalOptions, log, libraryOptions } from '../context.js';
import { indexBuildLog } from '../index-build-log.js';
import { publishServer } from '../server-client.js';
import { startupMark } from '../../util/startup-trace.js';
import { type QueryPrecision, resolveQueryPrecision, type TextPrecision } from '../../model/query-precision.js';

export const actionServe = async (o: { port: number; host: string; root?: string[]; allowedHost?: string[]; encode: boolean; queryPrecision?: QueryPrecision }, cmd: Command) => {
  startupMark('serve action loaded');
  const g = globalOptions(cmd);
  // Settled before the library opens: a bad value is a usage error, not a model that failed to load.
  const queryPrecision = resolveQueryPrecision(o.queryPrecision);
  if (!o.encode && libraryLocation(g.dataDir, g.databaseUrl).kind !== 'postgres') {
    // Nothing would ever encode the photos of an embedded library: no worker can reach it.
    throw new ClipdexError('INVALID_ARGUMENT', '--no-encode leaves encoding to `clipdex worker`, which needs a library in Postgres (--db postgres://…)');
  }
  // A folder that is not there (or is a file) is a usage error now, before the library opens or the
  // server listens: otherwise the server would run on with indexing that never starts.
  await requireFolders(o.root ?? [], '--root: ');
  // The server starts without a model too: the page and `status` then say what is missing.
  // Background index failures (a build or a save that failed, a discarded index) reach the log, not only status.
  const opening = Library.open({
    ...libraryOptions(g),
    modelOptional: true,
    // Each tower once, off the main thread: the text tower on a thread of its own, so a query's encoding
    // never holds up other requests (CLIPDEX_TEXT_THREAD=off keeps it on the main thread: the benchmark's
    // comparison, and a way out should a platform's runtime misbehave in workers); the image tower on the
    // encoder thread, which the ingest engine encodes photos with and image queries use too. A text search
    // needs the text tower, the index and the database only: the image tower opens once the server listens
    // (below), so the first answer does not wait for its hundreds of MB, nor share the CPU with them.
    session: {
      textThread: process.env.CLIPDEX_TEXT_THREAD !== 'off',
      lazyImageTower: true,
      openImageTower: (spec, session) => ThreadImageEncoder.open(spec, { session }),
      // int8: the text tower's int8 version, made once in the cache dir on the text thread (int8-text-tower.ts).
      queryPrecision,
    },
    onIndexProgress: indexBuildLog(log),
    onIndexError: (err) => log(`clipdex: ${errorMessage(err)}`),
  });
  // The server, the ingest engine and what they import (express, the API schemas, chokidar, sharp: a second
  // or so of this thread at start) load while the text tower opens on its thread, not before it starts.
  const [{ IngestEngine }, { ModelSwitcher }, { LateIngest }, { startServer }] = await Promise.all([
    import('../../ingest/ingest-engine.js'),
    import('../../ingest/model-switch.js'),
    import('../../server/late-ingest.js'),
    import('../../server/server.js'),
    opening.catch(() => undefined), // awaited below, with its error
  ]);
  const library = await opening;
  startupMark('library open');
  if (library.notice) log(`clipdex: ${library.notice}`);
  const textCache = library.loaded?.model.textTowerOpen ? library.loaded.model.text.graphCache : undefined;
  if (textCache && 'discarded' in textCache && textCache.discarded) log(`clipdex: ${textCache.discarded}; written again`);
  const textPrecision = library.loaded?.model.textPrecision;
  if (textPrecision) logTextPrecision(textPrecision);
  // A model switch recorded by `models use` (here, before a restart, or by the CLI) runs in the background.
  const modelSwitch = library.loaded
    ? new ModelSwitcher(library, {
        cacheDir: g.cacheDir,
        queryPrecision,
        onEvent: (e) => {
          if (e.type === 'model-switched') log(`clipdex: switched to ${e.to}: searches use its index now (${e.encoded} photos encoded); the previous model's vectors are kept, \`clipdex models use ${e.from}\` switches back at once`);
          else if (e.status.error) log(`clipdex: model switch: ${e.status.error}`);
        },
      }).start()
    : null;
  if (library.modelError) log(`clipdex: ${library.modelError.message}\nclipdex: serving without search until the model is available; indexing waits.`);
  // The image tower opens once the server listens (`listening` below), and the engine once it is open: the
  // engine encodes with it, and its start (watching every photo, scanning the folders) is main-thread work
  // that a first search would otherwise wait behind. A damaged image model leaves text search working: it
  // is said in the log, in the status (model.imageTower) and as the indexing failure, and an image query
  // gets its error.
  let listening: () => void = () => {};
  const listened = new Promise<void>((resolveListening) => {
    listening = resolveListening;
  });
  const imageTower = library.loaded
    ? listened
        .then(() => library.requireModel().model.openImageEncoder())
        .then(
          () => startupMark('image tower open'),
          (err: unknown) => {
            log(`clipdex: the image tower cannot be opened: ${errorMessage(err)}\nclipdex: text search works; image search and indexing wait until the model is repaired and the server restarted`);
            throw err;
          },
        )
    : null;
  // Said above; with --no-encode nothing else awaits it, and an unobserved rejection would end the process.
  imageTower?.catch(() => undefined);
  const ingest = library.loaded
    ? new LateIngest(
        async () => {
          // Without encoding here (--no-encode) the engine only scans and watches: the tower is not its concern.
          await (o.encode ? imageTower : listened);
          return IngestEngine.start(library, {
            ...(o.root ? { roots: o.root } : {}),
            // A --cache-dir inside a watched folder holds model files, not photos (the data dir is left out by the engine).
            libraryDirs: [g.cacheDir],
            watch: true,
            encode: o.encode,
            onEvent: (e) => {
              if (e.type === 'notice' || e.type === 'failure') log(`clipdex: ${e.message}`);
              // A folder that went away (unmounted, deleted) or came back: its photos' fate is worth a line.
              else if (e.type === 'root' && e.state === 'offline') log(`clipdex: folder ${e.path} is offline (${e.reason ?? 'unavailable'}); its photos are kept and come back with it`);
              else if (e.type === 'root') log(`clipdex: folder ${e.path} is back online`);
            },
          });
        },
        (err) => {
          if (library.loaded?.model.imageTowerError !== err) log(`clipdex: indexing could not start: ${errorMessage(err)}`);
        },
      )
    : null;
  if (!ingest && o.root) {
    // Remembered now, indexed once the model is there (at the next start).
    for (const root of o.root) if (!library.roots.getByPath(resolve(root))) library.roots.add(resolve(root));
  }
  const running = await startServer({
    library,
    ...(ingest ? { ingest } : {}),
    ...(modelSwitch ? { modelSwitch } : {}),
    host: o.host,
    port: o.port,
    ...(o.allowedHost ? { allowedHosts: o.allowedHost } : {}),
    log,
  });
  startupMark('listening');
  listening();
  log(`clipdex: listening on ${running.url}`);
  // Where `clipdex search` of this library finds this server (it asks it rather than loading the model).
  let unpublish = () => {};
  try {
    unpublish = publishServer(library.paths.dir, { url: running.url, model: library.modelRef, modelDir: library.loaded?.model.spec.dir ?? null });
  } catch (err) {
    log(`clipdex: could not write ${library.paths.dir}/server.json (${errorMessage(err)}); \`clipdex search\` will load the model itself`);
  }
  if (running.token) {
    log(
      running.tokenIsNew
        ? `clipdex: access token (shown once; kept in ${library.paths.dir}/server-token): ${running.token}\nclipdex: open ${running.url}/?token=${running.token}`
        : `clipdex: bound beyond loopback: the access token is in ${library.paths.dir}/server-token`,
    );
  }
  if (g.json) process.stdout.write(`${JSON.stringify({ url: running.url, port: running.port, token: running.tokenIsNew ? running.token : null })}\n`);
  await new Promise<void>((resolvePromise) => {
    const stop = () => resolvePromise();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  log('clipdex: shutting down');
  unpublish();
  await running.close();
  await modelSwitch?.close();
  await (await ingest?.ready)?.close();
  await library.close();
};

/** What became of the int8 text tower at start, when it was asked for: written the first time, not kept, or redone. */
function logTextPrecision(p: TextPrecision): void {
  if (p.precision !== 'int8' || p.source !== 'query') return;
  if (p.discarded) log(`clipdex: ${p.discarded}; written again`);
  if (p.state === 'written') log(`clipdex: text tower: wrote its int8 version for queries to ${p.file} (made once, reused at the next start; photos stay encoded in fp32)`);
  else if (p.state === 'unsaved') log(`clipdex: text tower: int8 for queries, quantized into a temporary file: ${p.reason ?? 'not kept'}; it is quantized again at the next start`);
}
