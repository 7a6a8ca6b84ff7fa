// A modal confirmation (<dialog>): resolves true only when the operator presses the confirm button.
// Escape or the other button resolves false; focus goes to the dialog and back afterwards.

import { h } from "./dom.js";

export function confirmDialog({ title, body, confirm, id, disabled = false, cancel = "Cancel" }) {
  const dialog = document.getElementById("dialog");
  const before = document.activeElement;
  return new Promise((resolve) => {
    const yes = h("button", { type: "button", class: "primary", id: `${id}-confirm`, text: confirm, disabled });
    const no = h("button", { type: "button", id: `${id}-cancel`, text: cancel });
    const done = (value) => {
      dialog.close();
      dialog.dataset.open = "";
      if (before && before.focus) before.focus();
      resolve(value);
    };
    yes.onclick = () => done(true);
    no.onclick = () => done(false);
    dialog.oncancel = (e) => { e.preventDefault(); done(false); };
    dialog.replaceChildren(h("h2", { text: title }), h("div", {}, body), h("div", { class: "actions" }, yes, no));
    dialog.dataset.open = id;
    dialog.showModal();
    (disabled ? no : yes).focus();
  });
}

/** A form in the dialog: resolves with its fields, or null when cancelled. */
export function formDialog({ title, fields, confirm, id, note }) {
  const dialog = document.getElementById("dialog");
  return new Promise((resolve) => {
    const form = h("form", { id: `${id}-form`, method: "dialog" },
      note ? h("p", { text: note }) : null,
      fields.map((f) => h("label", {}, `${f.label} `, h("input", { name: f.name, type: f.type || "text", value: f.value || "",
        required: f.required !== false, autocomplete: f.autocomplete || "off", id: `${id}-${f.name}` }))),
      h("p", { class: "error", role: "alert", id: `${id}-error`, hidden: true }),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: `${id}-confirm`, text: confirm }),
        h("button", { type: "button", id: `${id}-cancel`, text: "Cancel", on: { click: () => finish(null) } })));
    const finish = (value) => { dialog.close(); dialog.dataset.open = ""; resolve(value); };
    form.onsubmit = (e) => { e.preventDefault(); finish(Object.fromEntries(new FormData(form))); };
    dialog.oncancel = (e) => { e.preventDefault(); finish(null); };
    dialog.replaceChildren(h("h2", { text: title }), form);
    dialog.dataset.open = id;
    dialog.showModal();
    form.querySelector("input")?.focus();
  });
}
