import { isAbsolute, join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response } from 'express';
import helmet from 'helmet';
import multer from 'multer';
import { ClipdexError, errorMessage } from '../errors.js';
import type { Library } from '../library/library.js';
import { listManifests } from '../model/model-registry.js';
import { QueryEngine, resultFromRecord, type QueryTerm, type SearchRequest } from '../search/query-engine.js';
import { imageFilterOf, type FilterParams } from '../validation/search-params.js';
import type { ImageFilter } from '../store/image-filter.js';
import {
  addLabelsBody,
  addRootBody,
  combinedSearchBody,
  editLabelBody,
  errorsQuery,
  exportBody,
  idParam,
  importLabelsBody,
  labelsQuery,
  rollbackBody,
  similarQuery,
  browseQuery,
  textSearchQuery,
  trainBody,
  versionParam,
} from './api-schemas.js';
import { AdapterService } from '../train/adapter-service.js';
import { folderLabelRows, importLabels } from '../train/label-import.js';
import { TrainingJobs } from './training-jobs.js';
import { EventHub } from './event-hub.js';
import { errorHandler, sendError, statusFor } from './http-errors.js';
import { folderProblem } from './folder-check.js';
import { previewSplit, splitPreviewQuery } from './split-preview.js';
import { DEFAULT_UPLOAD_BYTES_IN_FLIGHT, uploadAdmission, type UploadLimits } from './upload-limits.js';
import { ByteBudget } from '../util/byte-budget.js';
import { openApiDocument } from './openapi.js';
import { openPhotoFile } from './photo-file.js';
import { hostAndOriginGuard, tokenGuard, type AccessOptions } from './security.js';
import type { IngestService } from './ingest-service.js';
import { statusOf } from './status-service.js';

export interface AppOptions {
  library: Library;
  access: AccessOptions;
  ingest?: IngestService;
  /** Largest upload accepted for search by image. Default 32 MB. */
  maxUploadBytes?: number;
  /** Pixel limit for uploaded images (decompression bombs). Default 60 MP. */
  maxUploadPixels?: number;
  /** Bytes of uploads received and decoded at once; past it an upload gets 503 UPLOADS_BUSY with Retry-After. Default 64 MB. */
  maxUploadBytesInFlight?: number;
  /** Event-stream (SSE) clients at once; past it 503 with Retry-After. Default 64. */
  maxEventClients?: number;
  /** Unsent event-stream bytes a client may have queued before it is disconnected as not reading. Default 1 MiB. */
  maxEventBufferedBytes?: number;
  log?: (message: string) => void;
  /** The web UI folder; default the package's web/. */
  webDir?: string;
}

export const DEFAULT_WEB_DIR = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..', 'web');

const CONTENT_TYPES: Record<string, string> = {
  jpeg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  gif: 'image/gif',
  tiff: 'image/tiff',
  bmp: 'image/bmp',
  heic: 'image/heic',
  avif: 'image/avif',
};

/** An async route whose rejections reach the error handler. */
function route(fn: (req: Request, res: Response) => Promise<unknown> | unknown) {
  return (req: Request, res: Response, next: NextFunction) => {
    Promise.resolve()
      .then(() => fn(req, res))
      .catch(next);
  };
}

function pageOf<T extends { limit?: number | undefined; offset?: number | undefined; sort?: SearchRequest['sort'] | undefined; minScoreRatio?: number | undefined }>(o: T) {
  return {
    ...(o.limit !== undefined ? { limit: o.limit } : {}),
    ...(o.offset !== undefined ? { offset: o.offset } : {}),
    ...(o.sort !== undefined ? { sort: o.sort } : {}),
    ...(o.minScoreRatio !== undefined ? { minScoreRatio: o.minScoreRatio } : {}),
  };
}

