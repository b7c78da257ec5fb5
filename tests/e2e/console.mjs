// End-to-end test of the iochub console in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser is downloaded). Run by tests/it/console_e2e.rs
// against a hub serving the shipped config and samples:
//
//   IOCHUB_BASE_URL=http://127.0.0.1:PORT IOCHUB_ADMIN_TOKEN=... IOCHUB_AGENCY_TOKEN=... \
//   IOCHUB_SCREENSHOTS=target/console-screenshots node tests/e2e/console.mjs
//
// Scenario: sign in as the admin, see the overview with the sample data, approve a share
// request an agency filed, run a query and download it as CSV, open the April 2025 report,
// check accessibility basics on every page, sign out. A screenshot of each page (1920x1080)
// is saved. Any failed check exits non-zero with a message saying what was wrong.

import { chromium } from "playwright-core";
import { mkdirSync, readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const base = need("IOCHUB_BASE_URL");
const adminToken = need("IOCHUB_ADMIN_TOKEN");
const agencyToken = need("IOCHUB_AGENCY_TOKEN");
const shots = process.env.IOCHUB_SCREENSHOTS || "target/console-screenshots";
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(shots, { recursive: true });

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`set ${name}`);
    process.exit(2);
  }
  return v;
}

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

async function api(method, path, token, body) {
  const response = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null };
}

/** Accessibility basics, checked in the page itself. */
async function accessibility(page, name) {
  const problems = await page.evaluate(() => {
    const out = [];
    if (document.documentElement.lang !== "vi") out.push(`lang is ${document.documentElement.lang}`);
    // Every visible form control has a label.
    for (const el of document.querySelectorAll("input, select, textarea")) {
      if (el.type === "hidden") continue;
      const labelled =
        (el.id && document.querySelector(`label[for="${CSS.escape(el.id)}"]`)) ||
        el.closest("label") || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
      if (!labelled) out.push(`unlabelled ${el.tagName.toLowerCase()} name=${el.name}`);
    }
    // One h1, and no skipped heading level.
    const headings = [...document.querySelectorAll("h1, h2, h3, h4, h5, h6")];
    const h1s = headings.filter((h) => h.tagName === "H1").length;
    if (h1s !== 1) out.push(`${h1s} h1 elements`);
    let previous = 0;
    for (const h of headings) {
      const level = Number(h.tagName[1]);
      if (level > previous + 1) out.push(`heading level skipped before "${h.textContent.trim()}" (h${previous} -> h${level})`);
      previous = level;
    }
    for (const img of document.querySelectorAll("img")) {
      if (!img.hasAttribute("alt")) out.push(`img without alt: ${img.src}`);
    }
    for (const svg of document.querySelectorAll("main svg:not([aria-hidden='true'])")) {
      if (svg.getAttribute("role") !== "img" || !svg.querySelector("title")) out.push("svg without role=img and title");
    }
    // The first thing a keyboard reaches is the skip link.
    const first = document.querySelector("a[href], button, input:not([type=hidden]), select, textarea");
    if (!first || !first.classList.contains("skip")) out.push("the skip link is not the first focusable element");
    // Text contrast (WCAG AA, 4.5:1) of every element holding text directly.
    const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c;
      }
      return [255, 255, 255];
    };
    const seen = new Set();
    for (const el of document.body.querySelectorAll("*")) {
      if (el.closest("svg") || el.closest("[hidden]")) continue;
      const text = [...el.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent.trim()).join("");
      if (!text) continue;
      const style = getComputedStyle(el);
      if (style.visibility === "hidden" || style.display === "none") continue;
      const rect = el.getBoundingClientRect();
      if (rect.width === 0 || rect.top < -50) continue; // the skip link waits off screen
      const fg = rgb(style.color), bg = background(el);
      const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
      const ratio = (a + 0.05) / (b + 0.05);
      if (ratio < 4.5) {
        const key = `${el.tagName}:${style.color}:${bg}`;
        if (!seen.has(key)) { seen.add(key); out.push(`contrast ${ratio.toFixed(2)} for "${text.slice(0, 40)}" (${style.color} on rgb(${bg}))`); }
      }
    }
    return out;
  });
  check(problems.length === 0, `${name}: accessibility problems:\n  ${problems.join("\n  ")}`);
}

