// The Warden demo page: makes a key pair and a CSR in the browser (warden-wasm, or WebCrypto
// with a non-extractable key), sends only the CSR to Warden as gRPC-Web
// `dapr.proto.sentry.v1.CA/SignCertificate`, and shows what came back: SPIFFE ID, validity,
// issuer and the result of checking the chain against the returned trust anchors.
//
// No dependencies: the protobuf messages and the gRPC-Web framing are written by hand below
// (field numbers from host/proto/dapr/proto/sentry/v1/sentry.proto).

const METHOD_PATH = "/dapr.proto.sentry.v1.CA/SignCertificate";
const REQUEST_TIMEOUT_MS = 30_000;

// gRPC status code names, for the error line.
const GRPC_CODES = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
  "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
  "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
];

// ---------------------------------------------------------------------------------------------
// Protobuf: just enough for SignCertificateRequest and SignCertificateResponse.

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: false });

/** Appends `value` (a non-negative safe integer) as a base-128 varint. */
function pushVarint(out, value) {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`varint out of range: ${value}`);
  }
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
}

function pushBytesField(out, field, bytes) {
  if (bytes.length === 0) return; // proto3: empty is the default and not sent
  pushVarint(out, (field << 3) | 2);
  pushVarint(out, bytes.length);
  for (const b of bytes) out.push(b);
}

function pushStringField(out, field, text) {
  pushBytesField(out, field, utf8.encode(text));
}

function pushVarintField(out, field, value) {
  if (value === 0) return;
  pushVarint(out, field << 3);
  pushVarint(out, value);
}

/**
 * SignCertificateRequest: id = 1, token = 2, trust_domain = 3, namespace = 4,
 * certificate_signing_request = 5 (PEM bytes, as daprd sends), token_validator = 6.
 */
export function encodeSignCertificateRequest(req) {
  const out = [];
  pushStringField(out, 1, req.id);
  pushStringField(out, 2, req.token ?? "");
  pushStringField(out, 3, req.trustDomain);
  pushStringField(out, 4, req.namespace);
  pushBytesField(out, 5, utf8.encode(req.csrPem));
  pushVarintField(out, 6, req.tokenValidator ?? 0);
  return Uint8Array.from(out);
}

/** A reader over one protobuf message. */
class ProtoReader {
  constructor(bytes) {
    this.bytes = bytes;
    this.pos = 0;
  }

  done() {
    return this.pos >= this.bytes.length;
  }

  varint() {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.bytes.length) throw new Error("truncated varint");
      const b = this.bytes[this.pos++];
      value += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return value;
      scale *= 0x80;
    }
    throw new Error("varint too long");
  }

  take(n) {
    if (n > this.bytes.length - this.pos) throw new Error("truncated field");
    const slice = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return slice;
  }

  /** Returns [field, wireType]. */
  key() {
    const key = this.varint();
    return [Math.floor(key / 8), key % 8];
  }

  skip(wireType) {
    switch (wireType) {
      case 0: this.varint(); break;
      case 1: this.take(8); break;
      case 2: this.take(this.varint()); break;
      case 5: this.take(4); break;
      default: throw new Error(`unsupported wire type ${wireType}`);
    }
  }
}

/** google.protobuf.Timestamp → milliseconds since the epoch. */
function decodeTimestamp(bytes) {
  const r = new ProtoReader(bytes);
  let seconds = 0;
  let nanos = 0;
  while (!r.done()) {
    const [field, wire] = r.key();
    if (field === 1 && wire === 0) seconds = r.varint();
    else if (field === 2 && wire === 0) nanos = r.varint();
    else r.skip(wire);
  }
  return seconds * 1000 + Math.floor(nanos / 1e6);
}

/**
 * SignCertificateResponse: workload_certificate = 1 (PEM chain, leaf first),
 * trust_chain_certificates = 2 (PEM trust anchors, repeated), valid_until = 3 (Timestamp).
 */
export function decodeSignCertificateResponse(bytes) {
  const r = new ProtoReader(bytes);
  const res = { workloadCertificate: "", trustChainCertificates: [], validUntilMs: null };
  while (!r.done()) {
    const [field, wire] = r.key();
    if (field === 1 && wire === 2) {
      res.workloadCertificate = utf8Decoder.decode(r.take(r.varint()));
    } else if (field === 2 && wire === 2) {
      res.trustChainCertificates.push(utf8Decoder.decode(r.take(r.varint())));
    } else if (field === 3 && wire === 2) {
      res.validUntilMs = decodeTimestamp(r.take(r.varint()));
    } else {
      r.skip(wire);
    }
  }
  return res;
}

