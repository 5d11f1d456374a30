// Remote desktops in the console: the live view of an RDP session (PNG
// images on the watch WebSocket drawn on a <canvas>) and the replay of its
// recording (the desktop at a moment, decoded by the server).

import { h, mount } from './ui.js';
import { socket } from './terminal.js';

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
    panel.canvas.dataset.t = String(t);
    mount(at, `${t.toFixed(1)} s of ${duration.toFixed(1)} s`);
    panel.status('The desktop as recorded at this moment.');
  };
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
