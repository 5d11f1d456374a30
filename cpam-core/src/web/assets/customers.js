// Customers: the list, and one customer's page with its Gatekeeper
// (registration code, live status, Connect), Services and Grants.

import { can, del, download, get, post } from './api.js';
import { link, navigate, subscribe } from './app.js';
import {
  badge, busy, confirmDialog, copyButton, errorBox, field, form, h, isoFromLocal, mount, table, timeCell, toast,
} from './ui.js';

export const KINDS = {
  'desktop-sharing': 'Desktop Sharing',
  'file-transfer': 'File Transfer',
  custom: 'Custom (host:port)',
  ssh: 'SSH (credential injected)',
  rdp: 'RDP (credential injected)',
};
const DEFAULT_PORTS = { 'desktop-sharing': '5900', 'file-transfer': '22', custom: '', ssh: '22', rdp: '3389' };

/** [label, badge kind] of a gatekeeper's status. */
export function gkStatus(gk) {
  if (!gk) return ['No gatekeeper', 'off'];
  if (!gk.registered) return ['Unregistered', 'warn'];
  return gk.online ? ['Online', 'ok'] : ['Offline', 'off'];
}

export function fmtTarget(s) {
  const t = s.target;
  if (typeof t === 'string') return t;
  if (t && typeof t === 'object') return `${t.host}:${t.port}`;
  if (s.host) return `${s.host}:${s.port}`;
  return '';
}

// --- list --------------------------------------------------------------------

export async function customersPage(root) {
  const customers = await get('/customers');
  const manage = can('MANAGE_CUSTOMERS');
  const formBox = h('div', {});
  const listBox = h('div', {});

  const showForm = () => {
    const name = h('input', { type: 'text', 'data-test': 'customer-name', placeholder: 'e.g. Acme Hospital', required: true });
    mount(formBox, h('div', { class: 'card' },
      h('h2', {}, 'New customer'),
      form({ 'data-test': 'customer-form' }, [
        field('Customer name', name),
        h('div', { class: 'formbar' },
          h('button', { class: 'primary', type: 'submit', 'data-test': 'customer-create' }, 'Create customer'),
          h('button', { type: 'button', onclick: () => mount(formBox) }, 'Cancel')),
      ], async () => {
        const c = await post('/customers', { name: name.value.trim() });
        toast(`Customer ${c.name} created.`);
        navigate(`/ui/customers/${encodeURIComponent(c.id)}`);
      })));
    name.focus();
  };

  const badges = new Map();
  const rows = customers.map((c) => {
    const b = badge(...gkStatus(c.gatekeeper), 'customer-gk-status');
    if (c.gatekeeper) badges.set(c.gatekeeper.id, { b, gk: c.gatekeeper });
    return h('tr', { 'data-test': 'customer-row', 'data-name': c.name },
      h('td', {}, link(`/ui/customers/${encodeURIComponent(c.id)}`, { 'data-test': 'customer-link', 'data-name': c.name }, h('strong', {}, c.name))),
      h('td', {}, c.gatekeeper ? [c.gatekeeper.name, ' ', b] : h('span', { class: 'muted' }, 'No gatekeeper yet')),
      h('td', {}, timeCell(c.created_at)));
  });
  subscribe('gatekeeper', (ev) => {
    const e = badges.get(ev.id);
    if (!e) return;
    Object.assign(e.gk, ev);
    const [label, kind] = gkStatus(e.gk);
    e.b.textContent = label;
    e.b.className = `badge ${kind}`;
  });
  mount(listBox, h('div', { class: 'card' }, table('customers-table', ['Customer', 'Gatekeeper', 'Created'], rows,
    manage ? 'No customers yet — create one with “New customer”.' : 'No customers are assigned to you yet.')));

  mount(root,
    h('div', { class: 'pagehead' },
      h('div', { class: 'grow' },
        h('h1', {}, 'Customers'),
        h('p', { class: 'lead' }, 'Each customer runs a Gatekeeper inside its network; vendors reach the customer’s services through it.')),
      manage ? h('button', { class: 'primary', 'data-test': 'new-customer', onclick: showForm }, 'New customer') : null),
    formBox, listBox);
}

