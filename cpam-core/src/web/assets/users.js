// Users (list, New user, User Details -> Edit with the IP Connect Mode
// preference) and Roles (built-in read-only, custom editable).

import { can, get, patch, post, put, del } from './api.js';
import { link } from './app.js';
import { badge, busy, checkedValues, confirmDialog, field, form, h, mount, table, timeCell, toast } from './ui.js';

/** The per-user IP Connect modes, in the seed's words. */
export const USER_MODES = [
  ['global', 'Use global server configuration'],
  ['legacy', 'Legacy IP Connect only'],
  ['driver', 'IP Connect Driver only'],
  ['driver-with-legacy-fallback', 'IP Connect Driver with Legacy fallback'],
  ['off', 'Off'],
];
export const modeName = (v) => (USER_MODES.find(([k]) => k === v) || [v, v || 'Use global server configuration'])[1];

async function loadRefs() {
  const [roles, customers] = await Promise.all([
    get('/roles').catch(() => []),
    get('/customers').catch(() => []),
  ]);
  return { roles, customers };
}

function roleChecks(roles, selected) {
  return h('div', { class: 'checks' }, roles.map((r) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', 'data-test': 'user-role', value: r.name, checked: selected.includes(r.name) }),
    r.name, r.builtin ? h('span', { class: 'muted' }, 'built-in') : null)));
}

function customerChecks(customers, selected) {
  if (!customers.length) return h('p', { class: 'muted small' }, 'No customers yet.');
  return h('div', { class: 'checks' }, customers.map((c) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', 'data-test': 'user-customer', value: c.id, 'data-name': c.name, checked: selected.includes(c.id) }),
    c.name)));
}

function modeSelect(test, value, modes) {
  return h('select', { 'data-test': test }, modes.map(([v, l]) => h('option', { value: v, selected: v === value }, l)));
}

export async function usersPage(root) {
  const [users, refs] = await Promise.all([get('/users'), loadRefs()]);
  const custName = new Map(refs.customers.map((c) => [c.id, c.name]));
  const formBox = h('div', {});
  const showForm = () => {
    const name = h('input', { type: 'text', 'data-test': 'user-name', required: true, placeholder: 'e.g. alice' });
    const pass = h('input', { type: 'password', 'data-test': 'user-password', autocomplete: 'new-password', placeholder: 'needed to sign in to this console' });
    const mode = modeSelect('user-ip-connect-mode', 'global', USER_MODES);
    const f = form({ 'data-test': 'user-form' }, [
      h('div', { class: 'row' }, field('User name', name), field('Password', pass)),
      field('Roles', roleChecks(refs.roles, ['Vendor'])),
      field('Customers', customerChecks(refs.customers, [])),
      field('IP Connect Mode', mode),
      h('div', { class: 'formbar' },
        h('button', { class: 'primary', type: 'submit', 'data-test': 'user-create' }, 'Create user'),
        h('button', { type: 'button', onclick: () => mount(formBox) }, 'Cancel')),
    ], async () => {
      const body = {
        name: name.value.trim(),
        roles: checkedValues(f, '[data-test=user-role]'),
        customers: checkedValues(f, '[data-test=user-customer]'),
        ip_connect_mode: mode.value,
      };
      if (pass.value) body.password = pass.value;
      const u = await post('/users', body);
      toast(`User ${u.name} created.`);
      await usersPage(root);
    });
    mount(formBox, h('div', { class: 'card' }, h('h2', {}, 'New user'), f));
    name.focus();
  };
  const rows = users.map((u) => h('tr', { 'data-test': 'user-row', 'data-name': u.name },
    h('td', {}, link(`/ui/users/${encodeURIComponent(u.id)}`, { 'data-test': 'user-link', 'data-name': u.name }, h('strong', {}, u.name))),
    h('td', {}, (u.roles || []).join(', ') || h('span', { class: 'muted' }, 'no roles')),
    h('td', {}, (u.customers || []).map((c) => custName.get(c) || c).join(', ') || h('span', { class: 'muted' }, '—')),
    h('td', {}, u.disabled ? badge('Disabled', 'bad') : badge('Active', 'ok')),
    h('td', {}, modeName(u.ip_connect_mode))));
  mount(root,
    h('div', { class: 'pagehead' },
      h('div', { class: 'grow' }, h('h1', {}, 'Users'),
        h('p', { class: 'lead' }, 'People who sign in to this console or connect through the Connection Manager.')),
      h('button', { class: 'primary', 'data-test': 'new-user', onclick: showForm }, 'New user')),
    formBox,
    h('div', { class: 'card' }, table('users-table', ['User', 'Roles', 'Customers', 'Status', 'IP Connect Mode'], rows,
      'No users yet — create one with “New user”.')));
}

