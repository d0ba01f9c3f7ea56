// What the commands of commands/search.ts do, loaded when one runs (see lazy.ts); their options and help stay there.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { ClipdexError } from '../../errors.js';
import type { Library } from '../../library/library.js';
import type { ImageFormat } from '../../model/image-format.js';
import { requestOptionsOf } from '../../validation/search-params.js';
import type { QueryTerm, SearchRequest, SearchResponse } from '../../search/query-engine.js';
import type { ParsedQuery, UnderstoodPart } from '../../search/query-syntax.js';
import type { BrowseOrder } from '../../store/image-filter.js';
import { globalOptions, log, printJson, type GlobalOptions, libraryOptions, TOWERS_WHEN_USED } from '../context.js';
import { findServer } from '../server-client.js';
import { queryPrecisionFromEnv, type QueryPrecision } from '../../model/query-precision.js';


interface CommonOptions {
  offset?: number;
  folder?: string;
  after?: number;
  before?: number;
  format?: ImageFormat[];
  sort?: SearchRequest['sort'];
  minScoreRatio?: number;
  lang?: string;
  /** Print the weaker matches too, below the strong ones. */
  all?: boolean;
  /** Search here even when a server of this library runs. */
  local?: boolean;
  /** `clipdex search --query-precision`: the text tower's precision here (given: searched in this process). */
  queryPrecision?: QueryPrecision;
}

/** A term the API takes as JSON: a phrase or a stored photo (an image file would have to be uploaded). */
type ServerTerm = { text: string; weight?: number } | { imageId: number; weight?: number };

/**
 * The search as POST /api/search of a running `clipdex serve` of this library answers it, or null (no server,
 * another model, an image file among the terms, any failure): then it runs here. The API checks the values
 * with the same rules and runs the same engine, so its answer is the one this process would print.
 */
async function askServer(
  g: GlobalOptions,
  o: CommonOptions & { limit?: number; text?: boolean; plain?: boolean },
  query: { phrase?: string; terms: QueryTerm[] },
): Promise<(SearchResponse & { understood?: UnderstoodPart[] }) | null> {
  // A precision asked for on the command line is this process's: a server encodes at its own.
  if (o.local || o.queryPrecision) return null;
  const terms = query.terms.filter((t): t is QueryTerm & ServerTerm => 'text' in t || 'imageId' in t);
  if (terms.length < query.terms.length) return null;
  const server = await findServer(g.dataDir, g.model);
  if (!server) return null;
  const body = {
    ...(query.phrase ? { q: query.phrase } : {}),
    ...(o.plain ? { syntax: 'plain' } : {}),
    ...(o.text === false ? { text: 'off' } : {}),
    terms: terms.map((t) => ('text' in t ? { text: t.text, weight: t.weight ?? 1 } : { imageId: t.imageId, weight: t.weight ?? 1 })),
    limit: o.limit ?? 20,
    ...(o.offset !== undefined ? { offset: o.offset } : {}),
    // The server's working directory is not this one.
    ...(o.folder !== undefined ? { folder: resolve(o.folder) } : {}),
    // Parsed to ms here already; an ISO timestamp reads back to the same instant.
    ...(o.after !== undefined ? { after: new Date(o.after).toISOString() } : {}),
    ...(o.before !== undefined ? { before: new Date(o.before).toISOString() } : {}),
    ...(o.format !== undefined ? { format: o.format } : {}),
    ...(o.sort !== undefined ? { sort: o.sort } : {}),
    ...(o.minScoreRatio !== undefined ? { minScoreRatio: o.minScoreRatio } : {}),
    ...(o.lang !== undefined ? { lang: o.lang } : {}),
  };
  const response = await server.post<SearchResponse & { understood?: UnderstoodPart[] }>('/api/search', body);
  // stderr, so stdout (the results, or --json) is the same either way.
  if (response) log(`clipdex: searched by the server at ${server.url} (--local to search in this process)`);
  return response;
}