// ---------------------------------------------------------------------------------------------
// gRPC-Web (application/grpc-web+proto): 5-byte frames, flag 0x80 = trailers.

/** A refused or failed call, with its gRPC code. */
export class GrpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }

  get codeName() {
    return GRPC_CODES[this.code] ?? String(this.code);
  }
}

function frame(message) {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length, false);
  out.set(message, 5);
  return out;
}

function decodeGrpcMessage(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Parses the text of a trailers frame ("name: value\r\n" lines). */
function parseTrailers(bytes) {
  const trailers = new Map();
  for (const line of utf8Decoder.decode(bytes).split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    trailers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return trailers;
}

function statusFrom(getter) {
  const status = getter("grpc-status");
  if (status === null || status === undefined) return null;
  const code = Number.parseInt(status, 10);
  return { code: Number.isNaN(code) ? 2 : code, message: decodeGrpcMessage(getter("grpc-message") ?? "") };
}

/** One unary gRPC-Web call; resolves to the response message bytes or throws GrpcError. */
export async function grpcWebUnary(baseUrl, path, message, { timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  let response;
  try {
    response = await fetch(baseUrl.replace(/\/+$/, "") + path, {
      method: "POST",
      headers: {
        "content-type": "application/grpc-web+proto",
        "accept": "application/grpc-web+proto",
        "x-grpc-web": "1",
        "x-user-agent": "warden-demo/1",
        "grpc-timeout": `${Math.ceil(timeoutMs / 1000)}S`,
      },
      body: frame(message),
      signal: controller.signal,
      credentials: "omit",
      cache: "no-store",
    });
  } catch (e) {
    clearTimeout(timer);
    throw new GrpcError(14, `cannot reach ${baseUrl}: ${e.message ?? e} ` +
      "(is the server running with --grpc-web, is this origin in --allowed-origins, " +
      "and does the browser trust its certificate?)");
  }
  let body;
  try {
    body = new Uint8Array(await response.arrayBuffer());
  } finally {
    clearTimeout(timer);
  }
  // Trailers-only answers (errors) carry grpc-status in the HTTP headers.
  const headerStatus = statusFrom((name) => response.headers.get(name));
  if (!response.ok) {
    if (headerStatus) throw new GrpcError(headerStatus.code, headerStatus.message);
    throw new GrpcError(2, `HTTP ${response.status} ${response.statusText} from ${baseUrl}`);
  }
  if (headerStatus && headerStatus.code !== 0) {
    throw new GrpcError(headerStatus.code, headerStatus.message);
  }
  let data = null;
  let trailerStatus = null;
  let pos = 0;
  while (pos < body.length) {
    if (body.length - pos < 5) throw new GrpcError(13, "truncated gRPC-Web frame header");
    const flags = body[pos];
    const length = new DataView(body.buffer, body.byteOffset + pos + 1, 4).getUint32(0, false);
    pos += 5;
    if (length > body.length - pos) throw new GrpcError(13, "truncated gRPC-Web frame");
    const payload = body.subarray(pos, pos + length);
    pos += length;
    if (flags & 0x80) {
      const trailers = parseTrailers(payload);
      trailerStatus = statusFrom((name) => trailers.get(name));
    } else if (flags & 0x01) {
      throw new GrpcError(12, "compressed gRPC-Web frames are not supported");
    } else if (data === null) {
      data = payload;
    }
  }
  const status = trailerStatus ?? headerStatus;
  if (!status) throw new GrpcError(13, "the response has no grpc-status");
  if (status.code !== 0) throw new GrpcError(status.code, status.message);
  if (data === null) throw new GrpcError(13, "the response has no message");
  return data;
}

// ---------------------------------------------------------------------------------------------
// The page.

const $ = (id) => document.getElementById(id);

function setStatus(state, text) {
  const el = $("status");
  el.dataset.state = state;
  el.textContent = text;
}

function setTime(id, ms) {
  const el = $(id);
  el.dataset.ms = ms === null || ms === undefined ? "" : String(ms);
  el.textContent = ms === null || ms === undefined ? "" : new Date(ms).toISOString();
}

function showError(code, message) {
  $("error-box").hidden = false;
  const el = $("error");
  el.dataset.code = code;
  el.textContent = code ? `${code}: ${message}` : message;
}

function clearResult() {
  $("result").hidden = true;
  $("error-box").hidden = true;
  for (const id of ["spiffe-id", "serial", "subject", "issuer", "key-info", "chain-result",
    "certificate-pem", "anchors-pem", "csr-pem", "error"]) {
    $(id).textContent = "";
  }
  $("chain-result").dataset.ok = "";
  $("error").dataset.code = "";
  for (const id of ["not-before", "not-after", "valid-until"]) setTime(id, null);
}

function field(id) {
  return $(id).value.trim();
}

let wasm = null;

async function makeCsr(keyType, spiffeId) {
  if (keyType === "webcrypto-p256") {
    const { csrPem, privateKey } = await wasm.generateCsrWithWebCrypto({ spiffeId });
    // The CryptoKey stays here; WebCrypto will not export it.
    return { csrPem, keyInfo: `ECDSA P-256, WebCrypto CryptoKey (extractable: ${privateKey.extractable})` };
  }
  const { csrPem, privateKeyPem } = await wasm.generateKeyAndCsr({ keyType, spiffeId });
  // The PEM key lives only in this page's memory; it is not sent, stored or shown.
  const keyName = keyType === "ed25519" ? "Ed25519" : "ECDSA P-256";
  return { csrPem, keyInfo: `${keyName}, made by warden-wasm (PKCS#8, ${privateKeyPem.length} bytes of PEM kept in the page)` };
}

async function getCertificate(event) {
  event.preventDefault();
  clearResult();
  const button = $("get-certificate");
  button.disabled = true;
  setStatus("working", "working…");
  try {
    const appId = field("app-id");
    const namespace = field("namespace");
    const trustDomain = field("trust-domain");
    const keyType = $("key-type").value;
    const caUrl = field("ca-url") || window.location.origin;
    const spiffeId = `spiffe://${trustDomain}/ns/${namespace}/${appId}`;

    const { csrPem, keyInfo } = await makeCsr(keyType, spiffeId);
    $("csr-pem").textContent = csrPem;
    $("key-info").textContent = keyInfo;

    const request = encodeSignCertificateRequest({
      id: appId,
      token: $("token").value,
      trustDomain,
      namespace,
      csrPem,
      tokenValidator: Number.parseInt($("validator").value, 10) || 0,
    });
    const reply = decodeSignCertificateResponse(await grpcWebUnary(caUrl, METHOD_PATH, request));

    const chainPem = reply.workloadCertificate;
    const anchorsPem = reply.trustChainCertificates.join("\n");
    const info = wasm.inspectCertificate(chainPem);
    const check = wasm.verifyChain(chainPem, anchorsPem, Date.now());

    $("spiffe-id").textContent = info.spiffeId ?? "";
    $("serial").textContent = info.serial ?? "";
    setTime("not-before", info.notBefore);
    setTime("not-after", info.notAfter);
    setTime("valid-until", reply.validUntilMs);
    $("subject").textContent = info.subject ?? "";
    $("issuer").textContent = info.issuer ?? "";
    $("chain-result").dataset.ok = String(Boolean(check.ok));
    $("chain-result").textContent = check.ok
      ? `ok: chains to the returned trust anchors (${check.spiffeId ?? info.spiffeId})`
      : `failed: ${check.error}`;
    $("certificate-pem").textContent = chainPem;
    $("anchors-pem").textContent = anchorsPem;
    $("result").hidden = false;
    setStatus("done", "done");
  } catch (e) {
    if (e instanceof GrpcError) {
      showError(e.codeName, e.message);
    } else {
      showError("", `${e?.message ?? e}`);
    }
    setStatus("error", "refused");
  } finally {
    button.disabled = false;
  }
}

async function main() {
  $("request-form").addEventListener("submit", getCertificate);
  try {
    wasm = await import("./pkg/warden_wasm.js");
    await wasm.default();
  } catch (e) {
    showError("", `cannot load the wasm module pkg/warden_wasm.js (build it with scripts/wasm.sh build): ${e?.message ?? e}`);
    setStatus("error", "wasm missing");
    return;
  }
  $("get-certificate").disabled = false;
  setStatus("ready", "ready");
}

main();
