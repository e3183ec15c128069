// What a person sees: the IOVA maps that @ioas/view renders (SVG and HTML, for each example
// platform) and the built docs site (docs/api), opened in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core; no browser download).
//
// Checks: no console or page errors, no request off the machine; every region labelled
// (.region-label, or .gap-label on a free gap), each label and the legend visible and inside the
// picture; the screenshot not blank. In the docs, every <img> loaded and at least one generated .svg
// picture shown. Screenshots go to screenshots/ for humans.
//
// The maps are opened as file:// pages (a person opens the HTML file the CLI wrote). The docs site
// is served from docs/api on 127.0.0.1, as a hosted site is seen: under file:// Chromium refuses
// TypeDoc's <use href="assets/icons.svg#..."> sprites (file: URLs are unique origins) and logs an
// error for each, which TypeDoc's icons.js then works around, so file:// would only test Chromium.
//
// Where Chromium cannot run the tests are skipped loudly, except under CI=true or
// IOAS_REQUIRE_BROWSER=1, where that is a failure. Run after `pnpm build && pnpm run docs`:
// `pnpm --filter @ioas/browser-check test:browser` (scripts/run-tests.mjs does, after the docs).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runScenario, validateScenario } from '@ioas/backend-sim';
import type { ContainerSnapshot } from '@ioas/core';
import { renderIovaMap } from '@ioas/view';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { blankReason } from './png.js';

const packageDir = fileURLToPath(new URL('..', import.meta.url));
const repoRoot = fileURLToPath(new URL('../../..', import.meta.url));
const examplesDir = join(repoRoot, 'packages', 'cli', 'examples');
/** The built docs site; IOAS_DOCS_DIR checks another build. */
const docsDir = process.env.IOAS_DOCS_DIR ?? join(repoRoot, 'docs', 'api');
const screenshotsDir = join(packageDir, 'screenshots');
const PLATFORMS = ['p4080', 'arm-smmuv3', 'x86-vtd'] as const;
/** Debian's chromium; IOAS_CHROMIUM points elsewhere (another distribution, a Mac). */
const CHROMIUM = process.env.IOAS_CHROMIUM ?? '/usr/bin/chromium';
const REQUIRED = process.env.CI === 'true' || process.env.IOAS_REQUIRE_BROWSER === '1';
/** A label shorter than this (CSS px) is not readable. */
const MIN_LABEL_HEIGHT = 6;

