import type { NextFunction, Request, Response } from 'express';
import multer from 'multer';
import { ZodError } from 'zod';
import { ClipdexError, type ErrorCode } from '../errors.js';
import { libraryDamagedError } from '../store/database.js';
import { storageError } from '../util/storage-error.js';

/** Every API error body: a stable code for programs, a sentence for people. */
export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

const STATUS: Partial<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  EMPTY_FILE: 400,
  NOT_AN_IMAGE: 415,
  UNSUPPORTED_FORMAT: 415,
  DECODE_FAILED: 422,
  IMAGE_TOO_LARGE: 413,
  FILE_NOT_FOUND: 404,
  NOT_FOUND: 404,
  PHOTO_FAILED: 409,
  FILE_UNREADABLE: 403,
  MODEL_NOT_FOUND: 503,
  MODEL_UNSUPPORTED: 503,
  MODEL_INVALID: 503,
  EXECUTION_PROVIDER_UNAVAILABLE: 503,
  DIMENSION_MISMATCH: 409,
  NOT_ENOUGH_LABELS: 409,
  BUSY: 409,
  SETTING_OVERRIDDEN: 409,
  INVALID_UPLOAD: 400,
  ADAPTER_INVALID: 422,
  DISK_FULL: 507,
  STORAGE_READ_ONLY: 503,
  STORAGE_FAILED: 503,
  DATABASE_UNREACHABLE: 503,
  DATABASE_UNSUPPORTED: 503,
  LIBRARY_DAMAGED: 503,
  LIBRARY_DATABASE_LOST: 503,
  FILE_MOVE_FAILED: 409,
};

export function statusFor(code: string): number {
  return STATUS[code as ErrorCode] ?? 500;
}

export function sendError(res: Response, status: number, code: string, message: string, details?: unknown): void {
  const body: ErrorBody = { error: { code, message, ...(details === undefined ? {} : { details }) } };
  // A route may have set its success headers before failing (sendFile's 416 or 404): an image type and a
  // year of caching must not label or keep the error.
  res.removeHeader('Content-Disposition');
  res.setHeader('Cache-Control', 'no-store');
  res.status(status).type('application/json').json(body);
}

/** Turns anything thrown in a route into a JSON error; only true bugs become 500, and those say nothing internal. */
export function errorHandler(log: (message: string) => void, databaseFile: string) {
  return (err: unknown, _req: Request, res: Response, _next: NextFunction): void => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err instanceof ClipdexError) return sendError(res, statusFor(err.code), err.code, err.message);
    if (err instanceof ZodError) {
      const issue = err.issues[0];
      const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
      return sendError(res, 400, 'INVALID_ARGUMENT', `${where}${issue?.message ?? 'invalid request'}`, err.issues);
    }
    if (err instanceof multer.MulterError) {
      const status = err.code === 'LIMIT_FILE_SIZE' ? 413 : 400;
      return sendError(res, status, status === 413 ? 'UPLOAD_TOO_LARGE' : 'INVALID_UPLOAD', err.message);
    }
    const e = err as { type?: string; status?: number; message?: string };
    if (e?.type === 'entity.parse.failed') return sendError(res, 400, 'INVALID_JSON', 'the request body is not valid JSON');
    if (e?.type === 'entity.too.large') return sendError(res, 413, 'BODY_TOO_LARGE', 'the request body is too large');
    if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) {
      return sendError(res, e.status, 'BAD_REQUEST', e.message ?? 'bad request');
    }
    // Damaged pages first read by a query are the library's problem, with a way back, not an internal error.
    const damaged = libraryDamagedError(err, databaseFile);
    if (damaged) {
      log(`clipdex: ${damaged.message}`);
      return sendError(res, statusFor(damaged.code), damaged.code, damaged.message);
    }
    // A write that the disk refused (full, read-only) is not a bug: say so, not "internal error".
    const storage = storageError(err);
    if (storage) {
      log(`clipdex: ${storage.message}`);
      return sendError(res, statusFor(storage.code), storage.code, storage.message);
    }
    log(`internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    sendError(res, 500, 'INTERNAL', 'internal error; see the server log');
  };
}
