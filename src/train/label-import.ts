/**
 * Ways to label many photos at once: a list of (photo, caption) rows from a CSV or JSON file, and
 * folder-as-label, where each photo's folder name becomes its caption through a template
 * ("a photo of {folder}"). Photos are named by id or by path (absolute, or relative to a base folder);
 * rows that name no indexed photo are reported, not fatal, so one typo does not lose a thousand labels.
 */
import { realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve, sep } from 'node:path';
import { ClipdexError, type ErrorCode } from '../errors.js';
import type { Library } from '../library/library.js';
import { failedPhotoError } from '../search/failed-photo.js';
import { folderPathRange } from '../store/image-filter.js';

export interface LabelRow {
  /** A photo id, or a path. */
  photo: number | string;
  caption: string;
}

export interface LabelImportReport {
  added: number;
  /** The photo already had this caption. */
  duplicates: number;
  /** Rows that could not be used, with why (first 100): NOT_FOUND, PHOTO_FAILED or INVALID_ARGUMENT (the caption). */
  problems: { row: number; photo: string; reason: string; code: ErrorCode }[];
  problemCount: number;
}

export const DEFAULT_FOLDER_TEMPLATE = 'a photo of {folder}';
const MAX_CAPTION = 1000;

/** The image id a row names: an id, or a path as stored (absolute; relative ones resolved from `baseDir`). */
export function resolvePhoto(library: Library, photo: number | string, baseDir = process.cwd()): number | string {
  if (typeof photo === 'number' || /^\d+$/.test(photo)) {
    const id = Number(photo);
    const record = library.images.get(id);
    if (!record) return `no photo with id ${id}`;
    return record.id;
  }
  const trimmed = photo.trim();
  if (trimmed === '') return 'empty photo path';
  const absolute = isAbsolute(trimmed) ? trimmed : resolve(baseDir, trimmed);
  const record = library.images.getByPath(absolute) ?? library.images.getByPath(realOrSame(absolute));
  if (!record) return `${absolute} is not a photo in this library (is its folder added and indexed?)`;
  return record.id;
}

/**
 * The photo a label may go on: one the library knows that has not failed to index. A failed photo has no
 * embedding, so training would only leave its labels out later ("not indexed yet"); refuse it now, saying why.
 */
export function labelTarget(library: Library, photo: number | string, baseDir?: string): { id: number } | { code: ErrorCode; reason: string } {
  const id = resolvePhoto(library, photo, baseDir);
  if (typeof id === 'string') return { code: 'NOT_FOUND', reason: id };
  const failed = failedPhotoError(library.images.get(id)!, 'labeled');
  return failed ? { code: failed.code, reason: failed.message } : { id };
}

function realOrSame(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

export function checkCaption(caption: unknown): string {
  if (typeof caption !== 'string' || caption.trim() === '') throw new ClipdexError('INVALID_ARGUMENT', 'a caption must be a non-empty string');
  const text = caption.trim();
  if (text.length > MAX_CAPTION) throw new ClipdexError('INVALID_ARGUMENT', `a caption is limited to ${MAX_CAPTION} characters`);
  if (text.includes('\0')) throw new ClipdexError('INVALID_ARGUMENT', 'a caption must not contain NUL characters');
  return text;
}

/** Adds the rows in one transaction. */
export function importLabels(library: Library, rows: readonly LabelRow[], baseDir?: string): LabelImportReport {
  const report: LabelImportReport = { added: 0, duplicates: 0, problems: [], problemCount: 0 };
  const problem = (row: number, photo: unknown, reason: string, code: ErrorCode) => {
    report.problemCount++;
    if (report.problems.length < 100) report.problems.push({ row, photo: String(photo), reason, code });
  };
  library.store.transaction(() => {
    rows.forEach((r, i) => {
      let caption: string;
      try {
        caption = checkCaption(r.caption);
      } catch (err) {
        return problem(i + 1, r.photo, (err as Error).message, 'INVALID_ARGUMENT');
      }
      const target = labelTarget(library, r.photo, baseDir);
      if (!('id' in target)) return problem(i + 1, r.photo, target.reason, target.code);
      const { added } = library.pairs.addUnique(target.id, caption);
      if (added) report.added++;
      else report.duplicates++;
    });
  });
  return report;
}

/**
 * Every photo under `folder` (at any depth) labeled with the template, `{folder}` being the name of the
 * folder the photo is directly in ("tools", "grandma_garden" → "grandma garden").
 */
export function folderLabelRows(library: Library, folder: string, template = DEFAULT_FOLDER_TEMPLATE): LabelRow[] {
  if (!template.includes('{folder}')) throw new ClipdexError('INVALID_ARGUMENT', 'the template must contain {folder}, e.g. "a photo of {folder}"');
  // Photos are stored under the path their root was added with, which may run through a symlink: look
  // under the folder as given, under its real path, and under each root that holds it by real path.
  const given = resolve(folder);
  const realFolder = realOrSame(given);
  const candidates = new Set([given, realFolder]);
  for (const r of library.roots.list()) {
    const realRoot = realOrSame(r.path);
    if (realFolder === realRoot || realFolder.startsWith(realRoot + sep)) candidates.add(r.path + realFolder.slice(realRoot.length));
  }
  const seen = new Set<number>();
  const rows: { id: number; path: string }[] = [];
  for (const root of candidates) {
    const { lo, hi } = folderPathRange(root);
    for (const r of library.images.listIndexedInRange(lo, hi)) {
      if (!seen.has(r.id)) rows.push(r);
      seen.add(r.id);
    }
  }
  return rows.map((r) => ({ photo: r.id, caption: template.replaceAll('{folder}', folderWords(basename(dirname(r.path)))) }));
}

function folderWords(name: string): string {
  return name.replace(/[_-]+/g, ' ').replace(/\s+/g, ' ').trim();
}
