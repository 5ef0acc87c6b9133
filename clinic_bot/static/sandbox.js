// The patient simulator: a phone-like chat over the sandbox's patient API.
// Vanilla JS, no build step. Message text is only ever set with textContent, never innerHTML.
"use strict";

(() => {
  const POLL_MS = 700;
  const EAGER_POLL_MS = 150; // right after the patient acts, the clinic's answer is due soon
  const EAGER_FOR_MS = 3000;
  const DEFAULT_PHONE = "4915100000001"; // +49 151 00000001
  const STORE_PHONES = "clinic_bot.sandbox.phones";
  const STORE_CURRENT = "clinic_bot.sandbox.current";
  const PATIENTS_URL = document.body.dataset.patients;
  const SETTINGS_URL = document.body.dataset.settings;
  const TICKS = {
    pending: ["🕓", "pending"],
    sent: ["✓", "sent"],
    delivered: ["✓✓", "delivered"],
    read: ["✓✓", "read"],
    played: ["✓✓", "played"],
    failed: ["!", "failed"],
  };
  const INBOUND_LABELS = {
    voice: "🎤 Voice note",
    audio: "🎵 Audio",
    sticker: "🙂 Sticker",
    image: "🖼 Photo",
    video: "🎬 Video",
    gif: "GIF",
    document: "📄 Document",
    location: "📍 Location",
    action: "Reaction",
  };

  const $ = (id) => document.getElementById(id);
  const state = {
    phones: [],
    current: null,
    lastId: 0,
    generation: 0, // bumped on every patient switch, so late answers for the old chat are dropped
    timer: null,
    eagerUntil: 0,
    rendered: new Map(), // transcript id -> {item, tick element}
  };

  // ------------------------------------------------------------------ small helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function digitsOf(phone) {
    return String(phone).replace(/[^\d]/g, "").replace(/^00/, "");
  }

  function pretty(digits) {
    return "+" + digits;
  }

  function clock(iso) {
    const when = new Date(iso);
    if (Number.isNaN(when.getTime())) return "";
    return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function messagesUrl(phone) {
    return `${PATIENTS_URL}/${encodeURIComponent(phone)}/messages`;
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return (body.error && body.error.message) || `HTTP ${response.status}`;
    } catch {
      return `HTTP ${response.status}`;
    }
  }

  function showError(id, text) {
    const node = $(id);
    node.textContent = text || "";
    node.hidden = !text;
  }

  // ------------------------------------------------------------------ patients

  function savePhones() {
    localStorage.setItem(STORE_PHONES, JSON.stringify(state.phones));
    if (state.current) localStorage.setItem(STORE_CURRENT, state.current);
  }

  function addPhone(digits) {
    if (!state.phones.includes(digits)) state.phones.push(digits);
  }

  function renderPatients() {
    const list = $("patient-list");
    list.replaceChildren();
    for (const phone of state.phones) {
      const current = phone === state.current;
      const button = el(
        "button",
        {
          type: "button",
          class: "patient",
          "aria-current": current ? "true" : null,
          "aria-label": `Chat as ${pretty(phone)}`,
          onclick: () => selectPatient(phone),
        },
        el("span", { class: "avatar small", "aria-hidden": "true", text: "👤" }),
        el("span", { text: pretty(phone) }),
      );
      list.append(el("li", {}, button));
    }
  }

  async function loadKnownPatients() {
    try {
      const stored = JSON.parse(localStorage.getItem(STORE_PHONES) || "[]");
      if (Array.isArray(stored)) stored.map(digitsOf).filter(Boolean).forEach(addPhone);
    } catch {
      // a broken saved list is simply forgotten
    }
    addPhone(DEFAULT_PHONE);
    try {
      const response = await fetch(PATIENTS_URL, { cache: "no-store" });
      if (response.ok) (await response.json()).patients.forEach(addPhone);
    } catch {
      // the server is starting; the saved list is enough for now
    }
  }

  async function onAddPatient(event) {
    event.preventDefault();
    const input = $("new-phone");
    const digits = digitsOf(input.value);
    if (!digits) {
      showError("add-error", "Type a phone number, like +49 151 00000002.");
      return;
    }
    // The server decides what a phone number is; an invalid one answers 400 with the reason.
    const response = await fetch(messagesUrl(digits), { cache: "no-store" });
    if (!response.ok) {
      showError("add-error", await errorText(response));
      return;
    }
    showError("add-error", "");
    input.value = "";
    addPhone(digits);
    selectPatient(digits);
  }

  function selectPatient(phone) {
    state.generation += 1;
    state.current = phone;
    state.lastId = 0;
    state.rendered.clear();
    $("messages").replaceChildren();
    $("chat-subtitle").textContent = `chatting as ${pretty(phone)}`;
    $("text").disabled = false;
    showError("send-error", "");
    if (location.hash !== `#${phone}`) history.replaceState(null, "", `#${phone}`);
    savePhones();
    renderPatients();
    poll();
    $("text").focus();
  }

  // ------------------------------------------------------------------ the transcript

  function tickFor(status) {
    const [mark, label] = TICKS[status] || ["", status];
    return el("span", {
      class: `tick tick-${status}`,
      text: mark,
      title: label,
      "aria-label": `status: ${label}`,
    });
  }

  function documentChip(item) {
    const doc = item.document || {};
    const filename = doc.filename || "document";
    const chip = el(
      "span",
      { class: "file-chip" },
      el("span", { class: "file-icon", "aria-hidden": "true", text: "📄" }),
      el(
        "span",
        { class: "file-text" },
        el("span", { class: "file-name", text: filename }),
        el("span", { class: "file-type", text: doc.mime_type || "" }),
      ),
    );
    // Only inline data URIs become download links: never a script or remote URL.
    if (typeof item.media === "string" && item.media.startsWith("data:")) {
      return el("a", { class: "file-link", href: item.media, download: filename }, chip);
    }
    return chip;
  }

  function choiceButtons(item) {
    const group = el("div", {
      class: "choices",
      role: "group",
      "aria-label": "Quick replies",
    });
    for (const choice of item.buttons) {
      group.append(
        el("button", {
          type: "button",
          class: "choice",
          text: choice.title,
          onclick: () => send({ button: { id: choice.id, message_id: item.message_id } }),
        }),
      );
    }
    return group;
  }

  function listOpener(item) {
    const label = item.list.label || "Choose";
    return el(
      "div",
      { class: "choices" },
      el("button", {
        type: "button",
        class: "choice list-open",
        text: `☰ ${label}`,
        "aria-haspopup": "dialog",
        onclick: () => openList(item),
      }),
    );
  }

  function openList(item) {
    const dialog = $("list-dialog");
    $("list-dialog-title").textContent = item.list.label || "Choose";
    const holder = $("list-sections");
    holder.replaceChildren();
    for (const section of item.list.sections || []) {
      const rows = el("ul", { class: "list-rows" });
      for (const row of section.rows || []) {
        const pick = () => {
          dialog.close();
          send({ list: { id: row.id, message_id: item.message_id } });
        };
        rows.append(
          el(
            "li",
            {},
            el(
              "button",
              { type: "button", class: "list-row", onclick: pick },
              el("span", { class: "row-title", text: row.title }),
              row.description ? el("span", { class: "row-desc", text: row.description }) : null,
            ),
          ),
        );
      }
      const title = section.title ? el("h4", { text: section.title }) : null;
      holder.append(el("section", { class: "list-section" }, title, rows));
    }
    dialog.showModal();
  }

  function bubbleFor(item) {
    const fromClinic = item.direction === "out";
    const bubble = el("div", { class: "bubble" });
    let text = item.text || "";
    if (!fromClinic && INBOUND_LABELS[item.kind] && /^\[.*\]$/.test(text)) {
      text = INBOUND_LABELS[item.kind];
    }
    if (text) bubble.append(el("p", { class: "text", text }));
    if (item.document) bubble.append(documentChip(item));
    const meta = el("span", { class: "meta" }, el("time", { datetime: item.at, text: clock(item.at) }));
    let tick = null;
    if (fromClinic) {
      tick = tickFor(item.status);
      meta.append(tick);
    }
    bubble.append(meta);
    const li = el(
      "li",
      {
        class: `msg ${fromClinic ? "from-clinic" : "from-patient"}`,
        "data-id": item.id,
        "aria-label": fromClinic ? "Clinic says" : "You say",
      },
      bubble,
    );
    if (fromClinic && item.buttons && item.buttons.length) li.append(choiceButtons(item));
    if (fromClinic && item.list) li.append(listOpener(item));
    return { li, tick };
  }

  function addMessage(item) {
    if (state.rendered.has(item.id)) return;
    const { li, tick } = bubbleFor(item);
    state.rendered.set(item.id, { item, tick });
    $("messages").append(li);
    state.lastId = Math.max(state.lastId, item.id);
  }

  function addNote(text) {
    $("messages").append(el("li", { class: "note", role: "note", text }));
  }

  function updateStatuses(statuses) {
    for (const [id, status] of Object.entries(statuses)) {
      const entry = state.rendered.get(Number(id));
      if (!entry || !entry.tick || entry.item.status === status) continue;
      entry.item.status = status;
      const fresh = tickFor(status);
      entry.tick.replaceWith(fresh);
      entry.tick = fresh;
    }
  }

  function schedule(delay) {
    clearTimeout(state.timer);
    state.timer = setTimeout(poll, delay);
  }

  async function poll() {
    const generation = state.generation;
    const phone = state.current;
    try {
      const response = await fetch(`${messagesUrl(phone)}?after=${state.lastId}`, {
        cache: "no-store",
      });
      if (generation !== state.generation || !response.ok) return;
      const data = await response.json();
      if (generation !== state.generation) return;
      const box = $("messages");
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
      data.messages.forEach(addMessage);
      updateStatuses(data.statuses || {});
      const mine = data.messages.some((m) => m.direction === "in");
      if (data.messages.length && (atBottom || mine)) {
        box.scrollTop = box.scrollHeight;
      }
    } catch {
      // the server may be restarting: keep polling
    } finally {
      if (generation === state.generation) {
        schedule(performance.now() < state.eagerUntil ? EAGER_POLL_MS : POLL_MS);
      }
    }
  }

  // ------------------------------------------------------------------ sending

  async function send(action) {
    const phone = state.current;
    let response;
    try {
      response = await fetch(messagesUrl(phone), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(action),
      });
    } catch {
      showError("send-error", "The server did not answer; is the app running?");
      return false;
    }
    if (!response.ok) {
      showError("send-error", await errorText(response));
      return false;
    }
    showError("send-error", "");
    state.eagerUntil = performance.now() + EAGER_FOR_MS;
    if (phone === state.current) poll(); // show the patient's own message at once
    return true;
  }

  async function onCompose(event) {
    event.preventDefault();
    const input = $("text");
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    if (!(await send({ text }))) input.value = text;
    input.focus();
  }

  async function loadSettings() {
    const box = $("auto-read");
    try {
      const response = await fetch(SETTINGS_URL, { cache: "no-store" });
      if (response.ok) box.checked = Boolean((await response.json()).auto_read);
    } catch {
      box.checked = true;
    }
    box.addEventListener("change", () => {
      fetch(SETTINGS_URL, {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ auto_read: box.checked }),
      });
    });
  }

  function wireExtras() {
    for (const button of document.querySelectorAll("[data-media]")) {
      button.addEventListener("click", () => send({ media: button.dataset.media }));
    }
    document
      .querySelector("[data-location]")
      .addEventListener("click", () => send({ location: {} }));
    document.querySelector("[data-call]").addEventListener("click", async () => {
      if (await send({ call: "missed" })) addNote("You called the clinic; nobody answered.");
    });
  }

  async function start() {
    $("composer").addEventListener("submit", onCompose);
    $("add-patient").addEventListener("submit", onAddPatient);
    wireExtras();
    loadSettings();
    await loadKnownPatients();
    const wanted = digitsOf(location.hash.slice(1)) || localStorage.getItem(STORE_CURRENT);
    if (wanted) addPhone(wanted);
    selectPatient(wanted || DEFAULT_PHONE);
  }

  start();
})();
