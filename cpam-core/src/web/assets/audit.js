// System Admin -> Admin Log: filters, the entries, CSV / JSON lines
// downloads and the audit chain's verification status.

import { can, download, get, qs } from './api.js';
import { badge, busy, errorBox, field, h, isoFromLocal, mount, table, when } from './ui.js';

const CATEGORIES = [
  ['user-activity', 'User activity', 'VIEW_ADMIN_LOG_USER_ACTIVITY'],
  ['system-messages', 'System messages', 'VIEW_ADMIN_LOG_SYSTEM_MESSAGES'],
];

// The file-transfer actions (`cpam_core::proxy::sftp::events`, audited
// as `session.<action>`).
const FILE_EVENTS = 'session.file,session.file.op,session.sftp.malformed';

function detailText(d) {
  if (d === null || d === undefined) return '';
  if (typeof d !== 'object') return String(d);
  return Object.entries(d).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`).join('  ');
}

async function verifyBox(box) {
  if (!can('VERIFY_AUDIT_LOG')) return mount(box);
  try {
    const v = await get('/audit/verify');
    if (v.intact) {
      return mount(box, h('div', { class: 'notice ok', 'data-test': 'audit-verify-status' },
        h('strong', {}, `Verified: ${v.records} records intact`),
        h('span', { class: 'muted small' }, ' — every entry is chained to the one before it by its SHA-256 hash; nothing was edited, removed or inserted.')));
    }
    const b = v.first_broken || {};
    return mount(box, h('div', { class: 'notice bad', 'data-test': 'audit-verify-status' },
      h('strong', {}, `Broken at record #${b.seq}: ${b.problem || 'hash mismatch'}`),
      h('span', {}, ` — records before #${b.seq} are intact (${v.records} records checked).`)));
  } catch (e) {
    return mount(box, errorBox(e, 'audit-verify-status'));
  }
}

export async function auditPage(root) {
  const cats = CATEGORIES.filter(([, , p]) => can(p));
  const customers = await get('/customers').catch(() => []);
  const custName = new Map(customers.map((c) => [c.id, c.name]));
  const from = h('input', { type: 'datetime-local', 'data-test': 'audit-from' });
  const to = h('input', { type: 'datetime-local', 'data-test': 'audit-to' });
  const user = h('input', { type: 'text', 'data-test': 'audit-user', placeholder: 'any user' });
  const category = h('select', { 'data-test': 'audit-category' },
    cats.length > 1 ? h('option', { value: '' }, 'All categories') : null,
    cats.map(([v, l]) => h('option', { value: v }, l)));
  const customer = h('select', { 'data-test': 'audit-customer' },
    h('option', { value: '' }, 'All customers'), customers.map((c) => h('option', { value: c.id }, c.name)));
  const kind = h('select', { 'data-test': 'audit-kind' },
    h('option', { value: '' }, 'All events'),
    h('option', { value: FILE_EVENTS }, 'File events'));
  const verify = h('div', {});
  const results = h('div', {});

  const params = (format) => qs({
    from: isoFromLocal(from.value),
    to: isoFromLocal(to.value),
    user: user.value.trim(),
    category: category.value,
    customer: customer.value,
    action: kind.value,
    limit: format ? 100000 : 500,
    format,
  });

  const load = async () => {
    mount(results, h('p', { class: 'muted' }, 'Loading…'));
    try {
      const entries = await get(`/audit${params('')}`);
      const list = (Array.isArray(entries) ? entries : entries.records || entries.entries || [])
        .slice().sort((a, b) => (b.seq || 0) - (a.seq || 0));
      const rows = list.map((r) => h('tr', { 'data-test': 'audit-row', 'data-action': r.action },
        h('td', { class: 'mono small' }, `#${r.seq}`),
        h('td', { class: 'nowrap' }, when(r.at)),
        h('td', {}, r.category === 'system-messages' ? badge('System', 'off') : badge('User activity', 'info')),
        h('td', { class: 'mono', 'data-test': 'audit-action' }, r.action),
        h('td', {}, r.actor || r.user || ''),
        h('td', {}, r.customer_name || custName.get(r.customer_id) || r.customer_id || ''),
        h('td', { class: 'detail' }, detailText(r.detail))));
      mount(results,
        h('p', { class: 'muted small', 'data-test': 'audit-count' }, `${list.length} entries, newest first${list.length >= 500 ? ' (first 500; narrow the filters or download for all)' : ''}.`),
        table('audit-table', ['#', 'Time', 'Category', 'Action', 'Who', 'Customer', 'Details'], rows,
          'No entries match these filters.'));
    } catch (e) {
      mount(results, errorBox(e));
    }
  };

  const filters = h('form', { class: 'card', 'data-test': 'audit-filters' },
    h('div', { class: 'row' }, field('From', from), field('To', to), field('User', user),
      field('Category', category), field('Customer', customer), field('Events', kind)),
    h('div', { class: 'formbar' },
      h('button', { class: 'primary', type: 'submit', 'data-test': 'audit-apply' }, 'Apply filters'),
      h('button', {
        type: 'button',
        'data-test': 'audit-download-csv',
        onclick: (e) => busy(e.target, () => download(`/audit${params('csv')}`, 'cpam-admin-log.csv')),
      }, 'Download CSV'),
      h('button', {
        type: 'button',
        'data-test': 'audit-download-jsonl',
        onclick: (e) => busy(e.target, () => download(`/audit${params('jsonl')}`, 'cpam-admin-log.jsonl')),
      }, 'Download JSON lines')));
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    load();
  });

  mount(root,
    h('div', { class: 'crumbs' }, 'System Admin'),
    h('h1', {}, 'Admin Log'),
    h('p', { class: 'lead' }, `Everything people and the system did, in a tamper-evident chain. You can see: ${cats.map(([, l]) => l.toLowerCase()).join(' and ')}.`),
    verify, filters, h('div', { class: 'card dense' }, results));
  await Promise.all([verifyBox(verify), load()]);
}
