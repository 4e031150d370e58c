// The page of `deepfake serve`: upload a video, follow its analysis, show the verdict and its evidence.
// Plain DOM code, no dependency. Everything the server sends is shown with textContent (never parsed as
// HTML); the page runs under a Content-Security-Policy without inline scripts or styles.
"use strict";

(() => {
  const API = "/v1/analyses";
  const KEY_STORE = "deepfake.apikey";
  const POLL_MS = 500;
  const POLL_LIMIT_MS = 30 * 60 * 1000; // stop following a job after this long; it can be reopened
  const POLL_ERRORS = 10; // consecutive failed polls before giving up
  const RECENT_LIMIT = 20;
  const RECENT_EVERY_MS = 5000; // while something listed is queued or running
  const STEPS = {
    queued: "waiting in the queue",
    decode: "decoding frames",
    score: "finding faces and scoring them",
    explain: "drawing the explanation",
    done: "finishing",
  };
  const SVG = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);
  const ui = {
    file: $("file"),
    drop: $("drop"),
    progress: $("progress"),
    status: $("status"),
    result: $("result"),
    verdict: $("verdict"),
    filename: $("filename"),
    probability: $("probability"),
    label: $("label"),
    note: $("probability-note"),
    reason: $("reason"),
    warning: $("warning"),
    model: $("model"),
    modelBadge: $("model-badge"),
    facts: $("facts"),
    members: $("members"),
    tracks: $("tracks"),
    timings: $("timings"),
    plot: $("plot"),
    montage: $("montage"),
    montageLink: $("montage-link"),
    montageNote: $("montage-note"),
    overlay: $("overlay"),
    overlayNote: $("overlay-note"),
    recent: $("recent"),
    recentEmpty: $("recent-empty"),
    refresh: $("refresh"),
    apikey: $("apikey"),
    keyform: $("keyform"),
    keyclear: $("apikey-clear"),
  };

  let generation = 0; // bumped whenever the page starts showing something else; stale async work checks it
  let currentId = null;
  let objectUrls = [];
  let recentTimer = null;
  let plotted = null; // what the plot shows, to redraw it at a new width
  const seen = new Map(); // id -> the finished job as last fetched (a listing may come without records)

  // ---- small helpers ---------------------------------------------------------------------------------

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function h(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function s(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const finite = (x) => typeof x === "number" && Number.isFinite(x);
  const percent = (p, digits = 1) => (finite(p) ? `${(p * 100).toFixed(digits)} %` : "–");
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

  function seconds(a, b) {
    const t0 = Date.parse(a);
    const t1 = Date.parse(b);
    return Number.isFinite(t0) && Number.isFinite(t1) ? (t1 - t0) / 1000 : null;
  }

  function ago(iso) {
    const t = Date.parse(iso);
    if (!Number.isFinite(t)) return "";
    const secs = Math.max(0, (Date.now() - t) / 1000);
    if (secs < 45) return "just now";
    if (secs < 3600) return `${Math.round(secs / 60)} min ago`;
    if (secs < 86400) return `${Math.round(secs / 3600)} h ago`;
    return new Date(t).toLocaleDateString();
  }

  // ---- the API ---------------------------------------------------------------------------------------

  function apiKey() {
    try {
      return localStorage.getItem(KEY_STORE) || "";
    } catch {
      return "";
    }
  }

  function authHeaders() {
    const key = apiKey();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  class ApiError extends Error {
    constructor(status, detail, retryAfter) {
      super(explain(status, detail, retryAfter));
      this.status = status;
      this.detail = detail;
    }
  }

  function detailOf(body, fallback) {
    if (body && typeof body.detail === "string") return body.detail;
    if (body && Array.isArray(body.detail)) {
      // FastAPI's validation errors: [{loc, msg, type}, ...]
      return body.detail.map((d) => (d && d.msg ? String(d.msg) : JSON.stringify(d))).join("; ");
    }
    return fallback || "no details given";
  }

  function explain(status, detail, retryAfter) {
    const wait = retryAfter && /^\d+$/.test(retryAfter) ? ` Try again in ${retryAfter} s.` : " Try again later.";
    switch (status) {
      case 0:
        return `The server could not be reached: ${detail}.`;
      case 401:
      case 403:
        return `Not authorised: ${detail}. Set the API key under "API key" at the top of the page.`;
      case 413:
        return `The file is too large: ${detail}`;
      case 429:
        return `The service is busy: ${detail}.${wait}`;
      case 507:
        return `The server has no room for more uploads: ${detail}.${wait}`;
      case 400:
      case 422:
        return detail;
      default:
        return `The server answered ${status}: ${detail}`;
    }
  }

  async function api(url, options = {}) {
    let response;
    try {
      response = await fetch(url, {
        ...options,
        cache: "no-store",
        headers: { ...authHeaders(), ...(options.headers || {}) },
      });
    } catch (err) {
      throw new ApiError(0, err && err.message ? err.message : "network error");
    }
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        // not JSON: the status text says enough
      }
      throw new ApiError(response.status, detailOf(body, response.statusText), response.headers.get("Retry-After"));
    }
    return response;
  }

  function upload(file, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", API);
      for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
      });
      xhr.addEventListener("load", () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          // handled below
        }
        if (xhr.status >= 200 && xhr.status < 300 && body && body.id) resolve(body);
        else reject(new ApiError(xhr.status, detailOf(body, xhr.statusText), xhr.getResponseHeader("Retry-After")));
      });
      xhr.addEventListener("error", () => reject(new ApiError(0, "the upload was cut off")));
      xhr.addEventListener("abort", () => reject(new ApiError(0, "the upload was cancelled")));
      const form = new FormData();
      form.append("video", file, file.name);
      xhr.send(form);
    });
  }

  // ---- status line -----------------------------------------------------------------------------------

  function say(text, kind = "") {
    ui.status.textContent = text;
    ui.status.className = kind ? `status ${kind}` : "status";
  }

  function showProgress(value) {
    if (value === null) {
      ui.progress.hidden = true;
      return;
    }
    ui.progress.hidden = false;
    ui.progress.value = Math.min(1, Math.max(0, value));
  }

  // ---- the result ------------------------------------------------------------------------------------

  function clearResult() {
    for (const url of objectUrls) URL.revokeObjectURL(url);
    objectUrls = [];
    ui.result.hidden = true;
    ui.verdict.className = "card verdict";
    for (const node of [ui.filename, ui.probability, ui.label, ui.reason, ui.warning, ui.model, ui.modelBadge, ui.timings]) {
      node.textContent = "";
    }
    ui.reason.hidden = true;
    ui.warning.hidden = true;
    ui.model.hidden = true;
    ui.modelBadge.hidden = true;
    ui.facts.replaceChildren();
    ui.members.tBodies[0].replaceChildren();
    ui.tracks.tBodies[0].replaceChildren();
    ui.members.hidden = true;
    ui.tracks.hidden = true;
    ui.plot.replaceChildren();
    plotted = null;
    ui.result.classList.remove("solo");
    ui.montage.hidden = true;
    ui.montage.removeAttribute("src");
    ui.montageLink.removeAttribute("href");
    ui.overlay.hidden = true;
    ui.overlay.removeAttribute("src");
    ui.overlay.load();
    for (const note of [ui.montageNote, ui.overlayNote]) {
      note.hidden = true;
      note.textContent = "";
    }
    for (const card of document.querySelectorAll(".plot-card, .media-card")) card.hidden = false;
  }

  function notScored(name, reason) {
    ui.result.hidden = false;
    ui.verdict.className = "card verdict unscored";
    ui.filename.textContent = name || "";
    ui.probability.textContent = "No score";
    ui.label.textContent = "NOT SCORED";
    ui.note.textContent = "no probability for this video";
    ui.reason.textContent = `Could not be scored: ${reason}`;
    ui.reason.hidden = false;
  }

  function fact(term, value) {
    if (value === null || value === undefined || value === "") return;
    ui.facts.append(h("div", { class: "fact" }, h("dt", { text: term }), h("dd", { text: String(value) })));
  }

  // where a score lies against the package's operating points (the record's verdict.thresholds, on the
  // detector's score): "fake" at or above the likely-fake threshold, "real" below the likely-real one,
  // "uncertain" between; "" when the package gave no verdict (no calibration): no colour, never a made-up cut
  function side(p, thresholds) {
    if (!thresholds || !finite(thresholds.likely_fake) || !finite(thresholds.likely_real)) return "";
    if (p >= thresholds.likely_fake) return "fake";
    return p < thresholds.likely_real ? "real" : "uncertain";
  }

  const CALLS = { likely_fake: ["fake", "LIKELY FAKE"], uncertain: ["uncertain", "UNCERTAIN"], likely_real: ["real", "LIKELY REAL"] };

  function bar(p, thresholds) {
    const fill = h("span", { class: `fill ${side(p, thresholds)}` });
    fill.style.width = `${Math.round(Math.min(1, Math.max(0, p)) * 100)}%`; // CSSOM: allowed by the CSP
    return h("span", { class: "bar", "aria-hidden": "true" }, fill);
  }

  // the model that gave the verdict (its card: name, version, demonstration); a demonstration model, or one
  // whose package has no card (demonstration null), gets a badge that no one can miss
  function showModel(model) {
    if (!model || typeof model !== "object") return;
    const name = typeof model.name === "string" && model.name ? model.name : "unnamed model";
    const version = typeof model.version === "string" && model.version ? model.version : "unknown";
    ui.model.textContent = `Model: ${name} · version ${version}`;
    ui.model.hidden = false;
    if (model.demonstration === true) ui.modelBadge.textContent = "demonstration model — not for real decisions";
    else if (model.demonstration !== false) ui.modelBadge.textContent = "model of unknown provenance — not for real decisions";
    ui.modelBadge.hidden = model.demonstration === false;
  }

  function renderVerdict(job) {
    const record = job.record || {};
    seen.set(job.id, job);
    const name = job.filename || record.filename || job.id;
    ui.filename.textContent = name;
    ui.result.hidden = false;
    if (job.status === "failed") {
      notScored(name, job.error || "the analysis failed without saying why");
    } else if (!finite(record.probability)) {
      notScored(name, record.status || job.error || "the service returned no probability");
    } else {
      const verdict = record.verdict && typeof record.verdict === "object" ? record.verdict : {};
      const [kind, text] = CALLS[verdict.call] || ["unscored", "NO VERDICT"];
      ui.verdict.className = `card verdict ${kind}`;
      ui.label.textContent = text;
      if (finite(verdict.probability)) {
        ui.probability.textContent = percent(verdict.probability);
        ui.note.textContent = `calibrated probability the video is fake (${verdict.calibration || "?"} calibration); ${verdict.meaning || ""}`;
      } else {
        ui.probability.textContent = percent(record.probability);
        ui.note.textContent = `detector score, not a calibrated probability: ${verdict.meaning || "the package gave no verdict"}`;
      }
      const point = verdict.operating_point;
      if (point && finite(point.target_fpr)) {
        fact("Operating point", `${percent(point.target_fpr)} false-positive rate${point.resolved === false ? " (rests on too few real videos)" : ""}`);
      }
      fact("Detector score", percent(record.probability));
    }
    const credentials = record.credentials && typeof record.credentials === "object" ? record.credentials : null;
    if (credentials) fact("Content credentials (C2PA)", credentials.summary || credentials.state);

    showModel(record.model || job.model);

    const warnings = [];
    if (record.decode_error) warnings.push(`The stream broke: ${record.decode_error}.`);
    const sampling = record.sampling || {};
    if (sampling.note) warnings.push(String(sampling.note));
    if (warnings.length) {
      ui.warning.textContent = warnings.join(" ");
      ui.warning.hidden = false;
    }

    const frames = Array.isArray(record.frames) ? record.frames : [];
    if (finite(record.decided_by)) fact("Decided by", `face track ${record.decided_by}`);
    if (finite(record.crops)) fact("Face crops scored", record.crops);
    if (frames.length) {
      const span =
        finite(sampling.first_s) && finite(sampling.last_s)
          ? ` over ${sampling.first_s.toFixed(1)}–${sampling.last_s.toFixed(1)} s`
          : "";
      fact("Frames sampled", `${frames.length}${span}`);
    }
    if (finite(sampling.duration_s)) fact("Video length", `${sampling.duration_s.toFixed(1)} s`);
    if (job.backend) fact("Backend", job.backend);
    const took = seconds(job.started, job.finished);
    if (took !== null) fact("Analysis time", `${took.toFixed(1)} s`);
    if (finite(job.attempts) && job.attempts > 1) fact("Attempts", job.attempts);

    const thresholds = record.verdict && typeof record.verdict === "object" ? record.verdict.thresholds : null;
    const members = record.members && typeof record.members === "object" ? Object.entries(record.members) : [];
    if (members.length) {
      for (const [member, p] of members) {
        ui.members.tBodies[0].append(
          h("tr", {}, h("th", { scope: "row", text: member }), h("td", {}, bar(p, thresholds), h("span", { text: percent(p) })))
        );
      }
      ui.members.hidden = false;
    }

    const tracks = Array.isArray(record.tracks) ? record.tracks.filter((t) => finite(t.probability)) : [];
    if (tracks.length > 1) {
      for (const track of tracks) {
        const decided = track.id === record.decided_by;
        const score = track.eligible === false ? `${percent(track.probability)} (too brief to count)` : percent(track.probability);
        ui.tracks.tBodies[0].append(
          h(
            "tr",
            { class: decided ? "decided" : "" },
            h("th", { scope: "row", text: decided ? `${track.id} (decided)` : String(track.id) }),
            h("td", { text: Array.isArray(track.frames) ? String(track.frames.length) : "" }),
            h("td", {}, bar(track.probability, thresholds), h("span", { text: score }))
          )
        );
      }
      ui.tracks.hidden = false;
    }

    const ms = record.ms && typeof record.ms === "object" ? Object.entries(record.ms).filter(([, v]) => finite(v)) : [];
    if (ms.length) {
      const total = ms.reduce((a, [, v]) => a + v, 0);
      ui.timings.textContent = `Timings: ${ms.map(([k, v]) => `${k} ${Math.round(v)} ms`).join(" · ")} (total ${Math.round(total)} ms)`;
    }

    const scored = frames.some((f) => (f.faces || []).some((face) => face.scores));
    document.querySelector(".plot-card").hidden = !frames.length;
    if (frames.length) drawPlot(frames, scored, thresholds);
    const media = job.status === "done" && (job.explanation || job.overlay || finite(record.probability));
    for (const card of document.querySelectorAll(".media-card")) card.hidden = !media;
    ui.result.classList.toggle("solo", !frames.length && !media);
    if (media) {
      const gen = generation;
      loadMedia(job.explanation, ui.montage, ui.montageNote, "explanation montage", gen);
      loadMedia(job.overlay, ui.overlay, ui.overlayNote, "overlay video", gen);
    }
  }

  async function loadMedia(url, element, note, what, gen) {
    if (!url) {
      note.textContent = `No ${what} for this analysis.`;
      note.hidden = false;
      return;
    }
    try {
      // fetched (not a plain src) so the API key goes along; the CSP allows blob: images and media
      const blob = await (await api(url)).blob();
      if (gen !== generation) return;
      const objectUrl = URL.createObjectURL(blob);
      objectUrls.push(objectUrl);
      element.src = objectUrl;
      element.hidden = false;
      if (element === ui.montage) ui.montageLink.href = objectUrl;
    } catch (err) {
      if (gen !== generation) return;
      note.textContent = `The ${what} could not be loaded: ${err.message}`;
      note.hidden = false;
    }
  }

  // ---- the per-frame plot ----------------------------------------------------------------------------

  function framePoints(frames) {
    return frames
      .filter((f) => finite(f.t))
      .map((f) => {
        let best = null;
        for (const face of f.faces || []) {
          const values = Object.values(face.scores || {}).filter(finite);
          if (!values.length) continue;
          const score = mean(values);
          if (!best || score > best.score) best = { score, track: face.track, detected: face.detected !== false };
        }
        return { t: f.t, frame: f.frame, faces: (f.faces || []).length, best };
      });
  }

  function niceStep(span, target) {
    const raw = span / target;
    const power = 10 ** Math.floor(Math.log10(raw));
    const unit = [1, 2, 2.5, 5, 10].find((m) => m * power >= raw) || 10;
    return unit * power;
  }

  function drawPlot(frames, scored, thresholds) {
    plotted = { frames, scored, thresholds };
    const points = framePoints(frames);
    // drawn at the size it is shown, so its text stays legible on a phone
    const W = Math.round(Math.min(1000, Math.max(300, ui.plot.clientWidth || 640)));
    const H = W < 520 ? 220 : 300;
    const m = { left: 50, right: 14, top: 12, bottom: 40 };
    const ts = points.map((p) => p.t);
    let t0 = Math.min(...ts);
    let t1 = Math.max(...ts);
    if (!(t1 > t0)) {
      t0 -= 0.5;
      t1 += 0.5;
    }
    const x = (t) => m.left + ((t - t0) / (t1 - t0)) * (W - m.left - m.right);
    const y = (p) => m.top + (1 - p) * (H - m.top - m.bottom);
    const withScore = points.filter((p) => p.best);
    const top = withScore.reduce((a, p) => (!a || p.best.score > a.best.score ? p : a), null);
    const svg = s("svg", {
      viewBox: `0 0 ${W} ${H}`,
      class: "chart",
      role: "img",
      "aria-labelledby": "plot-title plot-desc",
    });
    svg.append(
      s("title", { id: "plot-title" }, "P(fake) per sampled frame"),
      s(
        "desc",
        { id: "plot-desc" },
        top
          ? `${points.length} sampled frames, ${withScore.length} with a scored face; highest ${percent(top.best.score)} at ${top.t.toFixed(2)} s.`
          : `${points.length} sampled frames; no face was scored.`
      )
    );

    const grid = s("g", { class: "grid" });
    for (const p of [0, 0.25, 0.5, 0.75, 1]) {
      grid.append(s("line", { x1: m.left, x2: W - m.right, y1: y(p), y2: y(p) }));
      grid.append(s("text", { x: m.left - 8, y: y(p) + 4, class: "ylab" }, `${p * 100}%`));
    }
    const threshold = thresholds && finite(thresholds.likely_fake) ? thresholds.likely_fake : null;
    if (threshold !== null) {
      const cut = s("line", { x1: m.left, x2: W - m.right, y1: y(threshold), y2: y(threshold), class: "threshold" });
      cut.append(s("title", {}, `likely-fake operating point ${percent(threshold)}: a video whose score reaches it is called likely fake`));
      grid.append(cut);
    }
    const step = niceStep(t1 - t0, 6);
    for (let t = Math.ceil(t0 / step) * step; t <= t1 + 1e-9; t += step) {
      const label = Number(t.toFixed(3)).toString();
      grid.append(s("line", { x1: x(t), x2: x(t), y1: H - m.bottom, y2: H - m.bottom + 5, class: "tick" }));
      grid.append(s("text", { x: x(t), y: H - m.bottom + 18, class: "xlab" }, `${label} s`));
    }
    grid.append(s("text", { x: (m.left + W - m.right) / 2, y: H - 4, class: "axis" }, "time in the video"));
    grid.append(s("line", { x1: m.left, x2: m.left, y1: m.top, y2: H - m.bottom, class: "axisline" }));
    grid.append(s("line", { x1: m.left, x2: W - m.right, y1: H - m.bottom, y2: H - m.bottom, class: "axisline" }));
    svg.append(grid);

    // the line breaks at frames without a scored face
    let d = "";
    let pen = false;
    for (const p of points) {
      if (!p.best) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.best.score).toFixed(1)} `;
      pen = true;
    }
    if (d) svg.append(s("path", { d: d.trim(), class: "line" }));

    const marks = s("g", { class: "marks" });
    for (const p of points) {
      if (!p.best) {
        const tick = s("path", {
          d: `M${x(p.t).toFixed(1)},${(H - m.bottom - 12).toFixed(1)} v10`,
          class: "noface",
        });
        tick.append(s("title", {}, `${p.t.toFixed(2)} s (frame ${p.frame}): ${p.faces ? "face not scored" : "no face"}`));
        marks.append(tick);
        continue;
      }
      const dot = s("circle", {
        cx: x(p.t).toFixed(1),
        cy: y(p.best.score).toFixed(1),
        r: 4.5,
        class: `pt ${side(p.best.score, thresholds)}${p.best.detected ? "" : " carried"}`,
      });
      const how = p.best.detected ? "detected" : "carried along its track";
      dot.append(
        s("title", {}, `${p.t.toFixed(2)} s (frame ${p.frame}): ${percent(p.best.score)} fake, track ${p.best.track}, ${how}`)
      );
      marks.append(dot);
    }
    svg.append(marks);
    if (!scored) svg.append(s("text", { x: W / 2, y: H / 2, class: "empty" }, "no face was scored"));
    ui.plot.replaceChildren(svg);
  }

  // ---- following a job -------------------------------------------------------------------------------

  function stepText(job) {
    const what = STEPS[job.step] || job.step || job.status;
    const pct = finite(job.progress) ? ` (${Math.round(job.progress * 100)} %)` : "";
    return `${job.filename || "video"}: ${what}${pct}`;
  }

  async function follow(id, gen) {
    const started = Date.now();
    let errors = 0;
    while (gen === generation) {
      let job;
      try {
        job = await (await api(`${API}/${encodeURIComponent(id)}`)).json();
        errors = 0;
      } catch (err) {
        if (gen !== generation) return;
        if (err.status === 404) {
          showProgress(null);
          say(`Analysis ${id} is not on the server (deleted, or it expired).`, "error");
          return;
        }
        if (err.status === 401 || err.status === 403 || ++errors >= POLL_ERRORS) {
          showProgress(null);
          say(err.message, "error");
          askForKey(err);
          return;
        }
        say(`${err.message} Retrying…`, "warn");
        await sleep(Math.min(5000, POLL_MS * 2 ** errors));
        continue;
      }
      if (gen !== generation) return;
      if (job.status === "done" || job.status === "failed") {
        showProgress(null);
        const took = seconds(job.created, job.finished);
        const when = took !== null ? ` in ${took.toFixed(1)} s` : "";
        if (job.status === "failed") say(`${job.filename || "The video"}: the analysis failed${when}.`, "error");
        else say(`${job.filename || "The video"}: analysed${when}.`, "ok");
        renderVerdict(job);
        refreshRecent();
        return;
      }
      showProgress(finite(job.progress) ? job.progress : 0);
      say(stepText(job));
      if (Date.now() - started > POLL_LIMIT_MS) {
        say(`${stepText(job)}: still not finished; stopped watching. Open it again from the recent analyses.`, "warn");
        return;
      }
      await sleep(POLL_MS);
    }
  }

  function open(id) {
    const gen = ++generation;
    currentId = id;
    clearResult();
    markCurrent();
    say("Loading the analysis…");
    if (location.hash !== `#/analyses/${id}`) history.pushState(null, "", `#/analyses/${id}`);
    return follow(id, gen);
  }

  function askForKey(err) {
    if (err && (err.status === 401 || err.status === 403)) {
      ui.apikey.closest("details").open = true;
      ui.apikey.focus();
    }
  }

  async function analyse(file) {
    const gen = ++generation;
    currentId = null;
    clearResult();
    markCurrent();
    showProgress(0);
    say(`Uploading ${file.name}…`);
    let job;
    try {
      job = await upload(file, (fraction) => {
        if (gen !== generation) return;
        showProgress(fraction);
        say(`Uploading ${file.name}: ${Math.round(fraction * 100)} %`);
      });
    } catch (err) {
      if (gen !== generation) return;
      showProgress(null);
      if (err.status === 400 || err.status === 413 || err.status === 422) {
        // a verdict about the file itself: shown where a verdict goes
        say(`${file.name} was not accepted.`, "error");
        notScored(file.name, err.message);
      } else {
        say(err.message, "error");
        askForKey(err);
      }
      return;
    } finally {
      ui.file.value = ""; // the same file can be picked again
    }
    if (gen !== generation) return;
    refreshRecent();
    await open(job.id);
  }

  // ---- recent analyses -------------------------------------------------------------------------------

  function summary(a) {
    const record = a.record || (seen.get(a.id) || {}).record || {};
    const p = finite(record.probability) ? record.probability : a.probability;
    const verdict = (record.verdict && typeof record.verdict === "object" ? record.verdict : a.verdict) || {};
    if (a.status === "done" && finite(p)) {
      const [kind, text] = CALLS[verdict.call] || ["unscored", "no verdict"];
      const shown = finite(verdict.probability) ? verdict.probability : p;
      return { text: `${text.toLowerCase()} ${percent(shown)}`, kind };
    }
    if (a.status === "done" && (record.status || "probability" in a)) {
      return { text: record.status ? `not scored: ${record.status}` : "not scored", kind: "unscored" };
    }
    if (a.status === "done") return { text: "done", kind: "done" };
    if (a.status === "failed") return { text: `failed${a.error ? `: ${a.error}` : ""}`, kind: "unscored" };
    if (a.status === "running") return { text: `running ${finite(a.progress) ? Math.round(a.progress * 100) : 0} %`, kind: "busy" };
    return { text: a.status || "?", kind: "busy" };
  }

  function markCurrent() {
    for (const li of ui.recent.children) {
      if (li.dataset.id === currentId) li.setAttribute("aria-current", "true");
      else li.removeAttribute("aria-current");
    }
  }

  function renderRecent(list) {
    ui.recent.replaceChildren(
      ...list.map((a) => {
        const { text, kind } = summary(a);
        const name = a.filename || a.id;
        const created = a.created ? new Date(a.created) : null;
        const li = h(
          "li",
          { class: "item" },
          h(
            "button",
            { type: "button", class: "open", title: `Open ${name}`, onclick: () => open(a.id) },
            h("span", { class: "name", text: name }),
            h("span", { class: `chip ${kind}`, text }),
            h("time", { class: "when", datetime: a.created || "", title: created ? created.toLocaleString() : "", text: ago(a.created) })
          ),
          h("button", {
            type: "button",
            class: "delete quiet",
            "aria-label": `Delete the analysis of ${name}`,
            title: a.status === "running" ? "Running: it can be deleted once it is done" : "Delete",
            disabled: a.status === "running",
            text: "Delete",
            onclick: () => remove(a.id, name),
          })
        );
        li.dataset.id = a.id;
        li.dataset.status = a.status || "";
        return li;
      })
    );
    ui.recentEmpty.textContent = "None yet.";
    ui.recentEmpty.hidden = list.length > 0;
    markCurrent();
    scheduleRecent(list.some((a) => a.status === "queued" || a.status === "running"));
  }

  async function refreshRecent() {
    try {
      const data = await (await api(`${API}?limit=${RECENT_LIMIT}`)).json();
      renderRecent(Array.isArray(data.analyses) ? data.analyses : []);
    } catch (err) {
      ui.recent.replaceChildren();
      ui.recentEmpty.textContent = `The recent analyses could not be listed: ${err.message}`;
      ui.recentEmpty.hidden = false;
      scheduleRecent(false);
    }
  }

  function scheduleRecent(busy) {
    clearTimeout(recentTimer);
    recentTimer = busy ? setTimeout(() => document.visibilityState === "visible" ? refreshRecent() : scheduleRecent(true), RECENT_EVERY_MS) : null;
  }

  async function remove(id, name) {
    try {
      await api(`${API}/${encodeURIComponent(id)}`, { method: "DELETE" });
      if (id === currentId) {
        generation++;
        currentId = null;
        clearResult();
        showProgress(null);
        history.pushState(null, "", location.pathname + location.search);
      }
      say(`Deleted the analysis of ${name}.`);
    } catch (err) {
      say(`Could not delete the analysis of ${name}: ${err.message}`, "error");
      askForKey(err);
    }
    refreshRecent();
  }

  // ---- wiring ----------------------------------------------------------------------------------------

  function pick(files) {
    if (!files || !files.length) return;
    if (files.length > 1) say(`${files.length} files dropped; analysing the first one, ${files[0].name}.`);
    analyse(files[0]);
  }

  ui.file.addEventListener("change", () => pick(ui.file.files));

  // a file dropped anywhere else must not make the browser navigate away from the page
  for (const type of ["dragover", "drop"]) document.addEventListener(type, (event) => event.preventDefault());
  let depth = 0;
  ui.drop.addEventListener("dragenter", (event) => {
    event.preventDefault();
    depth++;
    ui.drop.classList.add("over");
  });
  ui.drop.addEventListener("dragleave", () => {
    if (--depth <= 0) {
      depth = 0;
      ui.drop.classList.remove("over");
    }
  });
  ui.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    depth = 0;
    ui.drop.classList.remove("over");
    pick(event.dataTransfer && event.dataTransfer.files);
  });

  ui.apikey.value = apiKey();
  ui.keyform.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      const key = ui.apikey.value.trim();
      if (key) localStorage.setItem(KEY_STORE, key);
      else localStorage.removeItem(KEY_STORE);
      say(key ? "API key saved in this browser." : "API key forgotten.");
    } catch (err) {
      say(`The key could not be stored: ${err.message}`, "error");
    }
    ui.apikey.closest("details").open = false;
    refreshRecent();
  });
  ui.keyclear.addEventListener("click", () => {
    ui.apikey.value = "";
    ui.keyform.requestSubmit();
  });
  ui.refresh.addEventListener("click", () => refreshRecent());
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => plotted && drawPlot(plotted.frames, plotted.scored, plotted.thresholds), 150);
  });

  function route() {
    const match = /^#\/analyses\/([A-Za-z0-9_-]+)$/.exec(location.hash);
    if (match && match[1] !== currentId) open(match[1]);
  }
  window.addEventListener("popstate", route);
  window.addEventListener("hashchange", route);

  refreshRecent();
  route();
})();
