// The driftless dashboard: one server-sent event stream (/api/stream) keeps
// `state` current; every change redraws from it. No framework, no build step.
'use strict';

const state = {
  gitsyncs: new Map(), // "namespace/name" -> the GitSync's view (see src/ops/ui/view.rs)
  events: [],
  actions: false,
  problem: null,
  seenEvents: null,    // event identities already shown, to highlight new ones
  firstRendered: false,
};

const $ = (id) => document.getElementById(id);
const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ESC[c]);
const keyOf = (g) => `${g.namespace}/${g.name}`;
const title = (n) => (n.namespace ? `${n.kind} ${n.namespace}/${n.name}` : `${n.kind} ${n.name}`);

/** `main@sha1:0123456789…` -> `main@0123456`. */
function shortRev(r) {
  if (!r) return '—';
  const m = /^(.*)@sha1:([0-9a-f]{7})[0-9a-f]*$/.exec(r);
  return m ? `${m[1]}@${m[2]}` : r;
}

function ago(iso) {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function selectedKey() {
  const h = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
  if (state.gitsyncs.has(h)) return h;
  const first = [...state.gitsyncs.keys()].sort()[0];
  return first ?? null;
}

// ---- drawing ----

let pending = false;
/** Redraws once per frame, however many updates arrived. */
function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    render();
  });
}

function render() {
  const sel = selectedKey();
  renderList(sel);
  renderDetail(sel ? state.gitsyncs.get(sel) : null);
  renderEvents(sel ? state.gitsyncs.get(sel) : null);
  renderHeader();
  if (!state.firstRendered) {
    state.firstRendered = true;
    // After the browser painted this frame: what the user first sees.
    requestAnimationFrame(() => setTimeout(() => {
      performance.mark('driftless-first-render');
      document.documentElement.dataset.rendered = 'true';
    }, 0));
  }
}

function renderHeader() {
  const all = [...state.gitsyncs.values()];
  const n = (s) => all.filter((g) => g.status === s).length;
  $('counts').textContent = `${all.length} GitSyncs · ${n('Ready')} Ready · ${n('OutOfSync')} OutOfSync · ${n('Stalled') + n('Failed')} failing`;
  $('token-box').hidden = !state.actions;
  const p = $('problem');
  p.hidden = !state.problem;
  p.textContent = state.problem ? `cannot read the cluster: ${state.problem}` : '';
}

function renderList(sel) {
  const items = [...state.gitsyncs.values()].sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
  $('gitsyncs').innerHTML = items.length === 0
    ? '<p class="empty">No GitSyncs.</p>'
    : items.map((g) => `
      <a class="gs${keyOf(g) === sel ? ' selected' : ''}" href="#/${esc(keyOf(g))}"
         data-gitsync="${esc(keyOf(g))}" data-status="${esc(g.status)}" data-revision="${esc(g.revision ?? '')}">
        <span class="badge s-${esc(g.status)}">${esc(g.status)}</span>
        <span class="name">${esc(g.name)}</span>
        <span class="when" title="last applied ${esc(g.lastAppliedAt ?? 'never')}">${esc(ago(g.lastAppliedAt))}</span>
        <span class="sub">${esc(g.namespace)} · ${esc(shortRev(g.revision))}</span>
        ${g.suspend ? '<span class="tag">suspended</span>' : ''}
      </a>`).join('');
}

function renderDetail(g) {
  const d = $('detail');
  if (!g) {
    d.innerHTML = '';
    return;
  }
  const buttons = state.actions ? `
    <div class="actions">
      <button type="button" data-action="sync" data-target="${esc(keyOf(g))}">Sync now</button>
      <button type="button" data-action="${g.suspend ? 'resume' : 'suspend'}" data-target="${esc(keyOf(g))}">${g.suspend ? 'Resume' : 'Suspend'}</button>
    </div>` : '';
  const attempted = g.attemptedRevision && g.attemptedRevision !== g.revision
    ? `<dt>last attempted</dt><dd><code>${esc(g.attemptedRevision)}</code></dd>` : '';
  d.innerHTML = `
    <h2 data-detail="${esc(keyOf(g))}" data-status="${esc(g.status)}">GitSync ${esc(keyOf(g))}
      <span class="badge s-${esc(g.status)}">${esc(g.status)}</span>
      ${g.suspend ? '<span class="tag">suspended</span>' : ''}</h2>
    <dl class="facts">
      <dt>source</dt><dd><code>${esc(g.url)}</code> ${esc(g.gitRef)}${g.path ? ` path <code>${esc(g.path)}</code>` : ''}</dd>
      <dt>applied revision</dt><dd><code>${esc(g.revision ?? 'none')}</code></dd>
      ${attempted}
      <dt>last applied</dt><dd>${g.lastAppliedAt ? `${esc(ago(g.lastAppliedAt))} (${esc(g.lastAppliedAt)})` : 'never'}</dd>
      <dt>status</dt><dd class="message">${esc(g.reason)}${g.message ? `: ${esc(g.message)}` : ''}</dd>
    </dl>
    ${buttons}
    <h3>Objects</h3>
    ${g.tree ? stages(g.tree) : `<p class="why">${esc(g.treeError ?? 'not read yet')}</p>`}
    <h3>History</h3>
    ${history(g.history)}`;
}

