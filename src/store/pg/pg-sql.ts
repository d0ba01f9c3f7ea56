/**
 * The lexical differences between the repositories' SQL (written for SQLite, portable where it can be) and
 * PostgreSQL's, bridged once here so that one repository serves both backends:
 *
 * - parameters: `?` and better-sqlite3's named `@name` / `:name` / `$name` become `$1…$n`;
 * - camelCase aliases: PostgreSQL folds an unquoted `AS stateReason` to `statereason`, SQLite keeps its case,
 *   so an alias with a capital letter is quoted;
 * - nothing inside a string literal, a quoted identifier or a comment is touched.
 *
 * What is not lexical (functions only one dialect has: `json_each`, `strftime`, `group_concat`, FTS5) is
 * written per dialect by the repository that needs it; `INSERT OR IGNORE` is the one statement form common
 * enough to be rewritten here (to `ON CONFLICT DO NOTHING`).
 */

export interface TranslatedSql {
  text: string;
  /** For named parameters, the name behind each `$k`, in order; empty for positional ones. */
  names: string[];
  /** How many `?` placeholders there were (0 when named). */
  positional: number;
}

const NAMED_START = /[@:$]/;
const IDENT_CHAR = /[A-Za-z0-9_]/;

export function translateSql(sql: string): TranslatedSql {
  let out = '';
  const names: string[] = [];
  const slots = new Map<string, number>();
  let positional = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === "'" || c === '"') {
      // A quoted literal or identifier, with its doubled-quote escapes, copied as it is.
      let j = i + 1;
      while (j < n) {
        if (sql[j] === c) {
          if (sql[j + 1] === c) j += 2;
          else break;
        } else j++;
      }
      out += sql.slice(i, j + 1);
      i = j + 1;
    } else if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      const j = end < 0 ? n : end;
      out += sql.slice(i, j);
      i = j;
    } else if (c === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2);
      const j = end < 0 ? n : end + 2;
      out += sql.slice(i, j);
      i = j;
    } else if (c === '?') {
      positional++;
      out += `$${positional}`;
      i++;
    } else if (NAMED_START.test(c) && next !== undefined && /[A-Za-z_]/.test(next) && !(c === ':' && sql[i - 1] === ':')) {
      // `::type` casts are not parameters; `$1` (already PostgreSQL) is left alone by the letter test above.
      let j = i + 1;
      while (j < n && IDENT_CHAR.test(sql[j]!)) j++;
      const name = sql.slice(i + 1, j);
      let slot = slots.get(name);
      if (slot === undefined) {
        names.push(name);
        slot = names.length;
        slots.set(name, slot);
      }
      out += `$${slot}`;
      i = j;
    } else if (/[A-Za-z_]/.test(c) && (i === 0 || !IDENT_CHAR.test(sql[i - 1]!))) {
      let j = i + 1;
      while (j < n && IDENT_CHAR.test(sql[j]!)) j++;
      const word = sql.slice(i, j);
      out += word;
      i = j;
      const lower = word.toLowerCase();
      if ((lower === 'max' || lower === 'min') && sql[i] === '(' && hasTopLevelComma(sql, i)) {
        // SQLite's scalar max(a, b) / min(a, b); with one argument they are the aggregates both dialects share.
        out = out.slice(0, -word.length) + (lower === 'max' ? 'greatest' : 'least');
      }
      if (word.toUpperCase() === 'AS') {
        const m = /^(\s+)([a-z][A-Za-z0-9_]*[A-Z][A-Za-z0-9_]*)(?![A-Za-z0-9_("])/.exec(sql.slice(i));
        if (m) {
          out += `${m[1]}"${m[2]}"`;
          i += m[0].length;
        }
      }
    } else {
      out += c;
      i++;
    }
  }
  if (positional > 0 && names.length > 0) throw new Error(`SQL mixes ? and named parameters: ${sql}`);
  return { text: rewriteInsertOrIgnore(out), names, positional };
}

/** Whether the parenthesis at `open` has a comma at its own depth before it closes (strings skipped). */
function hasTopLevelComma(sql: string, open: number): boolean {
  let depth = 0;
  for (let j = open; j < sql.length; j++) {
    const c = sql[j];
    if (c === "'") {
      j = sql.indexOf("'", j + 1);
      if (j < 0) return false;
    } else if (c === '(') depth++;
    else if (c === ')') {
      depth--;
      if (depth === 0) return false;
    } else if (c === ',' && depth === 1) return true;
  }
  return false;
}

/** `INSERT OR IGNORE INTO t …` → `INSERT INTO t … ON CONFLICT DO NOTHING` (before a RETURNING, if any). */
function rewriteInsertOrIgnore(sql: string): string {
  const m = /^\s*INSERT\s+OR\s+IGNORE\s+INTO\b/i.exec(sql);
  if (!m) return sql;
  const body = `INSERT INTO${sql.slice(m[0].length)}`;
  const returning = /\bRETURNING\b/i.exec(body);
  return returning
    ? `${body.slice(0, returning.index).trimEnd()} ON CONFLICT DO NOTHING ${body.slice(returning.index)}`
    : `${body.trimEnd().replace(/;$/, '')} ON CONFLICT DO NOTHING`;
}

/** The values for `$1…$n` from better-sqlite3-style arguments: positional values, or one object of named ones. */
export function bindValues(sql: TranslatedSql, args: readonly unknown[]): unknown[] {
  if (sql.names.length === 0) {
    if (args.length !== sql.positional) throw new RangeError(`expected ${sql.positional} parameter(s), got ${args.length}: ${sql.text}`);
    return args.map(toPgValue);
  }
  const named = args[0];
  if (args.length !== 1 || named === null || typeof named !== 'object') throw new TypeError(`expected one object of named parameters for: ${sql.text}`);
  return sql.names.map((name) => {
    if (!(name in named)) throw new RangeError(`missing named parameter @${name}`);
    return toPgValue((named as Record<string, unknown>)[name]);
  });
}

/** SQLite takes booleans and bigints as integers; pg's driver would send `true` as 'true' to an integer column. */
function toPgValue(v: unknown): unknown {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array && !Buffer.isBuffer(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return v;
}
