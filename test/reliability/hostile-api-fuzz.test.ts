/**
 * Fuzzes every route of the REST API of a real server (in-process startServer, real SQLite library,
 * self-built model, three indexed photos, one failed file, one stored adapter) with fast-check: hostile
 * query strings and path ids, JSON bodies of wrong shapes, deep nesting and huge arrays, malformed and
 * oversized multipart uploads, odd headers. Every answer must be below 500, every API error must be the
 * JSON error shape, every answer must come within a bound, and the server must still work afterwards.
 *
 * CI: 1,200 sequential + 300 concurrent fuzzed requests and the named cases; STRESS=1: 15,000 + 3,000.
 * FUZZ_SEED=<n> replays a run (the seed is printed with the report).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Library } from '../../src/library/library.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { encodeAdapter } from '../../src/adapter/adapter-weights.js';
import { indexFiles, projectingAdapter, tinyModel } from '../helpers/library-fixture.js';
import {
  STRESS,
  Tally,
  isErrorBody,
  jsonOf,
  multipartBody,
  pct,
  pngBomb,
  pngLyingHeader,
  pool,
  rawRequest,
  rawSocket,
  wtf8,
  type Part,
  type RawRequest,
  type RawResponse,
} from './hostile-helpers.js';

const SEQUENTIAL_RUNS = STRESS ? 15_000 : 1_200;
const CONCURRENT_RUNS = STRESS ? 3_000 : 300;
const RAW_RUNS = STRESS ? 2_000 : 150;
const SEED = Number(process.env.FUZZ_SEED ?? 7_340_021);
/** No single answer may take longer; generous for a loaded 2-core CI machine, far below a hang. */
const MAX_MS = 5_000;

const tmp = mkdtempSync(join(tmpdir(), 'clipdex-fuzz-'));
const photos = join(tmp, 'photos');
const exportsDir = join(tmp, 'exports');
let library: Library;
let server: RunningServer;
let ids: number[] = [];
const serverLog: string[] = [];
const images: Record<string, Buffer> = {};

beforeAll(async () => {
  mkdirSync(photos, { recursive: true });
  mkdirSync(exportsDir, { recursive: true });
  const files: string[] = [];
  for (const [i, [r, g, b]] of [[220, 30, 30], [30, 200, 40], [20, 40, 210]].entries()) {
    const file = join(photos, `photo-${i}.jpg`);
    await sharp({ create: { width: 160, height: 120, channels: 3, background: { r: r!, g: g!, b: b! } } }).jpeg().toFile(file);
    files.push(file);
  }
  // A failed file, so /api/errors has a row to page through.
  writeFileSync(join(photos, 'broken.jpg'), 'not a photo');
  files.push(join(photos, 'broken.jpg'));
  library = await Library.open({ dataDir: join(tmp, 'data'), model: await tinyModel(tmp) });
  ids = await indexFiles(library, photos, files);
  // A version with its own image projection, so activate, rollback and export reach their real work, not just a 404.
  const { key, model } = library.requireModel();
  library.adapters.add(key, encodeAdapter(projectingAdapter(model.dim)), { blend: 1 });
  server = await startServer({ library, port: 0, log: (m) => serverLog.push(m) });

  images.jpeg = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#c33' } }).jpeg().toBuffer();
  images.png = await sharp({ create: { width: 40, height: 40, channels: 4, background: '#3c38' } }).png().toBuffer();
  images.webp = await sharp({ create: { width: 50, height: 30, channels: 3, background: '#33c' } }).webp().toBuffer();
  images.gif = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#999' } }).gif().toBuffer();
  images.tiny = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#000' } }).png().toBuffer();
  images.truncated = images.jpeg.subarray(0, images.jpeg.length >> 1);
  images.flipped = Buffer.from(images.jpeg.map((b, i) => (i > 200 && i % 17 === 0 ? b ^ 0xff : b)));
  images.lyingPng = pngLyingHeader(20_000, 20_000);
  images.text = Buffer.from('hello, not an image\n');
  images.zeroes = Buffer.alloc(4096);
}, 120_000);

afterAll(async () => {
  await server?.close();
  await library?.close();
  rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------- arbitraries

/** Inputs known to break parsers: control and format characters, bidi overrides, traversal, number edge cases. */
const SPECIAL = [
  '', ' ', '\u0000', 'a\u0000b', '\ud800', '\udfff', 'x\udc00y', '\u202eevil\u202c', '\u200b', '\u200d', '\ufeff', '\u0085', '\r\n', '\t',
  '../../../../etc/passwd', '..\\..\\..\\windows\\win.ini', '/etc/passwd', '%00', '%', '%zz', '%%', '%2e%2e%2f', '..%c0%af', '%ED%A0%80',
  '<script>alert(1)</script>', "' OR 1=1 --", '"; DROP TABLE images; --', 'NaN', 'Infinity', '-Infinity', '-1', '0', '-0', '1e309',
  '9007199254740993', '0x10', '1.5', ' 1', '1 ', '[]', '{}', 'null', 'true', '__proto__', 'constructor', 'prototype', 'toString',
  '{folder}', '$(reboot)', '𝕏🦊', 'שלום', 'مرحبا', 'e\u0301\u0301\u0301', 'ﷺ'.repeat(50), 'relevance', 'date-desc', 'jpeg,png', 'base',
];

const hostile = (maxLong: number): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...SPECIAL) },
    { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
    { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
    { weight: 2, arbitrary: fc.oneof(fc.integer(), fc.double(), fc.bigInt()).map(String) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom('a', '€', '\u0000', '/', '🦊', '%', '\ud800'), fc.integer({ min: 1, max: maxLong })).map(([c, n]) => c.repeat(n)) },
  );

