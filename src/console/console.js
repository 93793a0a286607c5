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

// The operations list: rows newer than the newest shown are fetched and put on top.
const rows = document.querySelector("#rows[data-live]");
if (rows) {
  const note = document.querySelector(".live-note");
  if (note) note.hidden = false;
  const newest = () => {
    const first = rows.querySelector("tr[data-id]");
    return first ? first.dataset.id : "0";
  };
  setInterval(async () => {
    try {
      const response = await fetch(rows.dataset.live + "&after=" + newest(), { credentials: "same-origin" });
      if (!response.ok) return;
      const html = (await response.text()).trim();
      if (!html) return;
      const holder = document.createElement("tbody");
      holder.innerHTML = html;
      const fresh = Array.from(holder.children);
      fresh.reverse().forEach((row) => {
        row.classList.add("fresh");
        rows.prepend(row);
      });
    } catch (e) {
      // The daemon may be restarting; try again at the next tick.
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
