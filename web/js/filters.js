/** The filter bar: folder, capture-date range, formats and order, read into the API's filter fields. */
import { debounce, h, show } from './dom.js';

const FORMATS = ['jpeg', 'png', 'webp', 'heic', 'avif', 'gif', 'tiff', 'bmp'];
const DAY_MS = 86_400_000;

/** The API's `before` is exclusive; "taken until 12 May" means before 13 May. */
function dayAfter(isoDate) {
  const t = Date.parse(isoDate);
  return Number.isNaN(t) ? undefined : new Date(t + DAY_MS).toISOString().slice(0, 10);
}

export class Filters {
  /**
   * @param {{ form: HTMLFormElement, toggle: HTMLButtonElement, count: HTMLElement, formats: HTMLElement, folders: HTMLDataListElement }} els
   * @param {(filters: object) => void} onChange
   */
  constructor(els, onChange) {
    this.els = els;
    els.formats.replaceChildren(
      ...FORMATS.map((f) => h('label', { className: 'check' }, h('input', { type: 'checkbox', name: 'format', value: f }), f.toUpperCase())),
    );
    const changed = () => {
      const filters = this.read();
      this.renderCount(filters);
      onChange(filters);
    };
    // Dates and checkboxes apply at once; typing a folder path waits for a pause.
    const typed = debounce(changed, 400);
    els.form.addEventListener('input', (e) => (e.target.type === 'text' ? typed() : changed()));
    els.form.addEventListener('change', (e) => {
      if (e.target.type === 'text') {
        typed.cancel();
        changed();
      }
    });
    els.form.addEventListener('submit', (e) => {
      e.preventDefault();
      typed.cancel();
      changed();
    });
    // The form's values are cleared after the reset event, not during it.
    els.form.addEventListener('reset', () => setTimeout(changed));
    els.toggle.addEventListener('click', () => this.setOpen(els.form.hidden));
  }

  setOpen(open) {
    show(this.els.form, open);
    this.els.toggle.setAttribute('aria-expanded', String(open));
    if (open) this.els.form.querySelector('input, select')?.focus();
  }

  read() {
    const data = new FormData(this.els.form);
    const from = String(data.get('from') ?? '');
    const to = String(data.get('to') ?? '');
    return {
      folder: String(data.get('folder') ?? '').trim() || undefined,
      after: from || undefined,
      before: to ? dayAfter(to) : undefined,
      formats: data.getAll('format').map(String),
      sort: String(data.get('sort') ?? 'relevance'),
    };
  }

  renderCount(f) {
    const n = [f.folder, f.after, f.before, f.formats.length > 0, f.sort !== 'relevance'].filter(Boolean).length;
    this.els.count.textContent = String(n);
    show(this.els.count, n > 0);
  }

  /** The watched folders as suggestions for the folder field. */
  setFolders(roots) {
    this.els.folders.replaceChildren(...roots.map((r) => h('option', { value: r.path })));
  }
}
