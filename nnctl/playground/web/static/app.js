// nnctl Playground: the browser side of a re-creation of the TensorFlow Playground.
// The Python server trains the network and streams numbers over one WebSocket (protocol v1);
// this page only draws them and sends the user's changes back.  Plain ES2020, nothing fetched.
"use strict";

/* ======================================================================
 * Constants and small helpers
 * ====================================================================== */

// The Playground's ladders; the values are sent back as these exact strings.
const LADDERS = {
  learningRate: ["0.00001", "0.0001", "0.001", "0.003", "0.01", "0.03", "0.1", "0.3", "1", "3", "10"],
  regularizationRate: ["0", "0.001", "0.003", "0.01", "0.03", "0.1", "0.3", "1", "3", "10"],
  regularization: ["none", "L1", "L2"],
  problem: ["classification", "regression"],
};
const DROPOUT_RATES = ["0", "0.1", "0.2", "0.3", "0.4", "0.5"];

// feature_choices name -> URL hash key, label and the function the Playground feeds in.
const FEATURES = {
  x1: { key: "x", label: "X\u2081", f: (x, y) => x },
  x2: { key: "y", label: "X\u2082", f: (x, y) => y },
  x1_sq: { key: "xSquared", label: "X\u2081\u00b2", f: (x, y) => x * x },
  x2_sq: { key: "ySquared", label: "X\u2082\u00b2", f: (x, y) => y * y },
  x1_x2: { key: "xTimesY", label: "X\u2081X\u2082", f: (x, y) => x * y },
  sin_x1: { key: "sinX", label: "sin(X\u2081)", f: (x, y) => Math.sin(x) },
  sin_x2: { key: "sinY", label: "sin(X\u2082)", f: (x, y) => Math.sin(y) },
};

const MAX_SHOWN = 16;                 // neurons drawn per layer; the rest become "+N more"
const UPLOAD_LIMIT = 2 * 1024 * 1024; // the server refuses bigger uploads anyway; say so early
const HEAT_ALPHA = 160 / 255;         // the Playground paints its heatmaps at this opacity over white
const HEATMAP_CSS = 300;              // big heatmap size in CSS pixels
const ORANGE = [245, 147, 34], NEUTRAL = [232, 234, 235], BLUE = [8, 119, 189];
const CLASS_PALETTE = ["#f59322", "#0877bd", "#2ca02c", "#9467bd", "#8c564b",
  "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const CLASS_RGB = CLASS_PALETTE.map(hexToRgb);

// Everything the page knows; the server is the source of truth, this is only its latest word.
const app = {
  socket: null, queue: [], closed: false,
  state: null, frame: null, history: [],
  running: false, showTest: false, discretize: false,
  focus: null, drawPending: false, yamlName: "playground.yaml",
};

const $ = (id) => document.getElementById(id);
const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const isNumber = (v) => typeof v === "number" && Number.isFinite(v);
const isTrue = (v) => v === true || v === "true" || v === 1 || v === "1";

// The server may report a per-layer list as an array or as the hash's comma string.
function asList(value) {
  if (Array.isArray(value)) return value.map(String);
  if (value === null || value === undefined || value === "") return [];
  return String(value).split(",");
}

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}
const rgbCss = ([r, g, b]) => `rgb(${r},${g},${b})`;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return node;
}

