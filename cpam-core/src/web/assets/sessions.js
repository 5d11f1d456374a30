// Sessions: live sessions (kept current by the event stream), the history,
// and Terminate with a required reason.

import { can, download, get, post } from './api.js';
import { link, subscribe } from './app.js';
import { fmtTarget } from './customers.js';
import { replay, watchSession } from './terminal.js';
import { replayDesktop, watchDesktop } from './desktop.js';
import { busy, bytes, confirmDialog, duration, h, mount, table, timeCell, toast } from './ui.js';

const REASONS = {
  completed: 'Completed',
  terminated_by: 'Terminated by',
  expired: 'Grant window closed',
  revoked: 'Grant revoked',
  customer_disabled: 'Disabled by the customer',
  gatekeeper_offline: 'Gatekeeper went offline',
  refused: 'Refused',
  server_shutdown: 'Server shut down',
  error: 'Error',
};

function reasonText(s) {
  const r = REASONS[s.end_reason] || s.end_reason || '';
  if (!s.end_detail) return r;
  return s.end_reason === 'terminated_by' ? `${r} ${s.end_detail}` : `${r}: ${s.end_detail}`;
}

function who(s) {
  return s.user_name || (typeof s.user === 'string' ? s.user : (s.user && s.user.name)) || s.user_id || '';
}

function service(s) {
  return s.service_name || (typeof s.service === 'string' ? s.service : (s.service && s.service.name)) || s.service_id || '';
}

function customerCell(s) {
  const name = s.customer_name || s.customer_id || '';
  return s.customer_id ? link(`/ui/customers/${encodeURIComponent(s.customer_id)}`, {}, name) : name;
}

