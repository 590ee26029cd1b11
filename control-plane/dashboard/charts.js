// Small hand-written SVG charts and DOM helpers for the Edgewise dashboard.
// No dependencies: every string goes into the page through textContent or
// setAttribute, never through innerHTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Builds an HTML element: h('a', {href: '#x', class: 'y'}, 'text', child, ...). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** Builds an SVG element, like h(). */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Escapes text for HTML, for the rare place a string is assembled by hand. */
export function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) =>
    ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

const finite = (v) => typeof v === 'number' && Number.isFinite(v);

/** Rounds a span to 1, 2 or 5 times a power of ten. */
function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

const pad2 = (n) => String(n).padStart(2, '0');
/** Unix seconds to local HH:MM. */
export function clock(seconds) {
  const d = new Date(seconds * 1000);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/** Unix seconds to local HH:MM:SS. */
export function clockSeconds(seconds) {
  const d = new Date(seconds * 1000);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

const DASHES = ['', '6 3', '2 3', '8 3 2 3', '1 2', '10 4'];
const TIME_STEPS = [15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/**
 * A line chart with several series.
 *
 * options: {
 *   title: string (used for the aria-label and the data table caption),
 *   series: [{ name, points: [[x (Unix seconds), y (number|null)], ...], color?, dash? }]
 *     (color and dash: optional palette and dash pattern indexes, default the series index),
 *   threshold: optional { value, label },
 *   format: y value -> text (axis, legend, table), default 3 significant digits,
 *   unit: text added to the aria-label, e.g. "ms",
 *   width, height: pixels (the SVG also scales down with CSS),
 *   yMin, yMax: optional fixed bounds (the data may still widen them),
 * }
 * Each series path gets class "series" and data-points with its finite point count.
 */
export function lineChart(options) {
  const { title, threshold = null, unit = '' } = options;
  const format = options.format || ((v) => Number(v.toPrecision(3)).toString());
  const series = (options.series || []).map((one, index) => ({
    name: String(one.name ?? `series ${index + 1}`),
    points: (one.points || []).filter((p) => Array.isArray(p) && finite(p[0])),
    index,
    color: `c${(one.color ?? index) % 6}`,
    dash: DASHES[(one.dash ?? index) % DASHES.length] || null,
  }));
  const figure = h('figure', { class: 'chart' });
  const values = series.flatMap((one) => one.points.map((p) => p[1]).filter(finite));
  if (values.length === 0) {
    figure.append(h('p', { class: 'empty', role: 'status' }, 'no data yet'));
    return figure;
  }

  const width = Math.max(280, Math.round(options.width || 640));
  const height = Math.max(160, Math.round(options.height || 220));
  const margin = { top: 12, right: 14, bottom: 28, left: 52 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;

  const xs = series.flatMap((one) => one.points.filter((p) => finite(p[1])).map((p) => p[0]));
  let x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  if (x1 === x0) { x0 -= 60; x1 += 60; }
  let y0 = Math.min(...values, options.yMin ?? Infinity);
  let y1 = Math.max(...values, options.yMax ?? -Infinity);
  if (threshold && finite(threshold.value)) {
    y0 = Math.min(y0, threshold.value);
    y1 = Math.max(y1, threshold.value * 1.15);
  }
  if (y0 > 0 && options.yMin === undefined) y0 = 0;
  if (y1 === y0) y1 = y0 + (Math.abs(y0) || 1);
  const yStep = niceStep(y1 - y0, 4);
  y0 = Math.floor(y0 / yStep + 1e-9) * yStep;
  y1 = Math.ceil(y1 / yStep - 1e-9) * yStep;
  const yTicks = [];
  for (let i = 0; i <= Math.round((y1 - y0) / yStep); i += 1) yTicks.push(Number((y0 + i * yStep).toPrecision(12)));

  const px = (x) => margin.left + ((x - x0) / (x1 - x0)) * plotW;
  const py = (y) => margin.top + plotH - ((y - y0) / (y1 - y0)) * plotH;

  const label = `${title}: line chart of ${series.length} series over time` +
    (unit ? `, in ${unit}` : '') +
    (threshold ? `, threshold ${format(threshold.value)}` : '') +
    '. Latest: ' + series.map((one) => {
      const last = [...one.points].reverse().find((p) => finite(p[1]));
      return `${one.name} ${last ? format(last[1]) : 'no data'}`;
    }).join(', ') + '.';
  const svg = s('svg', {
    role: 'img', 'aria-label': label, width, height,
    viewBox: `0 0 ${width} ${height}`, class: 'chart-svg',
  });
  svg.append(s('title', {}, label));

  const axes = s('g', { class: 'axes', 'aria-hidden': 'true' });
  for (const v of yTicks) {
    const y = py(v);
    axes.append(s('line', { class: 'grid', x1: margin.left, x2: width - margin.right, y1: y, y2: y }));
    axes.append(s('text', { x: margin.left - 6, y: y + 4, 'text-anchor': 'end' }, format(v)));
  }
  const xTickCount = Math.max(3, Math.min(7, Math.floor(plotW / 80)));
  const xStep = TIME_STEPS.find((step) => (x1 - x0) / step <= xTickCount) || 86400;
  for (let x = Math.ceil(x0 / xStep) * xStep; x <= x1; x += xStep) {
    axes.append(s('line', { class: 'tick', x1: px(x), x2: px(x), y1: margin.top + plotH, y2: margin.top + plotH + 4 }));
    const nearEnd = px(x) > width - margin.right - 16;
    axes.append(s('text', { x: nearEnd ? width - 2 : px(x), y: height - 8, 'text-anchor': nearEnd ? 'end' : 'middle' }, clock(x)));
  }
  axes.append(s('line', { class: 'axis', x1: margin.left, x2: width - margin.right, y1: margin.top + plotH, y2: margin.top + plotH }));
  axes.append(s('line', { class: 'axis', x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + plotH }));
  svg.append(axes);

  if (threshold && finite(threshold.value)) {
    const y = py(threshold.value);
    svg.append(s('g', { class: 'threshold', 'aria-hidden': 'true' },
      s('line', { x1: margin.left, x2: width - margin.right, y1: y, y2: y }),
      s('text', { x: width - margin.right - 4, y: y - 5, 'text-anchor': 'end' },
        threshold.label || `threshold ${format(threshold.value)}`)));
  }

  for (const one of series) {
    let d = '';
    let pen = false;
    let count = 0;
    const group = s('g', { class: `series-group ${one.color}` });
    for (const [x, y] of one.points) {
      if (!finite(y)) { pen = false; continue; }
      d += `${pen ? 'L' : 'M'}${px(x).toFixed(1)},${py(y).toFixed(1)}`;
      pen = true;
      count += 1;
    }
    group.append(s('path', {
      class: 'series', d: d || 'M0,0', 'data-points': count, 'data-name': one.name,
      'stroke-dasharray': one.dash, fill: 'none',
    }));
    if (count <= 40) {
      for (const [x, y] of one.points) {
        if (finite(y)) group.append(s('circle', { class: 'dot', cx: px(x), cy: py(y), r: 2.5 }));
      }
    }
    svg.append(group);
  }
  figure.append(svg);

  const legend = h('ul', { class: 'legend' });
  for (const one of series) {
    const last = [...one.points].reverse().find((p) => finite(p[1]));
    legend.append(h('li', { class: one.color },
      s('svg', { width: 26, height: 10, 'aria-hidden': 'true', class: 'swatch' },
        s('line', { x1: 1, x2: 25, y1: 5, y2: 5, 'stroke-dasharray': one.dash })),
      h('span', {}, one.name),
      h('span', { class: 'muted' }, last ? ` ${format(last[1])}` : ' no data')));
  }
  if (threshold && finite(threshold.value)) {
    legend.append(h('li', { class: 'threshold-key' },
      s('svg', { width: 26, height: 10, 'aria-hidden': 'true', class: 'swatch' },
        s('line', { x1: 1, x2: 25, y1: 5, y2: 5 })),
      h('span', {}, threshold.label || `threshold ${format(threshold.value)}`)));
  }
  figure.append(legend);
  figure.append(dataTable(title, series, format));
  return figure;
}

/** The chart's numbers as a table inside <details>, for screen readers and copying. */
function dataTable(title, series, format) {
  const times = [...new Set(series.flatMap((one) => one.points.map((p) => p[0])))].sort((a, b) => a - b);
  const byName = series.map((one) => new Map(one.points.map((p) => [p[0], p[1]])));
  const table = h('table', {},
    h('caption', { class: 'visually-hidden' }, title),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'time'),
      series.map((one) => h('th', { scope: 'col' }, one.name)))),
    h('tbody', {}, times.map((t) => h('tr', {},
      h('th', { scope: 'row' }, clockSeconds(t)),
      byName.map((m) => {
        const v = m.get(t);
        return h('td', { class: 'num' }, finite(v) ? format(v) : '—');
      })))));
  return h('details', { class: 'chart-data' },
    h('summary', {}, `Data table: ${title}`),
    h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': `${title} data` }, table));
}

/**
 * A horizontal progress bar.
 * options: { percent (0-100), label (accessible name), status: 'done'|'current'|'pending'|'failed', text }
 */
export function progressBar({ percent, label, status = 'pending', text = '' }) {
  const value = finite(percent) ? Math.max(0, Math.min(100, percent)) : 0;
  return h('div', { class: `progress ${status}` },
    h('div', {
      class: 'progress-track', role: 'progressbar', 'aria-label': label,
      'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': value,
      'aria-valuetext': text || `${value}%`,
    }, h('div', { class: 'progress-fill', style: `width: ${value}%` })),
  );
}
