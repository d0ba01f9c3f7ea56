// What the commands of commands/label-cmd.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
/**
 * `clipdex label` and `clipdex labels …`: the photo/caption pairs the trainer learns from. Labels need no
 * model, so these commands open the library with the model optional and work while it is missing.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, resolve } from 'node:path';
import type { Command } from 'commander';
import { parse as parseCsv } from 'csv-parse/sync';
import { ClipdexError, errorMessage, type ErrorCode } from '../../errors.js';
import { Library } from '../../library/library.js';
import type { CaptionSummary, LabeledPair, ListedPair, PairFilter } from '../../store/pairs-repo.js';
import { checkCaption, folderLabelRows, importLabels, labelTarget, resolvePhoto, type LabelRow } from '../../train/label-import.js';
import { EXIT, globalOptions, log, printJson, type GlobalOptions, libraryOptions, TOWERS_WHEN_USED } from '../context.js';
import { optionParser } from '../../validation/param-rules.js';
import { recordIdParam } from '../../validation/id-params.js';

/** Where a problem came from, in the words of the input: "line 4" of a CSV, "entry 2" of JSON, "argument 1". */
interface Problem {
  at: string;
  photo: string;
  reason: string;
  /** Why, for the one-photo `clipdex label` that fails as a whole. */
  code?: ErrorCode;
}

/** A problem found while reading a file, with its position there (problems are reported in file order). */
interface ReadProblem extends Problem {
  index: number;
}

interface AddReport {
  added: number;
  duplicates: number;
  problems: Problem[];
  problemCount: number;
}

/** A row to import, where it came from, and its position in the input. */
interface SourcedRow {
  row: LabelRow;
  at: string;
  index: number;
}

const SHOWN_PROBLEMS = 20;

async function withLibrary<T>(g: GlobalOptions, run: (library: Library) => Promise<T> | T): Promise<T> {
  const library = await Library.open({ ...libraryOptions(g), modelOptional: true, session: TOWERS_WHEN_USED });
  try {
    return await run(library);
  } finally {
    await library.close();
  }
}

const labelId = optionParser(recordIdParam, 'a label id', 'see `clipdex labels list`');

/**
 * Prints what an add did; exits non-zero only when nothing at all could be used, so one typo in a
 * thousand rows does not fail a script that got 999 labels in.
 */
function report(g: GlobalOptions, result: AddReport, extra: Record<string, unknown> = {}): void {
  if (g.json) printJson({ ...result, ...extra });
  else {
    process.stdout.write(`${result.added} label${result.added === 1 ? '' : 's'} added, ${result.duplicates} already there, ${result.problemCount} problem${result.problemCount === 1 ? '' : 's'}.\n`);
  }
  for (const p of result.problems.slice(0, SHOWN_PROBLEMS)) log(`clipdex: ${p.at}${p.photo && !p.reason.includes(p.photo) ? ` (photo ${p.photo})` : ''}: ${p.reason}`);
  if (result.problemCount > SHOWN_PROBLEMS) log(`clipdex: … and ${result.problemCount - SHOWN_PROBLEMS} more problems${g.json ? '' : ' (--json lists the first 100)'}`);
  if (result.added + result.duplicates === 0 && result.problemCount > 0) process.exitCode = EXIT.failure;
}

/** importLabels over rows read from somewhere, its problems renamed to the places they came from. */
function importSourced(library: Library, rows: SourcedRow[], baseDir: string, unreadable: ReadProblem[] = []): AddReport {
  const r = importLabels(library, rows.map((s) => s.row), baseDir);
  const problems = [...unreadable, ...r.problems.map((p) => ({ ...rows[p.row - 1]!, photo: p.photo, reason: p.reason }))]
    .sort((a, b) => a.index - b.index)
    .slice(0, 100)
    .map(({ at, photo, reason }) => ({ at, photo, reason }));
  return { added: r.added, duplicates: r.duplicates, problems, problemCount: unreadable.length + r.problemCount };
}

