//! Ed25519 keys: parsing and checking public keys, generating key pairs, and the
//! identifiers shown to people (`key_id`, `fingerprint`). Pure: no I/O, no state.

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Standard base64 that accepts input with or without padding but rejects
/// non-canonical encodings (non-zero trailing bits).
const B64_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not base64 (standard alphabet, canonical): {0}")]
    Base64(String),
    #[error("an Ed25519 public key is 32 bytes, this one is {0}")]
    Length(usize),
    #[error("not a point on the Ed25519 curve")]
    NotOnCurve,
    #[error("not the canonical encoding of its point")]
    NonCanonical,
    #[error("a weak key (small order): anyone could sign for it")]
    Weak,
    #[error("not in the prime-order subgroup (has a torsion component)")]
    Torsion,
    #[error("not a PEM public key: {0}")]
    Pem(String),
    #[error("cannot encode the private key as PKCS#8: {0}")]
    Encode(String),
}

/// A public key that passed every check (safe to register and to verify against), or,
/// from [`PublicKey::from_base64_at_login`], every check but the torsion check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses unpadded or padded standard base64 of the 32 raw bytes.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = decode_base64(text.trim())?;
        Self::from_slice(&bytes)
    }

    /// Parses a key to log in with: every check of [`Self::from_base64`] but the
    /// torsion check, which alone costs more than verifying a signature. A key with a
    /// torsion component is never registered, so a login with it fails as with any
    /// unknown key.
    pub fn from_base64_at_login(text: &str) -> Result<Self, KeyError> {
        let bytes = decode_base64(text.trim())?;
        Self::checked(&bytes)
    }

    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as `openssl pkey -pubout` writes.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key =
            VerifyingKey::from_public_key_pem(pem).map_err(|e| KeyError::Pem(e.to_string()))?;
        Self::from_slice(key.as_bytes())
    }

    /// Checks 32 raw bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        let key = Self::checked(bytes)?;
        if !key.0.to_edwards().is_torsion_free() {
            return Err(KeyError::Torsion);
        }
        Ok(key)
    }

    /// Every check but the torsion check.
    fn checked(bytes: &[u8]) -> Result<Self, KeyError> {
        let raw: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::Length(bytes.len()))?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::NotOnCurve)?;
        let point = key.to_edwards();
        if point.compress().to_bytes() != raw {
            return Err(KeyError::NonCanonical);
        }
        if key.is_weak() {
            return Err(KeyError::Weak);
        }
        Ok(Self(key))
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Unpadded standard base64, as Matrix writes keys.
    pub fn to_base64(&self) -> String {
        B64_ANY_PADDING.encode(self.as_bytes())
    }

    /// All 64 hex characters of SHA-256 of the raw key.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.as_bytes()))
    }

    /// The first 16 hex characters of the fingerprint.
    pub fn key_id(&self) -> String {
        let mut fingerprint = self.fingerprint();
        fingerprint.truncate(16);
        fingerprint
    }

    /// Verifies `signature` over `message` with `verify_strict` (rejects
    /// non-canonical signatures and small-order components).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        self.0.verify_strict(message, &signature).is_ok()
    }
}

/// Decodes standard base64, padded or not, refusing non-canonical input.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, KeyError> {
    B64_ANY_PADDING
        .decode(text)
        .map_err(|e| KeyError::Base64(e.to_string()))
}

/// Unpadded standard base64.
pub fn encode_base64(bytes: &[u8]) -> String {
    B64_ANY_PADDING.encode(bytes)
}

