// The console shell: sign-in, top bar, navigation, the router and the live
// event stream (SSE api/v1/events) pages subscribe to. Console paths
// ('/ui/customers') are below the base path: url() and here() translate.

import { API, can, get, here, login, post, remember, session, setUnauthenticatedHandler, url, userName } from './api.js';
import { clearToasts, h, mount } from './ui.js';
import { customersPage, customerPage } from './customers.js';
import { sessionsPage } from './sessions.js';
import { usersPage, userPage, rolesPage } from './users.js';
import { auditPage } from './audit.js';
import { settingsPage, downloadsPage, tokensPage } from './admin.js';
import { credentialsPage } from './credentials.js';

const app = document.getElementById('app');

// --- live events -----------------------------------------------------------

let source = null;
let subscribers = [];

/** Calls fn(data) for every `type` event until the page changes. */
export function subscribe(type, fn) {
  subscribers.push({ type, fn });
}

function setLive(on) {
  const el = document.querySelector('[data-test=live-indicator]');
  if (!el) return;
  el.className = `live ${on ? 'on' : 'off'}`;
  el.textContent = on ? 'Live' : 'Reconnecting…';
}

function startEvents() {
  stopEvents();
  source = new EventSource(`${API}/events`);
  source.addEventListener('open', () => setLive(true));
  source.addEventListener('error', () => setLive(false));
  for (const type of ['gatekeeper', 'session']) {
    source.addEventListener(type, (e) => {
      let data;
      try {
        data = JSON.parse(e.data);
      } catch (_) {
        return;
      }
      for (const s of subscribers) if (s.type === type) s.fn(data);
    });
  }
}

function stopEvents() {
  if (source) source.close();
  source = null;
}

// --- routing ---------------------------------------------------------------

// [path pattern, page, nav entry, permissions of which the page needs one (none: any user)]
const routes = [
  [/^\/ui\/customers\/([^/]+)$/, customerPage, 'customers', []],
  [/^\/ui\/customers$/, customersPage, 'customers', []],
  [/^\/ui\/sessions$/, sessionsPage, 'sessions', ['VIEW_SESSIONS', 'VIEW_OWN_SESSIONS']],
  [/^\/ui\/credentials$/, credentialsPage, 'credentials', []],
  [/^\/ui\/users\/([^/]+)$/, userPage, 'users', []],
  [/^\/ui\/users$/, usersPage, 'users', ['MANAGE_USERS']],
  [/^\/ui\/roles$/, rolesPage, 'roles', ['MANAGE_ROLES', 'MANAGE_USERS']],
  [/^\/ui\/admin-log$/, auditPage, 'admin-log', ['VIEW_ADMIN_LOG_USER_ACTIVITY', 'VIEW_ADMIN_LOG_SYSTEM_MESSAGES']],
  [/^\/ui\/settings$/, settingsPage, 'settings', ['MANAGE_SETTINGS']],
  [/^\/ui\/download-ipconnect$/, downloadsPage, 'download-ipconnect', ['DOWNLOAD_IPCONNECT']],
  [/^\/ui\/tokens$/, tokensPage, 'tokens', []],
];

/** Goes to a console path (e.g. /ui/customers/cus_1) without reloading. */
export function navigate(path, replace = false) {
  if (replace) history.replaceState(null, '', url(path));
  else history.pushState(null, '', url(path));
  render();
}

/** An in-console link. */
export function link(path, attrs, ...children) {
  return h('a', {
    ...attrs,
    href: url(path),
    onclick: (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      navigate(path);
    },
  }, ...children);
}

let main = null;
let renderSeq = 0;

async function render() {
  if (!session.me) return;
  if (!main) layout();
  const path = here().replace(/\/+$/, '');
  const found = routes.map(([re, page, nav, need]) => [re.exec(path), page, nav, need]).find(([m]) => m);
  if (!found) {
    navigate('/ui/customers', true);
    return;
  }
  const [m, page, nav, need] = found;
  subscribers = [];
  clearToasts();
  document.querySelectorAll('nav.side a').forEach((a) => a.classList.toggle('active', a.dataset.nav === nav));
  closeUserMenu();
  const seq = ++renderSeq;
  const container = h('div', { 'data-test': `page-${nav}` });
  mount(main, container);
  if (need.length && !can(...need)) {
    mount(container, h('h1', {}, 'Not available to you'),
      h('div', { class: 'notice warn', 'data-test': 'page-forbidden' },
        `Your roles do not include the permission this page needs (${need.join(' or ')}). `,
        'Ask a System Administrator if you need it.'));
    return;
  }
  try {
    await page(container, ...m.slice(1).map(decodeURIComponent));
  } catch (e) {
    if (seq === renderSeq) mount(container, h('div', { class: 'error', 'data-test': 'page-error' }, e.message || String(e)));
  }
}

// --- layout ----------------------------------------------------------------

function closeUserMenu() {
  const m = document.querySelector('[data-test=user-menu-items]');
  if (m) m.classList.add('hidden');
}

