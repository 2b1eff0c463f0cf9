// The dashboard in a real headless Chromium, as a user meets it. Run by tests/it/browser.rs,
// which starts the simulator and the real retouchd binary, leaves one failed job behind, and
// passes what this script needs as JSON in argv[2]:
//   { url, password, inbox, sample, failed_name, screenshots, chromium }
// It logs in, watches a file dropped into the inbox appear and reach "done" without reloading,
// clicks Retry on the failed job and sees it delivered, opens the job page's before/after
// preview, and saves screenshots. It fails on any request to another origin, any console
// error and any page error. Prints one JSON line of what it saw.
import { chromium } from "playwright-core";
import fs from "node:fs";
import path from "node:path";

const args = JSON.parse(process.argv[2]);
const origin = new URL(args.url).origin;
const problems = [];
const otherOrigins = [];

const browser = await chromium.launch({
  executablePath: args.chromium,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const failures = [];
try {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.on("request", (r) => {
    const u = r.url();
    if (!u.startsWith(origin + "/") && !u.startsWith("data:")) otherOrigins.push(u);
  });
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.setDefaultTimeout(30000);

  // 1. Log in.
  await page.goto(args.url + "/queue?state=all");
  if (!page.url().includes("/login")) throw new Error("no login page: " + page.url());
  await page.screenshot({ path: path.join(args.screenshots, "login.png") });
  await page.fill("input[name=password]", "not the password");
  await page.click("button[type=submit]");
  await page.waitForSelector("text=Wrong password");
  await page.fill("input[name=password]", args.password);
  await page.click("button[type=submit]");
  await page.waitForURL("**/queue?state=all");
  await page.waitForSelector("#live.on");

  // 2. A file dropped into the inbox appears and reaches done, with no reload.
  await page.evaluate(() => { window.__sameDocument = true; });
  fs.copyFileSync(args.sample, path.join(args.inbox, "live-drop.jpg"));
  await page.waitForSelector("tr:has-text('live-drop.jpg')");
  await page.waitForSelector("tr:has-text('live-drop.jpg') .badge.s-done", { timeout: 60000 });
  if (!(await page.evaluate(() => window.__sameDocument === true))) failures.push("the page reloaded to show the file");
  await page.screenshot({ path: path.join(args.screenshots, "queue.png"), fullPage: true });

  // 3. Retry the failed job with one click; it is delivered, again without a reload.
  const failedRow = page.locator(`tr:has-text('${args.failed_name}')`);
  await failedRow.locator(".badge.s-failed").waitFor();
  await failedRow.locator("button:has-text('Retry')").click();
  await page.waitForSelector("#toast.show:has-text('back in the inbox')");
  await page.waitForSelector(`tr:has-text('${args.failed_name}') .badge.s-done`, { timeout: 60000 });
  if (!(await page.evaluate(() => window.__sameDocument === true))) failures.push("the page reloaded after Retry");

  // 4. The overview, and the job page with its before/after preview.
  await page.goto(args.url + "/");
  await page.waitForSelector("#daemon-state");
  const state = await page.textContent("#daemon-state");
  const done = await page.textContent("#count-done");
  await page.screenshot({ path: path.join(args.screenshots, "overview.png"), fullPage: true });
  await page.goto(args.url + "/queue?state=done&q=live-drop");
  await page.click("td.file a:has-text('live-drop.jpg')");
  await page.waitForSelector("figure img[alt=After]");
  await page.waitForFunction(() => [...document.images].every((i) => i.complete), null, { timeout: 30000 });
  const loaded = await page.$$eval("figure img", (imgs) => imgs.map((i) => i.complete && i.naturalWidth > 0));
  if (loaded.length !== 2 || !loaded.every(Boolean)) failures.push(`before/after thumbnails not shown: ${loaded}`);
  await page.screenshot({ path: path.join(args.screenshots, "job.png"), fullPage: true });

  // 5. On a phone's screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(args.url + "/");
  await page.waitForSelector("#daemon-state");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  if (overflow) failures.push("the overview is wider than a phone's screen");
  await page.screenshot({ path: path.join(args.screenshots, "phone.png"), fullPage: true });

  if (otherOrigins.length) failures.push(`requests to other origins: ${otherOrigins.join(", ")}`);
  if (problems.length) failures.push(...problems);
  console.log(JSON.stringify({ state, done, failures }));
} catch (e) {
  failures.push(String(e && e.stack || e));
  console.log(JSON.stringify({ failures }));
} finally {
  await browser.close();
}
process.exit(failures.length ? 1 : 0);
