// The "KPI alerts" page: the alert list and one alert's page, drawn from the REST API next door
// (../api/v1, the Airflow UI's cookie authenticates). Every value is written with textContent:
// alert names, errors and addresses are user text and never become HTML.
"use strict";

const API = "../api/v1";
const PAGE_SIZE = 50;
let offset = 0;

function $(id) {
  return document.getElementById(id);
}

// A piece of user text inside a sentence: in its own <bdi>, so a bidirectional override in it (an
// alert name stored by SQL, a Cube error) cannot reorder the words around it.
function isolated(text) {
  const bdi = document.createElement("bdi");
  bdi.textContent = String(text);
  return bdi;
}

// `parts`: a string, or a list of strings and nodes (user text as isolated(...)).
function say(parts, kind) {
  const message = $("message");
  message.replaceChildren(...(Array.isArray(parts) ? parts : [parts || ""]));
  message.className = kind || "";
}

async function api(path, options) {
  const response = await fetch(API + path, {
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    ...options,
  });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    throw new Error(refusal(response.status, body));
  }
  return body;
}

function refusal(status, body) {
  const detail = body && body.detail !== undefined ? body.detail : "";
  const reason = typeof detail === "string" ? detail : JSON.stringify(detail);
  if (status === 401) return "Your Airflow session has ended: log in again.";
  if (status === 403) return "Not allowed: this needs edit access to the kpi_alerts DAG (" + reason + ").";
  return reason || "The server answered " + status + ".";
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined || text === "" ? "—" : String(text);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function button(label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

function lastResult(last) {
  if (!last) return "no run yet";
  const when = last.slot ? last.slot.replace("T", " ").slice(0, 16) + " UTC" : "";
  return last.status + (when ? " · " + when : "") + (last.error ? " — " + last.error : "");
}

function listQuery() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(offset) });
  const organization = $("filter-organization").value.trim();
  if (organization) params.set("organization_id", organization);
  if ($("filter-type").value) params.set("alert_type", $("filter-type").value);
  if ($("filter-state").value) params.set("state", $("filter-state").value);
  const status = $("filter-status").value;
  if (status === "active") {
    params.set("active", "true");
    params.set("paused", "false");
  } else if (status === "paused") {
    params.set("paused", "true");
  } else if (status === "inactive") {
    params.set("active", "false");
    params.set("paused", "false");
  }
  return params.toString();
}

async function showList() {
  $("alert-view").hidden = true;
  $("list-view").hidden = false;
  const page = await api("/alerts?" + listQuery());
  const body = $("alerts").tBodies[0];
  body.replaceChildren();
  for (const alert of page.alerts) {
    const row = document.createElement("tr");
    row.dataset.alertId = String(alert.id);
    if (alert.paused) row.className = "paused";
    cell(row, alert.id);
    const name = document.createElement("td");
    const link = document.createElement("a");
    link.href = "#alert=" + encodeURIComponent(alert.id);
    link.textContent = alert.alert_name;
    name.appendChild(link);
    row.appendChild(name);
    cell(row, alert.organization_id);
    cell(row, alert.alert_type);
    cell(row, alert.schedule_description);
    cell(row, alert.paused ? "paused" : alert.next_run_local || "on first sight");
    cell(row, alert.state, alert.state ? "state-" + alert.state : "");
    cell(row, lastResult(alert.last_result), alert.last_result ? "status-" + alert.last_result.status : "");
    cell(row, alert.paused ? "yes" : "no", "paused-cell");
    const actions = document.createElement("td");
    actions.appendChild(
      alert.paused
        ? button("Resume", () => change(alert.id, "resume"))
        : button("Pause", () => change(alert.id, "pause")),
    );
    row.appendChild(actions);
    body.appendChild(row);
  }
  if (page.alerts.length === 0) {
    const row = document.createElement("tr");
    const td = cell(row, "No alert matches these filters.");
    td.colSpan = 10;
    body.appendChild(row);
  }
  const last = Math.min(page.offset + page.alerts.length, page.total_entries);
  $("page-info").textContent =
    page.total_entries === 0 ? "0 alerts" : page.offset + 1 + "–" + last + " of " + page.total_entries;
  $("prev-page").disabled = page.offset === 0;
  $("next-page").disabled = last >= page.total_entries;
}

async function change(alertId, action) {
  try {
    const answer = await api("/alerts/" + encodeURIComponent(alertId) + "/" + action, { method: "POST" });
    const verb = action === "pause" ? "paused" : "resumed";
    say(
      answer.changed
        ? "Alert " + alertId + " " + verb + "."
        : "Alert " + alertId + " was already " + (action === "pause" ? "paused" : "active") + ".",
      "ok",
    );
  } catch (error) {
    say(error.message, "error");
  }
  await route();
}

async function snooze(alertId, until) {
  try {
    const answer = await api("/alerts/" + encodeURIComponent(alertId) + "/snooze", {
      method: "POST",
      body: JSON.stringify({ until }),
    });
    say(
      until === null
        ? "Alert " + alertId + " is no longer snoozed."
        : "Alert " + alertId + " snoozed until " + answer.snoozed_until + "; next run " + answer.next_run_at + ".",
      "ok",
    );
  } catch (error) {
    say(error.message, "error");
  }
  await route();
}

function fact(list, term, value) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
  list.append(dt, dd);
  return dd;
}

