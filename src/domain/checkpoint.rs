//! Signed checkpoints of the audit chain (NIST SP 800-53 AU-9(3) cryptographic protection of
//! audit information, AU-10 non-repudiation): the chain head `(seq, hash)` signed with an
//! Ed25519 key that the database does not hold, written as one JSON line to a witness outside
//! the database. Because each event's hash commits to every event before it, a checkpoint at
//! `seq` pins the whole chain up to `seq`: whoever can edit the database but not sign cannot
//! truncate, empty, reorder or recompute the chain below the last checkpoint unnoticed.
//!
//! Owns: keys (parsing and writing PKCS#8 / SPKI PEM or hex), the signed message, the witness
//! line format, and reading a witness file into verified [`Pins`]. Pure: no I/O.
//!
//! The format is documented for auditors in `docs/security.md` ("Audit chain"): the signed
//! message is the text
//! `ai-incident-mcp audit checkpoint v1\nseq=<seq>\nhash=<hash>\nat=<at>\n`, so a checkpoint
//! can be checked with any Ed25519 tool (e.g. `openssl pkeyutl -verify -rawin`).
//!
//! May import: std, serde, serde_json, sha2, hex, base64, ed25519_dalek, chrono,
//! `crate::domain::audit`.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::audit::Pins;

/// The `format` field of every checkpoint line.
pub const FORMAT: &str = "ai-incident-mcp/audit-checkpoint/v1";

/// DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410 §7), followed by the 32-byte seed.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410 §4), followed by the 32-byte key.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A key could not be read; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

/// The private signing key. Its `Debug` shows only the key id.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(key_id={})", self.public().key_id())
    }
}

/// The public key an auditor verifies checkpoints with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

fn pem(label: &str, der: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN {label}-----\n{b}\n-----END {label}-----\n")
}

/// The 32 key bytes from PEM with `label` and DER `prefix`, or from 64 hex digits.
fn key_bytes(text: &str, label: &str, prefix: &[u8]) -> Result<[u8; 32], KeyError> {
    let t = text.trim();
    let bytes = if t.starts_with("-----BEGIN") {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let body = t
            .strip_prefix(begin.as_str())
            .and_then(|r| r.trim_end().strip_suffix(end.as_str()))
            .ok_or_else(|| KeyError(format!("expected a PEM block \"{begin}\"")))?;
        let b64: String = body.split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| KeyError(format!("the PEM body is not base64: {e}")))?;
        der.strip_prefix(prefix)
            .filter(|k| k.len() == 32)
            .ok_or_else(|| KeyError(format!("the {label} is not an Ed25519 key (RFC 8410)")))?
            .to_vec()
    } else {
        hex::decode(t).map_err(|_| {
            KeyError(format!(
                "expected a PEM \"{label}\" or 64 hex digits (an Ed25519 key; make one with `ai-incident-mcp keygen`)"
            ))
        })?
    };
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        KeyError(format!(
            "an Ed25519 key has 32 bytes, this one {}",
            bytes.len()
        ))
    })
}

impl SigningKey {
    /// The key with this 32-byte seed (from a CSPRNG: see `ai-incident-mcp keygen`).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Reads a PKCS#8 PEM ("PRIVATE KEY", as `openssl genpkey -algorithm ed25519` writes) or 64
    /// hex digits of seed.
    ///
    /// # Errors
    /// [`KeyError`] saying which form was expected.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        key_bytes(text, "PRIVATE KEY", &PKCS8_PREFIX).map(Self::from_seed)
    }

    /// The key as PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> String {
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(self.0.as_bytes());
        pem("PRIVATE KEY", &der)
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs the head `(seq, hash)` as of `at`.
    pub fn checkpoint(&self, seq: i64, hash: &str, at: DateTime<Utc>) -> Checkpoint {
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let sig = self.0.sign(signed_message(seq, hash, &at).as_bytes());
        Checkpoint {
            format: FORMAT.to_string(),
            seq,
            hash: hash.to_string(),
            at,
            key_id: self.public().key_id(),
            signature: hex::encode(sig.to_bytes()),
        }
    }
}

