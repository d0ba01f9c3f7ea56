/**
 * Ids and the other whole numbers that both the CLI and the API read: a label, photo or version id, a port,
 * a list length. One rule each, so a command and an endpoint refuse "3.5" or "0x10" with the same words.
 */
import { intParam } from './param-rules.js';

/** A row id (photo, label, root) or a version number: 1 and up. */
export const recordIdParam = intParam(1, Number.MAX_SAFE_INTEGER);
/** 0 picks a free port. */
export const portParam = intParam(0, 65535);
/** How many to list at most. */
export const listLimitParam = intParam(1, 1_000_000);
/** Tokens a phrase is cut to: room for the start and end tokens at least. */
export const contextLengthParam = intParam(2, 10_000);
