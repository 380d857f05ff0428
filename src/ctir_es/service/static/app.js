// ctir-es web page: plain JS, no build, no CDN. Every text from the API goes through
// textContent (never innerHTML), so product data cannot inject markup.
"use strict";

// How the legend names each source; any other source the API reports shows its own name.
const SOURCE_LABELS = {
  bm25: "bm25 (lexical)",
  text: "text vector",
  image: "image vector",
  clip_ita: "CLIP-ITA category vector",
  clip_title: "CLIP title vector",
};
const VIEWS = ["results-view", "product-view", "audit-view"];
const $ = (id) => document.getElementById(id);

// What the grid shows now: a text/category search, an image upload, or "similar to".
// fusion "": none sent, so the server uses the index's calibration (as `ctir-es query` does).
const state = { kind: "search", q: "", mode: "", fusion: "", k: 24, offset: 0, file: null, productId: null,
                back: null };

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    const detail = body && body.error ? `${body.error.message} (${body.error.code})` : response.statusText;
    throw new Error(`HTTP ${response.status}: ${detail}`);
  }
  return body;
}

const WELCOME = "Type a query, pick a category or upload an image.";
const statusOf = {}; // each view's last status line, shown again with the view

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
  statusOf[currentView()] = [text, isError];
}

function setNotices(notices) {
  $("notices").replaceChildren(...notices.map((text) => el("li", { text })));
  $("notices").hidden = !notices.length;
}

const currentView = () => VIEWS.find((id) => !$(id).hidden);

