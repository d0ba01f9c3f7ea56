/**
 * Picking photos in the results to label them: a checkbox on every card, Ctrl/⌘-click, Shift-click for a
 * range, or "Select" mode where a plain click selects instead of opening. The selection is kept by photo id,
 * so it survives a new search (photos can be gathered from several) and re-rendered grids; the tray in the
 * label bar shows every selected photo, those of earlier searches too, so nothing is selected unseen.
 * Labeling lets go of the selection: the next caption starts from nothing.
 */
import { api } from './api.js';
import { formatCount, h, show, splitPath, withCode } from './dom.js';

/** Thumbnails shown in the tray; past this, a count says how many more. */
const TRAY_MAX = 40;

export class Selection {
  /**
   * @param {{ bar: HTMLFormElement, count: HTMLElement, live: HTMLElement, caption: HTMLInputElement, captions: HTMLDataListElement,
   *           submit: HTMLButtonElement, selectAll: HTMLButtonElement, clear: HTMLButtonElement, message: HTMLElement,
   *           mode: HTMLButtonElement, grids: HTMLElement[], tray: HTMLElement, elsewhere: HTMLElement }} els
   *   grids: where cards are (search results, the timeline)
   * @param {{ results: () => object[], onLabeled: (report: object, caption: string) => void }} source
   */
  constructor(els, source) {
    this.els = els;
    this.source = source;
    /** Selected photos by id ({ id, path }), in the order they were picked. @type {Map<number, { id: number, path: string }>} */
    this.ids = new Map();
    this.mode = false;
    /** Index of the last card toggled by hand: where a Shift-click range starts. */
    this.anchor = null;
    els.mode.addEventListener('click', () => this.setMode(!this.mode));
    els.selectAll.addEventListener('click', () => this.selectAllShown());
    els.clear.addEventListener('click', () => this.clear());
    els.bar.addEventListener('submit', (e) => {
      e.preventDefault();
      this.label();
    });
    this.render();
  }

  has(id) {
    return this.ids.has(id);
  }

  get size() {
    return this.ids.size;
  }

  /**
   * What a click on a card means. Returns true when it was a selection gesture (the card must not open).
   * @param {MouseEvent} e
   */
  handleClick(e, photo, index) {
    if (e.shiftKey && this.anchor !== null) {
      const results = this.source.results();
      const [from, to] = this.anchor < index ? [this.anchor, index] : [index, this.anchor];
      for (let i = from; i <= to; i++) if (results[i]) this.ids.set(results[i].id, results[i]);
      this.anchor = index;
      this.sync();
      return true;
    }
    if (this.mode || e.ctrlKey || e.metaKey) {
      this.toggle(photo, index);
      return true;
    }
    return false;
  }

  toggle(photo, index, on = !this.ids.has(photo.id)) {
    if (on) this.ids.set(photo.id, photo);
    else this.ids.delete(photo.id);
    this.anchor = index;
    this.sync();
  }

  selectAllShown() {
    for (const r of this.source.results()) this.ids.set(r.id, r);
    this.sync();
  }

  clear() {
    this.ids.clear();
    this.anchor = null;
    this.setMode(false);
    this.sync();
  }

  setMode(on) {
    this.mode = on;
    this.els.mode.setAttribute('aria-pressed', String(on));
    for (const grid of this.els.grids) grid.classList.toggle('selecting', on || this.ids.size > 0);
    this.render();
  }

  /** Photos deleted from disk can no longer be labeled. */
  drop(ids) {
    let changed = false;
    for (const id of ids) changed = this.ids.delete(id) || changed;
    if (changed) this.sync();
  }

  /** The captions in use, offered as the caption box's suggestions. */
  setCaptions(captions) {
    this.els.captions.replaceChildren(...captions.map((c) => h('option', { value: c.caption })));
  }

  /** Marks every card on screen to match the set, and updates the bar. */
  sync() {
    for (const tile of this.els.grids.flatMap((grid) => [...grid.querySelectorAll('.tile')])) {
      const on = this.ids.has(Number(tile.dataset.id));
      tile.classList.toggle('selected', on);
      const box = tile.querySelector('.tile-check input');
      if (box) box.checked = on;
    }
    for (const grid of this.els.grids) grid.classList.toggle('selecting', this.mode || this.ids.size > 0);
    this.render();
  }