impl PublicKey {
    /// Reads an SPKI PEM ("PUBLIC KEY") or 64 hex digits.
    ///
    /// # Errors
    /// [`KeyError`] saying which form was expected, or that the point is not a valid key.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let b = key_bytes(text, "PUBLIC KEY", &SPKI_PREFIX)?;
        ed25519_dalek::VerifyingKey::from_bytes(&b)
            .map(Self)
            .map_err(|_| KeyError("the bytes are not a valid Ed25519 public key".into()))
    }

    /// The key as SPKI PEM (what `openssl pkey -pubout` writes).
    pub fn to_spki_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.0.as_bytes());
        pem("PUBLIC KEY", &der)
    }

    /// The 32 key bytes as hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// First 16 hex digits of SHA-256 over the 32 key bytes: names the key in each line.
    pub fn key_id(&self) -> String {
        let d = Sha256::digest(self.0.as_bytes());
        hex::encode(d).get(..16).unwrap_or_default().to_string()
    }
}

/// The exact bytes that are signed (UTF-8, each line ending in `\n`).
///
/// ```
/// use ai_incident_mcp::domain::checkpoint::signed_message;
/// assert_eq!(
///     signed_message(7, "ab12", "2026-12-01T21:00:00.000000Z"),
///     "ai-incident-mcp audit checkpoint v1\nseq=7\nhash=ab12\nat=2026-12-01T21:00:00.000000Z\n"
/// );
/// ```
pub fn signed_message(seq: i64, hash: &str, at: &str) -> String {
    format!("ai-incident-mcp audit checkpoint v1\nseq={seq}\nhash={hash}\nat={at}\n")
}

/// One signed checkpoint: one JSON line of the witness file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Always [`FORMAT`].
    pub format: String,
    /// Sequence number of the chain head.
    pub seq: i64,
    /// Hash of that event (lowercase hex SHA-256).
    pub hash: String,
    /// When it was signed (RFC 3339, microseconds, `Z`).
    pub at: String,
    /// [`PublicKey::key_id`] of the signing key.
    pub key_id: String,
    /// Ed25519 signature over [`signed_message`] (128 hex digits).
    pub signature: String,
}

impl Checkpoint {
    /// The witness line (JSON, no newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks the signature with `key`.
    ///
    /// # Errors
    /// A sentence saying what does not hold.
    pub fn verify(&self, key: &PublicKey) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format is '{}', expected '{FORMAT}'", self.format));
        }
        if self.key_id != key.key_id() {
            return Err(format!(
                "signed by key {} but the public key given is {}",
                self.key_id,
                key.key_id()
            ));
        }
        let sig = hex::decode(&self.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .map(|b| ed25519_dalek::Signature::from_bytes(&b))
            .ok_or("the signature is not 128 hex digits")?;
        key.0
            .verify(
                signed_message(self.seq, &self.hash, &self.at).as_bytes(),
                &sig,
            )
            .map_err(|_| "the signature does not match: the line was altered or forged".to_string())
    }
}

/// What the witness file says, as reported by `verify_audit_log` / `verify-audit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointStatus {
    /// True when every line is a validly signed checkpoint and the chain matches all of them.
    pub ok: bool,
    /// The witness file read.
    pub file: String,
    /// Validly signed checkpoints read.
    pub checkpoints: u64,
    /// The highest sequence number a checkpoint covers.
    pub latest_seq: Option<i64>,
    /// When that checkpoint was signed.
    pub latest_at: Option<String>,
    /// Events after the latest checkpoint: not yet protected by a signature.
    pub events_after_latest: Option<u64>,
    /// The first problem found (bad line, bad signature, or the chain disagreeing).
    pub problem: Option<String>,
}

/// A witness file read and checked against the public keys.
#[derive(Debug, Clone, Default)]
pub struct Witness {
    /// Hash and signing time per covered sequence number.
    pub pins: Pins,
    /// Validly signed lines.
    pub count: u64,
    /// The first line that is not a valid checkpoint, with its line number.
    pub problem: Option<String>,
}

