// The dashboard's Training view: training jobs, newest first, and the selected job's
// data, metrics, held-out comparison with its parent, rollouts and live log.
//
// app.js hands in its helpers (`kit`) so that both modules share one set of them.
// Retraining policies are not fetched: a model without one answers 404, which the
// browser reports as a console error; jobs a policy started read "retraining policy".

import { h } from './charts.js';

/** The view object for app.js's VIEWS map. */
export function trainingView(kit) {
  const { api, fill, table, badge, section, timeEl, pairs, list, fin, pct, words, DASH, refresh } = kit;

  // The job picked by a person; the newest job when null. Kept across view switches.
  let picked = null;

  const origin = (o) => (o === 'retraining-policy' ? 'retraining policy' : o === 'api' ? 'API' : o ?? DASH);
  const v = (n) => (fin(n) ? `v${n}` : DASH);

  function versionCell(job) {
    return [v(job.version), fin(job.parent_version)
      ? [h('span', { class: 'muted', 'aria-hidden': 'true' }, ' ← '), h('span', { class: 'visually-hidden' }, ' from '),
        h('span', { class: 'muted' }, v(job.parent_version))] : null];
  }

  function select(id) {
    picked = id;
    refresh();
  }

  function renderJobs({ jobs, selected }) {
    const wrap = table('Training jobs', ['Job', 'Model', 'State', 'Version', 'Origin', 'Registered', 'Created', 'Log'],
      jobs.map((j) => [
        h('span', { class: 'mono' }, j.id),
        j.request?.model ?? DASH,
        badge(j.state || 'unknown'),
        versionCell(j),
        origin(j.origin),
        j.registered ? 'yes' : 'no',
        timeEl(j.created_at),
        h('button', {
          type: 'button', class: 'btn', 'data-job': j.id, 'aria-current': j.id === selected ? 'true' : null,
          onclick: (e) => { e.stopPropagation(); select(j.id); },
        }, j.id === selected ? [h('span', { class: 'visually-hidden' }, 'log '), 'shown', h('span', { class: 'visually-hidden' }, ` for job ${j.id}`)]
          : ['show log', h('span', { class: 'visually-hidden' }, ` of job ${j.id}`)]),
      ]), 'No training jobs yet. Submit one with edgewise train submit, or set a retraining policy.');
    // The button is the keyboard path; a click anywhere on the row does the same.
    wrap.querySelectorAll?.('tbody tr').forEach((tr, i) => {
      tr.classList.add('clickable');
      if (jobs[i].id === selected) tr.classList.add('selected');
      tr.addEventListener('click', () => select(jobs[i].id));
    });
    return wrap;
  }

  function bar(label, value, tone) {
    const percent = fin(value) ? Math.max(0, Math.min(100, value * 100)) : 0;
    return h('div', { class: 'bar-row' },
      h('span', { class: 'bar-label' }, label),
      h('span', { class: 'bar-track', 'aria-hidden': 'true' }, h('span', { class: `bar-fill ${tone}`, style: `width: ${percent}%` })),
      h('span', { class: 'bar-value' }, pct(value)));
  }

  function renderEvaluation(job) {
    const e = job.evaluation;
    const plan = job.request?.evaluation;
    if (!e || typeof e !== 'object') {
      return h('p', { class: 'empty' }, plan ? (job.state === 'succeeded' || job.state === 'failed'
        ? 'No comparison was made.' : 'The comparison runs when training ends.') : 'No comparison with the parent was asked for.');
    }
    const gain = fin(e.candidate_accuracy) && fin(e.parent_accuracy) ? e.candidate_accuracy - e.parent_accuracy : null;
    const points = (x) => `${x >= 0 ? '+' : '−'}${Math.abs(x * 100).toFixed(1)} points`;
    return [
      h('div', { class: 'bars', role: 'group', 'aria-label': 'Held-out accuracy' },
        bar(`candidate ${v(job.version)}`, e.candidate_accuracy, e.better ? 'good' : 'muted'),
        bar(`parent ${v(e.parent_version)}`, e.parent_accuracy, 'muted')),
      h('p', { class: 'small' }, badge(e.better ? 'better' : 'not_better'),
        ` on ${fin(e.examples) ? e.examples.toLocaleString('en') : DASH} held-out recent rows`,
        gain === null ? '' : `: ${points(gain)}`, fin(plan?.margin) ? `, margin needed ${points(plan.margin)}` : ''),
    ];
  }

  function renderDetail({ job, rollouts }) {
    if (!job) return null;
    const started = Date.parse(job.started_at ?? '');
    const finished = Date.parse(job.finished_at ?? '');
    const took = Number.isNaN(started) || Number.isNaN(finished) ? null : Math.max(0, (finished - started) / 1000);
    const settings = Object.fromEntries(Object.entries(job.request?.hyperparameters || {}).filter(([, x]) => x !== null && x !== undefined));
    const ids = list(job.rollouts).filter((id) => typeof id === 'string');
    return h('section', { class: 'panel', 'aria-labelledby': 'job-title' },
      h('div', { class: 'card-head' },
        h('h2', { id: 'job-title' }, `Job ${job.id}: ${job.request?.model ?? DASH} `, versionCell(job)),
        badge(job.state || 'unknown')),
      h('p', { class: 'muted small' }, [
        job.origin ? `started by the ${origin(job.origin)}` : null,
        job.request?.executor ? `${words(job.request.executor)} executor` : null,
        job.created_at ? ['created ', timeEl(job.created_at)] : null,
        job.started_at ? ['started ', timeEl(job.started_at)] : null,
        job.finished_at ? ['finished ', timeEl(job.finished_at)] : null,
        took === null ? null : took < 1 ? 'ran under 1 s' : `ran ${Math.round(took).toLocaleString('en')} s`,
        job.registered ? 'registered' : 'not registered',
      ].filter(Boolean).flatMap((part, i) => (i ? [' · ', part] : [part]))),
      job.error ? h('p', { class: 'callout bad' }, h('strong', {}, 'Error: '), String(job.error)) : null,
      h('h3', {}, 'Held-out accuracy, candidate vs parent'), renderEvaluation(job),
      h('h3', {}, 'Rollouts'),
      ids.length ? h('ul', { class: 'inline-list' }, ids.map((id) => h('li', {},
        h('a', { href: '#rollouts' }, id), ' ', rollouts.has(id) ? badge(rollouts.get(id)) : null)))
        : h('p', { class: 'empty' }, job.registered ? 'No rollout started for this version.' : 'None.'),
      h('h3', {}, 'Data'),
      job.data && typeof job.data === 'object' ? h('dl', { class: 'pairs' }, pairs(job.data))
        : h('p', { class: 'empty' }, 'Not prepared yet.'),
      h('h3', {}, 'Metrics'),
      job.metrics && typeof job.metrics === 'object' && Object.keys(job.metrics).length
        ? h('dl', { class: 'pairs' }, pairs(job.metrics, ['confusion_matrix'])) : h('p', { class: 'empty' }, 'None yet.'),
      Object.keys(settings).length ? [h('h3', {}, 'Training settings'), h('dl', { class: 'pairs' }, pairs(settings))] : null);
  }

  /** A fresh, empty log for job `id`. */
  function newLog(ctx, id) {
    const pre = h('pre', {
      class: 'log', 'data-testid': 'job-log', role: 'log', 'aria-live': 'polite', tabindex: '0',
      'aria-label': id ? `Log of job ${id}` : 'Job log',
    });
    const status = h('p', { class: 'muted small' }, id ? 'Reading the log…' : 'No job selected.');
    ctx.logBox.replaceChildren(status, pre);
    ctx.log = { id, next: 0, lines: 0, done: !id, pre, status };
  }

  /** Appends the lines after `next` to the log; stops once the job ended and no lines came. */
  async function followLog(ctx, signal) {
    const log = ctx.log;
    if (log.done) return;
    const from = log.next;
    const slice = await api(`/api/v1/training-jobs/${encodeURIComponent(log.id)}/logs?from=${from}`, signal);
    if (ctx.log !== log || log.next !== from) return; // a newer poll got there first
    const lines = list(slice?.lines).map((l) => String(l ?? ''));
    if (lines.length) {
      const { pre } = log;
      const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
      pre.append(lines.map((l) => `${l}\n`).join(''));
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
    log.lines += lines.length;
    log.next = fin(slice?.next) ? slice.next : from + lines.length;
    log.done = slice?.finished === true && !lines.length;
    const n = `${log.lines.toLocaleString('en')} line${log.lines === 1 ? '' : 's'}`;
    log.status.textContent = slice?.finished === true ? `The job ended (${words(slice.state ?? 'finished')}): ${n}.`
      : `Following the log: ${n} so far.`;
  }

  return {
    title: 'Training',
    mount(main) {
      const ctx = { jobs: h('div'), detail: h('div', { 'data-testid': 'job-detail' }), logBox: h('div'), log: null };
      main.append(h('h1', { tabindex: '-1' }, 'Training'),
        h('p', { class: 'muted' }, 'Training jobs, newest first. Jobs a retraining policy started read “retraining policy”; ',
          'show a policy with ', h('code', {}, 'edgewise retraining show MODEL'), '.'),
        section('Training jobs', ctx.jobs), ctx.detail, section('Job log', ctx.logBox));
      newLog(ctx, null);
      return ctx;
    },
    async update(ctx, signal) {
      const jobs = list(await api('/api/v1/training-jobs', signal)).filter((j) => j && typeof j.id === 'string');
      const job = jobs.find((j) => j.id === picked) || jobs[0] || null;
      const selected = job ? job.id : null;
      if (ctx.log.id !== selected) newLog(ctx, selected);
      const focused = document.activeElement?.dataset?.job;
      fill(ctx.jobs, { jobs, selected }, renderJobs);
      if (focused && document.activeElement?.dataset?.job !== focused) {
        ctx.jobs.querySelector(`button[data-job="${CSS.escape(focused)}"]`)?.focus();
      }
      const wantRollouts = list(job?.rollouts).length > 0;
      const [all] = await Promise.all([
        wantRollouts ? api('/api/v1/rollouts', signal).catch((err) => { if (err?.name === 'AbortError') throw err; return []; }) : [],
        followLog(ctx, signal),
      ]);
      const states = list(all).filter((r) => r && list(job?.rollouts).includes(r.id)).map((r) => [r.id, r.state || 'unknown']);
      fill(ctx.detail, { job, states }, (d) => renderDetail({ job: d.job, rollouts: new Map(d.states) }));
    },
  };
}
