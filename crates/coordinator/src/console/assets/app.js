import { eip1559, hexBytes, toHex } from "./eth.js";
import { verifyHere } from "./verify.js";
import { b64url, fileEntries, fromB64url, proveByPossession } from "./passkeys.js";
import { verifyAudit } from "./audit.js";

// The vsigner console: one page, no build step. It reads and writes through the
// coordinator's GraphQL API with the session cookie and the CSRF token, hears of changes
// through server-sent events, and builds every element with textContent (no HTML from data).

const state = { user: null, csrf: null, view: null, refresh: null, events: null };
const main = () => document.getElementById("main");

// ---------- small helpers ----------

// Replaces the page's content (null, false and nested arrays allowed, as in `h`).
function render(...parts) {
  main().replaceChildren(...parts.flat(Infinity).filter((p) => p !== null && p !== undefined && p !== false));
}

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// Device names by id, read with the page's data (a name is what people recognise).
let deviceNames = {};
const device = (id) =>
  h("span", { class: "device" }, deviceNames[id] || "", " ", h("code", { class: "muted" }, short(id)));
const DEVICES = "devices { id name }";
const learnDevices = (data) => {
  deviceNames = Object.fromEntries((data.devices || []).map((d) => [d.id, d.name]));
};

const short = (id) => (id && id.length > 14 ? `${id.slice(0, 10)}…${id.slice(-4)}` : id || "");
const when = (t) => (t ? new Date(t).toLocaleString() : "");
const badge = (s) => h("span", { class: `state ${s}` }, s);
class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

async function gql(query, variables = {}) {
  const resp = await fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": state.csrf || "" },
    body: JSON.stringify({ query, variables }),
    credentials: "same-origin",
  });
  const body = await resp.json();
  if (body.errors && body.errors.length) {
    const e = body.errors[0];
    const code = e.extensions && e.extensions.code;
    if (code === "UNAUTHENTICATED") signedOut();
    throw new ApiError(e.message, code);
  }
  return body.data;
}

// ---------- session ----------

async function start() {
  document.getElementById("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  const resp = await fetch("/console/session", { credentials: "same-origin" });
  if (resp.ok) {
    const s = await resp.json();
    signedIn(s.user, s.csrfToken);
  } else {
    signInView();
  }
}

function signedIn(user, csrf) {
  state.user = user;
  state.csrf = csrf;
  document.getElementById("nav").hidden = false;
  document.getElementById("who").hidden = false;
  document.getElementById("who-name").textContent = user.name;
  document.getElementById("who-role").textContent = user.role;
  listen();
  if (!location.hash || location.hash === "#/sign-in") location.hash = "#/operations";
  else route();
}

function signedOut() {
  state.user = null;
  state.csrf = null;
  if (state.events) state.events.close();
  state.events = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  signInView();
}

async function signOut() {
  await fetch("/console/session", {
    method: "DELETE",
    headers: { "x-csrf-token": state.csrf || "" },
    credentials: "same-origin",
  });
  signedOut();
}

function signInView() {
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "card signin", id: "sign-in" },
    h("h1", {}, "Sign in"),
    h("label", { for: "organisation" }, "Organisation id"),
    h("input", { id: "organisation", name: "organisation", required: true, autocomplete: "organization" }),
    h("label", { for: "name" }, "Name"),
    h("input", { id: "name", name: "name", required: true, autocomplete: "username" }),
    h("label", { for: "password" }, "Password"),
    h("input", { id: "password", name: "password", type: "password", required: true, autocomplete: "current-password" }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")),
    error,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const resp = await fetch("/console/session", {
      method: "POST",
      headers: { "content-type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({
        organisationId: form.organisation.value,
        name: form.name.value,
        password: form.password.value,
      }),
    });
    const body = await resp.json();
    if (!resp.ok) {
      error.textContent = body.message || "Sign-in failed";
      return;
    }
    form.password.value = "";
    signedIn(body.user, body.csrfToken);
  });
  render(form);
}

// ---------- live updates ----------

function listen() {
  if (state.events) state.events.close();
  const live = document.getElementById("live");
  const events = new EventSource("/console/events");
  events.addEventListener("open", () => live.classList.add("on"));
  events.addEventListener("error", () => live.classList.remove("on"));
  const changed = () => {
    clearTimeout(state.refresh);
    state.refresh = setTimeout(() => state.view && state.view.refresh && state.view.refresh(), 150);
  };
  events.addEventListener("operation", changed);
  events.addEventListener("lagged", changed);
  state.events = events;
}

// ---------- routing ----------

const views = {
  operations: operationsView,
  operation: operationView,
  vaults: vaultsView,
  sign: signView,
  reshare: reshareView,
  devices: devicesView,
  audit: auditView,
  passkeys: passkeysView,
  account: accountView,
};

const mayRequest = () => ["operator", "admin"].includes(state.user.role);

function route() {
  if (!state.user) return signInView();
  const [, name, id] = (location.hash || "#/operations").split("/");
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("on", a.dataset.view === name || (name === "operation" && a.dataset.view === "operations"));
  }
  const view = Object.hasOwn(views, name) ? views[name] : operationsView;
  state.view = { refresh: () => view(id).catch(showError) };
  state.view.refresh();
}

function showError(e) {
  render(h("div", { class: "card error", role: "alert" }, e.message));
}

function table(headers, rows) {
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, headers.map(([label, cls]) => h("th", { class: cls }, label)))),
    h("tbody", {}, rows),
  );
}

// ---------- views ----------

