// The Edgewise control plane dashboard: hash-routed views over the REST API under
// /api/v1, polled every 2 s while the view is shown.

import { h, lineChart, progressBar, clockSeconds } from './charts.js';
import { trainingView } from './training.js';

const POLL_MS = 2000;
const PSI_THRESHOLD = 0.2;
const RANGES = [
  { value: 900, label: 'last 15 minutes', step: 15 },
  { value: 3600, label: 'last hour', step: 60 },
  { value: 21600, label: 'last 6 hours', step: 300 },
  { value: 86400, label: 'last 24 hours', step: 900 },
];

const state = {
  view: null, ctx: null, timer: null, gen: 0, controller: null,
  sigs: new WeakMap(),
  sel: { model: '', version: '', group: '', range: 900 },
};

// ---------------------------------------------------------------- data access

class HttpError extends Error {}

/** Raised when the API wants a (valid) token: the sign-in form is shown instead of data. */
class SignInNeeded extends Error {}

// The API token lives in this tab's session storage only; the dashboard only reads, so
// a viewer token is all it needs.
const TOKEN_KEY = 'edgewise.token';
const storedToken = () => sessionStorage.getItem(TOKEN_KEY) || '';

async function api(path, signal) {
  const headers = { accept: 'application/json' };
  const token = storedToken();
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(path, { signal, cache: 'no-store', headers });
  if (res.status === 401) throw new SignInNeeded(`${path} needs a valid API token`);
  if (!res.ok) {
    let message = `${path} answered ${res.status}`;
    try {
      const body = await res.json();
      if (body && typeof body.error === 'string') message += `: ${body.error}`;
    } catch { /* not JSON */ }
    throw new HttpError(message);
  }
  return res.json();
}

const query = (params) => new URLSearchParams(
  Object.entries(params).filter(([, v]) => v !== '' && v !== null && v !== undefined)).toString();

/** Awaits every promise of `named`; returns [values (undefined where failed), first error]. */
async function settle(named) {
  const keys = Object.keys(named);
  const results = await Promise.allSettled(keys.map((k) => named[k]));
  const values = {};
  let error = null;
  results.forEach((r, i) => {
    values[keys[i]] = r.status === 'fulfilled' ? r.value : undefined;
    if (r.status === 'rejected' && (!error || error.name === 'AbortError')) error = r.reason;
  });
  return [values, error];
}

const list = (v) => (Array.isArray(v) ? v : []);

// ----------------------------------------------------------------- formatting

const DASH = '—';
const fin = (v) => typeof v === 'number' && Number.isFinite(v);
const num = (v) => (!fin(v) ? DASH : Number.isInteger(v) ? v.toLocaleString('en') : String(Number(v.toPrecision(3))));
const pct = (v, digits = 1) => (fin(v) ? `${(v * 100).toFixed(digits)}%` : DASH);
const ms = (v) => (fin(v) ? `${num(v * 1000)} ms` : DASH);
const plural = (n, word) => `${num(n)} ${word}${n === 1 ? '' : 's'}`;
const words = (key) => String(key).replace(/_/g, ' ');
const short = (hash) => (typeof hash === 'string' && hash.length > 16 ? `${hash.slice(0, 12)}…` : hash ?? DASH);

function when(value) {
  if (value === null || value === undefined || value === '') return DASH;
  const d = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const time = clockSeconds(d.getTime() / 1000);
  return d.toDateString() === new Date().toDateString() ? time : `${d.toISOString().slice(0, 10)} ${time}`;
}

function timeEl(value) {
  return h('time', { datetime: typeof value === 'number' ? new Date(value * 1000).toISOString() : value ?? null }, when(value));
}

// ------------------------------------------------------------------ rendering

function section(title, ...children) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  return h('section', { class: 'panel', 'aria-labelledby': id }, h('h2', { id }, title), ...children);
}

/** A table in a horizontally scrolling wrapper; the first cell of each row is its header. */
function table(caption, headers, rows, empty = 'Nothing to show yet.') {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption },
    h('table', {},
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c, i) =>
        i === 0 ? h('th', { scope: 'row' }, c) : h('td', {}, c)))))));
}