// --- one customer ------------------------------------------------------------

export async function customerPage(root, id) {
  const customer = await get(`/customers/${encodeURIComponent(id)}`);
  const gks = await Promise.all((customer.gatekeepers || []).map(async (g) => {
    try {
      return { ...g, ...(await get(`/gatekeepers/${encodeURIComponent(g.id)}`)) };
    } catch (_) {
      return g;
    }
  }));
  const services = (await Promise.all(gks.map(async (g) => {
    const list = await get(`/gatekeepers/${encodeURIComponent(g.id)}/services`);
    return list.map((s) => ({ ...s, gatekeeper_id: s.gatekeeper_id || g.id, gatekeeper_name: g.name }));
  }))).flat();
  const reload = () => customerPage(root, id);

  const gkBox = h('div', { class: 'card', 'data-test': 'gatekeeper-section' });
  const renderGatekeepers = () => {
    const cards = gks.map((gk) => gatekeeperCard(customer, gk, services));
    const add = can('MANAGE_GATEKEEPERS')
      ? h('button', { 'data-test': 'add-gatekeeper', onclick: () => addGatekeeperForm(gkBox, customer, reload) }, 'Add gatekeeper')
      : null;
    mount(gkBox,
      h('h2', {}, h('span', { class: 'grow' }, gks.length > 1 ? 'Gatekeepers' : 'Gatekeeper'), add),
      gks.length ? cards : h('p', { class: 'empty', 'data-test': 'gatekeeper-empty' },
        'No gatekeeper yet — add one, then register it inside the customer’s network with a registration code.'));
  };
  renderGatekeepers();
  subscribe('gatekeeper', async (ev) => {
    const gk = gks.find((g) => g.id === ev.id);
    if (!gk) return;
    const justRegistered = !gk.registered && (ev.online || ev.registered);
    Object.assign(gk, ev);
    if (justRegistered) {
      // Registration fills in fields the event does not carry.
      try {
        Object.assign(gk, await get(`/gatekeepers/${encodeURIComponent(gk.id)}`));
      } catch (_) {
        gk.registered = true;
      }
    }
    for (const card of gkBox.querySelectorAll(`[data-gk="${CSS.escape(gk.id)}"]`)) {
      const fresh = gatekeeperCard(customer, gk, services, card);
      if (justRegistered) {
        mount(fresh.querySelector('[data-test=gatekeeper-extra]'), h('div', { class: 'notice ok', 'data-test': 'registered-notice' },
          `Gatekeeper ${gk.name} is registered and connected. The registration code has been used up.`));
      }
      card.replaceWith(fresh);
    }
  });

  const delButton = can('MANAGE_CUSTOMERS')
    ? h('button', {
      class: 'danger',
      'data-test': 'customer-delete',
      onclick: async (e) => {
        const ok = await confirmDialog({
          title: `Delete customer ${customer.name}?`,
          message: 'Its gatekeepers, services and grants are removed. This cannot be undone.',
          ok: 'Delete customer',
        });
        if (!ok) return;
        await busy(e.target, async () => {
          await del(`/customers/${encodeURIComponent(id)}`);
          toast(`Customer ${customer.name} deleted.`);
          navigate('/ui/customers');
        });
      },
    }, 'Delete customer')
    : null;

  mount(root,
    h('div', { class: 'crumbs' }, link('/ui/customers', {}, 'Customers'), ' / ', customer.name),
    h('div', { class: 'pagehead' },
      h('div', { class: 'grow' }, h('h1', { 'data-test': 'customer-title' }, customer.name),
        h('p', { class: 'lead' }, 'The gatekeeper, the services vendors may reach through it, and who may use them.')),
      delButton),
    gkBox,
    servicesCard(gks, services, reload),
    can('MANAGE_GRANTS') ? await grantsCard(services, reload) : null);
}

