// nbatlas workbench: keyboard coding and a few conveniences. Plain JavaScript, no build step.
// Codes are applied and removed with GraphQL mutations sent to this site (the login cookie travels
// with them; the X-Requested-With header tells the server the request comes from these pages).
(() => {
  "use strict";
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  const panel = $("#coding");
  const stateNode = $("#coding-state");
  // target ("image:<sha>", "cell:<id>", "notebook:<id>") -> {code id: {id, memo}}
  const applied = stateNode ? JSON.parse(stateNode.textContent) : {};
  const pageTarget = panel ? panel.dataset.target : null;
  const targetLabel = $("#target-label");
  const pageLabel = targetLabel ? targetLabel.textContent : "";
  const statusLine = $("#coding-status");
  const cells = $$("article.cell");
  let target = pageTarget;
  let focused = -1;
  let lastCode = null;

  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));

  function say(message, bad = false) {
    if (!statusLine) return;
    statusLine.textContent = message;
    statusLine.classList.toggle("bad", bad);
  }

  async function gql(query, variables) {
    const response = await fetch("/graphql", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Requested-With": "nbatlas-workbench" },
      body: JSON.stringify({ query, variables }),
    });
    let body;
    try {
      body = await response.json();
    } catch (err) {
      throw new Error(`the server answered ${response.status}`);
    }
    if (body.errors && body.errors.length) throw new Error(body.errors.map((e) => e.message).join("; "));
    return body.data;
  }

  function codeButtons() {
    return panel ? $$("button.code", panel) : [];
  }

  function codeName(codeId) {
    const button = codeButtons().find((b) => b.dataset.codeId === String(codeId));
    return button ? button.dataset.name : `code ${codeId}`;
  }

  function render() {
    if (!panel) return;
    const codes = applied[target] || {};
    for (const button of codeButtons()) {
      const annotation = codes[button.dataset.codeId];
      button.setAttribute("aria-pressed", annotation ? "true" : "false");
      const memo = button.parentElement.querySelector("input.memo");
      if (memo) {
        memo.hidden = !annotation;
        if (annotation && document.activeElement !== memo) memo.value = annotation.memo || "";
      }
    }
    if (targetLabel) {
      targetLabel.textContent = target === pageTarget ? pageLabel : `cell #${cells[focused].dataset.position}`;
    }
    for (const holder of $$(".cell-codes")) {
      const here = applied[holder.dataset.for] || {};
      holder.replaceChildren(
        ...Object.keys(here).map((id) => {
          const badge = document.createElement("span");
          badge.className = "kind";
          badge.textContent = codeName(id);
          return badge;
        }),
      );
    }
  }

  async function toggle(button) {
    const codeId = button.dataset.codeId;
    const codes = applied[target] || (applied[target] = {});
    const current = codes[codeId];
    const name = codeName(codeId);
    button.disabled = true;
    try {
      if (current) {
        await gql("mutation($id: Int!) { removeAnnotation(id: $id) }", { id: current.id });
        delete codes[codeId];
        say(`removed ${name}`);
      } else {
        const data = await gql(
          "mutation($code: Int!, $target: String!, $sample: String) " +
            "{ annotate(codeId: $code, target: $target, sample: $sample) { id memo } }",
          { code: Number(codeId), target, sample: panel.dataset.sample || null },
        );
        codes[codeId] = { id: data.annotate.id, memo: data.annotate.memo };
        lastCode = codeId;
        say(`applied ${name}`);
      }
    } catch (err) {
      say(`not saved: ${err.message}`, true);
    } finally {
      button.disabled = false;
    }
    render();
  }

  async function saveMemo(input) {
    const annotation = (applied[target] || {})[input.dataset.codeId];
    if (!annotation) return;
    try {
      const data = await gql(
        "mutation($id: Int!, $memo: String) { setAnnotationMemo(id: $id, memo: $memo) { id memo } }",
        { id: annotation.id, memo: input.value || null },
      );
      annotation.memo = data.setAnnotationMemo ? data.setAnnotationMemo.memo : null;
      say("memo saved");
      input.blur();
    } catch (err) {
      say(`memo not saved: ${err.message}`, true);
    }
  }

  function focusCell(index) {
    if (focused >= 0) cells[focused].classList.remove("focused");
    focused = Math.max(-1, Math.min(cells.length - 1, index));
    if (focused < 0) {
      target = pageTarget;
    } else {
      const cell = cells[focused];
      cell.classList.add("focused");
      cell.focus({ preventScroll: true });
      cell.scrollIntoView({ block: "nearest" });
      target = `cell:${cell.dataset.cellId}`;
    }
    render();
  }

  function follow(rel) {
    const link = $(`#coding a[rel="${rel}"]`) || $(`a[rel="${rel}"]`);
    if (link) window.location.assign(link.href);
  }

  if (panel) {
    for (const button of codeButtons()) button.addEventListener("click", () => toggle(button));
    for (const input of $$("input.memo", panel)) {
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter") {
          event.preventDefault();
          saveMemo(input);
        }
      });
    }
    cells.forEach((cell, i) =>
      cell.addEventListener("click", (event) => {
        if (!event.target.closest("a, button, input, iframe")) focusCell(i);
      }),
    );
    render();
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const key = event.key;
    if (key === "/") {
      const search = $("#search");
      if (search) {
        event.preventDefault();
        search.focus();
      }
    } else if (key === "?") {
      const help = $("#help");
      if (help && !help.open) help.showModal();
    } else if (key === "n" || key === "p") {
      follow(key === "n" ? "next" : "prev");
    } else if (panel && cells.length && (key === "j" || key === "k")) {
      event.preventDefault();
      focusCell(focused + (key === "j" ? 1 : -1));
    } else if (panel && key === "Escape") {
      focusCell(-1);
    } else if (panel && key === "m") {
      const codes = applied[target] || {};
      const codeId = lastCode && codes[lastCode] ? lastCode : Object.keys(codes)[0];
      const memo = codeId && panel.querySelector(`input.memo[data-code-id="${codeId}"]`);
      if (memo) {
        event.preventDefault();
        memo.hidden = false;
        memo.focus();
      }
    } else if (panel) {
      const button = codeButtons().find((b) => b.dataset.key && b.dataset.key === key);
      if (button) {
        event.preventDefault();
        toggle(button);
      }
    }
  });
})();
