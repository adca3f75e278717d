// The console: renders the state geodns streams at /console/events (the same document as
// /console/state) every time it changes. Text goes into the page as text, never as markup.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(headers, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

function badge(text, kind) {
  return el("span", { class: "badge " + kind }, text);
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

function ago(seconds, nowMs) {
  if (!seconds) return "-";
  const s = Math.max(0, Math.round(nowMs / 1000 - seconds));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
}

function percent(fraction) {
  if (fraction > 0 && fraction < 0.01) return "<1%";
  return Math.round(fraction * 100) + "%";
}

function nodeState(node) {
  if (node.draining) return "draining";
  return node.up ? "up" : "down";
}

function siteCard(site, nowMs) {
  const feedKind = site.feed === "live" ? "ok" : site.feed === "silent" ? "bad" : "warn";
  const title = el("h3", {}, site.name,
    badge("feed " + site.feed, feedKind),
    site.admin ? badge("operator: " + site.admin, "warn") : null,
    el("span", { class: "why" },
      site.instance ? "healthd " + site.instance + ", generation " + site.generation : ""));

  const services = site.services.map((s) => {
    const verdict = s.healthy === null ? "-" : s.healthy ? "healthy" : "unhealthy";
    return el("tr", { "data-service": s.name },
      el("td", {}, s.name),
      el("td", { class: s.healthy === false ? "bad" : "ok" }, verdict,
        s.reason ? el("div", { class: "why" }, s.reason) : null),
      el("td", { class: s.announcement === "announced" ? "ok" : "warn" }, s.announcement || "-"),
      el("td", { class: s.dns.usable ? "ok" : "bad" }, s.dns.usable ? "answers" : "skipped",
        el("div", { class: "why" }, s.dns.why)));
  });

  const nodes = site.nodes.map((n) => {
    const state = nodeState(n);
    return el("tr", { "data-node": n.name, "data-state": state },
      el("td", {}, n.name),
      el("td", {}, n.addresses.join(" ")),
      el("td", { class: state === "up" ? "ok" : state === "draining" ? "warn" : "bad" }, state,
        n.admin ? el("div", { class: "why" }, "operator: " + n.admin) : null),
      el("td", {}, percent(n.load)),
      el("td", { class: "why" }, n.reason || ""));
  });

  const peers = site.peers.map((p) =>
    el("tr", { "data-peer": p.name, "data-state": p.state },
      el("td", {}, p.name),
      el("td", {}, p.address),
      el("td", { class: p.state === "Established" ? "ok" : "bad" }, p.state),
      el("td", {}, ago(p.since, nowMs)),
      el("td", {}, p.prefixes_advertised),
      el("td", {}, p.bfd || "-")));

  return el("div", { class: "card", "data-site": site.name },
    title,
    el("h4", {}, "Services"),
    table(["service", "healthd", "prefixes", "DNS"], services),
    el("h4", {}, "Nodes"),
    table(["node", "addresses", "state", "load", "why"], nodes),
    el("h4", {}, "BGP sessions"),
    peers.length
      ? table(["peer", "address", "state", "for", "prefixes out", "BFD"], peers)
      : el("p", { class: "why" }, site.feed === "live" ? "none reported by the speaker" : "unknown"));
}

function steeringTable(service) {
  const total = service.regions.reduce((sum, r) => sum + r.ipv4_addresses, 0) + service.other_addresses;
  const rows = service.regions.map((r) => {
    const share = total ? percent(r.ipv4_addresses / total) : "-";
    const where = r.countries.length
      ? r.countries.map(([c, n]) => c + (r.ipv4_addresses ? " " + percent(n / r.ipv4_addresses) : "")).join(", ")
      : "clients the database does not place";
    const skipped = [];
    for (const v of r.verdicts) {
      if (v.site === r.site) break;
      skipped.push(v.site + ": " + v.why);
    }
    const chosen = r.verdicts.find((v) => v.site === r.site);
    return el("tr", { "data-region": r.ranking.join(">"), "data-site": r.site || "" },
      el("td", {}, where),
      el("td", {}, share),
      el("td", {}, r.ranking.join(" > ")),
      el("td", { class: r.fail_open ? "bad" : skipped.length ? "warn" : "ok" }, r.site || "-",
        r.fail_open ? badge("fail open", "bad") : null),
      el("td", { class: "why" }, [...skipped, chosen ? r.site + ": " + chosen.why : ""].filter(Boolean).join("; ")));
  });
  const t = table(["clients in", "share", "ranking", "answering", "why"], rows);
  t.prepend(el("caption", {}, service.service + " (" + service.hostnames.join(", ") + ")"));
  return t;
}

function render(state) {
  document.getElementById("sites").replaceChildren(...state.sites.map((s) => siteCard(s, state.now_ms)));
  document.getElementById("steering").replaceChildren(...state.steering.map(steeringTable));
  document.getElementById("events").replaceChildren(...state.events.map((e) =>
    el("li", { class: e.level },
      el("span", { class: "time" }, clock(e.at_ms)),
      el("span", {}, e.site),
      el("span", {}, e.text))));
  document.getElementById("updated").textContent = "updated " + clock(state.now_ms);
  document.body.dataset.updated = String(state.now_ms);
}

function connect() {
  const link = document.getElementById("link");
  const source = new EventSource("/console/events");
  source.onopen = () => { link.textContent = "live"; link.className = "badge ok"; };
  source.onerror = () => { link.textContent = "reconnecting"; link.className = "badge warn"; };
  source.onmessage = (message) => render(JSON.parse(message.data));
}

connect();