function addGatekeeperForm(box, customer, reload) {
  const name = h('input', { type: 'text', 'data-test': 'gatekeeper-name', placeholder: 'e.g. gk1', required: true });
  const existing = box.querySelector('[data-test=gatekeeper-form]');
  if (existing) return;
  box.appendChild(h('div', { class: 'notice' },
    h('h3', {}, 'Add gatekeeper'),
    form({ 'data-test': 'gatekeeper-form' }, [
      h('div', { class: 'row' }, field('Name', name)),
      h('div', { class: 'formbar' },
        h('button', { class: 'primary', type: 'submit', 'data-test': 'gatekeeper-create' }, 'Add gatekeeper'),
        h('button', { type: 'button', onclick: () => reload() }, 'Cancel')),
    ], async () => {
      const body = { name: name.value.trim() };
      await post(`/customers/${encodeURIComponent(customer.id)}/gatekeepers`, body);
      toast(`Gatekeeper ${body.name} added. Issue a registration code to register it.`);
      await reload();
    })));
  name.focus();
}

function registerCommand(resp, gk) {
  if (resp.command) return resp.command;
  // The API does not tell the console the SSH address gatekeepers dial; the
  // operator fills in the port cpam-server listens on (`listen` in config.json).
  const server = resp.server_address || gk.server_address || `${location.hostname}:SSH_PORT`;
  // The code goes in on standard input, never in the process arguments.
  let cmd = `printf '%s\n' ${resp.code} | cpam-gatekeeper register --server ${server} --code-file -`;
  const fp = resp.server_fingerprint || gk.server_fingerprint;
  if (fp) cmd += ` --server-fingerprint ${fp}`;
  return `${cmd} --state-dir /var/lib/cpam-gatekeeper`;
}