const BADGES = {
  pass: ['✓', 'good'], fail: ['✕', 'bad'], wait: ['…', 'warn'],
  running: ['▶', 'info'], paused: ['⏸', 'warn'], completed: ['✓', 'good'], rolled_back: ['↺', 'bad'],
  online: ['●', 'good'], offline: ['○', 'muted'], critical: ['!', 'bad'], warning: ['!', 'warn'],
  applied: ['✓', 'good'], failed: ['✕', 'bad'], downloading: ['↓', 'info'], verifying: ['…', 'info'], idle: ['•', 'muted'],
  drifted: ['⚠', 'bad'], stable: ['✓', 'good'], no_data: ['–', 'muted'],
  queued: ['…', 'muted'], succeeded: ['✓', 'good'], cancelled: ['⊘', 'muted'], better: ['▲', 'good'], not_better: ['▼', 'bad'],
};

/** Text with an icon and a colour; the text alone carries the meaning. */
function badge(text, attrs = {}) {
  const [icon, tone] = BADGES[text] || ['•', 'muted'];
  return h('span', { class: `badge ${tone}` }, h('span', { class: 'icon', 'aria-hidden': 'true' }, icon),
    h('span', attrs, words(text)));
}

/** Replaces a region's content when its data changed, keeping <details> open or closed. */
function fill(region, data, render) {
  const sig = JSON.stringify(data);
  if (state.sigs.get(region) === sig) return;
  state.sigs.set(region, sig);
  const open = new Map([...region.querySelectorAll('details[data-key]')].map((d) => [d.dataset.key, d.open]));
  region.replaceChildren(...[render(data)].flat().filter(Boolean));
  for (const d of region.querySelectorAll('details[data-key]')) {
    if (open.has(d.dataset.key)) d.open = open.get(d.dataset.key);
  }
}

const chartWidth = (region) => Math.min(Math.max(region.clientWidth - 2, 280), 1100);

function selectField(id, label, onChange) {
  const select = h('select', { id, onchange: (e) => onChange(e.target.value) });
  return [h('div', { class: 'field' }, h('label', { for: id }, label), select), select];
}

function setOptions(select, options, value) {
  const sig = JSON.stringify(options);
  if (select.dataset.sig !== sig) {
    select.replaceChildren(...options.map((o) => h('option', { value: o.value }, o.label)));
    select.dataset.sig = sig;
  }
  select.value = String(value);
}

/** Model, group and time range selects shared by drift and performance. */
function controls(withVersion) {
  const refresh = () => tick();
  const [modelField, model] = selectField('sel-model', 'Model', (v) => { state.sel.model = v; state.sel.version = ''; refresh(); });
  const [versionField, version] = selectField('sel-version', 'Version', (v) => { state.sel.version = v; refresh(); });
  const [groupField, group] = selectField('sel-group', 'Group', (v) => { state.sel.group = v; refresh(); });
  const [rangeField, range] = selectField('sel-range', 'Time range', (v) => { state.sel.range = Number(v); refresh(); });
  setOptions(range, RANGES, state.sel.range);
  const form = h('form', { class: 'controls', onsubmit: (e) => e.preventDefault() },
    modelField, withVersion ? versionField : null, groupField, rangeField);
  return { form, model, version, group, range };
}

/** Fills the selects from the registry and groups; picks defaults. */
async function syncControls(c, signal, pickVersion) {
  const [models, groups] = await Promise.all([api('/api/v1/models', signal), api('/api/v1/groups', signal)]);
  const names = list(models).map((m) => m.name);
  if (!names.includes(state.sel.model)) { state.sel.model = names[0] || ''; state.sel.version = ''; }
  setOptions(c.model, names.length ? names.map((n) => ({ value: n, label: n })) : [{ value: '', label: 'no models' }], state.sel.model);
  const groupNames = list(groups).map((g) => g.name);
  if (state.sel.group && !groupNames.includes(state.sel.group)) state.sel.group = '';
  setOptions(c.group, [{ value: '', label: 'all groups' }, ...groupNames.map((g) => ({ value: g, label: g }))], state.sel.group);
  const model = list(models).find((m) => m.name === state.sel.model);
  const versions = list(model?.versions).filter(fin).sort((a, b) => b - a);
  if (pickVersion && !versions.includes(Number(state.sel.version))) {
    state.sel.version = versions.length ? String(await defaultVersion(state.sel.model, versions, signal)) : '';
  }
  if (c.version) {
    setOptions(c.version, versions.length ? versions.map((v) => ({ value: String(v), label: `v${v}` })) : [{ value: '', label: 'none' }], state.sel.version);
  }
  return { versions, step: (RANGES.find((r) => r.value === state.sel.range) || RANGES[1]).step };
}