function showView(name) {
  for (const id of VIEWS) $(id).hidden = id !== name;
  const [text, isError] = statusOf[name] || [WELCOME, false];
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

// Open a view, remembering where its "Back" button returns to.
function openView(name) {
  const from = currentView();
  if (from !== name) state.back = from;
  showView(name);
}

const percent = (x) => `${(100 * x).toFixed(1)}%`;
const pathText = (path) => path.join(" › ");

function params(extra) {
  const p = new URLSearchParams({ k: String(state.k), offset: String(state.offset) });
  // an explicit fusion overrides the calibration; none chosen: no parameter at all
  for (const [key, value] of Object.entries({ fusion: state.fusion, ...(extra || {}) })) if (value) p.set(key, value);
  return p.toString();
}

// -- results ----------------------------------------------------------------------------

async function run() {
  showView("results-view");
  setStatus("Searching…");
  setNotices([]);
  // no second page turn while this one loads (it would skip a page)
  $("prev").disabled = true;
  $("next").disabled = true;
  try {
    let page;
    if (state.kind === "image") {
      const form = new FormData();
      form.append("file", state.file);
      page = await api(`/search/image?${params()}`, { method: "POST", body: form });
    } else if (state.kind === "similar") {
      page = await api(`/products/${encodeURIComponent(state.productId)}/similar?${params()}`);
    } else {
      page = await api(`/search?${params({ q: state.q, mode: state.mode })}`);
    }
    render(page);
    window.scrollTo(0, 0); // a new page of results starts at its top
  } catch (err) {
    $("results").replaceChildren();
    $("legend").hidden = true;
    setPager(null);
    setStatus(err.message, true);
  }
}

function describe(page) {
  const first = page.offset + 1;
  const last = page.offset + page.results.length;
  const what = page.mode === "similar" ? `products similar to ${page.query}` : `${page.mode} query “${page.query}”`;
  if (!page.results.length) return `No results for ${what}.`;
  return `${what}: results ${first}–${last}${page.has_more ? "" : " (end)"} · fusion ${page.fusion} over ${page.sources.join(", ")}`;
}

// The sources that ranked at least one result on this page, in the response's order.
function usedSources(page) {
  return page.sources.filter((name) => page.results.some((r) => r.sources[name]));
}

function render(page) {
  setStatus(describe(page));
  setNotices(page.notices || []);
  const used = usedSources(page);
  $("legend").replaceChildren(
    ...used.map((name) => el("span", { "data-source": name }, [
      el("i", { class: `swatch ${name}` }), SOURCE_LABELS[name] || name,
    ])),
    el("span", { class: "muted small", text: "bar = the source's share of the fused score (scaled to rank 1)" }),
  );
  $("legend").hidden = !used.length;
  const scale = page.max_score || 1;
  $("results").replaceChildren(...page.results.map((r) => card(r, page.sources, scale)));
  setPager(page);
}

// Previous/Next: shown only when there is another page; each enabled only when it leads somewhere.
function setPager(page) {
  const prev = Boolean(page) && page.offset > 0;
  const next = Boolean(page) && page.results.length > 0 && page.has_more;
  $("prev").disabled = !prev;
  $("next").disabled = !next;
  $("pager").hidden = !prev && !next;
  $("page-info").textContent = page ? `page ${Math.floor(page.offset / page.k) + 1}` : "";
}

function card(result, sources, scale) {
  const image = result.image_url
    ? el("img", { class: "thumb", src: result.image_url, alt: result.title, loading: "lazy" })
    : el("div", { class: "thumb noimage", text: "no image" });
  const path = pathText(result.categories[0] || []);
  const bars = el("div", { class: "bars" });
  for (const name of sources) {
    const s = result.sources[name];
    if (!s) continue;
    const width = Math.max(0, Math.min(100, (100 * s.contribution) / scale));
    const fill = el("div", { class: `fill ${name}` });
    fill.style.width = `${width.toFixed(1)}%`; // CSSOM, not a style attribute: allowed by the CSP
    bars.append(
      el("span", { text: name }),
      el("div", { class: "track", title: `${name}: rank ${s.rank}, raw score ${s.score.toFixed(4)}` }, [fill]),
      el("span", { class: "muted", text: `#${s.rank} · ${s.score.toFixed(name === "bm25" ? 2 : 3)}` }),
    );
  }
  const more = el("button", {
    class: "more", type: "button", text: "More like this",
    onclick: () => { Object.assign(state, { kind: "similar", productId: result.id, offset: 0 }); run(); },
  });
  const details = el("button", {
    class: "more details", type: "button", text: "Details", onclick: () => showProduct(result.id),
  });
  return el("article", { class: "card", "data-id": result.id }, [
    image,
    el("div", { class: "rank", text: `#${result.rank} · score ${result.score.toFixed(4)}` }),
    el("button", { class: "title", type: "button", title: result.title, text: result.title,
                   onclick: () => showProduct(result.id) }),
    el("div", { class: "path", text: path }),
    bars,
    el("div", { class: "row" }, [details, more]),
  ]);
}

function searchCategory(label) {
  $("q").value = label;
  $("mode").value = "category";
  Object.assign(state, { kind: "search", q: label, mode: "category", offset: 0 });
  for (const node of document.querySelectorAll(".tree .node.active")) node.classList.remove("active");
  run();
}

const categoryButton = (label, text) => el("button", {
  class: "link", type: "button", text: text || label, title: `Search ${label}`, onclick: () => searchCategory(label),
});

// -- a product and its suggested categories ---------------------------------------------

async function showProduct(id) {
  openView("product-view");
  setStatus("Loading the product…");
  $("product-similar").onclick = () => { Object.assign(state, { kind: "similar", productId: id, offset: 0 }); run(); };
  const body = $("suggested").tBodies[0];
  body.replaceChildren(el("tr", {}, [el("td", { class: "muted", colspan: "3", text: "Categorizing…" })]));
  $("suggested-path").textContent = "";
  try {
    const product = await api(`/products/${encodeURIComponent(id)}`);
    renderProduct(product);
    setStatus(`Product ${product.title}`);
  } catch (err) {
    setStatus(err.message, true);
    body.replaceChildren();
    return;
  }
  try {
    const suggestion = await api("/categorize?k=8", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ id }),
    });
    renderSuggestion(suggestion);
  } catch (err) {
    body.replaceChildren(el("tr", {}, [el("td", { class: "error", colspan: "3", text: err.message })]));
  }
}