function gatekeeperCard(customer, gk, services, previous) {
  const [label, kind] = gkStatus(gk);
  const extra = h('div', { 'data-test': 'gatekeeper-extra' });
  // Keep a shown code or connect help across live re-renders.
  const keep = previous && previous.querySelector('[data-test=gatekeeper-extra]');
  if (keep) extra.replaceChildren(...keep.childNodes);

  const issue = can('MANAGE_GATEKEEPERS')
    ? h('button', {
      'data-test': 'issue-code',
      onclick: (e) => busy(e.target, async () => {
        const resp = await post(`/gatekeepers/${encodeURIComponent(gk.id)}/registration-code`, { ttl_minutes: 60 });
        mount(extra, h('div', { class: 'notice', 'data-test': 'registration-panel' },
          h('h3', {}, 'Registration code — shown only once'),
          h('div', {}, h('span', { class: 'secret', 'data-test': 'registration-code' }, resp.code), ' ',
            copyButton(resp.code, 'copy-registration-code')),
          h('p', { class: 'small' }, 'Expires ', h('span', { 'data-test': 'registration-expires' }, timeCell(resp.expires_at)),
            '. It can be used once.'),
          h('p', {}, 'On a machine inside the customer’s network, register the gatekeeper:'),
          h('pre', { class: 'cmd', 'data-test': 'registration-command' }, registerCommand(resp, gk)),
          copyButton(registerCommand(resp, gk), 'copy-registration-command'),
          resp.server_address ? null : h('p', { class: 'small muted' },
            'SSH_PORT is the port cpam-server listens on for gatekeepers (“listen” in its config.json, printed at start as “cpam-server listening on”).'),
          h('p', {}, 'Then start it, allowing the hosts and ports vendors may reach:'),
          h('pre', { class: 'cmd' }, 'cpam-gatekeeper run --state-dir /var/lib/cpam-gatekeeper --allow 10.0.0.0/8:22,3389,5900'),
          h('p', { class: 'small muted' }, 'The status above turns Online by itself as soon as the gatekeeper connects.')));
      }),
    }, gk.registered ? 'Issue new registration code' : 'Issue registration code')
    : null;

  const mayConnect = can('DOWNLOAD_CONNECTION_MANAGER') && can('USE_CONNECTION_MANAGER');
  const connect = mayConnect
    ? h('button', {
      class: 'primary',
      'data-test': 'connect',
      disabled: !gk.registered,
      title: gk.registered ? 'Download the Connection Manager profile for this gatekeeper' : 'Available once the gatekeeper is registered',
      onclick: (e) => busy(e.target, async () => {
        const file = await download(`/gatekeepers/${encodeURIComponent(gk.id)}/profile`,
          `cpam-${customer.name}-${gk.name}.cpam-profile.json`);
        const svc = (services.find((s) => s.gatekeeper_id === gk.id) || {}).name || 'SERVICE';
        mount(extra, h('div', { class: 'notice ok', 'data-test': 'connect-panel' },
          h('h3', {}, 'Connection Manager profile downloaded'),
          h('p', {}, 'Saved as ', h('code', { 'data-test': 'connect-file' }, file), '. It is linked to gatekeeper ',
            h('strong', {}, gk.name), ' of ', h('strong', {}, customer.name),
            ' and to you; keep track of which profile belongs to which customer.'),
          h('p', {}, 'List the services you may use, then forward one to a local port and connect to it with your usual tool:'),
          h('pre', { class: 'cmd', 'data-test': 'connect-command' },
            `cpam-connect --profile ${file} services\ncpam-connect --profile ${file} forward ${svc} --listen 127.0.0.1:2201\nssh -p 2201 USER@127.0.0.1`),
          h('p', { class: 'small' }, 'Every connection is an audited session; it appears on the ',
            link('/ui/sessions', { 'data-test': 'connect-sessions-link' }, 'Sessions'), ' page while it runs.')));
      }),
    }, 'Connect')
    : null;

  let switchBadge = null;
  if (gk.registered) {
    switchBadge = gk.customer_disabled
      ? badge(gk.customer_schedule ? 'Closed by the customer' : 'Disabled by the customer', 'bad', 'gatekeeper-switch')
      : badge('Enabled by the customer', 'ok', 'gatekeeper-switch');
  }
  return h('div', { 'data-gk': gk.id, 'data-test': 'gatekeeper-card', 'data-name': gk.name },
    h('div', { class: 'gk-head' },
      h('span', { class: 'name', 'data-test': 'gatekeeper-title' }, gk.name),
      badge(label, kind, 'gatekeeper-status'), switchBadge),
    h('dl', { class: 'kv' },
      h('dt', {}, 'Last contact'),
      h('dd', { 'data-test': 'gatekeeper-last-contact' }, gk.last_contact ? timeCell(gk.last_contact) : 'Never'),
      h('dt', {}, 'Registered'),
      h('dd', {}, gk.registered ? timeCell(gk.registered_at) : 'Not yet — issue a registration code and run it on the customer side'),
      gk.fingerprint ? [h('dt', {}, 'Key fingerprint'), h('dd', { class: 'mono' }, gk.fingerprint)] : null,
      gk.registered ? [h('dt', {}, 'Opening hours'), h('dd', { 'data-test': 'gatekeeper-schedule' },
        gk.customer_schedule ? `${gk.customer_schedule} (UTC), set by the customer` : 'Always, while the customer keeps it switched on')] : null,
      h('dt', {}, 'Added'), h('dd', {}, timeCell(gk.created_at))),
    gk.customer_disabled ? h('div', { class: 'notice bad', 'data-test': 'gatekeeper-disabled-notice' },
      gk.customer_schedule
        ? 'The customer has closed this gatekeeper: it is switched off or outside its opening hours. Vendors cannot connect until it opens again.'
        : 'The customer has switched this gatekeeper off on their side. Vendors cannot connect until the customer switches it back on.') : null,
    h('div', { class: 'gk-actions' }, connect, issue,
      mayConnect && !gk.registered ? h('span', { class: 'muted small', 'data-test': 'connect-hint' },
        'Connect is available once the gatekeeper is registered.') : null),
    extra);
}

// --- services ----------------------------------------------------------------

