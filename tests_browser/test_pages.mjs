// Offline reading, tested as a reader would: serve the built book on 127.0.0.1, open every page in headless
// Chromium (Debian's /usr/bin/chromium driven by playwright-core, which downloads no browser), and fail on
//   - a request that leaves localhost (it is recorded, then aborted: the reader has no network),
//   - a request that fails (network error, or HTTP status >= 400),
//   - a page that references a CDN or loads a script, stylesheet, font or image from another host,
//   - a figure (<img>) that does not load (naturalWidth 0),
//   - mathematics left unrendered (an element of class "math" with no MathJax output, or a MathJax error),
//   - an uncaught JavaScript error.
// On the scoreboard (book/intro.html) and every chapter page (book/NN_*.html), read at 1280 and 800 pixels wide,
// it also fails on
//   - a table wider than its column: the table's scrolling container (the theme's
//     div.pst-scrollable-table-container, a notebook output's div.output, else the article) has
//     scrollWidth > clientWidth + 1, or the table reaches past the article's content box,
//   - a code cell (div.cell_input, or any <pre> of a cell) wider than itself (scrollWidth > clientWidth + 1),
//   - a status badge (span.badge-status) whose text/background contrast is below 4.5 (WCAG AA; computed from
//     getComputedStyle), in the theme's light and dark modes (pydata-sphinx-theme: localStorage "mode"/"theme",
//     read into <html data-theme> as the page loads),
// and each chapter page must offer its executed notebook (.ipynb) and its MyST source (.md) for download from the
// book itself.
// A screenshot of each page goes to _build/screenshots/ (paths printed for the CI log). Finally a probe page
// loads the MathJax that _config.yml names, renders inline and display maths, and is held to the same rules,
// so the local MathJax is checked even while no chapter has mathematics; and the search page must find "Hessian".
//
//   node tests_browser/test_pages.mjs [--html _build/html] [--screenshots _build/screenshots] [--showcase DIR]
//   --showcase DIR: also full-page screenshots at 1280 px of the scoreboard and two chapters (SHOWCASE) into DIR
//                   (`make screenshots`: results/screenshots)
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
const SHOWCASE_DIR = arg('--showcase', null);
const SHOWCASE = { 'book/intro.html': 'scoreboard.png', 'book/02_sam_vs_psam.html': '02_sam_vs_psam.png',
  'book/13_nso_flatness.html': '13_nso_flatness.png' };
const READING_PAGE = /^book\/(intro|\d\d_[^/]+)\.html$/;  // the scoreboard and the chapters
const CHAPTER_PAGE = /^book\/\d\d_[^/]+\.html$/;
const WIDTHS = [1280, 800];
const MIN_CONTRAST = 4.5;
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

// --- reading at the book's width --------------------------------------------------------------------------
async function checkLayout(page) {
  // tables and code cells that do not fit their column, each named so a reader can find it
  return page.evaluate(() => {
    const out = [];
    const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
    const a = article.getBoundingClientRect();
    const contentRight = a.right - parseFloat(getComputedStyle(article).paddingRight || '0');
    const shown = (el) => el.getClientRects().length > 0 && el.offsetWidth > 0;
    const name = (el) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${[...el.classList].map((c) => `.${c}`).join('')}`;
    const section = (el) => { const s = el.closest('section[id]'); return s ? ` in section #${s.id}` : ''; };
    const scroller = (el) => {
      for (let e = el.parentElement; e && e !== article.parentElement; e = e.parentElement) {
        if (getComputedStyle(e).overflowX !== 'visible') return e;
      }
      return article;
    };
    [...document.querySelectorAll('table')].filter(shown).forEach((t, i) => {
      const heads = [...t.querySelectorAll('th')].slice(0, 3).map((h) => h.textContent.trim().slice(0, 24)).join(' | ');
      const what = `table ${i + 1} (${name(t)}${heads ? `, headers "${heads}"` : ''})${section(t)}`;
      const box = scroller(t);
      if (box.scrollWidth > box.clientWidth + 1) {
        out.push(`${what} overflows its column: ${box.scrollWidth} px wide in ${box.clientWidth} px (${name(box)})`);
      } else if (t.getBoundingClientRect().right > contentRight + 1) {
        out.push(`${what} reaches ${Math.round(t.getBoundingClientRect().right - contentRight)} px past the article`);
      }
    });
    const code = [...document.querySelectorAll('div.cell_input, div.cell pre')].filter(shown);
    code.forEach((el) => {
      if (el.scrollWidth > el.clientWidth + 1) {
        const cell = el.closest('div.cell');
        const n = cell ? [...document.querySelectorAll('div.cell')].indexOf(cell) + 1 : 0;
        const first = el.textContent.trim().split('\n')[0].slice(0, 50);
        out.push(`code cell ${n} (${name(el)}, "${first}")${section(el)} overflows: ${el.scrollWidth} px wide in ${el.clientWidth} px`);
      }
    });
    return out;
  });
}

