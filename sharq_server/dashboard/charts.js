// SharQ dashboard: hand-made SVG line charts (no library: nothing is fetched from
// outside the server). Every chart has a y axis with numbers from 0 and clock
// times along x; charts that compare are drawn on one scale their caller gives.
"use strict";

const CHART = { height: 200, left: 46, right: 14, top: 22, bottom: 26 };

// 0 and about four round steps (1, 2 or 5 times a power of ten) up to at least `top`.
function ticks(top) {
  const rough = Math.max(top, 1e-9) / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
  const count = Math.max(1, Math.ceil(top / step - 1e-9));
  return Array.from({ length: count + 1 }, (_, i) => +(i * step).toPrecision(12));
}

// Draws `series` ([{name, label, values}], values per minute, null for unknown)
// over `minutes` (epoch ms each starts) on a scale from 0 to `top`, with `unit`
// as the y axis' title. Redraws only when what it shows changed, so a tooltip
// being read is not torn down by the 2 s refresh.
// The chart is drawn at the width it is shown (text stays 11 px on a phone).
function lineChart(svg, { minutes, series, top, unit }) {
  const width = Math.round(svg.getBoundingClientRect().width) || 640;
  const signature = JSON.stringify([minutes.at(-1), series, top, unit, width]);
  if (svg.dataset.drawn === signature) return;
  svg.dataset.drawn = signature;
  const { height, left, right, top: above, bottom } = CHART;
  const every = width < 520 ? 20 : 10;  // minutes between two time labels
  const steps = ticks(top);
  const max = steps.at(-1);
  const x = (i) => left + (i / Math.max(minutes.length - 1, 1)) * (width - left - right);
  const y = (v) => above + (1 - v / max) * (height - above - bottom);
  const parts = [`<text class="axis-title" x="4" y="12">${unit}</text>`];
  for (const step of steps) {
    parts.push(`<line class="grid" x1="${left}" x2="${width - right}" y1="${y(step)}" y2="${y(step)}"/>`,
      `<text class="y-tick" x="${left - 6}" y="${y(step) + 4}" text-anchor="end">${figure(step)}</text>`);
  }
  minutes.forEach((minute, i) => {
    if ((minute / 60_000) % every === 0 || i === minutes.length - 1) {
      const label = i === minutes.length - 1 ? "now" : hourMinute(minute);
      const anchor = i === minutes.length - 1 ? "end" : "middle";
      if (i !== minutes.length - 1 && i > minutes.length - every / 2 - 2) return;  // would overlap "now"
      parts.push(`<line class="axis" x1="${x(i)}" x2="${x(i)}" y1="${height - bottom}" y2="${height - bottom + 4}"/>`,
        `<text class="x-tick" x="${x(i)}" y="${height - 8}" text-anchor="${anchor}">${label}</text>`);
    }
  });
  parts.push(`<line class="axis" x1="${left}" x2="${width - right}" y1="${height - bottom}" y2="${height - bottom}"/>`,
    `<line class="axis" x1="${left}" x2="${left}" y1="${above}" y2="${height - bottom}"/>`);
  for (const { name, values } of series) {
    for (const run of runs(values)) {
      const points = run.map((i) => `${x(i).toFixed(1)},${y(values[i]).toFixed(1)}`);
      parts.push(run.length > 1 ? `<polyline class="line s-${name}" points="${points.join(" ")}"/>`
        : `<circle class="dot s-${name}" r="3" cx="${x(run[0])}" cy="${y(values[run[0]])}"/>`);
    }
  }
  const slot = (width - left - right) / Math.max(minutes.length - 1, 1);
  minutes.forEach((minute, i) => {
    const said = series.map(({ label, values }) => `${label} ${figure(values[i])}`).join(", ");
    parts.push(`<rect class="hover" x="${x(i) - slot / 2}" y="${above}" width="${slot}" height="${height - above - bottom}">` +
      `<title>${hourMinute(minute)}: ${said}</title></rect>`);
  });
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.innerHTML = parts.join("");
}

// The index runs of known (non-null) values: a line is not drawn through a gap,
// and a lone value is a dot.
function runs(values) {
  const found = [];
  let run = [];
  values.forEach((value, i) => {
    if (value === null || value === undefined) {
      if (run.length) found.push(run);
      run = [];
    } else run.push(i);
  });
  if (run.length) found.push(run);
  return found;
}

// The legend under a chart, each series with its latest value.
function legend(element, series, unit) {
  element.replaceChildren(...series.map(({ name, label, values }) => {
    const item = document.createElement("span");
    item.innerHTML = `<span class="s-${name}">■</span> `;
    item.append(`${label} ${figure(values.at(-1))} ${unit}`);
    return item;
  }));
}