/** The newest version some device serves, else the newest registered. */
async function defaultVersion(model, versions, signal) {
  const devices = await api('/api/v1/devices', signal).catch(() => []);
  const served = list(devices).map((d) => d?.reported?.active).filter((a) => a && a.model === model).map((a) => a.version);
  return versions.find((v) => served.includes(v)) ?? versions[0];
}

// ---------------------------------------------------------------------- fleet

const fleetView = {
  title: 'Fleet',
  mount(main) {
    const tile = (label, testid) => {
      const value = h('dd', { 'data-testid': testid }, DASH);
      return [h('div', { class: 'tile' }, h('dt', {}, label), value), value];
    };
    const [t1, devices] = tile('Devices', 'device-count');
    const [t2, online] = tile('Online', 'online-count');
    const [t3, groups] = tile('Groups', 'group-count');
    const [t4, alerts] = tile('Alerts firing', 'alert-count');
    const ctx = {
      tiles: { devices, online, groups, alerts },
      alertList: h('div', { 'data-testid': 'alerts' }),
      deviceTable: h('div'), groupTable: h('div'),
    };
    main.append(h('h1', { tabindex: '-1' }, 'Fleet'),
      h('dl', { class: 'tiles' }, t1, t2, t3, t4),
      section('Firing alerts', ctx.alertList),
      section('Devices', ctx.deviceTable),
      section('Groups', ctx.groupTable));
    return ctx;
  },
  async update(ctx, signal) {
    const [data, error] = await settle({
      devices: api('/api/v1/devices', signal),
      groups: api('/api/v1/groups', signal),
      alerts: api('/api/v1/alerts', signal),
    });
    const devices = data.devices && list(data.devices).filter(Boolean);
    const firing = data.alerts && list(data.alerts).filter((a) => a && a.status !== 'resolved');
    ctx.tiles.devices.textContent = devices ? String(devices.length) : DASH;
    ctx.tiles.online.textContent = devices ? String(devices.filter((d) => d.online === true).length) : DASH;
    ctx.tiles.groups.textContent = data.groups ? String(list(data.groups).length) : DASH;
    ctx.tiles.alerts.textContent = firing ? String(firing.length) : DASH;
    fill(ctx.alertList, firing ?? null, renderAlerts);
    if (devices) fill(ctx.deviceTable, devices, renderDevices);
    if (data.groups) fill(ctx.groupTable, list(data.groups), renderGroups);
    if (error) throw error;
  },
};

function renderAlerts(alerts) {
  if (!alerts) return h('p', { class: 'empty' }, 'Alerts are unavailable.');
  if (!alerts.length) return h('p', { class: 'empty ok' }, h('span', { 'aria-hidden': 'true' }, '✓ '), 'No alerts firing.');
  return h('ul', { class: 'alerts' }, alerts.map((a) => {
    const labels = a.labels && typeof a.labels === 'object' ? a.labels : {};
    const notes = a.annotations && typeof a.annotations === 'object' ? a.annotations : {};
    const severity = String(labels.severity || 'warning');
    const scope = Object.entries(labels).filter(([k]) => k !== 'alertname' && k !== 'severity');
    return h('li', { class: `alert ${severity === 'critical' ? 'critical' : 'warning'}` },
      h('div', { class: 'alert-head' }, badge(severity), h('strong', {}, labels.alertname || 'alert'),
        h('span', { class: 'muted' }, ' since ', timeEl(a.startsAt))),
      notes.summary ? h('p', {}, notes.summary) : null,
      notes.description ? h('p', { class: 'muted' }, notes.description) : null,
      scope.length ? h('p', { class: 'labels' }, scope.map(([k, v]) => h('code', {}, `${k}=${v}`))) : null);
  }));
}