function photoOf(entry: Record<string, unknown>): number | string | undefined {
  for (const key of ['photo', 'path', 'id']) {
    const v = entry[key];
    if (typeof v === 'number' || (typeof v === 'string' && v.trim() !== '')) return v;
  }
  return undefined;
}

/** CSV with a header row naming a `photo` (or `path`, or `id`) column and a `caption` column. */
function csvRows(text: string, file: string): { rows: SourcedRow[]; problems: ReadProblem[] } {
  let records: { record: string[]; info: { lines: number } }[];
  try {
    // Rows with the wrong number of fields are reported one by one below, not fatal for the whole file.
    records = parseCsv(text, { bom: true, trim: true, skip_empty_lines: true, relax_column_count: true, info: true }) as unknown as typeof records;
  } catch (err) {
    throw new ClipdexError('INVALID_ARGUMENT', `${file} is not valid CSV: ${errorMessage(err)}`, { cause: err });
  }
  const [header, ...body] = records;
  const names = (header?.record ?? []).map((h) => h.trim().toLowerCase());
  const photoCol = ['photo', 'path', 'id'].map((n) => names.indexOf(n)).find((i) => i >= 0);
  const captionCol = names.indexOf('caption');
  if (photoCol === undefined || captionCol < 0) {
    throw new ClipdexError(
      'INVALID_ARGUMENT',
      `${file} needs a header row with a photo column (named photo, path or id) and a caption column; found ${names.length ? names.join(', ') : 'nothing'}`,
    );
  }
  const rows: SourcedRow[] = [];
  const problems: ReadProblem[] = [];
  body.forEach(({ record, info }, index) => {
    const at = `line ${info.lines}`;
    if (record.length !== names.length) {
      problems.push({ at, index, photo: record[photoCol] ?? '', reason: `${record.length} fields where the header has ${names.length} (quote a caption that contains a comma)` });
    } else rows.push({ row: { photo: record[photoCol]!, caption: record[captionCol]! }, at, index });
  });
  return { rows, problems };
}

/** A JSON array of {photo | path | id, caption}. */
function jsonRows(text: string, file: string): { rows: SourcedRow[]; problems: ReadProblem[] } {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ClipdexError('INVALID_ARGUMENT', `${file} is not valid JSON: ${errorMessage(err)}`, { cause: err });
  }
  if (!Array.isArray(data)) throw new ClipdexError('INVALID_ARGUMENT', `${file} must hold a JSON array of {"photo": path or id, "caption": text}`);
  const rows: SourcedRow[] = [];
  const problems: ReadProblem[] = [];
  data.forEach((entry: unknown, index) => {
    const at = `entry ${index + 1}`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
      return problems.push({ at, index, photo: '', reason: 'not an object such as {"photo": "a.jpg", "caption": "a dog"}' });
    }
    const photo = photoOf(entry as Record<string, unknown>);
    if (photo === undefined) return problems.push({ at, index, photo: '', reason: 'names no photo (give "photo", "path" or "id")' });
    rows.push({ row: { photo, caption: (entry as Record<string, unknown>).caption as string }, at, index });
  });
  return { rows, problems };
}

