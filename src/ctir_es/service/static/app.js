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
                productTitle: "", back: null };
// Shop search (docs/shop-search.md): the active filters as their text (`brand:Sony|Bose`,
// `price:500..2000`, `category:A > B`), the sort, variant grouping; the cursor of the next page of
// the pinned ranking, how many results the grid shows and the score scale of its first page.
const shop = { filters: [], sort: "", collapse: false, cursor: null, shown: 0, scale: 1, last: null };
// The index's typed values ({name: {kind, unit}}, from GET /health).
let valueSpecs = {};
const MAX_KEYWORD_FACETS = 6; // keyword facets asked for (the rail shows the best covered)
const SHOWN_KEYWORD_FACETS = 3;
const SORTS = [ // [sort, label, the number value it needs]
  ["price_asc", "price: low to high", "price"], ["price_desc", "price: high to low", "price"],
  ["rating", "rating", "rating"], ["newest", "newest", "added"],
];

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
    const err = new Error(`HTTP ${response.status}: ${detail}`);
    err.status = response.status;
    throw err;
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

async function run(restarted = false) {
  if (state.kind === "search") return runShop(restarted);
  remember(state.kind === "similar" ? similarUrl() : "", "results-view"); // an upload cannot be linked to
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
      if (!state.productTitle) { // a link to ?similar=ID: the title is the product's, fetched once
        state.productTitle = (await api(`/products/${encodeURIComponent(state.productId)}`).catch(() => ({}))).title || "";
      }
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
  const what = page.mode === "similar" ? `products similar to “${state.productTitle || page.query}”`
    : `${page.mode} query “${page.query}”`;
  if (!page.results.length) return `No results for ${what}.`;
  return `${what}: results ${first}–${last}${page.has_more ? "" : " (end)"} · fusion ${page.fusion} over ${page.sources.join(", ")}`;
}

// The sources that ranked at least one result on this page, in the response's order.
function usedSources(page) {
  return page.sources.filter((name) => page.results.some((r) => r.sources[name]));
}

function render(page) {
  $("shop-bar").hidden = true;
  $("facets-panel").hidden = true;
  $("more-bar").hidden = true;
  setStatus(describe(page));
  setNotices(page.notices || []);
  setLegend(page);
  const scale = page.max_score || 1;
  $("results").replaceChildren(...page.results.map((r) => card(r, page.sources, scale)));
  setPager(page);
}

function setLegend(page) {
  const used = usedSources(page);
  $("legend").replaceChildren(
    ...used.map((name) => el("span", { "data-source": name }, [
      el("i", { class: `swatch ${name}` }), SOURCE_LABELS[name] || name,
    ])),
    el("span", { class: "muted small", text: "bar = the source's share of the fused score (scaled to rank 1)" }),
  );
  $("legend").hidden = !used.length;
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
    onclick: () => { Object.assign(state, { kind: "similar", productId: result.id, productTitle: result.title, offset: 0 }); run(); },
  });
  const details = el("button", {
    class: "more details", type: "button", text: "Details", onclick: () => showProduct(result.id),
  });
  const values = result.values || {};
  const price = priceName();
  const facts = [];
  if (price && typeof values[price] === "number") {
    facts.push(el("div", { class: "price", "data-price": String(values[price]),
                           text: money(values[price], valueSpecs[price].unit) }));
  }
  const brand = brandName();
  if (brand && values[brand] !== undefined) facts.push(el("div", { class: "brand", text: String(values[brand]) }));
  if (result.collapsed) {
    facts.push(el("span", { class: "badge", title: "Variants of this product folded under it",
                            text: `+${result.collapsed} more` }));
  }
  return el("article", { class: "card", "data-id": result.id }, [
    image,
    el("div", { class: "rank", text: `#${result.rank} · score ${result.score.toFixed(4)}` }),
    el("button", { class: "title", type: "button", title: result.title, text: result.title,
                   onclick: () => showProduct(result.id) }),
    ...facts,
    el("div", { class: "path", text: path }),
    bars,
    el("div", { class: "row" }, [details, more]),
  ]);
}

