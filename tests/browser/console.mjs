// The console in a real browser: Debian's Chromium, driven by playwright-core, against a running
// `otelwatch demo` (its simulator injecting latency into service-b and service-a in turn).
//
//   node tests/browser/console.mjs <console URL> <screenshot directory>
//
// Checks what a user looks for: the service map with both services and their call; an incident
// whose likely cause is service-b; the incident page's ranking; the anomalous window marked on
// service-b's chart, with its explanation on keyboard focus, and listed with example traces; a
// live update arriving without a reload. Saves a screenshot of each page. Exits non-zero, saying what was missing, otherwise.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [url, shots] = process.argv.slice(2);
if (!url || !shots) {
  console.error("usage: node console.mjs <console URL> <screenshot directory>");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
const failures = [];
const step = async (what, f) => {
  const t0 = Date.now();
  try {
    await f();
    console.log(`ok   ${what} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failures.push(what);
    console.log(`FAIL ${what}: ${e.message.split("\n")[0]}`);
  }
};

try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, colorScheme: "light" });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  let loads = 0;
  page.on("load", () => { loads += 1; });

  await page.goto(url);
  // The whole page down to the end of its content.
  const shot = async (name) => {
    const height = await page.evaluate(() => Math.ceil(document.querySelector("main").getBoundingClientRect().bottom + window.scrollY + 8));
    const width = page.viewportSize().width;
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true, clip: { x: 0, y: 0, width, height } });
  };

  await step("the service map shows service-a, service-b and the call between them", async () => {
    await page.locator('a.node[data-service="service-a"]').waitFor({ timeout: 60_000 });
    await page.locator('a.node[data-service="service-b"]').waitFor({ timeout: 5_000 });
    await page.locator('line[data-edge="service-a -> service-b"]').waitFor({ state: "attached", timeout: 5_000 });
  });

  await step("a live update arrives without a reload", async () => {
    const before = await page.locator("#view").getAttribute("data-rendered");
    const newest = await page.locator(".counter b").nth(5).textContent();
    await page.waitForFunction(
      ([r, n]) => document.querySelector("#view").dataset.rendered !== r &&
        document.querySelectorAll(".counter b")[5].textContent !== n,
      [before, newest],
      { timeout: 20_000 },
    );
    await page.locator("#live").filter({ hasText: "live" }).waitFor({ timeout: 5_000 });
    const spansIn = Number(await page.locator("#spans-in").textContent());
    if (!(spansIn > 0)) throw new Error(`spans/s in: ${spansIn}`);
    if (loads !== 1) throw new Error(`the page was loaded ${loads} times`);
  });

  let incident;
  await step("an injected anomaly appears as an incident with service-b first", async () => {
    const row = page.locator("tr[data-incident]").filter({ has: page.locator("td:nth-child(3)", { hasText: /^service-b$/ }) }).first();
    await row.waitFor({ timeout: 90_000 });
    incident = await row.getAttribute("data-incident");
    await shot("overview");
  });

  await step("the incident page ranks service-b first, with its reason", async () => {
    if (!incident) throw new Error("no incident to open");
    await page.locator(`tr[data-incident="${incident}"] a`).click();
    await page.waitForURL(/#\/incident\//);
    const first = page.locator("#ranking tbody tr").first();
    await first.waitFor({ timeout: 10_000 });
    const cells = await first.locator("td").allTextContents();
    if (cells[1] !== "service-b") throw new Error(`ranked first: ${cells[1]}`);
    if (!/latency/.test(cells[3])) throw new Error(`the reason names no latency: ${cells[3]}`);
    const traces = await page.locator("#examples .trace").count();
    if (traces < 1) throw new Error("no example trace listed");
    await page.locator("#involved svg").first().waitFor({ timeout: 10_000 });
    await shot("incident");
  });

  await step("service-b's chart marks the anomalous window, explained on keyboard focus", async () => {
    await page.goto(`${url}?live=off#/service/service-b`);
    const mark = page.locator("circle.anomaly").first();
    await mark.waitFor({ state: "attached", timeout: 10_000 });
    await mark.focus();
    const tip = page.locator("#tip");
    await tip.waitFor({ timeout: 5_000 });
    const text = await tip.textContent();
    for (const want of ["anomalous", "score", "threshold", "typical"]) {
      if (!text.includes(want)) throw new Error(`the explanation lacks "${want}": ${text}`);
    }
    const listed = page.locator("table.anomalies tr[data-window]").first();
    await listed.waitFor({ timeout: 5_000 });
    if (!(await listed.locator(".trace").count())) throw new Error("the anomalous window lists no trace");
    await shot("service-b");
  });

  await step("'not an anomaly' on service-b's window is taken and shown", async () => {
    const row = page.locator("table.anomalies tr[data-window]").filter({ has: page.locator('button[data-action="dismiss"]') }).first();
    const start = await row.getAttribute("data-window");
    await row.locator('button[data-action="dismiss"]').click();
    const done = page.locator(`table.anomalies tr[data-window="${start}"]`);
    await done.filter({ hasText: "not an anomaly" }).locator("span").waitFor({ timeout: 10_000 });
    await page.locator(`circle.anomaly.dismissed[data-start="${start}"]`).first().waitFor({ state: "attached", timeout: 5_000 });
    const said = await (await page.request.get(new URL("/api/feedback", url).href)).json();
    if (!said.not_anomaly.some((d) => d.service === "service-b" && d.window === start)) {
      throw new Error(`the API does not list it: ${JSON.stringify(said)}`);
    }
    await shot("service-b-feedback");
  });

  await step("an expected range is added from the overview and removed again", async () => {
    await page.goto(`${url}?live=off`);
    const form = page.locator("#expect-form");
    await form.waitFor({ timeout: 10_000 });
    // Local times, as the inputs take them: the next hour.
    const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
    const now = new Date();
    await form.locator('input[name="from"]').fill(local(now));
    await form.locator('input[name="to"]').fill(local(new Date(now.getTime() + 3600e3)));
    await form.locator('select[name="service"]').selectOption("service-b");
    await form.locator('input[name="note"]').fill("planned load test");
    await form.locator('button[type="submit"]').click();
    const row = page.locator("tr[data-expected]").filter({ hasText: "planned load test" });
    await row.waitFor({ timeout: 10_000 });
    await shot("overview-expected");
    await row.locator('button[data-action="withdraw"]').click();
    await row.waitFor({ state: "detached", timeout: 10_000 });
    // A range that ends before it starts: the API's reason, shown by the form.
    await form.locator('input[name="from"]').fill(local(new Date(now.getTime() + 3600e3)));
    await form.locator('input[name="to"]').fill(local(now));
    await form.locator('button[type="submit"]').click();
    await form.locator(".error").filter({ hasText: "end after" }).waitFor({ timeout: 5_000 });
    // The browser reports that refusal as an error of its own: the one expected here.
    const refused = errors.findIndex((e) => e.includes("400 (Bad Request)"));
    if (refused >= 0) errors.splice(refused, 1);
  });

  await step("the call's page charts service-a → service-b", async () => {
    await page.goto(`${url}?live=off#/edge/service-a/service-b`);
    await page.locator(".chart svg polyline").first().waitFor({ state: "attached", timeout: 10_000 });
    await shot("edge");
  });

  await step("the dark theme is readable too", async () => {
    await page.goto(`${url}?live=off`);
    await page.locator("a.node").first().waitFor({ state: "attached", timeout: 10_000 });
    await page.locator("#theme").click();
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    if (bg === "rgb(255, 255, 255)") throw new Error(`the background stayed ${bg}`);
    await shot("overview-dark");
  });

  if (errors.length) {
    failures.push("no script errors");
    console.log(`FAIL the page logged errors: ${errors.join("; ")}`);
  }
} finally {
  await browser.close();
}
if (failures.length) {
  console.log(`${failures.length} check(s) failed`);
  process.exit(1);
}
