/**
 * The rules on what a duplicates review may ask: the distance threshold (Immich's range and default, so a
 * number means the same in both), the neighbours asked per photo, whether rotated copies count, and the
 * ids a hide, trash or undo acts on. The CLI's options, the API's schemas and the finder parse through these.
 */
import { z } from 'zod';
import { fromText, intParam, intRule } from './param-rules.js';

/**
 * Cosine distance (1 − cosine similarity) under which two photos are near-duplicates. Immich's default and
 * range: at 0.01 two photos are the same shot re-saved or resized; past 0.05 different shots of one scene
 * start to join.
 */
export const DEFAULT_DUPLICATE_THRESHOLD = 0.01;
export const MIN_DUPLICATE_THRESHOLD = 0.001;
export const MAX_DUPLICATE_THRESHOLD = 0.1;

const THRESHOLD = `must be a cosine distance from ${MIN_DUPLICATE_THRESHOLD} to ${MAX_DUPLICATE_THRESHOLD} (default ${DEFAULT_DUPLICATE_THRESHOLD})`;

/** The threshold as a number or its decimal text ("0.02", "2e-2"). */
export const duplicateThresholdParam = fromText(
  z.number({ error: THRESHOLD }).min(MIN_DUPLICATE_THRESHOLD, THRESHOLD).max(MAX_DUPLICATE_THRESHOLD, THRESHOLD),
);

/** Neighbours asked of the index per photo: larger finds bigger groups in one step, at a cost per photo. */
export const DEFAULT_NEIGHBOURS = 10;
export const neighboursParam = intParam(1, 100);

/** `rotations=true` in a query string, `true` in a JSON body or a library call. */
export const rotationsParam = z.union([z.boolean(), z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1')], {
  error: 'must be true or false',
});

/** The photos one hide, unhide or trash acts on: ids, at most 1000 at once. */
export const photoIdsParam = z.array(intRule(1, Number.MAX_SAFE_INTEGER)).min(1, 'must name at least one photo').max(1000, 'is limited to 1000 ids');

/** The trash records one undo restores. */
export const trashIdsParam = z.array(intRule(1, Number.MAX_SAFE_INTEGER)).min(1, 'must name at least one trashed photo').max(1000, 'is limited to 1000 ids');

/** One id typed on the command line ("12"), through the same integer rule. */
export const idTextParam = intParam(1, Number.MAX_SAFE_INTEGER);
