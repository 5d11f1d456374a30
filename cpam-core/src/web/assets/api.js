// REST client for api/v1: JSON in and out, the CSRF header on every
// state-changing request, errors as ApiError with the API's stable code.
// Every URL starts at the console's base path (the shell's <base href>), so
// the console works at / and below any prefix an integrator mounts it at.

/** The base path without a trailing slash: '' at the root, '/pam' below a prefix. */
export const BASE = new URL(document.baseURI).pathname.replace(/\/+$/, '');
/** The REST API's root. */
export const API = `${BASE}/api/v1`;

/** The URL of a console path such as '/ui/customers' (below the base path). */
export function url(path) {
  return `${BASE}${path}`;
}

/** The console path of the current page ('/ui/customers'), without the base path. */
export function here() {
  const p = location.pathname;
  return BASE && p.startsWith(BASE) ? p.slice(BASE.length) || '/' : p;
}

export const session = { me: null, csrf: null };

let onUnauthenticated = () => {};

/** Called when a request finds the console session gone (idle timeout). */
export function setUnauthenticatedHandler(fn) {
  onUnauthenticated = fn;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function failure(r) {
  let body = null;
  try {
    body = await r.json();
  } catch (_) {
    body = null;
  }
  const e = (body && body.error) || {};
  return new ApiError(r.status, e.code || `http_${r.status}`, e.message || r.statusText || 'request failed');
}

function headers(method, json) {
  const h = { Accept: 'application/json' };
  if (json) h['Content-Type'] = 'application/json';
  if (method !== 'GET' && session.csrf) h['X-CSRF-Token'] = session.csrf;
  return h;
}

/** One API call; `path` is below api/v1. Resolves to the parsed body (null for 204). */
export async function api(method, path, body) {
  const init = { method, headers: headers(method, body !== undefined), credentials: 'same-origin' };
  if (body !== undefined) init.body = JSON.stringify(body);
  const r = await fetch(`${API}${path}`, init);
  if (!r.ok) {
    const err = await failure(r);
    if (r.status === 401 && !path.startsWith('/auth/')) onUnauthenticated();
    throw err;
  }
  if (r.status === 204) return null;
  const text = await r.text();
  return text ? JSON.parse(text) : null;
}

export const get = (p) => api('GET', p);
export const post = (p, b) => api('POST', p, b === undefined ? {} : b);
export const put = (p, b) => api('PUT', p, b);
export const patch = (p, b) => api('PATCH', p, b);
export const del = (p) => api('DELETE', p);

/** Signs in; the server sets the session cookie. */
export async function login(username, password) {
  const r = await fetch(`${API}/auth/login`, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-Requested-With': 'cpam' },
    body: JSON.stringify({ username, password }),
  });
  if (!r.ok) {
    const err = await failure(r);
    err.retryAfter = r.headers.get('Retry-After');
    throw err;
  }
  const me = await r.json();
  remember(me);
  return me;
}

export function remember(me) {
  session.me = me;
  session.csrf = me.csrf_token || null;
}

/** The signed-in user's name, whatever shape /auth/me gives it. */
export function userName() {
  const u = session.me && session.me.user;
  if (!u) return '';
  return typeof u === 'string' ? u : u.name || u.id || '';
}

export function userId() {
  const u = session.me && session.me.user;
  return u && typeof u === 'object' ? u.id : null;
}

/** Whether the signed-in user holds any of the named permissions. */
export function can(...perms) {
  const have = (session.me && session.me.permissions) || [];
  return perms.some((p) => have.includes(p));
}

function filenameFrom(r, fallback) {
  const cd = r.headers.get('Content-Disposition') || '';
  const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(cd);
  return m ? decodeURIComponent(m[1]) : fallback;
}

/** Downloads a GET endpoint as a file (so errors show in the page). Resolves to the file name. */
export async function download(path, fallbackName) {
  const r = await fetch(`${API}${path}`, { credentials: 'same-origin' });
  if (!r.ok) {
    const err = await failure(r);
    if (r.status === 401) onUnauthenticated();
    throw err;
  }
  const name = filenameFrom(r, fallbackName);
  const blob = await r.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.className = 'hidden';
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30000);
  return name;
}

/** Query string from an object, skipping empty values. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') u.set(k, v);
  }
  const s = u.toString();
  return s ? `?${s}` : '';
}
