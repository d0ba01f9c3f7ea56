/**
 * A photo that failed to index stays in the library (so its error can be shown and retried) but has no
 * embedding to search by or to train on; searching by it and labeling it are refused with the same reason.
 */
import { ClipdexError } from '../errors.js';
import type { ImageRecord } from '../store/images-repo.js';

/** The refusal for a photo whose status is 'error', naming why it failed; null for any other photo. */
export function failedPhotoError(record: Pick<ImageRecord, 'id' | 'path' | 'status' | 'errorCode' | 'errorMessage'>, action: string): ClipdexError | null {
  if (record.status !== 'error') return null;
  const why = [record.errorCode, record.errorMessage].filter(Boolean).join(': ') || 'no reason recorded';
  return new ClipdexError('PHOTO_FAILED', `photo ${record.id} (${record.path}) failed to index (${why}), so it cannot be ${action} until it indexes`, {
    details: { imageId: record.id, errorCode: record.errorCode },
  });
}