function stages(tree) {
  if (!tree.stages || tree.stages.length === 0) return '<p class="empty">Nothing applied yet.</p>';
  return tree.stages.map((s) => `
    <div class="stage"><div class="title">${esc(s.name)} (${s.objects.length})</div>
      <ul class="tree">${s.objects.map(node).join('')}</ul></div>`).join('');
}

function node(n) {
  const cond = (name, v) => (v ? `<span class="badge c-${esc(v)}">${name}=${esc(v)}</span>` : '');
  const refs = n.references && n.references.length ? `<ul>${n.references.map(node).join('')}</ul>` : '';
  return `<li class="node" data-object="${esc(title(n))}" data-healthy="${n.healthy}">
    <div class="row"><span class="dot"></span>
      ${n.via ? `<span class="via">${esc(n.via)} →</span>` : ''}
      <span class="kind">${esc(n.kind)}</span> <span class="oname">${esc(n.namespace ? `${n.namespace}/${n.name}` : n.name)}</span>
      ${cond('Ready', n.ready)}${cond('Synced', n.synced)}
      ${n.externalName ? `<code class="ext" title="external name">${esc(n.externalName)}</code>` : ''}
      ${n.cloudState ? `<span class="cloud" title="cloud state">${esc(n.cloudState)}</span>` : ''}
      ${n.message ? `<span class="why">${esc(n.message)}</span>` : ''}
    </div>${refs}</li>`;
}

function history(entries) {
  if (!entries || entries.length === 0) return '<p class="empty">No revision applied yet.</p>';
  return `<table class="history"><thead><tr><th>revision</th><th>started</th><th>took</th><th>result</th>
    <th>created</th><th>configured</th><th>unchanged</th><th>pruned</th></tr></thead><tbody>
    ${entries.map((h) => `<tr><td><code>${esc(shortRev(h.revision))}</code></td>
      <td title="${esc(h.startedAt)}">${esc(ago(h.startedAt))}</td><td>${esc(h.duration)}</td><td>${esc(h.result)}</td>
      <td class="num">${h.created}</td><td class="num">${h.configured}</td><td class="num">${h.unchanged}</td><td class="num">${h.pruned}</td></tr>`).join('')}
    </tbody></table>`;
}

/** The selected GitSync's events (itself and its objects), newest first. */
function renderEvents(g) {
  let shown = state.events;
  if (g) {
    const mine = new Set([`GitSync ${keyOf(g)}`]);
    const walk = (n) => { mine.add(title(n)); (n.references || []).forEach(walk); };
    (g.tree?.stages || []).forEach((s) => s.objects.forEach(walk));
    shown = state.events.filter((e) => mine.has(e.object));
    $('events-scope').textContent = `of ${keyOf(g)} and its objects`;
  }
  const id = (e) => `${e.time}|${e.object}|${e.reason}|${e.count}`;
  const seen = state.seenEvents;
  const rows = shown.map((e) => `<tr data-reason="${esc(e.reason)}" data-object="${esc(e.object)}" data-type="${esc(e.type)}"
      class="${seen && !seen.has(id(e)) ? 'fresh' : ''}">
      <td title="${esc(e.time)}">${esc(ago(e.time))}</td><td>${esc(e.type)}</td><td>${esc(e.reason)}${e.count > 1 ? ` ×${e.count}` : ''}</td>
      <td>${esc(e.object)}</td><td class="message">${esc(e.note)}</td></tr>`);
  $('events').tBodies[0].innerHTML = rows.length ? rows.join('') : '<tr><td colspan="5" class="empty">No events.</td></tr>';
  state.seenEvents = new Set(state.events.map(id));
}

// ---- actions (only offered with --ui-actions) ----

function toast(text, bad) {
  const t = $('toast');
  t.textContent = text;
  t.className = bad ? 'toast bad' : 'toast';
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

async function act(action, target) {
  const token = $('token').value.trim();
  if (!token) {
    toast('enter the action token first', true);
    return;
  }
  const res = await fetch(`/api/gitsyncs/${target}/${action}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}` },
  });
  const text = await res.text();
  toast(res.ok ? `${target}: ${text}` : `${target}: ${res.status} ${text}`, !res.ok);
}

document.addEventListener('click', (ev) => {
  const b = ev.target.closest('button[data-action]');
  if (b) act(b.dataset.action, b.dataset.target);
});

// ---- the stream ----

function connect() {
  const es = new EventSource('/api/stream');
  const on = (name, f) => es.addEventListener(name, (e) => { f(JSON.parse(e.data)); schedule(); });
  on('snapshot', (s) => {
    if (!state.firstRendered) performance.mark('driftless-snapshot');
    state.actions = s.actions;
    state.gitsyncs = new Map(s.gitsyncs.map((g) => [keyOf(g), g]));
    state.events = s.events;
    state.problem = s.problem;
  });
  on('gitsync', (g) => state.gitsyncs.set(keyOf(g), g));
  on('removed', (r) => state.gitsyncs.delete(r.key));
  on('events', (e) => { state.events = e; });
  on('problem', (p) => { state.problem = p; });
  es.onopen = () => { $('conn').dataset.state = 'live'; $('conn').textContent = 'live'; };
  // EventSource reconnects by itself; the snapshot it gets then is complete.
  es.onerror = () => { $('conn').dataset.state = 'reconnecting'; $('conn').textContent = 'reconnecting'; };
}

window.addEventListener('hashchange', schedule);
// "3m ago" stays true without an update.
setInterval(schedule, 15000);
connect();
