// Terminals in the console: the live view of a session (xterm.js on the
// watch WebSocket) and the replay of a recording (asciinema-player). The
// vendored scripts load on first use.

import { h, mount } from './ui.js';

const loaded = new Map();

function load(tag, attrs) {
  const key = attrs.src || attrs.href;
  if (!loaded.has(key)) {
    loaded.set(key, new Promise((resolve, reject) => {
      const el = h(tag, { ...attrs, onload: () => resolve(), onerror: () => reject(new Error(`cannot load ${key}`)) });
      document.head.appendChild(el);
    }));
  }
  return loaded.get(key);
}

async function xterm() {
  await Promise.all([
    load('link', { rel: 'stylesheet', href: 'assets/vendor/xterm.css' }),
    load('script', { src: 'assets/vendor/xterm.js' }),
  ]);
  return window.Terminal;
}

async function player() {
  await Promise.all([
    load('link', { rel: 'stylesheet', href: 'assets/vendor/asciinema-player.css' }),
    load('script', { src: 'assets/vendor/asciinema-player.min.js' }),
  ]);
  return window.AsciinemaPlayer;
}

/** A WebSocket to `path` (relative to the console) on the console's own origin. */
export function socket(path) {
  const url = new URL(path, document.baseURI);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  return ws;
}

/**
 * A terminal panel: `{ el, term, status(text), close() }`. `test` names it
 * for the browser tests (`data-test`).
 */
export async function terminalPanel(test, title) {
  const Terminal = await xterm();
  const screen = h('div', { class: 'terminal-screen', 'data-test': `${test}-screen` });
  const status = h('div', { class: 'muted small', 'data-test': `${test}-status` }, 'Connecting…');
  const closeButton = h('button', { class: 'small', 'data-test': `${test}-close` }, 'Close');
  const el = h('div', { class: 'card terminal-card', 'data-test': test },
    h('div', { class: 'row' }, h('h2', {}, title), closeButton), screen, status);
  const term = new Terminal({ cols: 80, rows: 24, convertEol: false, scrollback: 1000 });
  const panel = {
    el,
    term,
    status: (text) => mount(status, text),
    onclose: null,
    close: () => {
      if (panel.onclose) panel.onclose();
      term.dispose();
      el.remove();
    },
  };
  closeButton.addEventListener('click', () => panel.close());
  panel.open = () => term.open(screen);
  return panel;
}

/** Feeds `panel` from a socket that sends output as binary and JSON text controls. */
function relay(ws, panel, onEnd) {
  ws.addEventListener('message', (ev) => {
    if (typeof ev.data !== 'string') {
      panel.term.write(new Uint8Array(ev.data));
      return;
    }
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (_) {
      return;
    }
    if (Array.isArray(msg.resize)) panel.term.resize(msg.resize[0], msg.resize[1]);
    if (msg.end !== undefined) onEnd(msg.end);
  });
}

/** Opens the live view of session `s` in `box`. */
export async function watchSession(box, s, label) {
  const panel = await terminalPanel('watch', `Watching ${label}`);
  mount(box, panel.el);
  panel.open();
  const ws = socket(`api/v1/sessions/${encodeURIComponent(s.id)}/watch`);
  let ended = false;
  ws.addEventListener('open', () => panel.status('Live: what the session shows, as it shows it.'));
  relay(ws, panel, (reason) => {
    ended = true;
    panel.status(`The session ended: ${reason}`);
  });
  ws.addEventListener('close', () => {
    if (!ended) panel.status('The live view closed (the session is not live, or you may not watch it).');
  });
  panel.onclose = () => ws.close();
  return panel;
}

const SPEEDS = ['0.5', '1', '2', '4'];

/** Replays recording `r` (asciicast URL relative to the console) in `box`. */
export async function replay(box, r) {
  const AsciinemaPlayer = await player();
  const url = new URL(`api/v1/recordings/${encodeURIComponent(r.id)}/cast`, document.baseURI).href;
  const screen = h('div', { class: 'replay-screen', 'data-test': 'replay-screen' });
  const speed = h('select', { 'data-test': 'replay-speed' },
    SPEEDS.map((x) => h('option', { value: x, selected: x === '1' }, `${x}×`)));
  const closeButton = h('button', { class: 'small', 'data-test': 'replay-close' }, 'Close');
  let current = null;
  const start = () => {
    if (current) current.dispose();
    current = AsciinemaPlayer.create(url, screen, {
      controls: true,
      speed: Number(speed.value),
      fit: 'width',
      autoPlay: true,
    });
  };
  speed.addEventListener('change', start);
  closeButton.addEventListener('click', () => {
    if (current) current.dispose();
    box.replaceChildren();
  });
  mount(box, h('div', { class: 'card terminal-card', 'data-test': 'replay' },
    h('div', { class: 'row' }, h('h2', {}, `Replay of ${r.id}`),
      h('label', { class: 'small' }, 'Speed ', speed), closeButton),
    screen));
  start();
}

/**
 * The browser terminal on service `c` (a credential row): asks the master
 * password in the page, then runs a privileged session in xterm.js. The
 * password goes to the server once, in the socket's first message.
 */
export async function browserTerminal(box, c) {
  const master = h('input', { type: 'password', autocomplete: 'off', 'data-test': 'terminal-master', required: true });
  const connect = h('button', { class: 'primary small', type: 'submit', 'data-test': 'terminal-connect' }, 'Connect');
  const prompt = h('form', { class: 'card', 'data-test': 'terminal-prompt' },
    h('h2', {}, `Connect to ${c.service} in the browser`),
    h('label', {}, 'Master password ', master), ' ', connect);
  mount(box, prompt);
  master.focus();
  prompt.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const password = master.value;
    master.value = '';
    const panel = await terminalPanel('terminal', `${c.service} (${c.username})`);
    mount(box, panel.el);
    panel.open();
    const ws = socket(`api/v1/services/${encodeURIComponent(c.service_id)}/terminal`);
    let ended = false;
    ws.addEventListener('open', () => {
      ws.send(JSON.stringify({ master_password: password, cols: panel.term.cols, rows: panel.term.rows }));
      panel.status('Connected: the server signs in to the target for you.');
      panel.term.focus();
    });
    relay(ws, panel, (reason) => {
      ended = true;
      panel.term.write(`\r\n[cpam] ${reason}\r\n`);
      panel.status(`The session ended: ${reason}`);
    });
    ws.addEventListener('close', () => {
      if (!ended) panel.status('The connection closed.');
    });
    const encoder = new TextEncoder();
    panel.term.onData((d) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(d));
    });
    panel.term.onResize(({ cols, rows }) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ resize: [cols, rows] }));
    });
    panel.onclose = () => ws.close();
  });
}
