/**
 * Live state from the server over Server-Sent Events (`/api/events`): `status` snapshots drive the status
 * bar and the missing-model banner; `indexed` and `removed` tell the search view about new and deleted
 * photos; `training` carries the training or activation job. EventSource reconnects by itself; when the
 * server refuses the stream it is retried here.
 */
import { api } from './api.js';
import { formatCount, h, show, withCode } from './dom.js';

const RETRY_MS = 5000;

/**
 * @param {{ onStatus: (s: object) => void, onIndexed: (items: object[]) => void, onRemoved: (ids: number[]) => void,
 *           onConnection: (state: 'live' | 'reconnecting' | 'offline') => void, onNotice: (n: { code: string, message: string }) => void,
 *           onTraining?: (t: { running: boolean, job: object | null }) => void }} handlers
 */
export function connectEvents(handlers) {
  let source = null;
  // Panels outside main.js's wiring (the Model panel) follow the same snapshots.
  const onStatus = handlers.onStatus;
  handlers = {
    ...handlers,
    onStatus: (s) => {
      onStatus(s);
      document.dispatchEvent(new CustomEvent('clipdex:status', { detail: s }));
    },
  };
  const parse = (e) => {
    try {
      return JSON.parse(e.data);
    } catch {
      return null;
    }
  };
  const open = () => {
    source = new EventSource('/api/events');
    source.addEventListener('open', () => handlers.onConnection('live'));
    source.addEventListener('status', (e) => {
      const s = parse(e);
      if (s) handlers.onStatus(s);
    });
    source.addEventListener('indexed', (e) => {
      const items = parse(e);
      if (Array.isArray(items)) handlers.onIndexed(items);
    });
    source.addEventListener('removed', (e) => {
      const items = parse(e);
      if (Array.isArray(items)) handlers.onRemoved(items.map((i) => (typeof i === 'number' ? i : (i?.imageId ?? i?.id))).filter(Number.isInteger));
    });
    source.addEventListener('training', (e) => {
      const t = parse(e);
      if (t && typeof t === 'object') handlers.onTraining?.(t);
    });
    // Things to read once: a folder that cannot be read, a watcher that fell back to polling, an engine failure.
    for (const type of ['notice', 'failure']) {
      source.addEventListener(type, (e) => {
        const n = parse(e);
        if (n && typeof n.message === 'string') handlers.onNotice({ code: String(n.code ?? type), message: n.message, failure: type === 'failure' });
      });
    }
    source.addEventListener('error', (e) => {
      // A message named `error` (an older server's failed photo) arrives here too; a connection error is a plain Event.
      if (e instanceof MessageEvent) return;
      if (source.readyState === EventSource.CLOSED) {
        handlers.onConnection('offline');
        source.close();
        setTimeout(open, RETRY_MS);
      } else {
        handlers.onConnection('reconnecting');
      }
    });
  };
  // A first snapshot by plain GET, so the page is filled even where streams are slow to start (proxies).
  // Its failure means the server is gone only while the stream has not opened either (it may answer later).
  api.status().then(handlers.onStatus, () => {
    if (source?.readyState !== EventSource.OPEN) handlers.onConnection('offline');
  });
  open();
  return () => source?.close();
}

/** Rate and time left from the ingestion engine's progress (`status.ingest.progress`), where it reports them. */
function ingestDetail(ingest) {
  if (!ingest || typeof ingest !== 'object') return '';
  const rate = Number(ingest.filesPerSecond);
  const eta = Number(ingest.etaSeconds);
  const parts = [];
  if (Number.isFinite(rate) && rate > 0) parts.push(`${rate.toFixed(rate < 10 ? 1 : 0)} photos/s`);
  if (ingest.etaSeconds !== null && Number.isFinite(eta) && eta > 0) {
    parts.push(eta < 90 ? `about ${Math.ceil(eta)} s left` : `about ${Math.ceil(eta / 60)} min left`);
  }
  return parts.join(' · ');
}

export class StatusBar {
  /** @param {Record<string, HTMLElement>} els text, progress, failed, model, adapter, connection, problemsCount, banner, bannerMessage, bannerFix */
  constructor(els) {
    this.els = els;
  }

  setConnection(state) {
    const el = this.els.connection;
    el.dataset.state = state;
    el.title = { live: 'Live updates on', reconnecting: 'Reconnecting to the server…', offline: 'The server cannot be reached' }[state];
    if (state === 'offline') this.els.text.textContent = 'The clipdex server cannot be reached; retrying…';
  }

