// SharQ dashboard: tables kept in step with the API without being rebuilt. Each
// row is keyed; a refresh changes only the cells whose text changed and moves,
// adds or drops only the rows that did, so a selection, a hovered button or the
// place the reader was at survive the 2 s refresh.
"use strict";

// Makes `body` (a tbody, or a list) hold one row per item, in order; `fill(row,
// item)` writes its cells.
function syncRows(body, items, keyOf, fill) {
  const old = new Map([...body.children].map((row) => [row.dataset.key, row]));
  let previous = null;
  for (const item of items) {
    const key = keyOf(item);
    let row = old.get(key);
    old.delete(key);
    if (!row) {
      row = document.createElement(body.tagName === "TBODY" ? "tr" : "li");
      row.dataset.key = key;
      row.fields = {};
    }
    const place = previous ? previous.nextSibling : body.firstChild;
    if (row !== place) body.insertBefore(row, place);
    fill(row, item);
    previous = row;
  }
  for (const row of old.values()) row.remove();
}

// The row's cell for `field` (created once, labelled for the phone's card view),
// showing `text` ("–" for none) with `className`.
function put(row, field, text, className = "") {
  let td = row.fields[field];
  if (!td) {
    td = row.fields[field] = document.createElement("td");
    td.dataset.field = field;
    const heading = row.closest("table").querySelector(`th[data-field="${field}"]`);
    td.dataset.label = heading ? heading.textContent : field;
    row.appendChild(td);
  }
  if (text !== undefined) {
    const shown = text === null ? "–" : String(text);
    if (td.textContent !== shown) td.textContent = shown;
  }
  if (td.className !== className) td.className = className;
  return td;
}

// The row's buttons, [label, action] each: rebuilt only when the labels change; the
// actions are swapped in place so each click acts on the latest figures.
function buttons(row, wanted) {
  const td = put(row, "actions", undefined);
  const labels = wanted.map(([label]) => label).join("|");
  if (td.dataset.labels !== labels) {
    td.dataset.labels = labels;
    td.replaceChildren(...wanted.map(([label]) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      return b;
    }));
  }
  wanted.forEach(([, action], i) => { td.children[i].onclick = () => action(td.children[i]); });
}