  render() {
    const n = this.ids.size;
    const { bar, count, live, submit, clear, elsewhere } = this.els;
    count.textContent = n === 0 ? 'Select photos to label them' : `${formatCount(n)} photo${n === 1 ? '' : 's'} selected`;
    // Photos picked in an earlier search are selected too: say how many are not on screen.
    const shown = n === 0 ? null : new Set(this.source.results().map((r) => r.id));
    const hidden = shown ? [...this.ids.keys()].filter((id) => !shown.has(id)).length : 0;
    elsewhere.textContent = hidden === 0 ? '' : `${formatCount(hidden)} of them not in these results`;
    this.renderTray();
    // Announced from a region that is always in the page: the bar itself appears with the first pick.
    const said = n === 0 ? (this.mode ? 'Select mode: clicking a photo selects it' : '') : count.textContent;
    if (live.textContent !== said) live.textContent = said;
    submit.disabled = n === 0;
    clear.disabled = n === 0 && !this.mode;
    show(bar, n > 0 || this.mode);
  }

  /** Every selected photo as a thumbnail with its own ✕, wherever it was picked. */
  renderTray() {
    const { tray } = this.els;
    const picked = [...this.ids.values()];
    const items = picked.slice(0, TRAY_MAX).map((photo) => {
      const { name } = splitPath(photo.path);
      return h(
        'li',
        { className: 'tray-item', dataset: { id: String(photo.id) }, title: name },
        h('img', { src: api.thumbnailUrl(photo.id), alt: '', width: '40', height: '40', decoding: 'async' }),
        h('button', { type: 'button', className: 'tray-remove', 'aria-label': `Deselect ${name}`, title: 'Deselect', text: '✕', onClick: () => this.toggle(photo, this.anchor, false) }),
      );
    });
    if (picked.length > TRAY_MAX) items.push(h('li', { className: 'tray-more', text: `+${formatCount(picked.length - TRAY_MAX)} more` }));
    tray.replaceChildren(...items);
    show(tray, items.length > 0);
  }

  async label() {
    const caption = this.els.caption.value.trim();
    const ids = [...this.ids.keys()];
    if (!ids.length) return;
    if (!caption) {
      this.say('Type a caption first: the words you would search these photos by.', true);
      this.els.caption.focus();
      return;
    }
    this.els.submit.disabled = true;
    try {
      const report = await api.addLabels(ids, caption);
      const parts =
        report.added === 0
          ? [`Nothing new: the ${formatCount(report.duplicates)} photo${report.duplicates === 1 ? '' : 's'} already had “${caption}”`]
          : [`Labeled ${formatCount(report.added)} photo${report.added === 1 ? '' : 's'} “${caption}”`];
      if (report.added && report.duplicates) parts.push(`${formatCount(report.duplicates)} already had it`);
      if (report.problemCount) parts.push(`${formatCount(report.problemCount)} could not be labeled`);
      this.say(`${parts.join(' · ')}.`, false);
      this.els.caption.value = '';
      // Done with these photos: a selection kept on would silently receive the next caption too.
      this.ids.clear();
      this.anchor = null;
      this.sync();
      this.source.onLabeled(report, caption);
    } catch (err) {
      this.say(err.message, true);
    } finally {
      this.els.submit.disabled = this.ids.size === 0;
    }
  }

  say(text, isError) {
    const { message } = this.els;
    // The region stays in the page (empty when quiet), so screen readers announce each new message.
    message.replaceChildren(withCode(text));
    message.classList.toggle('error-text', isError);
  }
}

/** The checkbox laid over a card: a sibling of the card's button (a control inside a button is invalid). */
export function selectBox(photo, name, index, selection) {
  const box = h('input', {
    type: 'checkbox',
    'aria-label': `Select ${name}`,
    onChange: (e) => selection.toggle(photo, index, e.target.checked),
  });
  box.checked = selection.has(photo.id);
  return h('label', { className: 'tile-check', title: 'Select to label' }, box);
}