async function checkBadges(page) {
  // WCAG contrast of every status badge: its text colour against the background it is drawn on
  return page.evaluate((min) => {
    const rgba = (c) => {
      let m = c.match(/^rgba?\(([^)]+)\)/);
      if (m) {
        const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(parseFloat);
        return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
      }
      m = c.match(/^color\(srgb\s+([^)]+)\)/);
      if (m) {
        const p = m[1].split(/[\s\/]+/).filter(Boolean).map(parseFloat);
        return [p[0] * 255, p[1] * 255, p[2] * 255, p.length > 3 ? p[3] : 1];
      }
      return null;
    };
    const over = (top, bottom) => [0, 1, 2].map((k) => top[k] * top[3] + bottom[k] * (1 - top[3])).concat(1);
    const background = (el) => {
      const layers = [];
      for (let e = el; e; e = e.parentElement) {
        const c = rgba(getComputedStyle(e).backgroundColor);
        if (c && c[3] > 0) layers.push(c);
        if (c && c[3] >= 1) break;
      }
      let bg = [255, 255, 255, 1];  // the canvas, when no element paints an opaque background
      for (const layer of layers.reverse()) bg = over(layer, bg);
      return bg;
    };
    const luminance = (c) => {
      const [r, g, b] = c.slice(0, 3).map((v) => {
        const s = v / 255;
        return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const out = [];
    const badges = [...document.querySelectorAll('span.badge-status')];
    badges.forEach((el, i) => {
      const bg = background(el);
      let fg = rgba(getComputedStyle(el).color) || [0, 0, 0, 1];
      let opacity = 1;
      for (let e = el; e; e = e.parentElement) opacity *= parseFloat(getComputedStyle(e).opacity || '1');
      fg = over([fg[0], fg[1], fg[2], fg[3] * opacity], bg);
      const [hi, lo] = [luminance(fg), luminance(bg)].sort((x, y) => y - x);
      const ratio = (hi + 0.05) / (lo + 0.05);
      if (!(ratio >= min)) {
        const row = el.closest('tr');
        const claim = row && row.querySelector('td') ? row.querySelector('td').textContent.trim() : '';
        out.push(`badge ${i + 1} "${el.textContent.trim()}"${claim ? ` (claim ${claim})` : ''}: contrast ${ratio.toFixed(2)} < ${min} `
          + `(text ${getComputedStyle(el).color} on rgb(${bg.slice(0, 3).map(Math.round).join(', ')}))`);
      }
    });
    const body = rgba(getComputedStyle(document.body).backgroundColor) || [255, 255, 255, 1];
    return { count: badges.length, problems: out, page: luminance(body), theme: document.documentElement.dataset.theme };
  }, MIN_CONTRAST);
}

async function checkDownload(page) {
  // the executed notebook, offered by the theme's download button and served by the book itself
  const href = await page.evaluate(() => {
    const a = [...document.querySelectorAll('a[href]')].find((l) => /_sources\/.*\.ipynb$/.test(l.getAttribute('href')));
    return a ? new URL(a.getAttribute('href'), document.baseURI).href : null;
  });
  if (!href) return ['no download of the executed notebook (.ipynb) on the page'];
  const got = await page.evaluate(async (u) => {
    try {
      const r = await fetch(u);
      if (!r.ok) return { status: r.status };
      const nb = await r.json();
      const code = (nb.cells || []).filter((c) => c.cell_type === 'code');
      return { status: r.status, code: code.length, outputs: code.filter((c) => (c.outputs || []).length).length };
    } catch (e) { return { error: String(e) }; }
  }, href);
  if (got.error || got.status !== 200) return [`notebook download ${href} failed: ${got.error || `HTTP ${got.status}`}`];
  if (!got.outputs) return [`notebook download ${href} is not executed (${got.code} code cells, none with outputs)`];
  // and the chapter's MyST Markdown source (experiments/build_book.py adds it to the same menu)
  const md = await page.evaluate(async () => {
    const a = [...document.querySelectorAll('a[href]')].find((l) => /_sources\/.*\.md$/.test(l.getAttribute('href')));
    if (!a) return null;
    const u = new URL(a.getAttribute('href'), document.baseURI).href;
    try {
      const r = await fetch(u);
      return { u, status: r.status, myst: r.ok && (await r.text()).startsWith('---\njupytext:') };
    } catch (e) { return { u, error: String(e) }; }
  });
  if (!md) return ['no download of the MyST source (.md) on the page'];
  if (md.error || md.status !== 200) return [`MyST source download ${md.u} failed: ${md.error || `HTTP ${md.status}`}`];
  return md.myst ? [] : [`MyST source download ${md.u} is not a jupytext MyST notebook`];
}

async function checkReading(page, rel) {
  // at each width, then the badges again in dark mode; the page is left as it was found (1280 px, light)
  const out = [];
  let badges = 0;
  for (const width of WIDTHS) {
    await page.setViewportSize({ width, height: 900 });
    await page.evaluate(() => new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok))));
    out.push(...(await checkLayout(page)).map((f) => `${width} px: ${f}`));
    const b = await checkBadges(page);
    badges = b.count;
    out.push(...b.problems.map((f) => `${width} px, light mode: ${f}`));
  }
  await page.setViewportSize({ width: WIDTHS[0], height: 900 });
  await page.evaluate(() => { localStorage.setItem('mode', 'dark'); localStorage.setItem('theme', 'dark'); });
  try {
    await page.reload({ waitUntil: 'load', timeout: 60000 });
    const dark = await checkBadges(page);
    if (dark.theme !== 'dark' || dark.page > 0.2) {
      out.push(`dark mode did not apply (html data-theme=${dark.theme}, page background luminance ${dark.page.toFixed(2)})`);
    }
    out.push(...dark.problems.map((f) => `${WIDTHS[0]} px, dark mode: ${f}`));
    out.push(...(await checkLayout(page)).map((f) => `${WIDTHS[0]} px, dark mode: ${f}`));
  } finally {
    await page.evaluate(() => { localStorage.removeItem('mode'); localStorage.removeItem('theme'); });
  }
  if (CHAPTER_PAGE.test(rel)) out.push(...(await checkDownload(page)));
  return { problems: out, badges };
}