const OP_FIELDS = `id kind state vaultId createdAt updatedAt expiresAt approvedWeight requiredWeight
  vault { name curve threshold publicKey ethereumAddress }
  sign { payloadKind payload signingDigest chainId derivationPath taproot { merkleRoot } }`;

// Characters that do not show as themselves (format and bidi controls, zero-width and
// invisible characters, private use): the same list as the devices' (`reads_as_itself` in
// crates/approval/src/request.rs).
const INVISIBLE =
  /[\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u3164\uFEFF\uFFA0\u0600-\u0605\u06DD\u070F\u08E2\u180B-\u180F\u200B-\u200F\u2028-\u202F\u205F-\u206F\uE000-\uF8FF\uFE00-\uFE0F\uFFF0-\uFFFB\u{110BD}\u{110CD}\u{13430}-\u{1343F}\u{1BCA0}-\u{1BCA3}\u{1D173}-\u{1D17A}\u{E0000}-\u{E0FFF}\u{F0000}-\u{10FFFF}]/u;

// A message's text when it reads as itself: UTF-8 with no control character but tab and
// line feed, and nothing invisible or direction-changing (what a person reads).
function messageText(sign) {
  if (!sign || sign.payloadKind !== "message" || !sign.payload) return null;
  try {
    const bytes = hexBytes(sign.payload);
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return /^[\P{Cc}\n\t]*$/u.test(text) && !INVISIBLE.test(text) ? text : null;
  } catch (_) {
    return null;
  }
}

// An amount in wei as ETH, exactly (decimal string in, decimal string out).
function weiAsEth(wei) {
  try {
    const n = BigInt(wei);
    const whole = n / 10n ** 18n;
    const frac = (n % 10n ** 18n).toString().padStart(18, "0").replace(/0+$/, "");
    return frac ? `${whole}.${frac}` : `${whole}`;
  } catch (_) {
    return String(wei);
  }
}

const OPERATION_NAMES = {
  OperationCreateVault_v3: "Create the vault (key generation)",
  OperationReshare_v3: "Reshare the vault",
  OperationSign: "Sign",
  OperationTransferOut_v3: "Sign a transfer",
};

// A name as it reads: one with invisible or direction-changing characters is shown with
// them escaped, and marked.
function visible(name) {
  const s = String(name ?? "");
  if (!INVISIBLE.test(s) && !/\p{Cc}/u.test(s)) return s;
  return `⚠ ${JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u{${c.codePointAt(0).toString(16)}}`)}`;
}

const signerList = (signers) =>
  (Array.isArray(signers) ? signers : [])
    .map((s) => `${visible(s.device && s.device.name)} (${s.id}, key ${String((s.device && s.device.publicKey) || "").slice(0, 12)}…) ×${s.weight}`)
    .join(", ");

// What a person approves, read only from the device's own request (the bytes their passkey
// signs): [label, value] rows.
function requestSummary(request) {
  const rows = [];
  const vault = (request.details && request.details.vault) || {};
  rows.push(["Operation", OPERATION_NAMES[request.__typename] || String(request.__typename)]);
  rows.push(["Vault", `${visible(vault.details && vault.details.name)} (${vault.id}; ${vault.curve}, ${vault.threshold} to sign)`]);
  if (vault.publicKey) rows.push(["Vault key", vault.publicKey]);
  const sd = request.signingData;
  if (sd) {
    if (sd.derivationPath) rows.push(["Child key", sd.derivationPath]);
    if (sd.taproot) rows.push(["Taproot output", JSON.stringify(sd.taproot)]);
    if (sd.contentType === "text/plain" && sd.payloadKind !== "eth_tx") rows.push(["Message", sd.data]);
    else if (!request.transaction) rows.push([sd.payloadKind === "digest" ? "Digest" : "Data (hex)", sd.dataHex]);
  }
  const tx = request.transaction;
  if (tx) {
    const token = request.asset && request.asset.contractAddress;
    const calls = tx.data && tx.data !== "0x";
    if (calls && !token) {
      rows.push(["Effect", "⚠ a contract call this device does not decode: it may move any asset the vault holds"]);
    }
    rows.push(["To", tx.to || "a new contract"]);
    rows.push(["Amount", `${weiAsEth(tx.value)} ETH`]);
    if (token) {
      rows.push(["Token", token]);
      rows.push(["Token recipient", String(tx.toAddress)]);
      rows.push(["Token amount (smallest unit)", String(request.amountOriginal ?? "unknown")]);
    }
    rows.push(["Chain id", String(tx.chainId)]);
    rows.push(["Nonce, gas limit", `${tx.nonce}, ${tx.gasLimit}`]);
    rows.push(["Max fee, tip (wei per gas)", `${tx.maxFeePerGas}, ${tx.maxPriorityFeePerGas}`]);
    try {
      rows.push(["Max network fee", `${weiAsEth((BigInt(tx.gasLimit) * BigInt(tx.maxFeePerGas)).toString())} ETH`]);
    } catch (_) {
      // Shown per gas above.
    }
    if (calls) rows.push(["Call data", tx.data]);
  }
  const r = request.rDetails;
  if (r) {
    rows.push(["New threshold", String(r.newThreshold)]);
    rows.push(["New signers", signerList(r.newSigners)]);
  }
  if (request.__typename === "OperationCreateVault_v3") rows.push(["Signers", signerList(vault.signers)]);
  return rows;
}

// Where the coordinator's own account of the operation differs from the device's request.
function differences(op, request) {
  const out = [];
  const same = (a, b) => String(a ?? "").replace(/^0x/, "").toLowerCase() === String(b ?? "").replace(/^0x/, "").toLowerCase();
  const vault = (request.details && request.details.vault) || {};
  const kinds = { OperationCreateVault_v3: "Keygen", OperationReshare_v3: "Reshare", OperationSign: "Sign", OperationTransferOut_v3: "Sign" };
  if (request.id !== op.id) out.push("the operation id");
  if (kinds[request.__typename] !== op.kind) out.push("the kind of operation");
  if (vault.id !== op.vaultId) out.push("the vault");
  if (!vault.details || vault.details.name !== op.vault.name) out.push("the vault's name");
  if (!same(vault.publicKey, op.vault.publicKey)) out.push("the vault's key");
  const sd = request.signingData;
  if (Boolean(op.sign) !== Boolean(sd)) out.push("whether something is signed");
  else if (sd) {
    if (!same(sd.dataHex, op.sign.payload) || sd.payloadKind !== op.sign.payloadKind) out.push("what is signed");
    if ((sd.derivationPath || null) !== (op.sign.derivationPath || null)) out.push("the child key");
    if (Boolean(sd.taproot) !== Boolean(op.sign.taproot)) out.push("the Taproot tweak");
  }
  return out;
}

async function operationsView() {
  const data = await gql(`query { operations(filter: { limit: 100 }) { ${OP_FIELDS} } }`);
  const rows = data.operations.map((op) =>
    h(
      "tr",
      { class: "link", "data-operation": op.id, onclick: () => (location.hash = `#/operation/${op.id}`) },
      h("td", {}, h("code", {}, short(op.id))),
      h("td", {}, op.kind, op.sign ? h("span", { class: "muted" }, ` · ${op.sign.payloadKind}`) : null),
      h("td", {}, badge(op.state)),
      h("td", {}, op.vault.name, h("span", { class: "muted" }, ` · ${op.vault.curve}`)),
      h("td", { class: "wide" }, `${op.approvedWeight} / ${op.requiredWeight}`),
      h("td", { class: "wide" }, when(op.createdAt)),
    ),
  );
  render(
    h("h1", {}, "Operations"),
    h(
      "div",
      { class: "card" },
      rows.length
        ? table([["Operation"], ["Kind"], ["State"], ["Vault"], ["Approvals", "wide"], ["Created", "wide"]], rows)
        : h("p", { class: "muted" }, "No operations yet."),
    ),
  );
}

