/**
 * One error type with a stable code for every failure a user or API client can see.
 * Codes map to HTTP statuses at the server edge and to exit codes in the CLI.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'FILE_NOT_FOUND'
  /** No such photo, label or other record by that id. */
  | 'NOT_FOUND'
  /** The photo is in the library but failed to index: it cannot be searched by or labeled until it does. */
  | 'PHOTO_FAILED'
  | 'FILE_UNREADABLE'
  | 'EMPTY_FILE'
  | 'NOT_AN_IMAGE'
  | 'UNSUPPORTED_FORMAT'
  | 'DECODE_FAILED'
  | 'IMAGE_TOO_LARGE'
  | 'TOKENIZER_INVALID'
  | 'MODEL_NOT_FOUND'
  | 'MODEL_INVALID'
  | 'MODEL_UNSUPPORTED'
  | 'DOWNLOAD_FAILED'
  | 'OFFLINE'
  | 'CHECKSUM_MISMATCH'
  | 'EXECUTION_PROVIDER_UNAVAILABLE'
  | 'INFERENCE_FAILED'
  | 'DATABASE_TOO_NEW'
  | 'DATABASE_INVALID'
  /** The Postgres server (`--db postgres://…`) cannot be reached, refused the login, or stopped answering. */
  | 'DATABASE_UNREACHABLE'
  /** The Postgres server lacks what clipdex needs (pgvector, or a version of it too old). */
  | 'DATABASE_UNSUPPORTED'
  | 'MIGRATION_FAILED'
  | 'DIMENSION_MISMATCH'
  | 'INDEX_BUILD_FAILED'
  | 'FILE_CHANGED'
  /** A watched folder's path now leads to another folder (a retargeted symlink): offline until confirmed. */
  | 'ROOT_RETARGETED'
  /** Too many uploads in flight (a bounded byte budget): retry after a moment. */
  | 'UPLOADS_BUSY'
  /** Too many event-stream clients at once. */
  | 'TOO_MANY_EVENT_CLIENTS'
  | 'ADAPTER_INVALID'
  | 'NOT_ENOUGH_LABELS'
  | 'BUSY'
  /** A change asked for is overridden by something that takes precedence (CLIPDEX_OCR in the environment). */
  | 'SETTING_OVERRIDDEN'
  | 'INVALID_UPLOAD'
  | 'DISK_FULL'
  | 'STORAGE_READ_ONLY'
  | 'STORAGE_FAILED'
  /** The library database's pages are damaged (SQLITE_CORRUPT): not a model problem. */
  | 'LIBRARY_DAMAGED'
  /** The library database is new or empty beside thumbnails and index files: its content was lost. */
  | 'LIBRARY_DATABASE_LOST'
  /** A photo could not be moved to or back from the trash folder; nothing was changed. */
  | 'FILE_MOVE_FAILED';

export class ClipdexError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ClipdexError';
    this.code = code;
    this.details = options.details ?? {};
  }
}

export function isClipdexError(err: unknown, code?: ErrorCode): err is ClipdexError {
  return err instanceof ClipdexError && (code === undefined || err.code === code);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
