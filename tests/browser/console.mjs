// Drives the shardcast web console in headless Chromium: opens it, waits for a published stream
// to be listed, presses its Play button, waits until the in-page HTTP-FLV player (mpegts.js in
// a <video>) has played more than 1.5 s, and saves a screenshot.
//
//   node console.mjs CONSOLE_URL OUT_PNG [APP/STREAM]
//
// Prints one JSON line with what it saw; exits 0 only when the video really played.
// Every wait is bounded; the whole run gives up after 60 s.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, outPng, streamName = "live/s"] = process.argv.slice(2);
if (!url || !outPng) {
  console.error("usage: node console.mjs CONSOLE_URL OUT_PNG [APP/STREAM]");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const WANT_SECS = 1.5;
const started = Date.now();
const report = { ok: false, url, stream: streamName, steps: [], console: [] };
const step = (s) => report.steps.push(`${((Date.now() - started) / 1000).toFixed(1)}s ${s}`);
const finish = (code) => {
  report.elapsed_ms = Date.now() - started;
  console.log(JSON.stringify(report));
  process.exit(code);
};

// A hard bound on the whole run, whatever hangs.
setTimeout(() => {
  report.error = "gave up after 60 s";
  finish(3);
}, 60_000).unref();

async function poll(what, timeoutMs, fn) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last && last.done) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(last)})`);
}

const profile = mkdtempSync(join(tmpdir(), "shardcast-chromium-"));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    timeout: 30_000,
    viewport: { width: 1280, height: 800 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
  step("browser up");
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => {
    if (report.console.length < 40) report.console.push(`${m.type()}: ${m.text()}`.slice(0, 300));
  });
  page.on("pageerror", (e) => report.console.push(`pageerror: ${e.message}`.slice(0, 300)));
  page.setDefaultTimeout(15_000);

  await page.goto(url, { waitUntil: "load", timeout: 15_000 });
  step("console loaded");
  report.mpegts = await page.evaluate(() => !!(window.mpegts && window.mpegts.isSupported()));

  const playButton = `button.play[data-name="${streamName}"]`;
  const button = `#streams ${playButton}`;
  await page.waitForSelector(button, { timeout: 15_000 });
  report.stream_row = (await page.locator(`#streams tr:has(${playButton})`).first().innerText())
    .replace(/\s+/g, " ")
    .trim();
  step("stream listed");
  await page.click(button);
  step("play clicked");

  const seen = await poll("video past 1.5 s", 20_000, () =>
    page.evaluate((want) => {
      const v = document.getElementById("video");
      return {
        done: v.currentTime > want && v.videoWidth > 0,
        currentTime: v.currentTime,
        videoWidth: v.videoWidth,
        videoHeight: v.videoHeight,
        readyState: v.readyState,
        paused: v.paused,
        error: v.error ? v.error.message || String(v.error.code) : null,
        info: document.getElementById("player-info").textContent,
      };
    }, WANT_SECS),
  );
  delete seen.done;
  Object.assign(report, seen);
  step("video playing");
  report.cards = (await page.locator("#cards").innerText()).replace(/\s+/g, " ").trim();
  // Let the page refresh its tables once more so the shot shows this player as a client.
  await page.waitForTimeout(2200);
  await page.screenshot({ path: outPng, fullPage: true });
  step("screenshot saved");
  report.ok = true;
} catch (e) {
  report.error = String(e && e.message ? e.message : e).split("\n")[0];
  try {
    const page = context && context.pages()[0];
    if (page) await page.screenshot({ path: outPng, fullPage: true, timeout: 5_000 });
  } catch {}
} finally {
  try {
    if (context) await context.close();
  } catch {}
  try {
    rmSync(profile, { recursive: true, force: true });
  } catch {}
}
finish(report.ok ? 0 : 1);