function renderDevices(devices) {
  const rows = [...devices].sort((a, b) => `${a.group}/${a.id}`.localeCompare(`${b.group}/${b.id}`)).map((d) => {
    const r = d.reported && typeof d.reported === 'object' ? d.reported : null;
    const active = r?.active;
    const phase = r?.phase;
    return [
      h('span', { class: 'mono' }, d.id ?? DASH),
      d.group ?? DASH,
      badge(d.online ? 'online' : 'offline'),
      active ? `${active.model} v${active.version}` : h('span', { class: 'muted' }, r ? 'nothing' : 'never reported'),
      r?.shadow ? `${r.shadow.model} v${r.shadow.version}` : DASH,
      d.desired ?? DASH,
      phase ? [badge(phase), r.failure ? h('div', { class: 'muted small wrap' }, r.failure) : null] : DASH,
      r ? [r.backend ?? DASH, r.adapter ? h('div', { class: 'muted small' }, r.adapter) : null] : DASH,
      timeEl(d.last_seen),
    ];
  });
  return table('Devices', ['Device', 'Group', 'Status', 'Serving', 'Shadow', 'Assigned', 'Update phase', 'Backend', 'Last seen'],
    rows, 'No devices registered yet.');
}

function renderGroups(groups) {
  return table('Groups', ['Group', 'Devices', 'Online', 'Target'],
    groups.filter(Boolean).map((g) => [g.name ?? DASH, num(list(g.devices).length), num(g.online), g.target ?? DASH]),
    'No groups yet.');
}

// --------------------------------------------------------------------- models

const modelsView = {
  title: 'Models',
  mount(main) {
    const ctx = { region: h('div') };
    main.append(h('h1', { tabindex: '-1' }, 'Model versions'),
      h('p', { class: 'muted' }, 'Metrics and lineage from each signed manifest; live numbers from the fleet over the last 5 minutes.'),
      ctx.region);
    return ctx;
  },
  async update(ctx, signal) {
    const models = list(await api('/api/v1/models', signal)).filter((m) => m && m.name);
    const data = await Promise.all(models.map(async (m) => {
      const versions = list(await api(`/api/v1/models/${encodeURIComponent(m.name)}/versions`, signal))
        .filter(Boolean).sort((a, b) => b.version - a.version);
      const live = await Promise.all(versions.map((v) =>
        api(`/api/v1/telemetry?${query({ model: m.name, version: v.version, since_seconds: 300 })}`, signal)));
      return { model: m, versions: versions.map((v, i) => ({ ...v, live: live[i] })) };
    }));
    fill(ctx.region, data, (all) => (all.length ? all.map(renderModel) : h('p', { class: 'empty' }, 'No models registered yet.')));
  },
};

function renderModel({ model, versions }) {
  const aliases = Object.entries(model.aliases || {});
  return section(`Model ${model.name}`,
    aliases.length ? h('p', { class: 'muted' }, 'Aliases: ', aliases.map(([a, v]) => h('code', {}, `${a} → v${v}`))) : null,
    h('div', { class: 'cards' }, versions.map((v) => renderVersion(v))));
}

function metricValue(key, value) {
  if (Array.isArray(value)) return value.every(fin) ? `${value.length} values, last ${num(value[value.length - 1])}` : `${value.length} rows`;
  if (fin(value) && /accuracy|f1|rate|fraction|precision|recall/.test(key) && value >= 0 && value <= 1) return pct(value);
  if (value && typeof value === 'object') return Object.entries(value).map(([k, v]) => `${words(k)} ${fin(v) ? num(v) : v}`).join(' · ');
  return fin(value) ? num(value) : String(value ?? DASH);
}

function pairs(object, skip = []) {
  return Object.entries(object && typeof object === 'object' ? object : {})
    .filter(([k]) => !skip.includes(k))
    .map(([k, v]) => h('div', { class: v && typeof v === 'object' && !Array.isArray(v) ? 'wide' : null }, h('dt', {}, words(k)),
      h('dd', { class: /sha256|revision/.test(k) ? 'mono' : null, title: typeof v === 'string' && v.length > 16 ? v : null },
        /sha256/.test(k) ? short(v) : metricValue(k, v))));
}