/**
 * The library, its model and the engine, loaded here: imported only now, so a search a server answers loads
 * none of them (nor ONNX Runtime or SQLite).
 */
async function openHere(g: GlobalOptions, queryPrecision?: QueryPrecision) {
  const [{ Library }, { QueryEngine }, { searchRequestOf }] = await Promise.all([
    import('../../library/library.js'),
    import('../../search/query-engine.js'),
    import('../../search/query-syntax.js'),
  ]);
  const library = await Library.open({ ...libraryOptions(g), session: { ...TOWERS_WHEN_USED, ...(queryPrecision ? { queryPrecision } : {}) } });
  return { library, QueryEngine, searchRequestOf };
}

async function runSearch(
  g: GlobalOptions,
  termsFor: (library: Library) => QueryTerm[],
  o: CommonOptions & { limit?: number; text?: boolean },
  parsed?: ParsedQuery,
): Promise<void> {
  // Not given: the model reads CLIPDEX_QUERY_PRECISION itself (actionSearch has checked it already).
  const { library, QueryEngine, searchRequestOf } = await openHere(g, o.queryPrecision);
  try {
    // --no-text: CLIP alone, the text read in photos left out.
    const options = { ...requestOptionsOf({ ...o, limit: o.limit ?? 20 }), terms: termsFor(library), ...(o.text === false ? { text: false as const } : {}) };
    // A date in the phrase and --after/--before both hold (their intersection): see withParsedDate.
    const response = await new QueryEngine(library).search(parsed ? searchRequestOf(parsed, options) : options);
    print(g, parsed ? { ...response, understood: parsed.understood } : response, o.all === true);
  } finally {
    await library.close();
  }
}

/** What the phrase was read as, in one line: `understood: "beach" · taken 2023-07-01 to 2023-07-31 ("July 2023")`. */
export function describeUnderstood(parts: readonly UnderstoodPart[]): string {
  const lastDay = (to: string) => new Date(Date.parse(to) - 86_400_000).toISOString().slice(0, 10);
  const words = parts.map((p) => {
    if (p.kind === 'phrase') return JSON.stringify(p.text);
    if (p.kind === 'or') return p.phrases.map((x) => JSON.stringify(x)).join(' or ');
    if (p.kind === 'not') return `not ${JSON.stringify(p.text)}`;
    const span = p.from && p.to ? `${p.from} to ${lastDay(p.to)}` : p.from ? `on or after ${p.from}` : `before ${p.to}`;
    return `taken ${span} (${JSON.stringify(p.text)})`;
  });
  return `understood: ${words.join(' · ')}`;
}

/**
 * The strong matches, one per line on stdout, and on stderr how many weaker ones were left out; with
 * `all`, the weaker ones too, after a note where they start.
 */
function print(g: GlobalOptions, response: SearchResponse & { understood?: UnderstoodPart[] }, all: boolean): void {
  if (g.json) return printJson(response);
  // stderr, like the other notes: stdout stays the results, one per line, for pipes.
  if (response.understood) process.stderr.write(`${describeUnderstood(response.understood)}\n`);
  if (response.results.length === 0) {
    process.stderr.write('no results\n');
    return;
  }
  const weaker = response.results.filter((r) => !r.strong).length;
  if (weaker === response.results.length && response.offset === 0) process.stderr.write('no strong matches\n');
  let divided = weaker === response.results.length;
  for (const r of response.results) {
    if (!r.strong && !all) continue;
    if (!r.strong && !divided) {
      process.stderr.write('weaker matches:\n');
      divided = true;
    }
    // Which signal found it, when the search used the text in photos: image (CLIP), text (OCR), or both.
    const matched = r.matched ? `  [${r.matched.join('+') || 'weaker'}]` : '';
    process.stdout.write(`${r.score.toFixed(4)}  ${r.path}${matched}\n`);
  }
  // Results run strong first: past the first weaker one, the next page holds weaker ones only.
  if (weaker > 0 && !all) process.stderr.write(`${weaker}${response.hasMore ? '+' : ''} weaker match${weaker === 1 && !response.hasMore ? '' : 'es'} not shown (--all to show them)\n`);
  else if (response.hasMore) process.stderr.write(`more results: --offset ${response.offset + response.limit}\n`);
}