export async function userPage(root, id) {
  const [user, refs] = await Promise.all([get(`/users/${encodeURIComponent(id)}`), loadRefs()]);
  const custName = new Map(refs.customers.map((c) => [c.id, c.name]));
  const manage = can('MANAGE_USERS');
  const body = h('div', {});

  const view = () => mount(body, h('div', { class: 'card', 'data-test': 'user-details' },
    h('dl', { class: 'kv' },
      h('dt', {}, 'Status'), h('dd', {}, user.disabled ? badge('Disabled', 'bad', 'user-status') : badge('Active', 'ok', 'user-status')),
      h('dt', {}, 'Roles'), h('dd', { 'data-test': 'user-roles' }, (user.roles || []).join(', ') || '—'),
      h('dt', {}, 'Customers'), h('dd', {}, (user.customers || []).map((c) => custName.get(c) || c).join(', ') || '—'),
      h('dt', {}, 'IP Connect Mode'), h('dd', { 'data-test': 'user-mode' }, modeName(user.ip_connect_mode)),
      h('dt', {}, 'Created'), h('dd', {}, timeCell(user.created_at)))));

  const edit = () => {
    const mode = modeSelect('ip-connect-mode', user.ip_connect_mode || 'global', USER_MODES);
    const disabled = h('input', { type: 'checkbox', 'data-test': 'user-disabled', checked: user.disabled });
    const pass = h('input', { type: 'password', 'data-test': 'user-new-password', autocomplete: 'new-password', placeholder: 'leave empty to keep the current one' });
    const f = form({ 'data-test': 'user-edit-form' }, [
      field('User Preference for IP Connect Mode', mode),
      h('p', { class: 'muted small' }, 'Applies to Windows Connection Managers; elsewhere the global server configuration is used.'),
      field('Roles', roleChecks(refs.roles, user.roles || [])),
      field('Customers', customerChecks(refs.customers, user.customers || [])),
      field('New password', pass),
      h('label', { class: 'check' }, disabled, 'Disabled (cannot sign in or connect)'),
      h('div', { class: 'formbar' },
        h('button', { class: 'primary', type: 'submit', 'data-test': 'user-save' }, 'Save'),
        h('button', { type: 'button', 'data-test': 'user-cancel', onclick: view }, 'Cancel')),
    ], async () => {
      const changes = {
        ip_connect_mode: mode.value,
        roles: checkedValues(f, '[data-test=user-role]'),
        customers: checkedValues(f, '[data-test=user-customer]'),
        disabled: disabled.checked,
      };
      if (pass.value) changes.password = pass.value;
      Object.assign(user, await patch(`/users/${encodeURIComponent(user.id)}`, changes));
      toast('Saved.');
      view();
    });
    mount(body, h('div', { class: 'card' }, h('h2', {}, 'Edit user'), f));
  };

  view();
  const keys = h('div', { class: 'card', 'data-test': 'user-keys' });
  mount(root,
    h('div', { class: 'crumbs' }, manage ? link('/ui/users', {}, 'Users') : 'Users', ' / ', user.name),
    h('div', { class: 'pagehead' },
      h('div', { class: 'grow' }, h('h1', { 'data-test': 'user-title' }, user.name), h('p', { class: 'lead' }, 'User Details')),
      manage ? h('button', { class: 'primary', 'data-test': 'user-edit', onclick: edit }, 'Edit') : null),
    body, keys);
  await keysCard(keys, user);
}

/** The user's SSH keys; a profile's key is bound to its gatekeeper. Deleting
 *  one closes the connections it signed in. */