  render(s) {
    const { text, progress, failed, model, problemsCount } = this.els;
    const indexed = s.indexed ?? 0;
    const pending = s.pending ?? 0;
    const errors = s.failed ?? 0;
    const phase = s.ingest?.phase;
    const ingest = s.ingest?.progress && typeof s.ingest.progress === 'object' ? s.ingest.progress : null;
    // The engine's own counters when it runs; the library's counts otherwise (e.g. files queued before a restart).
    const total = ingest && ingest.total > 0 ? ingest.total : indexed + errors + pending;
    const done = ingest && ingest.total > 0 ? ingest.done : indexed + errors;
    const busy = pending > 0 || (phase !== undefined && phase !== 'idle');
    const parts = [];
    if (phase === 'scanning' && pending === 0) {
      parts.push(`Scanning folders… ${formatCount(indexed)} photo${indexed === 1 ? '' : 's'} indexed`);
    } else if (busy && total > done) {
      parts.push(`Indexing: ${formatCount(done)} of ${formatCount(total)} photos`);
      const detail = ingestDetail(ingest);
      if (detail) parts.push(detail);
    } else {
      parts.push(`${formatCount(indexed)} photo${indexed === 1 ? '' : 's'} indexed`);
    }
    if (s.model && !s.model.ready && pending > 0) parts.push('waiting for the model');
    if (s.offline > 0) parts.push(`${formatCount(s.offline)} offline`);
    const sw = s.modelSwitch;
    if (sw?.target) {
      const detail = ingestDetail(sw);
      parts.push(`Switching model to ${String(sw.target.ref).split(/[\\/]/).filter(Boolean).pop()}: ${formatCount(sw.done)} of ${formatCount(sw.total)}${detail ? ` (${detail})` : ''}`);
    }
    // Text in photos is read behind indexing: its progress shows while there is some to read (details on the Folders page).
    const ocr = s.ingest?.ocr;
    if (ocr?.enabled && !ocr.unavailable && ocr.pending > 0) {
      parts.push(`Reading text in photos: ${formatCount(ocr.done + ocr.failed)} of ${formatCount(ocr.done + ocr.failed + ocr.pending)}`);
    }
    if (Array.isArray(s.roots) && s.roots.length === 0) parts.push('no folders yet');
    text.textContent = parts.join(' · ');
    text.dataset.indexed = String(indexed);

    progress.max = Math.max(1, total);
    progress.value = Math.min(done, total);
    show(progress, busy && total > done);

    failed.textContent = `${formatCount(errors)} failed`;
    show(failed, errors > 0);
    problemsCount.textContent = formatCount(errors);
    show(problemsCount, errors > 0);

    const m = s.model ?? {};
    // A model given as a directory is named by its last folder; an id stays as it is.
    const name = String(m.ref ?? '').split(/[\\/]/).filter(Boolean).pop() ?? '';
    const device = m.providers?.image ? String(m.providers.image).toUpperCase() : '';
    model.textContent = m.ready ? `${name}${device ? ` · ${device}` : ''}` : `model ${name}: not loaded`;
    model.title = m.ready
      ? `Model ${m.ref} (${m.key}); images encoded on ${m.providers?.image ?? '?'}, text on ${m.providers?.text ?? '?'}`
      : (m.error?.message ?? 'model not loaded');
    this.renderAdapter(s.search);
    this.renderBanner(m.error ?? imageTowerProblem(m));
  }

  /** Which trained adapter searches go through, if any (`status.search.adapter`). */
  renderAdapter(search) {
    const { adapter } = this.els;
    if (!adapter) return;
    const v = search?.adapter?.version;
    adapter.dataset.version = Number.isInteger(v) ? String(v) : '';
    adapter.textContent = Number.isInteger(v) ? `adapter v${v}` : 'base model';
    adapter.title = Number.isInteger(v) ? `Searches use trained adapter v${v}; roll back on the Training page` : 'Searches use the base model (no trained adapter active)';
    // Before the model is loaded there is no search space to name.
    show(adapter, Boolean(search));
  }

  /** The one thing that stops everything gets said plainly, with the server's own fix. */
  renderBanner(error) {
    const { banner, bannerMessage, bannerFix } = this.els;
    if (!error) return show(banner, false);
    bannerMessage.textContent = error.message ?? '';
    bannerFix.replaceChildren(withCode(error.fix ?? 'run `clipdex doctor` for details'));
    show(banner, true);
  }
}

/**
 * The image tower opens after the server starts (status.model.imageTower): when it fails, text search still
 * works over what is indexed, but nothing new is indexed and no search by image answers — said in the banner.
 */
function imageTowerProblem(m) {
  const t = m?.imageTower;
  if (!t || typeof t !== 'object' || t.state !== 'failed' || !t.error) return null;
  return { message: `The image model cannot be opened: ${t.error.message} Text search works; indexing and searches by image wait.`, fix: t.error.fix };
}

/** Short-lived messages at the bottom of the page; several identical ones in a row show once. */
export function toaster(region, lifetimeMs = 8000) {
  return ({ message, failure }) => {
    if ([...region.children].some((t) => t.dataset.message === message)) return;
    const toast = h('div', { className: `toast${failure ? ' toast-failure' : ''}`, dataset: { message } }, h('span', { text: message }));
    const close = () => toast.remove();
    toast.append(h('button', { type: 'button', className: 'chip-remove', 'aria-label': 'Dismiss', text: '✕', onClick: close }));
    region.append(toast);
    setTimeout(close, lifetimeMs);
  };
}