/// Reads a witness file (JSON lines; blank lines ignored), verifying each line with one of
/// `keys`. A malformed or wrongly signed line is a problem (a forger may have appended it);
/// two checkpoints that sign different hashes for one sequence number are a problem too.
pub fn read_witness(text: &str, keys: &[PublicKey]) -> Witness {
    let mut w = Witness::default();
    let mut seen: BTreeMap<i64, String> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let cp = match serde_json::from_str::<Checkpoint>(line) {
            Ok(c) => c,
            Err(e) => {
                w.problem
                    .get_or_insert(format!("line {n} is not a checkpoint: {e}"));
                continue;
            }
        };
        let checked = keys
            .iter()
            .find(|k| k.key_id() == cp.key_id)
            .map(|k| cp.verify(k))
            .unwrap_or_else(|| {
                Err(format!(
                    "signed by key {} which is none of the public keys given",
                    cp.key_id
                ))
            });
        if let Err(e) = checked {
            w.problem.get_or_insert(format!("line {n}: {e}"));
            continue;
        }
        if let Some(h) = seen.get(&cp.seq)
            && *h != cp.hash
        {
            w.problem.get_or_insert(format!(
                "line {n}: two checkpoints sign different hashes for event {}: the chain was replaced",
                cp.seq
            ));
            continue;
        }
        seen.insert(cp.seq, cp.hash.clone());
        w.count += 1;
        w.pins.insert(cp.seq, (cp.hash, cp.at));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8410 §10.3 example private key and §10.1 example public key (the same pair).
    const RFC_PRIV: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
    const RFC_PUB: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";

    fn t0() -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }

    #[test]
    fn rfc8410_keys_parse_and_round_trip() {
        let sk = SigningKey::parse(RFC_PRIV).unwrap();
        let pk = PublicKey::parse(RFC_PUB).unwrap();
        assert_eq!(sk.public(), pk);
        assert_eq!(sk.to_pkcs8_pem(), RFC_PRIV);
        assert_eq!(pk.to_spki_pem(), RFC_PUB);
        assert_eq!(PublicKey::parse(&pk.to_hex()).unwrap(), pk);
    }

    #[test]
    fn bad_keys_say_what_was_expected() {
        let e = SigningKey::parse("hello").unwrap_err();
        assert!(e.to_string().contains("64 hex digits"), "{e}");
        let e = SigningKey::parse(RFC_PUB).unwrap_err();
        assert!(e.to_string().contains("PRIVATE KEY"), "{e}");
        assert!(PublicKey::parse("00").is_err());
    }

    #[test]
    fn checkpoint_verifies_and_any_change_breaks_it() {
        let sk = SigningKey::from_seed([7; 32]);
        let pk = sk.public();
        let cp = sk.checkpoint(42, &"ab".repeat(32), t0());
        cp.verify(&pk).unwrap();
        let line = cp.to_line();
        assert_eq!(serde_json::from_str::<Checkpoint>(&line).unwrap(), cp);
        for f in [
            |c: &mut Checkpoint| c.seq = 43,
            |c: &mut Checkpoint| c.hash = "cd".repeat(32),
            |c: &mut Checkpoint| c.at = "2030-01-01T00:00:00.000000Z".into(),
        ] {
            let mut bad = cp.clone();
            f(&mut bad);
            assert!(bad.verify(&pk).is_err());
        }
        let other = SigningKey::from_seed([8; 32]).public();
        assert!(cp.verify(&other).unwrap_err().contains("signed by key"));
    }

    #[test]
    fn witness_reports_forged_lines_and_conflicts() {
        let sk = SigningKey::from_seed([7; 32]);
        let pk = sk.public();
        let a = sk.checkpoint(1, &"aa".repeat(32), t0()).to_line();
        let b = sk.checkpoint(2, &"bb".repeat(32), t0()).to_line();
        let w = read_witness(&format!("{a}\n\n{b}\n"), std::slice::from_ref(&pk));
        assert_eq!((w.count, w.problem.clone()), (2, None));
        assert_eq!(w.pins.len(), 2);
        let forged = SigningKey::from_seed([9; 32])
            .checkpoint(3, &"cc".repeat(32), t0())
            .to_line();
        let w = read_witness(&format!("{a}\n{forged}\n"), std::slice::from_ref(&pk));
        assert!(w.problem.unwrap().starts_with("line 2"));
        let conflict = sk.checkpoint(1, &"dd".repeat(32), t0()).to_line();
        let w = read_witness(&format!("{a}\n{conflict}\n"), std::slice::from_ref(&pk));
        assert!(w.problem.unwrap().contains("different hashes"));
        let w = read_witness("not json\n", std::slice::from_ref(&pk));
        assert!(w.problem.unwrap().contains("line 1"));
    }
}
