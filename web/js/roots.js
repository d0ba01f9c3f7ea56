/** The folders page: the watched roots, adding one by its path on the server's disk, removing one. */
import { api } from './api.js';
import { formatDate, h, show } from './dom.js';

/**
 * How a folder is doing. The ingest engine's view (`status.ingest.roots`: scanning, watch mode, why it is
 * offline) is used where the server has one; the stored roots (`status.roots`) carry state only.
 */
function rootTag(root) {
  if (root.state === 'offline') return h('span', { className: 'tag tag-warn', text: 'offline' });
  if (root.scanning) return h('span', { className: 'tag tag-accent', text: 'scanning' });
  if (root.watch === 'polling') return h('span', { className: 'tag', text: 'watching (polling)', title: 'The system ran out of file watches; changes are found by polling' });
  if (root.watch === 'off') return h('span', { className: 'tag', text: 'not watched' });
  return h('span', { className: 'tag', text: 'watching' });
}

function rootDetail(root) {
  if (root.state === 'offline' && root.stateReason) return root.stateReason;
  return root.lastScanAt ? `last scanned ${formatDate(root.lastScanAt)}` : 'not scanned yet';
}

/** The server's reason for a root whose path was pointed at another folder (ingest/root-pin.ts). */
function retargeted(root) {
  return root.state === 'offline' && typeof root.stateReason === 'string' && root.stateReason.includes('(it was retargeted)');
}

export class RootsView {
  /**
   * @param {{ list: HTMLElement, empty: HTMLElement, form: HTMLFormElement, input: HTMLInputElement, error: HTMLElement }} els
   * @param {(roots: object[]) => void} onChange every time the list is known anew (filters offer these folders)
   */
  constructor(els, onChange) {
    this.els = els;
    this.onChange = onChange;
    this.roots = [];
    els.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.add(els.input.value.trim());
    });
  }

  async load() {
    try {
      const { roots } = await api.roots();
      this.render(roots);
    } catch (err) {
      this.fail(err.message);
    }
  }

  async add(path) {
    if (!path) return;
    const button = this.els.form.querySelector('button[type="submit"]');
    button.disabled = true;
    show(this.els.error, false);
    try {
      await api.addRoot(path);
      this.els.input.value = '';
      await this.load();
    } catch (err) {
      this.fail(err.message);
      this.els.input.focus();
    } finally {
      button.disabled = false;
    }
  }

  async remove(root) {
    // Removing a folder drops its photos from the index: worth one question.
    if (!window.confirm(`Stop watching ${root.path}?\nIts photos leave the index; the files themselves are not touched. Labels on them are kept and come back if the folder is added again.`)) return;
    show(this.els.error, false);
    try {
      await api.removeRoot(root.id);
      await this.load();
    } catch (err) {
      this.fail(err.message);
    }
  }

  /** A folder whose path now leads elsewhere stays offline until the user says the new folder is the one. */
  async confirm(root) {
    show(this.els.error, false);
    try {
      await api.confirmRoot(root.id);
      await this.load();
    } catch (err) {
      this.fail(err.message);
    }
  }

  fail(message) {
    this.els.error.textContent = message;
    show(this.els.error, true);
  }

  /** Also fed by live status snapshots, so an unplugged drive shows as offline without a reload. */
  render(roots) {
    const same = JSON.stringify(roots) === JSON.stringify(this.roots);
    this.roots = roots;
    if (same && this.els.list.childElementCount === roots.length) return;
    this.els.list.replaceChildren(
      ...roots.map((root) =>
        h(
          'li',
          { className: 'root', dataset: { state: root.state } },
          h(
            'div',
            { className: 'root-text' },
            h('span', { className: 'root-path', text: root.path }),
            h('span', { className: 'root-detail' }, rootTag(root), ' ', rootDetail(root)),
          ),
          retargeted(root)
            ? h('button', { type: 'button', className: 'button', text: 'Confirm', 'aria-label': `Use the folder ${root.path} leads to now`, onClick: () => this.confirm(root) })
            : null,
          h('button', { type: 'button', className: 'button button-danger', text: 'Remove', 'aria-label': `Remove folder ${root.path}`, onClick: () => this.remove(root) }),
        ),
      ),
    );
    show(this.els.empty, roots.length === 0);
    this.onChange(roots);
  }
}