function servicesCard(gks, services, reload) {
  const box = h('div', { class: 'card', 'data-test': 'services-section' });
  const manage = can('MANAGE_SERVICES') && gks.length > 0;
  const formBox = h('div', {});
  const showForm = () => {
    const name = h('input', { type: 'text', 'data-test': 'service-name', placeholder: 'e.g. db1-ssh', required: true });
    const kind = h('select', { 'data-test': 'service-kind' },
      Object.entries(KINDS).map(([v, l]) => h('option', { value: v }, l)));
    const host = h('input', { type: 'text', 'data-test': 'service-host', placeholder: 'host or IP inside the customer network', required: true });
    const port = h('input', { type: 'number', 'data-test': 'service-port', min: 1, max: 65535, placeholder: DEFAULT_PORTS['desktop-sharing'] });
    kind.addEventListener('change', () => {
      port.placeholder = DEFAULT_PORTS[kind.value] || 'required';
      port.required = kind.value === 'custom';
    });
    const gk = h('select', { 'data-test': 'service-gatekeeper' }, gks.map((g) => h('option', { value: g.id }, g.name)));
    mount(formBox, h('div', { class: 'notice' },
      h('h3', {}, 'Add service'),
      form({ 'data-test': 'service-form' }, [
        h('div', { class: 'row' }, field('Name', name), field('Kind', kind)),
        h('div', { class: 'row' }, field('Host', host), field('Port', port),
          gks.length > 1 ? field('Gatekeeper', gk) : null),
        h('div', { class: 'formbar' },
          h('button', { class: 'primary', type: 'submit', 'data-test': 'service-create' }, 'Add service'),
          h('button', { type: 'button', onclick: () => mount(formBox) }, 'Cancel')),
      ], async () => {
        const body = { name: name.value.trim(), kind: kind.value, host: host.value.trim() };
        if (port.value) body.port = Number(port.value);
        await post(`/gatekeepers/${encodeURIComponent(gk.value)}/services`, body);
        toast(`Service ${body.name} added.`);
        await reload();
      })));
    name.focus();
  };
  const rows = services.map((s) => h('tr', { 'data-test': 'service-row', 'data-name': s.name },
    h('td', {}, h('strong', {}, s.name)),
    h('td', {}, KINDS[s.kind] || s.kind || 'Custom'),
    h('td', { class: 'mono' }, fmtTarget(s)),
    gks.length > 1 ? h('td', {}, s.gatekeeper_name) : null,
    h('td', { class: 'actions' }, can('MANAGE_SERVICES') ? h('button', {
      class: 'danger small',
      'data-test': 'service-delete',
      onclick: async (e) => {
        const ok = await confirmDialog({
          title: `Delete service ${s.name}?`,
          message: 'Grants for it stop working and live sessions to it end.',
          ok: 'Delete service',
        });
        if (ok) await busy(e.target, async () => { await del(`/services/${encodeURIComponent(s.id)}`); await reload(); });
      },
    }, 'Delete') : null)));
  const heads = ['Service', 'Kind', 'Target', gks.length > 1 ? 'Gatekeeper' : null, ''].filter((x) => x !== null);
  let emptyText = 'No services yet — add Desktop Sharing, File Transfer or any host:port the gatekeeper may reach.';
  if (!gks.length) emptyText = 'Services need a gatekeeper first.';
  return mount(box,
    h('h2', {}, h('span', { class: 'grow' }, 'Services'),
      manage ? h('button', { 'data-test': 'add-service', onclick: showForm }, 'Add service') : null),
    formBox,
    table('services-table', heads, rows, emptyText));
}

// --- grants ------------------------------------------------------------------

