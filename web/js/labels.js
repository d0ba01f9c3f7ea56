/**
 * The labels page: the captions in use with how many photos carry each, every photo/caption pair (keyset
 * paged by id) with inline editing and removal, and folder-as-label import. Captions are user text and are
 * only ever set as text: a caption reading `<script>` shows those characters.
 */
import { api } from './api.js';
import { formatCount, h, show, splitPath, withCode } from './dom.js';

const PAGE_SIZE = 50;

export class LabelsView {
  /**
   * @param {{ captions: HTMLElement, counts: HTMLElement, filter: HTMLElement, table: HTMLElement, body: HTMLElement,
   *           empty: HTMLElement, more: HTMLButtonElement, error: HTMLElement, status: HTMLElement,
   *           importForm: HTMLFormElement, importFolder: HTMLInputElement, importTemplate: HTMLInputElement,
   *           importMessage: HTMLElement }} els
   * @param {(summary: { captions: { caption: string, photos: number }[], counts: { train: number, val: number } }) => void} onSummary
   */
  constructor(els, onSummary) {
    this.els = els;
    this.onSummary = onSummary;
    this.nextAfterId = null;
    /** Only pairs with exactly this caption, or all. */
    this.caption = null;
    this.generation = 0;
    els.more.addEventListener('click', () => this.load(false));
    els.importForm.addEventListener('submit', (e) => {
      e.preventDefault();
      this.importFolder();
    });
  }

  /** @param {boolean} fromStart the first page (replacing what is shown) or the next one */
  async load(fromStart = true) {
    const generation = fromStart ? ++this.generation : this.generation;
    const afterId = fromStart ? undefined : (this.nextAfterId ?? undefined);
    this.els.table.setAttribute('aria-busy', 'true');
    try {
      const res = await api.labels({ limit: PAGE_SIZE, afterId, caption: this.caption ?? undefined });
      if (generation !== this.generation) return;
      show(this.els.error, false);
      const rows = res.labels.map((l) => this.row(l));
      if (fromStart) this.els.body.replaceChildren(...rows);
      else this.els.body.append(...rows);
      this.nextAfterId = res.nextAfterId;
      this.renderSummary(res.captions, res.counts);
      const any = this.els.body.childElementCount > 0;
      show(this.els.table, any);
      show(this.els.empty, !any);
      show(this.els.more, res.nextAfterId !== null);
    } catch (err) {
      if (generation !== this.generation) return;
      this.fail(err.message);
    } finally {
      if (generation === this.generation) this.els.table.removeAttribute('aria-busy');
    }
  }

  /** Captions and counts alone (after labeling elsewhere), without touching the list being read. */
  async refreshSummary() {
    try {
      const res = await api.labels({ limit: 1 });
      this.renderSummary(res.captions, res.counts);
    } catch {
      // The summary is a convenience; the list's own load reports errors where the user is looking.
    }
  }

  renderSummary(captions, counts) {
    this.renderCounts(captions, counts);
    this.els.captions.replaceChildren(
      ...captions.map((c) =>
        h(
          'li',
          { className: 'caption-item' },
          h(
            'button',
            {
              type: 'button',
              className: 'caption-filter',
              'aria-pressed': String(this.caption === c.caption),
              title: 'Show only the photos with this caption',
              onClick: () => this.filterBy(this.caption === c.caption ? null : c.caption),
            },
            h('span', { className: 'caption-text', text: c.caption }),
            h('span', { className: 'caption-count', text: formatCount(c.photos), dataset: { photos: String(c.photos) } }),
            h('span', { className: 'visually-hidden', text: ` photo${c.photos === 1 ? '' : 's'}` }),
          ),
        ),
      ),
    );
    this.renderFilter();
    this.onSummary({ captions, counts });
  }

