/**
 * The home view while the search box is empty: the library by date, newest first, under month and day
 * headers, a page at a time as the user scrolls (the server pages by cursor, so a deep page costs what the
 * first does). A jump list names every month and goes there. Photos without a capture date come last,
 * grouped by their file's time and marked so. The filters apply; cards are the search's cards, so the
 * viewer and the selection work on them the same way.
 *
 * Dates are shown in UTC: a capture date without a zone is stored as the camera's wall clock read as UTC,
 * so UTC gives back the day the camera showed (and the server counts months the same way).
 */
import { api, isAbort } from './api.js';
import { formatCount, h, show, withCode } from './dom.js';
import { card, gridKeys } from './grid.js';

const PAGE_SIZE = 60;
const monthFormat = new Intl.DateTimeFormat(undefined, { month: 'long', year: 'numeric', timeZone: 'UTC' });
const monthOnly = new Intl.DateTimeFormat(undefined, { month: 'long', timeZone: 'UTC' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long', timeZone: 'UTC' });

/** `2023-07` → the first of that month, ms (UTC). */
const monthStart = (month) => Date.parse(`${month}-01T00:00:00Z`);
/** Where a photo belongs: its capture day, or its file's day when it has no capture date. */
function placeOf(photo) {
  const undated = photo.takenAt === null || photo.takenAt === undefined;
  const day = new Date(undated ? photo.mtimeMs : photo.takenAt).toISOString().slice(0, 10);
  const prefix = undated ? 'u' : 'd';
  return { undated, month: `${prefix}-${day.slice(0, 7)}`, day: `${prefix}-${day}`, ms: undated ? photo.mtimeMs : photo.takenAt };
}

export class Timeline {
  /**
   * @param {{ root: HTMLElement, list: HTMLElement, summary: HTMLElement, jump: HTMLSelectElement, newest: HTMLButtonElement,
   *           more: HTMLButtonElement, error: HTMLElement, empty: HTMLElement }} els
   * @param {{ onOpen: (index: number) => void, selection?: import('./selection.js').Selection }} hooks
   */
  constructor(els, hooks) {
    this.els = els;
    this.hooks = hooks;
    this.filters = {};
    /** Photos shown, in order (the viewer browses them; a card's index is its place here). */
    this.results = [];
    this.bestScore = null;
    this.nextCursor = null;
    this.summary = null;
    this.active = false;
    /** The view shows the library as it was: set when it changed while hidden, or the filters did. */
    this.stale = true;
    this.generation = 0;
    this.inFlight = null;
    this.place = null;
    this.grid = null;
    els.more.addEventListener('click', () => this.loadMore());
    els.newest.addEventListener('click', () => this.reload());
    els.jump.addEventListener('change', () => {
      const key = els.jump.value;
      els.jump.value = '';
      if (key) this.jumpTo(key);
    });
    this.sentinel = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && this.active && this.nextCursor && !this.inFlight) this.loadMore();
    }, { rootMargin: '600px' });
    this.sentinel.observe(els.more.parentElement);
  }

  /** Shown while the search box is empty; loads on first showing, and again if the library changed meanwhile. */
  setActive(on) {
    if (this.active === on) return;
    this.active = on;
    show(this.els.root, on);
    if (!on) show(this.els.empty, false);
    if (on && this.stale) this.reload();
    else if (on) this.showEmpty();
  }

  setFilters(filters) {
    this.filters = filters;
    this.stale = true;
    if (this.active) this.reload();
  }

  /** New photos were indexed: the timeline on screen stays put; the next time it shows, it is fresh. */
  noteIndexed(count) {
    if (count > 0 && !this.active) this.stale = true;
  }

  shown() {
    return this.results;
  }

  canLoadMore() {
    return this.nextCursor !== null;
  }

  get hasMore() {
    return this.canLoadMore();
  }

  /** Photos deleted from disk leave the timeline at once (the rest keep their places). */
  dropPhotos(ids) {
    const gone = new Set(ids);
    if (!this.results.some((r) => gone.has(r.id))) return;
    this.results = this.results.filter((r) => !gone.has(r.id));
    this.renderAll();
  }

  /** From the newest photo (or from a month's cursor), the jump list fetched again with it. */
  async reload(cursor = null) {
    this.inFlight?.abort();
    const generation = ++this.generation;
    const controller = new AbortController();
    this.inFlight = controller;
    this.stale = false;
    this.els.root.setAttribute('aria-busy', 'true');
    try {
      const [summary, page] = await Promise.all([
        cursor && this.summary ? this.summary : api.timeline(this.filters, controller.signal),
        api.browse(this.filters, { limit: PAGE_SIZE, cursor: cursor ?? undefined }, controller.signal),
      ]);
      if (generation !== this.generation) return;
      show(this.els.error, false);
      this.summary = summary;
      this.results = page.images;
      this.nextCursor = page.nextCursor;
      this.renderAll();
      this.renderSummary();
      show(this.els.newest, cursor !== null);
      this.showEmpty();
    } catch (err) {
      if (isAbort(err) || generation !== this.generation) return;
      this.stale = true;
      this.fail(err);
    } finally {
      if (generation === this.generation) {
        this.inFlight = null;
        this.els.root.removeAttribute('aria-busy');
      }
    }
  }

  async loadMore() {
    if (!this.nextCursor || this.inFlight) return;
    const generation = this.generation;
    const controller = new AbortController();
    this.inFlight = controller;
    try {
      const page = await api.browse(this.filters, { limit: PAGE_SIZE, cursor: this.nextCursor }, controller.signal);
      if (generation !== this.generation) return;
      const start = this.results.length;
      this.results.push(...page.images);
      this.nextCursor = page.nextCursor;
      this.appendCards(start);
    } catch (err) {
      if (!isAbort(err) && generation === this.generation) this.fail(err);
    } finally {
      if (generation === this.generation) this.inFlight = null;
    }
  }

  /** A month already on screen scrolls into view; any other starts the timeline there. */
  async jumpTo(key) {
    const header = this.els.list.querySelector(`[data-month="${CSS.escape(key)}"]`);
    if (!header) {
      const month = this.summary?.months.find((m) => `${m.undated ? 'u' : 'd'}-${m.month}` === key);
      if (!month) return;
      await this.reload(month.cursor);
    }
    const target = this.els.list.querySelector(`[data-month="${CSS.escape(key)}"]`);
    target?.scrollIntoView({ block: 'start' });
    target?.focus({ preventScroll: true });
  }

  fail(err) {
    // A missing model is explained once, in the banner with its fix.
    this.els.error.replaceChildren(err.code?.startsWith('MODEL_') ? 'The library shows here once the model is ready: see the note at the top of the page.' : withCode(err.message));
    show(this.els.error, true);
  }

  /** The prompt to search shows where there is nothing to browse: an empty library. */
  showEmpty() {
    const nothing = this.summary !== null && this.summary.total === 0;
    const filtered = Object.values(this.filters).some((v) => (Array.isArray(v) ? v.length > 0 : v && v !== 'relevance'));
    show(this.els.empty, this.active && nothing && !filtered);
  }

  renderSummary() {
    const s = this.summary;
    if (!s) return;
    const parts = [s.total === 0 ? 'No photos here yet' : `${formatCount(s.total)} photo${s.total === 1 ? '' : 's'} · newest first`];
    if (s.undated > 0) parts.push(`${formatCount(s.undated)} without a capture date, at the end`);
    this.els.summary.textContent = parts.join(' · ');
    this.renderJump();
  }

  /** The jump list: years, their months with counts, then the undated photos' file months. */
  renderJump() {
    const groups = new Map();
    for (const m of this.summary.months) {
      const label = m.undated ? 'No capture date (by file time)' : m.month.slice(0, 4);
      if (!groups.has(label)) groups.set(label, []);
      const name = m.undated ? monthFormat.format(monthStart(m.month)) : monthOnly.format(monthStart(m.month));
      groups.get(label).push(h('option', { value: `${m.undated ? 'u' : 'd'}-${m.month}`, text: `${name} (${formatCount(m.count)})` }));
    }
    this.els.jump.replaceChildren(h('option', { value: '', text: 'Jump to…' }), ...[...groups].map(([label, options]) => h('optgroup', { label }, ...options)));
    this.els.jump.disabled = this.summary.months.length === 0;
  }

  renderAll() {
    this.els.list.replaceChildren();
    this.place = null;
    this.grid = null;
    this.appendCards(0);
  }

  /** Cards from `start` on, each under its month's and day's headers (opened where the place changes). */
  appendCards(start) {
    for (let i = start; i < this.results.length; i++) {
      const photo = this.results[i];
      const place = placeOf(photo);
      if (place.month !== this.place?.month) this.els.list.append(this.monthHeader(place));
      if (place.day !== this.place?.day || !this.grid) {
        this.els.list.append(this.dayHeader(place));
        this.grid = h('ul', { className: 'grid timeline-grid', 'aria-label': `Photos of ${dayFormat.format(place.ms)}` });
        gridKeys(this.grid);
        this.els.list.append(this.grid);
      }
      this.place = place;
      this.grid.append(card(photo, i, null, this.hooks.onOpen, this.hooks.selection));
    }
    show(this.els.more, this.nextCursor !== null);
    this.hooks.selection?.render();
  }

  monthHeader(place) {
    return h(
      'h2',
      { className: `timeline-month${place.undated ? ' timeline-undated' : ''}`, dataset: { month: place.month }, tabindex: '-1' },
      monthFormat.format(place.ms),
      place.undated ? h('span', { className: 'timeline-mark', title: 'These photos have no capture date: they are placed by their file’s time', text: 'no capture date · by file time' }) : null,
    );
  }

  dayHeader(place) {
    return h(
      'h3',
      { className: `timeline-day${place.undated ? ' timeline-undated' : ''}`, dataset: { day: place.day } },
      dayFormat.format(place.ms),
      place.undated ? h('span', { className: 'timeline-mark', text: 'file time' }) : null,
    );
  }
}