async function operationView(id) {
  const data = await gql(
    `query($id: ID!) { ${DEVICES} operation(id: $id) { ${OP_FIELDS} rejectionReason startedBy
      votes { deviceId vote weight at }
      committee { deviceId name index }
      result { publicKey signature recoveryId submittedBy rawTransaction txHash }
      failure { reason culpritDeviceIds reportedBy }
      humanApprovals { deviceId request credentialIds postedAt answers { seq verdict credentialId answeredBy at } } } }`,
    { id },
  );
  learnDevices(data);
  const op = data.operation;
  const parts = [
    h("h1", {}, `${op.kind} `, badge(op.state)),
    h(
      "div",
      { class: "card" },
      h(
        "dl",
        {},
        h("dt", {}, "Operation"), h("dd", {}, h("code", {}, op.id)),
        h("dt", {}, "Vault"), h("dd", {}, `${op.vault.name} (${op.vault.curve}, ${op.vault.threshold} to sign)`),
        h("dt", {}, "Approvals"), h("dd", {}, `${op.approvedWeight} of ${op.requiredWeight} needed`),
        op.sign ? [h("dt", {}, "Payload"), h("dd", {}, op.sign.payloadKind)] : null,
        messageText(op.sign) !== null ? [h("dt", {}, "Message"), h("dd", { id: "message" }, messageText(op.sign))] : null,
        op.sign && op.sign.signingDigest ? [h("dt", {}, "Digest"), h("dd", {}, h("code", {}, op.sign.signingDigest))] : null,
        h("dt", {}, "Created"), h("dd", {}, when(op.createdAt)),
        h("dt", {}, "Expires"), h("dd", {}, when(op.expiresAt)),
        op.rejectionReason ? [h("dt", {}, "Rejected"), h("dd", {}, op.rejectionReason)] : null,
      ),
    ),
  ];
  for (const req of op.humanApprovals) parts.push(humanApprovalCard(op, req));
  parts.push(h("h2", {}, "Votes"));
  parts.push(
    h(
      "div",
      { class: "card" },
      op.votes.length
        ? table(
            [["Device"], ["Vote"], ["Weight"], ["When", "wide"]],
            op.votes.map((v) =>
              h("tr", {}, h("td", {}, device(v.deviceId)), h("td", {}, badge(v.vote)), h("td", {}, v.weight), h("td", { class: "wide" }, when(v.at))),
            ),
          )
        : h("p", { class: "muted" }, "No votes yet."),
    ),
  );
  if (op.committee.length) {
    parts.push(h("h2", {}, "Committee"));
    parts.push(
      h(
        "div",
        { class: "card" },
        table(
          [["Device"], ["Name"], ["Share"]],
          op.committee.map((m) => h("tr", {}, h("td", {}, device(m.deviceId)), h("td", {}, m.name), h("td", {}, m.index ?? ""))),
        ),
      ),
    );
  }
  if (op.result) {
    const r = op.result;
    parts.push(h("h2", {}, "Result"));
    parts.push(
      h(
        "div",
        { class: "card", id: "result" },
        h(
          "dl",
          {},
          r.publicKey ? [h("dt", {}, "Public key"), h("dd", {}, h("code", {}, r.publicKey))] : null,
          r.signature ? [h("dt", {}, "Signature"), h("dd", {}, h("code", { id: "signature" }, r.signature))] : null,
          r.recoveryId !== null && r.recoveryId !== undefined ? [h("dt", {}, "Recovery id"), h("dd", {}, r.recoveryId)] : null,
          r.txHash ? [h("dt", {}, "Transaction"), h("dd", {}, h("code", {}, r.txHash))] : null,
          h("dt", {}, "Submitted by"), h("dd", {}, device(r.submittedBy || "")),
        ),
        r.signature
          ? h("p", { class: "muted" }, "The coordinator verified this signature against the vault's key before it accepted it.")
          : null,
        h("p", { id: "verified", role: "status" }),
      ),
    );
  }
  if (op.failure) {
    parts.push(h("h2", {}, "Failure"));
    parts.push(
      h(
        "div",
        { class: "card error" },
        op.failure.reason,
        op.failure.culpritDeviceIds.length ? h("p", {}, `Culprits: ${op.failure.culpritDeviceIds.join(", ")}`) : null,
      ),
    );
  }
  render(...parts);
  const here = verifyHere(op);
  const shown = document.getElementById("verified");
  if (shown && here !== null) {
    shown.className = here.ok ? "verified" : "error";
    shown.textContent = here.text;
  }
}

