/**
 * The Model panel on the Folders page: which model the library uses, the installed models to switch to
 * ("Use this model"), a switch's progress with its rate and time left, "Cancel", and "Switch back" to the
 * previous model (instant: its vectors are kept). It follows the live status (status.js sends each
 * snapshot as a `clipdex:status` event) and asks GET /api/model for the choices when the status changes
 * model or the panel opens.
 */
import { api } from './api.js';
import { show } from './dom.js';

const $ = (id) => document.getElementById(id);

/** A model given as a directory is named by its last folder; an id stays as it is. */
const nameOf = (ref) => String(ref ?? '').split(/[\\/]/).filter(Boolean).pop() ?? '';

function timeLeft(seconds) {
  if (seconds === null || !Number.isFinite(seconds) || seconds <= 0) return '';
  return seconds < 90 ? `about ${Math.ceil(seconds)} s left` : `about ${Math.ceil(seconds / 60)} min left`;
}

class ModelsPanel {
  constructor() {
    this.select = $('model-choice');
    this.use = $('model-use');
    this.cancel = $('model-cancel');
    this.back = $('model-back');
    this.current = $('model-current');
    this.progress = $('model-progress');
    this.state = $('model-switch-state');
    this.message = $('model-message');
    this.lastKey = null;
    this.lastTarget = null;
    this.previous = null;
    this.use.addEventListener('click', () => this.switchTo(this.select.value));
    this.back.addEventListener('click', () => this.previous && this.switchTo(this.previous));
    this.cancel.addEventListener('click', () => this.cancelSwitch());
    document.addEventListener('clipdex:status', (e) => this.renderStatus(e.detail));
    this.load();
  }

  async load() {
    try {
      const m = await api.model();
      const choices = Array.isArray(m.choices) ? m.choices : [];
      const current = choices.find((c) => c.current);
      this.select.replaceChildren(
        ...choices
          .filter((c) => !c.current)
          .map((c) => {
            const o = document.createElement('option');
            o.value = c.id;
            o.textContent = `${nameOf(c.id)}${c.vectors > 0 ? ` (${c.vectors} photos encoded)` : ''}`;
            return o;
          }),
      );
      this.use.disabled = this.select.options.length === 0;
      this.current.textContent = current ? nameOf(current.id) : nameOf(m.current?.ref);
      const last = m.switch?.lastSwitch;
      this.previous = last ? last.from : null;
      this.back.textContent = this.previous ? `Switch back to ${nameOf(this.previous)}` : 'Switch back';
      show(this.back, Boolean(this.previous) && !m.switch?.target);
      if (m.switch) this.renderSwitch(m.switch);
    } catch (err) {
      this.say(err.message);
    }
  }

  renderStatus(s) {
    if (!s || typeof s !== 'object') return;
    const key = s.model?.key ?? null;
    const target = s.modelSwitch?.target?.key ?? null;
    // The model changed (here or from the CLI), or a switch began or ended: the choices changed too.
    if (key !== this.lastKey || target !== this.lastTarget) {
      this.lastKey = key;
      this.lastTarget = target;
      this.load();
    }
    if (s.modelSwitch) this.renderSwitch(s.modelSwitch);
  }

  renderSwitch(sw) {
    const busy = Boolean(sw.target);
    show(this.progress, busy);
    show(this.cancel, busy);
    this.panel().dataset.switch = busy ? sw.state : 'idle';
    if (!busy) {
      this.state.textContent = sw.lastSwitch ? `Switched from ${nameOf(sw.lastSwitch.from)} to ${nameOf(sw.lastSwitch.to)}.` : '';
      return;
    }
    this.progress.max = Math.max(1, sw.total);
    this.progress.value = Math.min(sw.done, sw.total);
    const parts = [`Encoding with ${nameOf(sw.target.ref)}: ${sw.done} of ${sw.total} photos`];
    if (sw.filesPerSecond > 0) parts.push(`${sw.filesPerSecond.toFixed(1)} photos/s`);
    const eta = timeLeft(sw.etaSeconds);
    if (eta) parts.push(eta);
    if (sw.state === 'indexing') parts.push('opening its index');
    if (sw.failed > 0) parts.push(`${sw.failed} could not be encoded (${sw.failures?.[0]?.path ?? ''}): the switch waits`);
    if (sw.error) parts.push(sw.error);
    this.state.textContent = `${parts.join(' · ')}. Searches use ${nameOf(sw.current?.ref)} until then.`;
  }

  panel() {
    return $('models-panel');
  }

  async switchTo(id) {
    if (!id) return;
    this.use.disabled = true;
    this.say('');
    try {
      const r = await api.useModel(id);
      if (r.outcome === 'switched') this.say(`Switched to ${nameOf(id)}: every photo already had its vectors.`);
      else if (r.outcome === 'pending') this.say(`Switching to ${nameOf(id)}: ${r.total - r.done} photos to encode in the background.`);
      else this.say(`${nameOf(id)} is already the library's model.`);
    } catch (err) {
      this.say(err.message);
    } finally {
      this.use.disabled = false;
      this.load();
    }
  }

  async cancelSwitch() {
    try {
      await api.cancelModelSwitch();
      this.say('Switch cancelled; the photos encoded so far keep their vectors.');
    } catch (err) {
      this.say(err.message);
    }
    this.load();
  }

  say(text) {
    this.message.textContent = text;
  }
}

if ($('models-panel')) new ModelsPanel();
