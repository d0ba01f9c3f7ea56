/**
 * The duplicates page: groups of exact copies and near-duplicates, each with the photo to keep and why;
 * the others can be hidden from search or moved to their folder's trash folder, and either undone (a toast
 * with Undo right after, and the lists of hidden and trashed photos at any time). The threshold is a slider
 * with words and example pairs from the user's own photos, since a cosine distance means nothing by itself.
 */
import { duplicatesApi, isAbort } from './api.js';
import { debounce, formatBytes, formatCount, h, show, splitPath } from './dom.js';

/** What a threshold means, in words; the first band at or above the value applies. */
const BANDS = [
  [0.003, 'exact copies and high-quality re-saves only'],
  [0.015, 'same shot, re-saved or resized'],
  [0.03, 'also hard recompression and small edits (a light crop, a colour change)'],
  [0.06, 'also burst shots and close variants: check each group'],
  [0.1, 'similar photos, not only copies: review before hiding anything'],
];

export function thresholdWords(value) {
  return `${value.toFixed(3)}: ${(BANDS.find(([max]) => value <= max + 1e-9) ?? BANDS[BANDS.length - 1])[1]}`;
}

const KIND = { exact: 'exact copies', near: 'near-duplicates', mixed: 'copies and near-duplicates' };

export class DuplicatesView {
  /** @param {HTMLElement} section the page's <section>; its elements are found by id inside it */
  constructor(section, { toasts }) {
    const $ = (id) => {
      const el = section.querySelector(`#${id}`);
      if (!el) throw new Error(`the duplicates page lacks #${id}`);
      return el;
    };
    this.els = {
      threshold: $('dup-threshold'),
      value: $('dup-threshold-value'),
      words: $('dup-threshold-words'),
      rotations: $('dup-rotations'),
      refresh: $('dup-refresh'),
      examples: $('dup-examples'),
      summary: $('dup-summary'),
      error: $('dup-error'),
      groups: $('dup-groups'),
      hiddenCount: $('dup-hidden-count'),
      hiddenList: $('dup-hidden-list'),
      trashCount: $('dup-trash-count'),
      trashList: $('dup-trash-list'),
    };
    this.toasts = toasts;
    this.controller = null;
    this.sayThreshold();
    const reload = debounce(() => this.load(), 350);
    this.els.threshold.addEventListener('input', () => {
      this.sayThreshold();
      reload();
    });
    this.els.rotations.addEventListener('change', () => this.load());
    this.els.refresh.addEventListener('click', () => this.load());
  }

  get threshold() {
    return Number(this.els.threshold.value);
  }

  sayThreshold() {
    this.els.value.textContent = this.threshold.toFixed(3);
    this.els.words.textContent = thresholdWords(this.threshold);
  }

  /** Finds the groups again (the slider, the rotations switch, an undo). */
  async load() {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.els.groups.setAttribute('aria-busy', 'true');
    this.els.summary.textContent = 'Looking for duplicates…';
    try {
      const report = await duplicatesApi.find({ threshold: this.threshold, rotations: this.els.rotations.checked }, controller.signal);
      if (controller !== this.controller) return;
      show(this.els.error, false);
      this.render(report);
      await this.loadLists();
    } catch (err) {
      if (isAbort(err)) return;
      this.els.summary.textContent = '';
      this.els.error.textContent = err.message;
      show(this.els.error, true);
    } finally {
      if (controller === this.controller) this.els.groups.removeAttribute('aria-busy');
    }
  }

  render(report) {
    const { groups } = report;
    this.els.summary.textContent =
      groups.length === 0
        ? `No duplicates among ${formatCount(report.photosChecked)} photos at ${report.threshold.toFixed(3)}.`
        : `${formatCount(groups.length)} group${groups.length === 1 ? '' : 's'}: ${formatCount(report.duplicatePhotos)} photo${report.duplicatePhotos === 1 ? '' : 's'} besides the ones to keep, among ${formatCount(report.photosChecked)}.`;
    this.els.groups.replaceChildren(...groups.map((g) => this.group(g)));
    this.renderExamples(report.examples, report.threshold);
    this.setCounts(report);
  }

  renderExamples({ under, over }, threshold) {
    const pair = (p, joined) =>
      h(
        'li',
        { className: 'dup-pair' },
        this.thumb(p.a.id, p.a.path),
        this.thumb(p.b.id, p.b.path),
        h('span', { className: 'dup-pair-text', text: `${p.distance.toFixed(4)} · ${joined ? 'grouped' : 'not grouped'}` }),
      );
    const blocks = [];
    if (under.length) blocks.push(h('div', {}, h('h3', { className: 'dup-examples-title', text: `Just under ${threshold.toFixed(3)}: grouped` }), h('ul', { className: 'dup-pairs' }, ...under.map((p) => pair(p, true)))));
    if (over.length) blocks.push(h('div', {}, h('h3', { className: 'dup-examples-title', text: `Just over ${threshold.toFixed(3)}: a higher threshold would group these` }), h('ul', { className: 'dup-pairs' }, ...over.map((p) => pair(p, false)))));
    this.els.examples.replaceChildren(...blocks);
    show(this.els.examples, blocks.length > 0);
  }

  thumb(id, path) {
    return h('img', { className: 'dup-thumb', src: `/api/images/${encodeURIComponent(id)}/thumbnail`, alt: splitPath(path).name, loading: 'lazy', width: 96, height: 96 });
  }