// What a human-approved device asks people, with Approve / Reject buttons that sign the
// exact request bytes and the verdict with a passkey.
function humanApprovalCard(op, req) {
  // The exact bytes, laid out only when that loses nothing (a number beyond 2^53 would be
  // rounded by JavaScript: then they are shown as they came).
  let shown = req.request;
  let request = null;
  try {
    request = JSON.parse(req.request);
    if (JSON.stringify(request) === req.request) shown = JSON.stringify(request, null, 2);
  } catch (_) {
    request = null;
  }
  let differ = [];
  let summary = null;
  try {
    differ = request ? differences(op, request) : [];
    summary = request ? requestSummary(request) : null;
  } catch (_) {
    // A request this page cannot read: it shows the bytes alone.
    summary = null;
  }
  const exact = request !== null && JSON.stringify(request) === req.request;
  const status = h("p", { role: "status" });
  const canAnswer = ["approver", "operator", "admin"].includes(state.user.role) && op.state === "AwaitingApproval";
  const answer = (verdict) => async () => {
    status.className = "";
    status.textContent = "Waiting for your passkey…";
    try {
      const assertion = await signWithPasskey(verdict, req);
      await gql(
        `mutation($o: ID!, $d: ID!, $v: String!, $a: String!) { answerAsPerson(operationId: $o, deviceId: $d, verdict: $v, assertion: $a) { seq } }`,
        { o: op.id, d: req.deviceId, v: verdict, a: JSON.stringify(assertion) },
      );
      status.className = "notice";
      status.textContent = `Your ${verdict} was sent; the device checks it itself.`;
    } catch (e) {
      status.className = "error";
      status.textContent = e.message || String(e);
    }
  };
  return h(
    "div",
    { class: "card human", "data-device": req.deviceId },
    h("h2", {}, "People's approval for device ", device(req.deviceId)),
    differ.length
      ? h(
          "p",
          { class: "error", role: "alert", id: "request-differs" },
          `⚠ The coordinator's account of this operation differs from the device's request (${differ.join(", ")}). Read only what follows: it is what your passkey signs.`,
        )
      : null,
    h("p", { class: "muted" }, "What you approve, read from the device's own request (your passkey signs exactly this request and your answer):"),
    summary
      ? h("dl", { class: "summary" }, summary.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, h("code", {}, v))]))
      : h("p", { class: "error" }, "This page cannot summarise this request: read it below before answering."),
    summary && !exact ? h("p", { class: "error" }, "⚠ Some numbers in this request are too large for this page to show exactly: read the request below.") : null,
    h("details", {}, h("summary", {}, "The request, exactly"), h("pre", { class: "request" }, shown)),
    req.answers.length
      ? table(
          [["Answer"], ["Passkey"], ["When", "wide"]],
          req.answers.map((a) => h("tr", {}, h("td", {}, badge(a.verdict)), h("td", {}, h("code", {}, short(a.credentialId))), h("td", { class: "wide" }, when(a.at)))),
        )
      : h("p", { class: "muted" }, "No answers yet."),
    canAnswer
      ? h(
          "div",
          { class: "actions" },
          h("button", { type: "button", class: "approve", onclick: answer("approve") }, "Approve with passkey"),
          h("button", { type: "button", class: "reject", onclick: answer("reject") }, "Reject with passkey"),
        )
      : null,
    status,
  );
}

// SHA-256("vsigner human approval v1" 0x00 ‖ verdict ‖ 0x00 ‖ request): the challenge the
// device computes from the request it built itself.
async function challengeOf(verdict, request) {
  const enc = new TextEncoder();
  const parts = [enc.encode("vsigner human approval v1\0"), enc.encode(verdict), new Uint8Array([0]), enc.encode(request)];
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return crypto.subtle.digest("SHA-256", all);
}

