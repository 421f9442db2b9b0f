// SharQ dashboard: how numbers, times and ages read.
"use strict";

// A duration in words an operator reads at once: "0 s", "45 s", "2 min 5 s", "3 h 12 min".
function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min` + (s % 60 ? ` ${s % 60} s` : "");
  return `${Math.floor(s / 3600)} h` + (Math.floor(s / 60) % 60 ? ` ${Math.floor(s / 60) % 60} min` : "");
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function hourMinute(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// A figure in at most three significant digits: 0, 0.05, 1.25, 12.5, 340, 1.2k, 3.4M.
function figure(value) {
  if (value === null || value === undefined) return "–";
  const size = Math.abs(value);
  if (size >= 1e6) return `${+(value / 1e6).toPrecision(3)}M`;
  if (size >= 1e4) return `${+(value / 1e3).toPrecision(3)}k`;
  return String(+value.toPrecision(3));
}

const plural = (n, one, many = one + "s") => `${n} ${n === 1 ? one : many}`;
