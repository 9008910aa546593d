// thirdway console: checks the log page's Merkle proofs in the browser with WebCrypto SHA-256,
// independently of the server's own check (RFC 9162 section 2.1.3.2 and 2.1.4.2).
// Leaf hash = SHA-256(0x00 || entry), node hash = SHA-256(0x01 || left || right).
"use strict";
(function () {
  function fromB64(text) {
    const raw = atob(text);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  async function sha256(prefix, ...parts) {
    let length = 1;
    for (const p of parts) length += p.length;
    const buffer = new Uint8Array(length);
    buffer[0] = prefix;
    let at = 1;
    for (const p of parts) { buffer.set(p, at); at += p.length; }
    return new Uint8Array(await crypto.subtle.digest("SHA-256", buffer));
  }

  const leafHash = (entry) => sha256(0, entry);
  const nodeHash = (left, right) => sha256(1, left, right);

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  // RFC 9162 2.1.3.2: is leaf `index` of the tree of `size` under `root`?
  async function inclusion(entry, index, size, proof, root) {
    if (index >= size) return false;
    let fn = index, sn = size - 1;
    let r = await leafHash(entry);
    for (const p of proof) {
      if (sn === 0) return false;
      if (fn % 2 === 1 || fn === sn) {
        r = await nodeHash(p, r);
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      } else {
        r = await nodeHash(r, p);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return sn === 0 && equal(r, root);
  }

  // RFC 9162 2.1.4.2: is the tree of size1 (root1) a prefix of the tree of size2 (root2)?
  async function consistency(size1, size2, proof, root1, root2) {
    if (size1 < 1 || size1 > size2) return false;
    if (size1 === size2) return proof.length === 0 && equal(root1, root2);
    if (proof.length === 0) return false;
    let path = proof.slice();
    if ((size1 & (size1 - 1)) === 0) path = [root1, ...path];
    let fn = size1 - 1, sn = size2 - 1;
    while (fn % 2 === 1) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    let fr = path[0], sr = path[0];
    for (const c of path.slice(1)) {
      if (sn === 0) return false;
      if (fn % 2 === 1 || fn === sn) {
        fr = await nodeHash(c, fr);
        sr = await nodeHash(c, sr);
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      } else {
        sr = await nodeHash(sr, c);
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    return equal(fr, root1) && equal(sr, root2) && sn === 0;
  }

  const list = (text) => (text ? text.split(",").filter(Boolean).map(fromB64) : []);

  function show(output, ok, what) {
    output.textContent = ok ? "verified in your browser: " + what : "FAILED in your browser: " + what;
    output.className = ok ? "ok" : "bad";
    output.dataset.result = ok ? "verified" : "failed";
  }

  async function run() {
    if (!window.crypto || !crypto.subtle) {
      for (const o of document.querySelectorAll("output[data-check]")) {
        o.textContent = "this browser offers no WebCrypto here (use HTTPS or localhost)";
        o.dataset.result = "unavailable";
      }
      return;
    }
    for (const o of document.querySelectorAll("output[data-check=inclusion]")) {
      const d = o.dataset;
      const ok = await inclusion(fromB64(d.entry), Number(d.index), Number(d.size),
        list(d.proof), fromB64(d.root));
      show(o, ok, "entry " + d.index + " is in the tree of " + d.size);
    }
    for (const o of document.querySelectorAll("output[data-check=consistency]")) {
      const d = o.dataset;
      const ok = await consistency(Number(d.size1), Number(d.size2), list(d.proof),
        fromB64(d.root1), fromB64(d.root2));
      show(o, ok, "size " + d.size1 + " is a prefix of size " + d.size2);
    }
  }

  window.thirdwayVerify = { inclusion, consistency, leafHash, fromB64, run };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
  else run();
})();