function decodeBase64(text) {
  const binary = atob(text || "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

// Losses as the Playground shows them (d3.format(".3f")); the element holds only the number.
function formatLoss(value) {
  if (isNumber(value)) return value.toFixed(3);
  return value === undefined ? "" : "NaN";
}
const formatValue = (v) => (isNumber(v) ? v.toFixed(3) : "?");

/* ======================================================================
 * Colours
 * ====================================================================== */

// The Playground's diverging scale: -1 orange -> 0 grey -> +1 blue, linear in RGB, clamped.
function diverging(value) {
  const v = clamp(isNumber(value) ? value : 0, -1, 1);
  const end = v < 0 ? ORANGE : BLUE, t = Math.abs(v);
  return NEUTRAL.map((c, k) => Math.round(c + (end[k] - c) * t));
}

const overWhite = (rgb, alpha) => rgb.map((c) => Math.round(255 + (c - 255) * alpha));

// One RGB triple per byte value (b / 127.5 - 1), so painting a grid is a table lookup.
function buildLut(discrete) {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let b = 0; b < 256; b++) {
    let v = b / 127.5 - 1;
    if (discrete) v = v >= 0 ? 1 : -1;
    lut.set(overWhite(diverging(v), HEAT_ALPHA), b * 3);
  }
  return lut;
}
const LUT = buildLut(false);
const LUT_DISCRETE = buildLut(true);
const currentLut = () => (app.discretize ? LUT_DISCRETE : LUT);

// Class index (or the Playground's -1/+1) -> full point colour.
const classRgb = (label) => CLASS_RGB[Math.max(0, Math.round(label)) % CLASS_RGB.length];

function pointColour(label, regression) {
  return rgbCss(regression ? diverging(label) : classRgb(label));
}

/* ======================================================================
 * Connection
 * ====================================================================== */

const token = new URLSearchParams(location.search).get("token") || "";
const currentHash = () => location.hash.replace(/^#/, "");

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const base = location.pathname.replace(/[^/]*$/, ""); // the page's directory, so a path prefix works
  return `${scheme}//${location.host}${base}ws?token=${encodeURIComponent(token)}`;
}

function connect() {
  const socket = new WebSocket(socketUrl());
  app.socket = socket;
  socket.addEventListener("open", () => {
    socket.send(JSON.stringify({ type: "hello", hash: currentHash() })); // always the first message
    for (const text of app.queue.splice(0)) socket.send(text);
  });
  socket.addEventListener("message", (event) => handleMessage(event.data));
  socket.addEventListener("close", () => {
    app.closed = true;
    app.running = false;
    updatePlayButton();
    showError("disconnected: the server stopped");
  });
}

// Messages sent before the socket opens wait (after hello); after a close they are dropped.
function send(message) {
  const text = JSON.stringify(message);
  if (app.socket && app.socket.readyState === WebSocket.OPEN) app.socket.send(text);
  else if (!app.closed) app.queue.push(text);
}

const sendSet = (changes) => send({ type: "set", changes });

const HANDLERS = {
  state: onState,
  frame: onFrame,
  error: (message) => showError(message.message || "error"),
  yaml: onYaml,
  saved: (message) => { $("saved").textContent = message.message || `saved run: ${message.path}`; },
};

function handleMessage(data) {
  let message;
  try { message = JSON.parse(data); } catch (err) { return; } // the server only sends JSON
  const handler = message && HANDLERS[message.type];
  if (handler) handler(message);
}

function showError(text) {
  const box = $("error");
  box.textContent = text || "";
  box.style.display = text ? "" : "none";
}

/* ======================================================================
 * Server messages: state and frame
 * ====================================================================== */

function onState(state) {
  app.state = state;
  // The last frame belongs to the old network (its weights, its output neuron's picture): never draw it on the
  // new diagram.  A frame always follows a state.
  app.frame = null;
  showError("");
  // The hash reproduces the experiment; replaceState does not fire 'hashchange', so no loop.
  if (typeof state.hash === "string") window.history.replaceState(null, "", "#" + state.hash);
  const options = state.options || {};
  app.showTest = isTrue(options.showTestData);
  app.discretize = isTrue(options.discretize);
  app.history = (state.history || []).slice();
  app.running = Boolean(state.running);
  updatePlayButton();
  syncControls(state);
  buildDataTiles(state);
  buildNetwork(state);
  showNotes(state.notes);
  buildLegend(state);
  $("download-weights").href =
    `model.npz?token=${encodeURIComponent(token)}&session=${encodeURIComponent(state.session || "")}`;
  // Until the next frame, the counters reflect the history the state came with.
  const last = app.history[app.history.length - 1];
  $("epoch").textContent = String(last ? last[0] : 0);
  $("train-loss").textContent = last ? formatLoss(last[1]) : "";
  $("test-loss").textContent = last ? formatLoss(last[2]) : "";
  requestDraw();
}

function onFrame(frame) {
  app.frame = frame;
  // History is kept for every frame, even ones the renderer skips.
  trimHistory(frame.epoch);
  appendHistory(frame.history_tail);
  app.running = Boolean(frame.running);
  updatePlayButton();
  $("epoch").textContent = String(Math.round(frame.epoch || 0));
  showMetrics(frame.metrics || {});
  $("diverged").hidden = !frame.diverged;
  requestDraw();
}

// A later point replaces an equal or newer epoch, so a reset without a state cannot tangle the chart.
function appendHistory(tail) {
  for (const point of tail || []) {
    const h = app.history;
    while (h.length && h[h.length - 1][0] >= point[0]) h.pop();
    h.push(point);
  }
}

function trimHistory(epoch) {
  if (!isNumber(epoch)) return;
  const h = app.history;
  while (h.length && h[h.length - 1][0] > epoch) h.pop();
}

function showMetrics(metrics) {
  $("train-loss").textContent = formatLoss(metrics.train_loss);
  $("test-loss").textContent = formatLoss(metrics.test_loss);
  const score = (name) => {
    if (`${name}_r2` in metrics) return `R\u00b2 ${formatValue(metrics[`${name}_r2`])}`;
    const acc = metrics[`${name}_accuracy`];
    return isNumber(acc) ? `accuracy ${(100 * acc).toFixed(1)}%` : "";
  };
  $("train-score").textContent = score("train");
  $("test-score").textContent = score("test");
}

function showNotes(notes) {
  const box = $("notes");
  box.textContent = "";
  box.hidden = !notes || notes.length === 0;
  if (box.hidden) return;
  // Not only a link's keys nnctl lacks: an upload's notes (e.g. "3 classes: the loss is cross-entropy") too.
  box.append(el("div", { text: "About these settings:" }),
    el("ul", {}, ...notes.map((note) => el("li", { text: note }))));
}

/* ======================================================================
 * Controls: top bar, "More", data column
 * ====================================================================== */

function updatePlayButton() {
  const button = $("play");
  button.textContent = app.running ? "Pause" : "Play"; // the icon comes from CSS
  button.classList.toggle("playing", app.running);
  button.disabled = app.closed;
}

function bindControls() {
  $("play").addEventListener("click", () => {
    send({ type: app.running ? "pause" : "play" });
    app.running = !app.running; // feels instant; the next frame confirms
    updatePlayButton();
  });
  $("step").addEventListener("click", () => send({ type: "step" }));
  $("reset").addEventListener("click", () => send({ type: "reset" }));
  $("regenerate").addEventListener("click", () => send({ type: "regenerate" }));
  $("regenerate-data").addEventListener("click", () => send({ type: "regenerate" }));
  $("add-layer").addEventListener("click", () => changeShape((shape) => shape.concat([2])));
  $("remove-layer").addEventListener("click", () => changeShape((shape) => shape.slice(0, -1)));
  // Every element with data-key is a hash setting: one handler for all of them.
  for (const input of document.querySelectorAll("[data-key]")) {
    input.addEventListener("change", () => changeSetting(input));
    if (input.type === "range") input.addEventListener("input", () => showRangeValue(input));
  }
  window.addEventListener("hashchange", () => send({ type: "hello", hash: currentHash() }));
}

function changeSetting(input) {
  const key = input.dataset.key;
  const value = input.type === "checkbox" ? String(input.checked) : input.value;
  if (input.type === "number" && (value.trim() === "" || !Number.isFinite(Number(value)))) return;
  const changes = { [key]: value };
  if (key === "activation") Object.assign(changes, perLayerLists(hiddenShape().length, { activation: value }));
  if (key === "batchSize") {
    for (const other of document.querySelectorAll('[data-key="batchSize"]')) other.value = value;
    $("batchSize-value").textContent = value; // the slider stops at 30, the number box does not
  }
  // Display options take effect at once; the server only records them in the hash.
  if (key === "showTestData") app.showTest = input.checked;
  if (key === "discretize") { app.discretize = input.checked; redrawFeatureThumbs(); }
  requestDraw();
  sendSet(changes);
}

function showRangeValue(input) {
  const out = $(`${input.id}-value`);
  if (out) out.textContent = input.value;
}

// Fill a select from a list, rebuilding only when the list changed (keeps focus and scroll).
function fillSelect(select, values) {
  const signature = values.join("\n");
  if (select.dataset.signature === signature) return;
  select.dataset.signature = signature;
  select.replaceChildren(...values.map((v) => el("option", { value: v, text: v })));
}

// Match by string, then numerically (0.03 vs "0.03"); a value off the ladder gets its own option.
function setSelectValue(select, value) {
  if (value === undefined || value === null) return;
  const text = String(value);
  const options = Array.from(select.options);
  const match = options.find((o) => o.value === text) ||
    options.find((o) => o.value !== "" && Number(o.value) === Number(text) && Number.isFinite(Number(text)));
  if (match) { select.value = match.value; return; }
  select.append(el("option", { value: text, text }));
  select.value = text;
}

function syncControls(state) {
  const options = state.options || {};
  for (const input of document.querySelectorAll("[data-key]")) {
    const key = input.dataset.key;
    const value = options[key] ?? (key === "problem" ? state.task : undefined);
    if (input.tagName === "SELECT") {
      const values = input.dataset.choices ? (state.choices || {})[input.dataset.choices] : LADDERS[key];
      if (values) fillSelect(input, values.map(String));
      setSelectValue(input, value);
    } else if (input.type === "checkbox") {
      input.checked = isTrue(value);
    } else if (value !== undefined && value !== null && document.activeElement !== input) {
      input.value = String(value); // never overwrite a number the user is typing
    }
    if (input.type === "range") showRangeValue(input);
  }
  $("batchSize-value").textContent = String(options.batchSize ?? $("batchSize").value);
}

/* ======================================================================
 * Dataset thumbnails (drawn here, as the Playground's src/dataset.ts would)
 * ====================================================================== */

function seededRandom(seed) { // mulberry32: the thumbnails look the same on every load
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const REG_GAUSS_CENTRES = [[-4, 2.5, 1], [0, 2.5, -1], [4, 2.5, 1], [-4, -2.5, -1], [0, -2.5, 1], [4, -2.5, -1]];

// Each generator returns [x, y, label] with label 0/1 (classification) or a target in [-1, 1].
const THUMBNAILS = {
  circle: (r, i) => {
    const rad = i % 2 ? 3.5 + 1.5 * r() : 2.5 * r(), a = 2 * Math.PI * r();
    return [rad * Math.sin(a), rad * Math.cos(a), i % 2 ? 0 : 1];
  },
  xor: (r) => {
    const push = (v) => v + (v > 0 ? 0.3 : -0.3);
    const x = push(10 * r() - 5), y = push(10 * r() - 5);
    return [x, y, x * y >= 0 ? 1 : 0];
  },
  gauss: (r, i) => {
    const normal = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    const c = i % 2 ? 2 : -2;
    return [c + 0.7 * normal(), c + 0.7 * normal(), i % 2];
  },
  spiral: (r, i, n) => {
    const k = i >> 1, m = n >> 1, rad = (5 * k) / m, t = (1.75 * k / m) * 2 * Math.PI + (i % 2 ? Math.PI : 0);
    return [rad * Math.sin(t), rad * Math.cos(t), i % 2 ? 0 : 1];
  },
  "reg-plane": (r) => {
    const x = 12 * r() - 6, y = 12 * r() - 6;
    return [x, y, (x + y) / 10];
  },
  "reg-gauss": (r) => {
    const x = 12 * r() - 6, y = 12 * r() - 6;
    let best = 0;
    for (const [cx, cy, sign] of REG_GAUSS_CENTRES) {
      const v = sign * Math.max(0, 1 - Math.hypot(x - cx, y - cy) / 2);
      if (Math.abs(v) > Math.abs(best)) best = v;
    }
    return [x, y, best];
  },
};

function drawThumbnail(canvas, name, regression) {
  const generate = THUMBNAILS[name];
  const ctx = canvas.getContext("2d");
  const size = canvas.width;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, size, size);
  if (!generate) return;
  const rand = seededRandom(7), n = 120;
  for (let i = 0; i < n; i++) {
    const [x, y, label] = generate(rand, i, n);
    ctx.fillStyle = pointColour(label, regression);
    ctx.beginPath();
    ctx.arc(((x + 6) / 12) * size, ((6 - y) / 12) * size, 1.6, 0, 2 * Math.PI);
    ctx.fill();
  }
}

function buildDataTiles(state) {
  const regression = state.task === "regression";
  const key = regression ? "regDataset" : "dataset";
  const names = ((state.choices || {})[key] || []).map(String);
  const host = $("datasets");
  host.replaceChildren(...names.map((name) => {
    const canvas = el("canvas", { width: 60, height: 60 });
    drawThumbnail(canvas, name, regression);
    return el("button", {
      class: "tile" + (name === state.data_name ? " selected" : ""),
      title: name, "data-testid": `dataset-${name}`,
      onclick: () => sendSet({ [key]: name }),
    }, canvas, el("span", { text: name }));
  }));
  const uploaded = state.data_name && !names.includes(state.data_name);
  $("data-name").textContent = uploaded ? `Data: ${state.data_name}` : "";
}

/* ======================================================================
 * Network diagram: features, hidden layers, output, links
 * ====================================================================== */

// nodes: "L:i" -> {box (element the links attach to), canvas, bias, L, i}; links: one per drawn weight.
const diagram = { nodes: new Map(), links: [], svg: null, fittedWidth: -1 };

const hiddenLayers = () => ((app.state && app.state.network) || []).filter((l) => l.kind === "hidden");
const hiddenShape = () => hiddenLayers().map((l) => l.units);

// Per-layer lists the user has set must keep one entry per hidden layer when the shape changes.
// `override` forces a value for every layer (the global activation select resets per-layer ones).
function perLayerLists(count, override = {}) {
  const options = (app.state && app.state.options) || {};
  const hidden = hiddenLayers();
  const range = Array.from({ length: count }, (_, k) => k);
  const out = {};
  if (override.activation !== undefined) {
    if (asList(options.activations).length) out.activations = range.map(() => override.activation).join(",");
    return out;
  }
  if (asList(options.activations).length) {
    out.activations = range.map((k) => (hidden[k] && hidden[k].activation) || options.activation || "tanh").join(",");
  }
  if (asList(options.dropout).length) out.dropout = range.map((k) => (hidden[k] ? Number(hidden[k].dropout) || 0 : 0)).join(",");
  if (asList(options.batchnorm).length) out.batchnorm = range.map((k) => (hidden[k] && hidden[k].batchnorm ? "1" : "0")).join(",");
  return out;
}

function changeShape(edit) {
  const shape = edit(hiddenShape()).filter((units) => units >= 1);
  sendSet({ networkShape: shape.join(","), ...perLayerLists(shape.length) });
}

// Change one hidden layer's activation / dropout / batchnorm: the hash holds the whole list.
function setLayerProperty(index, property, value) {
  const hidden = hiddenLayers();
  const lists = {
    activations: hidden.map((l) => l.activation || ""),
    dropout: hidden.map((l) => String(Number(l.dropout) || 0)),
    batchnorm: hidden.map((l) => (l.batchnorm ? "1" : "0")),
  };
  lists[property][index] = value;
  sendSet({ [property]: lists[property].join(",") });
}

function buildNetwork(state) {
  const host = $("network");
  const layers = state.network || [];
  const hiddenCount = Math.max(0, layers.length - 2);
  if (app.focus !== null) setFocus(null); // the hovered neuron may be gone, and mouseleave never fires
  $("tooltip").hidden = true;
  closeEditor();
  diagram.nodes = new Map();
  diagram.links = [];
  $("layer-count").textContent = `${hiddenCount} hidden layer${hiddenCount === 1 ? "" : "s"}`;
  $("remove-layer").disabled = hiddenCount === 0;

  const columns = el("div", { class: "layers" }, inputColumn(state));
  for (let L = 1; L <= hiddenCount; L++) columns.append(hiddenColumn(state, L));
  if (layers.length >= 2) columns.append(outputColumn(state, layers.length - 1));
  diagram.svg = svgEl("svg", { class: "links" });
  host.replaceChildren(columns, diagram.svg);
  createLinks(layers);
  diagram.fittedWidth = -1;
  relayoutNetwork();
}

// Spread the columns over the width the diagram has (as the Playground does): the gap between columns is
// what is left over, within LAYER_GAP; too little room -> narrower ("compact") columns; still too little
// (many layers on a narrow screen) -> the smallest gap and a horizontal scrollbar.
const LAYER_GAP = { min: 12, max: 180 };

function fitNetwork() {
  const host = $("network"), columns = host.querySelector(".layers");
  const room = host.clientWidth;
  if (!columns || room === 0 || room === diagram.fittedWidth) return;
  diagram.fittedWidth = room;
  const gaps = Math.max(1, columns.children.length - 1);
  const natural = (compact) => {
    columns.classList.toggle("compact", compact);
    columns.style.columnGap = "0px";
    return columns.offsetWidth; // .layers is max-content wide: the columns themselves plus padding
  };
  let used = natural(false);
  if (used + LAYER_GAP.min * gaps > room) used = natural(true);
  columns.style.columnGap = `${clamp(Math.floor((room - used) / gaps), LAYER_GAP.min, LAYER_GAP.max)}px`;
  // Every column's first node on one line: the heads as tall as the tallest (compact heads wrap).
  const heads = Array.from(columns.querySelectorAll(".layer-head"));
  for (const head of heads) head.style.minHeight = "";
  const tallest = Math.max(0, ...heads.map((head) => head.offsetHeight));
  for (const head of heads) head.style.minHeight = `${tallest}px`;
}

function relayoutNetwork() {
  fitNetwork();
  layoutLinks();
}

const moreLabel = (hidden) => el("div", { class: "more-label", text: `+${hidden} more` });

function inputColumn(state) {
  const features = state.features || [];
  const choices = state.feature_choices || [];
  const nodes = el("div", { class: "nodes" });
  if (choices.length) {
    for (const choice of choices) {
      const spec = FEATURES[choice] || { label: choice };
      const index = features.indexOf(choice);
      const canvas = el("canvas", { class: "thumb", "data-feature": choice });
      const toggle = () => spec.key && sendSet({ [spec.key]: String(index < 0) });
      const node = el("div", {
        class: "node feature" + (index >= 0 ? " active" : ""), role: "button", tabindex: 0,
        title: index >= 0 ? "click to stop feeding this feature" : "click to feed this feature",
        "data-testid": `feature-${choice}`,
        onclick: toggle,
        onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); } },
      }, el("span", { class: "label", text: spec.label }), canvas);
      paintFeature(canvas, choice, state.extent);
      if (index >= 0 && index < MAX_SHOWN) diagram.nodes.set(`0:${index}`, { box: canvas, L: 0, i: index });
      nodes.append(node);
    }
  } else {
    // Uploaded CSV: the columns are the features and cannot be toggled.
    features.slice(0, MAX_SHOWN).forEach((name, i) => {
      const box = el("div", { class: "node feature active static", "data-testid": `feature-${name}` },
        el("span", { class: "label", text: name }));
      diagram.nodes.set(`0:${i}`, { box, L: 0, i });
      nodes.append(box);
    });
    if (features.length > MAX_SHOWN) nodes.append(moreLabel(features.length - MAX_SHOWN));
  }
  const hint = choices.length ? "Which properties do you want to feed in?" : `Columns of ${state.data_name || "the data"}`;
  return el("div", { class: "layer input-layer" },
    el("div", { class: "layer-head" }, el("div", { class: "layer-title", text: "Features" }),
      el("div", { class: "hint", text: hint })), nodes);
}

