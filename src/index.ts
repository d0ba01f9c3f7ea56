/**
 * clipdex as a library: the same building blocks the CLI and server use.
 * @packageDocumentation
 */
export { ClipdexError, isClipdexError, type ErrorCode } from './errors.js';
export { ClipTokenizer, byteLevelVocabulary } from './model/tokenizer.js';
export { ClipModel, type ImageEmbeddingResult, type LoadModelOptions } from './model/clip-model.js';
export { ImageEncoder } from './model/image-encoder.js';
export { TextEncoder } from './model/text-encoder.js';
export { preprocessBatch, preprocessImage, type PreprocessedBatch, type PreprocessedImage } from './model/image-preprocess.js';
export { openImage, readImageInfo, type ImageInfo, type DecodedImage } from './model/image-decode.js';
export { readModelDir, type ModelSpec } from './model/model-dir.js';
export { resolveModel, listManifests, findManifest, DEFAULT_MODEL_ID } from './model/model-registry.js';
export { pullModel, isPulled, hubEndpoint, type PullProgressEvent } from './model/hub-download.js';
export { importModel } from './model/model-import.js';
export { buildTinyModel, type BuildOptions } from './model/tiny-model-builder.js';
export { cacheDir, dataDir } from './model/cache-dir.js';
export { openSession, type ProviderName } from './inference/onnx-runtime.js';
export type { ModelManifest, PreprocessConfig, ModelLayout } from './model/manifest.js';
export {
  IngestEngine,
  readIngestCounts,
  type IngestEngineOptions,
  type IngestStatus,
  type IngestCounts,
  type RootStatus,
} from './ingest/ingest-engine.js';
export type { IngestEvent, IngestListener, IngestProgress, IngestPhase, ScanReport } from './ingest/ingest-events.js';
export { Library, type OpenLibraryOptions } from './library/library.js';
export { QueryEngine, type QueryTerm, type SearchRequest, type SearchResponse, type SearchResult } from './search/query-engine.js';
export {
  parseQueryText,
  plainQuery,
  searchRequestOf,
  withParsedDate,
  type ParsedQuery,
  type ParseQueryOptions,
  type TextSearchResponse,
  type UnderstoodPart,
} from './search/query-syntax.js';
export { startServer, type ServeOptions, type RunningServer } from './server/server.js';
export type { ImageFilter } from './store/image-filter.js';