/** A JSON fragment written as is: numbers JSON.stringify cannot produce (1e999 parses as Infinity), or invalid tokens. */
class RawJson {
  constructor(readonly text: string) {}
}

function toJson(v: unknown): string {
  if (v instanceof RawJson) return v.text;
  if (Array.isArray(v)) return `[${v.map(toJson).join(',')}]`;
  if (v && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${toJson(x)}`).join(',')}}`;
  if (typeof v === 'bigint') return v.toString();
  return JSON.stringify(v) ?? 'null';
}

const numLike: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: -3, max: 600 }) },
  { weight: 2, arbitrary: fc.integer() },
  { weight: 2, arbitrary: fc.double() },
  { weight: 2, arbitrary: fc.constantFrom(0, -0, 1, -1, 0.5, 2 ** 31, 2 ** 53 + 2, 1e21, 5e-324, Number.MAX_VALUE) },
  { weight: 2, arbitrary: fc.constantFrom('1e999', '-1e999', '1E400', 'NaN', 'Infinity', '0x10', '01', '1.', '.5', '+1', '-').map((t) => new RawJson(t)) },
  { weight: 1, arbitrary: fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }) },
  { weight: 1, arbitrary: hostile(50) },
  { weight: 1, arbitrary: fc.constantFrom(true, false, null, [], {}, [1], { valueOf: 1 }) },
);

const strLike = (maxLong = 1500): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 6, arbitrary: hostile(maxLong) }, { weight: 1, arbitrary: numLike }, { weight: 1, arbitrary: fc.constantFrom(null, [], {}, ['a'], true) });