async function signWithPasskey(verdict, req) {
  if (!window.PublicKeyCredential) throw new Error("This browser has no passkeys (WebAuthn).");
  const credential = await navigator.credentials.get({
    publicKey: {
      challenge: await challengeOf(verdict, req.request),
      rpId: location.hostname,
      allowCredentials: req.credentialIds.map((id) => ({ type: "public-key", id: fromB64url(id) })),
      userVerification: "required",
      timeout: 120000,
    },
  });
  if (!credential) throw new Error("No passkey answered.");
  if (typeof credential.toJSON === "function") return credential.toJSON();
  const r = credential.response;
  return {
    id: credential.id,
    rawId: b64url(credential.rawId),
    type: credential.type,
    response: {
      authenticatorData: b64url(r.authenticatorData),
      clientDataJSON: b64url(r.clientDataJSON),
      signature: b64url(r.signature),
      userHandle: r.userHandle ? b64url(r.userHandle) : null,
    },
    clientExtensionResults: credential.getClientExtensionResults(),
  };
}

async function vaultsView() {
  const data = await gql(
    `query { ${DEVICES} vaults { id name curve threshold status publicKey keyGeneration ethereumAddress signers { deviceId weight } } }`,
  );
  learnDevices(data);
  const rows = data.vaults.map((v) =>
    h(
      "tr",
      { "data-vault": v.id },
      h(
        "td",
        {},
        v.name,
        h("div", { class: "muted mono" }, short(v.id)),
        mayRequest() && v.status === "Active"
          ? [
              h("a", { href: `#/sign/${v.id}`, class: "request" }, "Request a signature"),
              h("a", { href: `#/reshare/${v.id}`, class: "request" }, "Reshare"),
            ]
          : null,
      ),
      h("td", {}, v.curve),
      h("td", {}, `${v.threshold} of ${v.signers.reduce((n, s) => n + s.weight, 0)}`),
      h("td", {}, badge(v.status)),
      h(
        "td",
        { class: "wide" },
        v.signers.map((s) => h("div", {}, device(s.deviceId), s.weight > 1 ? ` ×${s.weight}` : "")),
      ),
      h(
        "td",
        { class: "wide" },
        v.publicKey ? h("code", {}, v.publicKey) : h("span", { class: "muted" }, "no key yet"),
        v.ethereumAddress ? h("div", {}, h("code", {}, v.ethereumAddress)) : null,
        h("div", { class: "muted" }, `key generation ${v.keyGeneration}`),
      ),
    ),
  );
  render(
    h("h1", {}, "Vaults"),
    h(
      "div",
      { class: "card" },
      rows.length
        ? table([["Vault"], ["Scheme"], ["Threshold"], ["Status"], ["Signers", "wide"], ["Key", "wide"]], rows)
        : h("p", { class: "muted" }, "No vaults yet."),
    ),
    mayRequest() ? newVaultForm(data.devices) : null,
  );
}

// The devices to choose signers from, with their weights (`current`: the signers ticked
// at first).
function signerTable(devices, current = []) {
  const rows = devices.map((d) => {
    const now = current.find((s) => s.deviceId === d.id);
    return h(
      "tr",
      {},
      h("td", {}, h("input", { type: "checkbox", name: "signer", value: d.id, "aria-label": d.name, checked: now ? true : null })),
      h("td", {}, d.name, " ", h("code", { class: "muted" }, short(d.id))),
      h("td", {}, h("input", { type: "number", name: `weight-${d.id}`, min: 1, max: 16, value: now ? now.weight : 1, class: "weight" })),
    );
  });
  return table([["", ""], ["Device"], ["Weight"]], rows);
}

// The ticked signers of a form made with `signerTable`.
function chosenSigners(form) {
  return [...form.querySelectorAll("input[name=signer]:checked")].map((c) => ({
    deviceId: c.value,
    weight: Number(form.querySelector(`input[name="weight-${c.value}"]`).value || 1),
  }));
}

// Creating a vault: its key generation starts at once; the page follows it.
function newVaultForm(devices) {
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "card", id: "new-vault" },
    h("h2", {}, "New vault"),
    h("label", { for: "vault-name" }, "Name"),
    h("input", { id: "vault-name", name: "name", required: true, maxlength: 200 }),
    h("label", { for: "vault-scheme" }, "Scheme"),
    h(
      "select",
      { id: "vault-scheme", name: "scheme" },
      h("option", { value: "secp256k1" }, "ECDSA on secp256k1 (Ethereum, Bitcoin)"),
      h("option", { value: "secp256r1" }, "ECDSA on P-256"),
      h("option", { value: "ed25519" }, "EdDSA on ed25519"),
      h("option", { value: "bip340" }, "Schnorr, BIP-340 (Taproot)"),
    ),
    h("label", {}, "Signers (a weight is the number of shares a device holds)"),
    signerTable(devices),
    h("label", { for: "vault-threshold" }, "Shares needed to sign"),
    h("input", { id: "vault-threshold", name: "threshold", type: "number", min: 1, value: 2, required: true }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create vault")),
    error,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const signers = chosenSigners(form);
    try {
      const data = await gql(`mutation($i: CreateVaultInput!) { createVault(input: $i) { id } }`, {
        i: { name: form.name.value, curve: form.scheme.value, threshold: Number(form.threshold.value), signers },
      });
      location.hash = `#/operation/${data.createVault.id}`;
    } catch (e) {
      error.textContent = e.message;
    }
  });
  return form;
}

// ---------- resharing ----------

