/**
 * The Express app: security middleware, the JSON parser, one router per resource (routes/), the web UI's
 * files and the error handler. What each route does lives in its router and the services under it.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import helmet from 'helmet';
import multer from 'multer';
import type { ModelSwitcher } from '../ingest/model-switch.js';
import type { Library } from '../library/library.js';
import { QueryEngine } from '../search/query-engine.js';
import { AdapterService } from '../train/adapter-service.js';
import { ByteBudget } from '../util/byte-budget.js';
import { EventHub } from './event-hub.js';
import { SharedLibraryFeed } from './shared-library-feed.js';
import { errorHandler, sendError } from './http-errors.js';
import type { IngestService } from './ingest-service.js';
import { apiRegistry } from './openapi.js';
import { duplicateRoutes } from './routes/duplicates.js';
import { eventRoutes } from './routes/events.js';
import { imageRoutes } from './routes/images.js';
import { labelRoutes } from './routes/labels.js';
import { modelRoutes } from './routes/model.js';
import { ocrRoutes } from './routes/ocr.js';
import { openApiRoutes } from './routes/openapi.js';
import type { RouteContext } from './routes/route-context.js';
import { rootRoutes } from './routes/roots.js';
import { searchRoutes, uploadReader } from './routes/search.js';
import { statusRoutes } from './routes/status.js';
import { trainingRoutes } from './routes/training.js';
import { versionRoutes } from './routes/versions.js';
import { hostAndOriginGuard, tokenGuard, type AccessOptions } from './security.js';
import { TrainingJobs } from './training-jobs.js';
import { DEFAULT_UPLOAD_BYTES_IN_FLIGHT, uploadAdmission, type UploadLimits } from './upload-limits.js';

export interface AppOptions {
  library: Library;
  access: AccessOptions;
  ingest?: IngestService;
  /** The background model switch (`clipdex serve` starts one); without it POST /api/model answers 503. */
  modelSwitch?: ModelSwitcher;
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

export function createApp(options: AppOptions): { app: express.Express; events: EventHub; engine: QueryEngine; jobs: TrainingJobs; feed: SharedLibraryFeed | null } {
  const { library } = options;
  const log = options.log ?? (() => {});
  const engine = new QueryEngine(library, { maxPixels: options.maxUploadPixels ?? 60_000_000 });
  const events = new EventHub({
    ...(options.maxEventClients !== undefined ? { maxClients: options.maxEventClients } : {}),
    ...(options.maxEventBufferedBytes !== undefined ? { maxBufferedBytes: options.maxEventBufferedBytes } : {}),
  });
  // Activating an image-tuned version is a model switch: the server's switcher runs it in the background.
  const adapters = new AdapterService(library, options.modelSwitch ? { switcher: options.modelSwitch } : {});
  const jobs = new TrainingJobs(adapters, events, log);
  // On Postgres other machines change the library too: every replica follows the shared change log, which
  // also holds this process's own photos (so the local per-photo events would be published twice).
  const feed =
    library.store.location.kind === 'postgres'
      ? new SharedLibraryFeed({ db: library.store.db, publish: (e) => events.publish(e.type, e), onError: (m) => log(`clipdex: ${m}`) })
      : null;
  options.ingest?.onEvent((e) => {
    if (feed && (e.type === 'indexed' || e.type === 'removed')) return;
    events.publish(e.type, e);
  });
  options.modelSwitch?.onEvent((e) => events.publish(e.type, e));
  const context: RouteContext = { library, engine, ingest: options.ingest, adapters, jobs, events, modelSwitch: options.modelSwitch };

  const uploadLimits: UploadLimits = { fileBytes: options.maxUploadBytes ?? 32 * 1024 * 1024, files: 4, fields: 8, fieldBytes: 64 * 1024 };
  const upload = multer({
    storage: multer.memoryStorage(),
    limits: { fileSize: uploadLimits.fileBytes, files: uploadLimits.files, fields: uploadLimits.fields, fieldSize: uploadLimits.fieldBytes, parts: 12 },
  });
  // Uploads are held in memory while they are received and decoded: their total is capped (upload-limits.ts).
  const admit = uploadAdmission(new ByteBudget(options.maxUploadBytesInFlight ?? DEFAULT_UPLOAD_BYTES_IN_FLIGHT), uploadLimits);

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

  // Each router declares its routes into this registry too: /api/openapi.json describes exactly these.
  const registry = apiRegistry();
  app.use(openApiRoutes(registry));
  app.use(searchRoutes(context, registry, { admit, read: uploadReader(upload) }));
  app.use(imageRoutes(context, registry));
  app.use(statusRoutes(context, registry));
  app.use(rootRoutes(context, registry));
  app.use(ocrRoutes(context, registry));
  app.use(labelRoutes(context, registry));
  app.use(trainingRoutes(context, registry));
  app.use(versionRoutes(context, registry));
  app.use(eventRoutes(context, registry));
  app.use(duplicateRoutes(context, registry));
  app.use(modelRoutes(context, registry));

  app.use('/api', (_req, res) => sendError(res, 404, 'NOT_FOUND', 'no such API endpoint; see /api/openapi.json'));

  const webDir = options.webDir ?? DEFAULT_WEB_DIR;
  app.use(express.static(webDir, { index: 'index.html', dotfiles: 'ignore', maxAge: 0 }));

  app.use(errorHandler(log, options.library.paths.database));
  return { app, events, engine, jobs, feed };
}