function readRows(file: string): { rows: SourcedRow[]; problems: ReadProblem[] } {
  if (!existsSync(file) || !statSync(file).isFile()) throw new ClipdexError('FILE_NOT_FOUND', `${file} does not exist or is not a file`);
  const text = readFileSync(file, 'utf8');
  const ext = extname(file).toLowerCase();
  const isJson = ext === '.json' || (ext !== '.csv' && /^\s*\[/.test(text));
  const parsed = isJson ? jsonRows(text, file) : csvRows(text, file);
  if (parsed.rows.length + parsed.problems.length === 0) throw new ClipdexError('INVALID_ARGUMENT', `${file} holds no labels`);
  return parsed;
}

/** Adds one caption to each photo, in one transaction; returns the labels too (their ids are what edit and rm take). */
function labelPhotos(library: Library, photos: string[], caption: string): AddReport & { labels: LabeledPair[] } {
  const result: AddReport & { labels: LabeledPair[] } = { added: 0, duplicates: 0, problems: [], problemCount: 0, labels: [] };
  library.store.transaction(() => {
    photos.forEach((photo, i) => {
      const target = labelTarget(library, photo);
      if (!('id' in target)) {
        result.problems.push({ at: `argument ${i + 1}`, photo, reason: target.reason, code: target.code });
        return;
      }
      const { pair, added } = library.pairs.addUnique(target.id, caption);
      if (added) result.added++;
      else result.duplicates++;
      result.labels.push(pair);
    });
  });
  result.problemCount = result.problems.length;
  return result;
}

function listLabels(library: Library, filter: PairFilter, limit: number): { labels: ListedPair[]; captions: CaptionSummary[]; total: number } {
  const captions = library.pairs.captions(filter);
  return { labels: library.pairs.page(filter, limit), captions, total: captions.reduce((s, c) => s + c.labels, 0) };
}

/** A label whose photo is not searchable now says so; it is kept either way (see store/pairs-repo.ts). */
export function photoNote(label: ListedPair): string {
  switch (label.photo) {
    case 'missing':
      return `  (photo missing${label.missingSince === null ? '' : ` since ${new Date(label.missingSince).toISOString().slice(0, 16).replace('T', ' ')}`}, kept)`;
    case 'offline':
      return '  (photo offline: its folder is not available)';
    case 'failed':
      return '  (photo failed to index)';
    default:
      return '';
  }
}

function printList(result: ReturnType<typeof listLabels>): void {
  const out: string[] = [];
  if (result.total === 0) {
    process.stdout.write('No labels yet: `clipdex label <photo> "caption"`, `clipdex labels import <file>` or `clipdex labels import-folder <dir>`.\n');
    return;
  }
  const idWidth = Math.max(2, ...result.labels.map((l) => String(l.id).length));
  const captionWidth = Math.min(40, Math.max(7, ...result.labels.map((l) => l.caption.length)));
  out.push(`${'id'.padStart(idWidth)}  split  ${'caption'.padEnd(captionWidth)}  photo`);
  for (const l of result.labels) out.push(`${String(l.id).padStart(idWidth)}  ${l.split.padEnd(5)}  ${l.caption.padEnd(captionWidth)}  ${l.path}${photoNote(l)}`);
  if (result.labels.length < result.total) out.push(`(first ${result.labels.length} of ${result.total}; raise --limit for more)`);
  out.push('', 'labels  train  val  caption');
  for (const c of result.captions) out.push(`${String(c.labels).padStart(6)}  ${String(c.train).padStart(5)}  ${String(c.val).padStart(3)}  ${c.caption}`);
  out.push(`${String(result.total).padStart(6)}  total, ${result.captions.length} caption${result.captions.length === 1 ? '' : 's'}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

export const actionLabel = async (items: string[], opts: { caption?: string }, cmd: Command) => {
  const g = globalOptions(cmd);
  let photos = items;
  let caption = opts.caption;
  if (caption === undefined) {
    if (items.length < 2) throw new ClipdexError('INVALID_ARGUMENT', 'give a caption: `clipdex label <photo> "caption"`, or `clipdex label <photo...> --caption "caption"`');
    caption = items[items.length - 1]!;
    photos = items.slice(0, -1);
    if (/^\d+$/.test(caption.trim()) || existsSync(caption)) {
      throw new ClipdexError('INVALID_ARGUMENT', `the last argument ${JSON.stringify(caption)} looks like a photo, not a caption; give the caption with --caption`);
    }
  }
  const text = checkCaption(caption);
  await withLibrary(g, (library) => {
    const result = labelPhotos(library, photos, text);
    // One photo that cannot be labeled is an error, not a report of one problem.
    const only = result.problems[0];
    if (photos.length === 1 && only) throw new ClipdexError(only.code === 'PHOTO_FAILED' ? 'PHOTO_FAILED' : 'FILE_NOT_FOUND', only.reason);
    const problems = result.problems.map(({ at, photo, reason }) => ({ at, photo, reason }));
    report(g, { added: result.added, duplicates: result.duplicates, problems, problemCount: result.problemCount }, { caption: text, labels: result.labels });
    if (!g.json && result.labels.length > 0) process.stdout.write(`Label ids: ${result.labels.map((l) => l.id).join(', ')} ("${text}")\n`);
  });
};

export const actionList = async (opts: { caption?: string; photo?: string; limit: number }, cmd: Command) => {
  const g = globalOptions(cmd);
  await withLibrary(g, (library) => {
    let image: number | null = null;
    if (opts.photo !== undefined) {
      const id = resolvePhoto(library, opts.photo);
      if (typeof id === 'string') throw new ClipdexError('FILE_NOT_FOUND', id);
      image = id;
    }
    const result = listLabels(library, { caption: opts.caption?.trim() ?? null, imageId: image }, opts.limit);
    if (g.json) printJson({ ...result, counts: library.pairs.count() });
    else printList(result);
  });
};

export const actionImport = async (file: string, opts: { baseDir?: string }, cmd: Command) => {
  const g = globalOptions(cmd);
  const path = resolve(file);
  const { rows, problems } = readRows(path);
  const baseDir = resolve(opts.baseDir ?? dirname(path));
  await withLibrary(g, (library) => report(g, importSourced(library, rows, baseDir, problems)));
};

export const actionImportFolder = async (folder: string, opts: { template: string }, cmd: Command) => {
  const g = globalOptions(cmd);
  const dir = resolve(folder);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ClipdexError('FILE_NOT_FOUND', `${dir} is not a folder`);
  await withLibrary(g, (library) => {
    const rows = folderLabelRows(library, dir, opts.template);
    if (rows.length === 0) throw new ClipdexError('FILE_NOT_FOUND', `no indexed photos under ${dir}; index it first: clipdex index ${dir}`);
    report(g, importSourced(library, rows.map((row, index) => ({ row, at: `photo ${row.photo}`, index })), dir));
  });
};

export const actionEdit = async (id: number, caption: string, _opts: unknown, cmd: Command) => {
  const g = globalOptions(cmd);
  const text = checkCaption(caption);
  await withLibrary(g, (library) => {
    const current = library.pairs.get(id);
    if (!current) throw new ClipdexError('FILE_NOT_FOUND', `no label with id ${id} (see \`clipdex labels list\`)`);
    // A missing label's photo is its content: its siblings are the other labels waiting for it.
    const siblings =
      current.imageId === null
        ? library.pairs.list().filter((p) => p.imageId === null && p.contentHash === current.contentHash && p.lastPath === current.lastPath)
        : library.pairs.forImage(current.imageId);
    const twin = siblings.find((p) => p.id !== id && p.caption === text);
    // Two equal labels on one photo would count it twice in training.
    if (twin) throw new ClipdexError('INVALID_ARGUMENT', `that photo already has the caption "${text}" (label ${twin.id}); remove label ${id} instead`);
    const updated = library.pairs.update(id, text)!;
    if (g.json) printJson(updated);
    else process.stdout.write(`Label ${id}: "${current.caption}" → "${updated.caption}"\n`);
  });
};

export const actionRm = async (ids: string[], _opts: unknown, cmd: Command) => {
  const g = globalOptions(cmd);
  const wanted = ids.map(labelId);
  await withLibrary(g, (library) => {
    const missing: number[] = [];
    const removed: number[] = [];
    library.store.transaction(() => {
      for (const id of wanted) (library.pairs.remove(id) ? removed : missing).push(id);
    });
    if (g.json) printJson({ removed, missing });
    else process.stdout.write(`${removed.length} label${removed.length === 1 ? '' : 's'} removed.\n`);
    if (missing.length > 0) {
      log(`clipdex: no label with id ${missing.join(', ')}`);
      process.exitCode = EXIT.failure;
    }
  });
};
