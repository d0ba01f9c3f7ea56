/**
 * The "Text in photos" panel on the Folders page: how far reading the text in photos has got (read, to read,
 * could not be read) and the switch that turns it on or off (PUT /api/ocr, kept as the library's setting).
 * It follows the live status (`status.ingest.ocr`, sent by status.js as `clipdex:status` events) and is
 * hidden while the server has no indexing to report on (no model yet, or still starting).
 */
import { api } from './api.js';
import { formatCount, show } from './dom.js';

const $ = (id) => document.getElementById(id);

/** What decides it other than the library's setting, in the words the page shows; null when the switch does. */
function decidedBy(ocr) {
  if (ocr.source === 'env') return `Set by CLIPDEX_OCR=${ocr.enabled ? 'on' : 'off'} where the server was started.`;
  if (ocr.source === 'option') return 'Set by the program running clipdex.';
  return null;
}

class OcrPanel {
  constructor() {
    this.panel = $('ocr-panel');
    this.toggle = $('ocr-enabled');
    this.progress = $('ocr-progress');
    this.state = $('ocr-state');
    this.error = $('ocr-error');
    this.busy = false;
    this.toggle.addEventListener('change', () => this.set(this.toggle.checked));
    document.addEventListener('clipdex:status', (e) => this.render(e.detail?.ingest?.ocr));
  }

  render(ocr) {
    if (!ocr || typeof ocr !== 'object') return show(this.panel, false);
    show(this.panel, true);
    // A change on its way: the snapshot before it would flip the box back for a moment.
    if (!this.busy) this.toggle.checked = Boolean(ocr.enabled);
    // Left clickable when something else decides: the server's refusal then says what and how to change it.
    const decided = decidedBy(ocr);
    this.toggle.disabled = this.busy;
    const done = Number(ocr.done) || 0;
    const pending = Number(ocr.pending) || 0;
    const failed = Number(ocr.failed) || 0;
    const total = done + failed + pending;
    const parts = [`${formatCount(done)} read`];
    if (pending > 0) parts.push(`${formatCount(pending)} ${ocr.enabled ? 'to read' : 'not read'}`);
    if (failed > 0) parts.push(`${formatCount(failed)} could not be read`);
    let text = `${parts.join(' · ')}.`;
    if (ocr.unavailable) text += ` Not reading: ${ocr.unavailable}`;
    else if (!ocr.enabled) text += ' Off: nothing more is read.';
    if (decided) text += ` ${decided}`;
    this.state.textContent = text;
    this.progress.max = Math.max(1, total);
    this.progress.value = done + failed;
    show(this.progress, Boolean(ocr.enabled) && !ocr.unavailable && pending > 0);
  }

  async set(enabled) {
    this.busy = true;
    this.toggle.disabled = true;
    show(this.error, false);
    try {
      const ocr = await api.setOcr(enabled);
      this.busy = false;
      this.render(ocr);
    } catch (err) {
      this.busy = false;
      this.toggle.checked = !enabled;
      this.toggle.disabled = false;
      this.error.textContent = err.message;
      show(this.error, true);
    }
  }
}

if ($('ocr-panel')) new OcrPanel();
