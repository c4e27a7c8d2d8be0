// The preview studio: polls nothing; the server pushes a version number (Server-Sent Events)
// whenever the issue, a template or newsletter.toml changes, and the page fetches the state.
"use strict";

const token = document.querySelector('meta[name="studio-token"]').content;
const $ = (id) => document.getElementById(id);
const ui = {
  as: sessionStorage.getItem("studio-as") || "",
  dark: false,
  view: "both",
  shown: null, // what the frames show: "version|as|dark"
  version: 0,
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function frameUrl(dark) {
  const params = new URLSearchParams({ v: String(ui.version), dark: dark ? "1" : "0" });
  if (ui.as) params.set("as", ui.as);
  return "/email?" + params;
}

function loadFrame(frame, url) {
  let scroll = 0;
  try {
    scroll = frame.contentWindow.scrollY || 0;
  } catch (err) {
    scroll = 0;
  }
  frame.addEventListener(
    "load",
    () => {
      try {
        frame.contentWindow.scrollTo(0, scroll);
      } catch (err) {
        /* a frame we cannot script keeps its own scroll */
      }
    },
    { once: true },
  );
  frame.src = url;
}

async function refresh() {
  const params = new URLSearchParams();
  if (ui.as) params.set("as", ui.as);
  let state;
  try {
    const response = await fetch("/api/state?" + params, { cache: "no-store" });
    state = await response.json();
  } catch (err) {
    return; // the server is restarting; the event stream will call again
  }
  ui.version = state.version;
  document.body.dataset.version = String(state.version);
  showError(state.error);
  if (state.as_error) flash(state.as_error, true);
  if (state.subject !== undefined) {
    $("subject").textContent = state.subject;
    document.title = "Preview · " + state.subject;
  }
  $("preheader").textContent = state.preheader ? "— " + state.preheader : "";
  $("text").textContent = state.text || "";
  if (state.to) $("as").placeholder = state.to;
  $("source").textContent = state.html || "";
  $("source-meta").textContent = state.html_bytes
    ? `${(state.html_bytes / 1024).toFixed(1)} KB (Gmail clips at 102 KB) · rendered in ${state.render_ms} ms · to ${state.to}`
    : "";
  const testTo = state.test_to.length ? state.test_to.join(", ") : "nobody: set [send] test_to";
  $("send-test").title = `Send a [TEST] copy to ${testTo} via ${state.provider}`;
  showChecks(state);
  const wanted = `${state.version}|${ui.as}|${ui.dark}`;
  if (wanted !== ui.shown && (state.subject !== undefined || state.error)) {
    ui.shown = wanted;
    loadFrame($("desktop-frame"), frameUrl(ui.dark));
    loadFrame($("phone-frame"), frameUrl(ui.dark));
  }
  for (const device of document.querySelectorAll(".device")) {
    device.classList.toggle("stale", Boolean(state.error));
  }
}

function showError(message) {
  $("error").hidden = !message;
  $("error-text").textContent = message || "";
}

function flash(text, failed = false) {
  const box = $("message");
  box.textContent = text;
  box.classList.toggle("failed", failed);
  box.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => (box.hidden = true), 8000);
}