/// Unpadded base64url (nonces, tokens).
pub fn encode_base64url(bytes: &[u8]) -> String {
    general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A freshly generated key pair.
pub struct KeyPair {
    signing: SigningKey,
    pub public: PublicKey,
}

impl KeyPair {
    /// A new key pair from the operating system's randomness (via a CSPRNG seeded by it).
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let signing = SigningKey::from_bytes(&seed);
        let public = PublicKey(signing.verifying_key());
        Self { signing, public }
    }

    /// The private key as PKCS#8 v1 PEM (RFC 8410), what OpenSSL and WebCrypto import.
    /// v2, which adds the public key, is not read by OpenSSL 3.0.
    pub fn private_key_pem(&self) -> Result<String, KeyError> {
        let v1 = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.signing.to_bytes(),
            public_key: None,
        };
        let pem = v1
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        Ok(pem.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_derived_from_the_raw_key() {
        let pair = KeyPair::generate();
        let fingerprint = hex::encode(Sha256::digest(pair.public.as_bytes()));
        assert_eq!(pair.public.fingerprint(), fingerprint);
        assert_eq!(pair.public.key_id(), fingerprint[..16]);
        let b64 = pair.public.to_base64();
        assert!(!b64.ends_with('='));
        assert_eq!(PublicKey::from_base64(&b64), Ok(pair.public));
        assert_eq!(
            PublicKey::from_base64(&format!("{b64}=")),
            Ok(pair.public),
            "padding accepted"
        );
        assert_eq!(PublicKey::from_base64_at_login(&b64), Ok(pair.public));
        assert_eq!(
            PublicKey::from_base64_at_login(&b64[..40]),
            Err(KeyError::Length(30))
        );
    }

    #[test]
    fn weak_and_malformed_keys_are_refused() {
        let identity = {
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        };
        assert_eq!(PublicKey::from_slice(&identity), Err(KeyError::Weak));
        assert_eq!(PublicKey::from_slice(&[0u8; 31]), Err(KeyError::Length(31)));
        assert_eq!(PublicKey::from_slice(&[0u8; 33]), Err(KeyError::Length(33)));
        // y = p (2^255 - 19) encodes the same point as y = 0, non-canonically.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xed;
        non_canonical[31] = 0x7f;
        assert!(PublicKey::from_slice(&non_canonical).is_err());
        // A valid key plus a point of order 8: on the curve, canonical, not torsion-free.
        let pair = KeyPair::generate();
        let torsion = ed25519_dalek::VerifyingKey::from_bytes(&[
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
            0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
            0x6d, 0x53, 0xfc, 0x05,
        ])
        .expect("an order-8 point")
        .to_edwards();
        let mixed = (ed25519_dalek::VerifyingKey::from_bytes(pair.public.as_bytes())
            .expect("key")
            .to_edwards()
            + torsion)
            .compress()
            .to_bytes();
        assert_eq!(PublicKey::from_slice(&mixed), Err(KeyError::Torsion));
        // At login only the torsion check is left out (such a key is never registered).
        assert!(PublicKey::from_base64_at_login(&encode_base64(&mixed)).is_ok());
        assert_eq!(
            PublicKey::from_base64_at_login(&encode_base64(&identity)),
            Err(KeyError::Weak)
        );
        // Non-canonical base64: the last character carries non-zero unused bits.
        // 32 bytes take 43 characters, whose last 2 bits are unused and must be zero.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bad = pair.public.to_base64().into_bytes();
        let last = bad.len() - 1;
        let index = ALPHABET
            .iter()
            .position(|c| *c == bad[last])
            .expect("base64 char");
        assert_eq!(index & 0b11, 0, "a canonical encoding");
        bad[last] = ALPHABET[index | 1];
        let bad = String::from_utf8(bad).expect("ascii");
        assert!(matches!(
            PublicKey::from_base64(&bad),
            Err(KeyError::Base64(_))
        ));
    }

    #[test]
    fn generated_pem_round_trips() {
        use ed25519_dalek::pkcs8::DecodePrivateKey;
        let pair = KeyPair::generate();
        let pem = pair.private_key_pem().expect("pem");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        // RFC 8410's v1 encoding: 48 bytes, version 0, no public key.
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("base64");
        assert_eq!(der.len(), 48);
        assert_eq!(&der[..5], &[0x30, 0x2e, 0x02, 0x01, 0x00]);
        let back = SigningKey::from_pkcs8_pem(&pem).expect("parse");
        assert_eq!(back.verifying_key().as_bytes(), pair.public.as_bytes());
    }
}