function hiddenColumn(state, L) {
  const layer = state.network[L];
  const k = L - 1; // index among hidden layers
  const choices = ((state.choices || {}).activation || []).map(String);
  const activation = el("select", {
    class: "layer-activation", title: "activation of this layer", "data-testid": `layer-activation-${L}`,
    onchange: (e) => setLayerProperty(k, "activations", e.target.value),
  }, ...choices.map((c) => el("option", { value: c, text: c })));
  setSelectValue(activation, layer.activation);
  const dropout = el("select", {
    title: "dropout rate", "data-testid": `layer-dropout-${L}`,
    onchange: (e) => setLayerProperty(k, "dropout", e.target.value),
  }, ...DROPOUT_RATES.map((r) => el("option", { value: r, text: r })));
  setSelectValue(dropout, Number(layer.dropout) || 0);
  const batchnorm = el("input", {
    type: "checkbox", checked: Boolean(layer.batchnorm), "data-testid": `layer-batchnorm-${L}`,
    onchange: (e) => setLayerProperty(k, "batchnorm", e.target.checked ? "1" : "0"),
  });
  const changeUnits = (delta) => changeShape((shape) => shape.map((u, j) => (j === k ? u + delta : u)));
  const head = el("div", { class: "layer-head" },
    el("div", { class: "neuron-buttons" },
      el("button", { class: "round tiny", title: "add a neuron", "data-testid": `add-neuron-${L}`, onclick: () => changeUnits(1), text: "+" }),
      el("button", { class: "round tiny", title: "remove a neuron", "data-testid": `remove-neuron-${L}`,
        disabled: layer.units <= 1, onclick: () => changeUnits(-1), text: "\u2212" })),
    el("div", { class: "layer-title", text: `${layer.units} neuron${layer.units === 1 ? "" : "s"}` }),
    activation,
    el("div", { class: "layer-extras" },
      el("label", { title: "dropout rate" }, "drop ", dropout),
      el("label", { title: "batch normalisation" }, batchnorm, "BN")));
  const nodes = el("div", { class: "nodes" });
  for (let i = 0; i < Math.min(layer.units, MAX_SHOWN); i++) nodes.append(neuronNode(L, i));
  if (layer.units > MAX_SHOWN) nodes.append(moreLabel(layer.units - MAX_SHOWN));
  return el("div", { class: "layer hidden-layer" }, head, nodes);
}