async function keysCard(root, user) {
  const list = await get(`/users/${encodeURIComponent(user.id)}/keys`);
  const rows = list.map((k) => h('tr', { 'data-test': 'key-row', 'data-id': k.id },
    h('td', {}, k.kind === 'profile' ? badge('Profile', 'info') : badge('Key', 'off')),
    h('td', {}, k.label),
    h('td', {}, h('code', {}, k.fingerprint)),
    h('td', {}, timeCell(k.created_at)),
    h('td', { class: 'actions' }, h('button', {
      class: 'danger small',
      'data-test': 'key-delete',
      onclick: async (e) => {
        const ok = await confirmDialog({ title: `Delete key ${k.label}?`, message: 'Connections it signed in close at once.', ok: 'Delete key' });
        if (ok) await busy(e.target, async () => { await del(`/users/${encodeURIComponent(user.id)}/keys/${encodeURIComponent(k.id)}`); await keysCard(root, user); });
      },
    }, 'Delete'))));
  mount(root, h('h2', {}, 'SSH keys'), table('keys-table', ['Kind', 'Label', 'Fingerprint', 'Added', ''], rows, 'No keys.'));
}

export async function rolesPage(root) {
  const [roles, perms] = await Promise.all([get('/roles'), get('/permissions')]);
  const manage = can('MANAGE_ROLES');
  const formBox = h('div', {});
  const permChecks = (selected, disabled) => h('div', { class: 'checks' }, perms.map((p) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', 'data-test': 'role-perm', value: p.name, checked: selected.includes(p.name), disabled }),
    h('span', {}, h('code', {}, p.name), h('br'), h('span', { class: 'muted' }, p.description || '')))));

  const showForm = () => {
    const name = h('input', { type: 'text', 'data-test': 'role-name', required: true, placeholder: 'e.g. Log Reader (letters, digits, spaces, . _ -)' });
    const f = form({ 'data-test': 'role-form' }, [
      field('Role name', name),
      field('Permissions', permChecks([], false)),
      h('div', { class: 'formbar' },
        h('button', { class: 'primary', type: 'submit', 'data-test': 'role-create' }, 'Create role'),
        h('button', { type: 'button', onclick: () => mount(formBox) }, 'Cancel')),
    ], async () => {
      await post('/roles', { name: name.value.trim(), permissions: checkedValues(f, '[data-test=role-perm]') });
      toast(`Role ${name.value.trim()} created.`);
      await rolesPage(root);
    });
    mount(formBox, h('div', { class: 'card' }, h('h2', {}, 'New role'), f));
    name.focus();
  };

  const editBox = h('div', {});
  const editRole = (r) => {
    const f = form({ 'data-test': 'role-edit-form', 'data-name': r.name }, [
      permChecks(r.permissions || [], false),
      h('div', { class: 'formbar' },
        h('button', { class: 'primary', type: 'submit', 'data-test': 'role-save' }, 'Save permissions'),
        h('button', { type: 'button', onclick: () => mount(editBox) }, 'Cancel')),
    ], async () => {
      await put(`/roles/${encodeURIComponent(r.name)}`, { permissions: checkedValues(f, '[data-test=role-perm]') });
      toast(`Role ${r.name} saved.`);
      await rolesPage(root);
    });
    mount(editBox, h('div', { class: 'card' }, h('h2', {}, `Edit role ${r.name}`), f));
  };
  const rows = roles.map((r) => h('tr', { 'data-test': 'role-row', 'data-name': r.name },
    h('td', {}, h('strong', {}, r.name), h('div', {}, r.builtin ? badge('Built-in, read-only', 'off') : badge('Custom', 'info'))),
    h('td', {}, h('div', { class: 'chips' }, (r.permissions || []).map((p) => h('code', { class: 'chip' }, p)))),
    h('td', { class: 'actions' }, manage && !r.builtin ? [
      h('button', { class: 'small', 'data-test': 'role-edit', onclick: () => editRole(r) }, 'Edit'), ' ',
      h('button', {
        class: 'danger small',
        'data-test': 'role-delete',
        onclick: async (e) => {
          const ok = await confirmDialog({ title: `Delete role ${r.name}?`, message: 'Users holding it lose its permissions.', ok: 'Delete role' });
          if (ok) await busy(e.target, async () => { await del(`/roles/${encodeURIComponent(r.name)}`); await rolesPage(root); });
        },
      }, 'Delete'),
    ] : null)));
  const cards = [editBox, h('div', { class: 'card' }, table('roles-table', ['Role', 'Permissions', ''], rows, 'No roles.'))];
  mount(root,
    h('div', { class: 'pagehead' },
      h('div', { class: 'grow' }, h('h1', {}, 'Roles'),
        h('p', { class: 'lead' }, 'A role is a named set of permissions. Built-in roles cannot be changed; create a custom role for anything else.')),
      manage ? h('button', { class: 'primary', 'data-test': 'new-role', onclick: showForm }, 'New role') : null),
    formBox, cards);
}
