/**
 * Every SQL statement lives in a src/store/ repository (issue 14: a second backend implements the same
 * repositories, so a statement anywhere else would be one it misses). Outside store/ code may hold the
 * connection and hand it to a repository; it never prepares, executes or spells SQL itself. The import of
 * better-sqlite3 is refused by lint:deps (.dependency-cruiser.cjs); this catches the calls and the SQL text.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = join(import.meta.dirname, '..', 'src');

/** Calls on a better-sqlite3 handle. `.exec(` only with a literal: RegExp#exec takes a variable. */
const HANDLE_CALL = /\.(?:prepare|pragma)\s*[<(]|\.exec\(\s*['"`]|\.db\s*\.\s*transaction\s*\(/g;

/**
 * A string or template literal that starts (after whitespace) with a statement. Keywords in capitals as
 * our SQL spells them, and each with the word that makes it a statement, so prose ("select a photo",
 * "Update available") does not match.
 */
const SQL_LITERAL = new RegExp(
  String.raw`['"\x60]\s*(?:` +
    [
      String.raw`SELECT\s[^'"\x60]*?\bFROM\b`,
      String.raw`SELECT\s+(?:1|count\(|total_changes\(|\*)`,
      String.raw`INSERT\s+(?:OR\s+[A-Z]+\s+)?INTO\b`,
      String.raw`UPDATE\s+\w+\s+SET\b`,
      String.raw`DELETE\s+FROM\b`,
      String.raw`(?:CREATE|DROP)\s+(?:TEMP(?:ORARY)?\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)\b`,
      String.raw`WITH\s+(?:RECURSIVE\s+)?\w+\s+AS\s*\(`,
      String.raw`PRAGMA\s+\w+`,
    ].join('|') +
    ')',
  'g',
);

/** Comments may name statements when they explain them; their text is blanked before matching. */
function withoutComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' ')).replace(/(^|\s)\/\/.*$/gm, '$1');
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

/** `line: text` of each match; on the whole source, since a literal's statement may start on its next line. */
function findings(source: string): string[] {
  const text = withoutComments(source);
  const lines = source.split('\n');
  return [...text.matchAll(HANDLE_CALL), ...text.matchAll(SQL_LITERAL)].map((m) => {
    const line = text.slice(0, m.index).split('\n').length;
    return `${line}: ${lines[line - 1]!.trim()}`;
  });
}

describe('SQL stays in src/store/', () => {
  it('finds handle calls and statements, and leaves prose, regular expressions and comments alone', () => {
    const caught = [
      "const s = db.prepare('SELECT id FROM images WHERE path = ?');",
      'this.db\n  .prepare<[], { n: number }>(sql)',
      'store.db.exec(`CREATE TABLE temp.seen (path TEXT PRIMARY KEY)`);',
      "db.pragma('wal_checkpoint(PASSIVE)');",
      'library.store.db.transaction(() => {',
      'const sql = `\n  SELECT e.vector FROM images i JOIN embeddings e`;',
      "run(sql, 'DELETE FROM meta WHERE key = ?')",
      '"INSERT OR IGNORE INTO seen (path) VALUES (?)"',
      "'UPDATE images SET status = ? WHERE id = ?'",
      "'SELECT 1 AS one'",
    ];
    for (const text of caught) expect(findings(text), text).not.toEqual([]);
    const allowed = [
      "const m = /^bytes (\\d+)-(\\d+)$/.exec(header.trim());",
      'const m = EXIF_DATE.exec(raw);',
      'store.transaction(() => store.markRootOffline(root.id, reason));',
      "throw new Error('select a photo from the list first');",
      "log('Update the model: clipdex models pull');",
      "const help = 'Delete from the library every photo under <dir>';",
      '// SELECT id FROM images: the rows the walk did not see',
      '/* INSERT INTO ingest_queue happens in the repository */',
      "const url = 'https://example.org/SELECT'; // DELETE FROM x",
    ];
    for (const text of allowed) expect(findings(text), text).toEqual([]);
  });

  it('no module outside src/store/ prepares, executes or spells SQL', () => {
    const offending = tsFiles(SRC)
      .filter((file) => relative(SRC, file).split(sep)[0] !== 'store')
      .flatMap((file) => findings(readFileSync(file, 'utf8')).map((f) => `src/${relative(SRC, file)}:${f}`));
    expect(offending).toEqual([]);
  });
});