function renderVersion(v) {
  const live = v.live || {};
  const drift = new Map(list(live.features).map((f) => [f.name, f]));
  const liveRows = [['Windows', num(live.windows)], ['Devices', num(live.devices)], ['Requests', num(live.requests)],
    ['Error rate', pct(live.error_rate, 2)], ['Latency p50', ms(live.latency_p50)], ['Latency p99', ms(live.latency_p99)],
    ['Accuracy', pct(live.accuracy)], ['Drifted features', list(live.drifted_features).join(', ') || 'none']];
  const classes = Object.entries(v.class_frequencies || {});
  return h('article', { class: 'card' },
    h('h3', {}, `v${v.version}`, list(v.aliases).map((a) => h('span', { class: 'tag' }, a))),
    h('p', { class: 'muted small' }, 'trained ', timeEl(v.created_at), ' · registered ', timeEl(v.registered_at),
      ' · signed by ', h('code', {}, v.signer_key_id ?? DASH)),
    h('h4', {}, 'Metrics'), h('dl', { class: 'pairs' }, pairs(v.metrics, ['confusion_matrix'])),
    h('h4', {}, 'Lineage'), h('dl', { class: 'pairs' }, pairs(v.lineage, ['metrics']),
      h('div', {}, h('dt', {}, 'bundle sha256'), h('dd', { class: 'mono', title: v.bundle_sha256 }, short(v.bundle_sha256)))),
    h('h4', {}, 'Fleet, last 5 minutes'),
    live.windows ? h('dl', { class: 'pairs' }, liveRows.map(([k, val]) => h('div', {}, h('dt', {}, k), h('dd', {}, val))))
      : h('p', { class: 'empty' }, 'No telemetry in the last 5 minutes.'),
    h('details', { 'data-key': `profile-${v.model}-${v.version}`, open: true },
      h('summary', {}, `Reference profile: ${list(v.profile).length} features`),
      table(`Profile of v${v.version}`, ['Feature', 'Bins', 'Low', 'High', 'PSI now'],
        list(v.profile).map((f) => [f.name, num(f.bins), num(f.low), num(f.high), num(drift.get(f.name)?.psi)])),
      classes.length ? h('p', { class: 'small' }, 'Class frequencies: ', classes.map(([k, f]) => `${k} ${pct(f)}`).join(' · ')) : null));
}

// ------------------------------------------------------------------- rollouts

const rolloutsView = {
  title: 'Rollouts',
  mount(main) {
    const ctx = { region: h('div') };
    main.append(h('h1', { tabindex: '-1' }, 'Rollouts'), ctx.region);
    return ctx;
  },
  async update(ctx, signal) {
    const rollouts = list(await api('/api/v1/rollouts', signal)).filter((r) => r && r.id);
    fill(ctx.region, rollouts, (all) => (all.length ? h('div', { class: 'cards wide' }, all.map(renderRollout))
      : h('p', { class: 'empty' }, 'No rollouts yet.')));
  },
};

function stageStatus(r, i, result) {
  const active = fin(r.stage) ? r.stage : 0;
  if (r.state === 'completed' || i < active) return ['done', 'passed'];
  if (i > active) return ['pending', 'pending'];
  if (result?.verdict === 'fail') return ['failed', 'failed'];
  if (r.state === 'rolled_back') return ['failed', 'halted'];
  return ['current', r.state === 'paused' ? 'current, paused' : 'current'];
}