function outputColumn(state, L) {
  const layer = state.network[L];
  const nodes = el("div", { class: "nodes" });
  for (let i = 0; i < Math.min(layer.units, MAX_SHOWN); i++) nodes.append(neuronNode(L, i));
  if (layer.units > MAX_SHOWN) nodes.append(moreLabel(layer.units - MAX_SHOWN));
  return el("div", { class: "layer output-layer" },
    el("div", { class: "layer-head" }, el("div", { class: "layer-title", text: "Output" }),
      el("div", { class: "hint", text: layer.activation || "" })), nodes);
}

// A neuron: its heatmap thumbnail plus a small bias square (hover: value; click: edit).
function neuronNode(L, i) {
  const canvas = el("canvas", { class: "thumb" });
  const bias = el("div", { class: "bias", title: "" });
  const node = el("div", { class: "node neuron", "data-testid": `neuron-${L}-${i}`, "data-node": `${L}:${i}` }, canvas, bias);
  // hovering a neuron shows its output in the big heatmap
  node.addEventListener("mouseenter", () => setFocus(`${L}:${i}`));
  node.addEventListener("mouseleave", () => setFocus(null));
  const biasOf = () => { const w = app.frame && app.frame.weights; return w && w[L - 1] && w[L - 1].b ? w[L - 1].b[i] : undefined; };
  hoverText(bias, () => `Bias is ${formatValue(biasOf())}`);
  bias.addEventListener("click", (event) => {
    event.stopPropagation();
    openEditor(event, biasOf(), (value) => send({ type: "edit", kind: "bias", layer: L - 1, unit: i, value }));
  });
  diagram.nodes.set(`${L}:${i}`, { box: canvas, canvas, bias, L, i });
  return node;
}

