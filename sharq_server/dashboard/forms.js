// SharQ dashboard: the confirmation a destructive action asks for, and the form
// that edits a queue's (or a type's) limits and pause. The form checks every
// field before anything is sent, sends only what changed, and shows the server's
// own message when it refuses.
"use strict";

// Resolves true when the user confirms `text` by clicking the `ok` button.
function confirmed(text, ok) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = ok;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

// The bounds of sharq_server/contract.py (LimitValue, Interval, TypeInterval, ForMs).
const MAX_INTERVAL = 1e12, MAX_LIMIT = 1e6;
const FIELDS = {
  interval: { min: 0, max: MAX_INTERVAL, unit: "ms" },
  burst: { min: 1, max: MAX_LIMIT, unit: "jobs" },
  max_active: { min: 1, max: MAX_LIMIT, unit: "jobs" },
  pause_for: { min: 1, max: MAX_INTERVAL / 1000, unit: "s" },
};

// A field's value: null when empty, a whole number within its bounds, or an
// Error saying what is wrong with it.
function parseField(name, text, min = FIELDS[name].min) {
  const { max, unit } = FIELDS[name];
  const trimmed = text.trim();
  if (trimmed === "") return null;
  if (!/^\d+$/.test(trimmed)) return new Error(`${name} must be a whole number of ${unit}, or empty`);
  const value = Number(trimmed);
  if (value < min || value > max) return new Error(`${name} must be from ${min} to ${figure(max)} ${unit}`);
  return value;
}

// The form for one queue (`queue` from GET /queues/) or, when it is null, for the
// type's own limits (`typeLimits` from GET /stats/). Resolves once saved or cancelled.
function editLimits(type, queue, typeLimits) {
  const dialog = $("#limits-dialog");
  const form = $("#limits-form");
  const own = {};  // the values it holds of its own: what "unchanged" means
  for (const name of ["interval", "burst", "max_active"]) {
    const input = form.elements[name];
    if (queue) {
      const { value, source } = queue.limits[name];
      own[name] = source === "override" ? value : null;
      input.placeholder = source === "override" ? "" : `none (${source}: ${value ?? "no limit"})`;
    } else {
      own[name] = typeLimits[name];
      input.placeholder = "none (no type-wide limit)";
    }
    input.value = own[name] ?? "";
  }
  $("#limits-title").textContent = queue ? `Limits of queue ${queue.queue_id} (type ${type})` : `Type-wide limits of ${type}`;
  $("#pause-fields").hidden = !queue;  // pausing the whole type asks for confirmation: its own button
  if (queue) {
    form.elements.pause.value = !queue.paused ? "running" : queue.paused_until ? "for" : "until";
    form.elements.pause_for.value = queue.paused_until ? Math.ceil((queue.paused_until - serverNow()) / 1000) : "";
    own.pause_for = form.elements.pause_for.value;
  }
  showErrors({});
  $("#limits-error").textContent = "";
  dialog.showModal();
  return new Promise((resolve) => {
    const done = () => {
      form.onsubmit = null;
      $("#limits-cancel").onclick = null;
      dialog.close();
      resolve();
    };
    $("#limits-cancel").onclick = done;
    dialog.oncancel = done;
    form.onsubmit = async (event) => {
      event.preventDefault();
      if (await saveLimits(type, queue, own)) done();
    };
  });
}

function showErrors(errors) {
  const form = $("#limits-form");
  for (const span of form.querySelectorAll(".field-error")) {
    const name = span.dataset.for;
    span.textContent = errors[name] ? errors[name].message : "";
    form.elements[name].setAttribute("aria-invalid", errors[name] ? "true" : "false");
  }
  const first = Object.keys(errors)[0];
  if (first) form.elements[first].focus();
}

// Checks every field, then sends what changed; true when all of it was accepted.
async function saveLimits(type, queue, own) {
  const form = $("#limits-form");
  const errors = {}, changed = {};
  for (const name of ["interval", "burst", "max_active"]) {
    const value = parseField(name, form.elements[name].value, !queue && name === "interval" ? 1 : undefined);
    if (value instanceof Error) errors[name] = value;
    else if (value !== own[name]) changed[name] = value;
  }
  const pause = queue ? form.elements.pause.value : "";
  const pauseFor = parseField("pause_for", form.elements.pause_for.value);
  if (pause === "for" && (pauseFor === null || pauseFor instanceof Error)) {
    errors.pause_for = pauseFor || new Error("pause_for: how many seconds the pause lasts");
  }
  showErrors(errors);
  if (Object.keys(errors).length) return false;
  const path = queue ? `${type}/${queue.queue_id}/` : `${type}/`;
  const name = queue ? `queue ${queue.queue_id}` : `type ${type}`;
  const said = [];
  if (Object.keys(changed).length) {
    const { status, data } = await api("PUT", `/limits/${path}`, changed);
    if (status !== 200) return refused(data);
    said.push(Object.entries(changed).map(([field, value]) => `${field} ${value ?? "cleared"}`).join(", "));
  }
  const wasPaused = queue ? (queue.paused ? (queue.paused_until ? "for" : "until") : "running") : "";
  if (queue && (pause !== wasPaused || (pause === "for" && form.elements.pause_for.value !== String(own.pause_for)))) {
    const call = pause === "running" ? ["POST", `/resume/${path}`]
      : ["POST", `/pause/${path}`, pause === "for" ? { for_ms: pauseFor * 1000 } : {}];
    const { status, data } = await api(...call);
    if (status !== 200) return refused(data);
    said.push(pause === "running" ? "resumed" : pause === "for" ? `paused for ${duration(pauseFor * 1000)}` : "paused");
  }
  tell(said.length ? `Saved ${name}: ${said.join("; ")}` : `Nothing changed for ${name}`);
  return true;
}

function refused(data) {
  $("#limits-error").textContent = `The server refused: ${data.message ?? JSON.stringify(data)}`;
  return false;
}
