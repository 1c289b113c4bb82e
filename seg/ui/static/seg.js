// seg ui: live charts (uPlot, vendored) fed by server-sent events, and the buttons' POSTs.
"use strict";
const Seg = (() => {
  const csrf = document.querySelector("meta[name=csrf]").content;
  const colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

  async function post(url, body) {
    const r = await fetch(url, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
      body: JSON.stringify(body || {}),
    });
    return r.json();
  }

  // One chart: x = steps, one line per label; re-created when the set of lines changes.
  function chart(id, title, logY) {
    const el = document.getElementById(id);
    let plot = null, labels = "";
    return (x, lines) => {
      const names = Object.keys(lines);
      const data = [x, ...names.map((n) => lines[n])];
      el.dataset.points = String(x.length);
      if (!plot || labels !== names.join("|")) {
        if (plot) plot.destroy();
        labels = names.join("|");
        const series = [{ label: "step" }, ...names.map((n, i) => ({
          label: n, stroke: colours[i % colours.length], width: 1.5, spanGaps: true,
        }))];
        plot = new uPlot({
          title, width: Math.max(el.clientWidth, 300), height: 220, series,
          scales: { x: { time: false }, y: logY ? { distr: 3 } : {} },
          axes: [{}, { size: 60, values: (u, ticks) => ticks.map((v) => (v === null ? "" : logY ? v.toExponential(0) : +v.toPrecision(3))) }],
        }, data, el);
      } else {
        plot.setData(data);
      }
    };
  }

  const num = (v) => (typeof v === "number" && isFinite(v) ? v : null);
  const fmt = (v, d) => (v === null || v === undefined ? "-" : Number(v).toFixed(d));

  function liveFigures(data, started) {
    const steps = data.steps.filter((s) => s.loss !== undefined);
    const epochs = data.epochs;
    const set = (id, text) => { document.getElementById(id).textContent = text; };
    const last = steps[steps.length - 1];
    set("step", last ? last.step : "-");
    set("epoch", epochs.length ? epochs[epochs.length - 1].epoch : "-");
    if (steps.length >= 2) {
      const a = steps[Math.max(0, steps.length - 6)], b = last;
      set("s_per_step", fmt((b.time - a.time) / Math.max(1, b.step - a.step), 2));
    }
    set("windows_per_s", last ? fmt(last.windows_per_s, 1) : "-");
    set("s_per_epoch", epochs.length ? fmt(epochs[epochs.length - 1].elapsed_s, 1) : "-");
    set("rss", last && last.rss_mb ? fmt(last.rss_mb / 1000, 2) + " GB" : "-");
    const util = last && last.gpu_util_pct !== undefined ? ", " + fmt(last.gpu_util_pct, 0) + " % busy" : "";
    set("gpu", last && last.gpu_mem_mb ? fmt(last.gpu_mem_mb / 1000, 2) + " GB" + util : "-");
    const facts = data.facts || {};  // run.json: written when training starts, after the page
    if (facts.parameters) {
      set("facts-data", facts.data || "-");
      set("parameters", Number(facts.parameters).toLocaleString("en-US"));
      set("facts-windows", (facts.train_windows || "-") + " train / " + (facts.val_windows || "-") +
          " val of " + (facts.window || "-") + " px");
      set("facts-classes", (facts.classes || []).join(", "));
    }
    started = started || facts.started;
    const budget = data.budget_s;
    if (budget && started && data.run.state === "running") {
      set("eta", fmt(Math.max(0, started + budget - Date.now() / 1000), 0) + " s");
    }
    const run = data.run;
    document.getElementById("state").textContent = run.state;
    document.getElementById("state").className = "badge state-" + run.state;
    document.getElementById("note").textContent = run.note;
    document.getElementById("exit").textContent = run.exit_code === null ? "" : "exit " + run.exit_code;
    const problems = document.getElementById("problems");
    problems.replaceChildren(...[...run.problems, ...data.problems].map((p) => {
      const li = document.createElement("li"); li.textContent = p; return li;
    }));
    const events = document.getElementById("events");
    events.replaceChildren(...data.steps.filter((s) => s.event).map((s) => {
      const li = document.createElement("li"); li.textContent = "step " + s.step + ": " + s.event; return li;
    }));
  }

  function runPage(name, started) {
    const loss = chart("chart-loss", "training loss", false);
    const val = chart("chart-val", "validation", false);
    const lr = chart("chart-lr", "learning rate", true);
    const grad = chart("chart-grad", "gradient norm", false);
    const draw = (data) => {
      const steps = data.steps.filter((s) => s.loss !== undefined);
      const x = steps.map((s) => s.step);
      loss(x, { "train loss": steps.map((s) => num(s.loss)) });
      lr(x, { lr: steps.map((s) => num(s.lr)) });
      grad(x, { "grad norm": steps.map((s) => num(s.grad_norm)) });
      const e = data.epochs;
      const lines = { "val loss": e.map((r) => num(r.val_loss)), mIoU: e.map((r) => num(r.miou)) };
      for (const r of e) {
        for (const cls of Object.keys(r.per_class || {})) {
          lines["IoU " + cls] = e.map((q) => num(((q.per_class || {})[cls] || {}).iou));
        }
      }
      val(e.map((r) => r.step), lines);
      liveFigures(data, started);
      lapse(data.frames || []);
    };
    const lapse = timelapse(name);
    const source = new EventSource("/api/events/" + name);
    source.addEventListener("update", (ev) => draw(JSON.parse(ev.data)));
    const say = (r) => { document.getElementById("message").textContent = r.message || r.error; };
    document.getElementById("stop").onclick = async () => say(await post("/action/stop/" + name));
    document.getElementById("resume").onclick = async () => say(await post("/action/resume/" + name));
    logSlider("lr-slider", (v) => { document.getElementById("lr-value").textContent = v; });
    document.getElementById("lr-apply").onclick = async () => {
      const v = Math.pow(10, Number(document.getElementById("lr-slider").value));
      say(await post("/action/lr/" + name, { lr: Number(v.toPrecision(3)) }));
    };
  }

  // The predictions time-lapse: a slider over the epochs' frames that follows the newest one
  // unless the user moved it back; Play steps through them twice a second.
  function timelapse(name) {
    const slider = document.getElementById("frame-slider");
    const img = document.getElementById("frame");
    const label = document.getElementById("frame-caption");
    const play = document.getElementById("play");
    let frames = [], timer = null;
    const show = (i) => {
      const f = frames[i];
      if (!f) return;
      slider.value = String(i);
      img.src = "/frame/" + f.epoch + "/" + name + "?step=" + (f.step === null ? "" : f.step);
      img.hidden = false;
      label.textContent = f.caption + " (" + (i + 1) + " of " + frames.length + ")";
    };
    slider.addEventListener("input", () => show(Number(slider.value)));
    // small windows (a 64 px test store) are drawn at twice their size, pixel for pixel
    img.addEventListener("load", () => {
      img.style.width = img.naturalWidth < 400 ? 2 * img.naturalWidth + "px" : "";
    });
    play.onclick = () => {
      if (timer) { clearInterval(timer); timer = null; play.textContent = "Play"; return; }
      let i = 0;
      play.textContent = "Pause";
      timer = setInterval(() => {
        show(i);
        i += 1;
        if (i >= frames.length) { clearInterval(timer); timer = null; play.textContent = "Play"; }
      }, 500);
    };
    return (latest) => {
      const following = !frames.length || Number(slider.value) === frames.length - 1;
      const changed = JSON.stringify(latest) !== JSON.stringify(frames);
      frames = latest;
      slider.max = String(Math.max(0, frames.length - 1));
      slider.disabled = play.disabled = frames.length === 0;
      if (changed && following && !timer) show(frames.length - 1);
    };
  }

  // A range input holding log10(value): shows 10^x rounded to 3 significant digits.
  function logSlider(id, show) {
    const s = document.getElementById(id);
    const update = () => show(Number(Math.pow(10, Number(s.value)).toPrecision(3)));
    s.addEventListener("input", update);
    update();
    return s;
  }

  async function comparePage(names) {
    const val = chart("cmp-val", "validation mIoU", false);
    const loss = chart("cmp-loss", "training loss", false);
    const all = await Promise.all(names.map((n) => fetch("/api/series/" + n).then((r) => r.json())));
    const join = (pick) => {
      const tables = all.map((d) => pick(d));
      const joined = uPlot.join(tables.map((t) => [t[0], t[1]]));
      const lines = {};
      names.forEach((n, i) => { lines[n] = Array.from(joined[i + 1]); });
      return [Array.from(joined[0]), lines];
    };
    if (!names.length) return;
    const [xv, lv] = join((d) => [d.epochs.map((r) => r.step), d.epochs.map((r) => num(r.miou))]);
    val(xv, lv);
    const [xl, ll] = join((d) => {
      const s = d.steps.filter((q) => q.loss !== undefined);
      return [s.map((q) => q.step), s.map((q) => num(q.loss))];
    });
    loss(xl, ll);
  }

  function startPage() {
    const field = document.getElementById("f-optim.lr");
    const s = document.getElementById("lr-slider");
    if (!field || !s) return;
    s.value = String(Math.log10(Number(field.value) || 1e-3));
    s.addEventListener("input", () => { field.value = String(Number(Math.pow(10, Number(s.value)).toPrecision(3))); });
    field.addEventListener("change", () => { s.value = String(Math.log10(Number(field.value) || 1e-3)); });
  }

  // A predicted scene on a Leaflet map: scene, mask and one class's probability as XYZ tiles
  // served by seg ui from the COGs; no base map (nothing is fetched from outside).
  function mapPage(name, source) {
    const [w, s, e, n] = source.bounds;
    const box = [[s, w], [n, e]];
    const map = L.map("map", { attributionControl: false, maxZoom: source.maxzoom + 3 });
    const url = (layer, query) => "/tiles/" + layer + "/{z}/{x}/{y}/" + name + (query || "");
    const opts = {
      tileSize: 256, bounds: box, minNativeZoom: source.minzoom, maxNativeZoom: source.maxzoom,
      maxZoom: source.maxzoom + 3,
    };
    const overlays = {};
    if (source.scene) overlays.scene = L.tileLayer(url("scene"), opts).addTo(map);
    const mask = L.tileLayer(url("mask"), { ...opts, opacity: 0.6 }).addTo(map);
    overlays.mask = mask;
    L.control.layers(null, overlays, { collapsed: false }).addTo(map);
    map.fitBounds(box);
    document.getElementById("opacity").addEventListener("input", (ev) => mask.setOpacity(Number(ev.target.value)));
    const pick = document.getElementById("prob-class");
    let prob = null;
    if (pick) {
      pick.addEventListener("change", () => {
        if (prob) { map.removeLayer(prob); prob = null; }
        if (pick.value) prob = L.tileLayer(url("probability", "?band=" + pick.value), opts).addTo(map);
      });
    }
    window.segMap = map;  // the browser test reads the view from here
  }

  // The queue's tables, fetched again every 3 s (the server renders them; no reload).
  function queuePage() {
    const box = document.getElementById("queue");
    const tick = async () => {
      try {
        const r = await fetch("/queue?part=1", { credentials: "same-origin" });
        if (r.ok) { box.innerHTML = await r.text(); box.dataset.updated = String(Date.now()); }
      } catch (e) { /* the server restarts: try again at the next tick */ }
    };
    setInterval(tick, 3000);
  }

  return { runPage, comparePage, startPage, mapPage, queuePage, post };
})();