function setFocus(node) {
  if (app.focus === node) return;
  app.focus = node;
  send({ type: "focus", node });
}

// Links live in one SVG over the columns: a visible path plus a wide transparent one to hover.
function createLinks(layers) {
  const lines = svgEl("g"), hits = svgEl("g");
  diagram.svg.append(lines, hits);
  for (let l = 0; l + 1 < layers.length; l++) {
    for (let i = 0; i < Math.min(layers[l].units, MAX_SHOWN); i++) {
      for (let j = 0; j < Math.min(layers[l + 1].units, MAX_SHOWN); j++) {
        const a = diagram.nodes.get(`${l}:${i}`), b = diagram.nodes.get(`${l + 1}:${j}`);
        if (!a || !b) continue;
        const link = { l, i, j, a, b, line: svgEl("path", { class: "link" }), hit: svgEl("path", { class: "link-hit" }) };
        const weightOf = () => { const w = app.frame && app.frame.weights; return w && w[l] && w[l].w && w[l].w[i] ? w[l].w[i][j] : undefined; };
        hoverText(link.hit, () => `Weight is ${formatValue(weightOf())}`);
        link.hit.addEventListener("click", (event) =>
          openEditor(event, weightOf(), (value) => send({ type: "edit", kind: "weight", layer: l, from: i, to: j, value })));
        lines.append(link.line);
        hits.append(link.hit);
        diagram.links.push(link);
      }
    }
  }
}