function renderRollout(r) {
  const stages = list(r.stages);
  const results = list(r.stage_results).filter(Boolean);
  const stageNo = Math.min((fin(r.stage) ? r.stage : 0) + 1, Math.max(stages.length, 1));
  const judged = [...results].reverse().find((s) => list(s.gates).length > 0);
  const audit = list(r.audit).filter(Boolean);
  const live = r.state === 'running' || r.state === 'paused';
  return h('article', { class: `card rollout ${live ? 'live' : ''}`, 'aria-labelledby': `ro-${r.id}` },
    h('div', { class: 'card-head' },
      h('h2', { id: `ro-${r.id}` }, `${r.model} v${r.version}`, h('span', { class: 'muted' }, ` to group ${r.group}`)),
      badge(r.state || 'unknown')),
    h('p', { class: 'muted small' }, h('code', {}, r.id), ` · from v${r.baseline_version ?? DASH} · started `,
      timeEl(r.started_at), ` · bake ${num(r.bake_seconds)} s · on failure: ${words(r.on_failure ?? DASH)}`, r.shadow ? ' · shadow first stage' : ''),
    h('p', { class: 'stage-text', 'data-testid': 'rollout-stage' }, `Stage ${stageNo} of ${stages.length}`),
    r.reason ? h('p', { class: 'callout' }, h('strong', {}, 'Reason: '), r.reason) : null,
    h('ol', { class: 'stages' }, stages.map((percent, i) => {
      const result = results.find((s) => s.stage === i);
      const [status, text] = stageStatus(r, i, result);
      return h('li', { class: `stage ${status}`, 'aria-current': status === 'current' ? 'step' : null },
        h('div', { class: 'stage-label' }, h('strong', {}, `Stage ${i + 1}`), ` · ${percent}% of group`,
          h('span', { class: 'stage-status' }, ` · ${text}`),
          result ? h('span', { class: 'muted' }, ` · ${plural(list(result.devices).length, 'device')}`) : null),
        progressBar({ percent, status, label: `Stage ${i + 1}: ${percent}% of the group, ${text}` }));
    })),
    judged ? [h('h3', {}, `Gates, stage ${judged.stage + 1}`, ' ', judged.verdict ? badge(judged.verdict) : h('span', { class: 'muted' }, '(baking)')),
      table(`Gates of stage ${judged.stage + 1}`, ['Gate', 'Verdict', 'Numbers', 'Detail'], list(judged.gates).map((g) => [
        words(g.name), badge(g.verdict ?? 'unknown', { 'data-testid': 'gate-verdict' }),
        h('dl', { class: 'numbers' }, Object.entries(g.numbers || {}).map(([k, v]) =>
          h('div', {}, h('dt', {}, words(k)), h('dd', {}, num(v))))),
        h('span', { class: 'wrap' }, g.detail ?? ''),
      ]))]
      : h('p', { class: 'muted' }, live ? 'No gate judged yet: the stage is baking.' : 'No gate was judged.'),
    h('details', { 'data-key': `audit-${r.id}`, open: live },
      h('summary', {}, `Timeline (${audit.length} events)`),
      h('ol', { class: 'timeline' }, audit.map((a) => h('li', {},
        timeEl(a.at), h('strong', {}, ` ${words(a.event ?? '')}`), a.detail ? h('span', {}, ` ${a.detail}`) : null)))));
}

// ---------------------------------------------------------------------- drift

/** Most features drawn in the drift chart. */
const MAX_DRIFT_LINES = 8;

const driftView = {
  title: 'Drift',
  mount(main) {
    const c = controls(true);
    const ctx = { c, chart: h('div', { 'data-testid': 'drift-chart', class: 'chart-box' }), table: h('div') };
    main.append(h('h1', { tabindex: '-1' }, 'Feature drift'), c.form,
      section('PSI per feature over time', h('p', { class: 'muted small' }, `PSI above ${PSI_THRESHOLD} counts as drifted.`), ctx.chart),
      section('Current drift, last 5 minutes', ctx.table));
    return ctx;
  },
  async update(ctx, signal) {
    const { step } = await syncControls(ctx.c, signal, true);
    const { model, version, group, range } = state.sel;
    if (!model || !version) {
      fill(ctx.chart, 'none', () => h('p', { class: 'empty' }, 'no data yet'));
      fill(ctx.table, 'none', () => h('p', { class: 'empty' }, 'No model version to show.'));
      return;
    }
    const [series, summary] = await Promise.all([
      api(`/api/v1/telemetry/series?${query({ model, version, group, since_seconds: range, step_seconds: step })}`, signal),
      api(`/api/v1/telemetry?${query({ model, version, group, since_seconds: 300 })}`, signal),
    ]);
    const points = list(series?.points).filter((p) => p && fin(p.at));
    const names = [...new Set(points.flatMap((p) => list(p.features).map((f) => f?.name)).filter(Boolean))];
    // Many-feature models would draw a tangle: chart the features that drifted most.
    const peak = (line) => Math.max(0, ...line.points.map(([, psi]) => (fin(psi) ? psi : 0)));
    const lines = names.map((name) => ({
      name, points: points.map((p) => [p.at, list(p.features).find((f) => f?.name === name)?.psi ?? null]),
    })).sort((a, b) => peak(b) - peak(a)).slice(0, MAX_DRIFT_LINES);
    const shown = names.length > lines.length ? ` (the ${lines.length} of ${names.length} features with the highest PSI)` : '';
    fill(ctx.chart, { lines, w: chartWidth(ctx.chart) }, ({ lines: l, w }) => lineChart({
      title: `PSI per feature, ${model} v${version}${group ? ` in ${group}` : ''}${shown}`, series: l, width: w,
      threshold: { value: PSI_THRESHOLD, label: `drift threshold ${PSI_THRESHOLD}` },
    }));
    fill(ctx.table, list(summary?.features), (features) => table(`Drift per feature of ${model} v${version}`,
      ['Feature', 'PSI', 'KS statistic (median)', 'Windows failing KS', 'Drifted'],
      features.filter(Boolean).sort((a, b) => (b.drifted - a.drifted) || ((b.psi ?? -1) - (a.psi ?? -1)))
        .map((f) => [f.name ?? DASH, num(f.psi), num(f.ks_statistic), pct(f.ks_drifted_share, 0),
        badge(f.drifted ? 'drifted' : fin(f.psi) ? 'stable' : 'no_data')]),
      'No inputs seen in the last 5 minutes.'));
  },
};

