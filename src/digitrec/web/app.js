// The draw-a-digit page: a pad that keeps its strokes (so Undo can redraw without the last one),
// a debounced call to /api/predict while drawing, and photo upload with a box around each digit.
// A section's aria-busy is true while its reading is on the way, for screen readers and tests alike.
"use strict";

const DEBOUNCE_MS = 120;
const INK = "#000000";
const PAPER = "#ffffff";

const pad = document.getElementById("pad");
const context = pad.getContext("2d");
const widthInput = document.getElementById("width");
const widthValue = document.getElementById("width-value");
const readingSection = document.getElementById("reading");
const digitText = document.getElementById("digit");
const confidenceText = document.getElementById("confidence");
const bars = document.getElementById("bars");
const seen = document.getElementById("seen");
const statusText = document.getElementById("status");

let strokes = [];     // each {width, points: [[x, y], ...]} in canvas pixels
let drawing = null;   // the stroke under the pointer
let timer = null;
let latestDrawing = 0;  // the newest request's number: an older answer arriving late is dropped
let latestPhoto = 0;

for (let digit = 0; digit < 10; digit++) {
  const row = document.createElement("li");
  row.dataset.digit = String(digit);
  row.innerHTML = `<span class="label">${digit}</span><span class="track"><span class="fill"></span></span>` +
                  `<span class="value"></span>`;
  bars.append(row);
}

function paintStroke(stroke) {
  context.strokeStyle = INK;
  context.fillStyle = INK;
  context.lineWidth = stroke.width;
  context.lineCap = "round";
  context.lineJoin = "round";
  const [first, ...rest] = stroke.points;
  context.beginPath();
  if (rest.length === 0) {  // a tap leaves a dot
    context.arc(first[0], first[1], stroke.width / 2, 0, 2 * Math.PI);
    context.fill();
    return;
  }
  context.moveTo(first[0], first[1]);
  for (const [x, y] of rest) context.lineTo(x, y);
  context.stroke();
}

function repaint() {
  context.fillStyle = PAPER;
  context.fillRect(0, 0, pad.width, pad.height);
  strokes.forEach(paintStroke);
}

function padPoint(event) {
  // The canvas has 280x280 pixels but may be shown smaller (a phone): scale CSS pixels to canvas pixels.
  const rect = pad.getBoundingClientRect();
  return [(event.clientX - rect.left) * pad.width / rect.width, (event.clientY - rect.top) * pad.height / rect.height];
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  pad.setPointerCapture(event.pointerId);
  drawing = { width: Number(widthInput.value), points: [padPoint(event)] };
  strokes.push(drawing);
  paintStroke(drawing);
  event.preventDefault();
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const coalesced = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const each of coalesced.length ? coalesced : [event]) drawing.points.push(padPoint(each));
  repaint();
  schedulePrediction();
});

function endStroke() {
  if (!drawing) return;
  drawing = null;
  predictDrawing();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

function schedulePrediction() {
  readingSection.setAttribute("aria-busy", "true");
  clearTimeout(timer);
  timer = setTimeout(predictDrawing, DEBOUNCE_MS);
}

function undo() {
  strokes.pop();
  repaint();
  predictDrawing();
}

function clearPad() {
  strokes = [];
  repaint();
  predictDrawing();
}

document.getElementById("undo").addEventListener("click", undo);
document.getElementById("clear").addEventListener("click", clearPad);
widthInput.addEventListener("input", () => { widthValue.textContent = widthInput.value; });

document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  } else if (event.key === "Escape") {
    clearPad();
  }
});

function showStatus(message) {
  statusText.textContent = message || "";
}

async function callApi(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (error) {
    throw new Error("the server cannot be reached; is `digitrec serve` still running?");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `the server answered ${response.status}`);
  return body;
}

function showBar(row, probability, top) {
  const percent = `${(100 * probability).toFixed(1)}%`;
  row.classList.toggle("top", top);
  row.dataset.probability = probability.toFixed(6);
  row.querySelector(".fill").style.width = percent;
  row.querySelector(".value").textContent = probability ? percent : "";
}

