/**
 * The photo viewer: a modal dialog with the large image, its metadata, its labels and "find similar". The preview
 * thumbnail shows at once and the original replaces it when loaded; ← and → browse the results, Escape
 * closes (the dialog's own behaviour), and focus returns to where it was.
 */
import { api } from './api.js';
import { formatBytes, formatCamera, formatCount, formatDate, h, show, splitPath } from './dom.js';
import { scoreText } from './grid.js';

/** Formats a browser may not draw even though the server indexes them. */
const MAYBE_UNVIEWABLE = new Set(['heic', 'tiff']);

export class Viewer {
  /**
   * @param {HTMLDialogElement} dialog
   * @param {{ results: () => object[], bestScore: () => number | null, hasMore: () => boolean,
   *           loadMore: () => Promise<void>, onSimilar: (photo: object) => void, onLabeled?: () => void,
   *           cardAt?: (index: number) => Element | null }} source
   *   results: the photos on screen, search results or the timeline's; cardAt: the card of one of them
   */
  constructor(dialog, source) {
    this.dialog = dialog;
    this.source = source;
    this.index = -1;
    this.loading = 0;
    const $ = (id) => dialog.querySelector(`#${id}`);
    this.els = {
      image: $('viewer-image'),
      title: $('viewer-title'),
      meta: $('viewer-meta'),
      note: $('viewer-note'),
      prev: $('viewer-prev'),
      next: $('viewer-next'),
      similar: $('viewer-similar'),
      original: $('viewer-original'),
      labels: $('viewer-labels'),
      labelsEmpty: $('viewer-labels-empty'),
      labelForm: $('viewer-label-form'),
      labelInput: $('viewer-label-input'),
      labelError: $('viewer-label-error'),
    };
    this.labelsTicket = 0;
    this.els.labelForm.addEventListener('submit', (e) => {
      e.preventDefault();
      this.addLabel();
    });
    $('viewer-close').addEventListener('click', () => this.close());
    this.els.prev.addEventListener('click', () => this.step(-1));
    this.els.next.addEventListener('click', () => this.step(1));
    this.els.similar.addEventListener('click', () => {
      const photo = this.current();
      if (!photo) return;
      this.close();
      source.onSimilar(photo);
    });
    dialog.addEventListener('keydown', (e) => {
      // In the caption box the arrows move the caret, not to another photo.
      if (e.target instanceof HTMLInputElement) return;
      if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
        e.preventDefault();
        this.step(e.key === 'ArrowLeft' ? -1 : 1);
      }
    });
    // A click on the backdrop (the dialog box itself, outside its content) closes it.
    dialog.addEventListener('click', (e) => {
      if (e.target === dialog) this.close();
    });
    dialog.addEventListener('close', () => {
      this.index = -1;
      this.els.image.removeAttribute('src');
      this.returnFocus?.focus?.();
    });
  }

  get isOpen() {
    return this.dialog.open;
  }

  current() {
    return this.source.results()[this.index];
  }

  open(index) {
    if (!this.dialog.open) {
      this.returnFocus = document.activeElement;
      this.dialog.showModal();
    }
    this.show(index);
    this.els.similar.focus();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  async step(delta) {
    const results = this.source.results();
    let target = this.index + delta;
    if (target >= results.length && this.source.hasMore()) {
      await this.source.loadMore();
    }
    target = Math.max(0, Math.min(this.source.results().length - 1, target));
    if (target !== this.index && this.dialog.open) this.show(target);
  }

  show(index) {
    const photo = this.source.results()[index];
    if (!photo) return;
    this.index = index;
    const { name } = splitPath(photo.path);
    this.els.title.textContent = name;
    this.els.image.alt = name;
    this.els.original.href = api.fileUrl(photo.id);
    this.renderMeta(photo);
    this.loadImage(photo);
    this.loadLabels(photo);
    const count = this.source.results().length;
    this.els.prev.disabled = index <= 0;
    this.els.next.disabled = index >= count - 1 && !this.source.hasMore();
    // The card under the viewer follows along, so closing leaves focus on the photo last seen.
    const cardEl = this.source.cardAt ? this.source.cardAt(index) : document.querySelector(`.card[data-index="${index}"]`);
    if (cardEl) this.returnFocus = cardEl;
  }

  /** Thumbnail first (cached, instant), then the original once it has decoded. */
  loadImage(photo) {
    const ticket = ++this.loading;
    const { image, note } = this.els;
    show(note, false);
    image.src = api.thumbnailUrl(photo.id);
    image.classList.add('preview');
    const full = new Image();
    full.decoding = 'async';
    full.src = api.fileUrl(photo.id);
    full
      .decode()
      .then(() => {
        if (ticket !== this.loading) return;
        image.src = full.src;
        image.classList.remove('preview');
      })
      .catch(() => {
        if (ticket !== this.loading) return;
        note.textContent = MAYBE_UNVIEWABLE.has(photo.format ?? '')
          ? `This browser cannot show ${photo.format.toUpperCase()} files; showing the preview. “Open original” downloads the file.`
          : 'The original file could not be loaded (moved, deleted, or its folder is offline); showing the preview.';
        show(note, true);
      });
  }

  /** The captions this photo is labeled with; an answer for a photo no longer shown is dropped. */
  async loadLabels(photo) {
    const ticket = ++this.labelsTicket;
    show(this.els.labelError, false);
    try {
      const { labels } = await api.labels({ imageId: photo.id, limit: 100 });
      if (ticket !== this.labelsTicket) return;
      this.els.labels.replaceChildren(
        ...labels.map((l) =>
          h('li', { className: 'label-chip', dataset: { id: String(l.id) } }, h('span', { className: 'label-chip-caption', text: l.caption }), ' ', h('span', { className: 'tag', text: l.split, title: l.split === 'val' ? 'held out to check training' : 'learned from' })),
        ),
      );
      show(this.els.labelsEmpty, labels.length === 0);
    } catch (err) {
      if (ticket !== this.labelsTicket) return;
      this.els.labelError.textContent = err.message;
      show(this.els.labelError, true);
    }
  }

  async addLabel() {
    const photo = this.current();
    const caption = this.els.labelInput.value.trim();
    if (!photo || !caption) return;
    try {
      await api.addLabels([photo.id], caption);
      this.els.labelInput.value = '';
      this.source.onLabeled?.();
      if (this.current() === photo) await this.loadLabels(photo);
    } catch (err) {
      this.els.labelError.textContent = err.message;
      show(this.els.labelError, true);
    }
  }

  renderMeta(photo) {
    const rows = [
      ['Path', photo.path],
      ['Size', formatBytes(photo.size)],
      ['Dimensions', photo.width && photo.height ? `${formatCount(photo.width)} × ${formatCount(photo.height)} px` : ''],
      ['Taken', photo.takenAt !== null && photo.takenAt !== undefined ? formatDate(photo.takenAt) : 'unknown'],
      // Where the timeline placed a photo without a capture date.
      ['File time', (photo.takenAt === null || photo.takenAt === undefined) && Number.isFinite(photo.mtimeMs) ? formatDate(photo.mtimeMs) : ''],
      ['Camera', formatCamera(photo.cameraMake, photo.cameraModel) || 'unknown'],
      ['Format', photo.format ? photo.format.toUpperCase() : ''],
      ['Score', typeof photo.score === 'number' ? `${scoreText(photo.score, this.source.bestScore())}${photo.strong === false ? ' · weaker match' : ''}` : ''],
    ];
    this.els.meta.replaceChildren(
      ...rows.filter(([, value]) => value).flatMap(([label, value]) => [h('dt', { text: label }), h('dd', { text: value, dataset: { field: label.toLowerCase() } })]),
    );
  }
}