function showChecks(state) {
  const errors = state.problems.filter((p) => p.severity === "error").length;
  const warnings = state.problems.length - errors;
  const count = $("check-count");
  count.textContent = errors ? `${errors} error${errors > 1 ? "s" : ""}` : warnings ? String(warnings) : "✓";
  count.className = "count" + (errors ? " errors" : warnings ? " warnings" : "");

  const list = $("problems");
  list.replaceChildren();
  if (!state.problems.length) {
    list.append(el("li", { class: "ok" }, state.error ? "Not checked: the issue does not render." : "All checks passed."));
  }
  for (const p of state.problems) {
    list.append(
      el("li", { class: p.severity },
        el("span", { class: "code" }, `${p.severity} ${p.code}`),
        p.message,
        el("div", { class: "where" }, p.where)),
    );
  }

  const spam = $("spam");
  spam.replaceChildren();
  const s = state.spam;
  if (s.state === "done") {
    const verdict = s.score > 5 ? "error: above 5.0" : s.score > 2 ? "warning: above 2.0" : "fine (warns above 2.0)";
    spam.append(el("span", { class: "score" }, s.score.toFixed(1)), ` points, ${verdict}`);
    const table = el("table");
    for (const r of s.rules) {
      table.append(el("tr", {}, el("td", {}, r.score.toFixed(1)), el("td", {}, el("code", {}, r.name)), el("td", {}, r.description)));
    }
    spam.append(table);
  } else if (s.state === "scoring") {
    spam.append("Scoring with SpamAssassin…");
  } else if (s.state === "absent") {
    spam.append("Not scored: " + s.message);
  } else if (s.state === "failed") {
    spam.append("SpamAssassin failed: " + s.message);
  } else {
    spam.append("Not scored yet.");
  }

  const body = $("support");
  body.replaceChildren();
  for (const f of state.compat) {
    const missing = f.enhancement
      ? el("span", { class: "muted" }, (f.unsupported.join(", ") || "—") + ` (${f.enhancement}: not a problem)`)
      : f.unsupported.join(", ") || "—";
    const partial = f.partial.length
      ? f.partial.map((p) => el("div", {}, p.client + (p.notes ? ": " + p.notes : "")))
      : ["—"];
    body.append(
      el("tr", { class: f.warns ? "warns" : "" },
        el("td", {}, el("a", { href: f.url, target: "_blank", rel: "noopener" }, f.title)),
        el("td", {}, el("code", {}, f.example)),
        el("td", {}, missing),
        el("td", { class: "muted" }, ...partial)),
    );
  }
}

function fitFrames() {
  const frames = $("frames");
  const desktop = $("desktop");
  const room = frames.clientWidth - (ui.view === "both" ? 375 + 20 + 24 : 0);
  desktop.style.zoom = ui.view === "phone" ? "" : String(Math.min(1, Math.max(0.4, room / 1026)));
}

function setView(view) {
  ui.view = view;
  $("frames").dataset.view = view;
  for (const button of document.querySelectorAll("[data-view]")) {
    if (button.tagName === "BUTTON") button.setAttribute("aria-pressed", String(button.dataset.view === view));
  }
  fitFrames();
}

function setTab(tab) {
  for (const button of document.querySelectorAll("[data-tab]")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === tab));
  }
  for (const panel of document.querySelectorAll(".tab")) {
    panel.hidden = panel.id !== "tab-" + tab;
  }
}

async function suggest() {
  const query = $("as").value;
  try {
    const response = await fetch("/api/subscribers?q=" + encodeURIComponent(query));
    const people = await response.json();
    if (!Array.isArray(people)) return;
    $("subscribers").replaceChildren(
      ...people.map((p) => el("option", { value: p.email }, p.name || p.email)),
    );
  } catch (err) {
    /* suggestions are a convenience */
  }
}

async function sendTest() {
  const button = $("send-test");
  button.disabled = true;
  button.textContent = "Sending…";
  try {
    const response = await fetch("/api/send-test", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Studio-Token": token },
      body: JSON.stringify({ as: ui.as || null }),
    });
    const result = await response.json();
    flash(result.message, !result.ok);
  } catch (err) {
    flash("Send test failed: " + err, true);
  } finally {
    button.disabled = false;
    button.textContent = "Send test";
  }
}

function connect() {
  const live = $("live");
  const events = new EventSource("/api/events");
  events.addEventListener("version", (event) => {
    live.textContent = "live";
    live.className = "live on";
    if (Number(event.data) !== ui.version || !ui.shown) refresh();
  });
  events.onerror = () => {
    live.textContent = "reconnecting…";
    live.className = "live off";
  };
}

document.querySelectorAll("[data-tab]").forEach((b) => b.addEventListener("click", () => setTab(b.dataset.tab)));
document.querySelectorAll("button[data-view]").forEach((b) => b.addEventListener("click", () => setView(b.dataset.view)));
$("dark").addEventListener("change", (event) => {
  ui.dark = event.target.checked;
  document.body.classList.toggle("dark", ui.dark);
  refresh();
});
$("as").value = ui.as;
$("as").addEventListener("input", suggest);
$("as").addEventListener("change", () => {
  ui.as = $("as").value.trim();
  sessionStorage.setItem("studio-as", ui.as);
  refresh();
});
$("as-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("as").dispatchEvent(new Event("change"));
});
$("send-test").addEventListener("click", sendTest);
window.addEventListener("resize", fitFrames);
fitFrames();
suggest();
connect();
refresh();
