/**
 * DOM building without HTML strings: every name, path and message from the server becomes a text node,
 * so a file called `<img src=x onerror=…>.jpg` is shown as the characters it is made of.
 */

/**
 * @param {string} tag
 * @param {Record<string, unknown>} [props] className, text, dataset, on<Event> handlers, anything else as an attribute
 * @param {...(Node|string|null|undefined|false)} children
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'className') el.className = String(value);
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2).toLowerCase(), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return el;
}

/** Text with `code` spans (the server's fix hints quote commands in backticks), built as nodes. */
export function withCode(text) {
  const frag = document.createDocumentFragment();
  String(text)
    .split('`')
    .forEach((part, i) => {
      if (part) frag.append(i % 2 ? h('code', { text: part }) : document.createTextNode(part));
    });
  return frag;
}

export function show(el, visible) {
  el.hidden = !visible;
}

/** `/a/b/c.jpg` → { dir: '/a/b', name: 'c.jpg' }; Windows separators too. */
export function splitPath(path) {
  const i = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  return i < 0 ? { dir: '', name: path } : { dir: path.slice(0, i) || path.slice(0, 1), name: path.slice(i + 1) };
}

const numberFormat = new Intl.NumberFormat();
export const formatCount = (n) => numberFormat.format(n);

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return '';
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return u === 0 ? `${formatCount(v)} bytes` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[u]}`;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
export const formatDate = (ms) => (Number.isFinite(ms) ? dateFormat.format(new Date(ms)) : '');

/** "Canon" + "Canon EOS 5D" reads as "Canon EOS 5D", not "Canon Canon EOS 5D". */
export function formatCamera(make, model) {
  const m = (make ?? '').trim();
  const n = (model ?? '').trim();
  if (!n) return m;
  return m && !n.toLowerCase().startsWith(m.toLowerCase()) ? `${m} ${n}` : n;
}

export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}
