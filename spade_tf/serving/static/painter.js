// The paint-a-scene page of spade_tf (GauGAN's demo): paint class ids, see what the model makes of them.
//
// The label map is an array of class ids at the model's label resolution; the canvas shows it zoomed up with
// putImageData (exact palette colours, no antialiasing). After each change (debounced) the map goes to the
// model as a PNG, in TF Serving's REST row format:
//
//   POST <predict URL>  {"signature_name": "predict_png", "instances": [{"b64": "<label PNG>"}]}
//   VAE models:         {"signature_name": "predict_png" | "style_png",
//                        "instances": [{"label_png_bytes": {"b64": ...}, "seed": 7[, "style_png_bytes": {"b64": ...}]}]}
//
// The PNG is RGB in the palette colours (canvas toBlob); when two ids share a colour (e.g. id 0 and don't care
// both black in the official colour map) it is a grayscale PNG of the ids instead, so no id is mistaken.
//
// The page opens on the first example label map of the export (metadata.json "examples", files of the export's
// examples/ folder, fetched relative to the metadata URL) and lists the others as scenes to switch to; for VAE
// models the style exemplars are thumbnails (labelled by look) that synthesize with that photo's style
// (style_png), plus Random (a random seed, predict_png). An export without examples opens on an empty canvas.
//
// Query overrides, to use the page with a real TF Serving:
//   index.html?predict=/v1/models/spade:predict&metadata=/files/metadata.json
// metadata= is the export's metadata.json (classes, palette, size, use_vae, signatures). TF Serving sends no
// CORS headers, so the browser lets this page call it only from the same origin: serve these static files
// and TF Serving behind one reverse proxy (python serve.py is both in one process).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const DEBOUNCE_MS = 150;
  const BUSY_RETRY_MS = 1000;
  const UNDO_STEPS = 50;
  const VIEW_PX = 512; // CSS pixels of the longer side of the zoomed-up label map, at most ...
  const MIN_VIEW_PX = 256; // ... and at least: narrower windows put the result under the canvas
  const SCENE_THUMB_PX = 56; // CSS pixels of the scene and style thumbnails' longer side
  const STYLE_THUMB_PX = 64;
  const STYLE_MAX_SIDE = 512; // style images are shrunk to this before upload (the encoder resizes anyway)
  const DONTCARE_RAW = 255; // raw "don't care" in label PNGs: spade_tf.data.labels.DONTCARE_VALUE
  const MAX_SEED = 2147483647; // seeds are int32
  const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

  const params = new URLSearchParams(window.location.search);
  const modelName =
    params.get("model") || document.querySelector('meta[name="spade-model-name"]').getAttribute("content");
  const predictUrl = params.get("predict") || `v1/models/${encodeURIComponent(modelName)}:predict`;
  const metadataUrl = params.get("metadata") || `v1/models/${encodeURIComponent(modelName)}/spade_metadata`;

  const S = {
    ready: false,
    H: 0,
    W: 0,
    numClasses: 0,
    numIds: 0, // classes plus the don't-care id
    dontcare: -1, // its id, or -1
    names: [],
    colors: null, // Uint8Array, 3 per id
    uniqueColors: true,
    ids: null, // the label map, row-major
    cls: 0,
    tool: "brush",
    size: 1,
    eraser: 0,
    undo: [],
    redo: [],
    useVae: false,
    hasStyle: false,
    styleB64: null,
    examples: [], // {name, ids} example label maps (metadata "examples")
    exemplars: [], // {name, look, url, b64} style exemplars of VAE models
    example: -1, // the example last loaded
    exemplar: -1, // the exemplar whose style is used; -1: none (seed or an uploaded style image)
    timer: null,
    sent: 0, // sequence number of the last request sent
    shown: 0, // ... and of the one whose image is shown
    inFlight: 0,
    stroke: null, // {id, x, y} while drawing
  };
  let canvas, ctx, imageData;

  // -- status ------------------------------------------------------------------------------------------------

  function setStatus(text, isError) {
    const el = $("status");
    el.textContent = text;
    el.classList.toggle("error", !!isError);
  }

  // What became of a file the user chose (loaded, resized, refused) has a line of its own: on the status line
  // a synthesis still in flight or already scheduled would replace it within milliseconds. It stays until the
  // user changes the map or chooses another file.
  function setNotice(text, isError) {
    const el = $("notice");
    el.textContent = text || "";
    el.hidden = !text;
    el.classList.toggle("error", !!isError);
  }

  // -- start-up ----------------------------------------------------------------------------------------------

  // The weights' license from the export's metadata.json (spade_tf.models.bundle.weights_license): Apache-2.0
  // for models trained with spade_tf, CC BY-NC-SA 4.0 for NVIDIA's official checkpoints and their derivatives.
  function showLicense(license) {
    const el = $("model-license");
    if (!license || !license.name) return;
    el.textContent = "Weights: ";
    const name = document.createElement("strong");
    name.textContent = license.name;
    if (typeof license.url === "string" && /^https:\/\//.test(license.url)) {
      const link = document.createElement("a");
      link.href = license.url;
      link.target = "_blank";
      link.rel = "noopener";
      link.appendChild(name);
      el.appendChild(link);
    } else {
      el.appendChild(name);
    }
    if (license.terms) el.appendChild(document.createTextNode(` (${license.terms})`));
    el.title = [license.reason, license.attribution].filter(Boolean).join(". ");
    el.classList.toggle("restricted", license.spdx !== "Apache-2.0");
    el.hidden = false;
  }

  async function init() {
    let meta;
    try {
      const response = await fetch(metadataUrl, { cache: "no-cache" });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
      meta = body;
    } catch (e) {
      setStatus(`cannot read the model's metadata from ${metadataUrl}: ${e.message}`, true);
      return;
    }
    const info = meta.model || meta;
    const names = info.class_names;
    const palette = info.palette;
    if (!Array.isArray(names) || !Array.isArray(palette) || palette.length < names.length || !info.height) {
      setStatus(`${metadataUrl} lacks class_names, palette, height or width: is it an export's metadata.json?`, true);
      return;
    }
    S.H = info.height;
    S.W = info.width;
    S.names = names.map(String);
    S.numIds = names.length;
    S.numClasses = info.num_classes ?? names.length;
    S.dontcare = info.contain_dontcare_label ? S.numClasses : -1;
    S.colors = new Uint8Array(S.numIds * 3);
    const seen = new Set();
    for (let id = 0; id < S.numIds; id++) {
      S.colors.set(palette[id].slice(0, 3), id * 3);
      const key = colorKey(palette[id][0], palette[id][1], palette[id][2]);
      if (seen.has(key)) S.uniqueColors = false;
      seen.add(key);
    }
    S.useVae = !!info.use_vae;
    S.hasStyle = S.useVae && "style_png" in (meta.signatures || { style_png: 1 });
    S.ids = new (S.numIds > 256 ? Uint16Array : Uint8Array)(S.H * S.W);
    // Erasing paints "don't care" where the model has it (unlabelled, as in the datasets), else class 0.
    S.eraser = S.dontcare >= 0 ? S.dontcare : 0;
    S.ids.fill(S.eraser);
    S.cls = S.eraser === 0 && S.numClasses > 1 ? 1 : 0;

    $("model-info").textContent =
      `${modelName}: ${S.W}\u00d7${S.H} label maps, ${S.numClasses} classes` +
      (S.dontcare >= 0 ? " + don't care" : "") +
      (S.useVae ? ", VAE (seed and style)" : ", no style input");
    showLicense(meta.license);
    buildCanvas();
    buildPalette();
    buildTools();
    buildStyle();
    bindKeys();
    const opened = await loadExamples(meta.examples);
    S.ready = true;
    render();
    setStatus(
      opened
        ? `ready: example scene ${S.example + 1} of ${S.examples.length}; paint over it or pick another`
        : "ready: pick a class and paint",
    );
    predictSoon(0);
  }

  // -- examples and style exemplars --------------------------------------------------------------------------

  // A file of the export, listed in metadata.json relative to it.
  function exportUrl(file) {
    return new URL(file, new URL(metadataUrl, window.location.href)).href;
  }

  async function fetchBytes(url) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  }

  // Reads the export's examples; opens the first label map and, for VAE models, the first exemplar's style.
  // Returns whether a scene was opened. A missing file costs its thumbnail, not the page.
  async function loadExamples(examples) {
    if (!examples) return false;
    const problems = [];
    const maps = Array.isArray(examples.label_maps) ? examples.label_maps : [];
    const styles = S.hasStyle && Array.isArray(examples.style_exemplars) ? examples.style_exemplars : [];
    await Promise.all([
      ...maps.map(async (entry, i) => {
        try {
          const url = exportUrl(entry.file);
          const { ids } = await labelIdsFromPng(await fetchBytes(url), entry.file);
          S.examples[i] = { name: String(entry.name ?? i + 1), ids };
        } catch (e) {
          problems.push(e.message);
        }
      }),
      ...styles.map(async (entry, i) => {
        try {
          const url = exportUrl(entry.file);
          const b64 = bytesToBase64(await fetchBytes(url));
          S.exemplars[i] = { name: String(entry.name ?? i + 1), look: entry.look || "", url, b64 };
        } catch (e) {
          problems.push(e.message);
        }
      }),
    ]);
    S.examples = S.examples.filter(Boolean);
    S.exemplars = S.exemplars.filter(Boolean);
    buildScenes();
    buildStyleThumbs();
    // The page works without them; the console says which (the status line is taken by synthesis).
    for (const problem of problems) console.warn(`painter: an example could not be read: ${problem}`);
    if (S.exemplars.length) selectExemplar(0, false);
    if (!S.examples.length) return false;
    openExample(0, false);
    return true;
  }

  function buildScenes() {
    const box = $("scene-thumbs");
    box.textContent = "";
    $("scenes").hidden = !S.examples.length;
    const side = Math.max(S.H, S.W);
    S.examples.forEach((example, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "thumb";
      button.dataset.example = String(i);
      button.setAttribute("role", "radio");
      button.title = `example label map ${example.name}`;
      const c = document.createElement("canvas");
      c.width = S.W;
      c.height = S.H;
      c.style.width = `${Math.round((S.W * SCENE_THUMB_PX) / side)}px`;
      c.style.height = `${Math.round((S.H * SCENE_THUMB_PX) / side)}px`;
      const cctx = c.getContext("2d");
      const data = cctx.createImageData(S.W, S.H);
      fillRgba(data.data, example.ids);
      cctx.putImageData(data, 0, 0);
      const label = document.createElement("span");
      label.textContent = String(i + 1);
      button.append(c, label);
      button.addEventListener("click", () => openExample(i, true));
      box.append(button);
    });
  }

  function buildStyleThumbs() {
    const box = $("style-thumbs");
    box.textContent = "";
    $("styles").hidden = !S.exemplars.length;
    if (!S.exemplars.length) return;
    S.exemplars.forEach((exemplar, i) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "thumb";
      button.dataset.exemplar = String(i);
      button.setAttribute("role", "radio");
      button.title = `synthesize with the style of photo ${exemplar.name}`;
      const img = document.createElement("img");
      img.src = exemplar.url;
      img.alt = exemplar.look || exemplar.name;
      img.style.width = img.style.height = `${STYLE_THUMB_PX}px`;
      const label = document.createElement("span");
      label.textContent = (exemplar.look || exemplar.name).replace(/_/g, " ");
      button.append(img, label);
      button.addEventListener("click", () => selectExemplar(i, true));
      box.append(button);
    });
    const random = document.createElement("button");
    random.type = "button";
    random.className = "thumb";
    random.id = "random-style";
    random.setAttribute("role", "radio");
    random.title = "a random style: a random seed, no exemplar";
    const dice = document.createElement("span");
    dice.className = "dice";
    dice.style.width = dice.style.height = `${STYLE_THUMB_PX}px`;
    const label = document.createElement("span");
    label.textContent = "Random";
    random.append(dice, label);
    random.addEventListener("click", () => {
      $("seed").value = String(Math.floor(Math.random() * MAX_SEED));
      clearStyle();
    });
    box.append(random);
  }

  function openExample(i, undoable) {
    if (undoable) pushUndo();
    S.ids.set(S.examples[i].ids);
    S.example = i;
    for (const b of $("scene-thumbs").children) b.setAttribute("aria-checked", String(Number(b.dataset.example) === i));
    if (undoable) changed();
  }

  function selectExemplar(i, predict) {
    S.exemplar = i;
    S.styleB64 = S.exemplars[i].b64;
    $("style-thumb").hidden = true;
    updateStyleThumbs();
    if (predict) predictSoon(0);
  }

  // Back to the seed alone: no exemplar, no uploaded style image.
  function clearStyle() {
    S.styleB64 = null;
    S.exemplar = -1;
    $("style-thumb").hidden = true;
    updateStyleThumbs();
    predictSoon(0);
  }

  function updateStyleThumbs() {
    for (const b of $("style-thumbs").children) {
      const random = b.id === "random-style";
      const chosen = random ? S.exemplar < 0 && !S.styleB64 : Number(b.dataset.exemplar) === S.exemplar;
      b.setAttribute("aria-checked", String(chosen));
    }
  }

  function colorKey(r, g, b) {
    return (r << 16) | (g << 8) | b;
  }

  function buildCanvas() {
    canvas = $("label-canvas");
    canvas.width = S.W;
    canvas.height = S.H;
    ctx = canvas.getContext("2d", { willReadFrequently: true });
    imageData = ctx.createImageData(S.W, S.H);
    fitViews();
    window.addEventListener("resize", fitViews);
    canvas.addEventListener("pointerdown", onPointerDown);
    canvas.addEventListener("pointermove", onPointerMove);
    canvas.addEventListener("pointerup", onPointerUp);
    canvas.addEventListener("pointercancel", onPointerUp);
    canvas.addEventListener("pointerleave", () => ($("brush-cursor").hidden = true));
  }

  // Label map and result side by side, as large as the window allows (up to VIEW_PX each).
  function fitViews() {
    const side = Math.max(S.H, S.W);
    const main = document.querySelector("main");
    const style = getComputedStyle(main);
    const gap = parseFloat(style.columnGap) || 0;
    const room =
      document.documentElement.clientWidth -
      $("tools").getBoundingClientRect().right -
      parseFloat(style.paddingRight) -
      2 * gap -
      4; // the two images' borders
    const view = Math.max(MIN_VIEW_PX, Math.min(VIEW_PX, room / 2));
    // Whole-number zoom keeps every label pixel the same size on screen.
    const zoom = side <= view ? Math.floor(view / side) : view / side;
    for (const el of [canvas, $("result")]) {
      el.style.width = `${Math.round(S.W * zoom)}px`;
      el.style.height = `${Math.round(S.H * zoom)}px`;
    }
  }

  function buildPalette() {
    const box = $("palette");
    for (let id = 0; id < S.numIds; id++) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "class";
      button.dataset.id = String(id);
      button.setAttribute("role", "radio");
      button.title = `id ${id}` + (id === S.dontcare ? ` (don't care; ${DONTCARE_RAW} in label PNGs)` : "");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = cssColor(id);
      button.append(swatch, document.createTextNode(S.names[id]));
      button.addEventListener("click", () => {
        S.cls = id;
        if (S.tool === "eraser") S.tool = "brush";
        updateControls();
      });
      box.append(button);
    }
    if (S.numIds > 24) {
      const filter = $("class-filter");
      filter.hidden = false;
      filter.addEventListener("input", () => {
        const text = filter.value.trim().toLowerCase();
        for (const b of box.children) b.hidden = !!text && !b.textContent.toLowerCase().includes(text);
      });
    }
    const select = $("eraser-class");
    for (let id = 0; id < S.numIds; id++) select.append(new Option(S.names[id], String(id)));
    select.value = String(S.eraser);
    select.addEventListener("change", () => (S.eraser = Number(select.value)));
  }

  function cssColor(id) {
    const c = S.colors;
    return `rgb(${c[3 * id]}, ${c[3 * id + 1]}, ${c[3 * id + 2]})`;
  }

  function buildTools() {
    for (const b of $("tool-buttons").querySelectorAll("button")) {
      b.addEventListener("click", () => {
        S.tool = b.dataset.tool;
        updateControls();
      });
    }
    const side = Math.max(S.H, S.W);
    const sizes = [1, 2, 4, 8, 16, 32, 64].filter((s) => s === 1 || s <= side / 2);
    S.size = sizes.reduce((best, s) => (Math.abs(s - side / 8) < Math.abs(best - side / 8) ? s : best), 1);
    const box = $("brush-sizes");
    for (const s of sizes) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.size = String(s);
      b.setAttribute("role", "radio");
      b.textContent = String(s);
      b.title = `${s} label pixel${s > 1 ? "s" : ""} across ([ and ] change it)`;
      b.addEventListener("click", () => {
        S.size = s;
        updateControls();
      });
      box.append(b);
    }
    $("undo").addEventListener("click", undo);
    $("redo").addEventListener("click", redo);
    $("clear").addEventListener("click", () => {
      pushUndo();
      S.ids.fill(S.eraser);
      changed();
    });
    $("upload-label").addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      ev.target.value = "";
      if (!file) return;
      setNotice("");
      try {
        await loadLabelFile(file);
      } catch (e) {
        setNotice(`upload: ${e.message}`, true);
      }
    });
    $("download-label").addEventListener("click", async () => {
      const png = await encodeIdPng();
      saveBytes(png, "label.png");
    });
  }

  function buildStyle() {
    if (!S.useVae) {
      // No seed or style input: nothing to show (the header says "no style input").
      $("style").hidden = true;
      return;
    }
    $("style-controls").hidden = false;
    const seed = $("seed");
    seed.addEventListener("change", () => predictSoon(0));
    $("random-seed").addEventListener("click", () => {
      seed.value = String(Math.floor(Math.random() * MAX_SEED));
      predictSoon(0);
    });
    if (!S.hasStyle) {
      $("style-note").textContent = "This export has no style encoder (no style_png signature): seeds only.";
      return;
    }
    $("exemplar-controls").hidden = false;
    $("style-note").textContent =
      "The seed picks a random style; a style thumbnail or an uploaded image sets it (the encoder's style, seed noise).";
    $("upload-style").addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      ev.target.value = "";
      if (!file) return;
      setNotice("");
      try {
        await loadStyleFile(file);
      } catch (e) {
        setNotice(`style image: ${e.message}`, true);
      }
    });
    $("clear-style").addEventListener("click", clearStyle);
  }

  function bindKeys() {
    document.addEventListener("keydown", (ev) => {
      if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement) return;
      const key = ev.key.toLowerCase();
      if ((ev.ctrlKey || ev.metaKey) && key === "z") {
        ev.shiftKey ? redo() : undo();
      } else if ((ev.ctrlKey || ev.metaKey) && key === "y") {
        redo();
      } else if (ev.ctrlKey || ev.metaKey || ev.altKey) {
        return;
      } else if (key === "b" || key === "f" || key === "e") {
        S.tool = { b: "brush", f: "fill", e: "eraser" }[key];
      } else if (key === "[" || key === "]") {
        const sizes = [...$("brush-sizes").children].map((b) => Number(b.dataset.size));
        const i = sizes.indexOf(S.size) + (key === "]" ? 1 : -1);
        S.size = sizes[Math.max(0, Math.min(sizes.length - 1, i))];
      } else {
        return;
      }
      ev.preventDefault();
      updateControls();
    });
  }

  function updateControls() {
    for (const b of $("palette").children) b.setAttribute("aria-checked", String(Number(b.dataset.id) === S.cls));
    for (const b of $("tool-buttons").children) b.setAttribute("aria-pressed", String(b.dataset.tool === S.tool));
    for (const b of $("brush-sizes").children) b.setAttribute("aria-checked", String(Number(b.dataset.size) === S.size));
    $("undo").disabled = !S.undo.length;
    $("redo").disabled = !S.redo.length;
    canvas.style.cursor = S.tool === "fill" ? "cell" : "crosshair";
  }

  // -- painting ----------------------------------------------------------------------------------------------

  function render() {
    fillRgba(imageData.data);
    ctx.putImageData(imageData, 0, 0);
    updateControls();
  }

  function fillRgba(data, ids = S.ids) {
    const c = S.colors;
    for (let i = 0, j = 0; i < ids.length; i++, j += 4) {
      const k = ids[i] * 3;
      data[j] = c[k];
      data[j + 1] = c[k + 1];
      data[j + 2] = c[k + 2];
      data[j + 3] = 255;
    }
  }

  function changed() {
    setNotice("");
    render();
    predictSoon();
  }

  function pushUndo() {
    S.undo.push(S.ids.slice());
    if (S.undo.length > UNDO_STEPS) S.undo.shift();
    S.redo.length = 0;
  }

  function undo() {
    if (!S.undo.length) return;
    S.redo.push(S.ids.slice());
    S.ids.set(S.undo.pop());
    changed();
  }

  function redo() {
    if (!S.redo.length) return;
    S.undo.push(S.ids.slice());
    S.ids.set(S.redo.pop());
    changed();
  }

  function sameIds(a, b) {
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  // Pointer position in label pixels (continuous).
  function labelPoint(ev) {
    const r = canvas.getBoundingClientRect();
    return {
      x: Math.min(S.W - 1e-6, Math.max(0, ((ev.clientX - r.left) * S.W) / r.width)),
      y: Math.min(S.H - 1e-6, Math.max(0, ((ev.clientY - r.top) * S.H) / r.height)),
    };
  }

  // Odd brush sizes centre on a pixel, even ones on a pixel corner, so a size-n brush is n pixels across.
  function snap(v) {
    return S.size % 2 ? Math.floor(v) + 0.5 : Math.round(v);
  }

  function stamp(cx, cy, id) {
    const r = S.size / 2;
    const x0 = Math.max(0, Math.floor(cx - r));
    const x1 = Math.min(S.W - 1, Math.ceil(cx + r));
    const y0 = Math.max(0, Math.floor(cy - r));
    const y1 = Math.min(S.H - 1, Math.ceil(cy + r));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const dx = x + 0.5 - cx;
        const dy = y + 0.5 - cy;
        if (dx * dx + dy * dy <= r * r) S.ids[y * S.W + x] = id;
      }
    }
  }

  function line(from, to, id) {
    const steps = Math.max(1, Math.ceil(2 * Math.max(Math.abs(to.x - from.x), Math.abs(to.y - from.y))));
    for (let i = 0; i <= steps; i++) {
      const t = i / steps;
      stamp(snap(from.x + (to.x - from.x) * t), snap(from.y + (to.y - from.y) * t), id);
    }
  }

  // 4-connected flood fill of the region under (x, y).
  function floodFill(x, y, id) {
    const ids = S.ids;
    const W = S.W;
    const start = y * W + x;
    const target = ids[start];
    if (target === id) return false;
    const stack = [start];
    ids[start] = id;
    while (stack.length) {
      const i = stack.pop();
      const px = i % W;
      if (px > 0 && ids[i - 1] === target) (ids[i - 1] = id), stack.push(i - 1);
      if (px < W - 1 && ids[i + 1] === target) (ids[i + 1] = id), stack.push(i + 1);
      if (i >= W && ids[i - W] === target) (ids[i - W] = id), stack.push(i - W);
      if (i + W < ids.length && ids[i + W] === target) (ids[i + W] = id), stack.push(i + W);
    }
    return true;
  }

  function onPointerDown(ev) {
    if (!S.ready || ev.button !== 0) return;
    ev.preventDefault();
    const p = labelPoint(ev);
    if (S.tool === "fill") {
      const before = S.ids.slice();
      if (floodFill(Math.floor(p.x), Math.floor(p.y), S.cls)) {
        S.undo.push(before);
        if (S.undo.length > UNDO_STEPS) S.undo.shift();
        S.redo.length = 0;
        changed();
      }
      return;
    }
    canvas.setPointerCapture(ev.pointerId);
    pushUndo();
    S.stroke = { id: S.tool === "eraser" ? S.eraser : S.cls, last: p };
    line(p, p, S.stroke.id);
    changed();
  }

  function onPointerMove(ev) {
    moveCursor(ev);
    if (!S.stroke) return;
    const p = labelPoint(ev);
    line(S.stroke.last, p, S.stroke.id);
    S.stroke.last = p;
    changed();
  }

  function onPointerUp() {
    if (!S.stroke) return;
    S.stroke = null;
    // A click that changed nothing leaves no undo step.
    if (S.undo.length && sameIds(S.undo[S.undo.length - 1], S.ids)) S.undo.pop();
    updateControls();
    predictSoon();
  }

  function moveCursor(ev) {
    const cursor = $("brush-cursor");
    if (S.tool === "fill" || !S.ready) {
      cursor.hidden = true;
      return;
    }
    const r = canvas.getBoundingClientRect();
    const px = r.width / S.W;
    const p = labelPoint(ev);
    cursor.hidden = false;
    cursor.style.width = cursor.style.height = `${S.size * px}px`;
    cursor.style.left = `${canvas.offsetLeft + (snap(p.x) - S.size / 2) * px}px`;
    cursor.style.top = `${canvas.offsetTop + (snap(p.y) - S.size / 2) * px}px`;
  }

  // -- label map files ---------------------------------------------------------------------------------------

  // Uploaded label maps are read by the rule of spade_tf/data/labels.py, as training, the dataset check,
  // synthesize.py and the export signatures read them (PIL's reading): an 8/16-bit grey or palette-indexed PNG
  // holds ids (the index of a palette PNG is the id, whatever its colours), grey+alpha holds ids in its grey
  // channel, an RGB(A) PNG holds colours of the model's palette (the lowest id wins where colours repeat).
  // 16-bit grey keeps its 16 bits; 16-bit grey+alpha and RGB(A) keep the high byte, 1-bit grey reads 0 and 1,
  // 2- and 4-bit grey are scaled to 8 bits, as PIL reads them. Raw 255 becomes don't care where the model has
  // it. The page decodes the PNG itself: the browser's decoder would expand palettes, drop 16-bit precision
  // and may colour-manage.
  const PNG_GREY = 0;
  const PNG_PALETTE = 3;
  const PNG_GREY_ALPHA = 4;
  const PNG_CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
  // Adam7 passes: x0, y0, dx, dy.
  const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]];

  function pngChunks(bytes, name) {
    const notPng = `${name} is not a PNG file; label maps must be PNG (JPEG would blur the class colours)`;
    if (bytes.length < 33 || PNG_SIGNATURE.some((v, i) => bytes[i] !== v)) throw new Error(notPng);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const png = { width: view.getUint32(16), height: view.getUint32(20), bitDepth: bytes[24], colorType: bytes[25] };
    png.interlaced = bytes[28] === 1;
    png.idat = [];
    for (let o = 8; o + 8 <= bytes.length; ) {
      const length = view.getUint32(o);
      const type = String.fromCharCode(...bytes.subarray(o + 4, o + 8));
      if (type === "IDAT") png.idat.push(bytes.subarray(o + 8, o + 8 + length));
      if (type === "IEND") break;
      o += 12 + length;
    }
    if (!(png.colorType in PNG_CHANNELS) || !png.idat.length || !png.width || !png.height) {
      throw new Error(`${name}: damaged or unsupported PNG (colour type ${png.colorType}); re-export it`);
    }
    return png;
  }

  async function inflate(parts) {
    if (typeof DecompressionStream !== "function") throw new Error("this browser cannot decompress PNG data");
    const stream = new Blob(parts).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  // Undoes the PNG row filters of one (sub-)image in place; returns the offset after it.
  function unfilter(data, offset, rowBytes, rows, bpp) {
    let prev = null;
    for (let y = 0; y < rows; y++) {
      const filter = data[offset];
      const row = data.subarray(offset + 1, offset + 1 + rowBytes);
      for (let i = 0; i < rowBytes; i++) {
        const a = i >= bpp ? row[i - bpp] : 0;
        const b = prev ? prev[i] : 0;
        const c = prev && i >= bpp ? prev[i - bpp] : 0;
        let p;
        if (filter === 0) p = 0;
        else if (filter === 1) p = a;
        else if (filter === 2) p = b;
        else if (filter === 3) p = (a + b) >> 1;
        else {
          const pa = Math.abs(b - c);
          const pb = Math.abs(a - c);
          const pc = Math.abs(a + b - 2 * c);
          p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
        }
        row[i] = (row[i] + p) & 255;
      }
      prev = row;
      offset += 1 + rowBytes;
    }
    return offset;
  }

  // The PNG's samples as PIL holds them: {width, height, channels, samples (Int32Array, row-major)}.
  async function decodePng(bytes, name) {
    const png = pngChunks(bytes, name);
    const { width, height, bitDepth, colorType } = png;
    const channels = PNG_CHANNELS[colorType];
    const bitsPerPixel = channels * bitDepth;
    const bpp = Math.max(1, bitsPerPixel >> 3);
    const data = await inflate(png.idat);
    const samples = new Int32Array(width * height * channels);
    const maxSample = (1 << bitDepth) - 1;
    // PIL: 16-bit grey keeps all bits, other 16-bit types the high byte; 1-bit grey is 0/1 (mode "1"),
    // 2- and 4-bit grey are scaled to 0..255; palette indices stay indices.
    const scale = colorType === PNG_GREY && bitDepth > 1 && bitDepth < 8 ? 255 / maxSample : 1;
    const shift = bitDepth === 16 && colorType !== PNG_GREY ? 8 : 0;
    const passes = png.interlaced ? ADAM7 : [[0, 0, 1, 1]];
    let offset = 0;
    for (const [x0, y0, dx, dy] of passes) {
      const w = Math.ceil((width - x0) / dx);
      const h = Math.ceil((height - y0) / dy);
      if (w <= 0 || h <= 0) continue;
      const rowBytes = Math.ceil((w * bitsPerPixel) / 8);
      if (offset + h * (1 + rowBytes) > data.length) throw new Error(`${name}: truncated PNG data; re-export it`);
      const start = offset;
      offset = unfilter(data, offset, rowBytes, h, bpp);
      for (let y = 0; y < h; y++) {
        const row = data.subarray(start + y * (1 + rowBytes) + 1);
        for (let x = 0; x < w; x++) {
          const out = ((y0 + y * dy) * width + x0 + x * dx) * channels;
          for (let c = 0; c < channels; c++) {
            const k = x * channels + c;
            let v;
            if (bitDepth === 16) v = (row[2 * k] << 8) | row[2 * k + 1];
            else if (bitDepth === 8) v = row[k];
            else v = (row[(k * bitDepth) >> 3] >> (8 - bitDepth - ((k * bitDepth) & 7))) & maxSample;
            samples[out + c] = Math.round(v * scale) >> shift;
          }
        }
      }
    }
    return { width, height, channels, colorType, samples };
  }

  async function loadLabelFile(file) {
    const { ids, what, resized } = await labelIdsFromPng(new Uint8Array(await file.arrayBuffer()), file.name);
    pushUndo();
    S.ids.set(ids);
    changed();
    setNotice(`loaded ${file.name}: ${what}${resized}`);
  }

  // A label PNG's ids at the model's size: {ids, what (the kind of PNG), resized (a note, or "")}.
  async function labelIdsFromPng(bytes, name) {
    const png = await decodePng(bytes, name);
    const { width: w, height: h, channels, colorType, samples } = png;
    const holdsIds = colorType === PNG_GREY || colorType === PNG_PALETTE || colorType === PNG_GREY_ALPHA;
    const what = colorType === PNG_PALETTE ? "palette indices" : holdsIds ? "grey ids" : "palette colours";
    const lookup = new Map();
    for (let id = S.numIds - 1; id >= 0; id--) {
      lookup.set(colorKey(S.colors[3 * id], S.colors[3 * id + 1], S.colors[3 * id + 2]), id);
    }
    const src = new Int32Array(w * h);
    let unknown = 0;
    let example = null;
    for (let i = 0; i < w * h; i++) {
      const o = i * channels;
      let v;
      if (holdsIds) {
        v = samples[o];
        if (v === DONTCARE_RAW && S.dontcare >= 0) v = S.dontcare;
      } else {
        v = lookup.get(colorKey(samples[o], samples[o + 1], samples[o + 2]));
        if (v === undefined) {
          unknown++;
          example = example || `rgb(${samples[o]}, ${samples[o + 1]}, ${samples[o + 2]}) at row ${Math.floor(i / w)}, column ${i % w}`;
          continue;
        }
      }
      src[i] = v;
    }
    if (unknown) {
      throw new Error(
        `${name}: ${unknown} pixels have colours that are not in the model's palette, e.g. ${example}; ` +
          "paint with the palette colours or upload grayscale ids",
      );
    }
    const bad = [...new Set(src.filter((v) => v < 0 || v >= S.numIds))].slice(0, 8);
    if (bad.length) {
      const allowed = `0..${S.numClasses - 1}` + (S.dontcare >= 0 ? `, ${S.dontcare} or ${DONTCARE_RAW} (dontcare)` : "");
      throw new Error(`${name}: ${what} ${bad.join(", ")} are out of range; this model takes ${allowed}`);
    }
    // Nearest-neighbour resize to the model's size: ids must not be blended.
    const ids = new S.ids.constructor(S.H * S.W);
    for (let y = 0; y < S.H; y++) {
      const sy = Math.floor(((y + 0.5) * h) / S.H);
      for (let x = 0; x < S.W; x++) ids[y * S.W + x] = src[sy * w + Math.floor(((x + 0.5) * w) / S.W)];
    }
    const resized = w !== S.W || h !== S.H ? ` (${w}\u00d7${h} resized to ${S.W}\u00d7${S.H}, nearest)` : "";
    return { ids, what, resized };
  }

  async function loadStyleFile(file) {
    const bitmap = await createImageBitmap(file);
    const k = Math.min(1, STYLE_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    const c = document.createElement("canvas");
    c.width = Math.max(1, Math.round(bitmap.width * k));
    c.height = Math.max(1, Math.round(bitmap.height * k));
    c.getContext("2d").drawImage(bitmap, 0, 0, c.width, c.height);
    const png = await canvasPng(c);
    S.styleB64 = bytesToBase64(png);
    S.exemplar = -1;
    updateStyleThumbs();
    const thumb = $("style-thumb");
    thumb.src = `data:image/png;base64,${S.styleB64}`;
    thumb.hidden = false;
    predictSoon(0);
  }

  function saveBytes(bytes, name) {
    const url = URL.createObjectURL(new Blob([bytes], { type: "image/png" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // -- PNG encoding ------------------------------------------------------------------------------------------

  function canvasPng(c) {
    return new Promise((resolve, reject) =>
      c.toBlob((blob) => {
        if (!blob) reject(new Error("the browser could not encode a PNG"));
        else blob.arrayBuffer().then((b) => resolve(new Uint8Array(b)), reject);
      }, "image/png"),
    );
  }

  // The label map as the model reads it: an RGB(A) PNG in palette colours, or ids when colours collide.
  async function modelPng() {
    if (!S.uniqueColors) return encodeIdPng();
    const c = document.createElement("canvas");
    c.width = S.W;
    c.height = S.H;
    const cctx = c.getContext("2d");
    const data = cctx.createImageData(S.W, S.H);
    fillRgba(data.data);
    cctx.putImageData(data, 0, 0);
    return canvasPng(c);
  }

  const CRC_TABLE = (() => {
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
    return table;
  })();

  function crc32(bytes) {
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 255] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }

  function chunk(type, data) {
    const out = new Uint8Array(12 + data.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, data.length);
    for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
    out.set(data, 8);
    view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
    return out;
  }

  // zlib stream of `bytes`: the browser's deflate where it has one, else stored (uncompressed) blocks.
  async function zlib(bytes) {
    if (typeof CompressionStream === "function") {
      const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
      return new Uint8Array(await new Response(stream).arrayBuffer());
    }
    const blocks = Math.max(1, Math.ceil(bytes.length / 65535));
    const out = new Uint8Array(2 + 5 * blocks + bytes.length + 4);
    out[0] = 0x78;
    out[1] = 0x01;
    let o = 2;
    for (let b = 0, pos = 0; b < blocks; b++) {
      const n = Math.min(65535, bytes.length - pos);
      out[o++] = b === blocks - 1 ? 1 : 0;
      out[o++] = n & 255;
      out[o++] = n >>> 8;
      out[o++] = ~n & 255;
      out[o++] = (~n >>> 8) & 255;
      out.set(bytes.subarray(pos, pos + n), o);
      o += n;
      pos += n;
    }
    let a = 1;
    let s = 0;
    for (let i = 0; i < bytes.length; i++) {
      a = (a + bytes[i]) % 65521;
      s = (s + a) % 65521;
    }
    new DataView(out.buffer).setUint32(o, ((s << 16) | a) >>> 0);
    return out;
  }

  // Grayscale PNG of the ids (8-bit, 16-bit past 256 ids): the label-map format train.py reads without a
  // palette file. Don't care is written as 255 in 8-bit maps, as in the official datasets.
  async function encodeIdPng() {
    const wide = S.numIds > 256;
    const bpp = wide ? 2 : 1;
    const raw = new Uint8Array(S.H * (1 + S.W * bpp));
    for (let y = 0, o = 0; y < S.H; y++) {
      raw[o++] = 0; // filter: none
      for (let x = 0; x < S.W; x++) {
        let v = S.ids[y * S.W + x];
        if (v === S.dontcare && !wide) v = DONTCARE_RAW;
        if (wide) raw[o++] = v >>> 8;
        raw[o++] = v & 255;
      }
    }
    const ihdr = new Uint8Array(13);
    const view = new DataView(ihdr.buffer);
    view.setUint32(0, S.W);
    view.setUint32(4, S.H);
    ihdr[8] = wide ? 16 : 8;
    ihdr[9] = 0; // grayscale
    const parts = [new Uint8Array(PNG_SIGNATURE), chunk("IHDR", ihdr), chunk("IDAT", await zlib(raw)), chunk("IEND", new Uint8Array(0))];
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }

  function bytesToBase64(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }

  // -- synthesis ---------------------------------------------------------------------------------------------

  function predictSoon(delay = DEBOUNCE_MS) {
    clearTimeout(S.timer);
    S.timer = setTimeout(() => {
      S.timer = null;
      predict();
    }, delay);
  }

  function seedValue() {
    const field = $("seed");
    let v = Math.floor(Number(field.value));
    if (!Number.isFinite(v) || v < 0 || v > MAX_SEED) {
      v = Math.min(MAX_SEED, Math.max(0, Number.isFinite(v) ? v : 0));
      field.value = String(v);
    }
    return v;
  }

  async function predict() {
    const seq = ++S.sent;
    S.inFlight++;
    const started = performance.now();
    let signature = "predict_png";
    try {
      const label = { b64: bytesToBase64(await modelPng()) };
      let instance = label; // a single-input signature takes bare values in row format
      if (S.useVae) {
        instance = { label_png_bytes: label, seed: seedValue() };
        if (S.styleB64) {
          signature = "style_png";
          instance.style_png_bytes = { b64: S.styleB64 };
        }
      }
      setStatus(`synthesizing (${signature})\u2026`);
      const response = await fetch(predictUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ signature_name: signature, instances: [instance] }),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        if (response.status === 503 && seq === S.sent) predictSoon(BUSY_RETRY_MS);
        throw new Error(`HTTP ${response.status}: ${body.error || response.statusText}`);
      }
      if (seq < S.shown) return; // a newer answer is already shown
      const out = body.predictions && body.predictions[0];
      const b64 = out && (out.b64 || (out.image_png_bytes && out.image_png_bytes.b64));
      if (!b64) throw new Error("the answer has no image (expected predictions[0].b64)");
      S.shown = seq;
      const src = `data:image/png;base64,${b64}`;
      const img = $("result");
      img.src = src;
      $("download-result").href = src;
      $("download-result").hidden = false;
      await img.decode();
      if (seq === S.sent) setStatus(`${signature}: ${Math.round(performance.now() - started)} ms`);
    } catch (e) {
      if (seq === S.sent) setStatus(`synthesis failed: ${e.message}`, true);
    } finally {
      S.inFlight--;
    }
  }

  // For tests and the console.
  window.painter = {
    get ready() {
      return S.ready;
    },
    get shown() {
      return S.shown;
    },
    idle() {
      return S.ready && S.timer === null && S.inFlight === 0 && S.shown === S.sent;
    },
    ids() {
      return Array.from(S.ids);
    },
    get example() {
      return S.example;
    },
    get exemplar() {
      return S.exemplar;
    },
    idPngBase64: async () => bytesToBase64(await encodeIdPng()),
    modelPngBase64: async () => bytesToBase64(await modelPng()),
    loadLabelFile,
  };

  init();
})();
