/*
 * Deskhand site chat widget: channels/chat/static/widget.js
 *
 * The shop owner pastes one line on their website:
 *     <script src="https://help.shop.example/chat/widget.js" defer></script>
 * and gets a chat button in the bottom-right corner that talks to the Deskhand daemon it was
 * loaded from. The daemon's side of the HTTP contract is responder/web/chat_api.py; in short,
 * under B = this script's src minus "/chat/widget.js" (and any ?query), JSON both ways, errors as
 * {"error": "<sentence>"}, "Authorization: Bearer <token>" on all but the first two:
 *   GET  B/chat/api/config     -> {title, greeting, max_chars, hours_note, ...}
 *   POST B/chat/api/sessions   {} -> 201 {token}             (first open with no stored token)
 *   GET  B/chat/api/messages?after=<cursor>&wait=0..25
 *        -> {items: [{id, role: visitor|shop, text, client_id | kind, rate, vote}], cursor,
 *            typing, offer_person, handed_off, email, hours_note}; 401: forget the token
 *   POST B/chat/api/messages   {text, client_id} -> 202 {id, client_id}; 400/413/429 {error}
 *   POST B/chat/api/person     {}                -> 202
 *   POST B/chat/api/email      {email}           -> 200 {email}; 400
 *   POST B/chat/api/feedback   {rate, vote: up|down, comment?} -> 200 {vote}; 404
 *
 * Why hand-written rather than a chat component (deep-chat): that one loads Google Fonts into the
 * host page's <head> (a third-party request from every shopper before any consent), renders bot
 * text as markdown (javascript: links) and has no aria-live region or labelled send button.
 *
 * Rules this file keeps (please keep them when editing it):
 * - ASCII only (non-ASCII as \u escapes): a proxy that drops the charset can't garble it.
 * - Plain ES2017 classic script in one IIFE; no build step, no dependencies, no eval/new Function.
 * - DOM only through createElement/textContent/append: never innerHTML, outerHTML,
 *   insertAdjacentHTML or document.write; no inline on* handler attributes (addEventListener only).
 * - No style attributes at all (a strict host CSP blocks them): styles live in one constructed
 *   stylesheet adopted by our shadow root (constructed sheets are not subject to the host page's
 *   style-src); a <style> element in the shadow root is only the fallback for old browsers.
 * - Everything lives in an open shadow root on <div id="deskhand-chat">; system fonts only, never a
 *   web font; no third-party requests.
 * - Text from the server is set with textContent only. The one nicety: http(s) URLs in shop
 *   messages become <a> elements, and only after new URL() proves the protocol.
 * - Nothing is fetched and nothing is written to localStorage before the visitor first opens the
 *   panel (reading localStorage to find an existing session is the one exception). No cookies:
 *   every fetch is mode "cors", credentials "omit", cache "no-store".
 */