/** `--add image.jpg --subtract people`: terms beside the phrase, taken as given; an existing file is an image, digits a photo id. */
export function extraTerms(extra: { add?: string[]; subtract?: string[] }): QueryTerm[] {
  const terms: QueryTerm[] = [];
  for (const [list, weight] of [
    [extra.add ?? [], 1],
    [extra.subtract ?? [], -1],
  ] as const) {
    for (const item of list) {
      if (/^\d+$/.test(item)) terms.push({ imageId: Number(item), weight });
      else if (existsSync(item)) terms.push({ path: resolve(item), weight });
      else terms.push({ text: item, weight });
    }
  }
  return terms;
}

export const actionSearch = async (words: string[], o: CommonOptions & { limit: number; plain?: boolean; text?: boolean; add?: string[]; subtract?: string[] }, c: Command) => {
  const phrase = words.join(' ').trim();
  const terms = extraTerms(o);
  if (!phrase && terms.length === 0) throw new ClipdexError('INVALID_ARGUMENT', 'give a phrase to search for (or --add an image)');
  const g = globalOptions(c);
  // A bad CLIPDEX_QUERY_PRECISION is refused whoever answers.
  queryPrecisionFromEnv();
  const answered = await askServer(g, o, { phrase, terms });
  if (answered) return print(g, answered, o.all === true);
  const { parseQueryText, plainQuery } = await import('../../search/query-syntax.js');
  const parsed = phrase ? (o.plain ? plainQuery(phrase) : parseQueryText(phrase)) : undefined;
  await runSearch(g, () => terms, o, parsed);
};

export const actionSimilar = async (target: string, o: CommonOptions & { limit: number }, c: Command) => {
  const g = globalOptions(c);
  if (!/^\d+$/.test(target) && !existsSync(target)) {
    throw new ClipdexError('FILE_NOT_FOUND', `${target} is neither a photo id nor an existing file`);
  }
  // A photo id only: a file (indexed or not) is looked up or encoded here.
  const answered = /^\d+$/.test(target) ? await askServer(g, o, { terms: [{ imageId: Number(target) }] }) : null;
  if (answered) return print(g, answered, o.all === true);
  await runSearch(
    g,
    (library) => {
      if (/^\d+$/.test(target)) return [{ imageId: Number(target) }];
      // An indexed file searches by its stored embedding (and is left out of its own results).
      const known = library.images.getByPath(resolve(target));
      return [known?.status === 'indexed' ? { imageId: known.id } : { path: resolve(target) }];
    },
    o,
  );
};

export const actionList = async (o: Omit<CommonOptions, 'sort'> & { limit: number; sort: BrowseOrder }, c: Command) => {
  const g = globalOptions(c);
  const { library, QueryEngine } = await openHere(g);
  try {
    const page = new QueryEngine(library).browse(requestOptionsOf(o));
    if (g.json) return printJson(page);
    if (page.total === 0) process.stderr.write('no photos\n');
    // Past the end is not "nothing matches": say where the photos are.
    else if (page.images.length === 0) process.stderr.write(`no photos at offset ${page.offset} (${page.total} in all)\n`);
    for (const p of page.images) process.stdout.write(`${p.takenAt === null ? 'undated   ' : new Date(p.takenAt).toISOString().slice(0, 10)}  ${p.path}\n`);
    if (page.hasMore) process.stderr.write(`${page.offset + page.images.length} of ${page.total}; more: --offset ${page.offset + page.limit}\n`);
  } finally {
    await library.close();
  }
};
