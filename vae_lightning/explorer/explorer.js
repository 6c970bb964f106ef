// The latent-space explorer's page script (vae_lightning/explorer): reads the page's JSON (explorer/page.py),
// draws each panel's latent plane with its layers and decodes the latent under the pointer with the model's own
// decoder weights (or the nearest image of an atlas). No network, no libraries. window.explorer is its API for
// tests and for the console.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
  const DIGITS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf"];
  const DRAWS = ["#000000", "#c51b7d", "#1b7837", "#2166ac", "#b35806", "#542788", "#01665e", "#8e0152"];
  const SIZE = 520, MARGIN = { left: 46, right: 10, top: 10, bottom: 34 };
  const PLOT = { w: SIZE - MARGIN.left - MARGIN.right, h: SIZE - MARGIN.top - MARGIN.bottom };
  const ZOOM = 6;  // screen pixels per image pixel

  // --- decoding the base64 numbers -------------------------------------------------------------------------
  function bytes(text) {
    const binary = atob(text);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  }
  function floats(text) {
    const raw = bytes(text);
    const view = new DataView(raw.buffer);
    const out = new Float32Array(raw.length / 4);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
    return out;
  }
  const datasets = [];
  function dataset(index) {
    if (!datasets[index]) datasets[index] = bytes(DATA.datasets[index]);
    return datasets[index];
  }

  // --- the decoder -----------------------------------------------------------------------------------------
  function sigmoid(x) { return 1 / (1 + Math.exp(-x)); }
  // the likelihood's mean image of a logit (vae_lightning/model/likelihoods.py)
  const MEANS = {
    sigmoid: sigmoid,
    continuous_bernoulli: function (l) {
      const m = Math.abs(l) < 0.05 ? 0.5 + l / 12 - (l * l * l) / 720 : -1 / Math.expm1(-l) - 1 / l;
      return Math.min(1, Math.max(0, m));
    },
  };
  function prepareLinear(layer) {
    return { op: "linear", in: layer.in, out: layer.out, w: floats(layer.w), b: floats(layer.b) };
  }
  function prepareLayer(layer) {
    if (layer.op === "linear") return prepareLinear(layer);
    if (layer.op === "gated") return { op: "gated", linear: prepareLinear(layer.linear), gate: prepareLinear(layer.gate) };
    return layer;
  }
  function linear(layer, x) {
    const out = new Float64Array(layer.out);
    for (let j = 0; j < layer.out; j++) {
      let sum = 0;
      const row = j * layer.in;
      for (let i = 0; i < layer.in; i++) sum += layer.w[row + i] * x[i];
      out[j] = sum + layer.b[j];
    }
    return out;
  }
  // the decoder's forward pass in float64 from its float32 weights: logits [784]
  function forward(layers, z) {
    let h = Float64Array.from(z);
    for (const layer of layers) {
      switch (layer.op) {
        case "linear": h = linear(layer, h); break;
        case "leaky_relu": h = h.map(function (x) { return x >= 0 ? x : x * layer.slope; }); break;
        case "relu": h = h.map(function (x) { return Math.max(0, x); }); break;
        case "tanh": h = h.map(Math.tanh); break;
        case "gated": {
          const a = linear(layer.linear, h), g = linear(layer.gate, h);
          h = a.map(function (x, i) { return x * sigmoid(g[i]); });
          break;
        }
        default: throw new Error("unknown decoder layer " + layer.op);
      }
    }
    return h;
  }
  function toPixels(logits, mean) {
    const out = new Uint8Array(logits.length);
    for (let i = 0; i < logits.length; i++) out[i] = Math.min(255, Math.max(0, Math.round(255 * mean(logits[i]))));
    return out;
  }

  // --- a run, prepared on first use --------------------------------------------------------------------------
  const runs = [];
  function run(index) {
    if (runs[index]) return runs[index];
    const view = DATA.runs[index];
    const r = {
      index: index, view: view, dim: view.latent_dim, n: view.points.n, box: view.box,
      coords: floats(view.points.coords), codes: floats(view.points.codes), labels: bytes(view.points.labels),
      images: dataset(view.dataset),
      grid: { size: view.grid.size, prior: floats(view.grid.prior), aggregate: floats(view.grid.aggregate) },
      samplers: view.samplers.map(function (s) { return { name: s.name, label: s.label, coords: floats(s.coords) }; }),
      layers: view.decoder ? view.decoder.layers.map(prepareLayer) : null,
      mean: view.decoder ? MEANS[view.decoder.mean] : null,
      atlas: view.atlas ? { size: view.atlas.size, images: bytes(view.atlas.images) } : null,
      recon: view.recon ? bytes(view.recon) : null,
      heat: {},
    };
    runs[index] = r;
    return r;
  }
  function latentAt(r, u, v) {
    const p = r.view.plane, z = new Float64Array(r.dim);
    for (let d = 0; d < r.dim; d++) z[d] = p.origin[d] + u * p.axes[0][d] + v * p.axes[1][d];
    return z;
  }
  // the image at plane point (u, v): decoded here, or the atlas's nearest node (then z is that node's)
  function decodeAt(r, u, v) {
    if (r.layers) {
      const z = latentAt(r, u, v);
      return { z: z, u: u, v: v, pixels: toPixels(forward(r.layers, z), r.mean), exact: true };
    }
    const a = r.atlas.size, b = r.box, cw = (b[1] - b[0]) / a, ch = (b[3] - b[2]) / a;
    const i = Math.min(a - 1, Math.max(0, Math.floor((u - b[0]) / cw)));
    const j = Math.min(a - 1, Math.max(0, Math.floor((b[3] - v) / ch)));
    const nu = b[0] + (i + 0.5) * cw, nv = b[3] - (j + 0.5) * ch;
    return { z: latentAt(r, nu, nv), u: nu, v: nv, pixels: r.atlas.images.subarray((j * a + i) * 784, (j * a + i + 1) * 784),
      exact: false };
  }
  function reconstruction(r, k) {
    if (r.layers) return toPixels(forward(r.layers, r.codes.subarray(k * r.dim, (k + 1) * r.dim)), r.mean);
    return r.recon.subarray(k * 784, (k + 1) * 784);
  }

  // --- colours of the density layers -------------------------------------------------------------------------
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const INFERNO = [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]];
  function ramp(stops, t) {
    t = Math.min(1, Math.max(0, t)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(t)), f = t - i;
    return stops[i].map(function (c, k) { return Math.round(c + f * (stops[i + 1][k] - c)); });
  }
  function maxOf(values) {
    let m = -Infinity;
    for (const x of values) if (x > m) m = x;
    return m;
  }
  // a size x size canvas of one layer, cached per run
  function heatCanvas(r, layer) {
    if (r.heat[layer]) return r.heat[layer];
    const n = r.grid.size, canvas = document.createElement("canvas");
    canvas.width = canvas.height = n;
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(n, n);
    const lp = r.grid.prior, lq = r.grid.aggregate, mp = maxOf(lp), mq = maxOf(lq);
    for (let k = 0; k < n * n; k++) {
      let rgb = [0, 0, 0], alpha = 0;
      if (layer === "prior" || layer === "aggregate") {
        const values = layer === "prior" ? lp : lq, top = layer === "prior" ? mp : mq;
        const t = Math.exp(values[k] - top);  // density relative to its peak on the plane
        rgb = ramp(layer === "prior" ? VIRIDIS : INFERNO, Math.sqrt(t));
        alpha = 0.8 * Math.sqrt(t);
      } else {  // log q(z) - log p(z) where either has mass: blue where the prior has mass and q(z) has not
        const tp = Math.exp(lp[k] - mp), tq = Math.exp(lq[k] - mq);
        if (tp > 1e-3 || tq > 1e-3) {
          const ratio = Math.max(-4, Math.min(4, lq[k] - lp[k]));
          const s = Number.isNaN(ratio) ? 0 : ratio / 4;
          rgb = s < 0 ? [Math.round(255 * (1 + s)), Math.round(255 * (1 + s)), 255]
            : [255, Math.round(255 * (1 - s)), Math.round(255 * (1 - s))];
          alpha = 0.75 * Math.min(1, 4 * Math.sqrt(Math.max(tp, tq)));  // fading where neither has much mass
        }
      }
      img.data[4 * k] = rgb[0]; img.data[4 * k + 1] = rgb[1]; img.data[4 * k + 2] = rgb[2];
      img.data[4 * k + 3] = Math.round(255 * alpha);
    }
    ctx.putImageData(img, 0, 0);
    r.heat[layer] = canvas;
    return canvas;
  }

  // --- layers (shared by the panels) -------------------------------------------------------------------------
  const samplerNames = [];
  const samplerLabels = {};
  DATA.runs.forEach(function (view) {
    view.samplers.forEach(function (s) {
      if (!(s.name in samplerLabels)) { samplerNames.push(s.name); samplerLabels[s.name] = s.label; }
    });
  });
  const priorNames = new Set(DATA.runs.map(function (view) { return view.prior; }));
  const LAYERS = [
    { key: "codes", label: "test codes (posterior means), by digit", on: true },
    { key: "prior", label: "prior density p(z)", on: false },
    { key: "aggregate", label: "aggregate posterior q(z) of the test codes", on: false },
    { key: "ratio", label: "log q(z)/p(z): blue = holes (p has mass, q not), red = q above p", on: false },
  ].concat(samplerNames.map(function (name, i) {
    return { key: "draws:" + name, label: "draws of " + samplerLabels[name] + (priorNames.has(name) ? " (the model's prior)" : ""),
      on: false, colour: DRAWS[i % DRAWS.length] };
  }));
  const layerOn = {};
  LAYERS.forEach(function (l) { layerOn[l.key] = l.on; });

  // --- panels ------------------------------------------------------------------------------------------------
  const root = document.getElementById("explorer");
  const panels = [];
  const pointer = { u: null, v: null };
  const sweep = Array.isArray(DATA.configs) && DATA.configs.length > 0;

  function el(tag, attrs, parent, text) {
    const node = document.createElement(tag);
    for (const key in attrs || {}) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  // a panel's axes: its run's box, or with "same axes" the shown runs' boxes together (one scale in both panels)
  const axes = { shared: true };
  function viewBox(panel) {
    if (!axes.shared || panels.length < 2) return run(panel.run).box;
    const boxes = panels.map(function (p) { return run(p.run).box; });
    return [Math.min.apply(null, boxes.map(function (b) { return b[0]; })),
      Math.max.apply(null, boxes.map(function (b) { return b[1]; })),
      Math.min.apply(null, boxes.map(function (b) { return b[2]; })),
      Math.max.apply(null, boxes.map(function (b) { return b[3]; }))];
  }
  function toPx(box, u, v) {
    return [MARGIN.left + (u - box[0]) / (box[1] - box[0]) * PLOT.w, MARGIN.top + (box[3] - v) / (box[3] - box[2]) * PLOT.h];
  }
  function fromPx(box, x, y) {
    return [box[0] + (x - MARGIN.left) / PLOT.w * (box[1] - box[0]), box[3] - (y - MARGIN.top) / PLOT.h * (box[3] - box[2])];
  }
  function ticks(lo, hi) {
    const raw = (hi - lo) / 6, step0 = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(function (m) { return m * step0; }).find(function (s) { return s >= raw; });
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9 * step; t += step) out.push(Math.abs(t) < 1e-12 ? 0 : t);
    return { values: out, digits: Math.max(0, -Math.floor(Math.log10(step))) };
  }

  function drawBase(panel) {
    const r = run(panel.run), box = viewBox(panel), ctx = panel.base.getContext("2d");
    ctx.clearRect(0, 0, SIZE, SIZE);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(MARGIN.left, MARGIN.top, PLOT.w, PLOT.h);
    ctx.save();
    ctx.beginPath();
    ctx.rect(MARGIN.left, MARGIN.top, PLOT.w, PLOT.h);
    ctx.clip();
    const [x0, y0] = toPx(box, r.box[0], r.box[3]), [x1, y1] = toPx(box, r.box[1], r.box[2]);
    ["prior", "aggregate", "ratio"].forEach(function (layer) {
      if (layerOn[layer]) {
        ctx.imageSmoothingEnabled = true;
        ctx.drawImage(heatCanvas(r, layer), x0, y0, x1 - x0, y1 - y0);
      }
    });
    if (layerOn.codes) {
      for (let k = 0; k < r.n; k++) {
        const [x, y] = toPx(box, r.coords[2 * k], r.coords[2 * k + 1]);
        ctx.fillStyle = DIGITS[r.labels[k] % 10];
        ctx.fillRect(x - 1.5, y - 1.5, 3, 3);
      }
    }
    LAYERS.forEach(function (layer) {
      if (!layer.key.startsWith("draws:") || !layerOn[layer.key]) return;
      const s = r.samplers.find(function (x) { return "draws:" + x.name === layer.key; });
      if (!s) return;
      ctx.strokeStyle = layer.colour;
      ctx.lineWidth = 1;
      for (let k = 0; k < s.coords.length / 2; k++) {
        const [x, y] = toPx(box, s.coords[2 * k], s.coords[2 * k + 1]);
        ctx.beginPath();
        ctx.moveTo(x - 3, y); ctx.lineTo(x + 3, y); ctx.moveTo(x, y - 3); ctx.lineTo(x, y + 3);
        ctx.stroke();
      }
    });
    ctx.restore();
    ctx.strokeStyle = "#333";
    ctx.strokeRect(MARGIN.left, MARGIN.top, PLOT.w, PLOT.h);
    ctx.fillStyle = "#222";
    ctx.font = "11px sans-serif";
    const tu = ticks(box[0], box[1]), tv = ticks(box[2], box[3]);
    ctx.textAlign = "center";
    tu.values.forEach(function (t) {
      const [x] = toPx(box, t, box[2]);
      ctx.fillRect(x, MARGIN.top + PLOT.h, 1, 4);
      ctx.fillText(t.toFixed(tu.digits), x, MARGIN.top + PLOT.h + 15);
    });
    ctx.textAlign = "right";
    tv.values.forEach(function (t) {
      const [, y] = toPx(box, box[0], t);
      ctx.fillRect(MARGIN.left - 4, y, 4, 1);
      ctx.fillText(t.toFixed(tv.digits), MARGIN.left - 6, y + 4);
    });
    const pca = r.view.plane.explained;
    ctx.textAlign = "center";
    ctx.fillText(pca ? "PC1 (" + (100 * pca[0]).toFixed(0) + "% of the codes' variance)" : "z1",
      MARGIN.left + PLOT.w / 2, SIZE - 4);
    ctx.save();
    ctx.translate(11, MARGIN.top + PLOT.h / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.fillText(pca ? "PC2 (" + (100 * pca[1]).toFixed(0) + "%)" : "z2", 0, 0);
    ctx.restore();
    compose(panel);
  }

  // the visible canvas: the base layers, then the pointer's cross and the clicked test code
  function compose(panel) {
    const ctx = panel.canvas.getContext("2d"), box = viewBox(panel);
    ctx.clearRect(0, 0, SIZE, SIZE);
    ctx.drawImage(panel.base, 0, 0);
    if (panel.clicked !== null) {
      const r = run(panel.run);
      const [x, y] = toPx(box, r.coords[2 * panel.clicked], r.coords[2 * panel.clicked + 1]);
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.arc(x, y, 6, 0, 2 * Math.PI);
      ctx.stroke();
    }
    if (pointer.u !== null) {
      const [x, y] = toPx(box, pointer.u, pointer.v);
      [["#ffffff", 4], ["#000000", 1.5]].forEach(function (pen) {  // black on white: visible on any layer
        ctx.strokeStyle = pen[0];
        ctx.lineWidth = pen[1];
        ctx.beginPath();
        ctx.moveTo(x - 10, y); ctx.lineTo(x + 10, y); ctx.moveTo(x, y - 10); ctx.lineTo(x, y + 10);
        ctx.stroke();
      });
    }
  }

  function paint(canvas, pixels) {
    const ctx = canvas.getContext("2d"), img = ctx.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = pixels[i];
      img.data[4 * i + 3] = 255;
    }
    const small = document.createElement("canvas");
    small.width = small.height = 28;
    small.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
  }

  function showPointer(panel) {
    if (pointer.u === null) return;
    const r = run(panel.run);
    panel.shown = decodeAt(r, pointer.u, pointer.v);
    paint(panel.decoded, panel.shown.pixels);
    const z = Array.from(panel.shown.z).map(function (x) { return x.toFixed(3); });
    panel.decodedCaption.textContent = (panel.shown.exact ? "decoded at z = (" : "atlas image nearest z: (") +
      (z.length > 4 ? z.slice(0, 4).join(", ") + ", …" : z.join(", ")) + ")";
  }

  function showClicked(panel) {
    const r = run(panel.run), k = panel.clicked;
    if (k === null) {
      panel.clickedCaption.textContent = "click a test code: its image and its reconstruction";
      return;
    }
    paint(panel.testImage, r.images.subarray(k * 784, (k + 1) * 784));
    paint(panel.recon, reconstruction(r, k));
    panel.clickedCaption.textContent = "test image " + k + " (digit " + r.labels[k] + ") and its reconstruction";
  }

  function describe(panel) {
    const r = run(panel.run), view = r.view;
    panel.title.textContent = view.title;
    const plane = view.plane.explained
      ? "Plane: PCA of the " + r.n + " test codes (PC1 " + (100 * view.plane.explained[0]).toFixed(1) + "%, PC2 " +
        (100 * view.plane.explained[1]).toFixed(1) + "% of their variance) through their mean, in a " + r.dim +
        "-D latent space; densities are slices on this plane, draws and codes are projected onto it."
      : "Plane: the 2-D latent space itself.";
    const decoding = r.layers
      ? "Images: decoded in this page from the decoder's own float32 weights (" + view.decoder.layers.length +
        " layers, " + view.decoder.mean + " mean), as the model decodes them."
      : "Images: the nearest of an atlas of " + r.atlas.size + " x " + r.atlas.size + " decoded images (one every " +
        ((r.box[1] - r.box[0]) / r.atlas.size).toPrecision(2) + " along each axis): this decoder cannot run in the page.";
    panel.info.textContent = "";
    view.info.concat([plane, decoding]).forEach(function (line) { el("li", {}, panel.info, line); });
  }

  function redrawAll() {
    panels.forEach(function (p) { drawBase(p); showPointer(p); });
  }

  function select(panel, index) {
    panel.run = index;
    panel.clicked = null;
    describe(panel);
    showClicked(panel);
    redrawAll();
  }

  function makePanel(parent, index) {
    const node = el("section", { class: "panel", "data-panel": String(panels.length) }, parent);
    const panel = { node: node, run: index, clicked: null, shown: null };
    if (sweep) {
      const bar = el("div", { class: "selectors" }, node);
      const configLabel = el("label", {}, bar, "configuration ");
      panel.config = el("select", { class: "config" }, configLabel);
      DATA.configs.forEach(function (c, i) { el("option", { value: String(i) }, panel.config, c.label); });
      const seedLabel = el("label", {}, bar, " seed ");
      panel.seed = el("select", { class: "seed" }, seedLabel);
      const fillSeeds = function (chosen) {
        const config = DATA.configs[Number(panel.config.value)];
        panel.seed.textContent = "";
        config.runs.forEach(function (entry) { el("option", { value: String(entry.view) }, panel.seed, String(entry.seed)); });
        panel.seed.value = String(chosen !== undefined ? chosen : config.runs[0].view);
      };
      panel.config.value = String(DATA.configs.findIndex(function (c) {
        return c.runs.some(function (e) { return e.view === index; });
      }));
      fillSeeds(index);
      panel.config.addEventListener("change", function () { fillSeeds(); select(panel, Number(panel.seed.value)); });
      panel.seed.addEventListener("change", function () { select(panel, Number(panel.seed.value)); });
    }
    panel.title = el("h2", {}, node);
    const row = el("div", { class: "row" }, node);
    panel.canvas = el("canvas", { class: "plane", width: String(SIZE), height: String(SIZE) }, row);
    panel.base = document.createElement("canvas");
    panel.base.width = panel.base.height = SIZE;
    const side = el("div", { class: "side" }, row);
    const fig = el("figure", {}, side);
    panel.decoded = el("canvas", { class: "decoded", width: String(28 * ZOOM), height: String(28 * ZOOM) }, fig);
    panel.decodedCaption = el("figcaption", {}, fig, "point at the plane: the decoder's image there");
    const pair = el("figure", { class: "clicked" }, side);
    panel.testImage = el("canvas", { class: "test-image", width: String(28 * ZOOM / 2), height: String(28 * ZOOM / 2) }, pair);
    panel.recon = el("canvas", { class: "recon", width: String(28 * ZOOM / 2), height: String(28 * ZOOM / 2) }, pair);
    panel.clickedCaption = el("figcaption", {}, pair);
    panel.info = el("ul", { class: "info" }, node);
    panels.push(panel);

    const position = function (event) {
      const rect = panel.canvas.getBoundingClientRect();
      const x = (event.clientX - rect.left) * SIZE / rect.width, y = (event.clientY - rect.top) * SIZE / rect.height;
      return { x: x, y: y, uv: fromPx(viewBox(panel), x, y) };
    };
    panel.canvas.addEventListener("pointermove", function (event) {
      const at = position(event);
      if (at.x < MARGIN.left || at.x > MARGIN.left + PLOT.w || at.y < MARGIN.top || at.y > MARGIN.top + PLOT.h) return;
      pointer.u = at.uv[0];
      pointer.v = at.uv[1];
      panels.forEach(function (p) { showPointer(p); compose(p); });
    });
    panel.canvas.addEventListener("click", function (event) {
      const at = position(event), r = run(panel.run), box = viewBox(panel);
      let best = null, bestDistance = 64;  // within 8 screen pixels
      for (let k = 0; k < r.n; k++) {
        const [x, y] = toPx(box, r.coords[2 * k], r.coords[2 * k + 1]);
        const d = (x - at.x) * (x - at.x) + (y - at.y) * (y - at.y);
        if (d < bestDistance) { best = k; bestDistance = d; }
      }
      if (best === null || !layerOn.codes) return;
      panel.clicked = best;
      showClicked(panel);
      compose(panel);
    });
    return panel;
  }

  function controls(parent) {
    const box = el("fieldset", { class: "layers" }, parent);
    el("legend", {}, box, "Layers");
    LAYERS.forEach(function (layer) {
      const label = el("label", { class: "layer" }, box);
      const input = el("input", { type: "checkbox", "data-layer": layer.key }, label);
      input.checked = layer.on;
      if (layer.colour) el("span", { class: "swatch cross", style: "color:" + layer.colour }, label, "+");
      label.appendChild(document.createTextNode(" " + layer.label));
      input.addEventListener("change", function () { layerOn[layer.key] = input.checked; redrawAll(); });
    });
    if (sweep) {
      const label = el("label", { class: "layer" }, box);
      const input = el("input", { type: "checkbox", "data-axes": "same" }, label);
      input.checked = axes.shared;
      label.appendChild(document.createTextNode(" same axes in both panels"));
      input.addEventListener("change", function () { axes.shared = input.checked; redrawAll(); });
    }
    const legend = el("div", { class: "legend" }, parent);
    el("span", {}, legend, "digits: ");
    DIGITS.forEach(function (colour, digit) {
      el("span", { class: "swatch", style: "background:" + colour }, legend);
      legend.appendChild(document.createTextNode(String(digit) + " "));
    });
  }

  controls(root);
  const row = el("div", { class: "panels" }, root);
  if (sweep) {
    const first = DATA.configs[0].runs[0].view;
    const second = DATA.configs.length > 1 ? DATA.configs[1].runs[0].view
      : (DATA.configs[0].runs[1] || DATA.configs[0].runs[0]).view;
    makePanel(row, first);
    makePanel(row, second);
  } else {
    makePanel(row, 0);
  }
  panels.forEach(function (p) { describe(p); showClicked(p); });
  redrawAll();

  // the page's state for tests and for the console
  window.explorer = {
    panels: function () { return panels.length; },
    run: function (p) { return panels[p].run; },
    // what panel p shows under the pointer: the latent decoded, its plane point and the image's pixels (0..255)
    shown: function (p) {
      const s = panels[p].shown;
      return s && { latent: Array.from(s.z), plane: [s.u, s.v], pixels: Array.from(s.pixels), exact: s.exact };
    },
    decodedPixels: function (p) { const s = panels[p || 0].shown; return s ? Array.from(s.pixels) : null; },
    // the clicked test image's index, its pixels and its reconstruction's
    clicked: function (p) {
      const panel = panels[p], k = panel.clicked;
      if (k === null) return null;
      const r = run(panel.run);
      return { index: k, image: Array.from(r.images.subarray(k * 784, (k + 1) * 784)),
        reconstruction: Array.from(reconstruction(r, k)) };
    },
    // CSS pixels from the centre of panel p's canvas to plane point (u, v) (to point there)
    offsetOf: function (p, u, v) {
      const rect = panels[p].canvas.getBoundingClientRect(), [x, y] = toPx(viewBox(panels[p]), u, v);
      return [(x - SIZE / 2) * rect.width / SIZE, (y - SIZE / 2) * rect.height / SIZE];
    },
    codeOf: function (p, k) { const r = run(panels[p].run); return [r.coords[2 * k], r.coords[2 * k + 1]]; },
    box: function (p) { return viewBox(panels[p || 0]); },
    layers: function () { return LAYERS.map(function (l) { return l.key; }); },
    image: function (p) { return panels[p].canvas.toDataURL(); },
  };
  document.body.setAttribute("data-ready", "true");
})();
