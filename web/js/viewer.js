/**
 * The photo viewer: a modal dialog with the large image, its metadata, its labels and "find similar". The preview
 * thumbnail shows at once and the original replaces it when loaded; ← and → browse the results, Escape
 * closes (the dialog's own behaviour), and focus returns to where it was.
 */
import { api } from './api.js';
import { formatBytes, formatCamera, formatCount, formatDate, h, show, splitPath } from './dom.js';
import { scoreText } from './grid.js';

const SVG = 'http://www.w3.org/2000/svg';

/** Lower case without accents, as the server's text search compares (the trigram index folds both). */
const fold = (s) => s.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();

/** The words of a typed search that the text in a photo is matched on: quotes, `|` and `-word` taken out. */
function queryWords(q) {
  return q
    .replace(/(^|\s)-("[^"]*"?|\S+)/g, ' ')
    .replace(/["|]/g, ' ')
    .split(/\s+/)
    .map(fold)
    .filter((w) => w.length > 0);
}

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
    this.textTicket = 0;
    this.buildTextParts(dialog);
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
    this.loadText(photo);
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

  /**
   * The recognised text's parts, made here (the page's markup stays the same without OCR): a list of the lines
   * under the labels, and an SVG over the photo with one outline per line, the lines the search matched marked.
   */
  buildTextParts(dialog) {
    const info = dialog.querySelector('.viewer-info');
    this.els.textList = h('ol', { className: 'viewer-text-lines', id: 'viewer-text-lines' });
    this.els.textNote = h('p', { className: 'muted small', id: 'viewer-text-note' });
    this.els.textSection = h('section', { className: 'viewer-text', id: 'viewer-text' }, h('h3', { text: 'Text in the photo' }), this.els.textList, this.els.textNote);
    show(this.els.textSection, false);
    info.append(this.els.textSection);
    const boxes = document.createElementNS(SVG, 'svg');
    boxes.setAttribute('id', 'viewer-text-boxes');
    boxes.setAttribute('class', 'viewer-text-boxes');
    boxes.setAttribute('viewBox', '0 0 1 1');
    boxes.setAttribute('preserveAspectRatio', 'none');
    boxes.setAttribute('aria-hidden', 'true');
    this.els.textBoxes = boxes;
    this.els.image.after(boxes);
    this.els.image.addEventListener('load', () => this.placeBoxes());
    new ResizeObserver(() => this.placeBoxes()).observe(this.els.image);
  }

  /** Lays the outline layer over the part of the <img> the photo fills (object-fit: contain letterboxes it). */
  placeBoxes() {
    const { image, textBoxes } = this.els;
    const photo = this.current();
    const ratio = photo?.width && photo?.height ? photo.width / photo.height : image.naturalWidth / (image.naturalHeight || 1);
    const w = image.clientWidth;
    const hgt = image.clientHeight;
    if (!w || !hgt || !ratio) return;
    const [dw, dh] = w / hgt > ratio ? [hgt * ratio, hgt] : [w, w / ratio];
    Object.assign(textBoxes.style, { left: `${image.offsetLeft + (w - dw) / 2}px`, top: `${image.offsetTop + (hgt - dh) / 2}px`, width: `${dw}px`, height: `${dh}px` });
  }

  /** The text read in the photo, its lines listed and outlined; those holding a word of the search marked. */
  async loadText(photo) {
    const ticket = ++this.textTicket;
    const { textSection, textList, textNote, textBoxes } = this.els;
    textList.replaceChildren();
    textBoxes.replaceChildren();
    show(textSection, false);
    let answer;
    try {
      const res = await fetch(`/api/images/${encodeURIComponent(photo.id)}/text`, { headers: { Accept: 'application/json' } });
      answer = res.ok ? await res.json() : null;
    } catch {
      answer = null;
    }
    if (ticket !== this.textTicket || !answer) return;
    if (answer.status === 'pending' || (answer.status === 'done' && answer.lines.length === 0)) return;
    const words = photo.matched?.includes('text') ? queryWords(document.getElementById('q')?.value ?? '') : [];
    const hits = (text) => words.length > 0 && words.some((w) => fold(text).includes(w));
    textList.replaceChildren(
      ...answer.lines.map((l) => h('li', { className: hits(l.text) ? 'matched' : '', text: l.text, title: `confidence ${Math.round(l.confidence * 100)}%` })),
    );
    for (const l of answer.lines) {
      const poly = document.createElementNS(SVG, 'polygon');
      poly.setAttribute('points', l.box.map(([x, y]) => `${x},${y}`).join(' '));
      poly.setAttribute('class', hits(l.text) ? 'matched' : '');
      poly.setAttribute('vector-effect', 'non-scaling-stroke');
      textBoxes.append(poly);
    }
    textNote.textContent =
      answer.status === 'failed'
        ? `The text could not be read: ${answer.error?.message ?? 'unknown error'}`
        : answer.stopped === 'boxes'
          ? 'Only the largest lines were read (the photo has more text than is read per photo).'
          : answer.stopped === 'time'
            ? 'Reading stopped at the time allowed per photo; some lines may be missing.'
            : '';
    show(textNote, textNote.textContent !== '');
    show(textSection, true);
    this.placeBoxes();
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
