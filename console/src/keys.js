// Keyboard navigation: "g" then a page's letter opens that page (g j jobs, g d dead letters, g s
// schedules, g q queues, g p pipelines, g m the pool), "?" shows the keys, and the page's own keys
// (j/k to move in a list, "/" to filter, n/p for pages) when focus is not in a field.

export function bindKeys({ go, pages, page }) {
  let prefix = false;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const t = event.target;
    if (t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    if (document.getElementById("dialog").open) return;
    const key = event.key;
    if (prefix) {
      prefix = false;
      if (pages[key]) {
        event.preventDefault();
        go(pages[key]);
      }
      return;
    }
    if (key === "g") {
      prefix = true;
      return;
    }
    if (key === "?") {
      const help = document.getElementById("help");
      help.hidden = !help.hidden;
      return;
    }
    const handler = page()?.[key];
    if (handler) {
      event.preventDefault();
      handler();
    }
  });
}