function searchCategory(label) {
  $("q").value = label;
  $("mode").value = "category";
  Object.assign(state, { kind: "search", q: label, mode: "category", offset: 0 });
  shop.filters = []; // a new query: the last one's filters may match nothing here
  for (const node of document.querySelectorAll(".tree .node.active")) node.classList.remove("active");
  run();
}

const categoryButton = (label, text) => el("button", {
  class: "link", type: "button", text: text || label, title: `Search ${label}`, onclick: () => searchCategory(label),
});

// -- shop search: filters, facets, sort, grouping, "more results" ----------------------------
// A text or category query is pinned on its first page (`pin=true`): "More results" asks for
// the next page of that same ranking with `cursor=next_cursor`, so no product repeats or is
// skipped. The URL keeps the query, filters, sort and grouping (a reload shows the same).

const numberValues = () => Object.keys(valueSpecs).filter((n) => valueSpecs[n].kind === "number");

// The number value shown and filtered as the price: `price`, else the first in a currency.
function priceName() {
  const numbers = numberValues();
  if (numbers.includes("price")) return "price";
  return numbers.find((n) => /^[A-Z]{3}$/.test(valueSpecs[n].unit || "")) || null;
}

function brandName() {
  if (valueSpecs.brand && valueSpecs.brand.kind === "keyword") return "brand";
  return null;
}

const CURRENCY_SIGNS = { INR: "₹", USD: "$", EUR: "€", GBP: "£", JPY: "¥", CNY: "¥" };

function money(amount, unit) {
  if (unit && /^[A-Z]{3}$/.test(unit)) {
    try {
      return new Intl.NumberFormat("en", { style: "currency", currency: unit, currencyDisplay: "narrowSymbol",
                                           minimumFractionDigits: 0, maximumFractionDigits: 2 }).format(amount);
    } catch (e) {
      // an ISO code this browser does not know: the sign table, else the code
    }
    const sign = CURRENCY_SIGNS[unit];
    const number = amount.toLocaleString("en", { maximumFractionDigits: 2 });
    return sign ? `${sign}${number}` : `${number} ${unit}`;
  }
  const number = amount.toLocaleString("en", { maximumFractionDigits: 2 });
  return unit ? `${number} ${unit}` : number;
}

// A filter's name (`brand` of `brand:Sony|Bose`, `-brand:Sony`; `has` filters are their own).
const filterName = (text) => text.replace(/^-/, "").split(":", 1)[0];
// The values of an `in` filter, as written in the filter (`\|` stays escaped).
const filterTokens = (text) => text.slice(text.indexOf(":") + 1).split(/(?<!\\)\|/);
const unescapeToken = (token) => token.replace(/\\\|/g, "|");
const inFilter = (name) => shop.filters.find((f) => !f.startsWith("-") && filterName(f) === name) || null;

// The facets asked for: the category tree, the keyword values (brand first, at most a handful,
// plus any keyword a filter uses, so its checkboxes stay) and the price.
function facetNames() {
  const keywords = Object.keys(valueSpecs).filter((n) => valueSpecs[n].kind === "keyword")
    .sort((a, b) => (b === "brand") - (a === "brand") || a.localeCompare(b));
  const wanted = keywords.slice(0, MAX_KEYWORD_FACETS);
  for (const text of shop.filters) {
    const name = filterName(text);
    if (keywords.includes(name) && !wanted.includes(name)) wanted.push(name);
  }
  const price = priceName();
  return ["category", ...wanted, ...(price ? [price] : [])].slice(0, 10);
}

function shopParams(extra) {
  const p = new URLSearchParams({ k: String(state.k) });
  if (state.fusion) p.set("fusion", state.fusion);
  p.set("q", state.q);
  if (state.mode) p.set("mode", state.mode);
  for (const text of shop.filters) p.append("filter", text);
  if (shop.sort) p.set("sort", shop.sort);
  if (shop.collapse) p.set("collapse", "auto");
  for (const name of facetNames()) p.append("facet", name);
  p.set("pin", "true");
  for (const [key, value] of Object.entries(extra || {})) p.set(key, value);
  return p;
}