async function grantsCard(services, reload) {
  const box = h('div', { class: 'card', 'data-test': 'grants-section' });
  const byId = new Map(services.map((s) => [s.id, s]));
  let grants = [];
  try {
    grants = (await get('/grants')).filter((g) => byId.has(g.service_id) && !g.revoked_at);
  } catch (e) {
    return mount(box, h('h2', {}, 'Access grants'), errorBox(e));
  }
  let users = [];
  if (can('MANAGE_USERS')) {
    try {
      users = await get('/users');
    } catch (_) {
      users = [];
    }
  }
  const userNames = new Map(users.map((u) => [u.id, u.name]));
  const formBox = h('div', {});
  const showForm = () => {
    const user = h('input', { type: 'text', 'data-test': 'grant-user', list: 'grant-users', placeholder: 'user name', required: true });
    const list = h('datalist', { id: 'grant-users' }, users.map((u) => h('option', { value: u.name })));
    const svc = h('select', { 'data-test': 'grant-service' }, services.map((s) => h('option', { value: s.id }, `${s.name} (${fmtTarget(s)})`)));
    const from = h('input', { type: 'datetime-local', 'data-test': 'grant-not-before' });
    const until = h('input', { type: 'datetime-local', 'data-test': 'grant-not-after' });
    const days = h('input', { type: 'number', min: 0, 'data-test': 'grant-days', placeholder: '0' });
    const hours = h('input', { type: 'number', min: 0, 'data-test': 'grant-hours', placeholder: '0' });
    mount(formBox, h('div', { class: 'notice' },
      h('h3', {}, 'Grant access'),
      form({ 'data-test': 'grant-form' }, [
        h('div', { class: 'row' }, field('User', [user, list]), field('Service', svc)),
        h('div', { class: 'row' }, field('Starts (optional, default now)', from), field('Ends (optional)', until)),
        h('p', { class: 'muted small' }, 'Or, instead of an end, a length:'),
        h('div', { class: 'row' }, field('For days', days), field('and hours', hours)),
        h('p', { class: 'muted small' }, 'With no end and no length the grant lasts until it is revoked.'),
        h('div', { class: 'formbar' },
          h('button', { class: 'primary', type: 'submit', 'data-test': 'grant-create' }, 'Grant access'),
          h('button', { type: 'button', onclick: () => mount(formBox) }, 'Cancel')),
      ], async () => {
        const body = { user: user.value.trim(), service_id: svc.value };
        if (from.value) body.not_before = isoFromLocal(from.value);
        if (until.value) body.not_after = isoFromLocal(until.value);
        if (Number(days.value) > 0) body.days = Number(days.value);
        if (Number(hours.value) > 0) body.hours = Number(hours.value);
        await post('/grants', body);
        toast(`Access granted to ${body.user}.`);
        await reload();
      })));
    user.focus();
  };
  const rows = grants.map((g) => {
    const s = byId.get(g.service_id);
    const who = (typeof g.user === 'string' ? g.user : null) || userNames.get(g.user_id) || g.user_id;
    return h('tr', { 'data-test': 'grant-row', 'data-user': who, 'data-service': s.name },
      h('td', {}, h('strong', {}, who)),
      h('td', {}, s.name),
      h('td', {}, timeCell(g.not_before), ' → ', g.not_after ? timeCell(g.not_after) : h('span', { class: 'muted' }, 'no end')),
      h('td', {}, g.created_by || ''),
      h('td', { class: 'actions' }, h('button', {
        class: 'danger small',
        'data-test': 'grant-revoke',
        onclick: async (e) => {
          const ok = await confirmDialog({
            title: `Revoke ${who}’s access to ${s.name}?`,
            message: 'Any live session under this grant ends immediately.',
            ok: 'Revoke access',
          });
          if (ok) await busy(e.target, async () => { await del(`/grants/${encodeURIComponent(g.id)}`); await reload(); });
        },
      }, 'Revoke')));
  });
  return mount(box,
    h('h2', {}, h('span', { class: 'grow' }, 'Access grants'),
      services.length ? h('button', { 'data-test': 'add-grant', onclick: showForm }, 'Grant access') : null),
    h('p', { class: 'muted small' }, 'Who may use which service, and when. Everything else is refused and audited.'),
    formBox,
    table('grants-table', ['User', 'Service', 'Valid', 'Granted by', ''], rows,
      services.length ? 'No grants yet — nobody can use these services.' : 'Add a service first, then grant users access to it.'));
}
