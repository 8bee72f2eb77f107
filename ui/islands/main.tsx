/** @jsxImportSource preact */
/**
 * The dashboard's one script: hydrates the islands the server rendered
 * and keeps the page live. It subscribes to the admin API's change feed
 * (WebSocket /api/events, resuming after the last sequence number on a
 * reconnect); after a change it fetches the page's content again and
 * swaps it in, keeping each island's element (and state) by its key and
 * handing it the new props.
 */
import { hydrate } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { FunctionComponent } from "preact";
import { ISLANDS } from "./registry.ts";

const setters = new WeakMap<Element, (p: object) => void>();

function Host({ C, initial, el }: { C: FunctionComponent; initial: object; el: Element }) {
  const [props, setProps] = useState(initial);
  useEffect(() => void setters.set(el, setProps), []);
  return <C {...props} />;
}

function readProps(el: Element): object {
  try {
    return JSON.parse(el.getAttribute("data-props") ?? "{}");
  } catch {
    return {};
  }
}

function hydrateAll(root: ParentNode): void {
  root.querySelectorAll("[data-island]").forEach((el) => {
    if (setters.has(el) || el.hasAttribute("data-hydrated")) return;
    const C = ISLANDS[el.getAttribute("data-island") ?? ""];
    if (!C) return;
    el.setAttribute("data-hydrated", "");
    hydrate(<Host C={C} initial={readProps(el)} el={el} />, el);
  });
}

const root = document.documentElement;
let refreshing = false;
let again = false;
let timer: ReturnType<typeof setTimeout> | undefined;
let refreshes = 0;

/**
 * A plain (non-island) form the admin is typing into would lose its text
 * in a refresh: while one is focused or edited, refreshes wait.
 */
function editing(): boolean {
  const main = document.getElementById("main");
  if (!main) return false;
  if (main.querySelector("form[data-dirty]")) return true;
  const a = document.activeElement;
  return !!a && main.contains(a) && a.matches("input:not([type=hidden]),select,textarea") &&
    !a.closest("[data-island]");
}

document.addEventListener("input", (e) => {
  const form = (e.target as Element | null)?.closest?.("form");
  if (form && !form.closest("[data-island]")) form.setAttribute("data-dirty", "");
});
document.addEventListener("submit", (e) => (e.target as Element).removeAttribute("data-dirty"));

/** Re-renders <main> from the server, keeping live islands. */
async function refresh(): Promise<void> {
  if (editing()) {
    setLive(root.dataset.live === "on", "● live (paused while you edit)");
    schedule(1000);
    return;
  }
  if (refreshing) {
    again = true;
    return;
  }
  refreshing = true;
  try {
    const res = await fetch(location.href, {
      headers: { "x-pharos-partial": "1" },
      credentials: "same-origin",
    });
    if (res.status === 401 || res.redirected) {
      location.reload();
      return;
    }
    if (!res.ok || !(res.headers.get("content-type") ?? "").includes("text/html")) return;
    swap(await res.text());
    if (root.dataset.live === "on") setLive(true, "● live");
    refreshes++;
    root.dataset.refreshes = String(refreshes);
  } catch {
    // the next change or reconnect tries again
  } finally {
    refreshing = false;
    if (again) {
      again = false;
      schedule(0);
    }
  }
}

function swap(html: string): void {
  const main = document.getElementById("main");
  if (!main) return;
  const tpl = document.createElement("template");
  tpl.innerHTML = html;
  const fresh = tpl.content;
  // Moving a kept island out and back in drops focus; give it back.
  const focused = document.activeElement as HTMLElement | null;
  const old = new Map<string, Element>();
  main.querySelectorAll("[data-island][data-key]").forEach((el) => {
    old.set(el.getAttribute("data-key")!, el);
  });
  fresh.querySelectorAll("[data-island][data-key]").forEach((el) => {
    const kept = old.get(el.getAttribute("data-key")!);
    if (!kept) return;
    const props = readProps(el);
    kept.setAttribute("data-props", el.getAttribute("data-props") ?? "{}");
    el.replaceWith(kept);
    setters.get(kept)?.(props);
  });
  main.replaceChildren(fresh);
  hydrateAll(main);
  if (focused?.isConnected && focused !== document.activeElement) focused.focus();
}

function schedule(ms = 150): void {
  if (timer !== undefined) return;
  timer = setTimeout(() => {
    timer = undefined;
    void refresh();
  }, ms);
}

function setLive(on: boolean, text: string): void {
  root.dataset.live = on ? "on" : "off";
  const el = document.getElementById("live");
  if (el) el.textContent = text;
}

let lastSeq: string | null = null;
let epoch: string | null = null;
let backoff = 500;
let connectedBefore = false;

function connect(): void {
  if (!document.getElementById("live")) return; // signed-out pages have no feed
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const q = new URLSearchParams();
  if (lastSeq !== null) q.set("after", lastSeq);
  if (epoch !== null) q.set("epoch", epoch);
  let ws: WebSocket;
  try {
    ws = new WebSocket(`${proto}//${location.host}/api/events${q.size ? `?${q}` : ""}`);
  } catch {
    return;
  }
  ws.onmessage = (m) => {
    let msg: { type?: string; seq?: number; epoch?: string; data?: unknown };
    try {
      msg = JSON.parse(String(m.data));
    } catch {
      return;
    }
    if (msg.type === "hello") {
      // The feed is open: events from here on reach this tab.
      backoff = 500;
      epoch = msg.epoch ?? null;
      if (lastSeq === null && msg.seq !== undefined) lastSeq = String(msg.seq);
      setLive(true, "● live");
      // Whatever changed while this tab was disconnected (or, on a page that
      // asks, since it was rendered: a running operation) is on the server already.
      if (connectedBefore || document.querySelector("[data-refresh-on-connect]")) schedule(0);
      connectedBefore = true;
      return;
    }
    if (msg.seq !== undefined) {
      lastSeq = String(msg.seq);
      root.dataset.seq = lastSeq;
    }
    document.dispatchEvent(new CustomEvent("pharos:event", { detail: msg }));
    if (msg.type === "observed" && !showsObserved(msg.data)) return;
    schedule();
  };
  ws.onclose = () => {
    setLive(false, "○ reconnecting…");
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10_000);
  };
}

/**
 * Observed-state batches come up to once a second on a busy fleet: only a
 * page that shows a node's observed state (`data-live-observed="<node id>"`)
 * refreshes, for a batch that names that node or names too many to list.
 */
function showsObserved(data: unknown): boolean {
  const d = (data ?? {}) as { node_ids?: unknown; count?: unknown };
  const ids = Array.isArray(d.node_ids) ? d.node_ids.map(String) : [];
  const partial = typeof d.count === "number" && d.count > ids.length;
  for (const el of document.querySelectorAll("[data-live-observed]")) {
    const want = el.getAttribute("data-live-observed") ?? "";
    if (partial || ids.includes(want)) return true;
  }
  return false;
}

globalThis.addEventListener("pharos:refresh", () => schedule(0));
hydrateAll(document);
root.dataset.hydrated = "1";
connect();