// The page's own URL: what a reload or a shared link needs to show the same results.
function pageUrl() {
  const p = new URLSearchParams({ q: state.q });
  if (state.mode) p.set("mode", state.mode);
  if (state.fusion) p.set("fusion", state.fusion);
  if (state.k !== 24) p.set("k", String(state.k));
  for (const text of shop.filters) p.append("filter", text);
  if (shop.sort) p.set("sort", shop.sort);
  if (shop.collapse) p.set("collapse", "auto");
  return `?${p}`;
}

// Each view puts what it shows in the address bar, so Back, reload and bookmarks work: a
// search (pageUrl), ?similar=ID, ?product=ID, ?view=audit; an image upload: "/" (no link to it).
let restoring = false; // showing what the address bar says: replace the entry, never add one
let ignoreNextPop = false; // a Back button showed the view already; the browser's Back follows
const shownAt = {}; // view id -> the address it last showed (Back to it shows it again as it was)

function remember(url, view) {
  shownAt[view] = url;
  if (url === window.location.search) return;
  const target = url || window.location.pathname;
  // {ctir: true} marks an entry this page added: the one before it is this page too
  if (restoring) window.history.replaceState(window.history.state, "", target);
  else window.history.pushState({ ctir: true }, "", target);
}

function similarUrl() {
  const p = new URLSearchParams({ similar: state.productId });
  if (state.offset) p.set("offset", String(state.offset));
  return `?${p}`;
}

// Show what ``url`` (the address bar's query) names: a search, similar products, a product, the audit.
function restore(url) {
  restoring = true;
  try {
    if (url.get("q")) {
      fromUrl(url);
      run();
    } else if (url.get("similar")) {
      const offset = Math.max(0, Number(url.get("offset")) || 0);
      Object.assign(state, { kind: "similar", productId: url.get("similar"), productTitle: "", offset });
      run();
    } else if (url.get("product")) {
      showProduct(url.get("product"));
    } else if (url.get("view") === "audit") {
      showAudit();
    } else { // "/": the page as it opens
      Object.assign(state, { kind: "search", q: "", offset: 0 });
      $("q").value = "";
      showView("results-view");
      $("results").replaceChildren();
      for (const id of ["legend", "more-bar", "shop-bar", "facets-panel"]) $(id).hidden = true;
      setNotices([]);
      setPager(null);
      setStatus(WELCOME);
    }
  } finally {
    restoring = false;
  }
}

// The Back buttons of the product and audit views: the view before, at once; the address bar
// follows (the browser's Back when this page added the entry, else the view's own address).
function goBack(view) {
  showView(view);
  if (window.history.state && window.history.state.ctir) {
    ignoreNextPop = true;
    window.history.back();
  } else if (shownAt[view] !== undefined) {
    window.history.replaceState(window.history.state, "", shownAt[view] || window.location.pathname);
  }
}

async function runShop(restarted) {
  showView("results-view");
  remember(pageUrl(), "results-view");
  setStatus("Searching…");
  setNotices([]);
  setPager(null);
  $("more-bar").hidden = true;
  renderChips();
  try {
    const page = await api(`/search?${shopParams()}`);
    shop.scale = page.max_score || 1;
    shop.shown = 0;
    $("results").replaceChildren();
    renderShop(page, restarted);
    window.scrollTo(0, 0);
  } catch (err) {
    $("results").replaceChildren();
    $("legend").hidden = true;
    $("facets-panel").hidden = true;
    shop.cursor = null;
    setStatus(err.message, true);
  }
}

async function loadMore() {
  if (!shop.cursor) return;
  const button = $("more-results");
  button.disabled = true;
  button.textContent = "Loading…";
  try {
    const page = await api(`/search?${shopParams({ cursor: shop.cursor })}`);
    renderShop(page, false);
  } catch (err) {
    if (err.status === 410) { // the pinned ranking expired: page 1 again, and say why
      shop.cursor = null;
      runShop(true);
      return;
    }
    setStatus(err.message, true);
  } finally {
    button.disabled = false;
    button.textContent = "More results";
  }
}

