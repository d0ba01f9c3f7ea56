/** The problems page: files that failed to index and why, a page at a time (keyset paging by id). */
import { api } from './api.js';
import { h, show, splitPath } from './dom.js';

const PAGE_SIZE = 50;

export class ProblemsView {
  /** @param {{ table: HTMLElement, body: HTMLElement, empty: HTMLElement, more: HTMLButtonElement, error: HTMLElement, refresh: HTMLButtonElement }} els */
  constructor(els) {
    this.els = els;
    this.nextAfterId = null;
    this.loading = null;
    els.more.addEventListener('click', () => this.load(false));
    els.refresh.addEventListener('click', () => this.load(true));
  }

  /** @param {boolean} fromStart true for the first page (replacing what is shown) */
  async load(fromStart) {
    if (this.loading) return this.loading;
    const afterId = fromStart ? undefined : (this.nextAfterId ?? undefined);
    this.loading = api
      .errors({ limit: PAGE_SIZE, afterId })
      .then(({ errors, nextAfterId }) => {
        show(this.els.error, false);
        const rows = errors.map((e) => this.row(e));
        if (fromStart) this.els.body.replaceChildren(...rows);
        else this.els.body.append(...rows);
        this.nextAfterId = nextAfterId;
        const any = this.els.body.childElementCount > 0;
        show(this.els.table, any);
        show(this.els.empty, !any);
        show(this.els.more, nextAfterId !== null);
      })
      .catch((err) => {
        this.els.error.textContent = err.message;
        show(this.els.error, true);
      })
      .finally(() => {
        this.loading = null;
      });
    return this.loading;
  }

  row(e) {
    const { dir, name } = splitPath(e.path);
    return h(
      'tr',
      { dataset: { id: String(e.id) } },
      h('td', { className: 'problem-file' }, h('span', { className: 'problem-name', text: name }), h('span', { className: 'problem-dir', text: dir })),
      h(
        'td',
        { className: 'problem-reason' },
        h('span', { className: 'tag tag-warn', text: e.code ?? 'ERROR' }),
        ' ',
        h('span', { className: 'problem-message', text: e.message ?? 'no details' }),
      ),
    );
  }
}
