// ctir-es web page: plain JS, no build, no CDN. Every text from the API goes through
// textContent (never innerHTML), so product data cannot inject markup.
"use strict";

const SOURCES = ["bm25", "text", "image"];
const $ = (id) => document.getElementById(id);

// What the grid shows now: a text/category search, an image upload, or "similar to".
const state = { kind: "search", q: "", mode: "", fusion: "rrf", k: 24, offset: 0, file: null, productId: null };

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

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function params(extra) {
  const p = new URLSearchParams({ k: String(state.k), offset: String(state.offset), fusion: state.fusion });
  for (const [key, value] of Object.entries(extra || {})) if (value) p.set(key, value);
  return p.toString();
}

async function run() {
  setStatus("Searching…");
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
  } catch (err) {
    $("results").replaceChildren();
    $("pager").hidden = true;
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

function render(page) {
  setStatus(describe(page));
  $("legend").hidden = !page.results.length;
  for (const item of document.querySelectorAll("#legend [data-source]")) {
    item.hidden = !page.sources.includes(item.dataset.source);
  }
  const scale = page.max_score || 1;
  $("results").replaceChildren(...page.results.map((r) => card(r, scale)));
  $("pager").hidden = page.offset === 0 && !page.has_more;
  $("prev").disabled = page.offset === 0;
  $("next").disabled = !page.has_more;
  $("page-info").textContent = `page ${Math.floor(page.offset / page.k) + 1}`;
}

function card(result, scale) {
  const image = result.image_url
    ? el("img", { class: "thumb", src: result.image_url, alt: result.title, loading: "lazy" })
    : el("div", { class: "thumb noimage", text: "no image" });
  const path = (result.categories[0] || []).join(" › ");
  const bars = el("div", { class: "bars" });
  for (const name of SOURCES) {
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
  return el("article", { class: "card", "data-id": result.id }, [
    image,
    el("div", { class: "rank", text: `#${result.rank} · score ${result.score.toFixed(4)}` }),
    el("div", { class: "title", title: result.title, text: result.title }),
    el("div", { class: "path", text: path }),
    bars,
    more,
  ]);
}

function searchCategory(label) {
  $("q").value = label;
  $("mode").value = "category";
  Object.assign(state, { kind: "search", q: label, mode: "category", offset: 0 });
  for (const node of document.querySelectorAll(".tree .node.active")) node.classList.remove("active");
  run();
}

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
      el("span", { class: "count", text: `${(100 * c.score).toFixed(1)}% · ${c.support} of ${result.neighbours}` }),
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
  loadHealth();
  loadTree();
  // Deep links: /?q=Kitchen+%26+Dining+%3E+Cookware&mode=category
  const url = new URLSearchParams(window.location.search);
  if (url.get("q")) {
    $("q").value = url.get("q");
    $("mode").value = url.get("mode") === "text" || url.get("mode") === "category" ? url.get("mode") : "";
    Object.assign(state, { kind: "search", q: url.get("q"), mode: $("mode").value, offset: 0 });
    run();
  }
}

document.addEventListener("DOMContentLoaded", init);