function shopDescribe(page) {
  const what = `${page.mode} query “${page.query}”`;
  if (!shop.shown) return `No results for ${what}${shop.filters.length ? " with these filters" : ""}.`;
  return `${what}: results 1–${shop.shown}${page.next_cursor ? "" : " (end)"} · fusion ${page.fusion} over `
    + page.sources.join(", ");
}

function renderShop(page, restarted) {
  $("shop-bar").hidden = false;
  $("results").append(...page.results.map((r) => card(r, page.sources, shop.scale)));
  shop.shown += page.results.length;
  shop.cursor = page.next_cursor || null;
  $("more-bar").hidden = !shop.cursor;
  setStatus(shopDescribe(page));
  const notices = [...(page.notices || [])];
  if (restarted) notices.unshift("The results changed: started again from the first page.");
  setNotices(notices);
  setLegend(page);
  if (page.facets) {
    shop.last = page.facets;
    renderFacets(page.facets);
  }
  renderChips();
}

function setFilter(name, text) {
  shop.filters = shop.filters.filter((f) => f.startsWith("-") || filterName(f) !== name);
  if (text) shop.filters.push(text);
  runShop(false);
}

function keywordFacet(name, facet) {
  const active = inFilter(name);
  const chosen = active ? filterTokens(active) : [];
  const isChosen = (token) => chosen.some((c) => c.toLowerCase() === token.toLowerCase());
  const items = facet.values.map((v) => ({ token: v.filter.slice(name.length + 1), label: v.value, count: v.count }));
  for (const token of chosen) { // chosen but outside the top values: still shown, to uncheck
    if (!items.some((item) => item.token.toLowerCase() === token.toLowerCase())) {
      items.push({ token, label: unescapeToken(token), count: null });
    }
  }
  const list = el("ul", { class: "facet-values" });
  for (const item of items) {
    const box = el("input", { type: "checkbox", "data-facet": name, "data-value": item.label });
    box.checked = isChosen(item.token);
    box.addEventListener("change", () => {
      const next = box.checked ? [...chosen, item.token] : chosen.filter((c) => c.toLowerCase() !== item.token.toLowerCase());
      setFilter(name, next.length ? `${name}:${next.join("|")}` : null);
    });
    list.append(el("li", {}, [el("label", {}, [
      box, item.label, ...(item.count === null ? [] : [el("span", { class: "count", text: String(item.count) })]),
    ])]));
  }
  return el("fieldset", { "data-facet": name }, [el("legend", { text: name.replace(/_/g, " ") }), list]);
}

function categoryFacet(facet) {
  const active = inFilter("category");
  const path = active ? active.slice("category:".length).split(" > ") : [];
  const level = String(path.length + 1);
  const under = (node) => path.every((part, i) => node.path[i] === part);
  const nodes = ((facet.levels || {})[level] || []).filter(under);
  if (!nodes.length) return null;
  const list = el("ul", { class: "facet-values" }, nodes.map((node) => el("li", {}, [
    el("button", { class: "link", type: "button", "data-category": node.label, text: node.path[node.path.length - 1],
                   title: `Only ${node.label}`, onclick: () => setFilter("category", node.filter) }),
    el("span", { class: "count", text: String(node.count) }),
  ])));
  return el("fieldset", { "data-facet": "category" }, [el("legend", { text: "category" }), list]);
}