// Bezier from the right edge of one node to the left edge of the next, as the Playground draws them.
function layoutLinks() {
  const host = $("network");
  if (!diagram.svg) return;
  // Shrink first: the SVG itself would otherwise keep the scroll size from ever getting smaller.
  diagram.svg.setAttribute("width", 0);
  diagram.svg.setAttribute("height", 0);
  const origin = host.getBoundingClientRect();
  diagram.svg.setAttribute("width", host.scrollWidth);
  diagram.svg.setAttribute("height", host.scrollHeight);
  const rects = new Map();
  const rectOf = (record) => {
    if (!rects.has(record)) rects.set(record, record.box.getBoundingClientRect());
    return rects.get(record);
  };
  const dx = host.scrollLeft - origin.left, dy = host.scrollTop - origin.top;
  for (const link of diagram.links) {
    const a = rectOf(link.a), b = rectOf(link.b);
    const x1 = a.right + dx, y1 = a.top + a.height / 2 + dy;
    const x2 = b.left + dx, y2 = b.top + b.height / 2 + dy;
    const mid = (x1 + x2) / 2;
    const d = `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
    link.line.setAttribute("d", d);
    link.hit.setAttribute("d", d);
  }
}

// The Playground: width = linear([0, 5] -> [1, 10]) of |w|, clamped; colour from the diverging scale.
const linkWidth = (w) => clamp(1 + (Math.abs(w) / 5) * 9, 1, 10);

function updateNetwork(frame) {
  const weights = frame.weights || [];
  for (const link of diagram.links) {
    const layer = weights[link.l];
    const w = layer && layer.w && layer.w[link.i] ? layer.w[link.i][link.j] : undefined;
    if (!isNumber(w)) continue;
    link.line.style.stroke = rgbCss(diverging(w));
    link.line.style.strokeWidth = linkWidth(w).toFixed(2);
  }
  for (const record of diagram.nodes.values()) {
    const layer = record.bias && weights[record.L - 1];
    const b = layer && layer.b ? layer.b[record.i] : undefined;
    if (isNumber(b)) record.bias.style.background = rgbCss(diverging(b));
  }
  const neurons = frame.neurons || {};
  for (const [key, data] of Object.entries(neurons.grids || {})) {
    const record = diagram.nodes.get(key);
    if (record && record.canvas) paintGrid(record.canvas, decodeBase64(data), neurons.size);
  }
}

/* ---------- tooltip and inline editor ---------- */

function hoverText(target, text) {
  const show = (event) => {
    const tip = $("tooltip");
    tip.textContent = text();
    tip.style.left = `${event.clientX + 12}px`;
    tip.style.top = `${event.clientY + 12}px`;
    tip.hidden = false;
  };
  target.addEventListener("mouseenter", show);
  target.addEventListener("mousemove", show); // re-reads the value: it changes while training
  target.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
}

let editorCommit = null;

function openEditor(event, current, commit) {
  const editor = $("editor");
  editor.value = isNumber(current) ? String(Number(current.toFixed(4))) : "";
  // Beside the pointer, not under it: covering the neuron would end its hover (and focus).
  editor.style.left = `${event.clientX + 10}px`;
  editor.style.top = `${event.clientY + 10}px`;
  editor.hidden = false;
  $("tooltip").hidden = true;
  editorCommit = commit;
  editor.focus();
  editor.select();
}

function closeEditor() {
  editorCommit = null;
  $("editor").hidden = true;
}

function bindEditor() {
  const editor = $("editor");
  editor.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeEditor();
    if (event.key !== "Enter") return;
    const value = Number(editor.value);
    if (editor.value.trim() !== "" && Number.isFinite(value) && editorCommit) editorCommit(value);
    closeEditor();
  });
  editor.addEventListener("blur", closeEditor);
}

/* ======================================================================
 * Heatmaps: neuron thumbnails, feature thumbnails, the big output heatmap
 * ====================================================================== */

function fillFromLut(pixels, bytes, lut) {
  for (let p = 0, q = 0; p < bytes.length; p++, q += 4) {
    const k = bytes[p] * 3;
    pixels[q] = lut[k]; pixels[q + 1] = lut[k + 1]; pixels[q + 2] = lut[k + 2]; pixels[q + 3] = 255;
  }
}

// More than two classes: the winning class's colour, more opaque where the network is more sure.
function fillClasses(pixels, argmax, confidence) {
  for (let p = 0, q = 0; p < argmax.length; p++, q += 4) {
    const rgb = CLASS_RGB[argmax[p] % CLASS_RGB.length];
    const alpha = app.discretize ? HEAT_ALPHA : (HEAT_ALPHA * confidence[p]) / 255;
    pixels[q] = 255 + (rgb[0] - 255) * alpha;
    pixels[q + 1] = 255 + (rgb[1] - 255) * alpha;
    pixels[q + 2] = 255 + (rgb[2] - 255) * alpha;
    pixels[q + 3] = 255;
  }
}

// Small grids are painted 1:1 into their own canvas; CSS scales them up.
function paintGrid(canvas, bytes, size) {
  if (!size || bytes.length < size * size) return;
  if (canvas.width !== size) { canvas.width = size; canvas.height = size; }
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(size, size);
  fillFromLut(image.data, bytes.subarray(0, size * size), currentLut());
  ctx.putImageData(image, 0, 0);
  canvas.dataset.painted = "1";
}

// Input features are known functions of (x1, x2): paint them here, scaled to their largest |value|.
function paintFeature(canvas, choice, extent) {
  const spec = FEATURES[choice];
  if (!spec) return;
  const [x0, x1, y0, y1] = extent || [-6, 6, -6, 6];
  const size = 24, values = new Float32Array(size * size);
  let peak = 1e-9;
  for (let r = 0; r < size; r++) {
    for (let c = 0; c < size; c++) {
      const v = spec.f(x0 + ((c + 0.5) / size) * (x1 - x0), y1 - ((r + 0.5) / size) * (y1 - y0));
      values[r * size + c] = v;
      peak = Math.max(peak, Math.abs(v));
    }
  }
  paintGrid(canvas, Uint8Array.from(values, (v) => Math.round((v / peak + 1) * 127.5)), size);
}

function redrawFeatureThumbs() {
  const extent = app.state && app.state.extent;
  for (const canvas of document.querySelectorAll("canvas[data-feature]")) paintFeature(canvas, canvas.dataset.feature, extent);
}

const heat = { offscreen: document.createElement("canvas"), image: null };

function setupHeatmapCanvas() {
  const dpr = window.devicePixelRatio || 1;
  for (const [id, w, h] of [["heatmap", HEATMAP_CSS, HEATMAP_CSS], ["loss-chart", HEATMAP_CSS, 60]]) {
    const canvas = $(id);
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
  }
}

// Paint the S×S bytes into the offscreen canvas once; the visible one scales it.
function paintOffscreen(frame) {
  const map = frame.heatmap, size = map.size;
  const classes = !map.focus && frame.heatmap_classes;
  const bytes = decodeBase64(classes ? classes.argmax : map.data);
  if (!size || bytes.length < size * size) return false;
  if (heat.offscreen.width !== size || !heat.image) {
    heat.offscreen.width = size;
    heat.offscreen.height = size;
    heat.image = heat.offscreen.getContext("2d").createImageData(size, size);
  }
  if (classes) fillClasses(heat.image.data, bytes.subarray(0, size * size), decodeBase64(classes.confidence));
  else fillFromLut(heat.image.data, bytes.subarray(0, size * size), currentLut());
  heat.offscreen.getContext("2d").putImageData(heat.image, 0, 0);
  return true;
}

function drawHeatmap() {
  const canvas = $("heatmap"), ctx = canvas.getContext("2d");
  const size = canvas.width;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, size, size);
  const frame = app.frame;
  if (frame && frame.heatmap && paintOffscreen(frame)) {
    ctx.imageSmoothingEnabled = !app.discretize; // smooth like the Playground, crisp when discretized
    ctx.drawImage(heat.offscreen, 0, 0, size, size);
  }
  drawPoints(ctx, size);
  const focus = frame && frame.heatmap && frame.heatmap.focus;
  $("heatmap-caption").textContent = focus ? `showing neuron ${focus}` : "";
}

// Training points: filled, white outline; test points (if shown): black outline.
function drawPoints(ctx, size) {
  const state = app.state;
  if (!state || !state.points) return;
  const [x0, x1, y0, y1] = state.extent || [-6, 6, -6, 6];
  const scale = size / HEATMAP_CSS, regression = state.task === "regression";
  const drawSet = (points, outline) => {
    ctx.lineWidth = scale;
    ctx.strokeStyle = outline;
    for (const [x, y, label] of points || []) {
      ctx.beginPath();
      ctx.arc(((x - x0) / (x1 - x0)) * size, ((y1 - y) / (y1 - y0)) * size, 3.5 * scale, 0, 2 * Math.PI);
      ctx.fillStyle = pointColour(label, regression);
      ctx.fill();
      ctx.stroke();
    }
  };
  drawSet(state.points.train, "#fff");
  if (app.showTest) drawSet(state.points.test, "#000");
}

function buildLegend(state) {
  const legend = $("legend");
  const classes = state.classes || [];
  if (classes.length > 2) {
    legend.replaceChildren(...classes.map((name, k) =>
      el("span", { class: "swatch-item" }, el("span", { class: "swatch", style: `background:${CLASS_PALETTE[k % CLASS_PALETTE.length]}` }), name)));
    return;
  }
  const stops = [ORANGE, NEUTRAL, BLUE].map((c) => rgbCss(overWhite(c, HEAT_ALPHA))).join(",");
  const ends = classes.length === 2 ? [`class ${classes[0]}`, `class ${classes[1]}`] : ["target -1", "target +1"];
  legend.replaceChildren(
    el("div", { class: "gradient", style: `background:linear-gradient(to right,${stops})` }),
    el("div", { class: "ticks" }, el("span", { text: "-1" }), el("span", { text: "0" }), el("span", { text: "1" })),
    el("div", { class: "ticks" }, el("span", { text: ends[0] }), el("span", { text: ends[1] })));
}

/* ======================================================================
 * Charts: the loss over epochs, the confusion matrix
 * ====================================================================== */

// Train grey, test black, y from the lowest to the highest loss seen (as the Playground's line chart).
function drawChart() {
  const canvas = $("loss-chart"), ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 3 * (w / HEATMAP_CSS);
  ctx.clearRect(0, 0, w, h);
  const points = app.history;
  if (points.length < 2) return;
  let lo = Infinity, hi = -Infinity;
  for (const p of points) for (const v of [p[1], p[2]]) if (isNumber(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (!Number.isFinite(lo)) return;
  if (hi - lo < 1e-12) { hi += 0.5; lo -= 0.5; }
  const e0 = points[0][0], e1 = points[points.length - 1][0];
  const xOf = (e) => pad + ((e - e0) / (e1 - e0 || 1)) * (w - 2 * pad);
  const yOf = (v) => h - pad - ((v - lo) / (hi - lo)) * (h - 2 * pad);
  // No more segments than pixels, but always through the latest point.
  const stride = Math.max(1, Math.floor(points.length / w));
  const picks = [];
  for (let k = 0; k < points.length; k += stride) picks.push(k);
  if (picks[picks.length - 1] !== points.length - 1) picks.push(points.length - 1);
  ctx.lineWidth = 1.5 * (w / HEATMAP_CSS);
  for (const [column, colour] of [[1, "#777"], [2, "#000"]]) {
    ctx.strokeStyle = colour;
    ctx.beginPath();
    let pen = false;
    for (const k of picks) {
      const v = points[k][column];
      if (!isNumber(v)) { pen = false; continue; }
      if (pen) ctx.lineTo(xOf(points[k][0]), yOf(v)); else ctx.moveTo(xOf(points[k][0]), yOf(v));
      pen = true;
    }
    ctx.stroke();
  }
}

function showConfusion(matrix) {
  const box = $("confusion");
  const names = (app.state && app.state.classes) || [];
  const signature = JSON.stringify([matrix || null, names]); // new class names (another upload) redraw it too
  if (box.dataset.signature === signature) return; // rebuild the table only when a count changed
  box.dataset.signature = signature;
  box.hidden = !Array.isArray(matrix) || matrix.length === 0;
  if (box.hidden) { box.replaceChildren(); return; }
  const head = el("tr", {}, el("th", { text: "true \\ predicted" }), ...matrix.map((_, c) => el("th", { text: names[c] || String(c) })));
  const rows = matrix.map((row, r) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    return el("tr", {}, el("th", { text: names[r] || String(r) }), ...row.map((count, c) => {
      const tint = r === c ? "8,119,189" : "245,147,34"; // right answers blue, mistakes orange
      return el("td", { text: String(count), style: `background:rgba(${tint},${(0.6 * count / total).toFixed(3)})` });
    }));
  });
  box.replaceChildren(el("div", { class: "label", text: "Confusion matrix (test data)" }),
    el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
}

/* ======================================================================
 * Export / import / upload / downloads
 * ====================================================================== */

function onYaml(message) {
  const pre = $("yaml");
  pre.textContent = message.text || "";
  pre.hidden = false;
  app.yamlName = message.filename || "playground.yaml";
  $("copy-yaml").disabled = false;
  $("download-yaml").disabled = false;
}

function downloadBlob(text, filename, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  clickLink(url, filename);
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function clickLink(href, filename) {
  const link = el("a", { href, download: filename, style: "display:none" });
  document.body.append(link);
  link.click();
  link.remove();
}

async function copyYaml() {
  const text = $("yaml").textContent, button = $("copy-yaml");
  try {
    await navigator.clipboard.writeText(text);
  } catch (err) { // no clipboard API (plain http): select the text and use the old command
    const range = document.createRange();
    range.selectNodeContents($("yaml"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = "Copy"; }, 1200);
}

function readFileText(file, done) {
  const reader = new FileReader();
  reader.onload = () => done(String(reader.result));
  reader.onerror = () => showError(`could not read ${file.name}`);
  reader.readAsText(file);
}

function uploadCsv(input) {
  const file = input.files && input.files[0];
  input.value = ""; // choosing the same file again should upload it again
  if (!file) return;
  if (file.size > UPLOAD_LIMIT) {
    showError(`${file.name} is too large (${(file.size / 1048576).toFixed(1)} MB); the limit is 2 MB`);
    return;
  }
  readFileText(file, (text) => send({ type: "upload", name: file.name, text }));
}

function importYamlFile(input) {
  const file = input.files && input.files[0];
  input.value = "";
  if (!file) return;
  if (file.size > UPLOAD_LIMIT) { showError(`${file.name} is too large; the limit is 2 MB`); return; }
  readFileText(file, (text) => {
    $("import-text").value = text;
    send({ type: "import", yaml: text });
  });
}

function downloadPicture() {
  const name = String((app.state && app.state.data_name) || "heatmap").replace(/[^\w.-]+/g, "_");
  clickLink($("heatmap").toDataURL("image/png"), `playground-${name}.png`);
}

function bindExport() {
  $("export-yaml").addEventListener("click", () => send({ type: "export" }));
  $("copy-yaml").addEventListener("click", copyYaml);
  $("download-yaml").addEventListener("click", () => downloadBlob($("yaml").textContent, app.yamlName, "text/yaml"));
  $("import").addEventListener("click", () => {
    const text = $("import-text").value;
    if (text.trim()) send({ type: "import", yaml: text });
    else showError("paste an nnctl config to import");
  });
  $("import-file").addEventListener("change", (e) => importYamlFile(e.target));
  $("upload").addEventListener("change", (e) => uploadCsv(e.target));
  $("save-run").addEventListener("click", () => { $("saved").textContent = ""; send({ type: "save_run" }); });
  $("download-picture").addEventListener("click", downloadPicture);
  $("download-weights").addEventListener("click", (event) => {
    if (!app.state) event.preventDefault(); // no session yet, nothing to download
  });
}

/* ======================================================================
 * Rendering loop and start-up
 * ====================================================================== */

// Frames may arrive faster than the screen refreshes: draw only the latest, once per animation frame.
function requestDraw() {
  if (app.drawPending) return;
  app.drawPending = true;
  requestAnimationFrame(draw);
}

function draw() {
  app.drawPending = false;
  if (app.frame) {
    updateNetwork(app.frame);
    showConfusion(app.frame.confusion);
  }
  drawHeatmap();
  drawChart();
}

function start() {
  setupHeatmapCanvas();
  for (const input of document.querySelectorAll("select[data-key]")) {
    if (LADDERS[input.dataset.key]) fillSelect(input, LADDERS[input.dataset.key]);
  }
  bindControls();
  bindEditor();
  bindExport();
  updatePlayButton();
  // Link positions depend on layout: follow size changes of the diagram and the window.
  if (window.ResizeObserver) new ResizeObserver(relayoutNetwork).observe($("network"));
  window.addEventListener("resize", relayoutNetwork);
  requestDraw();
  connect();
}

document.addEventListener("DOMContentLoaded", start);
