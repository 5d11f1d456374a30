// Credentials: the ssh and rdp services whose credential the caller may check out
// (never the secret itself), Check out / Check in, and the caller's master
// password, asked before a privileged session starts.

import { del, get, post, put } from './api.js';
import { browserTerminal } from './terminal.js';
import { browserDesktop } from './desktop.js';
import { badge, busy, field, form, h, mount, table, timeCell, toast } from './ui.js';

const LENGTHS = [['15m', 900], ['30m', 1800], ['1h', 3600], ['2h', 7200], ['4h', 14400], ['8h', 28800]];

function hours(secs) {
  return secs % 3600 === 0 ? `${secs / 3600}h` : `${Math.round(secs / 60)}m`;
}

function checkoutCell(root, c, terminalBox) {
  if (c.checkout) {
    return h('td', { class: 'actions' },
      badge('checked out', 'ok', 'checkout-status'), ' until ', timeCell(c.checkout.expires_at), ' ',
      c.kind === 'rdp'
        ? h('button', {
          class: 'primary small',
          'data-test': 'desktop-in-browser',
          onclick: () => browserDesktop(terminalBox, c),
        }, 'Open desktop in browser')
        : h('button', {
          class: 'primary small',
          'data-test': 'connect-in-browser',
          onclick: () => browserTerminal(terminalBox, c),
        }, 'Connect in browser'), ' ',
      h('button', {
        class: 'small',
        'data-test': 'checkin',
        onclick: (e) => busy(e.target, async () => {
          await del(`/checkouts/${encodeURIComponent(c.checkout.id)}`);
          toast(`Checked in ${c.service}.`);
          await credentialsPage(root);
        }),
      }, 'Check in'));
  }
  const length = h('select', { 'data-test': 'checkout-length' },
    LENGTHS.filter(([, s]) => s <= c.max_checkout_secs)
      .map(([l, s]) => h('option', { value: s, selected: s === Math.min(3600, c.max_checkout_secs) }, l)));
  return h('td', { class: 'actions' }, length, ' ',
    h('button', {
      class: 'primary small',
      'data-test': 'checkout',
      onclick: (e) => busy(e.target, async () => {
        await post('/checkouts', { service_id: c.service_id, duration_secs: Number(length.value) || c.max_checkout_secs });
        toast(`Checked out ${c.service}.`);
        await credentialsPage(root);
      }),
    }, 'Check out'));
}

function masterPasswordCard() {
  const current = h('input', { type: 'password', autocomplete: 'current-password', 'data-test': 'master-current', required: true });
  const next = h('input', { type: 'password', autocomplete: 'new-password', 'data-test': 'master-new', minlength: 8, required: true });
  const again = h('input', { type: 'password', autocomplete: 'new-password', 'data-test': 'master-again', minlength: 8, required: true });
  const f = form({ 'data-test': 'master-form' }, [
    h('div', { class: 'row' },
      field('Login password or current master password', current),
      field('New master password', next),
      field('New master password again', again)),
    h('div', { class: 'formbar' }, h('button', { class: 'primary', type: 'submit', 'data-test': 'master-save' }, 'Set master password')),
  ], async () => {
    if (next.value !== again.value) throw new Error('The two new master passwords differ.');
    await put('/me/master-password', { current: current.value, new: next.value });
    current.value = next.value = again.value = '';
    toast('Master password set.');
  });
  return h('div', { class: 'card' }, h('h2', {}, 'Master password'),
    h('p', { class: 'muted small' }, 'Asked before a privileged session starts; apart from your login password.'), f);
}

export async function credentialsPage(root) {
  const list = await get('/credentials');
  const terminalBox = h('div', { 'data-test': 'terminal-box' });
  const rows = list.map((c) => h('tr', { 'data-test': 'credential-row', 'data-service': c.service },
    h('td', {}, h('strong', {}, c.service), h('div', { class: 'muted small' }, c.customer_name || '')),
    h('td', { class: 'mono' }, c.target),
    h('td', {}, c.username, h('div', { class: 'muted small' }, c.credential_kind === 'private_key' ? 'private key' : 'password')),
    h('td', {}, hours(c.max_checkout_secs)),
    checkoutCell(root, c, terminalBox)));
  mount(root,
    h('h1', {}, 'Credentials'),
    h('p', { class: 'lead' }, 'Check a credential out to start privileged sessions to its host; the server logs in for you, the secret is never shown.'),
    h('div', { class: 'card' }, table('credentials-table', ['Service', 'Target', 'Account', 'Longest checkout', ''], rows,
      'No credentials are available to you right now.')),
    terminalBox,
    masterPasswordCard());
}