/** Starts Chromium, or says why it cannot. */
async function launch(): Promise<{ browser: Browser } | { reason: string }> {
  if (!existsSync(CHROMIUM)) return { reason: `no Chromium at ${CHROMIUM} (apt-get install chromium, or set IOAS_CHROMIUM)` };
  try {
    return { browser: await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'], timeout: 60_000 }) };
  } catch (error) {
    return { reason: `${CHROMIUM} does not start: ${String((error as Error).message).split('\n')[0]}` };
  }
}

const launched = await launch();
const cannotRun = 'reason' in launched ? launched.reason : undefined;
if (cannotRun !== undefined && !REQUIRED) {
  console.warn(
    `\n${'*'.repeat(100)}\n*** SKIPPING the browser checks (IOVA map pictures, docs site): ${cannotRun}.\n` +
      `*** Install Debian's chromium (apt-get install chromium) to run them; CI=true or IOAS_REQUIRE_BROWSER=1 makes this a failure.\n${'*'.repeat(100)}\n`,
  );
}

if (cannotRun !== undefined) {
  if (REQUIRED) {
    it(`Chromium runs here (required: ${process.env.CI === 'true' ? 'CI=true' : 'IOAS_REQUIRE_BROWSER=1'})`, () => {
      throw new Error(`the browser checks are required here but Chromium cannot run: ${cannotRun}`);
    });
  } else {
    it.skip(`SKIPPED, Chromium cannot run here: ${cannotRun}`, () => {});
  }
} else {
  browserChecks((launched as { browser: Browser }).browser);
}

/** One page opened in Chromium, with every error it logged. */
interface OpenPage {
  readonly page: Page;
  /** Console errors, uncaught exceptions, failed loads, requests off the machine. */
  readonly problems: string[];
}

/** What a map page shows, measured in the page. */
interface MapLayout {
  readonly regions: number;
  readonly untitledRegions: number;
  /** Regions with no label (`.region-label`, or `.gap-label` for a free gap), and with more than one. */
  readonly unlabelledRegions: number;
  readonly multiplyLabelledRegions: number;
  readonly labels: readonly LabelBox[];
  readonly gapLabels: readonly LabelBox[];
  readonly legend: { readonly width: number; readonly height: number; readonly shown: boolean } | null;
  readonly tableRows: number;
}

interface LabelBox {
  readonly text: string;
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  readonly visibility: string;
  readonly display: string;
  readonly shown: boolean;
  /** Where the scroll area ends (a box must end at or before it, and start at or after 0). */
  readonly areaWidth: number;
  readonly areaHeight: number;
  /** The box of the <svg> the label is drawn in (it clips what is outside). */
  readonly svg: { readonly x: number; readonly y: number; readonly width: number; readonly height: number } | null;
}

function browserChecks(browser: Browser): void {
  /** For file:// pages: offline, so nothing a page asks for can leave the machine. */
  let context: BrowserContext;
  /** For sites served on 127.0.0.1 (not offline: that would cut loopback too; open() refuses other hosts). */
  let siteContext: BrowserContext;
  let workDir: string;

  beforeAll(async () => {
    // offline: a page here must be self-contained; nothing it asks for may leave the machine.
    context = await browser.newContext({ viewport: { width: 1280, height: 800 }, offline: true });
    siteContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    workDir = mkdtempSync(join(tmpdir(), 'ioas-browser-'));
    rmSync(screenshotsDir, { recursive: true, force: true });
    mkdirSync(screenshotsDir, { recursive: true });
  });

  afterAll(async () => {
    await context?.close();
    await siteContext?.close();
    await browser.close();
    if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
  });

  /** Opens `url` in `context`; a request for a URL that `local` refuses is a problem (and is not made). */
  async function open(url: string, on: BrowserContext = context, local: (url: string) => boolean = (target) => /^(file|data|blob|about):/.test(target)): Promise<OpenPage> {
    const page = await on.newPage();
    const problems: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console error: ${message.text()} (${message.location().url}:${message.location().lineNumber})`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('requestfailed', (request) => problems.push(`failed to load ${request.url()}: ${request.failure()?.errorText ?? 'unknown error'}`));
    await page.route('**/*', async (route) => {
      if (local(route.request().url())) return route.continue();
      problems.push(`requested ${route.request().url()}: a page here must not load anything from the network`);
      return route.abort('blockedbyclient');
    });
    await page.goto(url, { waitUntil: 'load' });
    // Let late scripts and their console messages arrive.
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 50))));
    return { page, problems };
  }

  /** Measures the map's regions, labels, legend and table in the page. */
  function measureMap(page: Page): Promise<MapLayout> {
    return page.evaluate(() => {
      const scroller = document.scrollingElement ?? document.documentElement;
      const areaWidth = Math.max(scroller.scrollWidth, document.documentElement.scrollWidth, window.innerWidth);
      const areaHeight = Math.max(scroller.scrollHeight, document.documentElement.scrollHeight, window.innerHeight);
      const box = (element: Element) => {
        const rect = element.getBoundingClientRect();
        const style = getComputedStyle(element);
        const svg = element instanceof SVGElement ? (element.ownerSVGElement ?? null) : null;
        const svgRect = svg?.getBoundingClientRect();
        return {
          text: element.textContent?.trim() ?? '',
          x: rect.left + window.scrollX,
          y: rect.top + window.scrollY,
          width: rect.width,
          height: rect.height,
          visibility: style.visibility,
          display: style.display,
          shown: element.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true }),
          areaWidth,
          areaHeight,
          svg: svgRect === undefined ? null : { x: svgRect.left + window.scrollX, y: svgRect.top + window.scrollY, width: svgRect.width, height: svgRect.height },
        };
      };
      const regions = [...document.querySelectorAll('g.region')];
      const legend = document.querySelector('.legend');
      const legendRect = legend?.getBoundingClientRect();
      return {
        regions: regions.length,
        untitledRegions: regions.filter((region) => !region.querySelector(':scope > title')?.textContent?.trim()).length,
        unlabelledRegions: regions.filter((region) => region.querySelectorAll('.region-label, .gap-label').length === 0).length,
        multiplyLabelledRegions: regions.filter((region) => region.querySelectorAll('.region-label, .gap-label').length > 1).length,
        labels: [...document.querySelectorAll('.region-label')].map(box),
        gapLabels: [...document.querySelectorAll('.gap-label')].map(box),
        legend:
          legend === null || legendRect === undefined
            ? null
            : { width: legendRect.width, height: legendRect.height, shown: legend.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true }) },
        tableRows: document.querySelectorAll('table tr').length,
      };
    });
  }

  /** Everything wrong with one label as a person would see it. */
  function labelProblems(kind: string, label: LabelBox): string[] {
    const name = `${kind} "${label.text}"`;
    const problems: string[] = [];
    const slack = 0.5;
    if (label.text === '') problems.push(`${kind} with no text`);
    if (label.display === 'none' || !label.shown) problems.push(`${name} is not shown (display ${label.display}, visibility ${label.visibility}, or an ancestor hides it)`);
    if (label.visibility !== 'visible') problems.push(`${name} has visibility:${label.visibility}`);
    if (label.width <= 0 || label.height <= 0) problems.push(`${name} has an empty box (${label.width}x${label.height})`);
    else if (label.height < MIN_LABEL_HEIGHT) problems.push(`${name} is ${label.height.toFixed(1)}px tall, too small to read`);
    if (label.x < -slack || label.y < -slack || label.x + label.width > label.areaWidth + slack || label.y + label.height > label.areaHeight + slack) {
      problems.push(`${name} at (${label.x.toFixed(0)},${label.y.toFixed(0)}) ${label.width.toFixed(0)}x${label.height.toFixed(0)} is outside the page's scroll area ${label.areaWidth}x${label.areaHeight}`);
    }
    const svg = label.svg;
    if (svg !== null && (label.x < svg.x - slack || label.y < svg.y - slack || label.x + label.width > svg.x + svg.width + slack || label.y + label.height > svg.y + svg.height + slack)) {
      problems.push(`${name} at (${label.x.toFixed(0)},${label.y.toFixed(0)}) ${label.width.toFixed(0)}x${label.height.toFixed(0)} sticks out of its <svg> (${svg.x.toFixed(0)},${svg.y.toFixed(0)}) ${svg.width.toFixed(0)}x${svg.height.toFixed(0)}, which clips it`);
    }
    return problems;
  }

  /** Everything wrong with a rendered map page; saves its screenshot as `name`.png. */
  async function checkMap(url: string, name: string, options: { table: boolean }): Promise<string[]> {
    const { page, problems } = await open(url);
    try {
      const layout = await measureMap(page);
      if (layout.regions === 0) problems.push('no <g class="region"> in the picture');
      if (layout.untitledRegions > 0) problems.push(`${layout.untitledRegions} region(s) without a <title> (the tooltip)`);
      // Every region has its label: a .region-label, or a .gap-label for a free gap.
      if (layout.labels.length === 0 && layout.regions > 0) problems.push('no .region-label at all');
      if (layout.labels.length + layout.gapLabels.length !== layout.regions) {
        problems.push(`${layout.labels.length} .region-label and ${layout.gapLabels.length} .gap-label text(s) for ${layout.regions} region(s)`);
      }
      if (layout.unlabelledRegions > 0) problems.push(`${layout.unlabelledRegions} region(s) without a .region-label or .gap-label`);
      if (layout.multiplyLabelledRegions > 0) problems.push(`${layout.multiplyLabelledRegions} region(s) with more than one label`);
      for (const label of layout.labels) problems.push(...labelProblems('region label', label));
      for (const label of layout.gapLabels) problems.push(...labelProblems('gap label', label));
      if (layout.legend === null) problems.push('no .legend');
      else if (!layout.legend.shown || layout.legend.width <= 0 || layout.legend.height <= 0) problems.push(`the legend is not shown (${layout.legend.width}x${layout.legend.height})`);
      if (options.table && layout.tableRows < 2) problems.push(`the HTML page has ${layout.tableRows} table row(s): no table of regions`);
      // A full-page screenshot of an SVG document hangs in Playwright (no <body>): take the root's.
      const path = join(screenshotsDir, `${name}.png`);
      const svgDocument = await page.evaluate(() => document.body === null);
      const screenshot = svgDocument ? await page.locator(':root').screenshot({ path }) : await page.screenshot({ fullPage: true, path });
      const blank = blankReason(screenshot);
      if (blank !== undefined) problems.push(`screenshot ${name}.png: ${blank}`);
      return problems;
    } finally {
      await page.close();
    }
  }

  /**
   * Everything wrong with one page of a site served at `origin`: errors, images that did not load, a
   * blank page, a blank .svg picture. Also returns the .svg pictures it shows. Saves screenshots.
   */
  async function checkDocsPage(on: BrowserContext, origin: string, pagePath: string): Promise<{ problems: string[]; svgs: string[] }> {
    const { page, problems } = await open(`${origin}/${pagePath}`, on, (url) => url.startsWith(`${origin}/`) || /^(data|blob|about):/.test(url));
    try {
      // TypeDoc hides the body until its script has laid out the page.
      await page
        .waitForFunction(() => getComputedStyle(document.body).display !== 'none', undefined, { timeout: 10_000 })
        .catch(() => problems.push('the page body stayed hidden (display:none) for 10 s'));
      const images = await page.evaluate(() =>
        Promise.all(
          [...document.images].map(async (image) => {
            image.loading = 'eager';
            if (!image.complete) {
              await Promise.race([
                new Promise((resolve) => {
                  image.addEventListener('load', resolve, { once: true });
                  image.addEventListener('error', resolve, { once: true });
                }),
                new Promise((resolve) => setTimeout(resolve, 10_000)),
              ]);
            }
            return { src: image.getAttribute('src') ?? '', naturalWidth: image.naturalWidth };
          }),
        ),
      );
      for (const image of images) if (!(image.naturalWidth > 0)) problems.push(`<img src="${image.src}"> did not load (naturalWidth ${image.naturalWidth})`);
      const name = `docs-${pagePath.replace(/\//g, '-').replace(/\.html$/, '')}`;
      const blankPage = blankReason(await page.screenshot({ path: join(screenshotsDir, `${name}.png`) }));
      if (blankPage !== undefined) problems.push(`screenshot ${name}.png: ${blankPage}`);
      // Each generated picture, as the page shows it: not blank.
      const pictures = page.locator('img');
      for (let index = 0; index < (await pictures.count()); index++) {
        const picture = pictures.nth(index);
        const src = (await picture.getAttribute('src')) ?? '';
        if (!isSvg(src) || !((await picture.evaluate((image: HTMLImageElement) => image.naturalWidth)) > 0)) continue;
        // Bounded: a picture the browser never reports stable is a problem to name, not a hang.
        const shot = await picture.screenshot({ path: join(screenshotsDir, `${name}-img${index}.png`), timeout: 15_000 }).catch((error: unknown) => {
          problems.push(`<img src="${src}">: no screenshot in 15 s (${error instanceof Error ? error.message.split('\n')[0] : String(error)})`);
          return undefined;
        });
        const blank = shot === undefined ? undefined : blankReason(shot);
        if (blank !== undefined) problems.push(`<img src="${src}">: ${blank}`);
      }
      return { problems, svgs: images.filter((image) => isSvg(image.src)).map((image) => image.src) };
    } finally {
      await page.close();
    }
  }

  describe('the checks themselves', () => {
    it('find the faults of a broken map page', async () => {
      const file = join(workDir, 'broken.html');
      writeFileSync(
        file,
        `<!doctype html><html><head><meta charset="utf-8"><title>broken</title></head><body>
<svg xmlns="http://www.w3.org/2000/svg" width="400" height="100" viewBox="0 0 400 100">
  <g class="region" data-kind="mapping"><rect x="0" y="0" width="100" height="40" fill="#36c"/><text class="region-label" x="5" y="30" visibility="hidden">hidden</text></g>
  <g class="region" data-kind="mapping"><title>t</title><rect x="100" y="0" width="100" height="40" fill="#c63"/><text class="region-label" x="105" y="30" style="display:none">gone</text></g>
  <g class="region" data-kind="mapping"><title>t</title><text class="region-label" x="500" y="30">clipped</text></g>
  <g class="region" data-kind="mapping"><title>t</title><text class="region-label" x="-300" y="30">off the page</text></g>
  <g class="region" data-kind="mapping"><title>t</title></g>
</svg>
<img src="http://ioas-selftest.invalid/tracker.png" alt="">
<script>console.error('boom in the console'); throw new Error('uncaught boom');</script>
</body></html>`,
      );
      const problems = (await checkMap(pathToFileURL(file).href, 'selftest-broken', { table: true })).join('\n');
      expect(problems).toMatch(/console error: boom in the console/);
      expect(problems).toMatch(/page error: uncaught boom/);
      expect(problems).toMatch(/requested http:\/\/ioas-selftest\.invalid\/tracker\.png: a page here must not load anything/);
      expect(problems).toMatch(/1 region\(s\) without a <title>/);
      expect(problems).toMatch(/4 \.region-label and 0 \.gap-label text\(s\) for 5 region\(s\)/);
      expect(problems).toMatch(/1 region\(s\) without a \.region-label or \.gap-label/);
      expect(problems).toMatch(/"hidden" has visibility:hidden/);
      expect(problems).toMatch(/"gone" is not shown/);
      expect(problems).toMatch(/"clipped" .* sticks out of its <svg>/);
      expect(problems).toMatch(/"off the page" .* is outside the page's scroll area/);
      expect(problems).toMatch(/no \.legend/);
      expect(problems).toMatch(/no table of regions/);
      expect(problems).toMatch(/screenshot selftest-broken\.png: the picture looks blank/);
    });

    it('find the faults of a broken docs page', async () => {
      const site = join(workDir, 'site');
      mkdirSync(join(site, 'media'), { recursive: true });
      writeFileSync(join(site, 'media', 'empty.svg'), '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="100"><rect width="300" height="100" fill="#fff"/></svg>');
      writeFileSync(
        join(site, 'media', 'map.svg'),
        `<svg xmlns="http://www.w3.org/2000/svg" width="300" height="100">${Array.from({ length: 12 }, (_, i) => `<rect x="${i * 25}" width="25" height="100" fill="hsl(${i * 30},70%,50%)"/>`).join('')}</svg>`,
      );
      writeFileSync(
        join(site, 'page.html'),
        `<!doctype html><html><head><meta charset="utf-8"><title>docs</title></head><body><h1>A guide with pictures</h1>
<p>${'Words about IOMMUs. '.repeat(60)}</p>
<img src="media/map.svg" alt="fine"><img src="media/empty.svg" alt="blank"><img src="media/missing.svg" alt="missing"></body></html>`,
      );
      const { server, origin } = await serveDirectory(site);
      try {
        const { problems, svgs } = await checkDocsPage(siteContext, origin, 'page.html');
        expect(svgs).toEqual(['media/map.svg', 'media/empty.svg', 'media/missing.svg']);
        const text = problems.join('\n');
        expect(text).toMatch(/<img src="media\/missing\.svg"> did not load/);
        expect(text).toMatch(/<img src="media\/empty\.svg">: the picture looks blank/);
        expect(text).not.toMatch(/media\/map\.svg/);
        expect(text).toMatch(/console error: Failed to load resource: .*404/);
      } finally {
        // Chromium may hold a keep-alive connection open: close() alone would wait for it.
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    });

    it('call an empty page blank', async () => {
      const { page } = await open('about:blank');
      try {
        expect(blankReason(await page.screenshot())).toMatch(/the picture looks blank: only 1 distinct colour/);
      } finally {
        await page.close();
      }
    });
  });

  describe.each(PLATFORMS)('the IOVA map of the %s example', (platform) => {
    let snapshot: ContainerSnapshot;

    beforeAll(async () => {
      const validation = validateScenario(parse(readFileSync(join(examplesDir, `${platform}.yaml`), 'utf8')));
      if (!validation.ok) throw new Error(`${platform}.yaml is not a valid scenario: ${JSON.stringify(validation.issues)}`);
      const result = await runScenario(validation.scenario, { snapshot: true });
      if (result.snapshot === undefined) throw new Error('runScenario returned no snapshot');
      snapshot = result.snapshot;
    });

    it('as SVG: labels and legend visible, no errors, not blank', async () => {
      const file = join(workDir, `${platform}.svg`);
      writeFileSync(file, renderIovaMap(snapshot, { format: 'svg' }));
      expect(await checkMap(pathToFileURL(file).href, `map-${platform}-svg`, { table: false })).toEqual([]);
    });

    it('as HTML: labels, legend and table visible, no errors, not blank', async () => {
      const file = join(workDir, `${platform}.html`);
      writeFileSync(file, renderIovaMap(snapshot, { format: 'html' }));
      expect(await checkMap(pathToFileURL(file).href, `map-${platform}-html`, { table: true })).toEqual([]);
    });
  });

  describe('the docs site (docs/api)', () => {
    const built = existsSync(join(docsDir, 'index.html'));
    const documentsDir = join(docsDir, 'documents');
    const pages = built ? ['index.html', ...(existsSync(documentsDir) ? readdirSync(documentsDir).filter((name) => name.endsWith('.html')).sort().map((name) => `documents/${name}`) : [])] : [];
    /** The .svg pictures each page showed, filled in by the page tests. */
    const svgPictures = new Map<string, string[]>();
    let server: Server | undefined;
    let origin = '';

    beforeAll(async () => {
      if (!built) return;
      ({ server, origin } = await serveDirectory(docsDir));
    });

    afterAll(async () => {
      server?.closeAllConnections();
      await new Promise((resolve) => (server === undefined ? resolve(undefined) : server.close(resolve)));
    });

    it('is built', () => {
      if (!built) throw new Error(`${join(docsDir, 'index.html')} does not exist: run \`pnpm run docs\` first (after \`pnpm build\`)`);
      expect(pages.length).toBeGreaterThan(1);
    });

    for (const pagePath of pages) {
      it(`${pagePath}: no console errors, every image loaded, not blank`, async () => {
        const { problems, svgs } = await checkDocsPage(siteContext, origin, pagePath);
        svgPictures.set(pagePath, svgs);
        expect(problems).toEqual([]);
      });
    }

    it('shows at least one generated .svg picture', () => {
      if (!built) throw new Error('docs/api is not built: run `pnpm run docs` first');
      const shown = [...svgPictures].filter(([, sources]) => sources.length > 0);
      expect(shown.map(([pagePath, sources]) => `${pagePath}: ${sources.join(', ')}`), `no page of docs/api (${pages.join(', ')}) has an <img> whose src ends in .svg`).not.toEqual([]);
    });
  });
}

function isSvg(src: string): boolean {
  return /\.svg([?#].*)?$/i.test(src);
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.gif': 'image/gif',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

/** Serves `root`'s files on 127.0.0.1 (a free port), read-only, nothing outside `root`. */
async function serveDirectory(root: string): Promise<{ server: Server; origin: string }> {
  const server = createServer((request, response) => {
    const path = decodeURIComponent(new URL(request.url ?? '/', 'http://localhost').pathname);
    const file = normalize(join(root, path.endsWith('/') ? `${path}index.html` : path));
    if (request.method !== 'GET' || (file !== root && !file.startsWith(root + sep)) || !existsSync(file) || !statSync(file).isFile()) {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    response.writeHead(200, { 'content-type': CONTENT_TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}