// ---------------------------------------------------------------- performance

const performanceView = {
  title: 'Performance',
  mount(main) {
    const c = controls(false);
    const ctx = {
      c, latency: h('div', { 'data-testid': 'latency-chart', class: 'chart-box' }),
      errors: h('div', { 'data-testid': 'error-chart', class: 'chart-box' }), totals: h('div'),
    };
    main.append(h('h1', { tabindex: '-1' }, 'Performance'), c.form,
      section('Latency per version', ctx.latency), section('Error rate per version', ctx.errors),
      section('Totals over the range', ctx.totals));
    return ctx;
  },
  async update(ctx, signal) {
    const { versions, step } = await syncControls(ctx.c, signal, false);
    const { model, group, range } = state.sel;
    const shown = versions.slice(0, 4);
    const all = await Promise.all(shown.map((version) =>
      api(`/api/v1/telemetry/series?${query({ model, version, group, since_seconds: range, step_seconds: step })}`, signal)));
    const per = shown.map((version, i) => ({ version, points: list(all[i]?.points).filter((p) => p && fin(p.at)) }))
      .filter((v) => v.points.length);
    const w = chartWidth(ctx.latency);
    const title = (what) => `${what}, ${model || 'no model'}${group ? ` in ${group}` : ''}`;
    fill(ctx.latency, { per, w, k: 'lat' }, () => lineChart({
      title: title('Latency p50 and p99'), unit: 'milliseconds', width: w, format: (v) => `${num(v)} ms`,
      series: per.flatMap(({ version, points }, i) => [
        { name: `v${version} p50`, color: i, dash: 0, points: points.map((p) => [p.at, fin(p.latency_p50) ? p.latency_p50 * 1000 : null]) },
        { name: `v${version} p99`, color: i, dash: 1, points: points.map((p) => [p.at, fin(p.latency_p99) ? p.latency_p99 * 1000 : null]) },
      ]),
    }));
    fill(ctx.errors, { per, w, k: 'err' }, () => lineChart({
      title: title('Error rate'), unit: 'percent', width: w, format: (v) => `${num(v)}%`,
      series: per.map(({ version, points }) => ({
        name: `v${version}`, points: points.map((p) => [p.at, fin(p.error_rate) ? p.error_rate * 100 : null]),
      })),
    }));
    fill(ctx.totals, per, (rows) => table('Totals per version', ['Version', 'Requests', 'Errors', 'Error rate', 'Windows'],
      rows.map(({ version, points }) => {
        const sum = (k) => points.reduce((acc, p) => acc + (fin(p[k]) ? p[k] : 0), 0);
        return [`v${version}`, num(sum('requests')), num(sum('errors')),
          sum('requests') ? pct(sum('errors') / sum('requests'), 2) : DASH, num(sum('windows'))];
      }), 'no data yet'));
  },
};

