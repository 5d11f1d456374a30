// Remote desktops in the console: the live view of an RDP session (PNG
// images on the watch WebSocket drawn on a <canvas>), the browser desktop
// (the same images, and the page's keys and pointer sent back), and the
// replay of its recording (the desktop at a moment, decoded by the server,
// next to the client's keys and mouse decoded from the recorded input).

import { h, mount } from './ui.js';
import { socket } from './terminal.js';
import { SCANCODES } from './scancodes.js';

/** Key names by scancode, for the replay's input list. */
const KEY_NAMES = new Map([...SCANCODES].map(([name, code]) => [code, name]));

/** One event of a recording's input track as a short line. */
function describeInput(e) {
  const updown = e.down ? 'down' : 'up';
  switch (e.type) {
    case 'key':
      return `key ${KEY_NAMES.get(e.scancode) || `0x${e.scancode.toString(16)}`} ${updown}`;
    case 'unicode':
      return `unicode ${JSON.stringify(String.fromCharCode(e.code))} ${updown}`;
    case 'pointer':
      return `pointer ${e.x},${e.y}`;
    case 'button':
      return `${e.button} button ${updown} at ${e.x},${e.y}`;
    case 'wheel':
      return `${e.horizontal ? 'horizontal ' : ''}wheel ${e.delta > 0 ? '+' : ''}${e.delta} at ${e.x},${e.y}`;
    case 'relative_pointer':
      return `pointer by ${e.dx},${e.dy}`;
    case 'relative_button':
      return `${e.button} button ${updown}`;
    case 'sync':
      return `locks: ${['caps_lock', 'num_lock', 'scroll_lock', 'kana_lock'].filter((k) => e[k]).join(', ') || 'none'}`;
    default:
      return e.type;
  }
}

/** A desktop panel: `{ el, canvas, status(text), close() }`. */
function desktopPanel(test, title) {
  const canvas = h('canvas', { class: 'desktop-canvas', width: 1024, height: 768, 'data-test': `${test}-canvas` });
  const status = h('div', { class: 'muted small', 'data-test': `${test}-status` }, 'Connecting…');
  const closeButton = h('button', { class: 'small', 'data-test': `${test}-close` }, 'Close');
  const el = h('div', { class: 'card terminal-card', 'data-test': test },
    h('div', { class: 'row' }, h('h2', {}, title), closeButton),
    h('div', { class: 'desktop-screen' }, canvas), status);
  const panel = {
    el,
    canvas,
    status: (text) => mount(status, text),
    onclose: null,
    close: () => {
      if (panel.onclose) panel.onclose();
      el.remove();
    },
  };
  closeButton.addEventListener('click', () => panel.close());
  return panel;
}

/**
 * Draws the images of a desktop socket on `panel`'s canvas, in order:
 * each binary message is x, y (big-endian u16) and a PNG.
 */
function drawDesktop(ws, panel, onEnd) {
  const ctx = panel.canvas.getContext('2d');
  let queue = Promise.resolve();
  ws.addEventListener('message', (ev) => {
    if (typeof ev.data !== 'string') {
      const view = new DataView(ev.data);
      const x = view.getUint16(0);
      const y = view.getUint16(2);
      const png = new Blob([new Uint8Array(ev.data, 4)], { type: 'image/png' });
      queue = queue
        .then(() => createImageBitmap(png))
        .then((bitmap) => {
          ctx.drawImage(bitmap, x, y);
          bitmap.close();
          panel.canvas.dataset.drawn = String(Number(panel.canvas.dataset.drawn || 0) + 1);
        })
        .catch((e) => {
          panel.canvas.dataset.error = String(e);
        });
      return;
    }
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (_) {
      return;
    }
    if (Array.isArray(msg.desktop)) {
      queue = queue.then(() => {
        [panel.canvas.width, panel.canvas.height] = msg.desktop;
      });
    }
    if (msg.end !== undefined) queue = queue.then(() => onEnd(msg.end));
  });
}

