// What the commands of commands/index-cmd.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
import type { Command } from 'commander';
import { ClipdexError } from '../../errors.js';
import { IngestEngine } from '../../ingest/ingest-engine.js';
import { readIngestCounts } from '../../store/ingest-counts-repo.js';
import type { IngestEvent, IngestProgress } from '../../ingest/ingest-events.js';
import { Library } from '../../library/library.js';
import { requireFolders } from '../../ingest/folder-check.js';
import { EXIT, globalOptions, log, printJson, libraryOptions, TOWERS_WHEN_USED } from '../context.js';
import { createProgress } from '../progress.js';

function rateLabel(p: IngestProgress): string {
  const parts = [p.phase === 'scanning' ? 'scanning' : `${p.filesPerSecond.toFixed(p.filesPerSecond < 10 ? 1 : 0)} files/s`];
  parts.push(`${p.errors} error${p.errors === 1 ? '' : 's'}`);
  // The bar shows its own ETA on a terminal; the plain lines on a pipe say it here.
  if (!process.stderr.isTTY && p.etaSeconds !== null && p.total > p.done) parts.push(`ETA ${Math.ceil(p.etaSeconds)} s`);
  return parts.join(', ');
}

export const actionIndex = async (dirs: string[], opts: { exclude: string[]; watch: boolean }, cmd: Command) => {
  const g = globalOptions(cmd);
  // A folder that is not there (or is a file) is a usage error before the library opens, as for `serve --root`.
  await requireFolders(dirs);
  const lib = await Library.open({ ...libraryOptions(g), session: TOWERS_WHEN_USED });
  let engine: IngestEngine | null = null;
  let interrupted = false;
  const progress = createProgress('Indexing');
  const onSigint = () => {
    if (interrupted) process.exit(EXIT.failure);
    interrupted = true;
    log('\nclipdex: stopping after the files in progress (Ctrl-C again to quit at once); the rest stays queued for next time');
    void engine?.close();
};
      process.on('SIGINT', onSigint);
      try {
        if (dirs.length === 0 && lib.roots.list().length === 0) {
          throw new ClipdexError('INVALID_ARGUMENT', 'nothing to index yet: give a folder, e.g. `clipdex index ~/Pictures`');
        }
        const started = Date.now();
        const offline = new Map<number, string>();
        const onEvent = (e: IngestEvent) => {
          if (e.type === 'progress') progress.update(e.progress.done, Math.max(e.progress.total, e.progress.done), rateLabel(e.progress));
          else if (e.type === 'notice') log(`clipdex: ${e.message}`);
          else if (e.type === 'root' && e.state === 'offline') {
            offline.set(e.rootId, e.path);
            log(`clipdex: ${e.path} is offline (${e.reason ?? 'unavailable'}); its photos are kept but not searchable until it is back`);
          } else if (e.type === 'root' && e.state === 'ok') offline.delete(e.rootId);
          else if (e.type === 'failure') log(`clipdex: ${e.message}`);
        };
        engine = await IngestEngine.start(lib, {
          roots: dirs,
          ...(opts.exclude.length > 0 ? { exclude: opts.exclude } : {}),
          onlyGivenRoots: dirs.length > 0,
          watch: opts.watch,
          // A cache dir inside an indexed folder holds clipdex's downloads, not photos.
          libraryDirs: [g.cacheDir],
          // No server shares this process, so nothing needs the event loop while a batch encodes; the
          // library's own image tower does the work and a second copy (~0.5 GB for ViT-B/32) is saved.
          // On 2 cores bench:ingest measured the same throughput either way.
          encoderThread: false,
          stopOnFailure: true,
          onEvent,
        });
        if (!interrupted) await engine.idle();
        const status = engine.status();
        await engine.close();
        progress.stop();
        // Fold what was written into the vector index now (a background merge may start; wait for it), so
        // the first search after this command pays nothing.
        if (lib.loaded) {
          lib.loaded.index.sync();
          await lib.loaded.index.idle();
        }
        const p = status.progress;
        const seconds = (Date.now() - started) / 1000;
        const counts = readIngestCounts(lib);
        // Top level: the library as `clipdex status --json` reports it; `run`: what this run did.
        const result = {
          ...counts,
          roots: status.roots.map((r) => ({ id: r.id, path: r.path, state: r.state, stateReason: r.stateReason })),
          run: {
            encoded: p.encoded,
            reused: p.reused,
            renamed: p.renamed,
            removed: p.removed,
            failed: p.errors,
            vanished: p.vanished,
            seconds: Number(seconds.toFixed(2)),
            interrupted,
          },
        };
        if (g.json) printJson(result);
        else {
          const rate = seconds > 0 ? ` (${((p.encoded + p.reused + p.errors) / seconds).toFixed(1)} files/s)` : '';
          process.stdout.write(
            `${interrupted ? 'Stopped' : 'Done'} in ${seconds.toFixed(1)} s${rate}: ${p.encoded} encoded, ${p.reused} reused by content, ` +
              `${p.renamed} moved, ${p.removed} removed, ${p.errors} failed` +
              // Listed, then deleted before they were read: each was named in a notice above.
              `${p.vanished > 0 ? `, ${p.vanished} vanished before they could be read` : ''}.\n` +
              `Library: ${counts.indexed} indexed, ${counts.pending} pending, ${counts.failed} failed, ${counts.offline} offline.\n`,
          );
          if (counts.failed > 0) process.stdout.write('See why files failed: clipdex status --errors\n');
        }
        if (interrupted) process.exitCode = EXIT.failure;
        else if ([...offline.keys()].some((id) => status.roots.find((r) => r.id === id)?.state === 'offline')) process.exitCode = EXIT.failure;
      } finally {
        process.off('SIGINT', onSigint);
        progress.stop();
        await engine?.close();
        await lib.close();
      }
    };