// A reshare moves the vault's key to a new set of signers or a new threshold: the public
// key stays, the old shares stop signing once it completes.
async function reshareView(vaultId) {
  const data = await gql(
    `query($id: ID!) { ${DEVICES} vault(id: $id) { id name curve threshold status signers { deviceId weight } } }`,
    { id: vaultId },
  );
  learnDevices(data);
  const v = data.vault;
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "card", id: "reshare" },
    h("label", {}, "New signers (a weight is the number of shares a device holds)"),
    signerTable(data.devices, v.signers),
    h("label", { for: "reshare-threshold" }, "Shares needed to sign"),
    h("input", { id: "reshare-threshold", name: "threshold", type: "number", min: 1, value: v.threshold, required: true }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Request reshare")),
    error,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      const made = await gql(`mutation($i: RequestReshareInput!) { requestReshare(input: $i) { id } }`, {
        i: { vaultId: v.id, newThreshold: Number(form.threshold.value), newSigners: chosenSigners(form) },
      });
      location.hash = `#/operation/${made.requestReshare.id}`;
    } catch (e) {
      error.textContent = e.message;
    }
  });
  render(
    h("h1", {}, `Reshare ${v.name}`),
    h(
      "p",
      { class: "muted" },
      `${v.curve}, now ${v.threshold} shares to sign. The public key stays the same; the new signers get fresh shares, and the old shares stop signing once the reshare completes.`,
    ),
    form,
  );
}

// ---------- requesting a signature ----------

async function signView(vaultId) {
  const data = await gql(`query($id: ID!) { vault(id: $id) { id name curve threshold status ethereumAddress } }`, { id: vaultId });
  const v = data.vault;
  const error = h("p", { class: "error", role: "alert" });
  const field = (id, label, attrs = {}) => [h("label", { for: id }, label), h("input", { id, name: id, ...attrs })];
  const kinds = [["message", "A message (text)"], ["digest", "A 32-byte digest (hex)"]];
  if (v.curve === "secp256k1") kinds.push(["eth", "An Ethereum transaction (EIP-1559)"]);
  const payload = h("div", {});
  const form = h(
    "form",
    { class: "card", id: "request-signature" },
    h("label", { for: "kind" }, "What to sign"),
    h("select", { id: "kind", name: "kind" }, kinds.map(([k, label]) => h("option", { value: k }, label))),
    payload,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Request signature")),
    error,
  );
  const show = () => {
    const kind = form.kind.value;
    payload.replaceChildren(
      ...(kind === "message"
        ? field("text", "Message", { required: true })
        : kind === "digest"
          ? field("digest", "Digest (32 bytes, hex)", { required: true, pattern: "(0x)?[0-9a-fA-F]{64}" })
          : [
              ...field("to", "To (address)", { required: true, placeholder: "0x…" }),
              ...field("value", "Amount (ETH)", { required: true, value: "0.01" }),
              ...field("chain", "Chain id", { required: true, type: "number", value: 1 }),
              ...field("nonce", "Nonce", { required: true, type: "number", value: 0 }),
              ...field("gas", "Gas limit", { required: true, type: "number", value: 21000 }),
              ...field("fee", "Max fee per gas (gwei)", { required: true, value: "30" }),
              ...field("tip", "Max priority fee per gas (gwei)", { required: true, value: "1" }),
              ...field("data", "Data (hex)", { value: "0x" }),
            ]),
    );
  };
  form.kind.addEventListener("change", show);
  show();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    try {
      const input = { vaultId: v.id };
      const kind = form.kind.value;
      if (kind === "message") {
        input.message = toHex(new TextEncoder().encode(form.text.value));
      } else if (kind === "digest") {
        input.digest = form.digest.value.replace(/^0x/, "");
      } else {
        input.ethTx = eip1559({
          to: form.to.value,
          value: form.value.value,
          chain: form.chain.value,
          nonce: form.nonce.value,
          gas: form.gas.value,
          fee: form.fee.value,
          tip: form.tip.value,
          data: form.data.value,
        });
      }
      const made = await gql(`mutation($i: RequestSignatureInput!) { requestSignature(input: $i) { id } }`, { i: input });
      location.hash = `#/operation/${made.requestSignature.id}`;
    } catch (e) {
      error.textContent = e.message;
    }
  });
  render(
    h("h1", {}, `Request a signature from ${v.name}`),
    h("p", { class: "muted" }, `${v.curve}, ${v.threshold} shares to sign`, v.ethereumAddress ? `, address ${v.ethereumAddress}` : ""),
    form,
  );
}

async function devicesView() {
  const data = await gql(`query { devices { id name kind status identitySigningKey lastSeenAt } }`);
  // How long ago, in words a person reads at a glance.
  const ago = (t) => {
    if (!t) return "not since the coordinator started";
    const s = Math.max(0, Math.round((Date.now() - new Date(t).getTime()) / 1000));
    return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : when(t);
  };
  const rows = data.devices.map((d) =>
    h(
      "tr",
      {},
      h("td", {}, d.name, h("div", { class: "muted mono" }, d.id)),
      h("td", {}, d.kind),
      h("td", {}, badge(d.status)),
      h("td", { class: d.lastSeenAt ? "" : "muted", title: d.lastSeenAt || "" }, ago(d.lastSeenAt)),
      h("td", { class: "wide" }, h("code", {}, d.identitySigningKey)),
    ),
  );
  render(
    h("h1", {}, "Devices"),
    h(
      "div",
      { class: "card" },
      rows.length ? table([["Device"], ["Kind"], ["Status"], ["Last seen"], ["Identity key", "wide"]], rows) : h("p", { class: "muted" }, "No devices yet."),
    ),
  );
}