// --- driver --------------------------------------------------------------------------------------------------
async function main() {
  if (!fs.existsSync(path.join(HTML, 'index.html'))) throw new Error(`no book at ${HTML} (build it first)`);
  const pages = htmlPages(HTML);
  fs.rmSync(SHOTS, { recursive: true, force: true });
  fs.mkdirSync(SHOTS, { recursive: true });
  if (SHOWCASE_DIR) fs.mkdirSync(SHOWCASE_DIR, { recursive: true });
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
  let read = 0;
  const showcased = [];
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
      if (SHOWCASE_DIR && SHOWCASE[name]) {
        const keep = path.join(SHOWCASE_DIR, SHOWCASE[name]);
        await page.screenshot({ path: keep, fullPage: true });
        showcased.push(path.relative(process.cwd(), keep));
      }
      let reading = '';
      if (READING_PAGE.test(name)) {
        const r = await checkReading(page, name);
        current.push(...r.problems);
        read += 1;
        reading = `; read at ${WIDTHS.join(' and ')} px, light and dark, ${r.badges} badge(s)`;
      }
      console.log(`${current.length ? 'FAIL' : 'ok  '} ${name}  (screenshot ${path.relative(process.cwd(), shot)}${reading})`);
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
  if (SHOWCASE_DIR) {
    const missing = Object.keys(SHOWCASE).filter((p) => !pages.includes(p));
    if (missing.length) failures['(showcase)'] = missing.map((p) => `showcase page not in the book: ${p}`);
  }
  const bad = Object.entries(failures).filter(([, f]) => f.length);
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(`\n${pages.length} pages + MathJax probe + search, ${requests} requests, ${maths} math elements, ${secs} s; `
    + `${read} pages read at ${WIDTHS.join(' and ')} px (tables, code cells, badge contrast ≥ ${MIN_CONTRAST} light and dark); `
    + `screenshots in ${path.relative(process.cwd(), SHOTS) || '.'}/`);
  if (SHOWCASE_DIR) console.log(`showcase screenshots (1280 px): ${showcased.join(', ') || 'none'}`);
  if (bad.length) {
    console.log(`FAILED: ${bad.length} page(s)`);
    for (const [name, f] of bad) console.log(`  ${name}: ${f.length} problem(s), first: ${f[0]}`);
    process.exit(1);
  }
  console.log('all pages work offline');
}

main().catch((err) => { console.error(err); process.exit(2); });