function renderFacets(facets) {
  const blocks = [];
  const category = facets.category ? categoryFacet(facets.category) : null;
  if (category) blocks.push(category);
  // keyword facets by how many results carry the value; a filtered one always shows
  const keywords = Object.entries(facets).filter(([, f]) => f.kind === "keyword" && f.values)
    .map(([name, f]) => ({ name, facet: f, covered: f.candidates - f.missing }))
    .filter((x) => x.covered > 0 || inFilter(x.name))
    .sort((a, b) => b.covered - a.covered || a.name.localeCompare(b.name));
  keywords.forEach((x, i) => {
    if (i < SHOWN_KEYWORD_FACETS || inFilter(x.name)) blocks.push(keywordFacet(x.name, x.facet));
  });
  $("facets").replaceChildren(...blocks);
  const price = priceName();
  const priceFacet = price ? facets[price] : null;
  const hasPrice = Boolean(priceFacet && (priceFacet.count || inFilter(price)));
  $("price-form").hidden = !hasPrice;
  if (hasPrice) renderPrice(price, priceFacet);
  $("facets-panel").hidden = !blocks.length && !hasPrice;
}

function renderPrice(name, facet) {
  const unit = valueSpecs[name].unit;
  $("price-legend").textContent = `${name.replace(/_/g, " ")}${unit ? ` (${money(0, unit).replace(/[\d.,\s]/g, "") || unit})` : ""}`;
  const active = inFilter(name);
  const [low, high] = active ? active.slice(name.length + 1).split("..") : ["", ""];
  $("price-min").value = low || "";
  $("price-max").value = high || "";
  if (facet.min !== null && facet.min !== undefined) {
    $("price-min").placeholder = String(Math.floor(facet.min));
    $("price-max").placeholder = String(Math.ceil(facet.max));
  }
  $("price-bands").replaceChildren(...(facet.bands || []).map((band) => el("li", {}, [
    el("button", {
      class: "link", type: "button", "data-from": String(band.from),
      text: band.to === null ? `${money(band.from, unit)} and up` : `${money(band.from, unit)} – ${money(band.to, unit)}`,
      onclick: () => setFilter(name, `${name}:${band.from}..${band.to === null ? "" : band.to}`),
    }),
    el("span", { class: "count", text: String(band.count) }),
  ])));
}

function applyPrice(e) {
  e.preventDefault();
  const name = priceName();
  if (!name) return;
  const low = $("price-min").value.trim();
  const high = $("price-max").value.trim();
  setFilter(name, low || high ? `${name}:${low}..${high}` : null);
}

function chipText(text) {
  const negated = text.startsWith("-");
  const name = filterName(text);
  const rest = text.slice(text.indexOf(":") + 1);
  if (name === "has") return `${negated ? "without" : "with"} ${rest}`;
  const spec = valueSpecs[name];
  if (spec && spec.kind === "number" && rest.includes("..")) {
    const [low, high] = rest.split("..");
    const show = (x) => money(Number(x), spec.unit);
    if (low && high) return `${name}: ${show(low)} – ${show(high)}`;
    return low ? `${name}: from ${show(low)}` : `${name}: up to ${show(high)}`;
  }
  const values = filterTokens(text).map(unescapeToken).join(" or ");
  return `${negated ? "not " : ""}${name}: ${values}`;
}

function renderChips() {
  const chips = shop.filters.map((text) => el("li", { class: "chip", "data-filter": text }, [
    chipText(text),
    el("button", { type: "button", "aria-label": `Remove filter ${chipText(text)}`, title: "Remove", text: "×",
                   onclick: () => { shop.filters = shop.filters.filter((f) => f !== text); runShop(false); } }),
  ]));
  if (shop.filters.length > 1) {
    chips.push(el("li", {}, [el("button", { class: "link", type: "button", text: "clear all",
                                            onclick: () => { shop.filters = []; runShop(false); } })]));
  }
  $("chips").replaceChildren(...chips);
}

function fillSorts() {
  const numbers = numberValues();
  const options = [el("option", { value: "", text: "relevance" })];
  for (const [value, label, needs] of SORTS) {
    if (numbers.includes(needs)) options.push(el("option", { value, text: label }));
  }
  $("sort").replaceChildren(...options);
  $("sort").value = shop.sort;
}