/** Opens the live view of remote desktop session `s` in `box`. */
export function watchDesktop(box, s, label) {
  const panel = desktopPanel('watch', `Watching ${label}`);
  mount(box, panel.el);
  const ws = socket(`api/v1/sessions/${encodeURIComponent(s.id)}/watch`);
  let ended = false;
  ws.addEventListener('open', () => panel.status('Live: the desktop as the session shows it.'));
  drawDesktop(ws, panel, (reason) => {
    ended = true;
    panel.status(`The session ended: ${reason}`);
  });
  ws.addEventListener('close', () => {
    if (!ended) panel.status('The live view closed (the session is not live, or you may not watch it).');
  });
  panel.onclose = () => ws.close();
  return panel;
}

/**
 * Replays RDP recording `r` in `box`: the desktop at the slider's moment,
 * decoded by the server; Play moves it on in real time.
 */
export async function replayDesktop(box, r) {
  const panel = desktopPanel('replay', `Replay of ${r.id}`);
  const slider = h('input', { type: 'range', min: 0, max: 0, step: 0.5, value: 0, 'data-test': 'replay-position' });
  const play = h('button', { class: 'small', 'data-test': 'replay-play' }, 'Play');
  const at = h('span', { class: 'muted small mono', 'data-test': 'replay-time' }, '0.0 s');
  panel.el.insertBefore(h('div', { class: 'row' }, play, slider, at), panel.el.lastChild);
  mount(box, panel.el);
  const ctx = panel.canvas.getContext('2d');
  const base = new URL(`api/v1/recordings/${encodeURIComponent(r.id)}/frame`, document.baseURI);
  let shown = -1;
  let timer = null;
  const show = async (t) => {
    base.searchParams.set('t', String(t));
    const res = await fetch(base, { credentials: 'same-origin' });
    if (!res.ok) {
      panel.status(`Cannot show the recording (${res.status}).`);
      return;
    }
    const duration = Number(res.headers.get('x-recording-duration') || 0);
    slider.max = String(duration);
    const bitmap = await createImageBitmap(await res.blob());
    panel.canvas.width = bitmap.width;
    panel.canvas.height = bitmap.height;
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    shown = t;
    mark();
    panel.canvas.dataset.t = String(t);
    mount(at, `${t.toFixed(1)} s of ${duration.toFixed(1)} s`);
    panel.status('The desktop as recorded at this moment.');
  };
  // The client's input next to the canvas: each line seeks to its time;
  // the ones up to the moment shown are marked.
  const inputs = h('ol', { class: 'input-track mono small', 'data-test': 'replay-input' });
  panel.el.insertBefore(inputs, panel.el.lastChild);
  const mark = () => {
    for (const li of inputs.children) li.classList.toggle('past', Number(li.dataset.t) <= shown);
  };
  fetch(new URL(`api/v1/recordings/${encodeURIComponent(r.id)}/input`, document.baseURI), { credentials: 'same-origin' })
    .then((res) => (res.ok ? res.json() : Promise.reject(new Error(String(res.status)))))
    .then((track) => {
      const lines = track.events.filter((e) => e.type !== 'pointer' || track.events.length < 2000);
      mount(inputs, ...lines.map((e) => {
        const li = h('li', { 'data-t': String(e.t), 'data-test': 'replay-input-event' },
          `${e.t.toFixed(2)} s  ${describeInput(e)}`);
        li.addEventListener('click', () => {
          slider.value = String(e.t);
          show(e.t);
        });
        return li;
      }));
      inputs.dataset.count = String(track.events.length);
      if (track.skipped) inputs.title = `${track.skipped} input PDUs not decoded: ${track.last_error}`;
      mark();
    })
    .catch((e) => mount(inputs, h('li', { class: 'muted' }, `No input track (${e.message}).`)));
  slider.addEventListener('change', () => show(Number(slider.value)));
  play.addEventListener('click', () => {
    if (timer) {
      clearInterval(timer);
      timer = null;
      mount(play, 'Play');
      return;
    }
    mount(play, 'Pause');
    timer = setInterval(async () => {
      const next = Math.max(shown, 0) + 0.5;
      if (next > Number(slider.max)) {
        clearInterval(timer);
        timer = null;
        mount(play, 'Play');
        return;
      }
      slider.value = String(next);
      await show(next);
    }, 500);
  });
  panel.onclose = () => {
    if (timer) clearInterval(timer);
  };
  await show(0);
  slider.value = slider.max;
  await show(Number(slider.max));
}

