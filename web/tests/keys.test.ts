// Key files and signing: the PEM that `keygen generate` writes, bad input named
// plainly, and RFC 8032's first test vector, in WebCrypto and in the fallback.

import { describe, expect, it } from "vitest";

import { decodeBase64, encodeBase64 } from "../src/lib/b64";
import { KeyFileError, importSeed, parsePrivateKeyPem, pkcs8, publicKeyText, sign } from "../src/lib/keys";

const hex = (s: string) => Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

// RFC 8032, section 7.1, TEST 1.
const SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
const SIGNATURE =
  "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

function pem(der: Uint8Array, label = "PRIVATE KEY"): string {
  const body = btoa(String.fromCharCode(...der)).replace(/(.{64})/g, "$1\n");
  return `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`;
}

describe("key files", () => {
  it("reads the seed of a PKCS#8 v1 PEM as keygen writes it", () => {
    const seed = parsePrivateKeyPem(pem(pkcs8(hex(SECRET))));
    expect(toHex(seed)).toBe(SECRET);
  });

  it("reads a PKCS#8 v2 PEM (with the public key attached)", () => {
    // 30 51 | 02 01 01 | 30 05 06 03 2b6570 | 04 22 04 20 <seed> | 81 21 00 <public>
    const v2 = new Uint8Array([
      0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
      ...hex(SECRET), 0x81, 0x21, 0x00, ...hex(PUBLIC),
    ]);
    expect(toHex(parsePrivateKeyPem(pem(v2)))).toBe(SECRET);
  });

  it.each([
    ["hello, I am not a key", /not a key file/],
    [pem(hex(PUBLIC), "PUBLIC KEY"), /public key/],
    [pem(hex(SECRET), "ENCRYPTED PRIVATE KEY"), /encrypted/],
    ["-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----", /openssh private key/],
    ["-----BEGIN PRIVATE KEY-----\nAAAA", /END line is missing/],
    ["-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----", /not base64/],
    [pem(new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00])), /cut short|not a valid/],
  ])("names what is wrong with %#", (text, message) => {
    expect(() => parsePrivateKeyPem(text)).toThrow(KeyFileError);
    expect(() => parsePrivateKeyPem(text)).toThrow(message);
  });

  it("refuses a key of another algorithm", () => {
    // An X25519 key: OID 1.3.101.110.
    const x25519 = pkcs8(hex(SECRET));
    x25519[11] = 0x6e;
    expect(() => parsePrivateKeyPem(pem(x25519))).toThrow(/not an Ed25519 key/);
  });
});

describe("signing", () => {
  it("matches RFC 8032 test vector 1 with a non-extractable WebCrypto key", async () => {
    const key = await importSeed(hex(SECRET));
    expect(key.kind).toBe("webcrypto");
    if (key.kind !== "webcrypto") return;
    expect(key.privateKey.extractable).toBe(false);
    expect(toHex(key.publicKey)).toBe(PUBLIC);
    expect(toHex(await sign(key, ""))).toBe(SIGNATURE);
  });

  it("matches RFC 8032 test vector 1 with the fallback signer", async () => {
    const key = { kind: "bytes" as const, seed: hex(SECRET), publicKey: hex(PUBLIC) };
    expect(toHex(await sign(key, ""))).toBe(SIGNATURE);
  });

  it("writes the public key as Matrix does (unpadded base64)", async () => {
    const key = await importSeed(hex(SECRET));
    expect(publicKeyText(key)).toBe(encodeBase64(hex(PUBLIC)));
    expect(publicKeyText(key)).not.toMatch(/=$/);
    expect(toHex(decodeBase64(`${publicKeyText(key)}=`))).toBe(PUBLIC);
  });
});
