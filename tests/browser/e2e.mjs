// Drives the Warden demo page (wasm/www, served by `warden --ui`) in Debian's headless
// Chromium: for each case, loads the page, fills the form, clicks "Get certificate", waits for
// the outcome and reads what the page shows. Prints one JSON object to stdout:
//   { "results": [ { name, status, spiffeId, serial, notBeforeMs, notAfterMs, validUntilMs,
//                    issuer, subject, keyInfo, chainOk, chainResult, error, errorCode,
//                    certificatePem, anchorsPem, csrPem, protocols, console } ] }
//
// and, for plain HTTP checks without a browser (CORS preflights, static paths, content types):
//   "requests": [ { name, status, httpVersion, headers, body, error } ]
//
// Usage: node tests/browser/e2e.mjs SPEC.json
//   SPEC = { "chromium": "/usr/bin/chromium", "cases": [ { "name", "pageUrl", "caUrl"?,
//            "appId", "namespace", "trustDomain", "token"?, "validator"?, "keyType" } ],
//            "requests": [ { "name", "origin", "method", "path", "headers"?, "bodyBase64"?,
//                            "http1"? } ] }
// Requests are sent as given (no path normalisation), over h2 unless "http1" is true; the
// server's certificate is not checked (it comes from the CA under test).
// Exits non-zero with a message on stderr when Chromium or the page cannot be driven at all;
// a refused request is a result (status "error"), not a failure of this script.

import { readFileSync } from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import { launchChromium } from "./chromium.mjs";

const CASE_TIMEOUT_MS = 60_000;

function fail(message) {
  process.stderr.write(`e2e.mjs: ${message}\n`);
  process.exit(2);
}

const specPath = process.argv[2];
if (!specPath) fail("usage: node e2e.mjs SPEC.json");
let spec;
try {
  spec = JSON.parse(readFileSync(specPath, "utf8"));
} catch (e) {
  fail(`cannot read ${specPath}: ${e.message}`);
}

/** One raw request over h2 (node:http2) or HTTP/1.1 (node:https, ALPN http/1.1 only). */
function rawRequest(r) {
  const body = r.bodyBase64 ? Buffer.from(r.bodyBase64, "base64") : null;
  const done = (result) => ({ name: r.name, ...result });
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(done({ error: "timed out" })), 20_000);
    const finish = (result) => {
      clearTimeout(timer);
      resolve(done(result));
    };
    if (r.http1) {
      const url = new URL(r.origin);
      const req = https.request({
        host: url.hostname,
        port: url.port,
        method: r.method,
        path: r.path,
        headers: r.headers ?? {},
        rejectUnauthorized: false,
        ALPNProtocols: ["http/1.1"],
      }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => finish({
          status: res.statusCode,
          httpVersion: res.httpVersion,
          headers: res.headers,
          body: Buffer.concat(chunks).toString("latin1"),
        }));
      });
      req.on("error", (e) => finish({ error: e.message }));
      req.end(body ?? undefined);
      return;
    }
    const client = http2.connect(r.origin, { rejectUnauthorized: false });
    client.on("error", (e) => finish({ error: e.message }));
    const req = client.request({ ":method": r.method, ":path": r.path, ...(r.headers ?? {}) });
    let headers = {};
    const chunks = [];
    req.on("response", (h) => { headers = h; });
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      client.close();
      const status = headers[":status"];
      delete headers[":status"];
      finish({ status, httpVersion: "2", headers, body: Buffer.concat(chunks).toString("latin1") });
    });
    req.on("error", (e) => {
      client.close();
      finish({ error: e.message });
    });
    req.end(body ?? undefined);
  });
}

const requests = [];
for (const r of spec.requests ?? []) {
  requests.push(await rawRequest(r));
}
if (!spec.cases || spec.cases.length === 0) {
  process.stdout.write(`${JSON.stringify({ results: [], requests })}\n`);
  process.exit(0);
}

let browser;
try {
  browser = await launchChromium(spec.chromium);
} catch (e) {
  fail(`cannot launch Chromium at ${spec.chromium ?? "/usr/bin/chromium"}: ${e.message}`);
}

// Warden's serving certificate comes from its own CA, which this profile does not trust.
const context = await browser.newContext({ ignoreHTTPSErrors: true });
const results = [];
try {
  for (const c of spec.cases) {
    const page = await context.newPage();
    const consoleLines = [];
    page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
    // Which HTTP version Chromium used for the gRPC-Web call (ALPN offers h2 and http/1.1).
    const protocols = [];
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    cdp.on("Network.responseReceived", (e) => {
      if (e.response.url.includes("/dapr.proto.sentry.v1.CA/")) protocols.push(e.response.protocol);
    });
    try {
      await page.goto(c.pageUrl, { waitUntil: "load", timeout: CASE_TIMEOUT_MS });
      await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', {
        timeout: CASE_TIMEOUT_MS,
      });
      const loadState = await page.getAttribute("#status", "data-state");
      if (loadState !== "ready") {
        const error = await page.textContent("#error");
        throw new Error(`the page did not load its wasm module: ${error}`);
      }
      await page.fill("#app-id", c.appId);
      await page.fill("#namespace", c.namespace);
      await page.fill("#trust-domain", c.trustDomain);
      await page.fill("#token", c.token ?? "");
      await page.selectOption("#validator", String(c.validator ?? 0));
      await page.selectOption("#key-type", c.keyType);
      await page.fill("#ca-url", c.caUrl ?? "");
      await page.click("#get-certificate");
      await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', {
        timeout: CASE_TIMEOUT_MS,
      });
      const shown = await page.evaluate(() => {
        const text = (id) => document.getElementById(id).textContent;
        const ms = (id) => {
          const v = document.getElementById(id).dataset.ms;
          return v === "" ? null : Number(v);
        };
        return {
          status: document.getElementById("status").dataset.state,
          spiffeId: text("spiffe-id"),
          serial: text("serial"),
          notBeforeMs: ms("not-before"),
          notAfterMs: ms("not-after"),
          validUntilMs: ms("valid-until"),
          notBefore: text("not-before"),
          notAfter: text("not-after"),
          issuer: text("issuer"),
          subject: text("subject"),
          keyInfo: text("key-info"),
          chainOk: document.getElementById("chain-result").dataset.ok === "true",
          chainResult: text("chain-result"),
          error: text("error"),
          errorCode: document.getElementById("error").dataset.code,
          certificatePem: text("certificate-pem"),
          anchorsPem: text("anchors-pem"),
          csrPem: text("csr-pem"),
        };
      });
      results.push({ name: c.name, ...shown, protocols, console: consoleLines });
    } catch (e) {
      results.push({ name: c.name, status: "driver-error", error: e.message, console: consoleLines });
    } finally {
      await page.close();
    }
  }
} finally {
  await browser.close();
}
process.stdout.write(`${JSON.stringify({ results, requests })}\n`);
