/**
 * What the user asked for, turned into one API call: a phrase alone goes by GET, a stored photo alone by
 * the similar endpoint, and anything mixed (a phrase with minus terms, a photo plus words, uploads) as one
 * weighted POST, so every kind of query shares the same filters and paging.
 */
import { api } from './api.js';

/**
 * "kids on a beach -people -dogs" → +"kids on a beach", −"people", −"dogs". A minus counts only at the
 * start of a word, so "black-and-white" stays one phrase.
 * @returns {{ text: string, weight: number }[]}
 */
export function parsePhrase(input) {
  const parts = String(input).split(/(?:^|\s)-(?=\S)/);
  const terms = [];
  const first = parts[0].trim();
  if (first) terms.push({ text: first, weight: 1 });
  for (const part of parts.slice(1)) {
    const text = part.trim();
    if (text) terms.push({ text, weight: -1 });
  }
  return terms;
}

/**
 * @param {{ text: string, similar: { id: number } | null, uploads: { file: File }[] }} state
 * @returns {null | ((filters: object, page: object, signal: AbortSignal) => Promise<object>)}
 */
export function queryFor(state) {
  const phrase = parsePhrase(state.text);
  const files = state.uploads.map((u) => u.file);
  if (!phrase.length && !state.similar && !files.length) return null;
  if (phrase.length === 1 && phrase[0].weight > 0 && !state.similar && !files.length) {
    return (filters, page, signal) => api.searchText(phrase[0].text, filters, page, signal);
  }
  if (!phrase.length && state.similar && !files.length) {
    return (filters, page, signal) => api.similar(state.similar.id, filters, page, signal);
  }
  const terms = [...(state.similar ? [{ imageId: state.similar.id, weight: 1 }] : []), ...phrase];
  return (filters, page, signal) => api.searchCombined({ terms, files }, filters, page, signal);
}