(function () {
  "use strict";

  if (window.__deskhandChat) return;          // pasted twice, or loaded by two tags
  window.__deskhandChat = { version: 1 };

  const SCRIPT_PATH = "/chat/widget.js";
  const WAIT_S = 25;                            // long-poll wait (contract: 0..25)
  const MAX_BACKOFF_S = 15;
  const DEFAULT_TITLE = "Chat";
  const DEFAULT_MAX_CHARS = 2000;
  const MAX_COMMENT = 500;
  const NET_ERROR = "Couldn't send \u2014 check your connection.";
  const CONNECT_ERROR = "Couldn't reach the chat \u2014 check your connection.";
  const GENERIC_ERROR = "Something went wrong. Please try again.";
  const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

  const script = findOwnScript();
  if (!script) return;
  const BASE = baseUrlOf(script.src);
  const STORE_KEY = "deskhand.chat:" + BASE;

  const state = {
    token: null,            // session token (also in localStorage once the panel was opened)
    open: false,
    cursor: "",             // opaque cursor from the last GET messages answer
    loopId: 0,              // bumped to stop the running poll loop
    loopRunning: false,
    abort: null,            // AbortController of the in-flight poll
    configLoaded: false,
    hoursFromPoll: false,   // a poll answer's hours_note wins over the config's
    offer: false,           // offer_person from the server
    askedPerson: false,     // the visitor clicked "Talk to a person" on this page
    handedOff: false,
    email: "",
    rendered: new Map(),    // item id -> message element
    pending: new Map(),     // client_id -> optimistic visitor message element
    lastFailed: null,       // {text, clientId, node} of the last send that failed
  };
  let ui = null;
  let sessionPromise = null;
  let uid = 0;

  class ChatError extends Error {}             // a sentence from the server, shown as is

  function str(value) {
    return typeof value === "string" ? value : "";
  }

  /** What to tell the visitor about a failed call: the server's sentence, else `fallback`. */
  function sentence(err, fallback) {
    return err instanceof ChatError ? err.message : fallback;
  }

  // ---- where we were loaded from ---------------------------------------------------------

  function findOwnScript() {
    if (document.currentScript && document.currentScript.src) return document.currentScript;
    const scripts = document.getElementsByTagName("script");
    for (let i = scripts.length - 1; i >= 0; i--) {
      const src = (scripts[i].src || "").split(/[?#]/)[0];
      if (src.endsWith(SCRIPT_PATH)) return scripts[i];
    }
    return null;
  }

  function baseUrlOf(src) {
    const url = new URL(src, document.baseURI);
    let path = url.pathname;
    if (path.endsWith(SCRIPT_PATH)) path = path.slice(0, -SCRIPT_PATH.length);
    else path = path.replace(/\/[^/]*$/, "").replace(/\/chat$/, "");
    return url.origin + path;
  }

  // ---- localStorage: {token, open} under "deskhand.chat:" + B ------------------------------

  function readStore() {
    try {
      const saved = JSON.parse(window.localStorage.getItem(STORE_KEY) || "null");
      if (saved && typeof saved.token === "string" && saved.token) {
        return { token: saved.token, open: saved.open === true };
      }
    } catch (_) { /* storage blocked or garbage: no session */ }
    return null;
  }

  function writeStore() {
    if (!state.token) return;
    try {
      window.localStorage.setItem(STORE_KEY, JSON.stringify({ token: state.token, open: state.open }));
    } catch (_) { /* storage blocked: the chat still works for this page */ }
  }

  /** Drop a token the server refused (only if it is still the current one); its poll loop ends. */
  function forgetSession(token) {
    if (!token || state.token !== token) return;
    stopLoop();
    state.token = null;
    state.cursor = "";
    try { window.localStorage.removeItem(STORE_KEY); } catch (_) { /* ignore */ }
  }

  // ---- HTTP ----------------------------------------------------------------------------

  /** One fetch to B + path. Resolves {status, ok, data}; rejects on network failure/abort. */
  async function api(method, path, body, opts) {
    opts = opts || {};
    const headers = { "Content-Type": "application/json" };
    if (opts.token) headers.Authorization = "Bearer " + opts.token;
    const init = { method: method, mode: "cors", credentials: "omit", cache: "no-store", headers: headers };
    if (opts.signal) init.signal = opts.signal;
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(BASE + path, init);
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    return { status: res.status, ok: res.ok, data: data && typeof data === "object" ? data : {} };
  }

  function errorOf(res) {
    return new ChatError(str(res.data.error) || GENERIC_ERROR);
  }

  /** A call with the session token; on 401 forget it, make a new session and retry once. */
  async function authed(method, path, body) {
    const token = await ensureSession();
    const res = await api(method, path, body, { token: token });
    if (res.status !== 401) return res;
    forgetSession(token);
    const fresh = await ensureSession();
    startLoop();
    return api(method, path, body, { token: fresh });
  }

  function ensureSession() {
    if (state.token) return Promise.resolve(state.token);
    if (!sessionPromise) {
      sessionPromise = createSession();
      const done = function () { sessionPromise = null; };
      sessionPromise.then(done, done);
    }
    return sessionPromise;
  }

  async function createSession() {
    const res = await api("POST", "/chat/api/sessions", {});
    if (!res.ok || !str(res.data.token)) throw errorOf(res);
    state.token = res.data.token;
    state.cursor = "";
    writeStore();
    return state.token;
  }

  /** GET config once, lazily on the first open; on failure keep the defaults, retry next open. */
  let configRequest = null;
  function loadConfig() {
    if (state.configLoaded || configRequest) return;
    configRequest = api("GET", "/chat/api/config").then(function (res) {
      configRequest = null;
      if (!res.ok) return;
      state.configLoaded = true;
      applyConfig(res.data);
    }, function () { configRequest = null; });
  }

  // ---- the poll loop (one, only while the panel is open) ------------------------------------

  function startLoop() {
    if (!state.open || !state.token || state.loopRunning) return;
    const id = ++state.loopId;
    state.loopRunning = true;
    pollLoop(id).then(function () {
      if (state.loopId === id) state.loopRunning = false;
    });
  }

  function stopLoop() {
    state.loopId++;
    state.loopRunning = false;
    if (state.abort) state.abort.abort();
    state.abort = null;
  }

  function loopAlive(id) {
    return id === state.loopId && state.open && !!state.token;
  }

  async function pollLoop(id) {
    let wait = 0;                 // the first call loads history at once
    let backoff = 1;
    while (loopAlive(id)) {
      const token = state.token;
      const ctrl = new AbortController();
      state.abort = ctrl;
      const timer = setTimeout(function () { ctrl.abort(); }, (wait + 15) * 1000);
      let failed = false;
      try {
        const path = "/chat/api/messages?after=" + encodeURIComponent(state.cursor) + "&wait=" + wait;
        const res = await api("GET", path, undefined, { token: token, signal: ctrl.signal });
        if (!loopAlive(id) || state.token !== token) break;
        if (res.status === 401) {
          forgetSession(token);   // a new session is made on the next send (or open)
        } else if (res.ok) {
          applyAnswer(res.data);
          wait = WAIT_S;
          backoff = 1;
        } else {
          failed = true;
        }
      } catch (_) {
        failed = true;            // network error, timeout, or closed (then loopAlive is false)
      } finally {
        clearTimeout(timer);
        if (state.abort === ctrl) state.abort = null;
      }
      if (failed && loopAlive(id)) {
        await sleep(backoff * 1000);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_S);
      }
    }
  }

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  /** Apply one GET messages answer: new items, cursor and the conversation's flags. */
  function applyAnswer(data) {
    const stick = state.cursor === "" || isNearEnd();   // history, or the visitor is at the end
    const items = Array.isArray(data.items) ? data.items : [];
    for (const item of items) renderItem(item);
    if (typeof data.cursor === "string") state.cursor = data.cursor;
    setTyping(data.typing === true);
    state.offer = data.offer_person === true;
    state.handedOff = data.handed_off === true;
    state.email = str(data.email);
    if (typeof data.hours_note === "string") {
      state.hoursFromPoll = true;
      setHours(data.hours_note);
    }
    updateOffer();
    updateEmailArea();
    if (stick) scrollToEnd();
  }

  // ---- DOM helpers ---------------------------------------------------------------------

  /** createElement with attributes; "text" sets textContent, "class" the class list. */
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "style" || key.startsWith("on")) throw new Error("deskhand: refused attribute " + key);
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function nextId(prefix) {
    uid += 1;
    return "dh-" + prefix + "-" + uid;
  }

  function randomId() {
    const bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return "c-" + Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  /** The launcher's speech-bubble icon (SVG built node by node, like everything else). */
  function chatIcon() {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    const path = document.createElementNS(ns, "path");
    const attrs = { viewBox: "0 0 24 24", width: "26", height: "26", "aria-hidden": "true", focusable: "false" };
    for (const [key, value] of Object.entries(attrs)) svg.setAttribute(key, value);
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H10l-5 4v-4H4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2z");
    svg.append(path);
    return svg;
  }

  // ---- styles --------------------------------------------------------------------------

  const ACCENT = "#1f4e79";
  const CSS = [
    ":host{all:initial}",
    "*,*::before,*::after{box-sizing:border-box}",
    "[hidden]{display:none!important}",
    ".launcher,.panel{font:15px/1.4 " + FONT + ";color:#1d2330}",
    "button,input,textarea{font:inherit;color:inherit}",
    "button{cursor:pointer}",
    ".sr{position:absolute;width:1px;height:1px;margin:-1px;padding:0;border:0;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    ":focus-visible{outline:3px solid #0b57d0;outline-offset:2px}",
    ".head :focus-visible,.launcher:focus-visible{outline-color:#fff;box-shadow:0 0 0 5px #0b57d0}",

    ".launcher{position:fixed;right:20px;bottom:20px;z-index:2147483000;width:56px;height:56px;",
    "border:0;border-radius:50%;background:" + ACCENT + ";color:#fff;display:flex;align-items:center;",
    "justify-content:center;box-shadow:0 4px 14px rgba(0,0,0,.25)}",

    ".panel{position:fixed;right:20px;bottom:88px;z-index:2147483001;width:370px;",
    "height:min(600px,calc(100vh - 110px));display:flex;flex-direction:column;background:#fff;",
    "border-radius:12px;overflow:hidden;box-shadow:0 8px 30px rgba(0,0,0,.3)}",
    "@media (max-width:479.98px){.panel{top:0;right:0;bottom:0;left:0;width:100%;height:100%;border-radius:0}}",

    ".head{display:flex;align-items:center;gap:8px;padding:10px 10px 10px 14px;background:" + ACCENT + ";color:#fff}",
    ".title{flex:1;min-width:0;font-weight:600;overflow-wrap:anywhere}",
    ".person{flex:none;border:0;border-radius:999px;padding:6px 11px;background:#fff;color:" + ACCENT + ";font-size:13px;font-weight:600}",
    ".close{flex:none;width:32px;height:32px;border:0;border-radius:6px;background:transparent;color:#fff;font-size:22px;line-height:1}",

    ".log{flex:1;min-height:0;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f5f6f8}",
    ".msg,.greeting{max-width:85%;padding:8px 11px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere}",
    ".msg.visitor{align-self:flex-end;background:" + ACCENT + ";color:#fff;border-bottom-right-radius:4px}",
    ".msg.shop,.greeting{align-self:flex-start;background:#fff;border:1px solid #d9dee5;border-bottom-left-radius:4px}",
    ".msg.owner{border-color:" + ACCENT + "}",
    ".msg.holding{color:#3d4757}",
    ".msg.pending{opacity:.7}",
    ".msg.failed{background:#fff;color:#8a1c12;border:1px dashed #8a1c12}",
    ".msg.failed::after{content:' (not sent)';font-size:12px}",
    ".msg a{color:inherit;text-decoration:underline}",
    ".rate{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin-top:6px;white-space:normal}",
    ".rate>button{border:1px solid #c9d0da;border-radius:999px;padding:1px 9px;background:#fff;font-size:14px}",
    ".rate>.up::before{content:'\\1F44D'}.rate>.down::before{content:'\\1F44E'}",   /* thumbs up, thumbs down */
    ".rate>button[aria-pressed=true]{background:#dfe9f5;border-color:" + ACCENT + "}",
    ".why{display:flex;flex-wrap:wrap;gap:6px;width:100%;font-size:13px}",
    ".why label{width:100%}",
    ".why input{flex:1;min-width:0;padding:4px 7px;border:1px solid #9aa4b1;border-radius:6px}",
    ".why button,.email button{border:0;border-radius:6px;padding:4px 10px;background:" + ACCENT + ";color:#fff}",
    ".thanks{font-size:13px;color:#4a5566}",

    ".offer{display:flex;align-items:center;justify-content:space-between;gap:8px;padding:10px 12px;",
    "background:#fff6dc;border-top:1px solid #ecd9a0;font-weight:600}",
    ".offer button{flex:none;border:0;border-radius:8px;padding:8px 12px;background:" + ACCENT + ";color:#fff;font-weight:600}",
    ".typing{min-height:20px;padding:0 14px;font-size:13px;color:#4a5566;background:#f5f6f8}",
    ".hours{margin:0;padding:6px 14px;font-size:13px;background:#eaf0f7}",
    ".email,.emailed{margin:0;padding:10px 12px;border-top:1px solid #d9dee5;font-size:13px}",
    ".email p{margin:0 0 6px}",
    ".email label{display:block;margin-bottom:4px;font-weight:600}",
    ".email .row{display:flex;gap:6px}",
    ".email input{flex:1;min-width:0;padding:6px 8px;border:1px solid #9aa4b1;border-radius:6px}",
    ".notice{margin:0;padding:8px 14px;background:#fdecea;color:#8a1c12;font-size:13px}",

    ".compose{display:flex;align-items:flex-end;gap:8px;padding:10px 12px;border-top:1px solid #d9dee5}",
    ".compose textarea{flex:1;min-width:0;resize:none;padding:8px 10px;border:1px solid #9aa4b1;border-radius:8px}",
    ".send{border:0;border-radius:8px;padding:9px 14px;background:" + ACCENT + ";color:#fff;font-weight:600}",
  ].join("\n");

  function adoptStyles(shadow) {
    try {
      if ("adoptedStyleSheets" in shadow && typeof CSSStyleSheet === "function") {
        const sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
        shadow.adoptedStyleSheets = [sheet];
        return;
      }
    } catch (_) { /* constructable stylesheets unsupported: fall through */ }
    shadow.append(el("style", { text: CSS }));
  }

  // ---- building the widget -------------------------------------------------------------

  function mount() {
    const host = el("div", { id: "deskhand-chat" });
    const shadow = host.attachShadow({ mode: "open" });
    adoptStyles(shadow);
    ui = buildUi();
    shadow.append(ui.launcher, ui.panel);
    document.body.append(host);
  }

  function buildUi() {
    const panelId = nextId("panel");
    const textId = nextId("text");
    const parts = {};

    parts.launcher = el("button", {
      type: "button", class: "launcher", "aria-label": "Open chat",
      "aria-expanded": "false", "aria-controls": panelId,
    }, [chatIcon()]);
    parts.launcher.addEventListener("click", function () {
      if (state.open) closePanel(false);
      else openPanel(true);
    });

    parts.title = el("div", { class: "title", text: DEFAULT_TITLE });
    const person = el("button", { type: "button", class: "person", text: "Talk to a person" });
    person.addEventListener("click", askPerson);
    const close = el("button", { type: "button", class: "close", "aria-label": "Close chat", text: "\u00d7" });
    close.addEventListener("click", function () { closePanel(true); });

    parts.log = el("div", {
      class: "log", role: "log", "aria-live": "polite", "aria-relevant": "additions",
      "aria-label": "Messages", tabindex: "0",
    });
    parts.typing = el("div", { class: "typing", role: "status" });
    parts.emailArea = el("div", { class: "email-area" });
    parts.noticeArea = el("div", { class: "notice-area" });

    parts.text = el("textarea", { id: textId, name: "text", rows: "2", maxlength: String(DEFAULT_MAX_CHARS) });
    parts.text.addEventListener("keydown", onComposeKey);
    parts.form = el("form", { class: "compose" }, [
      el("label", { for: textId, class: "sr", text: "Your message" }),
      parts.text,
      el("button", { type: "submit", class: "send", text: "Send" }),
    ]);
    parts.form.addEventListener("submit", function (event) {
      event.preventDefault();
      submitCompose();
    });

    parts.panel = el("div", {
      id: panelId, class: "panel", role: "dialog", "aria-label": DEFAULT_TITLE, hidden: true,
    }, [
      el("div", { class: "head" }, [parts.title, person, close]),
      parts.log, parts.typing, parts.emailArea, parts.noticeArea, parts.form,
    ]);
    parts.panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        closePanel(true);
      }
    });
    parts.greeting = null;
    parts.hours = null;
    parts.offer = null;
    return parts;
  }

  function applyConfig(cfg) {
    const title = str(cfg.title) || DEFAULT_TITLE;
    ui.title.textContent = title;
    ui.panel.setAttribute("aria-label", title);
    const max = Number(cfg.max_chars);
    if (Number.isInteger(max) && max > 0) ui.text.maxLength = max;
    if (str(cfg.greeting) && !ui.greeting) {
      ui.greeting = el("div", { class: "greeting", text: cfg.greeting });
      ui.log.prepend(ui.greeting);
    }
    if (!state.hoursFromPoll && typeof cfg.hours_note === "string") setHours(cfg.hours_note);
  }

  // ---- open / close --------------------------------------------------------------------

  function openPanel(focus) {
    if (state.open) return;
    state.open = true;
    ui.panel.hidden = false;
    ui.launcher.setAttribute("aria-expanded", "true");
    if (focus) ui.text.focus();
    scrollToEnd();
    loadConfig();
    ensureSession().then(function () {
      writeStore();
      startLoop();
    }, function (err) {
      showNotice(sentence(err, CONNECT_ERROR));
    });
  }

  function closePanel(returnFocus) {
    if (!state.open) return;
    state.open = false;
    ui.panel.hidden = true;
    ui.launcher.setAttribute("aria-expanded", "false");
    stopLoop();
    writeStore();
    if (returnFocus) ui.launcher.focus();
  }

  function onComposeKey(event) {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    submitCompose();
  }

  // ---- messages ------------------------------------------------------------------------

  function isNearEnd() {
    const log = ui.log;
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }

  function scrollToEnd() {
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  function renderItem(item) {
    if (!item || (typeof item.id !== "string" && typeof item.id !== "number")) return;
    const id = String(item.id);
    const pending = item.role === "visitor" && item.client_id ? state.pending.get(item.client_id) : null;
    if (pending) {
      confirmPending(pending, item);
      return;
    }
    if (state.rendered.has(id)) return;          // never show an item twice
    const node = buildMessage(item);
    state.rendered.set(id, node);
    ui.log.append(node);                          // applyAnswer scrolls once for the batch
  }

  function buildMessage(item) {
    const role = item.role === "visitor" ? "visitor" : "shop";
    const node = el("div", { class: "msg " + role, "data-id": String(item.id) });
    if (role === "shop" && /^[a-z][a-z-]*$/.test(str(item.kind))) node.classList.add(item.kind);
    fillText(node, str(item.text), role === "shop");
    if (role === "shop" && item.rate !== null && item.rate !== undefined) {
      node.append(buildRating(String(item.rate), item.vote));
    }
    return node;
  }

  /** The optimistic copy becomes the server's item (same client_id): confirmed, never doubled. */
  function confirmPending(node, item) {
    state.pending.delete(item.client_id);
    node.classList.remove("pending", "failed");
    node.setAttribute("data-id", String(item.id));
    if (typeof item.text === "string") fillText(node, item.text, false);
    state.rendered.set(String(item.id), node);
    const failed = state.lastFailed;
    if (failed && failed.clientId === item.client_id) {
      // the send only looked failed (the answer was lost): it did arrive after all
      state.lastFailed = null;
      if (ui.text.value.trim() === failed.text) ui.text.value = "";
      clearNotice();
    }
  }

  const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

  /** Set node's text; in shop messages http(s) URLs become links. Text nodes only otherwise. */
  function fillText(node, text, linkify) {
    node.textContent = "";
    if (!linkify) {
      node.append(text);
      return;
    }
    let last = 0;
    let match;
    URL_RE.lastIndex = 0;
    while ((match = URL_RE.exec(text)) !== null) {
      const raw = trimUrl(match[0]);
      const href = safeHttpUrl(raw);
      if (!href) continue;
      node.append(text.slice(last, match.index));
      node.append(el("a", { href: href, target: "_blank", rel: "noopener noreferrer nofollow", text: raw }));
      last = match.index + raw.length;
      URL_RE.lastIndex = last;
    }
    node.append(text.slice(last));
  }

  /** Drop sentence punctuation after a URL ("see https://x.example/a." -> without the dot). */
  function trimUrl(raw) {
    let url = raw;
    for (;;) {
      const tail = url.slice(-1);
      if (".,;:!?'\"]}".includes(tail)) url = url.slice(0, -1);
      else if (tail === ")" && url.split("(").length < url.split(")").length) url = url.slice(0, -1);
      else return url;
    }
  }

  function safeHttpUrl(raw) {
    try {
      const url = new URL(raw);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  // ---- sending -------------------------------------------------------------------------

  async function submitCompose() {
    const text = ui.text.value.trim();
    if (!text) return;
    // Sending the text of the last failed message again retries it: same bubble, same client_id
    // (the server answers a retry with the same client_id with the same id: no double message).
    const retry = state.lastFailed && state.lastFailed.text === text && state.lastFailed.node.isConnected
      ? state.lastFailed : null;
    const clientId = retry ? retry.clientId : randomId();
    let node;
    if (retry) {
      node = retry.node;
      node.classList.remove("failed");
      node.classList.add("pending");
    } else {
      node = el("div", { class: "msg visitor pending" });
      node.append(text);
      ui.log.append(node);
      scrollToEnd();
    }
    state.pending.set(clientId, node);
    state.lastFailed = null;
    ui.text.value = "";
    clearNotice();
    try {
      const res = await authed("POST", "/chat/api/messages", { text: text, client_id: clientId });
      if (!res.ok) throw errorOf(res);
      if (state.pending.has(clientId) && res.data.id !== undefined && res.data.id !== null) {
        node.setAttribute("data-id", String(res.data.id));
      }
      startLoop();
    } catch (err) {
      failSend(node, clientId, text, err);
    }
  }

  function failSend(node, clientId, text, err) {
    if (!state.pending.has(clientId)) return;     // the poll already confirmed it
    node.classList.remove("pending");
    node.classList.add("failed");
    state.lastFailed = { text: text, clientId: clientId, node: node };
    if (!ui.text.value) ui.text.value = text;    // keep the text recoverable
    showNotice(sentence(err, NET_ERROR));
  }

  // ---- "Talk to a person" --------------------------------------------------------------

  let personBusy = false;

  async function askPerson() {
    if (personBusy) return;
    personBusy = true;
    const hadFocus = ui.offer && ui.offer.contains(ui.panel.getRootNode().activeElement);
    state.askedPerson = true;
    updateOffer();
    if (hadFocus) ui.text.focus();
    try {
      const res = await authed("POST", "/chat/api/person", {});
      if (!res.ok) throw errorOf(res);
      clearNotice();
      startLoop();
    } catch (err) {
      state.askedPerson = false;
      updateOffer();
      showNotice(sentence(err, NET_ERROR));
    } finally {
      personBusy = false;
    }
  }

  function updateOffer() {
    const show = state.offer && !state.askedPerson && !state.handedOff;
    if (show && !ui.offer) {
      const button = el("button", { type: "button", text: "Talk to a person" });
      button.addEventListener("click", askPerson);
      ui.offer = el("div", { class: "offer" }, [el("span", { text: "Would you like to talk to a person?" }), button]);
      ui.log.after(ui.offer);
    } else if (!show && ui.offer) {
      ui.offer.remove();
      ui.offer = null;
    }
  }

  // ---- thumbs --------------------------------------------------------------------------

  function buildRating(rate, vote) {
    const box = el("div", { class: "rate" });
    // The thumbs are drawn by the stylesheet (::before), so a message's text stays exactly its text.
    const up = el("button", { type: "button", class: "up", "aria-label": "Helpful", "aria-pressed": String(vote === "up") });
    const down = el("button", { type: "button", class: "down", "aria-label": "Not helpful", "aria-pressed": String(vote === "down") });
    up.addEventListener("click", function () { castVote(box, rate, "up"); });
    down.addEventListener("click", function () { castVote(box, rate, "down"); });
    box.append(up, down);
    return box;
  }

  async function castVote(box, rate, vote) {
    const res = await sendFeedback({ rate: rate, vote: vote });
    if (!res) return;
    setPressed(box, res.data.vote === "up" || res.data.vote === "down" ? res.data.vote : vote);
    clearRateExtras(box);
    if (vote === "down") showWhyForm(box, rate);
    else box.append(el("span", { class: "thanks", role: "status", text: "Thanks for telling us." }));
  }

  async function sendFeedback(body) {
    try {
      const res = await authed("POST", "/chat/api/feedback", body);
      if (!res.ok) throw errorOf(res);
      clearNotice();
      return res;
    } catch (err) {
      showNotice(sentence(err, NET_ERROR));
      return null;
    }
  }

  function setPressed(box, vote) {
    box.querySelector(".up").setAttribute("aria-pressed", String(vote === "up"));
    box.querySelector(".down").setAttribute("aria-pressed", String(vote === "down"));
  }

  function clearRateExtras(box) {
    for (const extra of Array.from(box.querySelectorAll(".why, .thanks"))) extra.remove();
  }

  function showWhyForm(box, rate) {
    const inputId = nextId("why");
    const input = el("input", { id: inputId, type: "text", name: "comment", maxlength: String(MAX_COMMENT) });
    const form = el("form", { class: "why" }, [
      el("label", { for: inputId, text: "What was wrong? (optional)" }),
      input,
      el("button", { type: "submit", text: "Send" }),
    ]);
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const comment = input.value.trim().slice(0, MAX_COMMENT);
      const body = { rate: rate, vote: "down" };
      if (comment) body.comment = comment;
      const res = await sendFeedback(body);
      if (!res) return;
      const hadFocus = form.contains(ui.panel.getRootNode().activeElement);
      clearRateExtras(box);
      const thanks = el("span", { class: "thanks", role: "status", tabindex: "-1", text: "Thanks for telling us." });
      box.append(thanks);
      if (hadFocus) thanks.focus();
    });
    box.append(form);
    input.focus();
  }

  // ---- status lines: typing, hours, notice, email --------------------------------------

  function setTyping(typing) {
    const text = typing ? "Typing\u2026" : "";
    if (ui.typing.textContent !== text) ui.typing.textContent = text;
  }

  function setHours(note) {
    if (note && !ui.hours) {
      ui.hours = el("p", { class: "hours" });
      ui.typing.after(ui.hours);
    } else if (!note && ui.hours) {
      ui.hours.remove();
      ui.hours = null;
    }
    if (ui.hours && ui.hours.textContent !== note) ui.hours.textContent = note;
  }

  function showNotice(text) {
    clearNotice();
    ui.noticeArea.append(el("p", { class: "notice", role: "alert", text: text }));
  }

  function clearNotice() {
    ui.noticeArea.textContent = "";
  }

  /** handed_off without an email: the form; an email on file: the line saying so; else nothing. */
  function updateEmailArea() {
    const area = ui.emailArea;
    if (state.email) {
      const line = "We'll email you at " + state.email + " if you've left.";
      const current = area.querySelector(".emailed");
      if (current && current.textContent === line) return;
      area.textContent = "";
      area.append(el("p", { class: "emailed", role: "status", text: line }));
    } else if (state.handedOff) {
      if (!area.querySelector("form.email")) {
        area.textContent = "";
        area.append(buildEmailForm());
      }
    } else {
      area.textContent = "";
    }
  }

  function buildEmailForm() {
    const inputId = nextId("email");
    const input = el("input", { id: inputId, type: "email", name: "email", required: true, autocomplete: "email" });
    const form = el("form", { class: "email" }, [
      el("p", { text: "Leave your email and we'll send the answer there if you've gone by then." }),
      el("label", { for: inputId, text: "Your email" }),
      el("div", { class: "row" }, [input, el("button", { type: "submit", text: "Save" })]),
    ]);
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      const address = input.value.trim();
      if (!address) return;
      try {
        const res = await authed("POST", "/chat/api/email", { email: address });
        if (!res.ok) throw errorOf(res);
        clearNotice();
        const hadFocus = form.contains(ui.panel.getRootNode().activeElement);
        state.email = str(res.data.email) || address;
        updateEmailArea();                      // the form is replaced by the line saying so
        if (hadFocus) ui.text.focus();
      } catch (err) {
        showNotice(sentence(err, NET_ERROR));
      }
    });
    return form;
  }

  // ---- start ---------------------------------------------------------------------------

  function start() {
    const saved = readStore();                  // reading is allowed before the first open
    if (saved) state.token = saved.token;
    mount();
    if (saved && saved.open) openPanel(false);  // returning visitor: reopen, without taking focus
  }

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start, { once: true });
})();
