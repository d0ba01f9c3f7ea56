/**
 * What the user asked for, turned into one API call: typed text alone goes by GET, a stored photo alone by
 * the similar endpoint, and a photo or uploads with words as one POST, so every kind of query shares the
 * same filters and paging. The typed text always travels whole (`q`): the server reads its syntax (dates,
 * `a | b`, `-word`, quotes) and answers what it understood, which the page shows as chips.
 */
import { api } from './api.js';

/**
 * @param {{ text: string, literal: boolean, similar: { id: number } | null, uploads: { file: File }[] }} state
 * @returns {null | ((filters: object, page: object, signal: AbortSignal) => Promise<object>)}
 */
export function queryFor(state) {
  const text = state.text.trim() ? state.text : '';
  const files = state.uploads.map((u) => u.file);
  if (!text && !state.similar && !files.length) return null;
  if (text && !state.similar && !files.length) {
    return (filters, page, signal) => api.searchText(text, filters, page, signal, state.literal);
  }
  if (!text && state.similar && !files.length) {
    return (filters, page, signal) => api.similar(state.similar.id, filters, page, signal);
  }
  const terms = state.similar ? [{ imageId: state.similar.id, weight: 1 }] : [];
  return (filters, page, signal) => api.searchCombined({ terms, files, q: text || undefined, literal: state.literal }, filters, page, signal);
}