  group(g) {
    const keeper = g.photos.find((p) => p.keeper);
    return h(
      'li',
      { className: 'dup-group', dataset: { group: g.id } },
      h(
        'div',
        { className: 'dup-group-head' },
        h('strong', { className: 'dup-count', dataset: { kind: KIND[g.kind] }, text: `${g.photos.length} ${KIND[g.kind]}` }),
        h('span', { className: 'dup-reason', text: `Keep ${splitPath(keeper.path).name}: ${g.reason}` }),
      ),
      h('ul', { className: 'dup-photos' }, ...g.photos.map((p) => this.photo(p))),
    );
  }

  photo(p) {
    const { dir, name } = splitPath(p.path);
    const dims = p.width && p.height ? `${p.width}×${p.height}` : 'size unknown';
    const how = p.keeper ? null : p.exactCopy ? 'exact copy' : `distance ${p.distance.toFixed(4)}${p.rotated ? `, turned ${p.rotated}°` : ''}`;
    return h(
      'li',
      { className: `dup-photo${p.keeper ? ' dup-keeper' : ''}`, dataset: { id: String(p.id) } },
      this.thumb(p.id, p.path),
      p.keeper ? h('span', { className: 'badge dup-keep-badge', text: 'Keep' }) : null,
      h('span', { className: 'dup-name', title: p.path, text: name }),
      h('span', { className: 'dup-dir', text: dir }),
      h('span', { className: 'dup-meta', text: [dims, (p.format ?? '').toUpperCase(), formatBytes(p.size), how].filter(Boolean).join(' · ') }),
      h(
        'span',
        { className: 'dup-actions' },
        h('button', { type: 'button', className: 'button dup-hide', text: 'Hide from search', onClick: () => this.hide(p) }),
        h('button', { type: 'button', className: 'button dup-trash', text: 'Move to trash', onClick: () => this.trash(p) }),
      ),
    );
  }

  /** The photo leaves its group on screen; a group left with one photo is done. */
  takeOut(id) {
    for (const li of this.els.groups.querySelectorAll(`.dup-photo[data-id="${id}"]`)) {
      const group = li.closest('.dup-group');
      li.remove();
      const left = group?.querySelectorAll('.dup-photo').length ?? 0;
      if (group && left < 2) group.remove();
      else if (group) {
        const count = group.querySelector('.dup-count');
        count.textContent = `${left} ${count.dataset.kind}`;
      }
    }
  }

  async hide(p) {
    const name = splitPath(p.path).name;
    try {
      const r = await duplicatesApi.hide([p.id]);
      this.takeOut(p.id);
      this.setCounts(r);
      await this.loadLists();
      this.toast(`Hid ${name} from search.`, async () => {
        await duplicatesApi.unhide([p.id]);
        await this.load();
      });
    } catch (err) {
      this.toast(`Could not hide ${name}: ${err.message}`, null, true);
    }
  }

  async trash(p) {
    const name = splitPath(p.path).name;
    try {
      const r = await duplicatesApi.trash([p.id]);
      const moved = r.trashed[0];
      this.takeOut(p.id);
      this.setCounts(r);
      await this.loadLists();
      this.toast(`Moved ${name} to ${moved.trashPath}.`, async () => {
        await duplicatesApi.undo([moved.trashId]);
        await this.load();
      });
    } catch (err) {
      this.toast(`Could not move ${name}: ${err.message}`, null, true);
    }
  }

  setCounts({ hiddenCount, trashCount }) {
    if (hiddenCount !== undefined) this.els.hiddenCount.textContent = formatCount(hiddenCount);
    if (trashCount !== undefined) this.els.trashCount.textContent = formatCount(trashCount);
  }

  /** The hidden photos (each with Show again) and the trashed ones (each with Put back). */
  async loadLists() {
    const [hidden, trash] = await Promise.all([duplicatesApi.hidden(), duplicatesApi.trashed()]);
    this.setCounts(hidden);
    this.els.hiddenList.replaceChildren(
      ...hidden.photos.map((p) =>
        h(
          'li',
          { className: 'dup-listed', dataset: { id: String(p.id) } },
          h('span', { className: 'dup-listed-path', text: p.path }),
          h('button', {
            type: 'button',
            className: 'button dup-unhide',
            text: 'Show again',
            onClick: async () => {
              await duplicatesApi.unhide([p.id]).catch((err) => this.toast(err.message, null, true));
              await this.load();
            },
          }),
        ),
      ),
    );
    this.els.trashList.replaceChildren(
      ...trash.items.map((t) =>
        h(
          'li',
          { className: 'dup-listed', dataset: { trashId: String(t.id) } },
          h('span', { className: 'dup-listed-path', text: t.originalPath }),
          h('button', {
            type: 'button',
            className: 'button dup-undo',
            text: 'Put back',
            onClick: async () => {
              await duplicatesApi.undo([t.id]).catch((err) => this.toast(`Could not put ${splitPath(t.originalPath).name} back: ${err.message}`, null, true));
              await this.load();
            },
          }),
        ),
      ),
    );
  }

  /** A toast of its own: the shared one has no action button. */
  toast(message, undo, failure = false) {
    const toast = h('div', { className: `toast dup-toast${failure ? ' toast-failure' : ''}` }, h('span', { text: message }));
    const close = () => toast.remove();
    if (undo) {
      toast.append(
        h('button', {
          type: 'button',
          className: 'button dup-toast-undo',
          text: 'Undo',
          onClick: async () => {
            close();
            try {
              await undo();
            } catch (err) {
              this.toast(`Undo failed: ${err.message}`, null, true);
            }
          },
        }),
      );
    }
    toast.append(h('button', { type: 'button', className: 'chip-remove', 'aria-label': 'Dismiss', text: '✕', onClick: close }));
    this.toasts.append(toast);
    setTimeout(close, 15_000);
  }
}
