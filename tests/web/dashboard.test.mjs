// Browser test of understudy's dashboard, driven by tests/integration/test_dashboard.py.
//
//   node tests/web/dashboard.test.mjs --url http://LEADER_API/ --screenshot PATH
//        [--killed-url http://ACTIVE_API/] [--follower-url http://FOLLOWER_API/] [--service web]
//        [--xss TEXT] --token TOKEN
//
// Every page first asks for the API token (a dialog); the script types TOKEN into it, and checks
// that no request carries the token in its URL.
//
// Debian's chromium (headless) opens the page once and never reloads it. Line protocol: this
// script prints facts on stdout, pytest answers on stdin:
//   ESCAPED                  (--xss) an event cause shows TEXT literally and no markup ran
//   ACTIVE n1                the page shows the service active on n1
//   <- KILLED                pytest killed n1's agent
//   ACTIVE n2 MS             the page showed a new active MS ms after KILLED (at most 5 s)
//   UNREACHABLE MS           (--killed-url) the page of the killed agent, open since the start,
//                            shows "agent unreachable" MS ms after KILLED (at most 5 s);
//                            screenshot PATH-unreachable.png
//   NODE n1 STATE            the killed node is shown suspect or dead
//   EVENT n2 FROM -> active  the event list got the promotion, without a reload
//   SHOT PATH                screenshot at 1366x768 (full page)
//   FOLLOWER n2              (--follower-url) a follower's page shows the same active
//   CANCELLED                the confirmation dialog's Cancel sends nothing
//   SWITCHED n3              Confirm posted the switchover (by=web, to=n3) and the page shows n3
//   SHOT PATH-1920.png       screenshot at 1920x1080
//   OK
// On any failure: "FAIL: why" on stdout, a screenshot PATH-fail.png, exit status 1.
import { chromium } from 'playwright-core';
import readline from 'node:readline';

function args() {
  const a = { service: 'web' };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i += 2) {
    const k = v[i].replace(/^--/, '');
    if (v[i + 1] === undefined) throw new Error(`option ${v[i]} needs a value`);
    a[k.replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = v[i + 1];
  }
  if (!a.url || !a.screenshot || !a.token) throw new Error('usage: dashboard.test.mjs --url URL --screenshot PATH --token TOKEN [--follower-url URL] [--service NAME] [--xss TEXT]');
  return a;
}

const say = (line) => process.stdout.write(line + '\n');
const t0 = Date.now();
const log = (msg) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(2)}s] ${msg}\n`);

// stdin lines, awaited one at a time with a deadline.
const lines = [];
const waiters = [];
let stdinClosed = false;
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  const w = waiters.shift();
  if (w) w(l.trim());
  else lines.push(l.trim());
}).on('close', () => {
  stdinClosed = true;
  for (const w of waiters.splice(0)) w(null);
});
function readLine(timeoutMs) {
  if (lines.length) return Promise.resolve(lines.shift());
  if (stdinClosed) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no line on stdin within ${timeoutMs} ms`)), timeoutMs);
    waiters.push((l) => { clearTimeout(t); resolve(l); });
  });
}

const activeSel = (svc) => `[data-service="${svc}"] [data-testid="active"]`;

async function shownActive(page, svc) {
  const t = await page.locator(activeSel(svc)).first().textContent({ timeout: 1000 }).catch(() => null);
  return t && t !== 'none' ? t.trim() : null;
}

async function waitFor(what, timeoutMs, fn) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Problems the page itself reports: uncaught exceptions, console errors (other than failed
// requests, which the page shows as "unreachable" or as a message), requests to other hosts.
function watch(page, origin, problems, posts) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push(`console error: ${m.text()}`);
  });
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (TOKEN && r.url().includes(TOKEN)) problems.push(`the token is in a URL: ${u.pathname}`);
    if (u.origin !== origin) problems.push(`request to another origin: ${r.url()}`);
    if (r.method() === 'POST') posts.push(u.pathname + u.search);
  });
}

let TOKEN = '';