async function auditView() {
  const data = await gql(`query { auditLog { seq entityKind entityId at actor event detail } }`);
  const rows = data.auditLog
    .slice(-200)
    .reverse()
    .map((e) =>
      h(
        "tr",
        {},
        h("td", {}, e.seq),
        h("td", {}, when(e.at)),
        h("td", {}, e.event),
        h("td", {}, `${e.entityKind} `, h("code", {}, short(e.entityId))),
        h("td", { class: "wide" }, h("code", {}, short(e.actor || ""))),
        h("td", { class: "wide" }, h("code", {}, e.detail.length > 160 ? `${e.detail.slice(0, 160)}…` : e.detail)),
      ),
    );
  const result = h("div", { id: "audit-verified", role: "status" });
  const check = async () => {
    result.replaceChildren(h("p", { class: "muted" }, "Checking every device signature…"));
    try {
      const all = await gql(
        `query { me { organisationId } devices { id identitySigningKey record } auditLog { seq entityKind entityId at actor event detail } }`,
      );
      const r = verifyAudit({ organisationId: all.me.organisationId, devices: all.devices, auditLog: all.auditLog });
      result.replaceChildren(
        ...[
          h(
          "p",
          { class: r.problems.length ? "error" : "verified" },
          `${r.problems.length ? "✗" : "✓"} ${r.statements} device statements and ${r.records} device records verified in this browser; ${r.actions} device actions each signed by their device${r.problems.length ? `; ${r.problems.length} problems:` : "."}`,
        ),
          r.problems.length ? h("ul", {}, r.problems.slice(0, 50).map((p) => h("li", {}, p))) : null,
          h("p", { class: "muted" }, "The devices' public keys are the coordinator's list: compare them with your devices' own (Devices page, and each device's log) to rely on this."),
        ].filter(Boolean),
      );
    } catch (e) {
      result.replaceChildren(h("p", { class: "error" }, e.message));
    }
  };
  render(
    h("h1", {}, "Audit log"),
    h(
      "div",
      { class: "card" },
      h("p", {}, "Every vote, result and failure a device reports reaches this log with the device's own Ed25519 signature. Check them all here (as vsigner audit verify does):"),
      h("div", { class: "actions" }, h("button", { type: "button", id: "verify-audit", onclick: check }, "Verify device signatures")),
      result,
    ),
    h("p", { class: "muted" }, "The latest 200 entries, newest first."),
    h("div", { class: "card" }, table([["#"], ["When"], ["Event"], ["Entity"], ["Actor", "wide"], ["Detail", "wide"]], rows)),
  );
}

// ---------- passkeys ----------

// A POST of the console's own routes, with the CSRF token.
async function post(path, body) {
  const resp = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": state.csrf || "" },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  const data = resp.status === 204 ? {} : await resp.json();
  if (!resp.ok) throw new ApiError(data.message || resp.statusText, data.error);
  return data;
}

// One's own account: the password. Changing it ends one's other sessions.
async function accountView() {
  const error = h("p", { class: "error", role: "alert" });
  const status = h("p", { role: "status" });
  const field = (id, label, attrs = {}) => [h("label", { for: id }, label), h("input", { id, name: id, type: "password", required: true, ...attrs })];
  const form = h(
    "form",
    { class: "card", id: "change-password" },
    h("h2", {}, "Change your password"),
    ...field("current-password", "Current password", { autocomplete: "current-password" }),
    ...field("new-password", "New password (12 characters or more)", { autocomplete: "new-password", minlength: 12, maxlength: 256 }),
    ...field("repeat-password", "New password again", { autocomplete: "new-password" }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Change password")),
    status,
    error,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    status.textContent = "";
    if (form["new-password"].value !== form["repeat-password"].value) {
      error.textContent = "The new password and its repetition differ.";
      return;
    }
    try {
      await post("/console/password", { current: form["current-password"].value, new: form["new-password"].value });
      form.reset();
      status.className = "notice";
      status.textContent = "Your password was changed; your other sessions have ended.";
    } catch (e) {
      error.textContent = e.message;
    }
  });
  render(
    h("h1", {}, `${state.user.name}`),
    h("p", { class: "muted" }, `Role: ${state.user.role}. An admin or an operator can also give you a new password (resetConsolePassword) if you forget yours.`),
    form,
  );
}

async function registerPasskey() {
  if (!window.PublicKeyCredential) throw new Error("This browser has no passkeys (WebAuthn).");
  const options = await post("/console/passkeys/options", {});
  // The relying party is this page's host, whatever the options say, and no extension is
  // asked for: the coordinator's options choose neither.
  options.publicKey.rp = { ...options.publicKey.rp, id: location.hostname };
  delete options.publicKey.extensions;
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON
    ? PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey)
    : {
        ...options.publicKey,
        challenge: fromB64url(options.publicKey.challenge),
        user: { ...options.publicKey.user, id: fromB64url(options.publicKey.user.id) },
        excludeCredentials: (options.publicKey.excludeCredentials || []).map((c) => ({ ...c, id: fromB64url(c.id) })),
      };
  const credential = await navigator.credentials.create({ publicKey });
  if (!credential) throw new Error("No passkey was made.");
  const json = typeof credential.toJSON === "function"
    ? credential.toJSON()
    : {
        id: credential.id,
        rawId: b64url(credential.rawId),
        type: credential.type,
        response: {
          attestationObject: b64url(credential.response.attestationObject),
          clientDataJSON: b64url(credential.response.clientDataJSON),
        },
        clientExtensionResults: credential.getClientExtensionResults(),
      };
  return post("/console/passkeys", json);
}