  /**
   * How many labels there are and how they split. Training stores the split with the labels; before the
   * first run every label reads "train", so the page asks the server what the next run (with the default
   * options) will hold out instead of saying "0 held out".
   */
  renderCounts(captions, counts) {
    const { counts: el } = this.els;
    const total = counts.train + counts.val;
    const generation = (this.countsGeneration = (this.countsGeneration ?? 0) + 1);
    if (total === 0) {
      el.textContent = 'No labels yet.';
      el.dataset.split = 'none';
      return;
    }
    const head = `${formatCount(total)} label${total === 1 ? '' : 's'} · ${formatCount(captions.length)} caption${captions.length === 1 ? '' : 's'} · `;
    if (counts.val > 0) {
      el.textContent = `${head}${formatCount(counts.train)} for training, ${formatCount(counts.val)} held out to check it`;
      el.dataset.split = 'stored';
      return;
    }
    // Said at once, then made exact: the split is by photo and per caption, so "a fifth" is only roughly it.
    el.textContent = `${head}not split yet: about a fifth of the labeled photos will be held out to check training`;
    el.dataset.split = 'pending';
    api.splitPreview().then(
      (p) => {
        if (generation !== this.countsGeneration) return;
        const skipped = p.skipped ? ` (${formatCount(p.skipped)} not usable now: photo missing, offline or not indexed; kept)` : '';
        // Held out = what the version will not learn from: the test photos, and the validation ones when the run chooses on them.
        el.textContent = `${head}${formatCount(p.train.labels)} for training, ${formatCount(p.val.labels + (p.test?.labels ?? 0))} to be held out to check it when you train (the default ${Math.round(((p.testFraction ?? 0) + (p.val.labels > 0 ? p.valFraction : 0)) * 100)}% share)${skipped}`;
        el.dataset.split = 'preview';
      },
      () => {
        // No model (or an older server): the sentence above stands.
      },
    );
  }

  filterBy(caption) {
    this.caption = caption;
    this.renderFilter();
    for (const b of this.els.captions.querySelectorAll('.caption-filter')) {
      b.setAttribute('aria-pressed', String(b.querySelector('.caption-text')?.textContent === caption));
    }
    return this.load(true);
  }

  renderFilter() {
    const { filter } = this.els;
    if (this.caption === null) {
      filter.replaceChildren();
      return show(filter, false);
    }
    filter.replaceChildren('Showing photos labeled ', h('q', { text: this.caption }), ' ', h('button', { type: 'button', className: 'button button-small', text: 'Show all', onClick: () => this.filterBy(null) }));
    show(filter, true);
  }

  row(label) {
    const { name, dir } = splitPath(label.path);
    const captionCell = h('td', { className: 'label-caption' }, h('span', { className: 'label-caption-text', text: label.caption }));
    const note = photoNote(label);
    const tr = h(
      'tr',
      { dataset: { id: String(label.id), imageId: label.imageId === null ? '' : String(label.imageId), photo: label.photo ?? 'ok' } },
      h(
        'td',
        { className: 'label-photo' },
        h(
          'div',
          { className: 'label-photo-inner' },
          // A missing photo has no row to show a thumbnail of; its label is kept and comes back with it.
          label.imageId === null
            ? h('span', { className: 'label-thumb-missing', 'aria-hidden': 'true', text: '?' })
            : h('img', { src: api.thumbnailUrl(label.imageId), alt: '', loading: 'lazy', decoding: 'async', width: '56', height: '56' }),
          h(
            'span',
            { className: 'label-file' },
            h('span', { className: 'label-name', text: name }),
            h('span', { className: 'label-dir', text: dir }),
            ...(note ? [h('span', { className: 'label-photo-note small', text: note })] : []),
          ),
        ),
      ),
      captionCell,
      h('td', { className: 'label-split' }, h('span', { className: `tag${label.split === 'val' ? ' tag-accent' : ''}`, text: label.split, title: label.split === 'val' ? 'held out to check training' : 'learned from' })),
      h(
        'td',
        { className: 'label-actions' },
        h('button', { type: 'button', className: 'button button-small label-edit', text: 'Edit', 'aria-label': `Edit the caption of ${name}`, onClick: () => this.startEdit(tr, label, captionCell) }),
        h('button', { type: 'button', className: 'button button-small button-danger label-delete', text: 'Delete', 'aria-label': `Delete the label of ${name}`, onClick: () => this.remove(tr, label) }),
      ),
    );
    return tr;
  }