function layout() {
  const navItems = [];
  const item = (nav, label, path, show, cls) => {
    if (show) navItems.push(link(path, { 'data-test': `nav-${nav}`, 'data-nav': nav, class: cls }, label));
  };
  item('customers', 'Customers', '/ui/customers', true);
  item('sessions', 'Sessions', '/ui/sessions', can('VIEW_SESSIONS', 'VIEW_OWN_SESSIONS'));
  item('credentials', 'Credentials', '/ui/credentials', can('USE_CONNECTION_MANAGER'));
  item('users', 'Users', '/ui/users', can('MANAGE_USERS'));
  item('roles', 'Roles', '/ui/roles', can('MANAGE_ROLES', 'MANAGE_USERS'));
  const showLog = can('VIEW_ADMIN_LOG_USER_ACTIVITY', 'VIEW_ADMIN_LOG_SYSTEM_MESSAGES');
  const showSettings = can('MANAGE_SETTINGS');
  if (showLog || showSettings) navItems.push(h('div', { class: 'group', 'data-test': 'nav-system-admin' }, 'System Admin'));
  item('admin-log', 'Admin Log', '/ui/admin-log', showLog, 'sub');
  item('settings', 'Settings', '/ui/settings', showSettings, 'sub');
  if (can('DOWNLOAD_IPCONNECT')) {
    navItems.push(h('div', { class: 'group', 'data-test': 'nav-help' }, 'Help'));
    item('download-ipconnect', 'Download IP Connect', '/ui/download-ipconnect', true, 'sub');
  }

  const menu = h('div', { class: 'menu hidden', 'data-test': 'user-menu-items' },
    link('/ui/tokens', { 'data-test': 'menu-tokens' }, 'API tokens'),
    h('button', { 'data-test': 'logout', onclick: logout }, 'Log out'));
  const userButton = h('button', {
    'data-test': 'user-menu',
    onclick: (e) => {
      e.stopPropagation();
      menu.classList.toggle('hidden');
    },
  }, 'Signed in as ', h('strong', { 'data-test': 'signed-in-user' }, userName()), ' ▾');
  document.addEventListener('click', closeUserMenu);

  main = h('main', {});
  mount(app,
    h('header', { class: 'topbar' },
      h('div', { class: 'brand' }, h('img', { class: 'logo', src: 'assets/favicon.svg', alt: '' }), 'cpam',
        h('small', {}, 'Privileged Access Console')),
      h('div', { class: 'spacer' }),
      h('span', { class: 'live off', 'data-test': 'live-indicator' }, 'Connecting…'),
      h('div', { class: 'usermenu' }, userButton, menu)),
    h('div', { class: 'shell' },
      h('nav', { class: 'side', 'data-test': 'nav' }, navItems),
      main));
  startEvents();
}

async function logout() {
  try {
    await post('/auth/logout');
  } catch (_) {
    // The session may already be gone; the login page follows either way.
  }
  history.replaceState(null, '', url('/ui/customers'));
  signedOut('You have been signed out.');
}

function signedOut(message) {
  stopEvents();
  session.me = null;
  session.csrf = null;
  main = null;
  subscribers = [];
  loginPage(message);
}

// --- sign-in -----------------------------------------------------------------

function loginPage(message) {
  if (!here().startsWith('/ui/')) history.replaceState(null, '', url('/ui/customers'));
  const user = h('input', { type: 'text', id: 'login-username', autocomplete: 'username', 'data-test': 'login-username', required: true });
  const pass = h('input', { type: 'password', id: 'login-password', autocomplete: 'current-password', 'data-test': 'login-password', required: true });
  const err = h('div', { class: 'error hidden', 'data-test': 'login-error', role: 'alert' });
  const submit = h('button', { class: 'primary', type: 'submit', 'data-test': 'login-submit' }, 'Sign in');
  const f = h('form', {},
    h('label', { for: 'login-username' }, 'Username'), user,
    h('label', { for: 'login-password' }, 'Password'), pass,
    err,
    h('div', { class: 'formbar' }, submit));
  f.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.classList.add('hidden');
    const note = document.querySelector('[data-test=login-message]');
    if (note) note.remove();
    submit.disabled = true;
    try {
      await login(user.value.trim(), pass.value);
      render();
    } catch (ex) {
      if (ex.status === 429) {
        const mins = ex.retryAfter ? Math.ceil(Number(ex.retryAfter) / 60) : 15;
        err.textContent = `Too many failed sign-in attempts. Sign-in is locked for about ${mins} min.`;
      } else if (ex.status === 401 || ex.code === 'unauthenticated') {
        err.textContent = 'Wrong username or password.';
      } else {
        err.textContent = ex.message;
      }
      err.classList.remove('hidden');
      pass.value = '';
      pass.focus();
    } finally {
      submit.disabled = false;
    }
  });
  mount(app,
    h('div', { class: 'login-wrap' },
      h('div', { class: 'login-card', 'data-test': 'login' },
        h('h1', {}, h('img', { class: 'logo', src: 'assets/favicon.svg', alt: '' }), 'cpam console'),
        h('p', { class: 'sub' }, 'Sign in to manage customers, gatekeepers and vendor sessions.'),
        message ? h('div', { class: 'notice', 'data-test': 'login-message' }, message) : null,
        f)));
  user.focus();
}

// --- boot ------------------------------------------------------------------

setUnauthenticatedHandler(() => {
  if (session.me) signedOut('Your session has ended. Please sign in again.');
});
window.addEventListener('popstate', render);

(async () => {
  try {
    remember(await get('/auth/me'));
    render();
  } catch (_) {
    loginPage(null);
  }
})();