// --------------------------------------------------------- routing and polling

const VIEWS = {
  fleet: fleetView, models: modelsView, rollouts: rolloutsView, drift: driftView, performance: performanceView,
  training: trainingView({ api, fill, table, badge, section, timeEl, pairs, list, fin, pct, words, DASH, refresh: () => tick() }),
};
const main = document.getElementById('main');
const banner = document.getElementById('banner');
const updated = document.getElementById('updated');
let lastOk = null;

function route(moveFocus) {
  const name = location.hash.replace(/^#/, '');
  const view = Object.prototype.hasOwnProperty.call(VIEWS, name) ? name : 'fleet';
  for (const link of document.querySelectorAll('nav a[data-view]')) {
    if (link.dataset.view === view) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (view === state.view) return;
  state.controller?.abort();
  state.view = view;
  state.sigs = new WeakMap();
  main.replaceChildren();
  state.ctx = VIEWS[view].mount(main);
  document.title = `${VIEWS[view].title} · Edgewise control plane`;
  if (moveFocus) main.querySelector('h1')?.focus();
  tick();
}

async function tick() {
  clearTimeout(state.timer);
  const gen = ++state.gen;
  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  if (!document.hidden) {
    try {
      await VIEWS[state.view].update(state.ctx, controller.signal);
      if (gen === state.gen) connected();
    } catch (err) {
      if (gen === state.gen && err?.name !== 'AbortError') disconnected(err);
    }
  }
  if (gen === state.gen) state.timer = setTimeout(tick, POLL_MS);
}

function connected() {
  lastOk = Date.now() / 1000;
  updated.textContent = `updated ${clockSeconds(lastOk)}`;
  updated.classList.remove('stale');
  banner.hidden = true;
}

/** Shows the sign-in form in the banner; a token entered there is kept for this tab. */
function askForToken(err) {
  if (banner.querySelector('form')) return;
  const input = h('input', { type: 'password', id: 'token', autocomplete: 'off', placeholder: 'ewt_…', required: true });
  const form = h('form', { class: 'sign-in' },
    h('label', { for: 'token' }, storedToken() ? 'The token was refused. API token: ' : 'API token: '),
    input, h('button', { type: 'submit', class: 'btn' }, 'Sign in'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    banner.hidden = true;
    banner.replaceChildren();
    showIdentity();
    tick();
  });
  banner.replaceChildren(h('p', {}, `${err.message}. Any role can read the dashboard; `,
    h('code', {}, 'edgewise token create NAME --role viewer'), ' makes a read-only one.'), form);
  banner.hidden = false;
  input.focus();
}

/** Shows whose token is in use, with a way to sign out. */
async function showIdentity() {
  const who = document.getElementById('who');
  if (!who) return;
  try {
    const me = await api('/api/v1/whoami');
    const out = h('button', { type: 'button', class: 'btn link' }, 'sign out');
    out.addEventListener('click', () => { sessionStorage.removeItem(TOKEN_KEY); who.replaceChildren(); tick(); });
    who.replaceChildren(`${me.name} (${me.role}) `, out);
  } catch {
    who.replaceChildren();
  }
}

function disconnected(err) {
  if (err instanceof SignInNeeded) {
    askForToken(err);
    updated.textContent = 'signed out';
    return;
  }
  const http = err instanceof HttpError;
  banner.replaceChildren(h('strong', {}, http ? 'Request failed: ' : 'Connection lost: '),
    http ? err.message : 'cannot reach the control plane',
    `. Retrying every ${POLL_MS / 1000} s`, lastOk ? `; figures shown are from ${clockSeconds(lastOk)}.` : '.');
  banner.hidden = false;
  updated.classList.add('stale');
  if (!lastOk) updated.textContent = 'not connected';
}

document.querySelector('.skip-link')?.addEventListener('click', (e) => { e.preventDefault(); main.focus(); });
window.addEventListener('hashchange', () => route(true));
document.addEventListener('visibilitychange', () => { if (!document.hidden) tick(); });
let resizeTimer = null;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => { state.sigs = new WeakMap(); tick(); }, 250);
});
route(false);
showIdentity();
