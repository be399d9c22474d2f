/*! flask-jobs: live progress bars for background jobs. No dependencies. */
(function (w, d) {
'use strict';
const A = 'data-flask-jobs-';
const FINAL = ['SUCCESS', 'FAILURE', 'REVOKED'];
const LABELS = {PENDING: 'Waiting…', STARTED: 'Started', PROGRESS: 'Working…',
  RETRY: 'Retrying…', SUCCESS: 'Done', FAILURE: 'Failed', REVOKED: 'Cancelled'};
const bound = new WeakMap(); // element -> tracking promise
const noop = () => {};
// The bundled stylesheet, next to this script: added once by the first bar when the page has
// none, so one <script> tag is enough. data-flask-jobs-css on the script tag overrides its URL;
// "none" leaves styling to the page.
const me = d.currentScript;
const CSS = me && (me.getAttribute(A + 'css') ||
  (me.src && me.src.replace(/\.js(\?.*)?$/, '.css$1')));
let cssChecked = false;
function ensureStyles() {
  if (cssChecked) return;
  cssChecked = true;
  if (!CSS || CSS === 'none' || d.querySelector('link[href*="flask-jobs"][rel~="stylesheet"]')) return;
  const probe = d.body.appendChild(Object.assign(d.createElement('div'), {className: 'fj-bar'}));
  const styled = getComputedStyle(probe).overflow === 'hidden'; // (our rule; the default is visible)
  probe.remove();
  if (!styled) {
    d.head.appendChild(Object.assign(d.createElement('link'),
      {rel: 'stylesheet', href: CSS, id: 'flask-jobs-css'}));
  }
}

// "/status/" (the last one in the path) -> "/<seg>/"
function derive(url, seg) {
  const i = url.split(/[?#]/)[0].lastIndexOf('/status/');
  return i < 0 ? null : url.slice(0, i) + '/' + seg + '/' + url.slice(i + 8);
}

// Same-origin fetch; sends <meta name="csrf-token"> as X-CSRFToken
function req(url, method, body, signal) {
  const m = d.querySelector('meta[name="csrf-token"]');
  const headers = Object.assign({Accept: 'application/json'}, m && {'X-CSRFToken': m.content});
  return fetch(url, {method, body, signal, headers, credentials: 'same-origin'});
}

function errorText(s) {
  const e = s.error || {};
  return e.message ? (e.type ? e.type + ': ' : '') + e.message
    : e.type || (typeof e === 'string' ? e : s.status || s.state);
}

// A user callback's errors are logged, tracking goes on
function call(fn, s) {
  if (fn) try { fn(s); } catch (e) { console.error(e); }
}

function track(url, o) {
  o = o || {};
  const base = o.pollInterval || 500, max = o.maxPollInterval || 5000;
  let stopped, es, timer, ctl, last, delay = base, settle;
  const p = new Promise((res, rej) => { settle = [res, rej]; });

  function stop() {
    stopped = true;
    if (es) es.close();
    if (ctl) ctl.abort();
    clearTimeout(timer);
  }

  function handle(s) {
    if (stopped) return;
    const st = s.state, fin = FINAL.includes(st);
    if (fin) stop();
    call(o.onUpdate, s);
    // onProgress, onSuccess, onFailure or onRevoked
    call(o['on' + (fin ? st[0] + st.slice(1).toLowerCase() : 'Progress')], s);
    if (st === 'SUCCESS') settle[0](s);
    else if (fin) settle[1](Object.assign(new Error(errorText(s)), {status: s}));
  }

  // Backoff x1.5 while nothing changes or on error; reset on change
  async function poll() {
    let s;
    try {
      ctl = new AbortController();
      const r = await req(url, 'GET', null, ctl.signal);
      if (r.ok) s = await r.json();
      else if (r.status === 404 || r.status === 403) { // final
        s = Object.assign({error: {type: 'HTTP ' + r.status, message: r.status === 404
          ? 'unknown task' : 'not allowed'}}, await r.json().catch(noop),
        {state: 'FAILURE'});
      }
    } catch (e) { /* network error: retry later */ }
    if (stopped) return;
    const k = s && JSON.stringify([s.state, s.current, s.total, s.percent, s.status, s.meta]);
    delay = k && k !== last ? base : Math.min(delay * 1.5, max);
    last = k || last;
    if (s) handle(s);
    if (!stopped) timer = setTimeout(poll, delay);
  }

  function sse(eurl) {
    let got = false;
    es = new EventSource(eurl);
    es.onmessage = (m) => {
      try { m = JSON.parse(m.data); } catch (e) { return; }
      got = true;
      handle(m);
    };
    // Error before any message, or EventSource gave up: poll
    es.onerror = () => {
      if (got && es.readyState !== 2) return;
      es.close();
      poll();
    };
  }

  const eurl = o.sse !== false && w.EventSource && (o.eventsUrl || derive(url, 'events'));
  if (o.initial) handle(o.initial); // e.g. an eager 200's final status
  if (!stopped) eurl ? sse(eurl) : poll();
  p.stop = stop;
  p.catch(noop); // no unhandled rejection for callback-only use
  return p;
}

function start(target, o) {
  let t, stopped;
  const form = target.tagName === 'FORM';
  const p = req(form ? target.getAttribute('action') || location.href : target, 'POST',
    form ? new FormData(target) : null).then(async (r) => {
    const b = await r.clone().json().catch(noop) || {};
    // 202, or 200 with the final status (eager mode)
    if (r.status !== 202 && !(r.ok && b.state)) {
      throw Object.assign(new Error((await r.text()) || 'HTTP ' + r.status), {response: r});
    }
    const url = new URL(r.headers.get('Location') || b.status_url, r.url).href;
    o = Object.assign({eventsUrl: b.events_url, initial: b.state && b}, o);
    t = o.element ? bar(o.element, url, o) : track(url, o);
    if (stopped) t.stop();
    return t;
  });
  p.stop = () => { stopped = true; if (t) t.stop(); };
  return p;
}

function bar(el, url, o) {
  const attr = (n) => el.getAttribute(A + n);
  o = Object.assign({eventsUrl: attr('events-url'), sse: attr('sse') !== 'false',
    pollInterval: +attr('poll-interval')}, o);
  if (bound.has(el)) bound.get(el).stop();
  ensureStyles();
  const mk = (tag, cls, parent) =>
    parent.appendChild(Object.assign(d.createElement(tag), {className: cls}));
  el.textContent = '';
  el.classList.add('fj');
  const pb = mk('div', 'fj-bar', el), fill = mk('div', 'fj-fill', pb);
  const aria = {role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100,
    'aria-label': attr('label') || 'Job progress'};
  for (const k in aria) pb.setAttribute(k, aria[k]);
  const info = mk('div', 'fj-info', el);
  const pct = mk('span', 'fj-percent', info), status = mk('span', 'fj-status', info);
  const eta = mk('span', 'fj-eta', info), msg = mk('div', 'fj-message', el);
  msg.setAttribute('aria-live', 'polite');
  const emit = (name, detail) =>
    el.dispatchEvent(new CustomEvent('flask-jobs:' + name, {bubbles: true, detail}));

  let btn;
  const curl = attr('cancel-url') || derive(url, 'revoke');
  if (attr('cancel') != null && curl) {
    btn = Object.assign(mk('button', 'fj-cancel', info),
      {type: 'button', textContent: attr('cancel') || 'Cancel'});
    btn.onclick = async () => {
      btn.disabled = true;
      try {
        const r = await req(curl, 'POST');
        if (!r.ok) throw r;
      } catch (e) {
        btn.disabled = false;
        emit('cancel-error', e);
      }
    };
  }

  let last = 0;
  function render(s, silent) {
    const st = s.state || 'PENDING', fin = FINAL.includes(st), r = s.result;
    let p = st === 'SUCCESS' ? 100 : st === 'PENDING' ? 0
      : s.percent != null ? +s.percent : s.total > 0 ? s.current / s.total * 100 : NaN;
    el.classList.toggle('fj-indeterminate', !fin && (st === 'PENDING' || isNaN(p)));
    p = last = isNaN(p) ? last : Math.floor(Math.max(0, Math.min(100, p)));
    el.dataset.state = st.toLowerCase();
    fill.style.width = p + '%';
    pb.setAttribute('aria-valuenow', p);
    pct.textContent = p + ' %';
    status.textContent = s.status || LABELS[st] || st;
    pb.setAttribute('aria-valuetext', p + ' %, ' + status.textContent); // (read by screen readers)
    const sec = s.eta_seconds;
    eta.hidden = fin || sec == null || !(sec >= 0);
    eta.textContent = eta.hidden ? '' : 'about ' +
      (sec < 60 ? Math.max(1, Math.round(sec)) + ' s' : Math.round(sec / 60) + ' min') + ' left';
    if (btn) btn.hidden = fin;
    const text = st === 'FAILURE' ? errorText(s)
      : st === 'SUCCESS' && r != null && (o.showResult || attr('show-result') != null)
        ? (typeof r === 'string' ? r : JSON.stringify(r)) : '';
    msg.hidden = !text;
    msg.className = 'fj-message' + (text ? st === 'SUCCESS' ? ' fj-result' : ' fj-error' : '');
    msg.textContent = text;
    if (!silent) emit(fin ? st.toLowerCase() : 'progress', s);
  }

  render({}, true);
  const t = track(url, Object.assign({}, o, {onUpdate: (s) => { render(s); call(o.onUpdate, s); }}));
  bound.set(el, t);
  return t;
}

// Every [data-flask-jobs-status-url] in (or being) root becomes a bar
function scan(root) {
  root = root || d;
  const sel = '[' + A + 'status-url]', els = Array.from(root.querySelectorAll(sel));
  if (root.matches && root.matches(sel)) els.unshift(root);
  return els.filter((el) => !bound.has(el)).map((el) => bar(el, el.getAttribute(A + 'status-url')));
}

w.FlaskJobs = {track, start, bar, scan, labels: LABELS};
if (d.readyState === 'loading') d.addEventListener('DOMContentLoaded', () => scan());
else scan();
})(window, document);
