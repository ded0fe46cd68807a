// Offline reading, tested as a reader would: serve the built book on 127.0.0.1, open every page in headless
// Chromium (Debian's /usr/bin/chromium driven by playwright-core, which downloads no browser), and fail on
//   - a request that leaves localhost (it is recorded, then aborted: the reader has no network),
//   - a request that fails (network error, or HTTP status >= 400),
//   - a page that references a CDN or loads a script, stylesheet, font or image from another host,
//   - a figure (<img>) that does not load (naturalWidth 0),
//   - mathematics left unrendered (an element of class "math" with no MathJax output, or a MathJax error),
//   - an uncaught JavaScript error.
// A screenshot of each page goes to _build/screenshots/ (paths printed for the CI log). Finally a probe page
// loads the MathJax that _config.yml names, renders inline and display maths, and is held to the same rules,
// so the local MathJax is checked even while no chapter has mathematics; and the search page must find "Hessian".
//
//   node tests_browser/test_pages.mjs [--html _build/html] [--screenshots _build/screenshots]
//   env: CHROMIUM (default /usr/bin/chromium)
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? path.resolve(process.argv[i + 1]) : fallback;
};
const HTML = arg('--html', path.join(REPO, '_build', 'html'));
const SHOTS = arg('--screenshots', path.join(REPO, '_build', 'screenshots'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CDN = /(cdn\.jsdelivr\.net|unpkg\.com|cdnjs\.cloudflare\.com|fonts\.googleapis\.com|fonts\.gstatic\.com|polyfill\.io|googletagmanager\.com|google-analytics\.com|plausible\.io|hypothes\.is|utteranc\.es|code\.jquery\.com|mathjax\.org)/i;
const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

// --- pages ------------------------------------------------------------------------------------------------
function htmlPages(dir, rel = '') {
  const out = [];
  for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = path.posix.join(rel, entry.name);
    if (entry.isDirectory()) {
      if (rel === '' && entry.name === '_static') continue;  // theme and MathJax assets, not pages
      out.push(...htmlPages(dir, r));
    } else if (entry.name.endsWith('.html')) {
      out.push(r);
    }
  }
  return out.sort();
}

function mathjaxPath() {
  // the script Sphinx puts on pages with mathematics: _static/ + mathjax_path (when not a URL)
  const m = fs.readFileSync(path.join(REPO, '_config.yml'), 'utf8').match(/^\s*mathjax_path:\s*["']?([^\s"'#]+)/m);
  if (!m) throw new Error('_config.yml sets no sphinx.config.mathjax_path: MathJax would come from a CDN');
  return /^[a-z]+:\/\//i.test(m[1]) ? m[1] : `_static/${m[1]}`;
}

// --- a static server on 127.0.0.1 ---------------------------------------------------------------------------
const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon', '.woff': 'font/woff', '.woff2': 'font/woff2', '.ttf': 'font/ttf', '.otf': 'font/otf',
  '.eot': 'application/vnd.ms-fontobject', '.json': 'application/json', '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json', '.ipynb': 'application/json', '.md': 'text/plain; charset=utf-8',
};

function serve(root) {
  const server = http.createServer((req, res) => {
    let rel;
    try { rel = decodeURIComponent(new URL(req.url, 'http://x').pathname); } catch { rel = '/'; }
    let file = path.join(root, path.normalize(rel));
    if (!file.startsWith(root)) { res.writeHead(403).end(); return; }
    if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
    fs.readFile(file, (err, data) => {
      if (err) { res.writeHead(404, { 'content-type': 'text/plain' }).end('not found'); return; }
      res.writeHead(200, { 'content-type': TYPES[path.extname(file).toLowerCase()] || 'application/octet-stream' });
      res.end(data);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// --- checks in the page --------------------------------------------------------------------------------------
async function checkImages(page) {
  return page.evaluate(async () => {
    const imgs = [...document.images];
    await Promise.all(imgs.map((img) => {
      img.loading = 'eager';
      if (img.complete) return null;
      return new Promise((ok) => {
        img.addEventListener('load', ok, { once: true });
        img.addEventListener('error', ok, { once: true });
        setTimeout(ok, 15000);
      });
    }));
    return imgs.filter((img) => !(img.complete && img.naturalWidth > 0))
      .map((img) => img.getAttribute('src') || img.currentSrc || '(no src)');
  });
}

async function checkMath(page) {
  return page.evaluate(async () => {
    const maths = [...document.querySelectorAll('.math')];
    if (!maths.length) return { count: 0, problems: [] };
    // MathJax 3 exposes startup.promise; wait for it (it rejects on a failed load), then for typesetting.
    const t0 = Date.now();
    while (!(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) && Date.now() - t0 < 15000) {
      await new Promise((ok) => setTimeout(ok, 100));
    }
    const problems = [];
    if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
      try { await window.MathJax.startup.promise; } catch (e) { problems.push(`MathJax failed: ${e}`); }
      if (window.MathJax.typesetPromise) {
        try { await window.MathJax.typesetPromise(); } catch (e) { problems.push(`MathJax typeset failed: ${e}`); }
      }
    } else if (!(window.MathJax && window.MathJax.Hub)) {
      problems.push('MathJax did not load');
    }
    for (const el of maths) {
      const rendered = el.querySelector('mjx-container, .MathJax, .MathJax_Display, .MathJax_SVG, .MathJax_CHTML');
      const text = el.textContent.trim().slice(0, 60);
      if (!rendered) problems.push(`not rendered: ${text}`);
      else if (el.querySelector('mjx-merror, .MathJax merror, [data-mjx-error]')) problems.push(`MathJax error in: ${text}`);
    }
    return { count: maths.length, problems };
  });
}

async function checkReferences(page) {
  // what the page would load, even lazily: nothing from another host, no CDN named anywhere in the page
  return page.evaluate((cdn) => {
    const out = [];
    const sel = 'script[src], link[href]:not([rel~="canonical"]):not([rel~="alternate"]):not([rel~="author"]):not([rel~="license"]):not([rel~="next"]):not([rel~="prev"]):not([rel~="index"]):not([rel~="search"]), img[src], iframe[src], source[src], video[src], audio[src], embed[src], object[data]';
    for (const el of document.querySelectorAll(sel)) {
      const raw = el.getAttribute('src') || el.getAttribute('href') || el.getAttribute('data');
      const url = new URL(raw, document.baseURI);
      if (!['http:', 'https:', 'data:', 'blob:'].includes(url.protocol) || (url.protocol.startsWith('http') && url.origin !== location.origin)) {
        out.push(`<${el.tagName.toLowerCase()}> ${raw}`);
      }
    }
    const m = document.documentElement.outerHTML.match(new RegExp(cdn, 'i'));
    if (m) out.push(`page names a CDN: ${m[0]}`);
    return out;
  }, CDN.source);
}

// --- driver --------------------------------------------------------------------------------------------------
async function main() {
  if (!fs.existsSync(path.join(HTML, 'index.html'))) throw new Error(`no book at ${HTML} (build it first)`);
  const pages = htmlPages(HTML);
  fs.rmSync(SHOTS, { recursive: true, force: true });
  fs.mkdirSync(SHOTS, { recursive: true });
  const server = await serve(HTML);
  const origin = `http://127.0.0.1:${server.address().port}`;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'hessreg-chromium-'));
  const t0 = Date.now();
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
      '--disable-component-update', '--disable-sync', '--disable-quic', '--disable-dev-shm-usage'],
  });
  let current = null;  // the page being checked: its list of failures
  const note = (msg) => { if (current) current.push(msg); else orphan.push(msg); };
  const orphan = [];
  const isLocal = (u) => {
    try {
      const url = new URL(u);
      return ['data:', 'blob:', 'about:'].includes(url.protocol) || LOCAL_HOSTS.has(url.hostname) || LOCAL_HOSTS.has(url.host);
    } catch { return false; }
  };
  const blocked = new Set();
  // every request goes through here: one that leaves localhost is recorded and aborted (no network)
  await context.route('**/*', (route) => {
    const u = route.request().url();
    if (isLocal(u)) return route.continue();
    blocked.add(u);
    note(`request leaves localhost: ${u}`);
    return route.abort('internetdisconnected');
  });
  context.on('requestfailed', (req) => {
    if (!blocked.has(req.url())) note(`request failed: ${req.url()} (${req.failure()?.errorText})`);
  });
  context.on('response', (res) => {
    if (res.status() >= 400) note(`HTTP ${res.status()}: ${res.url()}`);
  });
  let requests = 0;
  context.on('request', () => { requests += 1; });
  const page = context.pages()[0] || await context.newPage();
  page.on('pageerror', (err) => note(`JavaScript error: ${err.message}`));

  const failures = {};
  let maths = 0;
  const visit = async (name, url, extra) => {
    current = failures[name] = [];
    try {
      await page.goto(url, { waitUntil: 'load', timeout: 60000 });
      await page.waitForLoadState('networkidle', { timeout: 15000 }).catch(() => {});
      if (extra) current.push(...((await extra(page)) || []));
      for (const src of await checkImages(page)) current.push(`image did not load: ${src}`);
      const math = await checkMath(page);
      maths += math.count;
      current.push(...math.problems);
      current.push(...(await checkReferences(page)).map((r) => `external reference: ${r}`));
      await page.waitForLoadState('networkidle', { timeout: 15000 }).catch(() => {});
      const shot = path.join(SHOTS, `${name.replace(/\.html$/, '').replace(/[\/]/g, '__')}.png`);
      await page.screenshot({ path: shot, fullPage: true });
      console.log(`${current.length ? 'FAIL' : 'ok  '} ${name}  (screenshot ${path.relative(process.cwd(), shot)})`);
    } catch (err) {
      current.push(`could not check: ${err.message.split('\n')[0]}`);
      console.log(`FAIL ${name}`);
    }
    for (const f of current) console.log(`       ${f}`);
    current = null;
  };

  for (const rel of pages) await visit(rel, `${origin}/${rel}`);

  // MathJax probe: the configured MathJax, loaded from this server, renders inline and display maths.
  const mj = mathjaxPath();
  const host = pages.includes('genindex.html') ? 'genindex.html' : pages.find((p) => p !== 'index.html');  // index redirects
  await visit('mathjax-probe.html', `${origin}/${host}`, async (p) => {
    await p.evaluate((src) => {
      const box = document.createElement('div');
      box.id = 'mathjax-probe';
      box.innerHTML = '<p>Probe: <span class="math notranslate nohighlight">\\(\\lambda_{\\max}(\\nabla^2 L) \\le \\frac{2}{\\eta}\\)</span></p>'
        + '<div class="math notranslate nohighlight">\\[ H = \\underbrace{J^\\top \\nabla_z^2 \\ell\\, J}_{\\text{Gauss-Newton}} + \\sum_k \\partial_{z_k} \\ell \\, \\nabla^2 z_k \\]</div>';
      (document.querySelector('main') || document.body).prepend(box);
      const s = document.createElement('script');
      s.src = new URL(src, new URL('/', location.href)).href;
      s.async = true;
      document.head.appendChild(s);
    }, mj);
  });

  // Search, as a reader uses it: the offline index finds a word every chapter uses.
  if (pages.includes('search.html')) {
    await visit('search-query.html', `${origin}/search.html?q=Hessian`, async (p) => {
      const found = await p.waitForFunction(() => document.querySelectorAll('#search-results li').length, null,
        { timeout: 20000 }).then((h) => h.jsonValue()).catch(() => 0);
      return found ? [] : ['search for "Hessian" found nothing'];
    });
  }

  await context.close();
  server.close();
  fs.rmSync(profile, { recursive: true, force: true });
  if (orphan.length) failures['(between pages)'] = orphan;
  const bad = Object.entries(failures).filter(([, f]) => f.length);
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(`\n${pages.length} pages + MathJax probe + search, ${requests} requests, ${maths} math elements, ${secs} s; `
    + `screenshots in ${path.relative(process.cwd(), SHOTS) || '.'}/`);
  if (bad.length) {
    console.log(`FAILED: ${bad.length} page(s)`);
    for (const [name, f] of bad) console.log(`  ${name}: ${f.length} problem(s), first: ${f[0]}`);
    process.exit(1);
  }
  console.log('all pages work offline');
}

main().catch((err) => { console.error(err); process.exit(2); });
