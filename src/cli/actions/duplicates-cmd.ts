// What the commands of commands/duplicates-cmd.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
import type { Command } from 'commander';
import { ClipdexError } from '../../errors.js';
import { PhotoTrash, type RestoredPhoto, type TrashedPhoto } from '../../ingest/photo-trash.js';
import { Library } from '../../library/library.js';
import { findDuplicates, type DuplicatesReport } from '../../search/duplicate-groups.js';
import type { StoreDatabase } from '../../store/database.js';
import { libraryLocation, openStore } from '../../store/open-store.js';
import { DuplicatesRepo } from '../../store/duplicates-repo.js';
import { idTextParam } from '../../validation/duplicates-params.js';
import { parseParam } from '../../validation/param-rules.js';
import { globalOptions, printJson, type GlobalOptions, libraryOptions, TOWERS_WHEN_USED } from '../context.js';
import { createProgress } from '../progress.js';

function printReport(r: DuplicatesReport): void {
  const out = process.stdout;
  if (r.groups.length === 0) {
    process.stderr.write(`no duplicates among ${r.photosChecked} photos at threshold ${r.threshold}\n`);
  }
  for (const g of r.groups) {
    const kind = g.kind === 'exact' ? 'exact copies' : g.kind === 'near' ? 'near-duplicates' : 'copies and near-duplicates';
    out.write(`${g.id}: ${g.photos.length} ${kind}; keep ${g.keeperId} (${g.reason})\n`);
    for (const p of g.photos) {
      const size = p.width && p.height ? `${p.width}×${p.height}` : '?';
      const how = p.keeper ? 'keep    ' : p.exactCopy ? 'copy    ' : `d=${p.distance.toFixed(4)}`;
      out.write(`  ${p.keeper ? '*' : ' '} ${String(p.id).padStart(6)}  ${how}  ${size.padEnd(11)} ${(p.format ?? '?').padEnd(5)} ${p.path}${p.rotated ? `  (turned ${p.rotated}°)` : ''}\n`);
    }
  }
  process.stderr.write(
    `${r.groups.length} group(s), ${r.duplicatePhotos} photo(s) besides the keepers, among ${r.photosChecked} photos; threshold ${r.threshold} (cosine distance) in ${(r.tookMs / 1000).toFixed(1)} s` +
      `${r.hiddenCount ? `; ${r.hiddenCount} hidden from search` : ''}${r.trashCount ? `; ${r.trashCount} in the trash folders` : ''}\n`,
  );
  if (r.groups.length > 0) process.stderr.write('hide or trash the others: clipdex duplicates hide|trash <id…>; undo a trash: clipdex duplicates undo <trash id…>\n');
}

