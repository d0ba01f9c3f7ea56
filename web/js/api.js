/**
 * The REST API as the page uses it. Every call returns parsed JSON or throws an ApiError carrying the
 * server's error code and sentence; an aborted call rethrows the AbortError so callers can ignore it.
 */

export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

export function isAbort(err) {
  return err instanceof DOMException && err.name === 'AbortError';
}

async function request(path, { method = 'GET', json, body, signal } = {}) {
  const init = { method, signal, headers: { Accept: 'application/json' } };
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (isAbort(err)) throw err;
    throw new ApiError(0, 'NETWORK', 'the clipdex server cannot be reached; is it still running?');
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    throw new ApiError(res.status, data?.error?.code ?? `HTTP_${res.status}`, data?.error?.message ?? `${res.status} ${res.statusText}`);
  }
  return data;
}

/**
 * Filters and paging as query parameters (GET) or body fields (POST).
 * @typedef {{ folder?: string, after?: string, before?: string, formats?: string[], sort?: string }} Filters
 */
function queryString(params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '' || (Array.isArray(v) && v.length === 0)) continue;
    qs.set(k, Array.isArray(v) ? v.join(',') : String(v));
  }
  const s = qs.toString();
  return s ? `?${s}` : '';
}

function filterParams(filters = {}, page = {}) {
  return {
    folder: filters.folder || undefined,
    after: filters.after || undefined,
    before: filters.before || undefined,
    format: filters.formats?.length ? filters.formats : undefined,
    sort: filters.sort && filters.sort !== 'relevance' ? filters.sort : undefined,
    limit: page.limit,
    offset: page.offset || undefined,
  };
}

export const api = {
  status: (signal) => request('/api/status', { signal }),
  /** The library's model, a switch under way and the models to choose from. */
  model: (signal) => request('/api/model', { signal }),
  useModel: (id) => request('/api/model', { method: 'POST', json: { id } }),
  cancelModelSwitch: () => request('/api/model/target', { method: 'DELETE' }),
  /** Reading the text in photos on or off (the library's setting); answers the OCR status. */
  setOcr: (enabled) => request('/api/ocr', { method: 'PUT', json: { enabled } }),

  /**
   * Typed text alone: GET, so the browser and the server's phrase cache both help. The server reads its
   * syntax (dates, `a | b`, -word) unless `literal`, and answers what it understood.
   */
  searchText: (text, filters, page, signal, literal = false) =>
    request(`/api/search${queryString({ q: text, syntax: literal ? 'plain' : undefined, ...filterParams(filters, page) })}`, { signal }),

  similar: (id, filters, page, signal) => request(`/api/images/${encodeURIComponent(id)}/similar${queryString(filterParams(filters, page))}`, { signal }),

  /** The timeline: a page of the library newest first, from `cursor` (a page's nextCursor or a month's). */
  browse: (filters, { limit, cursor } = {}, signal) =>
    request(`/api/images${queryString({ ...filterParams({ ...filters, sort: undefined }, { limit }), sort: 'date-desc', cursor })}`, { signal }),
  /** Photos per month under the filters, each month with the cursor that starts the timeline there. */
  timeline: (filters, signal) => {
    const { limit: _limit, offset: _offset, sort: _sort, ...params } = filterParams(filters);
    return request(`/api/timeline${queryString(params)}`, { signal });
  },

  /**
   * Weighted terms ({text, weight} or {imageId, weight}) plus uploaded files, in one query; typed text as
   * `q`, read in the query syntax unless `literal`.
   * @param {{ terms: object[], files?: File[], q?: string, literal?: boolean }} query
   */
  searchCombined(query, filters, page, signal) {
    const params = filterParams(filters, page);
    const body = { terms: query.terms };
    if (query.q) body.q = query.q;
    if (query.q && query.literal) body.syntax = 'plain';
    for (const [k, v] of Object.entries(params)) if (v !== undefined) body[k] = v;
    if (!query.files?.length) return request('/api/search', { method: 'POST', json: body, signal });
    const form = new FormData();
    for (const f of query.files) form.append('image', f, f.name || 'pasted-image');
    form.append('query', JSON.stringify(body));
    return request('/api/search', { method: 'POST', body: form, signal });
  },

  errors: ({ limit, afterId } = {}) => request(`/api/errors${queryString({ limit, afterId })}`),
  roots: () => request('/api/roots'),
  addRoot: (path) => request('/api/roots', { method: 'POST', json: { path } }),
  removeRoot: (id) => request(`/api/roots/${encodeURIComponent(id)}`, { method: 'DELETE' }),
  confirmRoot: (id) => request(`/api/roots/${encodeURIComponent(id)}/confirm`, { method: 'POST' }),

  // ---- labels: the photo/caption pairs the trainer learns from ----
  /** @param {{ limit?: number, afterId?: number, imageId?: number, caption?: string }} [params] */
  labels: (params = {}, signal) => request(`/api/labels${queryString(params)}`, { signal }),
  addLabels: (imageIds, caption) => request('/api/labels', { method: 'POST', json: { imageIds, caption } }),
  importFolderLabels: (folder, template) => request('/api/labels/import', { method: 'POST', json: template ? { folder, template } : { folder } }),
  editLabel: (id, caption) => request(`/api/labels/${encodeURIComponent(id)}`, { method: 'PATCH', json: { caption } }),
  deleteLabel: (id) => request(`/api/labels/${encodeURIComponent(id)}`, { method: 'DELETE' }),

  // ---- training and adapters: long jobs answer 202 and report over the event stream ----
  training: () => request('/api/training'),
  /** What the next run would hold out, with these options (the server's defaults without). */
  splitPreview: ({ valFraction, seed } = {}) => request(`/api/training/split${queryString({ valFraction, seed })}`),
  /** @param {{ epochs?: number, batchSize?: number, valFraction?: number, seed?: number, learningRate?: number, patience?: number }} options */
  train: (options) => request('/api/training', { method: 'POST', json: options }),
  adapters: () => request('/api/adapters'),
  activateAdapter: (version) => request(`/api/adapters/${encodeURIComponent(version)}/activate`, { method: 'POST', json: {} }),
  /** @param {'base' | number} to */
  rollback: (to) => request('/api/adapters/rollback', { method: 'POST', json: { to } }),
  exportAdapter: (version, dir) => request(`/api/adapters/${encodeURIComponent(version)}/export`, { method: 'POST', json: dir ? { dir } : {} }),

  thumbnailUrl: (id) => `/api/images/${encodeURIComponent(id)}/thumbnail`,
  fileUrl: (id) => `/api/images/${encodeURIComponent(id)}/file`,
};

// ---- duplicates review: groups, hiding from search, the trash folder and undo ----
export const duplicatesApi = {
  /** @param {{ threshold: number, rotations?: boolean }} options */
  find: ({ threshold, rotations }, signal) => request(`/api/duplicates${queryString({ threshold, rotations: rotations ? 'true' : undefined })}`, { signal }),
  hide: (ids) => request('/api/duplicates/hide', { method: 'POST', json: { ids } }),
  unhide: (ids) => request('/api/duplicates/unhide', { method: 'POST', json: { ids } }),
  hidden: () => request('/api/duplicates/hidden'),
  trash: (ids) => request('/api/duplicates/trash', { method: 'POST', json: { ids } }),
  undo: (trashIds) => request('/api/duplicates/undo', { method: 'POST', json: { trashIds } }),
  trashed: () => request('/api/duplicates/trash'),
};