export async function sessionsPage(root) {
  const [active, history] = await Promise.all([
    get('/sessions?state=active&limit=500'),
    get('/sessions?state=ended&limit=100'),
  ]);
  const live = new Map(active.map((s) => [s.id, s]));
  const ended = history;
  const mayTerminate = can('TERMINATE_SESSIONS');
  const mayWatch = can('MONITOR_SESSIONS');
  const mayReplay = can('VIEW_SESSIONS');
  const mayNodes = can('VIEW_ADMIN_LOG_SYSTEM_MESSAGES') || can('MANAGE_SETTINGS');
  let nodes = [];
  const nodesBox = h('div', {});
  const activeBox = h('div', {});
  const historyBox = h('div', {});
  const viewer = h('div', { 'data-test': 'session-viewer' });
  const recordingsBox = h('div', { 'data-test': 'recordings' });

  const watch = async (s) => {
    const label = `${who(s)} on ${service(s)}`;
    if (s.protocol === 'rdp') watchDesktop(viewer, s, label);
    else await watchSession(viewer, s, label);
    viewer.scrollIntoView();
  };

  const recordings = async (s, button) => {
    await busy(button, async () => {
      const list = await get(`/sessions/${encodeURIComponent(s.id)}/recordings`);
      const rows = list.map((r) => h('tr', { 'data-test': 'recording-row', 'data-id': r.id },
        h('td', { class: 'mono small' }, r.id),
        h('td', {}, timeCell(r.started_at)),
        h('td', {}, bytes(r.size)),
        h('td', {}, r.state),
        h('td', { class: 'actions' },
          h('button', { class: 'small', 'data-test': 'recording-replay', onclick: () => (s.protocol === 'rdp' ? replayDesktop(viewer, r) : replay(viewer, r)) }, 'Replay'),
          h('a', { class: 'button small', 'data-test': 'recording-download',
            href: new URL(`api/v1/recordings/${encodeURIComponent(r.id)}/cast`, document.baseURI).href,
            download: `${r.id}.cast` }, 'Download .cast'))));
      mount(recordingsBox, h('div', { class: 'card' },
        h('h2', {}, `Recordings of ${who(s)}’s session on ${service(s)}`),
        table('recordings', ['Recording', 'Started', 'Size', 'State', ''], rows,
          'This session has no recordings (only privileged SSH and RDP sessions are recorded).')));
    });
  };

  const files = async (s, button) => {
    await busy(button, async () => {
      const path = `/sessions/${encodeURIComponent(s.id)}/files`;
      const list = await get(path);
      const rows = list.map((f) => h('tr', { 'data-test': 'file-row', 'data-result': f.result },
        h('td', { class: 'mono small' }, f.path),
        h('td', {}, f.direction),
        h('td', { class: 'nowrap' }, bytes(f.size), f.offset ? h('div', { class: 'muted small' }, `from byte ${f.offset}`) : null),
        h('td', { class: 'mono small', 'data-test': 'file-sha256' }, f.sha256),
        h('td', {}, f.result, f.reason ? h('div', { class: 'muted small' }, f.reason) : null)));
      mount(recordingsBox, h('div', { class: 'card' },
        h('h2', {}, `Files of ${who(s)}’s session on ${service(s)}`),
        h('div', { class: 'formbar' }, h('button', {
          type: 'button',
          'data-test': 'files-download-csv',
          onclick: (e) => busy(e.target, () => download(`${path}?format=csv`, `cpam-files-${s.id}.csv`)),
        }, 'Download CSV')),
        table('files', ['Path', 'Direction', 'Size', 'SHA-256', 'Result'], rows,
          'This session moved no files (files move over SFTP through the privileged SSH service).')));
    });
  };

  const terminate = async (s, button) => {
    const ok = await confirmDialog({
      title: `Terminate ${who(s)}’s session?`,
      message: `The connection to ${service(s)} (${fmtTarget(s)}) is cut at once. The reason is recorded in the Admin Log.`,
      ok: 'Terminate session',
      reason: { label: 'Reason', placeholder: 'e.g. maintenance window over' },
    });
    if (!ok) return;
    await busy(button, async () => {
      await post(`/sessions/${encodeURIComponent(s.id)}/terminate`, { reason: ok.reason });
      toast('Session terminated.');
    });
  };

  const renderActive = () => {
    const rows = [...live.values()].map((s) => h('tr', { 'data-test': 'session-row', 'data-id': s.id, 'data-user': who(s) },
      h('td', {}, h('strong', {}, who(s))),
      h('td', {}, customerCell(s)),
      h('td', {}, service(s), h('div', { class: 'muted small mono' }, fmtTarget(s))),
      h('td', {}, timeCell(s.started_at), h('div', { class: 'muted small' }, `running ${duration(s.started_at)}`)),
      h('td', { class: 'small nowrap' }, `↑ ${bytes(s.bytes_up)}`, h('br'), `↓ ${bytes(s.bytes_down)}`),
      h('td', { class: 'mono small', 'data-test': 'session-node' }, s.node_id || ''),
      h('td', { class: 'actions' },
        mayWatch
          ? h('button', { class: 'small', 'data-test': 'session-watch', onclick: () => watch(s) }, 'Watch')
          : null,
        mayTerminate
          ? h('button', { class: 'danger small', 'data-test': 'session-terminate', onclick: (e) => terminate(s, e.target) }, 'Terminate')
          : null)));
    mount(activeBox, table('sessions-active', ['User', 'Customer', 'Service', 'Started', 'Traffic', 'Node', ''], rows,
      'No active sessions right now. New ones appear here by themselves.'));
    renderNodes();
  };
  // The server nodes sharing the database, with the sessions each runs.
  const renderNodes = () => {
    if (!mayNodes) return;
    const running = (id) => [...live.values()].filter((s) => s.node_id === id).length;
    const rows = nodes.map((n) => h('tr', { 'data-test': 'node-row', 'data-id': n.id, 'data-state': n.state },
      h('td', { class: 'mono' }, n.id),
      h('td', { class: 'mono small' }, n.peer_address),
      h('td', { class: 'small' }, n.version),
      h('td', {}, timeCell(n.heartbeat_at)),
      h('td', {}, h('span', { class: `badge ${n.state === 'live' ? 'ok' : 'bad'}` }, n.state)),
      h('td', { 'data-test': 'node-sessions' }, String(running(n.id)))));
    mount(nodesBox, table('nodes', ['Node', 'Peer address', 'Version', 'Heartbeat', 'State', 'Active sessions'], rows,
      'No server node is registered.'));
  };
  const loadNodes = async () => {
    if (!mayNodes) return;
    nodes = await get('/nodes');
    renderNodes();
  };
  const renderHistory = () => {
    const rows = ended.map((s) => h('tr', { 'data-test': 'history-row', 'data-id': s.id, 'data-user': who(s) },
      h('td', {}, who(s)),
      h('td', {}, customerCell(s)),
      h('td', {}, service(s), h('div', { class: 'muted small mono' }, fmtTarget(s))),
      h('td', {}, timeCell(s.started_at)),
      h('td', {}, duration(s.started_at, s.ended_at)),
      h('td', { 'data-test': 'history-reason' }, reasonText(s)),
      h('td', { class: 'small nowrap' }, `↑ ${bytes(s.bytes_up)}`, h('br'), `↓ ${bytes(s.bytes_down)}`),
      h('td', { class: 'actions' }, mayReplay
        ? h('button', { class: 'small', 'data-test': 'session-recordings', onclick: (e) => recordings(s, e.target) }, 'Recordings')
        : null,
      mayReplay
        ? h('button', { class: 'small', 'data-test': 'session-files', onclick: (e) => files(s, e.target) }, 'Files')
        : null)));
    mount(historyBox, table('sessions-history', ['User', 'Customer', 'Service', 'Started', 'Duration', 'Ended because', 'Traffic', ''], rows,
      'No finished sessions yet.'));
  };
  renderActive();
  renderHistory();
  await loadNodes();

  subscribe('session', (ev) => {
    const prev = live.get(ev.id) || {};
    const s = { ...prev, ...ev };
    if (s.live) {
      live.set(s.id, s);
    } else {
      live.delete(s.id);
      const i = ended.findIndex((x) => x.id === s.id);
      if (i >= 0) ended[i] = s;
      else ended.unshift(s);
      renderHistory();
    }
    renderActive();
  });

  // Byte counters move without events; refresh them while the page is open.
  const timer = setInterval(async () => {
    if (!root.isConnected) {
      clearInterval(timer);
      return;
    }
    try {
      await loadNodes();
      if (!live.size) return;
      for (const s of await get('/sessions?state=active&limit=500')) {
        if (live.has(s.id)) live.set(s.id, { ...live.get(s.id), ...s });
      }
      renderActive();
    } catch (_) {
      // The next tick tries again; a lost sign-in is handled by the API client.
    }
  }, 5000);

  mount(root,
    h('h1', {}, 'Sessions'),
    h('p', { class: 'lead' }, can('VIEW_SESSIONS')
      ? 'Every vendor connection is a session: authorized, audited, and stoppable at any moment.'
      : 'Your own sessions through the Connection Manager.'),
    h('div', { class: 'card' }, h('h2', {}, 'Active sessions ', h('span', { class: 'badge info' }, 'live')), activeBox),
    viewer,
    h('div', { class: 'card' }, h('h2', {}, 'History'), historyBox),
    recordingsBox,
    mayNodes ? h('div', { class: 'card' }, h('h2', {}, 'Server nodes'), nodesBox) : null);
}
