// Settings (server-wide IP Connect mode), Help -> Download IP Connect, and
// the user's own API tokens.

import { API, del, get, post, put } from './api.js';
import { USER_MODES } from './users.js';
import { busy, bytes, confirmDialog, copyButton, field, form, h, mount, table, timeCell, toast } from './ui.js';

export async function settingsPage(root) {
  const s = await get('/settings');
  const mode = h('select', { 'data-test': 'settings-ip-connect-mode' },
    USER_MODES.filter(([v]) => v !== 'global').map(([v, l]) => h('option', { value: v, selected: v === s.ip_connect_mode }, l)));
  mount(root,
    h('div', { class: 'crumbs' }, 'System Admin'),
    h('h1', {}, 'Settings'),
    h('p', { class: 'lead' }, 'Server-wide defaults. Users whose IP Connect Mode is “Use global server configuration” follow these.'),
    h('div', { class: 'card' },
      h('h2', {}, 'IP Connect'),
      form({ 'data-test': 'settings-form' }, [
        field('Global IP Connect mode', mode),
        h('p', { class: 'muted small' }, 'How Connection Managers map the customer’s host names and addresses on the vendor’s machine.'),
        h('div', { class: 'formbar' }, h('button', { class: 'primary', type: 'submit', 'data-test': 'settings-save' }, 'Save')),
      ], async () => {
        await put('/settings', { ip_connect_mode: mode.value });
        toast('Settings saved.');
      })));
}

export async function downloadsPage(root) {
  const list = await get('/downloads/ipconnect');
  const rows = list.map((d) => h('tr', { 'data-test': 'ipconnect-row', 'data-file': d.file },
    h('td', {}, d.os), h('td', {}, d.arch), h('td', { class: 'mono' }, d.file), h('td', {}, bytes(d.size)),
    h('td', { class: 'actions' }, h('a', {
      class: 'button primary small',
      'data-test': 'ipconnect-download',
      href: `${API}/downloads/ipconnect/${encodeURIComponent(d.file)}`,
      download: d.file,
    }, 'Download'))));
  mount(root,
    h('div', { class: 'crumbs' }, 'Help'),
    h('h1', {}, 'Download IP Connect'),
    h('p', { class: 'lead' }, 'IP Connect maps the customer’s host names and addresses to your machine during sessions. Choose the version for your operating system, then run the file.'),
    h('div', { class: 'card' }, table('ipconnect-table', ['Operating system', 'Architecture', 'File', 'Size', ''], rows,
      'No IP Connect builds are available on this server.')),
    h('p', { class: 'muted small' }, 'After installing, set your preference under Users → User Details → Edit → IP Connect Mode.'));
}

export async function tokensPage(root) {
  const tokens = await get('/tokens');
  const shown = h('div', {});
  const name = h('input', { type: 'text', 'data-test': 'token-name', required: true, placeholder: 'e.g. nightly export script' });
  const days = h('input', { type: 'number', 'data-test': 'token-days', min: 1, placeholder: 'never' });
  const f = form({ 'data-test': 'token-form' }, [
    h('div', { class: 'row' }, field('Name', name), field('Expires after (days)', days)),
    h('div', { class: 'formbar' }, h('button', { class: 'primary', type: 'submit', 'data-test': 'token-create' }, 'Create token')),
  ], async () => {
    const body = { name: name.value.trim() };
    if (days.value) body.expires_in_days = Number(days.value);
    const t = await post('/tokens', body);
    await tokensPage(root);
    mount(root.querySelector('[data-test=token-shown]'), h('div', { class: 'notice ok' },
      h('h3', {}, `Token “${t.name}” — copy it now, it is shown only once`),
      h('div', {}, h('span', { class: 'secret', 'data-test': 'token-value' }, t.token), ' ', copyButton(t.token, 'copy-token')),
      h('p', { class: 'small' }, 'Use it as ', h('code', {}, 'Authorization: Bearer <token>'), ' on REST API requests.')));
  });
  const rows = tokens.map((t) => h('tr', { 'data-test': 'token-row', 'data-name': t.name },
    h('td', {}, h('strong', {}, t.name)),
    h('td', {}, timeCell(t.created_at)),
    h('td', {}, t.expires_at ? timeCell(t.expires_at) : 'never'),
    h('td', {}, t.last_used_at ? timeCell(t.last_used_at) : 'never'),
    h('td', { class: 'actions' }, h('button', {
      class: 'danger small',
      'data-test': 'token-revoke',
      onclick: async (e) => {
        const ok = await confirmDialog({ title: `Revoke token ${t.name}?`, message: 'Scripts using it stop working at once.', ok: 'Revoke token' });
        if (ok) await busy(e.target, async () => { await del(`/tokens/${encodeURIComponent(t.id)}`); toast('Token revoked.'); await tokensPage(root); });
      },
    }, 'Revoke'))));
  mount(root,
    h('h1', {}, 'API tokens'),
    h('p', { class: 'lead' }, 'Tokens let scripts call the REST API as you, with your permissions.'),
    h('div', { 'data-test': 'token-shown' }, shown),
    h('div', { class: 'card' }, h('h2', {}, 'New token'), f),
    h('div', { class: 'card' }, h('h2', {}, 'Your tokens'),
      table('tokens-table', ['Name', 'Created', 'Expires', 'Last used', ''], rows, 'No tokens yet.')));
}