  /** The caption cell becomes a small form: Enter saves, Escape or Cancel puts the text back. */
  startEdit(tr, label, cell) {
    if (cell.querySelector('form')) return;
    const { name } = splitPath(label.path);
    const input = h('input', { type: 'text', className: 'label-input', value: label.caption, 'aria-label': `Caption for ${name}`, maxlength: '1000', required: true, spellcheck: 'true' });
    const error = h('span', { className: 'error-text small', role: 'alert' });
    const done = (focusEdit = true) => {
      cell.replaceChildren(h('span', { className: 'label-caption-text', text: label.caption }));
      if (focusEdit) tr.querySelector('.label-edit')?.focus();
    };
    const form = h(
      'form',
      { className: 'label-edit-form' },
      input,
      h('button', { type: 'submit', className: 'button button-small button-accent', text: 'Save' }),
      h('button', { type: 'button', className: 'button button-small', text: 'Cancel', onClick: () => done() }),
      error,
    );
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const caption = input.value.trim();
      if (!caption) return;
      if (caption === label.caption) return done();
      try {
        const updated = await api.editLabel(label.id, caption);
        label.caption = updated?.caption ?? caption;
        done();
        this.status(`Caption changed to “${label.caption}”.`);
        await this.refreshSummary();
      } catch (err) {
        error.textContent = err.message;
      }
    });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        done();
      }
    });
    cell.replaceChildren(form);
    input.focus();
    input.select();
  }

  async remove(tr, label) {
    // A label is the user's work: deleting one is asked for, not done on a stray click.
    if (!window.confirm(`Delete the label “${label.caption}” of ${splitPath(label.path).name}?\nThe photo is not touched; the label cannot be brought back.`)) return;
    try {
      await api.deleteLabel(label.id);
      // Focus goes to the next row's Delete, so removing several in a row needs no mouse.
      const next = tr.nextElementSibling ?? tr.previousElementSibling;
      tr.remove();
      (next?.querySelector('.label-delete') ?? this.els.captions).focus?.();
      this.status(`Removed the label “${label.caption}” of ${splitPath(label.path).name}.`);
      await this.refreshSummary();
      const any = this.els.body.childElementCount > 0;
      show(this.els.table, any);
      show(this.els.empty, !any);
    } catch (err) {
      this.fail(err.message);
    }
  }

  async importFolder() {
    const folder = this.els.importFolder.value.trim();
    const template = this.els.importTemplate.value.trim();
    if (!folder) return;
    const button = this.els.importForm.querySelector('button[type="submit"]');
    button.disabled = true;
    const message = this.els.importMessage;
    message.classList.remove('error-text');
    message.textContent = 'Importing…';
    try {
      const report = await api.importFolderLabels(folder, template || undefined);
      const parts = [`Added ${formatCount(report.added)} label${report.added === 1 ? '' : 's'}`];
      if (report.duplicates) parts.push(`${formatCount(report.duplicates)} already there`);
      if (report.problemCount) parts.push(`${formatCount(report.problemCount)} skipped (${report.problems[0]?.reason ?? 'see the server log'})`);
      message.textContent = `${parts.join(' · ')}.`;
      await this.load(true);
    } catch (err) {
      message.replaceChildren(withCode(err.message));
      message.classList.add('error-text');
      this.els.importFolder.focus();
    } finally {
      button.disabled = false;
    }
  }

  status(text) {
    this.els.status.textContent = text;
  }

  fail(message) {
    this.els.error.textContent = message;
    show(this.els.error, true);
  }
}

/** Where a label's photo is, when it is not simply there (see store/pairs-repo.ts on the server). */
function photoNote(label) {
  if (label.photo === 'missing') {
    const since = label.missingSince ? ` since ${new Date(label.missingSince).toLocaleString()}` : '';
    return `photo missing${since}, kept: the label comes back when the photo is in the library again`;
  }
  if (label.photo === 'offline') return 'photo offline (its folder is not available), kept';
  if (label.photo === 'failed') return 'photo failed to index; not used for training';
  return '';
}