/** The database alone: hiding, trashing and undoing need no model, and work beside a running server. */
async function withStore<T>(g: GlobalOptions, fn: (store: StoreDatabase) => T): Promise<T> {
  const store = openStore(libraryLocation(g.dataDir, g.databaseUrl));
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

const ids = (values: string[], what: string) => values.map((v) => parseParam(idTextParam, v, what));

export const actionDuplicates = async (o: { threshold?: number; rotations?: boolean; neighbours?: number }, c: Command) => {
  const g = globalOptions(c);
  const library = await Library.open({ ...libraryOptions(g), session: TOWERS_WHEN_USED });
  const progress = createProgress('finding duplicates');
  try {
    const report = await findDuplicates(library, {
      ...(o.threshold !== undefined ? { threshold: o.threshold } : {}),
      ...(o.neighbours !== undefined ? { neighbours: o.neighbours } : {}),
      rotations: o.rotations === true,
      // Small libraries take well under a second: no line for them.
      onProgress: (p) => {
        if (p.total >= 2000 || p.phase === 'rotations') progress.update(p.done, p.total, p.phase === 'neighbours' ? 'photos compared' : 'rotated pairs compared');
      },
    });
    progress.stop();
    if (g.json) printJson(report);
    else printReport(report);
  } finally {
    progress.stop();
    await library.close();
  }
};

export const actionHide = (values: string[], _o: unknown, c: Command) => {
  const g = globalOptions(c);
  return withStore(g, (store) => {
    const repo = new DuplicatesRepo(store.db);
    const changed = repo.setHidden(ids(values, 'a photo id'), true);
    if (g.json) printJson({ hidden: changed, hiddenCount: repo.hiddenCount() });
    else process.stdout.write(`hid ${changed.length} photo(s); ${repo.hiddenCount()} hidden in all (clipdex duplicates unhide <id…> shows them again)\n`);
  });
};

export const actionUnhide = (values: string[], _o: unknown, c: Command) => {
  const g = globalOptions(c);
  return withStore(g, (store) => {
    const repo = new DuplicatesRepo(store.db);
    const changed = repo.setHidden(ids(values, 'a photo id'), false);
    if (g.json) printJson({ unhidden: changed, hiddenCount: repo.hiddenCount() });
    else process.stdout.write(`showing ${changed.length} photo(s) again; ${repo.hiddenCount()} still hidden\n`);
  });
};

export const actionHidden = (_o: unknown, c: Command) => {
  const g = globalOptions(c);
  return withStore(g, (store) => {
    const repo = new DuplicatesRepo(store.db);
    const photos = repo.hidden(1_000_000);
    if (g.json) return printJson({ photos, hiddenCount: photos.length });
    for (const p of photos) process.stdout.write(`${String(p.id).padStart(6)}  ${p.path}\n`);
    process.stderr.write(`${photos.length} hidden\n`);
  });
};

export const actionTrash = (values: string[], _o: unknown, c: Command) => {
  const g = globalOptions(c);
  const wanted = ids(values, 'a photo id');
  return withStore(g, (store) => {
    const trash = new PhotoTrash(store);
    const done: TrashedPhoto[] = [];
    for (const id of new Set(wanted)) {
      try {
        done.push(trash.trash(id));
      } catch (err) {
        // Those moved before the failure stay moved (each move is whole): say how to undo them.
        if (done.length === 0 || !(err instanceof ClipdexError)) throw err;
        throw new ClipdexError(err.code, `${err.message} (moved before it: undo with clipdex duplicates undo ${done.map((t) => t.trashId).join(' ')})`, { cause: err });
      }
    }
    if (g.json) return printJson({ trashed: done });
    for (const t of done) process.stdout.write(`trash id ${t.trashId}: ${t.originalPath} → ${t.trashPath}\n`);
    process.stderr.write(`undo: clipdex duplicates undo ${done.map((t) => t.trashId).join(' ')}\n`);
  });
};

export const actionUndo = (values: string[], _o: unknown, c: Command) => {
  const g = globalOptions(c);
  const wanted = ids(values, 'a trash id');
  return withStore(g, (store) => {
    const trash = new PhotoTrash(store);
    const done: RestoredPhoto[] = [];
    for (const id of new Set(wanted)) {
      try {
        done.push(trash.restore(id));
      } catch (err) {
        if (done.length === 0 || !(err instanceof ClipdexError)) throw err;
        throw new ClipdexError(err.code, `${err.message} (put back before it: ${done.map((r) => r.path).join(', ')})`, { cause: err });
      }
    }
    if (g.json) return printJson({ restored: done });
    for (const r of done) process.stdout.write(`put back ${r.path}${r.inLibrary ? '' : ' (its folder is no longer watched: not in the library)'}\n`);
  });
};

export const actionTrashed = (_o: unknown, c: Command) => {
  const g = globalOptions(c);
  return withStore(g, (store) => {
    const items = new PhotoTrash(store).list(1_000_000);
    if (g.json) return printJson({ items });
    for (const t of items) process.stdout.write(`${String(t.id).padStart(6)}  ${new Date(t.trashedAt).toISOString().slice(0, 16)}  ${t.originalPath}\n`);
    process.stderr.write(`${items.length} in the trash folders; put back with: clipdex duplicates undo <trash id…>\n`);
  });
};