// Register one's own passkey; choose passkeys and read the file a human-approved device
// takes as HumanApprovalPasskeysFile.
async function passkeysView() {
  const data = await gql(`query { consolePasskeys { credentialId userName userRole registeredAt fileEntry } }`);
  const status = h("p", { role: "status" });
  const file = h("pre", { id: "passkeys-file" });
  const rows = data.consolePasskeys.map((p) =>
    h(
      "tr",
      {},
      h("td", {}, h("input", { type: "checkbox", value: p.credentialId, "aria-label": p.userName, onchange: () => update() })),
      h("td", {}, p.userName, h("div", { class: "muted" }, p.userRole)),
      h("td", {}, h("code", {}, p.credentialId)),
      h("td", { class: "wide" }, when(p.registeredAt)),
    ),
  );
  const update = () => {
    const chosen = new Set([...main().querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value));
    const entries = data.consolePasskeys.filter((p) => chosen.has(p.credentialId)).map((p) => JSON.parse(p.fileEntry));
    file.textContent = JSON.stringify({ passkeys: entries }, null, 2);
  };
  const register = h(
    "button",
    {
      type: "button",
      id: "register-passkey",
      onclick: async () => {
        status.className = "";
        status.textContent = "Waiting for your passkey…";
        try {
          const made = await registerPasskey();
          status.className = "notice";
          status.textContent = `Registered passkey ${made.credentialId}.`;
          setTimeout(() => state.view.refresh(), 400);
        } catch (e) {
          status.className = "error";
          status.textContent = e.message || String(e);
        }
      },
    },
    "Register a passkey",
  );
  render(
    h("h1", {}, "Passkeys"),
    h(
      "div",
      { class: "card" },
      h("p", {}, "A passkey lets you approve or reject, as yourself, what a human-approved device asks. Register one here with your device's biometrics; then give its entry to whoever runs the device, who puts it in the device's passkeys file."),
      h("div", { class: "actions" }, register),
      status,
    ),
    h("h2", {}, "The organisation's passkeys"),
    h(
      "div",
      { class: "card" },
      rows.length ? table([["", ""], ["Person"], ["Credential id"], ["Registered", "wide"]], rows) : h("p", { class: "muted" }, "No passkeys yet."),
      h("p", { class: "muted" }, "Tick the people whose answers a device takes: below is its passkeys file (HumanApprovalPasskeysFile). The coordinator made these entries and does not vouch for them: prove each by possession below before a device trusts it."),
      file,
    ),
    ...proofCard(),
  );
  update();
}

// Proving a passkeys file by possession: each person, in turn, signs a fresh challenge with
// their authenticator, checked here against their entry's key (assets/passkeys.js). Every
// entry is listed with its state, so one nobody proved stands out; editing the file starts
// over.
function proofCard() {
  const text = h("textarea", { id: "proof-file", rows: 6, spellcheck: "false", placeholder: '{"passkeys": [ … ]}' });
  const results = h("div", { id: "proof" });
  const error = h("p", { class: "error", role: "alert" });
  let entries = [];
  const outcome = new Map();
  const show = async () => {
    error.textContent = "";
    results.replaceChildren();
    try {
      entries = text.value.trim() ? fileEntries(text.value) : [];
    } catch (e) {
      entries = [];
      error.textContent = e.message;
      return;
    }
    if (!entries.length) return;
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text.value)));
    const unproven = entries.filter((e) => !outcome.has(e.id) || !outcome.get(e.id).ok).length;
    results.replaceChildren(
      table(
        [["Entry"], ["Credential id", "wide"], ["State"]],
        entries.map((e) => {
          const o = outcome.get(e.id);
          return h(
            "tr",
            { "data-credential": e.id },
            h("td", {}, e.name),
            h("td", { class: "wide" }, h("code", {}, short(e.id))),
            h(
              "td",
              { class: `status ${o ? (o.ok ? "verified" : "error") : "muted"}` },
              o
                ? o.ok
                  ? `✓ ${e.name}: held by the authenticator that signed, verified in this page against the file's key.`
                  : `✗ ${e.name}: ${o.why}. Do not give this file to a device.`
                : "not proven yet",
            ),
          );
        }),
      ),
      h(
        "p",
        { class: unproven ? "error" : "verified", id: "proof-summary" },
        unproven
          ? `${unproven} of ${entries.length} entries not proven: a device should take the file only once each is.`
          : `Every entry is proven. The file's SHA-256 is ${toHex(digest)}: check that the device's copy has it (sha256sum FILE).`,
      ),
    );
  };
  text.addEventListener("input", () => {
    outcome.clear();
    show();
  });
  const prove = async () => {
    error.textContent = "";
    try {
      if (!entries.length) await show();
      if (!entries.length) throw new Error("Paste a passkeys file first.");
      const proof = await proveByPossession(entries);
      outcome.set(proof.entry.id, proof);
      await show();
    } catch (e) {
      error.textContent = e.message || String(e);
    }
  };
  return [
    h("h2", {}, "Prove a passkeys file"),
    h(
      "div",
      { class: "card" },
      h(
        "p",
        {},
        "Paste the file a device will use. Each person whose passkey is in it signs a fresh challenge here with their own authenticator; the page checks it against their entry's public key. This proves an entry only on a console your organisation serves itself (vsigner console), not on one the coordinator serves.",
      ),
      text,
      h("div", { class: "actions" }, h("button", { type: "button", id: "prove", onclick: prove }, "Prove my passkey in this file")),
      error,
      results,
    ),
  ];
}

start().catch(showError);
