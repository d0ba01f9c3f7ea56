/**
 * The search view: what is being asked (phrase, a photo to match, uploaded images, filters), one request
 * at a time, and the grid of results. Typing is debounced; every new request aborts the one before it and
 * answers are matched to the request that asked, so results never arrive out of order.
 */
import { isAbort } from './api.js';
import { debounce, formatCount, h, show, splitPath, withCode } from './dom.js';
import { card, gridKeys } from './grid.js';
import { queryFor } from './query.js';

const PAGE_SIZE = 60;
const TYPING_DELAY_MS = 200;
const MAX_UPLOADS = 4;

export class SearchController {
  /**
   * @param {{ input: HTMLInputElement, grid: HTMLElement, summary: HTMLElement, error: HTMLElement, empty: HTMLElement,
   *           more: HTMLButtonElement, chips: HTMLElement, fresh: HTMLButtonElement }} els
   * @param {{ onOpen: (index: number) => void, selection?: import('./selection.js').Selection }} hooks
   */
  constructor(els, hooks) {
    this.els = els;
    this.hooks = hooks;
    this.state = { text: '', similar: null, uploads: [] };
    this.filters = {};
    /** Results shown so far, in order (the viewer browses them). */
    this.results = [];
    this.hasMore = false;
    this.bestScore = null;
    this.generation = 0;
    this.inFlight = null;
    this.freshCount = 0;
    this.typed = debounce(() => this.run(false), TYPING_DELAY_MS);

    els.input.addEventListener('input', () => {
      this.state.text = els.input.value;
      this.typed();
    });
    els.more.addEventListener('click', () => this.loadMore());
    els.fresh.addEventListener('click', () => this.runNow());
    gridKeys(els.grid);
    // Past the last row, the next page loads by itself; the button stays for keyboards and old browsers.
    this.sentinel = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && this.hasMore && !this.inFlight) this.loadMore();
    }, { rootMargin: '400px' });
    this.sentinel.observe(els.more.parentElement);
  }

  /** Search now (Enter, a filter change, a drop), without waiting for the typing pause. */
  runNow() {
    this.typed.cancel();
    this.state.text = this.els.input.value;
    return this.run(false);
  }

  loadMore() {
    return this.hasMore ? this.run(true) : Promise.resolve();
  }

  setFilters(filters) {
    this.filters = filters;
    return this.hasQuery() ? this.runNow() : Promise.resolve();
  }

  /** Find photos like a stored one; replaces the phrase and uploads. */
  similarTo(photo) {
    this.clearUploads();
    this.els.input.value = '';
    this.state.text = '';
    this.state.similar = { id: photo.id, name: splitPath(photo.path).name };
    return this.runNow();
  }

  /** Search by image files (dropped, pasted or picked), up to four at a time. */
  addUploads(files) {
    const images = [...files].filter((f) => f.type.startsWith('image/') || f.type === '');
    if (!images.length) return Promise.resolve();
    this.state.similar = null;
    for (const file of images) this.state.uploads.push({ file, url: URL.createObjectURL(file) });
    while (this.state.uploads.length > MAX_UPLOADS) URL.revokeObjectURL(this.state.uploads.shift().url);
    return this.runNow();
  }

  clearUploads() {
    for (const u of this.state.uploads) URL.revokeObjectURL(u.url);
    this.state.uploads = [];
  }

  hasQuery() {
    return queryFor({ ...this.state, text: this.els.input.value }) !== null;
  }

  /** New photos arrived while results are shown: offer to refresh rather than reshuffle under the user. */
  noteIndexed(count) {
    if (!this.hasQuery() || count <= 0) return;
    this.freshCount += count;
    this.els.fresh.textContent = `${formatCount(this.freshCount)} new photo${this.freshCount === 1 ? '' : 's'} indexed · update results`;
    show(this.els.fresh, true);
  }

  /** Another adapter now ranks searches: results on screen came from the old one, so offer to ask again. */
  noteSpaceChanged(text) {
    if (!this.hasQuery()) return;
    this.els.fresh.textContent = `${text} · update results`;
    show(this.els.fresh, true);
  }

  /** Photos deleted from disk leave the grid at once. */
  dropPhotos(ids) {
    const gone = new Set(ids);
    if (!this.results.some((r) => gone.has(r.id))) return;
    this.results = this.results.filter((r) => !gone.has(r.id));
    this.renderAll();
  }

  async run(append) {
    this.renderChips();
    const query = queryFor(this.state);
    this.inFlight?.abort();
    const generation = ++this.generation;
    if (!query) {
      this.inFlight = null;
      this.reset();
      return;
    }
    const controller = new AbortController();
    this.inFlight = controller;
    this.els.grid.setAttribute('aria-busy', 'true');
    document.body.classList.add('searching');
    const page = { limit: PAGE_SIZE, offset: append ? this.results.length : 0 };
    try {
      const response = await query(this.filters, page, controller.signal);
      if (generation !== this.generation) return;
      show(this.els.error, false);
      if (!append) {
        this.results = [];
        this.freshCount = 0;
        show(this.els.fresh, false);
      }
      const start = this.results.length;
      this.results.push(...response.results);
      this.hasMore = response.hasMore;
      this.bestScore = response.bestScore ?? this.bestScore;
      if (append) this.appendCards(start);
      else this.renderAll();
      this.renderSummary(response.tookMs);
      if (!append) window.scrollTo({ top: 0 });
    } catch (err) {
      if (isAbort(err) || generation !== this.generation) return;
      // A missing model is explained once, in the banner with its fix; here a pointer to it is enough.
      this.els.error.replaceChildren(err.code?.startsWith('MODEL_') ? 'Search waits for the model: see the note at the top of the page.' : withCode(err.message));
      show(this.els.error, true);
      if (!append) {
        this.results = [];
        this.hasMore = false;
        this.renderAll();
        this.els.summary.textContent = '';
      }
    } finally {
      if (generation === this.generation) {
        this.inFlight = null;
        this.els.grid.removeAttribute('aria-busy');
        document.body.classList.remove('searching');
      }
    }
  }

  reset() {
    this.results = [];
    this.hasMore = false;
    this.bestScore = null;
    this.freshCount = 0;
    this.renderAll();
    this.els.summary.textContent = '';
    show(this.els.error, false);
    show(this.els.fresh, false);
    show(this.els.empty, true);
    this.els.grid.removeAttribute('aria-busy');
    document.body.classList.remove('searching');
  }

  renderAll() {
    this.els.grid.replaceChildren();
    this.appendCards(0);
  }

  appendCards(start) {
    const frag = document.createDocumentFragment();
    for (let i = start; i < this.results.length; i++) frag.append(card(this.results[i], i, this.bestScore, this.hooks.onOpen, this.hooks.selection));
    this.els.grid.append(frag);
    // The selection says how many of its photos these results leave out.
    this.hooks.selection?.render();
    show(this.els.more, this.hasMore);
    show(this.els.empty, false);
  }

  renderSummary(tookMs) {
    const n = this.results.length;
    const what = this.describe();
    const count = n === 0 ? 'No photos match' : `${formatCount(n)}${this.hasMore ? '+' : ''} photo${n === 1 && !this.hasMore ? '' : 's'} for`;
    this.els.summary.replaceChildren(`${count} `, h('q', { text: what }), ` · ${Math.round(tookMs)} ms`);
  }

  describe() {
    const parts = [];
    if (this.state.text.trim()) parts.push(this.state.text.trim());
    if (this.state.similar) parts.push(`like ${this.state.similar.name}`);
    if (this.state.uploads.length) parts.push(this.state.uploads.length === 1 ? 'like the uploaded image' : `like ${this.state.uploads.length} uploaded images`);
    return parts.join(' + ');
  }

  /** What the query holds besides the phrase, each removable. */
  renderChips() {
    const chips = [];
    if (this.state.similar) {
      const { id, name } = this.state.similar;
      chips.push(this.chip(`/api/images/${encodeURIComponent(id)}/thumbnail`, `Like ${name}`, () => {
        this.state.similar = null;
        this.runNow();
      }));
    }
    this.state.uploads.forEach((u, i) => {
      chips.push(this.chip(u.url, `Like ${u.file.name || 'pasted image'}`, () => {
        URL.revokeObjectURL(u.url);
        this.state.uploads.splice(i, 1);
        this.runNow();
      }));
    });
    this.els.chips.replaceChildren(...chips);
    show(this.els.chips, chips.length > 0);
  }

  chip(src, label, onRemove) {
    return h(
      'span',
      { className: 'chip' },
      h('img', { src, alt: '' }),
      h('span', { className: 'chip-label', text: label }),
      h('button', { type: 'button', className: 'chip-remove', 'aria-label': `Remove: ${label}`, title: 'Remove', text: '✕', onClick: onRemove }),
    );
  }
}
