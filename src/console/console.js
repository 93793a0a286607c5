// hookrelay console: copy buttons and live updates. The pages work without it.
"use strict";

document.querySelectorAll("button.copy").forEach((button) => {
  const field = button.parentElement.querySelector(".copyable");
  if (!field) return;
  button.hidden = false;
  button.addEventListener("click", async () => {
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
    } catch (e) {
      // Outside a secure context the clipboard API is missing; the text stays selected.
      document.execCommand && document.execCommand("copy");
    }
  });
});

const LIVE_EVERY_MS = 3000;

// The operations list: rows newer than the newest shown are fetched and
// put on top, and rows still queued are fetched again, so a status shown
// changes when the operation's does.
const rows = document.querySelector("#rows[data-live]");
if (rows) {
  const note = document.querySelector(".live-note");
  if (note) note.hidden = false;
  const newest = () => {
    const first = rows.querySelector("tr[data-id]");
    return first ? first.dataset.id : "0";
  };
  const fetchRows = async (query) => {
    const response = await fetch(rows.dataset.live + query, { credentials: "same-origin" });
    if (!response.ok) return [];
    const holder = document.createElement("tbody");
    holder.innerHTML = (await response.text()).trim();
    return Array.from(holder.children);
  };
  setInterval(async () => {
    try {
      const fresh = await fetchRows("&after=" + newest());
      fresh.reverse().forEach((row) => {
        row.classList.add("fresh");
        rows.prepend(row);
      });
      const waiting = Array.from(rows.querySelectorAll('tr[data-status="queued"]')).map((row) => row.dataset.id);
      if (waiting.length === 0) return;
      (await fetchRows("&refresh=" + waiting.join(","))).forEach((row) => {
        const old = rows.querySelector('tr[data-id="' + row.dataset.id + '"]');
        if (!old) return;
        // A ticked box stays ticked.
        const box = old.querySelector("input[type=checkbox]");
        const again = row.querySelector("input[type=checkbox]");
        if (box && again) again.checked = box.checked;
        old.replaceWith(row);
      });
    } catch (e) {
      // The daemon may be restarting; try again at the next tick.
    }
  }, LIVE_EVERY_MS);
}

// A bulk replay's progress: refreshed until nothing it queued still waits.
const progress = document.querySelector("#progress[data-live]");
if (progress) {
  const timer = setInterval(async () => {
    try {
      const response = await fetch(progress.dataset.live, { credentials: "same-origin" });
      if (!response.ok) return;
      const holder = document.createElement("div");
      holder.innerHTML = (await response.text()).trim();
      const fresh = holder.firstElementChild;
      if (!fresh) return;
      progress.innerHTML = fresh.innerHTML;
      if (!fresh.dataset.live) clearInterval(timer);
    } catch (e) {
      // Try again at the next tick.
    }
  }, LIVE_EVERY_MS);
}

// An operation still being delivered: its page is refreshed in place until it finishes.
const live = document.querySelector("#live[data-live]");
if (live) {
  const timer = setInterval(async () => {
    try {
      const response = await fetch(live.dataset.live, { credentials: "same-origin" });
      if (!response.ok) return;
      const html = await response.text();
      if (html !== live.innerHTML) live.innerHTML = html;
      if (!live.querySelector(".s-queued")) clearInterval(timer);
    } catch (e) {
      // Try again at the next tick.
    }
  }, LIVE_EVERY_MS);
}
