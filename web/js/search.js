/**
 * The search view: what is being asked (phrase, a photo to match, uploaded images, filters), one request
 * at a time, and the grid of results. Typing is debounced; every new request aborts the one before it and
 * answers are matched to the request that asked, so results never arrive out of order. The strong matches
 * show first ("12 good matches · show 48 weaker"): the weaker ones of the page are in the grid, after a
 * divider, hidden until the user widens the list; narrowing hides them again.
 */
import { isAbort } from './api.js';
import { debounce, formatCount, h, show, splitPath, withCode } from './dom.js';
import { card, gridKeys } from './grid.js';
import { queryFor } from './query.js';
import { dateLabel, hasSyntax, locate, only, without } from './understood.js';

const PAGE_SIZE = 60;
const TYPING_DELAY_MS = 200;
const MAX_UPLOADS = 4;

/** Where the strong matches end in the grid: a labelled rule between them and the weaker ones. */
function divider() {
  return h('li', { className: 'cutoff-divider', role: 'separator', 'aria-label': 'Weaker matches below' }, h('span', { text: 'Weaker matches' }));
}

export class SearchController {
  /**
   * @param {{ input: HTMLInputElement, grid: HTMLElement, summary: HTMLElement, error: HTMLElement, empty: HTMLElement,
   *           more: HTMLButtonElement, chips: HTMLElement, fresh: HTMLButtonElement }} els
   * @param {{ onOpen: (index: number) => void, selection?: import('./selection.js').Selection, onIdle?: (idle: boolean) => void }} hooks
   */
  constructor(els, hooks) {
    this.els = els;
    this.hooks = hooks;
    /** `literal`: the text is one phrase (syntax=plain), no dates, `|` or -word read into it. */
    this.state = { text: '', literal: false, similar: null, uploads: [] };
    /** What the server understood of the typed text, and the text it was: the chips are drawn from it. */
    this.understood = null;
    this.filters = {};
    /** Results shown so far, in order (the viewer browses them). */
    this.results = [];
    this.hasMore = false;
    this.bestScore = null;
    /** Strong matches of the whole search (the server counts them over every candidate, not one page). */
    this.strongCount = 0;
    /** The user asked to see the weaker matches too. */
    this.widened = false;
    this.generation = 0;
    this.inFlight = null;
    this.freshCount = 0;
    this.typed = debounce(() => this.run(false), TYPING_DELAY_MS);

    els.input.addEventListener('input', () => {
      this.state.text = els.input.value;
      // Chips describe the text that was searched: once it changes they would point at the wrong words.
      this.renderChips();
      this.typed();
    });
    els.more.addEventListener('click', () => this.loadMore());
    els.fresh.addEventListener('click', () => this.runNow());
    gridKeys(els.grid);
    // Past the last row, the next page loads by itself; the button stays for keyboards and old browsers.
    this.sentinel = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && this.canLoadMore() && !this.inFlight) this.loadMore();
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
    return this.canLoadMore() ? this.run(true) : Promise.resolve();
  }

  /** Strong matches come first: how many of the loaded results are strong. */
  strongLoaded() {
    const i = this.results.findIndex((r) => r.strong === false);
    return i < 0 ? this.results.length : i;
  }

  /** Weaker matches show when the user widened the list, or when there is nothing strong to show instead. */
  isWide() {
    return this.widened || this.strongCount === 0;
  }

  /** The results on screen, in order: what the viewer browses and "select all" takes. */
  shown() {
    return this.isWide() ? this.results : this.results.slice(0, this.strongLoaded());
  }

  /** More to load that would show: strong ones not loaded yet, or any once widened. */
  canLoadMore() {
    return this.hasMore && (this.isWide() || this.strongLoaded() < this.strongCount);
  }

  /** Shows or hides the weaker matches below the divider. */
  setWidened(on) {
    const focusLeaves = !on && document.activeElement?.closest?.('.tile.weaker');
    this.widened = on;
    this.renderCutoff();
    this.renderSummary(this.tookMs);
    if (focusLeaves) this.els.summary.querySelector('.cutoff-toggle')?.focus();
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
    // A query replaces the timeline at once: its results (or its error) are what the page is about now.
    if (!append) this.hooks.onIdle?.(false);
    const controller = new AbortController();
    this.inFlight = controller;
    this.els.grid.setAttribute('aria-busy', 'true');
    document.body.classList.add('searching');
    const page = { limit: PAGE_SIZE, offset: append ? this.results.length : 0 };
    const asked = { text: this.state.text, literal: this.state.literal };
    try {
      const response = await query(this.filters, page, controller.signal);
      if (generation !== this.generation) return;
      show(this.els.error, false);
      if (!append) {
        this.understood = Array.isArray(response.understood) ? { ...asked, parts: response.understood } : null;
        this.renderChips();
        this.results = [];
        // Each new search starts with its strong matches only.
        this.widened = false;
        this.freshCount = 0;
        show(this.els.fresh, false);
      }
      const start = this.results.length;
      this.results.push(...response.results);
      this.hasMore = response.hasMore;
      this.bestScore = response.bestScore ?? this.bestScore;
      this.strongCount = response.cutoff?.strongCount ?? this.results.length;
      this.tookMs = response.tookMs;
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
    this.strongCount = 0;
    this.widened = false;
    this.freshCount = 0;
    this.renderAll();
    this.els.summary.textContent = '';
    show(this.els.error, false);
    show(this.els.fresh, false);
    // No query: the page shows the library itself (the timeline), or the prompt where there is none.
    if (this.hooks.onIdle) this.hooks.onIdle(true);
    else show(this.els.empty, true);
    this.els.grid.removeAttribute('aria-busy');
    document.body.classList.remove('searching');
  }

  renderAll() {
    this.els.grid.replaceChildren();
    this.appendCards(0);
  }

  appendCards(start) {
    const frag = document.createDocumentFragment();
    for (let i = start; i < this.results.length; i++) {
      const photo = this.results[i];
      // The divider goes where the strong matches end (none when nothing is strong: all are weaker then).
      if (photo.strong === false && i > 0 && this.results[i - 1].strong !== false) frag.append(divider());
      frag.append(card(photo, i, this.bestScore, this.hooks.onOpen, this.hooks.selection));
    }
    this.els.grid.append(frag);
    this.renderCutoff();
    show(this.els.empty, false);
  }

  /** Weaker cards shown or hidden, and what follows from it: the "more" button, the selection's count. */
  renderCutoff() {
    this.els.grid.classList.toggle('narrowed', !this.isWide());
    show(this.els.more, this.canLoadMore());
    // The selection says how many of its photos these results leave out.
    this.hooks.selection?.render();
  }

  renderSummary(tookMs) {
    const n = this.results.length;
    const what = this.describe();
    const took = ` · ${Math.round(tookMs)} ms`;
    if (n === 0) {
      this.els.summary.replaceChildren('No photos match ', h('q', { text: what }), took);
      return;
    }
    const more = this.hasMore ? '+' : '';
    const weaker = n - this.strongLoaded();
    if (this.strongCount === 0) {
      this.els.summary.replaceChildren('No good matches for ', h('q', { text: what }), ` · showing ${formatCount(weaker)}${more} weaker${took}`);
      return;
    }
    const strong = `${formatCount(this.strongCount)} good match${this.strongCount === 1 ? '' : 'es'} for `;
    const parts = [strong, h('q', { text: what })];
    if (weaker > 0) {
      const wide = this.isWide();
      parts.push(
        ' · ',
        h('button', {
          type: 'button',
          className: 'cutoff-toggle',
          'aria-expanded': String(wide),
          'aria-controls': this.els.grid.id,
          title: wide ? 'Show the good matches only' : 'Show the photos that match less well, below the good ones',
          text: wide ? `hide ${formatCount(weaker)}${more} weaker` : `show ${formatCount(weaker)}${more} weaker`,
          onClick: () => this.setWidened(!wide),
        }),
      );
    }
    parts.push(took);
    this.els.summary.replaceChildren(...parts);
  }

  describe() {
    const parts = [];
    if (this.state.text.trim()) parts.push(this.state.text.trim());
    if (this.state.similar) parts.push(`like ${this.state.similar.name}`);
    if (this.state.uploads.length) parts.push(this.state.uploads.length === 1 ? 'like the uploaded image' : `like ${this.state.uploads.length} uploaded images`);
    return parts.join(' + ');
  }

  /** What the query holds besides the phrase, each removable, then what the server read in the typed text. */
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
    const u = this.understood;
    const current = u && u.text === this.state.text && u.literal === this.state.literal;
    if (current && hasSyntax(u.parts)) chips.push(...this.syntaxChips(u.text, u.parts));
    // The way out of the syntax, where there is syntax to leave (or it was left, to come back).
    if ((current && hasSyntax(u.parts)) || (this.state.literal && this.state.text.trim())) chips.push(this.literalToggle());
    this.els.chips.replaceChildren(...chips);
    show(this.els.chips, chips.length > 0);
  }

  /**
   * One chip per part the server understood: the date ("Taken Jul 2023"), each negation ("not: cat"), the
   * alternatives ("any of: cat · dog") or the phrase the model gets. A chip's words select those words in
   * the search box (the box holds the whole query already: one place to edit it, caret where the part
   * is); its ✕ searches again without them.
   */
  syntaxChips(text, parts) {
    const where = locate(text, parts);
    const chips = [];
    const date = parts.find((p) => p.kind === 'date');
    const phrases = parts.flatMap((p) => (p.kind === 'phrase' ? [p.text] : p.kind === 'or' ? p.phrases : []));
    // A query that is only a date sends its own words as the phrase: no phrase chip for that stand-in.
    if (phrases.length && where.alternatives.length) {
      // Without the phrase only a date or a photo must be left: negations alone are no search.
      const rest = only(text, [...where.dates, ...where.nots.filter(Boolean)]);
      const removable = this.state.similar || this.state.uploads.length || (where.dates.length && !where.nots.some(Boolean));
      const remove = removable ? () => this.replaceText(rest) : null;
      if (phrases.length === 1) {
        chips.push(this.textChip('phrase', '', [{ text: phrases[0], span: where.alternatives[0] }], remove, 'Sent to the model as the phrase to match'));
      } else {
        const alts = phrases.map((p, i) => ({ text: p, span: where.alternatives[i] }));
        chips.push(this.textChip('or', 'any of:', alts, remove, 'Each searched on its own; a photo counts at its best'));
      }
    }
    let n = 0;
    for (const p of parts) {
      if (p.kind !== 'not') continue;
      const span = where.nots[n++];
      chips.push(this.textChip('not', 'not:', [{ text: p.text, span }], span ? () => this.replaceText(without(text, [span])) : null, 'Photos like this rank lower'));
    }
    if (date) {
      const spans = where.dates;
      const remove = spans.length ? () => this.replaceText(without(text, spans)) : null;
      chips.push(this.textChip('date', 'Taken', [{ text: dateLabel(date), span: spans[0] }], remove, `Read from “${date.text}”: only photos taken then`));
    }
    return chips;
  }

  /**
   * @param {string} kind @param {string} prefix shown muted before the words
   * @param {{ text: string, span?: { start: number, end: number } | null }[]} items each its own button when its words were found
   * @param {null | (() => void)} onRemove
   */
  textChip(kind, prefix, items, onRemove, title) {
    const label = `${prefix ? `${prefix} ` : ''}${items.map((i) => i.text).join(' · ')}`;
    const body = [];
    if (prefix) body.push(h('span', { className: 'chip-kind', text: prefix }));
    items.forEach((item, i) => {
      if (i > 0) body.push(h('span', { className: 'chip-sep', 'aria-hidden': 'true', text: '·' }));
      body.push(
        item.span
          ? h('button', { type: 'button', className: 'chip-edit', title: `${title} · edit in the search box`, 'aria-label': `Edit in the search box: ${prefix ? `${prefix} ` : ''}${item.text}`, text: item.text, onClick: () => this.editAt(item.span) })
          : h('span', { className: 'chip-value', title, text: item.text }),
      );
    });
    return h(
      'span',
      { className: onRemove ? 'chip chip-query' : 'chip chip-query chip-fixed', dataset: { kind } },
      ...body,
      onRemove ? h('button', { type: 'button', className: 'chip-remove', 'aria-label': `Remove: ${label}`, title: 'Remove', text: '✕', onClick: onRemove }) : null,
    );
  }

  /** The words of a part selected in the box: typing replaces them, an arrow key puts the caret there. */
  editAt(span) {
    const { input } = this.els;
    input.focus();
    input.setSelectionRange(span.start, span.end);
  }

  /** The box holds the new text and is searched at once; filters, photo and uploads stay. */
  replaceText(text) {
    this.els.input.value = text;
    this.state.text = text;
    this.understood = null;
    this.renderChips();
    return this.runNow();
  }

  literalToggle() {
    const on = this.state.literal;
    return h('button', {
      type: 'button',
      className: 'chip-literal',
      'aria-pressed': String(on),
      title: on ? 'Read dates, a | b and -word in the search box again' : 'Search the typed words as they are: no dates, alternatives or negations read into them',
      text: 'Search literally',
      onClick: () => {
        this.state.literal = !on;
        this.renderChips();
        this.runNow();
      },
    });
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