export function createApp(options: AppOptions): { app: express.Express; events: EventHub; engine: QueryEngine; jobs: TrainingJobs } {
  const { library } = options;
  const log = options.log ?? (() => {});
  const engine = new QueryEngine(library, { maxPixels: options.maxUploadPixels ?? 60_000_000 });
  const events = new EventHub({
    ...(options.maxEventClients !== undefined ? { maxClients: options.maxEventClients } : {}),
    ...(options.maxEventBufferedBytes !== undefined ? { maxBufferedBytes: options.maxEventBufferedBytes } : {}),
  });
  const adapters = new AdapterService(library);
  const jobs = new TrainingJobs(adapters, events, log);
  options.ingest?.onEvent((e) => events.publish(e.type, e));
  const uploadLimits: UploadLimits = { fileBytes: options.maxUploadBytes ?? 32 * 1024 * 1024, files: 4, fields: 8, fieldBytes: 64 * 1024 };
  const upload = multer({
    storage: multer.memoryStorage(),
    limits: { fileSize: uploadLimits.fileBytes, files: uploadLimits.files, fields: uploadLimits.fields, fieldSize: uploadLimits.fieldBytes, parts: 12 },
  });
  // Uploads are held in memory while they are received and decoded: their total is capped (upload-limits.ts).
  const admitUpload = uploadAdmission(new ByteBudget(options.maxUploadBytesInFlight ?? DEFAULT_UPLOAD_BYTES_IN_FLIGHT), uploadLimits);

  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  app.use(
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'self'"],
          imgSrc: ["'self'", 'blob:', 'data:'],
          scriptSrc: ["'self'"],
          styleSrc: ["'self'"],
          connectSrc: ["'self'"],
          objectSrc: ["'none'"],
          baseUri: ["'none'"],
          frameAncestors: ["'none'"],
          formAction: ["'self'"],
        },
      },
      crossOriginResourcePolicy: { policy: 'same-origin' },
      referrerPolicy: { policy: 'no-referrer' },
    }),
  );
  app.use(hostAndOriginGuard(options.access));
  app.use(tokenGuard(options.access.token));
  app.use('/api', express.json({ limit: '64kb' }));

  app.get('/api/openapi.json', (_req, res) => res.json(openApiDocument()));

  app.get(
    '/api/search',
    route(async (req, res) => {
      const q = textSearchQuery.parse(req.query);
      res.json(await engine.search({ terms: [{ text: q.q }], ...pageOf(q), ...optionalFilter(q) }));
    }),
  );

  const uploadImages = upload.array('image', 4);
  app.post(
    '/api/search',
    admitUpload,
    (req, res, next) => uploadImages(req, res, (err?: unknown) => next(malformedUpload(err))),
    route(async (req, res) => {
      // Multipart: the JSON query travels in a `query` field beside the files; otherwise the body is the query.
      const raw = req.is('multipart/form-data') ? parseQueryField(req.body?.query) : req.body;
      const body = combinedSearchBody.parse(raw ?? {});
      const files = (req.files as Express.Multer.File[] | undefined) ?? [];
      const terms: QueryTerm[] = [...body.terms];
      files.forEach((f, i) => terms.push({ image: f.buffer, weight: body.uploadWeights?.[i] ?? 1 }));
      if (terms.length === 0) throw new ClipdexError('INVALID_ARGUMENT', 'a search needs at least one term: a phrase, a photo id or an uploaded image');
      res.json(await engine.search({ terms, ...pageOf(body), ...optionalFilter({ ...body }) }));
    }),
  );

  app.get(
    '/api/images',
    route((req, res) => {
      const q = browseQuery.parse(req.query);
      res.json(engine.browse({ ...optionalFilter(q), ...(q.sort ? { sort: q.sort } : {}), ...(q.limit !== undefined ? { limit: q.limit } : {}), ...(q.offset !== undefined ? { offset: q.offset } : {}) }));
    }),
  );

  app.get(
    '/api/images/:id',
    route((req, res) => {
      const { id } = idParam.parse(req.params);
      const image = library.images.get(id);
      if (!image) return sendError(res, 404, 'NOT_FOUND', `no photo with id ${id}`);
      const { score: _score, ...meta } = resultFromRecord(image, 0);
      res.json({ ...meta, status: image.status, errorCode: image.errorCode, errorMessage: image.errorMessage, contentHash: image.contentHash, rootId: image.rootId });
    }),
  );

  app.get(
    '/api/images/:id/similar',
    route(async (req, res) => {
      const { id } = idParam.parse(req.params);
      const q = similarQuery.parse(req.query);
      res.json(await engine.search({ terms: [{ imageId: id }], ...pageOf(q), ...optionalFilter(q) }));
    }),
  );

  app.get(
    '/api/images/:id/thumbnail',
    route(async (req, res) => {
      const { id } = idParam.parse(req.params);
      const image = library.images.get(id);
      if (!image?.contentHash || !(await library.thumbnails.has(image.contentHash))) {
        return sendError(res, 404, 'NOT_FOUND', `no thumbnail for photo ${id}`);
      }
      res.setHeader('Cache-Control', 'private, max-age=31536000, immutable');
      res.type('image/webp');
      res.sendFile(library.thumbnails.path(image.contentHash), { dotfiles: 'allow' });
    }),
  );

  app.get(
    '/api/images/:id/file',
    route(async (req, res) => {
      const { id } = idParam.parse(req.params);
      const image = library.images.get(id);
      if (!image) return sendError(res, 404, 'NOT_FOUND', `photo ${id} is not available`);
      // Only the file that was indexed, from the folder that was chosen (photo-file.ts); never a stand-in.
      const file = await openPhotoFile(library, image);
      if (!file.ok) return sendError(res, file.status, file.code, file.message, { id });
      res.setHeader('Cache-Control', 'private, no-cache');
      res.setHeader('Content-Disposition', `inline; filename*=UTF-8''${encodeURIComponent(file.realPath.split(sep).pop() ?? 'photo')}`);
      res.setHeader('Content-Length', String(file.size));
      res.type(CONTENT_TYPES[image.format ?? ''] ?? 'application/octet-stream');
      const stream = file.handle.createReadStream();
      stream.on('error', (err) => res.destroy(err));
      res.on('close', () => stream.destroy());
      stream.pipe(res);
    }),
  );

  app.get(
    '/api/status',
    route((_req, res) => res.json(statusOf(options))),
  );

  app.get(
    '/api/errors',
    route((req, res) => {
      const q = errorsQuery.parse(req.query);
      const limit = q.limit ?? 100;
      const rows = library.images.listByStatus('error', limit + 1, q.afterId ?? 0);
      res.json({
        errors: rows.slice(0, limit).map((r) => ({ id: r.id, path: r.path, code: r.errorCode, message: r.errorMessage, updatedAt: r.updatedAt })),
        nextAfterId: rows.length > limit ? rows[limit - 1]!.id : null,
      });
    }),
  );

  app.get('/api/roots', (_req, res) => res.json({ roots: library.roots.list() }));
  app.post(
    '/api/roots',
    route(async (req, res) => {
      const { path } = addRootBody.parse(req.body);
      if (!options.ingest) return sendError(res, 503, 'INGEST_UNAVAILABLE', 'this server does not index folders');
      if (!isAbsolute(path)) throw new ClipdexError('INVALID_ARGUMENT', 'the folder must be an absolute path');
      // A missing folder or a file: a sentence for the page, not the file system's `ENOENT: … stat`.
      const problem = await folderProblem(path);
      if (problem) return sendError(res, problem.status, problem.code, problem.message, { path });
      res.status(201).json(await options.ingest.addRoot(path));
    }),
  );
  app.post(
    '/api/roots/:id/confirm',
    route(async (req, res) => {
      const { id } = idParam.parse(req.params);
      if (!options.ingest?.confirmRoot) return sendError(res, 503, 'INGEST_UNAVAILABLE', 'this server does not index folders');
      const root = await options.ingest.confirmRoot(id);
      if (!root) return sendError(res, 404, 'NOT_FOUND', `no root with id ${id}`);
      res.json(root);
    }),
  );
  app.delete(
    '/api/roots/:id',
    route(async (req, res) => {
      const { id } = idParam.parse(req.params);
      if (!options.ingest) return sendError(res, 503, 'INGEST_UNAVAILABLE', 'this server does not index folders');
      if (!(await options.ingest.removeRoot(id))) return sendError(res, 404, 'NOT_FOUND', `no root with id ${id}`);
      res.status(204).end();
    }),
  );

  app.get(
    '/api/models',
    route(async (_req, res) => {
      const manifests = await listManifests();
      res.json({
        active: library.modelRef,
        loaded: library.loaded ? { key: library.loaded.key, dim: library.loaded.model.dim } : null,
        models: manifests.map((m) => ({ id: m.id, description: m.description, supported: m.supported, embeddingDim: m.embeddingDim })),
      });
    }),
  );

  // ---- labels (image/caption pairs the trainer learns from) ----
  app.get(
    '/api/labels',
    route((req, res) => {
      const q = labelsQuery.parse(req.query);
      const limit = q.limit ?? 200;
      const rows = library.pairs.page({ imageId: q.imageId ?? null, caption: q.caption ?? null }, limit + 1, q.afterId ?? 0);
      const captions = library.pairs.captions();
      res.json({
        labels: rows.slice(0, limit),
        nextAfterId: rows.length > limit ? rows[limit - 1]!.id : null,
        counts: library.pairs.count(),
        captions,
      });
    }),
  );
  app.post(
    '/api/labels',
    route((req, res) => {
      const { imageIds, caption } = addLabelsBody.parse(req.body);
      const report = importLabels(library, imageIds.map((photo) => ({ photo, caption })));
      if (report.added + report.duplicates === 0) {
        // Nothing labeled: the request fails as its first photo did (unknown: 404; failed to index: 409).
        const first = report.problems[0];
        const code = first?.code === 'PHOTO_FAILED' ? 'PHOTO_FAILED' : 'NOT_FOUND';
        return sendError(res, statusFor(code), code, first?.reason ?? 'no such photos', { problems: report.problems });
      }
      res.status(201).json(report);
    }),
  );
  app.post(
    '/api/labels/import',
    route((req, res) => {
      const body = importLabelsBody.parse(req.body);
      if ('folder' in body && !isAbsolute(body.folder)) throw new ClipdexError('INVALID_ARGUMENT', 'the folder must be an absolute path');
      const rows = 'rows' in body ? body.rows : folderLabelRows(library, body.folder, body.template);
      if ('folder' in body && rows.length === 0) return sendError(res, 404, 'NOT_FOUND', `no indexed photos under ${body.folder}`);
      res.status(201).json(importLabels(library, rows));
    }),
  );
  app.patch(
    '/api/labels/:id',
    route((req, res) => {
      const { id } = idParam.parse(req.params);
      const { caption } = editLabelBody.parse(req.body);
      const pair = library.pairs.update(id, caption);
      if (!pair) return sendError(res, 404, 'NOT_FOUND', `no label with id ${id}`);
      res.json(pair);
    }),
  );
  app.delete(
    '/api/labels/:id',
    route((req, res) => {
      const { id } = idParam.parse(req.params);
      if (!library.pairs.remove(id)) return sendError(res, 404, 'NOT_FOUND', `no label with id ${id}`);
      res.status(204).end();
    }),
  );

  // ---- training and adapters ----
  app.get('/api/training', (_req, res) => res.json(jobs.state()));
  app.get(
    '/api/training/split',
    route((req, res) => {
      const q = splitPreviewQuery.parse(req.query);
      res.json(previewSplit(library, q.valFraction, q.seed));
    }),
  );
  app.post(
    '/api/training',
    route((req, res) => {
      const body = trainBody.parse(req.body ?? {});
      library.requireModel();
      res.status(202).json(jobs.train(body));
    }),
  );
  app.get(
    '/api/adapters',
    route((_req, res) => {
      res.json(adapters.list());
    }),
  );
  app.post(
    '/api/adapters/:version/activate',
    route((req, res) => {
      const { version } = versionParam.parse(req.params);
      res.status(202).json(jobs.activate(version));
    }),
  );
  app.post(
    '/api/adapters/rollback',
    route((req, res) => {
      const { to } = rollbackBody.parse(req.body ?? {});
      res.status(202).json(jobs.rollback(to));
    }),
  );
  app.post(
    '/api/adapters/:version/export',
    route(async (req, res) => {
      const { version } = versionParam.parse(req.params);
      const { dir } = exportBody.parse(req.body ?? {});
      if (dir !== undefined && !isAbsolute(dir)) throw new ClipdexError('INVALID_ARGUMENT', 'the export folder must be an absolute path');
      res.status(201).json(await adapters.export(version, dir));
    }),
  );

  app.get('/api/events', (req, res) => events.attach(req, res, () => statusOf(options)));

  app.use('/api', (_req, res) => sendError(res, 404, 'NOT_FOUND', 'no such API endpoint; see /api/openapi.json'));

  const webDir = options.webDir ?? DEFAULT_WEB_DIR;
  app.use(express.static(webDir, { index: 'index.html', dotfiles: 'ignore', maxAge: 0 }));

  app.use(errorHandler(log, options.library.paths.database));
  return { app, events, engine, jobs };
}

function optionalFilter(o: FilterParams): { filter?: ImageFilter } {
  const filter = imageFilterOf(o);
  return filter ? { filter } : {};
}

/** busboy's framing errors (a body cut short, a boundary missing or wrong) are the client's, not internal ones. */
function malformedUpload(err: unknown): unknown {
  if (!err || err instanceof multer.MulterError || err instanceof ClipdexError) return err;
  return new ClipdexError('INVALID_UPLOAD', `the upload is not valid multipart/form-data: ${errorMessage(err)}`, { cause: err });
}

function parseQueryField(value: unknown): unknown {
  if (value === undefined) return {};
  if (typeof value !== 'string') throw new ClipdexError('INVALID_ARGUMENT', 'the `query` field must be a JSON string');
  try {
    return JSON.parse(value);
  } catch {
    throw new ClipdexError('INVALID_ARGUMENT', 'the `query` field is not valid JSON');
  }
}