// The state a URL holds (a reload, a shared link, Back and Forward).
function fromUrl(url) {
  $("q").value = url.get("q");
  $("mode").value = url.get("mode") === "text" || url.get("mode") === "category" ? url.get("mode") : "";
  const fusion = url.get("fusion");
  $("fusion").value = [...$("fusion").options].some((o) => o.value === fusion) ? fusion : "";
  const k = url.get("k");
  $("k").value = [...$("k").options].some((o) => o.value === k) ? k : "24";
  Object.assign(state, { kind: "search", q: url.get("q"), mode: $("mode").value, fusion: $("fusion").value,
                         k: Number($("k").value), offset: 0 });
  shop.filters = url.getAll("filter").filter((f) => f.includes(":")).slice(0, 20);
  shop.sort = url.get("sort") || "";
  shop.collapse = url.get("collapse") === "auto";
  $("collapse").checked = shop.collapse;
  if (![...$("sort").options].some((o) => o.value === shop.sort)) {
    $("sort").append(el("option", { value: shop.sort, text: shop.sort })); // as the link asks; the server judges
  }
  $("sort").value = shop.sort;
}

// -- a product and its suggested categories ---------------------------------------------

async function showProduct(id) {
  openView("product-view");
  remember(`?${new URLSearchParams({ product: id })}`, "product-view");
  setStatus("Loading the product…");
  let title = "";
  $("product-similar").onclick = () => {
    Object.assign(state, { kind: "similar", productId: id, productTitle: title, offset: 0 });
    run();
  };
  const body = $("suggested").tBodies[0];
  body.replaceChildren(el("tr", {}, [el("td", { class: "muted", colspan: "3", text: "Categorizing…" })]));
  $("suggested-path").textContent = "";
  try {
    const product = await api(`/products/${encodeURIComponent(id)}`);
    title = product.title;
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
  remember("?view=audit", "audit-view");
  setStatus("Auditing the catalogue…");
  const body = $("audit").tBodies[0];
  body.replaceChildren();
  // offset: one bounded page of products (in id order), so a large index is audited in part
  // rather than refused; the status says which part
  const p = new URLSearchParams({ k: $("audit-k").value, offset: "0" });
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
    const part = report.next_offset != null
      ? ` - the first ${report.audited} of ${report.total} by id; narrow it with a category to audit the rest`
      : "";
    setStatus((report.entries.length
      ? `${report.entries.length} most suspicious of ${report.audited} products audited (${report.depth} levels)`
      : `No product looks misfiled among ${report.audited} audited.`) + part);
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
    valueSpecs = health.values || {};
    fillSorts();
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
    shop.filters = [];
    run();
  });
  $("sort").addEventListener("change", () => {
    shop.sort = $("sort").value;
    if (state.kind === "search" && state.q) runShop(false);
  });
  $("collapse").addEventListener("change", () => {
    shop.collapse = $("collapse").checked;
    if (state.kind === "search" && state.q) runShop(false);
  });
  $("price-form").addEventListener("submit", applyPrice);
  $("price-clear").addEventListener("click", () => { if (priceName()) setFilter(priceName(), null); });
  $("more-results").addEventListener("click", loadMore);
  window.addEventListener("popstate", () => {
    if (ignoreNextPop) { ignoreNextPop = false; return; }
    const here = window.location.search;
    const kept = VIEWS.find((id) => id !== currentView() && shownAt[id] === here);
    if (kept) showView(kept); // the view still shows that address: as it was, no request
    else restore(new URLSearchParams(here));
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
  $("product-back").addEventListener("click", () => goBack(state.back || "results-view"));
  $("audit-back").addEventListener("click", () => goBack("results-view"));
  const health = loadHealth();
  loadTree();
  // Deep links: /?q=Kitchen+%26+Dining+%3E+Cookware&mode=category, /?similar=ID, /?product=ID,
  // /?view=audit; a search waits for /health (its facets and sorts depend on the index's values)
  const url = new URLSearchParams(window.location.search);
  if (url.get("q")) health.then(() => restore(url));
  else if ([...url.keys()].length) restore(url);
}

document.addEventListener("DOMContentLoaded", init);
