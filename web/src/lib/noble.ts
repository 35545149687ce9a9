// @noble/ed25519 with its SHA-512, for browsers without Ed25519 in WebCrypto (plain
// http on a LAN or VPN address): loaded only there.

import * as ed from "@noble/ed25519";
import { sha512 } from "@noble/hashes/sha2.js";

ed.hashes.sha512 = sha512;

export { ed };