async function shoot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`) });
  await page.screenshot({ path: join(shots, `${name}-full.png`), fullPage: true });
}

async function heading(page, text) {
  const h1 = (await page.locator("h1").first().textContent()).trim();
  check(h1 === text, `expected the page heading "${text}", got "${h1}" at ${page.url()}`);
}

const userData = mkdtempSync(join(tmpdir(), "iochub-e2e-chromium-"));
let browser;
try {
  // 1. An agency files a special share request through the API.
  const requestName = `e2e_${Date.now()}`;
  const end = new Date(Date.now() + 30 * 86400e3).toISOString().slice(0, 10);
  const filed = await api("POST", "/api/v1/share-requests", agencyToken, {
    name: requestName,
    purpose: "Kiểm thử giao diện: theo dõi phản ánh về môi trường",
    legal_basis: "Quyết định giao nhiệm vụ (kiểm thử)",
    dataset: "citizen_reports",
    columns: ["service_request_id", "service_code", "description"],
    end_date: end,
  });
  check(filed.status === 201, `filing a share request: ${filed.status} ${JSON.stringify(filed.json)}`);
  const requestId = filed.json.request.id;

  // A fresh profile each run (Playwright passes it as --user-data-dir).
  const context = await chromium.launchPersistentContext(userData, {
    executablePath,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport: { width: 1920, height: 1080 },
    acceptDownloads: true,
    locale: "vi-VN",
  });
  browser = context;
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console error: ${m.text()}`); });

  // 2. Not signed in: the console sends us to the sign-in page. A wrong token is refused.
  await page.goto(base + "/");
  check(page.url().endsWith("/dang-nhap"), `expected the sign-in page, at ${page.url()}`);
  await heading(page, "Đăng nhập bảng điều khiển IOC");
  await accessibility(page, "sign-in");
  await shoot(page, "00-dang-nhap");
  await page.getByLabel("Mã truy cập").fill("not-a-token");
  await page.getByRole("button", { name: "Đăng nhập" }).click();
  await page.getByText("Mã truy cập không đúng").waitFor();
  // That answer was a 401, which Chromium logs as a failed resource: expected here.
  errors.length = 0;

  // 3. Sign in as the admin: a session cookie, HttpOnly, Secure, SameSite=Strict.
  await page.getByLabel("Mã truy cập").fill(adminToken);
  await page.getByRole("button", { name: "Đăng nhập" }).click();
  await page.waitForURL(base + "/");
  const cookie = (await context.cookies()).find((c) => c.name === "iochub_session");
  check(cookie, "no session cookie after sign-in");
  check(cookie.httpOnly && cookie.secure && cookie.sameSite === "Strict" && cookie.path === "/",
    `session cookie flags: ${JSON.stringify(cookie)}`);
  check(cookie.value !== adminToken && !cookie.value.includes(adminToken), "the token is in the cookie");
  check(!(await page.evaluate(() => document.cookie)).includes("iochub_session"), "the session cookie is readable by scripts");

  // 4. The overview shows the sample data: every pipeline, its counts.
  await heading(page, "Tổng quan");
  const overview = await page.locator("main").innerText();
  for (const name of ["citizen_reports", "dossier_stats", "health_facilities", "health_aggregates", "schools", "cameras", "camera_events"]) {
    check(overview.includes(name), `overview lacks pipeline ${name}`);
  }
  const row = page.locator("tr", { has: page.locator("code", { hasText: /^dossier_stats$/ }) });
  const cells = (await row.locator("td").allInnerTexts()).map((t) => t.trim());
  check(cells[3] === "33" && cells[4] === "7", `dossier_stats: expected 33 stored and 7 quarantined in the last run, got ${JSON.stringify(cells)}`);
  check(overview.includes("Luồng dữ liệu gửi đi"), "overview lacks the feed section");
  await accessibility(page, "overview");
  await shoot(page, "01-tong-quan");
  // A laptop screen: the page fits its width (wide tables scroll inside their box).
  await page.setViewportSize({ width: 1366, height: 768 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `the overview is ${overflow}px wider than a 1366px laptop screen`);
  await shoot(page, "01-tong-quan-laptop");
  await page.setViewportSize({ width: 1920, height: 1080 });

  // 5. Sharing: approve the agency's request.
  await page.getByRole("link", { name: "Chia sẻ" }).click();
  await heading(page, "Chia sẻ dữ liệu");
  await accessibility(page, "sharing");
  await shoot(page, "05-chia-se");
  const article = page.locator("article.request", { hasText: requestName });
  await article.getByRole("button", { name: "Duyệt" }).click();
  await page.getByText("Đã duyệt yêu cầu chia sẻ.").waitFor();
  const mine = await api("GET", "/api/v1/share-requests", agencyToken);
  const decided = mine.json.requests.find((r) => r.id === requestId);
  check(decided && decided.status === "approved", `request after approval: ${JSON.stringify(decided)}`);
  check(await page.locator("table", { hasText: `share.${requestName}` }).count() === 1, "the approved share is not listed as active");

  // 6. SQL: run a query, then download the same answer as CSV.
  await page.getByRole("link", { name: "SQL" }).click();
  await heading(page, "Truy vấn SQL");
  const sql = "SELECT service_request_id, service_code, sla_status FROM citizen_reports ORDER BY service_request_id LIMIT 7";
  await page.getByLabel("Câu lệnh SQL (chỉ đọc dữ liệu)").fill(sql);
  await page.getByRole("button", { name: "Chạy truy vấn" }).click();
  await page.getByRole("heading", { name: "Kết quả" }).waitFor();
  const table = page.locator("main table");
  const shown = await table.locator("tbody tr").evaluateAll((rows) =>
    rows.map((r) => [...r.querySelectorAll("td")].map((td) => td.textContent)));
  check(shown.length === 7, `expected 7 rows, got ${shown.length}`);
  await accessibility(page, "sql");
  await shoot(page, "04-sql");
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("button", { name: "Tải kết quả CSV" }).click(),
  ]);
  const csvPath = join(shots, "ket-qua-truy-van.csv");
  await download.saveAs(csvPath);
  const lines = readFileSync(csvPath, "utf8").replace(/^\uFEFF/, "").trim().split(/\r?\n/);
  check(lines[0] === "service_request_id,service_code,sla_status", `CSV header: ${lines[0]}`);
  check(lines.length === 8, `CSV has ${lines.length} lines`);
  for (let i = 0; i < shown.length; i++) {
    check(lines[i + 1] === shown[i].join(","), `CSV line ${i + 1} "${lines[i + 1]}" differs from the table row "${shown[i].join(",")}"`);
  }

  // 7. The April 2025 report, opened from the reports page; and its XLSX.
  await page.getByRole("link", { name: "Báo cáo" }).click();
  await heading(page, "Báo cáo định kỳ");
  await accessibility(page, "reports");
  await shoot(page, "06-bao-cao");
  await page.locator("#ky-ioc_operation").fill("2025-04");
  await page.locator("#dd-ioc_operation").selectOption("html");
  await page.locator("section.report", { hasText: "Kỳ báo cáo" }).getByRole("button", { name: "Mở báo cáo" }).click();
  await page.waitForURL(/\/bao-cao\/ioc_operation\/2025-04$/);
  const report = await page.locator("body").innerText();
  check(/tháng 4\/2025|Tháng 4 năm 2025|04\/2025/i.test(report), `the report does not name April 2025: ${report.slice(0, 300)}`);
  await shoot(page, "07-bao-cao-2025-04");
  // The period is now stored: its XLSX downloads from the reports page.
  await page.goto(base + "/bao-cao");
  const [sheet] = await Promise.all([
    page.waitForEvent("download"),
    page.locator('a[href="/bao-cao/ioc_operation/2025-04?dinh_dang=xlsx"]').click(),
  ]);
  check(sheet.suggestedFilename() === "ioc_operation_2025-04.xlsx", `XLSX file name ${sheet.suggestedFilename()}`);
  const xlsxPath = join(shots, "ioc_operation_2025-04.xlsx");
  await sheet.saveAs(xlsxPath);
  const bytes = readFileSync(xlsxPath);
  check(bytes[0] === 0x50 && bytes[1] === 0x4b, "the XLSX is not a zip file");

  // 8. The other pages: citizen reports (chart and map), the catalog, a dataset.
  await page.goto(base + "/phan-anh");
  await heading(page, "Phản ánh hiện trường");
  check(await page.locator("svg.map path").count() >= 11, "the map does not draw the 11 pre-2025 units");
  check(await page.locator("svg.chart rect").count() >= 1, "no on-time chart");
  await accessibility(page, "citizen reports");
  await shoot(page, "02-phan-anh");
  await page.goto(base + "/du-lieu");
  await heading(page, "Danh mục dữ liệu");
  await accessibility(page, "catalog");
  await shoot(page, "03-du-lieu");
  await page.goto(base + "/du-lieu/dossier_stats");
  await heading(page, "Thống kê hồ sơ thủ tục hành chính");
  check(await page.locator("article.quarantined").count() === 7, "dossier_stats should list 7 quarantined records");
  await accessibility(page, "dataset");
  await shoot(page, "03-du-lieu-dossier_stats");

  // 9. The keyboard reaches the skip link first, and it moves focus to the content.
  await page.keyboard.press("Tab");
  check(await page.evaluate(() => document.activeElement.classList.contains("skip")), "Tab does not reach the skip link first");
  await page.keyboard.press("Enter");
  check(await page.evaluate(() => document.activeElement.id === "noi-dung"), "the skip link does not move focus to the content");

  // 10. Sign out: the session ends, the console asks to sign in again.
  await page.getByRole("button", { name: "Đăng xuất" }).click();
  await page.waitForURL(base + "/dang-nhap");
  check(!(await context.cookies()).some((c) => c.name === "iochub_session"), "the session cookie is still there after sign-out");
  await page.goto(base + "/sql");
  check(page.url().endsWith("/dang-nhap"), "a page still opens after sign-out");

  check(errors.length === 0, `the pages logged errors:\n  ${errors.join("\n  ")}`);
  console.log("console e2e: all checks passed");
} catch (e) {
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  rmSync(userData, { recursive: true, force: true });
}