function renderProduct(product) {
  $("product-image").replaceChildren(product.image_url
    ? el("img", { class: "thumb", src: product.image_url, alt: product.title })
    : el("div", { class: "thumb noimage", text: "no image" }));
  $("product-title").textContent = product.title;
  $("product-id").textContent = `id ${product.id}${product.market ? ` · market ${product.market}` : ""}`;
  $("product-categories").replaceChildren(...(product.categories.length
    ? product.categories.map((path) => el("li", {}, [categoryButton(path.join(" > "), pathText(path))]))
    : [el("li", { class: "muted", text: "no category" })]));
  $("product-categories").dataset.paths = JSON.stringify(product.categories);
  $("product-attributes").replaceChildren(...Object.entries(product.attributes).flatMap(([key, value]) => [
    el("dt", { text: key }), el("dd", { text: value }),
  ]));
  $("product-description").textContent = product.description;
}

function renderSuggestion(suggestion) {
  const stored = JSON.parse($("product-categories").dataset.paths || "[]");
  const isStored = (path) => stored.some((p) => path.every((level, i) => p[i] === level));
  const best = suggestion.path.length ? suggestion.path[suggestion.path.length - 1] : null;
  $("suggested-path").replaceChildren(...(best
    ? ["Suggested: ", categoryButton(best.label, pathText(best.path)),
       el("span", { class: "muted", text: isStored(best.path) ? " (as filed)" : " (not where it is filed)" })]
    : ["No category could be suggested."]));
  const voted = suggestion.signals.filter((s) => s.voters).map((s) => s.name);
  $("suggested").tBodies[0].replaceChildren(...suggestion.categories.map((c) => el("tr", {
    class: isStored(c.path) ? "stored" : "",
  }, [
    el("td", {}, [categoryButton(c.label, pathText(c.path))]),
    el("td", { text: percent(c.score) }),
    el("td", { class: "muted small",
               text: voted.filter((n) => n in c.signals).map((n) => `${n} ${percent(c.signals[n])}`).join(" · ") }),
  ])));
}

// -- audit ------------------------------------------------------------------------------

async function showAudit() {
  openView("audit-view");
  setStatus("Auditing the catalogue…");
  const body = $("audit").tBodies[0];
  body.replaceChildren();
  const p = new URLSearchParams({ k: $("audit-k").value });
  const within = $("audit-within").value.trim();
  if (within) p.set("within", within);
  try {
    const report = await api(`/audit?${p}`);
    body.replaceChildren(...report.entries.map((e) => el("tr", { "data-id": e.id }, [
      el("td", {}, [el("button", { class: "link", type: "button", text: e.title, onclick: () => showProduct(e.id) })]),
      el("td", { class: "path", text: pathText(e.stored) }),
      el("td", {}, [categoryButton(e.suggested_label, pathText(e.suggested))]),
      el("td", { class: "num", text: e.gap.toFixed(2) }),
      el("td", { class: "num", text: e.suspicion.toFixed(2) }),
    ])));
    setStatus(report.entries.length
      ? `${report.entries.length} most suspicious of ${report.audited} products audited (${report.depth} levels)`
      : `No product looks misfiled among ${report.audited} audited.`);
  } catch (err) {
    setStatus(err.message, true);
  }
}

// -- the category tree, health, image upload --------------------------------------------

