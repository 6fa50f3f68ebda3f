// QCluster dashboard: reads this peer's API (GET /v1/status, /v1/peers and
// the Server-Sent Events of /v1/watch) and shows the members, the leader
// and a live timeline. Plain JavaScript, no dependencies. Every value from
// the API is put on the page as text (textContent), never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "qcluster.token";
  const MAX_EVENTS = 200;

  const state = {
    status: null,         // the last Status (GET /v1/status or a "leader" event)
    members: new Map(),   // identifier -> Member
    lastEventId: "",      // id of the last "leader" event, for Last-Event-ID
    prevLeader: undefined, // leader identifier last shown (null: none known)
    prevTerm: 0,
    prevRole: "",
    lostAt: 0,            // when this peer lost its leader (ms since epoch), 0 if it has one
    lostLeader: "",
    backoff: 500,
    abort: null,
  };

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  class Unauthorized extends Error {}

  function headers(extra) {
    const h = Object.assign({ "Accept": "application/json" }, extra || {});
    const t = token();
    if (t) h["Authorization"] = "Bearer " + t;
    return h;
  }

  async function getJSON(path, signal) {
    const resp = await fetch(path, { headers: headers(), cache: "no-store", signal });
    if (resp.status === 401) throw new Unauthorized(await errorText(resp));
    if (!resp.ok) throw new Error(path + ": " + resp.status + " " + await errorText(resp));
    return resp.json();
  }

  async function errorText(resp) {
    try { const e = await resp.json(); return e.error || resp.statusText; } catch (_) { return resp.statusText; }
  }

  function setConn(s, text) {
    const el = $("conn");
    el.dataset.state = s;
    el.textContent = text || s;
  }

  function fmtTime(d) {
    return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  }

  function addEvent(kind, text, when) {
    const li = document.createElement("li");
    const t = document.createElement("time");
    const d = when ? new Date(when) : new Date();
    t.dateTime = d.toISOString();
    t.textContent = fmtTime(d);
    const span = document.createElement("span");
    span.className = "k-" + kind;
    span.textContent = text;
    li.dataset.kind = kind;
    li.append(t, span);
    const ol = $("timeline");
    ol.prepend(li);
    while (ol.children.length > MAX_EVENTS) ol.lastChild.remove();
  }

  // applyStatus shows a Status and notes leadership changes on the timeline.
  function applyStatus(st, fromEvent) {
    state.status = st;
    const leader = st.leader ? st.leader.identifier : null;
    $("self").textContent = st.identifier + (st.mode === "masterless" ? " (masterless)" : "");
    $("leader").textContent = leader || (st.mode === "masterless" ? "none (masterless)" : "none");
    $("leader").dataset.leader = leader || "";
    $("term").textContent = String(st.term);
    $("role").textContent = st.role;
    $("lease").textContent = st.is_leader ? Math.round(st.lease_remaining_ms) + " ms" : (leader ? "held by " + leader : "none");
    document.title = "QCluster: " + (leader ? leader + " leads" : "no leader") + " (term " + st.term + ")";

    if (state.prevLeader === undefined) {
      addEvent("leader", leader ? leader + " leads (term " + st.term + "), as " + st.identifier + " sees it" : "no leader known (term " + st.term + ")");
    } else if (leader !== state.prevLeader) {
      if (!leader) {
        state.lostAt = Date.now();
        state.lostLeader = state.prevLeader;
        addEvent("bad", "lost leader " + state.prevLeader + " (term " + st.term + "): electing a new one");
        showFailover("running", "No leader: " + state.prevLeader + " is gone, an election is running (term " + st.term + ")...");
      } else if (state.lostAt) {
        const ms = Date.now() - state.lostAt;
        const text = "Fail-over: " + state.lostLeader + " \u2192 " + leader + " in " + ms + " ms (term " + st.term + ")";
        addEvent("failover", text);
        showFailover("done", text + ", from the moment " + st.identifier + " lost its leader.");
        state.lostAt = 0;
      } else if (state.prevLeader) {
        addEvent("failover", "leadership moved " + state.prevLeader + " \u2192 " + leader + " (term " + st.term + ")");
        showFailover("done", "Leadership moved " + state.prevLeader + " \u2192 " + leader + " (term " + st.term + ").");
      } else {
        addEvent("leader", leader + " leads (term " + st.term + ")");
      }
    } else if (fromEvent && st.term !== state.prevTerm) {
      addEvent("leader", "term " + state.prevTerm + " \u2192 " + st.term);
    }
    if (fromEvent && state.prevRole && st.role !== state.prevRole && st.role !== "leader" && state.prevRole !== "leader") {
      addEvent("muted", st.identifier + " is " + st.role);
    }
    state.prevLeader = leader;
    state.prevTerm = st.term;
    state.prevRole = st.role;
    renderMembers();
  }

  function showFailover(s, text) {
    const el = $("failover");
    el.hidden = false;
    el.dataset.state = s;
    el.textContent = text;
  }

  function cell(tr, label, content, cls) {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (cls) {
      const b = document.createElement("span");
      b.className = cls;
      b.textContent = content;
      td.append(b);
    } else {
      td.textContent = content;
    }
    tr.append(td);
    return td;
  }

  function renderMembers() {
    const tbody = $("members").tBodies[0];
    const leader = state.status && state.status.leader ? state.status.leader.identifier : null;
    const rows = [];
    const ids = Array.from(state.members.keys()).sort();
    for (const id of ids) {
      const m = state.members.get(id);
      const tr = document.createElement("tr");
      tr.dataset.id = id;
      const role = id === leader ? "leader" : (m.role === "leader" ? "follower" : m.role);
      tr.dataset.role = role;
      tr.dataset.state = m.state;
      const check = m.check || "none";
      tr.dataset.check = check;
      if (id === leader) tr.className = "leader";
      cell(tr, "Identifier", id + (m.is_self ? " (this peer)" : ""));
      cell(tr, "Address", m.host + ":" + m.port);
      cell(tr, "Role", role + (m.voter || role === "learner" || role === "none" || role === "member" ? "" : " (non-voter)"), "r-" + role);
      cell(tr, "Health", m.state, "badge h-" + m.state);
      cell(tr, "Check", check, "badge c-" + check);
      const md = cell(tr, "Metadata", "");
      const code = document.createElement("code");
      code.textContent = m.metadata && Object.keys(m.metadata).length ? JSON.stringify(m.metadata) : "\u2013";
      md.append(code);
      rows.push(tr);
    }
    tbody.replaceChildren(...rows);
    $("count").textContent = "(" + ids.length + ")";
  }

  let peersTimer = 0;
  function refreshPeersSoon() {
    if (peersTimer) return;
    peersTimer = setTimeout(async () => {
      peersTimer = 0;
      try { setPeers(await getJSON("/v1/peers")); } catch (e) { /* the stream reports trouble */ }
    }, 50);
  }

  function setPeers(pl) {
    state.members = new Map((pl.peers || []).map((m) => [m.identifier, m]));
    renderMembers();
  }

  function applyMember(ev) {
    const m = ev.member;
    if (!m || typeof m.identifier !== "string") return;
    if (ev.type === "removed" || ev.type === "left") {
      state.members.delete(m.identifier);
    } else {
      state.members.set(m.identifier, m);
    }
    const kind = { failed: "bad", removed: "bad", left: "bad", suspect: "bad", alive: "ok", joined: "ok" }[ev.type] || "muted";
    addEvent(kind, m.identifier + " " + ev.type + (ev.type === "updated" ? " (" + m.state + ", " + m.role + ")" : ""), ev.time);
    renderMembers();
    refreshPeersSoon();
  }

  // Other peers' dashboards, for when this one's peer is unreachable (the
  // browser cannot read another peer's API from this page: no CORS).
  function showElsewhere(show) {
    const el = $("elsewhere");
    el.hidden = !show;
    if (!show) return;
    el.replaceChildren("This peer does not answer. Other peers' dashboards: ");
    let first = true;
    for (const m of state.members.values()) {
      if (m.is_self) continue;
      if (!first) el.append(", ");
      first = false;
      const a = document.createElement("a");
      a.href = location.protocol + "//" + (m.host.includes(":") ? "[" + m.host + "]" : m.host) + ":" + m.port + "/ui/";
      a.textContent = m.identifier;
      el.append(a);
    }
  }

  // watch reads GET /v1/watch as a stream (fetch, so it can send the
  // Authorization header, which EventSource cannot) until it ends.
  async function watch(signal) {
    const h = headers({ "Accept": "text/event-stream" });
    if (state.lastEventId) h["Last-Event-ID"] = state.lastEventId;
    const resp = await fetch("/v1/watch", { headers: h, cache: "no-store", signal });
    if (resp.status === 401) throw new Unauthorized(await errorText(resp));
    if (!resp.ok || !resp.body) throw new Error("/v1/watch: " + resp.status);
    setConn("live");
    showElsewhere(false);
    state.backoff = 500;
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        dispatch(block);
      }
    }
  }

  function dispatch(block) {
    let type = "message", data = [], id = null;
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const c = line.indexOf(":");
      const field = c < 0 ? line : line.slice(0, c);
      let val = c < 0 ? "" : line.slice(c + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "event") type = val;
      else if (field === "data") data.push(val);
      else if (field === "id") id = val;
      else if (field === "retry" && /^\d+$/.test(val)) state.retry = Number(val);
    }
    if (!data.length) return;
    let v;
    try { v = JSON.parse(data.join("\n")); } catch (_) { return; }
    if (type === "leader") {
      if (id !== null) state.lastEventId = id;
      applyStatus(v, true);
      refreshPeersSoon();
    } else if (type === "member") {
      applyMember(v);
    }
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function run() {
    if (state.abort) state.abort.abort();
    const ctl = new AbortController();
    state.abort = ctl;
    let lost = false;
    while (!ctl.signal.aborted) {
      try {
        // Resync first: member events are not replayed after a reconnection.
        const [st, pl] = await Promise.all([getJSON("/v1/status", ctl.signal), getJSON("/v1/peers", ctl.signal)]);
        $("auth").hidden = true;
        setPeers(pl);
        applyStatus(st, false);
        if (lost) addEvent("ok", "reconnected to " + st.identifier);
        lost = false;
        await watch(ctl.signal);
      } catch (e) {
        if (ctl.signal.aborted) return;
        if (e instanceof Unauthorized) {
          setConn("unauthorized", "token needed");
          $("auth-msg").textContent = token()
            ? "The token was refused (" + e.message + "). Give this peer's api_token:"
            : "This peer protects reads: give its API token (kept in this tab only).";
          $("auth").hidden = false;
          $("token").focus();
          return;
        }
      }
      if (ctl.signal.aborted) return;
      if (!lost) addEvent("bad", "connection to the peer lost; reconnecting");
      lost = true;
      setConn("reconnecting");
      showElsewhere(true);
      await sleep(state.backoff);
      state.backoff = Math.min(state.backoff * 2, 5000);
    }
  }

  // The lease is a moving number: refresh it while this page is visible.
  setInterval(async () => {
    if (document.hidden || $("conn").dataset.state !== "live") return;
    try { applyStatus(await getJSON("/v1/status"), false); } catch (_) { /* the stream reports trouble */ }
  }, 1000);

  $("auth").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    setConn("connecting");
    run();
  });

  run();
})();