// The page asks for the API token before anything else; type it in like a person would.
async function login(p) {
  const dlg = p.locator('#login');
  await dlg.waitFor({ state: 'visible', timeout: 5000 });
  await p.locator('#token-input').fill(TOKEN);
  await p.locator('#token-ok').click();
  await dlg.waitFor({ state: 'hidden', timeout: 2000 });
  const kept = await p.evaluate(() => sessionStorage.getItem('understudy.token'));
  if (kept !== TOKEN) throw new Error('the token was not kept in sessionStorage');
}

async function main() {
  const a = args();
  TOKEN = a.token;
  const svc = a.service;
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
  let page;
  try {
    const ctx = await browser.newContext({ viewport: { width: 1366, height: 768 } });
    page = await ctx.newPage();
    const problems = [], posts = [];
    const origin = new URL(a.url).origin;
    watch(page, origin, problems, posts);
    let navigations = 0;
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations++; });

    await page.goto(a.url, { waitUntil: 'load' });
    await login(page);
    const first = await waitFor(`${svc} to be shown active`, 15000, () => shownActive(page, svc));
    const cluster = (await page.locator('#cluster-name').textContent()).trim();
    log(`page shows cluster ${cluster}, ${svc} active on ${first}`);

    if (a.xss) {
      // The API's text (here: a services file name in an event's cause) must be shown, not run.
      await waitFor('the event with the markup in its cause', 5000, () =>
        page.evaluate((x) => [...document.querySelectorAll('.ev-cause')].some((e) => e.textContent.includes(x)), a.xss));
      const ran = await page.evaluate(() => ({ flag: window.__xss, elements: document.querySelectorAll('img, .ev-cause *').length }));
      if (ran.flag !== undefined || ran.imgs) throw new Error(`API text was parsed as markup: ${JSON.stringify(ran)}`);
      say('ESCAPED');
    }

    let kp = null;
    if (a.killedUrl) {
      kp = await ctx.newPage();
      watch(kp, new URL(a.killedUrl).origin, problems, []);
      await kp.goto(a.killedUrl, { waitUntil: 'load' });
      await login(kp);
      await waitFor(`the killed node's page to show ${svc} active on ${first}`, 10000, async () => (await shownActive(kp, svc)) === first);
    }
    await page.evaluate(() => { window.__sameDocument = true; });
    say(`ACTIVE ${first}`);
    const line = await readLine(120000);
    if (line !== 'KILLED') throw new Error(`expected KILLED on stdin, got ${JSON.stringify(line)}`);
    const killedAt = Date.now();
    const next = await waitFor(`the page to show ${svc} active on another node than ${first}`, 5000, async () => {
      const n = await shownActive(page, svc);
      return n && n !== first ? n : null;
    });
    say(`ACTIVE ${next} ${Date.now() - killedAt}`);
    if (kp) {
      await waitFor('the killed agent\'s page to show "agent unreachable"', 5000, () =>
        kp.evaluate(() => !document.getElementById('unreachable').hidden && document.body.classList.contains('stale') &&
          /unreachable/.test(document.getElementById('updated').textContent)));
      say(`UNREACHABLE ${Date.now() - killedAt}`);
      await kp.waitForTimeout(600);
      await kp.screenshot({ path: a.screenshot.replace(/(\.png)?$/, '-unreachable.png') });
      await kp.close();
    }
    const st = await waitFor(`node ${first} to be shown down`, 5000, async () => {
      const s = await page.locator(`.node[data-node="${first}"]`).getAttribute('data-state', { timeout: 1000 }).catch(() => null);
      return s && s !== 'alive' ? s : null;
    });
    say(`NODE ${first} ${st}`);
    const ev = await waitFor(`an event row for the promotion of ${next}`, 5000, () =>
      page.evaluate(([s, n]) => {
        for (const li of document.querySelectorAll('#events li.ev[data-kind="role"]')) {
          const who = li.querySelector('.who'), tr = li.querySelector('.trans');
          if (who && tr && who.textContent === `${s} · ${n}` && /→\s*active$/.test(tr.textContent)) return tr.textContent;
        }
        return null;
      }, [svc, next]));
    say(`EVENT ${next} ${ev.replace('→', '->')}`);
    const same = await page.evaluate(() => window.__sameDocument === true);
    if (!same || navigations !== 1) throw new Error(`the page was reloaded (navigations: ${navigations})`);
    const stale = await page.evaluate(() => document.body.classList.contains('stale'));
    if (stale) throw new Error('the page shows "agent unreachable" although its agent runs');

    await page.screenshot({ path: a.screenshot, fullPage: true });
    say(`SHOT ${a.screenshot}`);

    if (a.followerUrl) {
      // A follower's page shows the same cluster. (A change asked there is forwarded to the
      // leader by the agent: tests/integration/test_forwarding.py.)
      const fp = await ctx.newPage();
      const fposts = [];
      watch(fp, new URL(a.followerUrl).origin, problems, fposts);
      await fp.goto(a.followerUrl, { waitUntil: 'load' });
      await login(fp);
      await waitFor(`the follower's page to show ${svc} active on ${next}`, 10000, async () => (await shownActive(fp, svc)) === next);
      say(`FOLLOWER ${next}`);
      await fp.close();
    }

    // Switch over to the standby, with the node chosen in the selector.
    const card = page.locator(`[data-service="${svc}"]`);
    const target = await waitFor(`a standby of ${svc}`, 15000, () =>
      page.evaluate((s) => {
        const row = document.querySelector(`[data-service="${s}"] tr[data-role="standby"]`);
        return row ? row.getAttribute('data-node') : null;
      }, svc));
    await waitFor(`${target} to be selectable`, 5000, () =>
      page.evaluate(([s, t]) => {
        const o = document.querySelector(`[data-service="${s}"] select option[value="${t}"]`);
        return o && !o.disabled;
      }, [svc, target]));
    await card.locator('[data-testid="switch-target"]').selectOption(target);
    const button = card.locator('[data-testid="switchover"]');
    await waitFor('the switchover button to be enabled', 5000, () => button.isEnabled());

    await button.click();
    const dialog = page.locator('#confirm');
    await dialog.waitFor({ state: 'visible', timeout: 2000 });
    const asked = (await dialog.textContent()).replace(/\s+/g, ' ');
    for (const w of [svc, next, target])
      if (!asked.includes(w)) throw new Error(`the confirmation does not name ${w}: ${asked}`);
    await page.locator('#confirm-cancel').click();
    await dialog.waitFor({ state: 'hidden', timeout: 2000 });
    await page.waitForTimeout(1000);
    if (posts.length) throw new Error(`Cancel posted ${posts.join(', ')}`);
    if ((await shownActive(page, svc)) !== next) throw new Error('Cancel changed the active');
    say('CANCELLED');

    await button.click();
    await dialog.waitFor({ state: 'visible', timeout: 2000 });
    const clicked = Date.now();
    await page.locator('#confirm-ok').click();
    await dialog.waitFor({ state: 'hidden', timeout: 2000 });
    const now = await waitFor(`${svc} to be shown active on ${target}`, 15000, async () => {
      const n = await shownActive(page, svc);
      if (n === target) return n;
      const m = await card.locator('[data-testid="message"][data-kind="error"]').textContent({ timeout: 100 }).catch(() => null);
      if (m) throw new Error(`the switchover failed: ${m}`);
      return null;
    });
    const want = `/v1/services/${svc}/switchover?by=web&to=${target}`;
    if (posts.length !== 1 || posts[0] !== want) throw new Error(`expected one POST ${want}, saw ${JSON.stringify(posts)}`);
    await waitFor('the success message', 5000, () =>
      card.locator('[data-testid="message"][data-kind="ok"]').isVisible());
    say(`SWITCHED ${now} ${Date.now() - clicked}`);

    await page.setViewportSize({ width: 1920, height: 1080 });
    await page.waitForTimeout(700);
    const wide = a.screenshot.replace(/(\.png)?$/, '-1920.png');
    await page.screenshot({ path: wide });
    say(`SHOT ${wide}`);

    if (problems.length) throw new Error(problems.join('; '));
    say('OK');
  } catch (e) {
    if (page) await page.screenshot({ path: a_fail(), fullPage: true }).catch(() => {});
    throw e;
  } finally {
    await browser.close();
  }
}

function a_fail() {
  const i = process.argv.indexOf('--screenshot');
  return (process.argv[i + 1] || 'dashboard.png').replace(/(\.png)?$/, '-fail.png');
}

main().then(() => process.exit(0), (e) => {
  say(`FAIL: ${e && e.message ? e.message : e}`);
  process.exit(1);
});