/** The canvas position of a mouse event, in desktop pixels. */
function position(canvas, ev) {
  const r = canvas.getBoundingClientRect();
  const x = Math.round(((ev.clientX - r.left) * canvas.width) / (r.width || 1));
  const y = Math.round(((ev.clientY - r.top) * canvas.height) / (r.height || 1));
  return [Math.min(Math.max(x, 0), canvas.width - 1), Math.min(Math.max(y, 0), canvas.height - 1)];
}

/** Sends the canvas's keys, pointer, buttons and wheel on `ws` as JSON. */
function captureInput(ws, canvas) {
  const send = (msg) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify(msg));
    canvas.dataset.sent = String(Number(canvas.dataset.sent || 0) + 1);
  };
  const pressed = new Set();
  const key = (down) => (ev) => {
    const code = SCANCODES.get(ev.code);
    if (code === undefined) return;
    ev.preventDefault();
    if (down) pressed.add(code);
    else pressed.delete(code);
    send({ key: [code, down] });
  };
  canvas.addEventListener('keydown', key(true));
  canvas.addEventListener('keyup', key(false));
  // Keys held when the canvas loses focus are released on the desktop.
  canvas.addEventListener('blur', () => {
    for (const code of pressed) send({ key: [code, false] });
    pressed.clear();
  });
  // Browsers send at most one move per frame.
  canvas.addEventListener('mousemove', (ev) => send({ pointer: position(canvas, ev) }));
  const button = (down) => (ev) => {
    if (ev.button > 2) return;
    ev.preventDefault();
    canvas.focus();
    send({ button: [...position(canvas, ev), ev.button, down] });
  };
  canvas.addEventListener('mousedown', button(true));
  canvas.addEventListener('mouseup', button(false));
  canvas.addEventListener('contextmenu', (ev) => ev.preventDefault());
  canvas.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    if (ev.deltaY === 0) return;
    send({ wheel: [...position(canvas, ev), ev.deltaY < 0 ? 120 : -120] });
  }, { passive: false });
}

/**
 * The browser desktop on RDP service `c` (a credential row): asks the
 * master password in the page, then runs a privileged RDP session on a
 * canvas. The password goes to the server once, in the socket's first
 * message; the target's credential never comes to the page.
 */
export function browserDesktop(box, c) {
  const master = h('input', { type: 'password', autocomplete: 'off', 'data-test': 'desktop-master', required: true });
  const connect = h('button', { class: 'primary small', type: 'submit', 'data-test': 'desktop-connect' }, 'Connect');
  const prompt = h('form', { class: 'card', 'data-test': 'desktop-prompt' },
    h('h2', {}, `Open the desktop of ${c.service} in the browser`),
    h('label', {}, 'Master password ', master), ' ', connect);
  mount(box, prompt);
  master.focus();
  prompt.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const password = master.value;
    master.value = '';
    const panel = desktopPanel('desktop', `${c.service} (${c.username})`);
    panel.canvas.tabIndex = 0;
    mount(box, panel.el);
    const ws = socket(`api/v1/services/${encodeURIComponent(c.service_id)}/desktop`);
    let ended = false;
    ws.addEventListener('open', () => {
      ws.send(JSON.stringify({ master_password: password, width: panel.canvas.width, height: panel.canvas.height }));
      panel.status('Connecting: the server signs in to the desktop for you.');
    });
    let shown = false;
    ws.addEventListener('message', (m) => {
      if (!shown && typeof m.data !== 'string') {
        shown = true;
        panel.status('Connected: keys and the pointer on the desktop go to the target.');
        panel.canvas.focus();
      }
    });
    drawDesktop(ws, panel, (reason) => {
      ended = true;
      panel.canvas.dataset.endedAt = String(Date.now());
      panel.status(`The session ended: ${reason}`);
    });
    ws.addEventListener('close', () => {
      if (!ended) panel.status('The connection closed.');
    });
    captureInput(ws, panel.canvas);
    panel.onclose = () => ws.close();
  });
}