function treeNode(node) {
  const li = el("li", { role: "treeitem" });
  const name = el("button", {
    class: "node", type: "button", title: `Search ${node.label}`, "data-path": node.label,
    onclick: (e) => { searchCategory(node.label); e.currentTarget.classList.add("active"); },
  }, [node.name, el("span", { class: "count", text: String(node.count) })]);
  if (node.children.length) {
    const list = el("ul", { role: "group" });
    list.hidden = true;
    const toggle = el("button", { class: "toggle", type: "button", "aria-expanded": "false", text: "▸",
      "aria-label": `Expand ${node.name}` });
    toggle.addEventListener("click", () => {
      if (!list.childElementCount) list.append(...node.children.map(treeNode));
      list.hidden = !list.hidden;
      toggle.textContent = list.hidden ? "▸" : "▾";
      toggle.setAttribute("aria-expanded", String(!list.hidden));
    });
    li.append(toggle, name, list);
  } else {
    li.append(el("span", { class: "spacer" }), name);
  }
  return li;
}

async function loadTree() {
  try {
    const tree = await api("/categories");
    $("tree").replaceChildren(...tree.tree.map(treeNode));
  } catch (err) {
    $("tree").replaceChildren(el("li", { class: "muted", text: err.message }));
  }
}

async function loadHealth() {
  try {
    const health = await api("/health");
    $("health").textContent = `${health.products} products · ${health.vector_fields.join(", ") || "BM25 only"}`;
    const ok = health.image_search;
    $("image").disabled = !ok;
    $("image-note").textContent = ok ? "" : "This index has no image vectors: ingest with CLIP weights to search by image.";
    const refresh = () => {
      $("image-search").disabled = !ok || !$("image").files.length;
      $("categorize").disabled = !ok || !$("image").files.length;
    };
    $("image").addEventListener("change", refresh);
    refresh();
  } catch (err) {
    $("health").textContent = err.message;
  }
}

async function categorize() {
  const form = new FormData();
  form.append("file", $("image").files[0]);
  const out = $("categorized");
  out.replaceChildren(el("li", { class: "muted", text: "Categorizing…" }));
  try {
    const result = await api("/categorize?k=5", { method: "POST", body: form });
    out.replaceChildren(...result.categories.map((c) => el("li", {}, [
      el("button", { type: "button", text: c.label, onclick: () => searchCategory(c.label) }),
      el("span", { class: "count", text: `${percent(c.score)} · ${c.support} of ${result.neighbours}` }),
    ])));
  } catch (err) {
    out.replaceChildren(el("li", { class: "muted", text: err.message }));
  }
}

function init() {
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("q").value.trim();
    if (!q) return;
    Object.assign(state, {
      kind: "search", q, mode: $("mode").value, fusion: $("fusion").value,
      k: Number($("k").value), offset: 0,
    });
    run();
  });
  for (const id of ["fusion", "k"]) {
    $(id).addEventListener("change", () => {
      Object.assign(state, { fusion: $("fusion").value, k: Number($("k").value), offset: 0 });
      if (state.kind !== "search" || state.q) run();
    });
  }
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.k); run(); });
  $("next").addEventListener("click", () => { state.offset += state.k; run(); });
  $("image-search").addEventListener("click", () => {
    Object.assign(state, { kind: "image", file: $("image").files[0], offset: 0 });
    run();
  });
  $("categorize").addEventListener("click", categorize);
  $("audit-open").addEventListener("click", showAudit);
  $("audit-form").addEventListener("submit", (e) => { e.preventDefault(); showAudit(); });
  $("product-back").addEventListener("click", () => showView(state.back || "results-view"));
  $("audit-back").addEventListener("click", () => showView("results-view"));
  loadHealth();
  loadTree();
  // Deep links: /?q=Kitchen+%26+Dining+%3E+Cookware&mode=category, /?product=ID, /?view=audit
  const url = new URLSearchParams(window.location.search);
  if (url.get("q")) {
    $("q").value = url.get("q");
    $("mode").value = url.get("mode") === "text" || url.get("mode") === "category" ? url.get("mode") : "";
    Object.assign(state, { kind: "search", q: url.get("q"), mode: $("mode").value, offset: 0 });
    run();
  } else if (url.get("product")) {
    showProduct(url.get("product"));
  } else if (url.get("view") === "audit") {
    showAudit();
  }
}

document.addEventListener("DOMContentLoaded", init);
