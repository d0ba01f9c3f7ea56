/**
 * Admission control for uploads (search by image): the bytes of all uploads being received and decoded at
 * once stay under a budget; an upload that does not fit is answered 503 with Retry-After at once, before
 * any of its body is read.
 *
 * Why a cap and not disk storage: uploads are held in memory (multer's memoryStorage) because the decoder
 * wants the bytes and a search image is never kept. Spilling them to temp files would move the same
 * unbounded volume onto the disk — on many systems /tmp is a tmpfs, i.e. memory again — and would still
 * let any number of decodes run at once. A byte cap bounds both the buffers and the decodes behind them,
 * and a client told "busy, retry in 1 s" loses nothing.
 *
 * The reservation is the request's declared Content-Length (Node's parser never delivers more than it
 * declares), at most the largest request the upload limits allow; a chunked request without one reserves
 * that largest size. It is held until the response is over, which covers the decode of the held buffers.
 * A single request larger than the whole budget is admitted when nothing else is in flight.
 */
import type { NextFunction, Request, Response } from 'express';
import type { ByteBudget } from '../util/byte-budget.js';
import { sendError } from './http-errors.js';

/** Default bytes of uploads in flight: two maximum-size photos (2 × 32 MB) at once. */
export const DEFAULT_UPLOAD_BYTES_IN_FLIGHT = 64 * 1024 * 1024;
/** Seconds a refused client is asked to wait: about the time one maximum-size upload takes to decode. */
export const UPLOAD_RETRY_AFTER_S = 1;

export interface UploadLimits {
  /** Largest file (multer's fileSize). */
  fileBytes: number;
  /** Most files per request. */
  files: number;
  /** Most non-file fields, and the largest one. */
  fields: number;
  fieldBytes: number;
}

/** The largest body the upload limits can let through, framing included (a generous allowance per part). */
export function maxRequestBytes(limits: UploadLimits): number {
  const framing = 1024 * (limits.files + limits.fields);
  return limits.files * limits.fileBytes + limits.fields * limits.fieldBytes + framing;
}

/** Middleware for a multipart route: reserves the body's size in `budget` or answers 503 UPLOADS_BUSY. */
export function uploadAdmission(budget: ByteBudget, limits: UploadLimits) {
  const largest = maxRequestBytes(limits);
  return (req: Request, res: Response, next: NextFunction): void => {
    if (!req.is('multipart/form-data')) return next();
    const declared = Number(req.headers['content-length']);
    const bytes = Number.isFinite(declared) && declared >= 0 ? Math.min(declared, largest) : largest;
    const release = budget.tryAcquire(bytes);
    if (!release) {
      // Not read: Node discards the body once this answer is out, so the refused bytes are never held.
      res.setHeader('Retry-After', String(UPLOAD_RETRY_AFTER_S));
      const mb = (n: number) => `${Math.round(n / (1024 * 1024))} MB`;
      return sendError(
        res,
        503,
        'UPLOADS_BUSY',
        `the server is receiving as many uploads as it holds at once (${mb(budget.inUse)} of ${mb(budget.capacity)}); retry in ${UPLOAD_RETRY_AFTER_S} s`,
        { retryAfterSeconds: UPLOAD_RETRY_AFTER_S },
      );
    }
    // 'close' comes after the answer is sent and also when the client goes away mid-upload.
    res.once('close', release);
    next();
  };
}
