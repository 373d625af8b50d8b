// Runs wasm/www/bench.html in Debian's headless Chromium (playwright-core, no downloaded
// browser) and prints its result as JSON on stdout: median ms per CSR for warden-wasm's
// generateKeyAndCsr (p256, ed25519) and generateCsrWithWebCrypto, and for @peculiar/x509 with
// WebCrypto (P-256, Ed25519), plus the Chromium version.
//
// Usage: node tests/browser/bench.mjs [--runs N] [--out DIR]
//   --runs N   timed runs per case (default 100; 5 warm-up runs are not counted)
//   --out DIR  also write one CSR of each kind made in the browser, as PEM:
//              wasm-p256.csr, wasm-ed25519.csr, wasm-webcrypto-p256.csr, peculiar-p256.csr,
//              peculiar-ed25519.csr (when Chromium's WebCrypto has Ed25519)
// Needs `scripts/wasm.sh build` first (wasm/www/pkg/) and `npm ci` in tests/browser.
// Environment: CHROMIUM (default /usr/bin/chromium).
// Exits non-zero with a message on stderr when anything fails.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium } from "./chromium.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const WWW = path.resolve(HERE, "../../wasm/www");
const X509_BUNDLE = path.join(HERE, "node_modules/@peculiar/x509/build/x509.js");
const TIMEOUT_MS = 10 * 60_000;
const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".css": "text/css",
  ".svg": "image/svg+xml",
};

function fail(message) {
  process.stderr.write(`bench.mjs: ${message}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const args = { runs: 100, out: null };
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    switch (argv[i]) {
      case "--runs":
        args.runs = Number.parseInt(value, 10);
        if (!(args.runs > 0)) fail(`--runs: expected a positive integer, got ${value}`);
        i++;
        break;
      case "--out":
        if (!value) fail("--out: expected a directory");
        args.out = value;
        i++;
        break;
      default:
        fail(`unknown argument ${argv[i]} (usage: bench.mjs [--runs N] [--out DIR])`);
    }
  }
  return args;
}

/** wasm/www as static files, plus the @peculiar/x509 browser bundle at /vendor/x509.js. */
function serve() {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    let file;
    if (url.pathname === "/vendor/x509.js") {
      file = X509_BUNDLE;
    } else {
      file = path.join(WWW, path.normalize(decodeURIComponent(url.pathname)));
      if (!file.startsWith(WWW + path.sep)) {
        res.writeHead(403).end();
        return;
      }
    }
    let body;
    try {
      body = readFileSync(file);
    } catch {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      "content-type": MIME[path.extname(file)] ?? "application/octet-stream",
      "cache-control": "no-store",
    });
    res.end(body);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
  if (!existsSync(executablePath)) fail(`no Chromium at ${executablePath} (apt-get install chromium)`);
  if (!existsSync(path.join(WWW, "pkg/warden_wasm_bg.wasm"))) {
    fail(`no ${WWW}/pkg/warden_wasm_bg.wasm: run scripts/wasm.sh build first`);
  }
  if (!existsSync(X509_BUNDLE)) fail(`no ${X509_BUNDLE}: run npm ci in ${HERE}`);

  const server = await serve();
  const { port } = server.address();
  const browser = await launchChromium(executablePath);
  try {
    const page = await browser.newPage();
    const console_ = [];
    page.on("console", (m) => console_.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => console_.push(`pageerror: ${e.message}`));
    // 127.0.0.1 is a secure context, so crypto.subtle is available over plain http.
    await page.goto(`http://127.0.0.1:${port}/bench.html?runs=${args.runs}`);
    await page.waitForFunction(() => window.benchResult !== undefined, null, { timeout: TIMEOUT_MS });
    const result = await page.evaluate(() => window.benchResult);
    if (result.error) fail(`the page failed: ${result.error}\n${console_.join("\n")}`);

    const samples = {
      "wasm-p256.csr": result.results.wasmP256.sample,
      "wasm-ed25519.csr": result.results.wasmEd25519.sample,
      "wasm-webcrypto-p256.csr": result.results.wasmWebCryptoP256.sample,
      "peculiar-p256.csr": result.results.peculiarP256.sample,
      "peculiar-ed25519.csr": result.results.peculiarEd25519.sample,
    };
    if (args.out) {
      mkdirSync(args.out, { recursive: true });
      for (const [name, pem] of Object.entries(samples)) {
        if (pem) writeFileSync(path.join(args.out, name), pem);
      }
    }
    for (const r of Object.values(result.results)) delete r.sample;
    const report = {
      chromium: browser.version(),
      runs: args.runs,
      ...result,
      samples: Object.keys(samples).filter((k) => samples[k]),
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } finally {
    await browser.close();
    server.close();
  }
}

main().catch((e) => fail(e?.stack ?? String(e)));