// A drawing of several digits side by side shows them all; the bars and the 28x28 view are those of
// its least sure digit, the one worth a second look.
function showReading(reading) {
  const items = reading ? reading.items : [];
  const item = items.reduce((least, next) => (!least || next.probability < least.probability ? next : least), null);
  digitText.textContent = reading ? reading.digits : "?";
  const which = items.length > 1 ? `${items.length} digits; the least sure, ${item.digit}, is ` : "";
  confidenceText.textContent = !item ? "Draw a digit, or a number, on the pad."
    : `${which}${(100 * item.probability).toFixed(1)}% sure`
      + (reading.uncertain ? ": not sure, try drawing it larger and clearer" : "");
  [...bars.children].forEach((row, digit) => showBar(row, item ? item.probabilities[digit] : 0, item?.digit === digit));
  seen.hidden = !item;
  if (item) seen.src = `data:image/png;base64,${item.input_png}`;
}

async function predictDrawing() {
  clearTimeout(timer);
  const number = ++latestDrawing;
  if (strokes.length === 0) {
    showReading(null);
    showStatus("");
    readingSection.setAttribute("aria-busy", "false");
    return;
  }
  readingSection.setAttribute("aria-busy", "true");
  const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
  let reading = null;
  let problem = "";
  try {
    reading = await callApi("/api/predict?inputs=true",
                            { method: "POST", headers: { "Content-Type": "image/png" }, body: blob });
  } catch (error) {
    problem = error.message;
  }
  if (number !== latestDrawing) return;
  showStatus(problem);
  if (reading) showReading(reading);
  readingSection.setAttribute("aria-busy", "false");
}

// Photos: lines of digits, each line on a line of its own, each digit with its box drawn over the picture.
const photoSection = document.getElementById("photo-reading");
const drop = document.getElementById("drop");
const fileInput = document.getElementById("file");
const photo = document.getElementById("photo");
const photoImage = document.getElementById("photo-image");
const boxes = document.getElementById("boxes");
const photoDigits = document.getElementById("photo-digits");

function showBoxes(items) {
  // Boxes are in the picture's pixels; percentages keep them in place however large the picture is shown.
  const width = photoImage.naturalWidth || 1;
  const height = photoImage.naturalHeight || 1;
  boxes.replaceChildren(...items.map((item) => {
    const [x0, y0, x1, y1] = item.box;
    const box = document.createElement("div");
    box.className = "box";
    box.style.left = `${100 * x0 / width}%`;
    box.style.top = `${100 * y0 / height}%`;
    box.style.width = `${100 * (x1 - x0) / width}%`;
    box.style.height = `${100 * (y1 - y0) / height}%`;
    box.title = `${item.digit}: ${(100 * item.probability).toFixed(1)}% sure`;
    const label = document.createElement("span");
    label.textContent = String(item.digit);
    box.append(label);
    return box;
  }));
}

async function readPhoto(file) {
  if (!file) return;
  const number = ++latestPhoto;
  photoSection.setAttribute("aria-busy", "true");
  photoDigits.textContent = "reading\u2026";
  boxes.replaceChildren();
  if (photoImage.src) URL.revokeObjectURL(photoImage.src);
  photoImage.src = URL.createObjectURL(file);
  photo.hidden = false;
  const form = new FormData();
  form.append("file", file);
  let reading = null;
  let problem = "";
  try {
    reading = await callApi("/api/predict", { method: "POST", body: form });
  } catch (error) {
    problem = error.message;
  }
  const showable = await photoImage.decode().then(() => true, () => false);  // TIFF: read, but not shown
  if (number !== latestPhoto) return;
  showStatus(problem);
  photo.hidden = !showable;
  photoDigits.textContent = reading ? reading.digits : "";
  if (reading) showBoxes(reading.items);
  photoSection.setAttribute("aria-busy", "false");
}

fileInput.addEventListener("change", () => readPhoto(fileInput.files[0]));
drop.addEventListener("dragenter", () => drop.classList.add("over"));
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
// A picture dropped anywhere on the page is read, rather than opened by the browser in place of the page.
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  readPhoto(event.dataTransfer.files[0]);
});

repaint();
showReading(null);