async function showAlert(alertId) {
  $("list-view").hidden = true;
  $("alert-view").hidden = false;
  const id = encodeURIComponent(alertId);
  const [alert, history, failures] = await Promise.all([
    api("/alerts/" + id),
    api("/alerts/" + id + "/history?limit=50"),
    api("/alerts/" + id + "/history?status=failed&limit=20"),
  ]);
  $("alert-view").dataset.alertId = String(alert.id);
  $("alert-title").replaceChildren(isolated(alert.alert_name), " (alert " + alert.id + ")");
  const facts = $("alert-facts");
  facts.replaceChildren();
  fact(facts, "Status", alert.status);
  fact(facts, "Organization", alert.organization_id);
  fact(facts, "Type", alert.alert_type);
  fact(facts, "Schedule", alert.schedule_description);
  fact(facts, "Next run", alert.paused ? "paused" : alert.next_run_local || "on first sight");
  if (alert.alert_type === "threshold") {
    fact(facts, "State", alert.state + " (last value " + (alert.threshold_last_value ?? "—") + ")");
    fact(facts, "Rule", alert.threshold_rule);
    if (alert.threshold_streak) {
      fact(facts, "Pending", alert.threshold_streak + " check(s) in a row toward a change of state");
    }
  }
  for (const quiet of alert.quiet_hours) {
    fact(facts, "Quiet hours (" + quiet.of + ")", quiet.words);
  }
  fact(facts, "Snoozed until", alert.snoozed_until);
  if (alert.freshness) {
    fact(facts, "Fresh data", alert.freshness);
  }
  if (alert.waiting_for_data) {
    fact(facts, "Waiting", alert.waiting_for_data).className = "status-waiting";
  }
  if (alert.definition && alert.definition.message) {
    fact(facts, "Message", alert.definition.message).className = "message-text";
  }
  fact(facts, "Recipients", alert.recipients.join(", "));
  fact(facts, "Owners", alert.owners.join(", "));
  fact(facts, "Last result", lastResult(alert.last_result));
  $("unsnooze").disabled = !alert.snoozed_until;
  $("pause").disabled = alert.paused;
  $("resume").disabled = !alert.paused;

  const runs = $("next-runs");
  runs.replaceChildren();
  for (const run of alert.next_runs) {
    const item = document.createElement("li");
    item.textContent = (run.words || run.local) + " — " + run.utc;
    runs.appendChild(item);
  }

  const failed = $("failures").tBodies[0];
  failed.replaceChildren();
  for (const r of failures.results) {
    const row = document.createElement("tr");
    cell(row, r.slot);
    cell(row, r.status, "status-" + r.status);
    cell(row, r.try_number);
    cell(row, r.error);
    failed.appendChild(row);
  }
  if (failures.results.length === 0) cell(failed.insertRow(), "No failure recorded.").colSpan = 4;

  const rows = $("history").tBodies[0];
  rows.replaceChildren();
  for (const r of history.results) {
    const row = document.createElement("tr");
    cell(row, r.slot);
    cell(row, r.status, "status-" + r.status);
    cell(row, r.value);
    cell(row, r.delivery);
    cell(row, r.finished_at);
    cell(row, r.error || r.attachment);
    rows.appendChild(row);
  }
  if (history.results.length === 0) cell(rows.insertRow(), "No run recorded yet.").colSpan = 6;

  const events = $("events").tBodies[0];
  events.replaceChildren();
  for (const e of alert.recent_events) {
    const row = document.createElement("tr");
    cell(row, e.at);
    cell(row, e.action);
    cell(row, e.actor);
    events.appendChild(row);
  }
}

function alertInHash() {
  const match = /^#alert=(\d+)$/.exec(window.location.hash);
  return match ? match[1] : null;
}

async function route() {
  try {
    const alertId = alertInHash();
    if (alertId) await showAlert(alertId);
    else await showList();
  } catch (error) {
    say(error.message, "error");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    offset = 0;
    say("");
    route();
  });
  $("prev-page").addEventListener("click", () => {
    offset = Math.max(0, offset - PAGE_SIZE);
    route();
  });
  $("next-page").addEventListener("click", () => {
    offset += PAGE_SIZE;
    route();
  });
  $("back").addEventListener("click", (event) => {
    event.preventDefault();
    window.location.hash = "";
  });
  $("pause").addEventListener("click", () => change($("alert-view").dataset.alertId, "pause"));
  $("resume").addEventListener("click", () => change($("alert-view").dataset.alertId, "resume"));
  $("snooze").addEventListener("submit", (event) => {
    event.preventDefault();
    // the browser's local time, sent with its offset (as an ISO instant in UTC)
    snooze($("alert-view").dataset.alertId, new Date($("snooze-until").value).toISOString());
  });
  $("unsnooze").addEventListener("click", () => snooze($("alert-view").dataset.alertId, null));
  $("test-send").addEventListener("submit", async (event) => {
    event.preventDefault();
    const alertId = $("alert-view").dataset.alertId;
    say("Sending a test…");
    try {
      const sent = await api("/alerts/" + encodeURIComponent(alertId) + "/test-send", {
        method: "POST",
        body: JSON.stringify({ to: $("test-to").value }),
      });
      say(["Test sent to ", isolated(sent.to), " (", isolated(sent.subject), "). ", sent.verdict], "ok");
    } catch (error) {
      say(error.message, "error");
    }
    await route();
  });
  window.addEventListener("hashchange", () => {
    say("");
    route();
  });
  route();
});