describe('the REST API under fuzzing', () => {
  const tally = new Tally();
  const problems: string[] = [];

  function arbitraries() {
    const idNums = [...ids, 1, 2];
    const idSegment = fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...idNums.map(String)) },
      { weight: 2, arbitrary: fc.integer({ min: -5, max: 1_000_000 }).map(String) },
      {
        weight: 3,
        arbitrary: fc.constantFrom('0', '-1', '1.5', '1e3', '1e999', 'NaN', 'Infinity', '9007199254740993', '18446744073709551616', '0x1', '01', '%201', '1%00', '%2e%2e', '..', '.', '%2F', '%2Fetc%2Fpasswd', '..%2F..%2Fetc%2Fpasswd', '%', '%zz', '%ED%A0%80', 'abc', ''),
      },
      { weight: 2, arbitrary: hostile(200).map((s) => pct(s)) },
      { weight: 1, arbitrary: hostile(200).map((s) => pct(s, true)) },
    );
    const idJson = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...idNums) }, { weight: 3, arbitrary: numLike });

    // Export folders: relative ones must be refused; absolute ones only under this test's folder, so a
    // fuzzed path can never write into the machine's own folders.
    const exportDir = fc.oneof(
      strLike(200),
      fc.nat().map((n) => join(exportsDir, `e${n}`)),
      hostile(100).map((s) => join(exportsDir, s.replaceAll('..', '_').replaceAll('/', '_') || 'x')),
      fc.constant(exportsDir),
    );

    const searchBody = fc.record(
      {
        terms: fc.oneof(
          fc.array(
            fc.oneof(
              fc.record({ text: strLike(), weight: numLike }, { requiredKeys: [] }),
              fc.record({ imageId: idJson, weight: numLike }, { requiredKeys: [] }),
              fc.record({ text: strLike(), imageId: idJson }),
              fc.jsonValue({ maxDepth: 3 }),
            ),
            { maxLength: 20 },
          ),
          strLike(),
        ),
        uploadWeights: fc.oneof(fc.array(numLike, { maxLength: 6 }), numLike),
        limit: numLike,
        offset: numLike,
        folder: fc.oneof(strLike(), fc.constantFrom(photos, '/', '/etc', `${photos}/../..`)),
        after: strLike(100),
        before: strLike(100),
        format: fc.oneof(fc.array(strLike(20), { maxLength: 12 }), strLike(20)),
        sort: fc.oneof(fc.constantFrom('relevance', 'date-desc', 'date-asc'), strLike(20)),
        minScoreRatio: numLike,
      },
      { requiredKeys: [] },
    );

    const shapes: Record<string, fc.Arbitrary<unknown>> = {
      search: searchBody,
      labels: fc.record({ imageIds: fc.oneof(fc.array(idJson, { maxLength: 30 }), idJson), caption: strLike(1200) }, { requiredKeys: [] }),
      labelImport: fc.oneof(
        fc.record({ rows: fc.oneof(fc.array(fc.record({ photo: fc.oneof(idJson, strLike(), fc.constantFrom(...ids.map((i) => String(i)), join(photos, 'photo-0.jpg'))), caption: strLike(1200) }, { requiredKeys: [] }), { maxLength: 30 }), strLike()) }, { requiredKeys: [] }),
        fc.record({ folder: fc.oneof(strLike(), fc.constantFrom(photos, '/', tmp)), template: fc.oneof(strLike(), fc.constant('a photo of {folder}')) }, { requiredKeys: [] }),
      ),
      caption: fc.record({ caption: strLike(1200) }, { requiredKeys: [] }),
      train: fc.record({ epochs: numLike, batchSize: numLike, valFraction: numLike, seed: numLike, learningRate: numLike, patience: numLike }, { requiredKeys: [] }),
      rollback: fc.record({ to: fc.oneof(fc.constant('base'), idJson, strLike(50)) }, { requiredKeys: [] }),
      export: fc.record({ dir: exportDir }, { requiredKeys: [] }),
      roots: fc.record({ path: fc.oneof(strLike(), fc.constantFrom(photos, '/', '/etc')) }, { requiredKeys: [] }),
      none: fc.jsonValue({ maxDepth: 2 }),
    };

    const jsonType = fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'application/json; charset=utf-16',
      'application/json; charset=bogus',
      'application/merge-patch+json',
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data',
      'multipart/form-data; boundary=',
      '*/*',
      'image/png',
    );

    const safeBoundary = fc.stringMatching(/^[A-Za-z0-9'()+_,\-./:=?]{1,70}$/);
    const partArb: fc.Arbitrary<Part> = fc.record(
      {
        name: fc.oneof({ weight: 5, arbitrary: fc.constantFrom('image', 'query') }, { weight: 1, arbitrary: fc.constantFrom('image[]', 'file', '', 'images') }, { weight: 1, arbitrary: hostile(30) }),
        filename: fc.oneof(fc.constantFrom('a.jpg', 'x.png', '../../etc/passwd', 'a\u0000.jpg', '"quoted".jpg', '<img src=x>.png'), hostile(60)),
        contentType: fc.constantFrom('image/jpeg', 'image/png', 'text/plain', 'application/octet-stream', 'application/json', 'image/jpeg; charset=utf-8'),
        data: fc.oneof(
          { weight: 4, arbitrary: fc.constantFrom(...Object.values(images)) },
          { weight: 2, arbitrary: fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)) },
          { weight: 2, arbitrary: searchBody.map(toJson) },
          { weight: 1, arbitrary: hostile(2000) },
        ),
      },
      { requiredKeys: ['name', 'data'] },
    );
    const multipart = fc
      .record({
        boundary: fc.oneof(fc.constant('----clipdexFuzzBoundary'), safeBoundary),
        parts: fc.array(partArb, { maxLength: 7 }),
        close: fc.boolean(),
        cut: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
        header: fc.constantFrom('same', 'same', 'same', 'other', 'missing', 'quoted', 'form-urlencoded'),
      })
      .map(({ boundary, parts, close, cut, header }) => {
        let data = multipartBody(boundary, parts, close);
        if (cut !== undefined) data = data.subarray(0, Math.floor(data.length * cut));
        const contentType = {
          same: `multipart/form-data; boundary=${boundary}`,
          other: 'multipart/form-data; boundary=not-the-one-used',
          missing: 'multipart/form-data',
          quoted: `multipart/form-data; boundary="${boundary}"`,
          'form-urlencoded': 'application/x-www-form-urlencoded',
        }[header];
        return { contentType, data };
      });

    interface BodySpec {
      contentType?: string;
      data?: Buffer | string;
      encoding?: string;
    }
    const body = (shape: string): fc.Arbitrary<BodySpec | undefined> =>
      fc.oneof<fc.WeightedArbitrary<BodySpec | undefined>[]>(
        { weight: 8, arbitrary: shapes[shape]!.map((v) => ({ contentType: 'application/json', data: wtf8(toJson(v)) })) },
        { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => ({ contentType: 'application/json', data: JSON.stringify(v) ?? 'null' })) },
        { weight: 1, arbitrary: fc.constant(undefined) },
        { weight: 1, arbitrary: fc.tuple(jsonType, shapes[shape]!).map(([contentType, v]) => ({ contentType, data: wtf8(toJson(v)) })) },
        // Deep nesting: within the 64 kB limit and beyond it.
        {
          weight: 1,
          arbitrary: fc.tuple(fc.integer({ min: 1, max: 40_000 }), fc.constantFrom('[', '{"a":', '{"terms":[', '{"imageIds":')).map(([n, open]) => {
            const close = open === '[' ? ']' : open.endsWith('[') ? ']}' : '}';
            return { contentType: 'application/json', data: `${open.repeat(n)}1${close.repeat(n)}` };
          }),
        },
        // Huge arrays, in the field that takes an array and at the top.
        {
          weight: 1,
          arbitrary: fc.tuple(fc.integer({ min: 500, max: 40_000 }), fc.constantFrom('imageIds', 'terms', 'rows', 'uploadWeights', 'format', '')).map(([n, field]) => {
            const items = Array.from({ length: n }, (_, i) => (field === 'terms' ? '{"imageId":1}' : field === 'rows' ? `{"photo":${i},"caption":"c"}` : field === 'format' ? '"jpeg"' : String(i + 1)));
            const arr = `[${items.join(',')}]`;
            return { contentType: 'application/json', data: field ? `{"${field}":${arr},"caption":"c"}` : arr };
          }),
        },
        // Malformed JSON: cut short, trailing garbage, a BOM, lone surrogate escapes, or random bytes.
        {
          weight: 2,
          arbitrary: fc.tuple(shapes[shape]!, fc.nat(), fc.constantFrom('cut', 'trail', 'bom', 'escape', 'bytes')).chain(([v, n, how]): fc.Arbitrary<BodySpec> => {
            const text = toJson(v);
            if (how === 'bytes') return fc.uint8Array({ maxLength: 500 }).map((a) => ({ contentType: 'application/json', data: Buffer.from(a) }));
            const data = {
              cut: text.slice(0, n % (text.length + 1)),
              trail: `${text}}}garbage`,
              bom: `\ufeff${text}`,
              escape: `{"caption":"\\ud800\\u0000x","text":"\\udfff","q":"\\u"}`,
            }[how]!;
            return fc.constant({ contentType: 'application/json', data: wtf8(data) });
          }),
        },
        { weight: 2, arbitrary: multipart },
        // Compressed bodies: valid gzip, a lie about the encoding, an encoding nobody supports.
        {
          weight: 1,
          arbitrary: fc.tuple(shapes[shape]!, fc.constantFrom('gzip', 'gzip-lie', 'deflate-lie', 'br', 'compress', 'identity')).map(([v, enc]) => {
            const text = wtf8(toJson(v));
            if (enc === 'gzip') return { contentType: 'application/json', data: gzipSync(text), encoding: 'gzip' };
            return { contentType: 'application/json', data: text, encoding: enc.replace('-lie', '') };
          }),
        },
      );

    const queryKey = fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom('q', 'limit', 'offset', 'folder', 'after', 'before', 'format', 'sort', 'minScoreRatio', 'afterId', 'imageId', 'caption', 'token') },
      { weight: 1, arbitrary: fc.constantFrom('q[]', 'limit[0]', '__proto__', 'constructor', 'q[__proto__]', '', '=', '&') },
      { weight: 1, arbitrary: hostile(50) },
    );
    const queryValue = fc.oneof(
      { weight: 3, arbitrary: hostile(1000) },
      { weight: 2, arbitrary: fc.oneof(fc.integer({ min: -3, max: 3000 }), fc.double(), fc.constantFrom(0, -0, 2 ** 53 + 2, 1e21)).map(String) },
      { weight: 1, arbitrary: fc.constantFrom('red', 'a photo', photos, '/etc', '2024-01-01', '2024-13-45', '9999-99-99T99:99', 'jpeg,png', 'relevance', 'date-asc') },
    );
    const query = fc
      .tuple(fc.array(fc.tuple(queryKey, queryValue, fc.boolean()), { maxLength: 8 }), fc.boolean())
      .map(([pairs, bare]) => (pairs.length || bare ? `?${pairs.map(([k, v, raw]) => `${pct(k, raw)}=${pct(v, raw)}`).join('&')}` : ''));

    const headers = fc.record(
      {
        origin: fc.constantFrom(`http://127.0.0.1:${server.port}`, `http://localhost:${server.port}`, 'http://evil.example', 'null', 'not a url'),
        'sec-fetch-site': fc.constantFrom('same-origin', 'none', 'cross-site', 'same-site'),
        authorization: fc.oneof(fc.constantFrom('Bearer ', 'Bearer x', 'Basic Zm9vOmJhcg=='), fc.stringMatching(/^[ -~]{0,200}$/)),
        cookie: fc.oneof(fc.constantFrom('clipdex_token=%', 'clipdex_token=%E0%A4%A', 'a=b; clipdex_token'), fc.stringMatching(/^[ -~]{0,300}$/)),
        range: fc.constantFrom('bytes=0-0', 'bytes=-1', 'bytes=999999999-', 'bytes=abc', 'bytes=5-1', `bytes=${Array.from({ length: 200 }, (_, i) => `${i}-${i}`).join(',')}`),
        accept: fc.constantFrom('*/*', 'text/html', 'application/json', 'image/*', 'garbage'),
        'accept-encoding': fc.constantFrom('gzip', 'br', 'identity;q=0', '*;q=0'),
        'if-none-match': fc.constantFrom('*', 'W/"x"', '"'),
        'if-modified-since': fc.constantFrom('Thu, 01 Jan 1970 00:00:00 GMT', 'garbage'),
        host: fc.constantFrom(`127.0.0.1:${server.port}`, `localhost:${server.port}`, 'evil.example', '', `127.0.0.1:${server.port + 1}`),
      },
      { requiredKeys: [] },
    );
    // Most requests carry ordinary headers, so the guards let them through to the routes being fuzzed.
    const someHeaders = fc.oneof({ weight: 6, arbitrary: fc.constant({} as Record<string, string>) }, { weight: 1, arbitrary: headers });

    interface RouteSpec {
      name: string;
      methods: string[];
      path: fc.Arbitrary<string>;
      shape: string;
    }
    const withId = (f: (id: string) => string) => idSegment.map(f);
    const routes: RouteSpec[] = [
      { name: 'search', methods: ['GET', 'POST'], path: fc.constant('/api/search'), shape: 'search' },
      { name: 'browse', methods: ['GET'], path: fc.constant('/api/images'), shape: 'none' },
      { name: 'image', methods: ['GET'], path: withId((id) => `/api/images/${id}`), shape: 'none' },
      { name: 'similar', methods: ['GET'], path: withId((id) => `/api/images/${id}/similar`), shape: 'none' },
      { name: 'thumbnail', methods: ['GET'], path: withId((id) => `/api/images/${id}/thumbnail`), shape: 'none' },
      { name: 'file', methods: ['GET'], path: withId((id) => `/api/images/${id}/file`), shape: 'none' },
      { name: 'status', methods: ['GET'], path: fc.constant('/api/status'), shape: 'none' },
      { name: 'errors', methods: ['GET'], path: fc.constant('/api/errors'), shape: 'none' },
      { name: 'roots', methods: ['GET', 'POST'], path: fc.constant('/api/roots'), shape: 'roots' },
      { name: 'root', methods: ['DELETE'], path: withId((id) => `/api/roots/${id}`), shape: 'none' },
      { name: 'models', methods: ['GET'], path: fc.constant('/api/models'), shape: 'none' },
      { name: 'labels', methods: ['GET', 'POST'], path: fc.constant('/api/labels'), shape: 'labels' },
      { name: 'label-import', methods: ['POST'], path: fc.constant('/api/labels/import'), shape: 'labelImport' },
      { name: 'label', methods: ['PATCH', 'DELETE'], path: withId((id) => `/api/labels/${id}`), shape: 'caption' },
      { name: 'training', methods: ['GET', 'POST'], path: fc.constant('/api/training'), shape: 'train' },
      { name: 'adapters', methods: ['GET'], path: fc.constant('/api/adapters'), shape: 'none' },
      { name: 'activate', methods: ['POST'], path: withId((id) => `/api/adapters/${id}/activate`), shape: 'none' },
      { name: 'rollback', methods: ['POST'], path: fc.constant('/api/adapters/rollback'), shape: 'rollback' },
      { name: 'export', methods: ['POST'], path: withId((id) => `/api/adapters/${id}/export`), shape: 'export' },
      { name: 'openapi', methods: ['GET'], path: fc.constant('/api/openapi.json'), shape: 'none' },
      { name: 'events', methods: ['GET'], path: fc.constant('/api/events'), shape: 'none' },
      { name: 'unknown-api', methods: ['GET', 'POST'], path: hostile(100).map((s) => `/api/${pct(s, true)}`), shape: 'none' },
      { name: 'web', methods: ['GET'], path: fc.oneof(fc.constantFrom('/', '/index.html', '/js/main.js', '/styles.css', '/..%2f..%2fpackage.json', '/%2e%2e/%2e%2e/etc/passwd', '/.git/config', '/js/..%5c..%5cpackage.json'), hostile(100).map((s) => `/${pct(s, true)}`)), shape: 'none' },
    ];
    const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

    return fc.constantFrom(...routes).chain((route) =>
      fc
        .record({
          method: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...route.methods) }, { weight: 1, arbitrary: fc.constantFrom(...METHODS) }),
          path: route.path,
          query: fc.oneof({ weight: route.methods.includes('GET') ? 4 : 1, arbitrary: query }, { weight: 1, arbitrary: fc.constant('') }),
          body: body(route.shape),
          headers: someHeaders,
        })
        .map(({ method, path, query: qs, body: b, headers: h }) => {
          const req: RawRequest = { method, path: `${path}${qs}`.slice(0, 12_000), headers: { ...h } };
          if (method !== 'GET' && method !== 'HEAD' && b) {
            if (b.data !== undefined) req.body = b.data;
            if (b.contentType) req.headers!['content-type'] = b.contentType;
            if (b.encoding) req.headers!['content-encoding'] = b.encoding;
          }
          return { route: route.name, req };
        }),
    );
  }

  /** What is wrong with this answer, or null. */
  function problemWith(req: RawRequest, res: RawResponse): string | null {
    const what = `${req.method} ${req.path.slice(0, 300)} [${String(req.headers?.['content-type'] ?? '')}] (${req.body?.length ?? 0} bytes)`;
    // The one 5xx that is an answer, not a failure: this server was started without indexing (roots routes).
    const unavailable = res.status === 503 && (jsonOf(res.body) as { error?: { code?: string } } | undefined)?.error?.code === 'INGEST_UNAVAILABLE' && /^\/api\/roots/i.test(req.path);
    if (res.status >= 500 && !unavailable) return `${res.status} for ${what}: ${res.body.toString().slice(0, 300)}`;
    if (res.ms > MAX_MS) return `${res.ms.toFixed(0)} ms for ${what}`;
    const lower = req.path.toLowerCase();
    const isApi = lower === '/api' || lower.startsWith('/api/') || lower.startsWith('/api?');
    if (isApi && res.status >= 400 && req.method !== 'HEAD') {
      if (!String(res.headers['content-type'] ?? '').startsWith('application/json')) return `${res.status} without a JSON body (${String(res.headers['content-type'])}) for ${what}`;
      if (!isErrorBody(jsonOf(res.body))) return `${res.status} body is not {error:{code,message}} for ${what}: ${res.body.toString().slice(0, 300)}`;
    }
    if (req.path.startsWith('/api/events') && req.method === 'GET' && res.status === 200 && !res.body.toString().includes('event: status')) return `the event stream sent no status for ${what}`;
    return null;
  }

  async function check(route: string, req: RawRequest): Promise<void> {
    let res: RawResponse;
    try {
      res = await rawRequest(server.port, req, MAX_MS * 3);
    } catch (err) {
      problems.push(`no answer (${(err as Error).message}) to ${req.method} ${req.path.slice(0, 200)}`);
      throw err;
    }
    tally.record(route, req, res);
    const problem = problemWith(req, res);
    if (problem) {
      problems.push(problem);
      throw new Error(problem);
    }
  }

  it(`answers ${SEQUENTIAL_RUNS} fuzzed requests one after another: no 5xx, JSON errors, each within ${MAX_MS} ms`, async () => {
    const arb = arbitraries();
    await fc.assert(
      fc.asyncProperty(arb, ({ route, req }) => check(route, req)),
      { numRuns: SEQUENTIAL_RUNS, seed: SEED, endOnFailure: false, markInterruptAsFailure: true },
    );
    expect(problems).toEqual([]);
  }, STRESS ? 3_600_000 : 120_000);

  it(`answers ${CONCURRENT_RUNS} fuzzed requests sent 16 at a time`, async () => {
    const samples = fc.sample(arbitraries(), { numRuns: CONCURRENT_RUNS, seed: SEED + 1 });
    const failures: string[] = [];
    await pool(
      samples.map(({ route, req }) => () => check(route, req).catch((err: Error) => void failures.push(err.message))),
      16,
    );
    expect(failures).toEqual([]);
  }, STRESS ? 1_800_000 : 120_000);

  it('named hostile uploads: 33 MB, 5 files, a 20000×20000 PNG bomb, a lying header, text named .jpg, broken framing', async () => {
    const boundary = '----clipdexNamedCase';
    const mp = (parts: Part[], close = true) => ({ 'content-type': `multipart/form-data; boundary=${boundary}` , body: multipartBody(boundary, parts, close) });
    const bomb = await pngBomb(20_000, 20_000);
    expect(bomb.length).toBeLessThan(1_000_000); // ~400 KB that would decode to 400 MB
    const cases: { name: string; req: RawRequest; status: number; code?: string }[] = [];
    const add = (name: string, m: { 'content-type': string; body: Buffer }, status: number, code?: string) =>
      cases.push({ name, req: { method: 'POST', path: '/api/search', headers: { 'content-type': m['content-type'] }, body: m.body }, status, ...(code ? { code } : {}) });
    add('33 MB file', mp([{ name: 'image', filename: 'big.jpg', contentType: 'image/jpeg', data: Buffer.alloc(33 * 1024 * 1024, 0xff) }]), 413, 'UPLOAD_TOO_LARGE');
    add('5 files', mp(Array.from({ length: 5 }, (_, i) => ({ name: 'image', filename: `f${i}.jpg`, contentType: 'image/jpeg', data: images.jpeg! }))), 400, 'INVALID_UPLOAD');
    add('PNG bomb 20000×20000', mp([{ name: 'image', filename: 'bomb.png', contentType: 'image/png', data: bomb }]), 413, 'IMAGE_TOO_LARGE');
    add('PNG header claiming 20000×20000', mp([{ name: 'image', filename: 'liar.png', contentType: 'image/png', data: images.lyingPng! }]), 413, 'IMAGE_TOO_LARGE');
    add('text file named .jpg', mp([{ name: 'image', filename: 'notes.jpg', contentType: 'image/jpeg', data: 'a shopping list' }]), 415, 'NOT_AN_IMAGE');
    add('empty file', mp([{ name: 'image', filename: 'empty.jpg', contentType: 'image/jpeg', data: Buffer.alloc(0) }]), 400, 'EMPTY_FILE');
    add('truncated JPEG', mp([{ name: 'image', filename: 'cut.jpg', contentType: 'image/jpeg', data: images.truncated! }]), 422, 'DECODE_FAILED');
    const whole = mp([{ name: 'image', filename: 'a.jpg', contentType: 'image/jpeg', data: images.jpeg! }]);
    add('body cut inside the file', { ...whole, body: whole.body.subarray(0, whole.body.length - 200) }, 400);
    add('no closing boundary', mp([{ name: 'image', filename: 'a.jpg', contentType: 'image/jpeg', data: images.jpeg! }], false), 400);
    add('boundary missing from the header', { 'content-type': 'multipart/form-data', body: whole.body }, 400);
    add('header names another boundary', { 'content-type': 'multipart/form-data; boundary=other', body: whole.body }, 400);
    add('multipart body sent as JSON', { 'content-type': 'application/json', body: whole.body }, 400, 'INVALID_JSON');
    add('query field not JSON', mp([{ name: 'query', data: '{terms:' }, { name: 'image', filename: 'a.jpg', data: images.jpeg! }]), 400, 'INVALID_ARGUMENT');
    add('13 parts', mp(Array.from({ length: 13 }, (_, i) => ({ name: `f${i}`, data: 'x' }))), 400, 'INVALID_UPLOAD');
    add('a 70 kB field', mp([{ name: 'query', data: `{"terms":[{"text":"${'a'.repeat(70_000)}"}]}` }]), 400, 'INVALID_UPLOAD');
    // The control: a well-formed upload of a real picture is searched.
    add('a real JPEG (control)', whole, 200);
    for (const c of cases) {
      const res = await rawRequest(server.port, c.req, 30_000);
      tally.record(`named: ${c.name}`, c.req, res);
      const body = jsonOf(res.body);
      expect(res.status, `${c.name}: ${res.body.toString().slice(0, 300)}`).toBe(c.status);
      if (c.status >= 400) expect(isErrorBody(body), c.name).toBe(true);
      if (c.code) expect((body as { error: { code: string } }).error.code, c.name).toBe(c.code);
      expect(res.ms, c.name).toBeLessThan(MAX_MS);
    }
  }, 120_000);

  it('named hostile bodies and URLs: a gzip bomb, 100,000-deep nesting, a 20 kB URL, bad percent-encoding in the path', async () => {
    const json = (data: Buffer | string, extra: Record<string, string> = {}): RawRequest => ({ method: 'POST', path: '/api/search', headers: { 'content-type': 'application/json', ...extra }, body: data });
    const cases: { name: string; req: RawRequest; status: number[] }[] = [
      { name: 'gzip bomb (20 MB of spaces in 20 kB)', req: json(gzipSync(Buffer.alloc(20 << 20, 0x20)), { 'content-encoding': 'gzip' }), status: [413] },
      { name: '100,000-deep arrays', req: json(`${'['.repeat(100_000)}${']'.repeat(100_000)}`), status: [413] },
      { name: '30,000-deep arrays within the size limit', req: json(`${'['.repeat(30_000)}${']'.repeat(30_000)}`), status: [400] },
      { name: '30,000-deep objects inside terms', req: json(`{"terms":[${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}]}`), status: [400] },
      { name: 'lone surrogates and NUL in a phrase', req: json('{"terms":[{"text":"\\ud800\\u0000\\udfff x"}]}'), status: [200] },
      { name: 'Infinity as a limit (1e999)', req: json('{"terms":[{"text":"red"}],"limit":1e999}'), status: [400] },
      { name: 'a 20 kB URL', req: { method: 'GET', path: `/api/search?q=${'a'.repeat(20_000)}` }, status: [431] },
      { name: 'an empty Host header', req: { method: 'GET', path: '/api/status', headers: { host: '' } }, status: [403] },
      { name: 'invalid UTF-8 in the path id', req: { method: 'GET', path: '/api/images/%ED%A0%80/similar' }, status: [400] },
      { name: 'a bare % in the path', req: { method: 'GET', path: '/api/images/%/file' }, status: [400] },
      { name: 'invalid UTF-8 in the query', req: { method: 'GET', path: '/api/search?q=%ED%A0%80%FF%00' }, status: [200, 400] },
      { name: 'the same parameter twice', req: { method: 'GET', path: '/api/search?q=a&q=b&limit=1&limit=2' }, status: [400] },
      { name: 'a phrase of 1001 characters', req: { method: 'GET', path: `/api/search?q=${'x'.repeat(1001)}` }, status: [400] },
    ];
    for (const c of cases) {
      const res = await rawRequest(server.port, c.req, 30_000);
      tally.record(`named: ${c.name}`, c.req, res);
      expect(c.status, `${c.name}: ${res.status} ${res.body.toString().slice(0, 300)}`).toContain(res.status);
      expect(res.ms, c.name).toBeLessThan(MAX_MS);
      if (res.status >= 400) expect(isErrorBody(jsonOf(res.body)), `${c.name}: ${res.body.toString().slice(0, 200)}`).toBe(true);
    }
  }, 60_000);

  it(`answers requests Node's HTTP parser refuses with the same JSON error: named cases and ${RAW_RUNS} mutated byte streams`, async () => {
    const port = server.port;
    const host = `Host: 127.0.0.1:${port}\r\n`;
    const valid = `GET /api/search?q=red HTTP/1.1\r\n${host}Connection: close\r\n\r\n`;
    const named: [string, Buffer | string][] = [
      ['NUL in the request line', `GET /api/status\0 HTTP/1.1\r\n${host}\r\n`],
      ['raw UTF-8 in the URL', Buffer.concat([Buffer.from('GET /api/search?q='), Buffer.from('café 🦊'), Buffer.from(` HTTP/1.1\r\n${host}Connection: close\r\n\r\n`)])],
      ['an unknown method', `BREW /api/status HTTP/1.1\r\n${host}\r\n`],
      ['HTTP/9.9', `GET /api/status HTTP/9.9\r\n${host}\r\n`],
      ['no HTTP version', `GET /api/status\r\n${host}\r\n`],
      ['a header without a colon', `GET /api/status HTTP/1.1\r\n${host}not a header\r\n\r\n`],
      ['NUL in a header value', `GET /api/status HTTP/1.1\r\n${host}X-A: a\0b\r\n\r\n`],
      ['a 20 kB header', `GET /api/status HTTP/1.1\r\n${host}X-Big: ${'b'.repeat(20_000)}\r\n\r\n`],
      ['a 20 kB URL', `GET /api/search?q=${'a'.repeat(20_000)} HTTP/1.1\r\n${host}\r\n`],
      ['Content-Length and chunked together', `POST /api/search HTTP/1.1\r\n${host}Content-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
      ['a negative Content-Length', `POST /api/search HTTP/1.1\r\n${host}Content-Length: -5\r\n\r\n`],
      ['two different Content-Lengths', `POST /api/search HTTP/1.1\r\n${host}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}`],
      ['a broken chunk size', `POST /api/search HTTP/1.1\r\n${host}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`],
      ['bare LF line ends', `GET /api/status HTTP/1.1\n${host.replace('\r\n', '\n')}\n`],
      ['garbage', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03])],
      ['an absolute-form URI', `GET http://evil.example/api/status HTTP/1.1\r\n${host}Connection: close\r\n\r\n`],
      ['no Host header', 'GET /api/status HTTP/1.1\r\nConnection: close\r\n\r\n'],
      ['an asterisk target', `OPTIONS * HTTP/1.1\r\n${host}Connection: close\r\n\r\n`],
    ];
    const mutated = fc.sample(
      fc.tuple(fc.nat(valid.length), fc.nat(valid.length), fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.constantFrom('insert', 'replace', 'cut')).map(([at, len, bytes, how]) => {
        const v = Buffer.from(valid);
        const b = Buffer.from(bytes);
        if (how === 'cut') return Buffer.concat([v.subarray(0, at), v.subarray(Math.min(v.length, at + len))]);
        if (how === 'insert') return Buffer.concat([v.subarray(0, at), b, v.subarray(at)]);
        return Buffer.concat([v.subarray(0, at), b, v.subarray(Math.min(v.length, at + b.length))]);
      }),
      { numRuns: RAW_RUNS, seed: SEED + 2 },
    );
    const cases: [string, Buffer][] = [...named.map(([n, b]) => [n, Buffer.isBuffer(b) ? b : Buffer.from(b, 'latin1')] as [string, Buffer]), ...mutated.map((b, i) => [`mutation ${i}: ${JSON.stringify(b.toString('latin1')).slice(0, 200)}`, b] as [string, Buffer])];
    const silent: string[] = [];
    const byStatus = new Map<number, number>();
    const results = await pool(cases.map(([name, bytes]) => async () => ({ name, bytes, answer: await rawSocket(port, bytes, 1_500) })), 8);
    for (const { name, bytes, answer } of results) {
      byStatus.set(answer.status, (byStatus.get(answer.status) ?? 0) + 1);
      // Waits on unfinished requests are the test's own quiet timer, not answer times.
      if (answer.status !== 0) tally.record('raw socket', { method: 'RAW', path: name, body: bytes }, { status: answer.status, headers: {}, body: answer.body, ms: answer.ms });
      // A request cut before the blank line that ends its head is one the server is right to wait for
      // (the test hangs up after 1.5 s of quiet); anything complete must be answered.
      if (answer.status === 0) {
        // (Empty lines before the request line are skipped by HTTP parsers, as RFC 9112 asks.)
        const text = bytes.toString('latin1').replace(/^[\r\n]+/, '');
        if (text.includes('\r\n\r\n') || text.includes('\n\n')) silent.push(name);
        continue;
      }
      expect(answer.status, name).toBeLessThan(500);
      // The web page's own 404 (a target such as `*` that the API does not own) is HTML; every other refusal is the API's JSON.
      const target = bytes.toString('latin1').split(/\r?\n/)[0]?.split(' ')[1] ?? '';
      const webNotFound = answer.status === 404 && !/^(https?:\/\/[^/]*)?\/api(\/|$|\?)/i.test(target);
      if (answer.status >= 400 && !webNotFound && !/^HEAD /.test(bytes.toString('latin1'))) {
        expect(answer.head, name).toMatch(/\r\ncontent-type: application\/json/i);
        expect(isErrorBody(jsonOf(answer.body)), `${name}: ${answer.body.toString().slice(0, 200)}`).toBe(true);
      }
    }
    expect(silent).toEqual([]);
    console.log(`[hostile-api-fuzz] raw socket: ${cases.length} byte streams, statuses ${[...byStatus].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}:${n}`).join(' ')} (0: a request cut before its head ended, hung up by the test)`);
    // The parser's refusals did not take the server down.
    expect((await rawRequest(port, { method: 'GET', path: '/api/status' })).status).toBe(200);
  }, STRESS ? 600_000 : 60_000);

  it('opens and drops the event stream 100 times (and HEADs it 20 times) without leaking clients', async () => {
    const before = server.events.clientCount;
    for (let i = 0; i < 100; i++) {
      const res = await rawRequest(server.port, { method: 'GET', path: '/api/events' });
      tally.record('named: event stream', { method: 'GET', path: '/api/events' }, res);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
      expect(res.body.toString()).toMatch(/event: status\ndata: \{/);
    }
    // HEAD gets the stream's headers and nothing that stays open.
    for (let i = 0; i < 20; i++) {
      const res = await rawRequest(server.port, { method: 'HEAD', path: '/api/events' });
      tally.record('named: event stream HEAD', { method: 'HEAD', path: '/api/events' }, res);
      expect(res.status).toBe(200);
    }
    // Dropped streams are forgotten once their sockets close.
    const deadline = Date.now() + 5_000;
    while (server.events.clientCount > before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(server.events.clientCount).toBe(before);
  });

  it('still works afterwards: status, search by text and by photo, the same photos, no internal error logged', async () => {
    // Let a job started by the fuzzer (rollback, activation, training) finish before looking.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const t = jsonOf((await rawRequest(server.port, { method: 'GET', path: '/api/training' })).body) as { running: boolean };
      if (!t.running || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const status = await rawRequest(server.port, { method: 'GET', path: '/api/status' });
    expect(status.status).toBe(200);
    expect(jsonOf(status.body)).toMatchObject({ indexed: 3, failed: 1, model: { ready: true } });
    const search = jsonOf((await rawRequest(server.port, { method: 'GET', path: '/api/search?q=red&limit=10' })).body) as { results: { id: number }[] };
    expect(search.results.map((r) => r.id).sort()).toEqual(ids.slice(0, 3).sort());
    const similar = jsonOf((await rawRequest(server.port, { method: 'GET', path: `/api/images/${ids[0]}/similar?limit=10` })).body) as { results: { id: number }[] };
    expect(similar.results.map((r) => r.id).sort()).toEqual(ids.slice(1, 3).sort());
    expect(serverLog.filter((l) => l.includes('internal error') || l.includes('failed:'))).toEqual([]);
    // The report line RELIABILITY.md quotes.
    console.log(`[hostile-api-fuzz] seed ${SEED}\n  ${tally.summary()}`);
    expect(tally.serverErrors).toBe(0);
    expect(tally.requests).toBeGreaterThanOrEqual(SEQUENTIAL_RUNS + CONCURRENT_RUNS);
  }, 90_000);
});
