// DOM helpers shared by every page: element builder, badges, human times,
// in-page dialogs and toasts. No inline handlers or styles (the CSP forbids them).

/** h('div', {class: 'x', 'data-test': 'y', onclick: fn}, child, ...) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'disabled' || k === 'selected') el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function badge(text, kind, test) {
  return h('span', { class: `badge ${kind}`, 'data-test': test }, text);
}

/** Milliseconds since the epoch from an RFC 3339 string or a number. */
export function toMillis(t) {
  if (t === null || t === undefined || t === '') return null;
  if (typeof t === 'number') return t;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}

/** "5 min ago", "in 59 min". */
export function ago(t) {
  const ms = toMillis(t);
  if (ms === null) return '';
  const d = Math.round((Date.now() - ms) / 1000);
  const abs = Math.abs(d);
  let s;
  if (abs < 10) return 'just now';
  if (abs < 60) s = `${abs} s`;
  else if (abs < 3600) s = `${Math.round(abs / 60)} min`;
  else if (abs < 86400) s = `${Math.round(abs / 3600)} h`;
  else s = `${Math.round(abs / 86400)} days`;
  return d >= 0 ? `${s} ago` : `in ${s}`;
}

/** "23 Nov 2026, 14:03:21". */
export function when(t) {
  const ms = toMillis(t);
  if (ms === null) return '—';
  return new Date(ms).toLocaleString(undefined, {
    day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** A time cell: absolute, with the relative time after it. */
export function timeCell(t) {
  const ms = toMillis(t);
  if (ms === null) return h('span', { class: 'muted' }, '—');
  return h('span', { title: new Date(ms).toISOString() }, when(ms), ' ',
    h('span', { class: 'muted small ago', 'data-ms': String(ms) }, `(${ago(ms)})`));
}

// Relative times ("2 min ago") stay true while a page stays open.
setInterval(() => {
  for (const el of document.querySelectorAll('.ago[data-ms]')) el.textContent = `(${ago(Number(el.dataset.ms))})`;
}, 15000);

export function duration(from, to) {
  const a = toMillis(from);
  const b = toMillis(to) ?? Date.now();
  if (a === null) return '';
  const s = Math.max(0, Math.round((b - a) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** A table with a header row, or the empty-state line when there are no rows. */
export function table(test, headers, rows, emptyText) {
  if (!rows.length) return h('p', { class: 'empty', 'data-test': `${test}-empty` }, emptyText);
  return h('table', { 'data-test': test },
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))),
    h('tbody', {}, rows));
}

export function errorBox(err, test = 'page-error') {
  return h('div', { class: 'error', 'data-test': test }, err.message || String(err));
}

export function toast(message, kind = '') {
  let box = document.querySelector('.toasts');
  if (!box) {
    box = h('div', { class: 'toasts' });
    document.body.appendChild(box);
  }
  // One message at a time: the newest replaces the last.
  const t = h('div', { class: `toast ${kind}`, 'data-test': 'toast' }, message);
  box.replaceChildren(t);
  setTimeout(() => t.remove(), 3500);
}

/** Removes shown messages (on page changes). */
export function clearToasts() {
  const box = document.querySelector('.toasts');
  if (box) box.replaceChildren();
}

/**
 * An in-page confirmation dialog. Resolves to null when cancelled, else to
 * {reason} (reason only when `reason` asks for one; it is then required).
 */
export function confirmDialog({ title, message, ok = 'Confirm', danger = true, reason = null }) {
  return new Promise((resolve) => {
    const input = reason
      ? h('textarea', { 'data-test': 'confirm-reason', placeholder: reason.placeholder || '' })
      : null;
    const err = h('div', { class: 'error hidden', 'data-test': 'confirm-error' });
    const close = (v) => {
      overlay.remove();
      document.removeEventListener('keydown', onKey);
      resolve(v);
    };
    const onOk = () => {
      const r = input ? input.value.trim() : null;
      if (input && !r) {
        err.textContent = `${reason.label} is required.`;
        err.classList.remove('hidden');
        input.focus();
        return;
      }
      close({ reason: r });
    };
    const onKey = (e) => {
      if (e.key === 'Escape') close(null);
    };
    const overlay = h('div', { class: 'overlay', 'data-test': 'confirm-dialog' },
      h('div', { class: 'dialog', role: 'dialog', 'aria-modal': 'true' },
        h('h2', {}, title),
        h('p', {}, message),
        input ? [h('label', {}, reason.label), input] : null,
        err,
        h('div', { class: 'formbar' },
          h('button', { class: danger ? 'danger solid' : 'primary', 'data-test': 'confirm-ok', onclick: onOk }, ok),
          h('button', { 'data-test': 'confirm-cancel', onclick: () => close(null) }, 'Cancel'))));
    document.addEventListener('keydown', onKey);
    document.body.appendChild(overlay);
    (input || overlay.querySelector('[data-test=confirm-ok]')).focus();
  });
}

/** Runs an async action from a button, disabling it meanwhile; errors go to a toast. */
export async function busy(button, fn) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (e) {
    toast(e.message || String(e), 'bad');
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/** Value of a datetime-local input as RFC 3339 (UTC), or undefined when empty. */
export function isoFromLocal(v) {
  if (!v) return undefined;
  const ms = Date.parse(v);
  return Number.isNaN(ms) ? undefined : new Date(ms).toISOString();
}

/** A form whose submit runs `fn(form)`; errors shown inside the form. */
export function form(attrs, children, fn) {
  const err = h('div', { class: 'error hidden', 'data-test': `${attrs['data-test'] || 'form'}-error` });
  const f = h('form', attrs, children, err);
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.classList.add('hidden');
    const btns = f.querySelectorAll('button');
    btns.forEach((b) => { b.disabled = true; });
    try {
      await fn(f);
    } catch (ex) {
      err.textContent = ex.message || String(ex);
      err.classList.remove('hidden');
    } finally {
      btns.forEach((b) => { b.disabled = false; });
    }
  });
  return f;
}

let fieldSeq = 0;

/** A labelled form field; the label is tied to the input for screen readers. */
export function field(label, input) {
  const target = Array.isArray(input) ? input[0] : input;
  const attrs = {};
  if (target instanceof HTMLElement && ['INPUT', 'SELECT', 'TEXTAREA'].includes(target.tagName)) {
    if (!target.id) target.id = `f${++fieldSeq}`;
    attrs.for = target.id;
  }
  return h('div', {}, h('label', attrs, label), input);
}

/** A small button copying `text` to the clipboard. */
export function copyButton(text, test) {
  const b = h('button', {
    type: 'button',
    class: 'small copy',
    'data-test': test,
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(text);
        b.textContent = 'Copied';
      } catch (_) {
        b.textContent = 'Select and copy';
      }
      setTimeout(() => { b.textContent = 'Copy'; }, 2000);
    },
  }, 'Copy');
  return b;
}

/** Elements matching a selector inside `root` that are checked, as their values. */
export function checkedValues(root, selector) {
  return [...root.querySelectorAll(selector)].filter((c) => c.checked).map((c) => c.value);
}
