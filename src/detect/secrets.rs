//! Credential detection for the `secret_exposure` category (OWASP LLM02:2025).
//!
//! Owns the secret rule library as data (`data/rules/secrets.toml`, extendable with more
//! files of the same format), the scan that turns a text into [`SecretFinding`]s with byte
//! spans into the ORIGINAL text, the format checks (GitHub/npm CRC32, JWT structure,
//! private-key bodies, password and API-key value gates, Shannon entropy), the masked form,
//! the keyed fingerprint and [`redact`]. A finding never holds the secret itself.
//!
//! May import: `crate::detect` (its parent, for `DetectError`) and no other crate module;
//! only std, serde, toml, regex, aho-corasick, hmac, sha2, hex and base64. No I/O, no panics.
//!
//! ```
//! use ai_incident_mcp::detect::secrets::{SecretScanner, redact};
//! let scanner = SecretScanner::builtin(b"fingerprint key").unwrap();
//! let text = "deploy with GITHUB_TOKEN=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 please";
//! let found = scanner.scan(text);
//! assert_eq!(found[0].rule, "github.token");
//! assert_eq!(found[0].masked, "ghp_…5Odv");
//! assert_eq!(found[0].fingerprint.len(), 32);
//! let safe = redact(text, &found);
//! assert!(!safe.contains("ghp_Kq3"));
//! assert!(safe.starts_with("deploy with GITHUB_TOKEN=[REDACTED:github.token:"));
//! ```

use std::collections::HashSet;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::DetectError;

/// The embedded default secret rules.
pub const DEFAULT_SECRET_RULES: &str = include_str!("../../data/rules/secrets.toml");
/// Confidence cap of a secret that looks like a documented example or a placeholder.
pub const EXAMPLE_CONFIDENCE: f32 = 0.3;
/// Confidence cap of a GitHub-shaped token whose CRC32 checksum does not match.
pub const BAD_CHECKSUM_CONFIDENCE: f32 = 0.4;
/// Confidence of an npm token whose checksum matches.
const NPM_CHECKSUM_CONFIDENCE: f32 = 0.97;
/// Confidence of a JWT with `"alg":"none"` (unsigned, so not a credential on its own).
const JWT_NONE_CONFIDENCE: f32 = 0.5;
/// At most this many findings are reported per text.
pub const MAX_FINDINGS: usize = 64;
/// Bytes of the fingerprint (HMAC-SHA256 truncated), hex-encoded in [`SecretFinding`].
const FINGERPRINT_BYTES: usize = 16;
/// Hex characters of the fingerprint shown in a redaction marker.
const REDACT_PREFIX: usize = 8;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    version: Option<String>,
    owasp: Option<String>,
    atlas: Option<String>,
    #[serde(default)]
    known_examples: Vec<String>,
    #[serde(default, rename = "secret")]
    secrets: Vec<SecretSpec>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretSpec {
    id: String,
    provider: String,
    prefixes: Vec<String>,
    #[serde(default)]
    prefixes_ci: bool,
    pattern: String,
    confidence: f32,
    #[serde(default)]
    check: Check,
    min_entropy: Option<f32>,
    #[serde(default)]
    key_deny: Vec<String>,
    #[serde(default)]
    positive: Vec<String>,
    #[serde(default)]
    negative: Vec<String>,
}

/// Extra validation a rule applies to its match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Check {
    #[default]
    None,
    GithubCrc32,
    NpmCrc32,
    Jwt,
    PrivateKey,
    Password,
    ApiKey,
}

/// One compiled secret rule.
#[derive(Debug)]
pub struct SecretRule {
    pub id: String,
    pub provider: String,
    confidence: f32,
    check: Check,
    min_entropy: Option<f32>,
    key_deny: Vec<String>,
    regex: regex::Regex,
    /// Test strings that must be reported (unit-tested).
    pub positive: Vec<String>,
    /// Test strings that must not be reported at >= 0.5 (unit-tested).
    pub negative: Vec<String>,
    owasp: Option<String>,
    atlas: Option<String>,
}

impl SecretRule {
    /// Confidence of a match that passes every check.
    pub fn confidence(&self) -> f32 {
        self.confidence
    }
}

/// One credential found in a text. Holds no part of the secret beyond [`SecretFinding::masked`].
#[derive(Clone, PartialEq, serde::Serialize)]
pub struct SecretFinding {
    /// Rule id, e.g. `aws.access_key_id`.
    pub rule: String,
    /// Issuer, e.g. `aws`, `github`, `generic`.
    pub provider: String,
    /// Byte offset of the secret in the original text (char boundary).
    pub start: usize,
    /// Byte offset of the end of the secret in the original text (char boundary).
    pub end: usize,
    /// 0..1; see docs/detection.md "Secrets" for the levels.
    pub confidence: f32,
    /// The value looks like a documented example or a placeholder.
    pub example: bool,
    /// First and last characters with `…` between (`AKIA…MPLE`); less for short secrets.
    pub masked: String,
    /// Hex of HMAC-SHA256(key, secret) truncated to 16 bytes; same secret + key → same value.
    pub fingerprint: String,
    pub owasp: Option<String>,
    pub atlas: Option<String>,
}

impl std::fmt::Debug for SecretFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFinding")
            .field("rule", &self.rule)
            .field("span", &(self.start..self.end))
            .field("confidence", &self.confidence)
            .field("example", &self.example)
            .field("masked", &self.masked)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// The compiled secret rules plus the fingerprint key. Build once, share (`Send + Sync`).
pub struct SecretScanner {
    /// Version string of the default secret rule file.
    pub version: String,
    rules: Vec<SecretRule>,
    known_examples: HashSet<String>,
    /// Case-sensitive and ASCII case-insensitive prefix automata, each with the rule index
    /// of every pattern.
    prefilters: Vec<(AhoCorasick, Vec<usize>)>,
    key: Vec<u8>,
}

impl std::fmt::Debug for SecretScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretScanner")
            .field("version", &self.version)
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

fn invalid(file: &str, rule: &str, message: impl Into<String>) -> DetectError {
    DetectError::InvalidRule {
        file: file.to_string(),
        rule: rule.to_string(),
        message: message.into(),
    }
}

impl SecretScanner {
    /// The embedded default rules with fingerprint key `key`.
    ///
    /// # Errors
    /// Only if the embedded data is corrupt (a build defect).
    pub fn builtin(key: &[u8]) -> Result<SecretScanner, DetectError> {
        SecretScanner::compile(&[("data/rules/secrets.toml", DEFAULT_SECRET_RULES)], key)
    }

    /// Compiles `(file name, TOML)` pairs; the first file's `version` is the version.
    ///
    /// # Errors
    /// [`DetectError::RuleSyntax`] for bad TOML or unknown fields,
    /// [`DetectError::InvalidRule`] for a duplicate id, a confidence outside (0, 1], a rule
    /// without prefixes or a regex that does not compile.
    pub fn compile(files: &[(&str, &str)], key: &[u8]) -> Result<SecretScanner, DetectError> {
        let mut version = String::new();
        let mut rules: Vec<SecretRule> = Vec::new();
        let mut known_examples = HashSet::new();
        let mut ids: HashSet<String> = HashSet::new();
        let mut cs: (Vec<String>, Vec<usize>) = Default::default();
        let mut ci: (Vec<String>, Vec<usize>) = Default::default();
        for (fi, (name, src)) in files.iter().enumerate() {
            let file: SecretFile = toml::from_str(src).map_err(|e| DetectError::RuleSyntax {
                file: (*name).to_string(),
                message: e.to_string(),
            })?;
            if fi == 0 {
                version = file.version.clone().unwrap_or_default();
            }
            known_examples.extend(file.known_examples.iter().cloned());
            for spec in file.secrets {
                if spec.id.trim().is_empty() {
                    return Err(invalid(name, &spec.id, "id must not be empty"));
                }
                if !ids.insert(spec.id.clone()) {
                    return Err(invalid(
                        name,
                        &spec.id,
                        "duplicate rule id; pick another id",
                    ));
                }
                if !(spec.confidence > 0.0 && spec.confidence <= 1.0) {
                    return Err(invalid(
                        name,
                        &spec.id,
                        format!("confidence must be in (0, 1], got {}", spec.confidence),
                    ));
                }
                if spec.prefixes.is_empty() || spec.prefixes.iter().any(|p| p.is_empty()) {
                    return Err(invalid(
                        name,
                        &spec.id,
                        "prefixes must list at least one non-empty literal that every match contains",
                    ));
                }
                let regex = regex::RegexBuilder::new(&spec.pattern)
                    .size_limit(1 << 23)
                    .build()
                    .map_err(|e| invalid(name, &spec.id, format!("pattern: {e}")))?;
                if !spec.key_deny.is_empty() && !regex.capture_names().any(|n| n == Some("key")) {
                    return Err(invalid(
                        name,
                        &spec.id,
                        "key_deny needs a named group `key` in the pattern",
                    ));
                }
                let ri = rules.len();
                let target = if spec.prefixes_ci { &mut ci } else { &mut cs };
                for p in &spec.prefixes {
                    target.0.push(p.clone());
                    target.1.push(ri);
                }
                rules.push(SecretRule {
                    id: spec.id,
                    provider: spec.provider,
                    confidence: spec.confidence,
                    check: spec.check,
                    min_entropy: spec.min_entropy,
                    key_deny: spec
                        .key_deny
                        .iter()
                        .map(|k| k.to_ascii_lowercase())
                        .collect(),
                    regex,
                    positive: spec.positive,
                    negative: spec.negative,
                    owasp: file.owasp.clone(),
                    atlas: file.atlas.clone(),
                });
            }
        }
        let mut prefilters = Vec::new();
        for ((pats, map), fold) in [(cs, false), (ci, true)] {
            if pats.is_empty() {
                continue;
            }
            let ac = AhoCorasickBuilder::new()
                .ascii_case_insensitive(fold)
                .build(&pats)
                .map_err(|e| DetectError::Build(e.to_string()))?;
            prefilters.push((ac, map));
        }
        Ok(SecretScanner {
            version,
            rules,
            known_examples,
            prefilters,
            key: key.to_vec(),
        })
    }

    /// A scanner with no rules (finds nothing), keeping `key`: the "secret rules off" side of
    /// the engine benchmark.
    pub fn without_rules(key: &[u8]) -> Self {
        SecretScanner {
            version: String::new(),
            rules: Vec::new(),
            known_examples: HashSet::new(),
            prefilters: Vec::new(),
            key: key.to_vec(),
        }
    }

    /// The compiled rules (for tests and docs).
    pub fn rules(&self) -> &[SecretRule] {
        &self.rules
    }

    /// The fingerprint key.
    pub(super) fn key(&self) -> &[u8] {
        &self.key
    }

    /// Replaces the fingerprint key.
    pub fn set_key(&mut self, key: &[u8]) {
        self.key = key.to_vec();
    }

    /// Keyed fingerprint of `secret`: hex of HMAC-SHA256(key, secret), first 16 bytes.
    pub fn fingerprint(&self, secret: &str) -> String {
        // HMAC accepts keys of any length, so this cannot fail; fall back to an empty
        // string rather than panic.
        match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mut mac) => {
                mac.update(secret.as_bytes());
                let out = mac.finalize().into_bytes();
                hex::encode(out.get(..FINGERPRINT_BYTES).unwrap_or(&[]))
            }
            Err(_) => String::new(),
        }
    }

    /// Finds the credentials in `text`, ordered by start, non-overlapping (where two rules
    /// match overlapping spans, the higher confidence, then the longer span, wins).
    /// Cost: one prefix automaton pass, plus one regex pass per rule whose prefix occurs.
    pub fn scan(&self, text: &str) -> Vec<SecretFinding> {
        let n = self.rules.len();
        let mut on = vec![false; n];
        let mut left = n;
        'outer: for (ac, map) in &self.prefilters {
            for m in ac.find_overlapping_iter(text) {
                if let Some(&ri) = map.get(m.pattern().as_usize())
                    && let Some(slot) = on.get_mut(ri)
                    && !*slot
                {
                    *slot = true;
                    left -= 1;
                    if left == 0 {
                        break 'outer;
                    }
                }
            }
        }
        let mut cands: Vec<(usize, usize, usize, f32, bool)> = Vec::new();
        for (ri, rule) in self.rules.iter().enumerate() {
            if !on.get(ri).copied().unwrap_or(false) {
                continue;
            }
            for caps in rule.regex.captures_iter(text) {
                if cands.len() >= 4 * MAX_FINDINGS {
                    break;
                }
                let m = caps
                    .iter()
                    .zip(rule.regex.capture_names())
                    .find_map(|(g, name)| match (g, name) {
                        (Some(g), Some(nm)) if nm.starts_with("secret") => Some(g),
                        _ => None,
                    })
                    .or_else(|| caps.get(0));
                let Some(m) = m else { continue };
                if m.is_empty() {
                    continue;
                }
                if let Some(k) = caps.name("key") {
                    let k = k.as_str().to_ascii_lowercase();
                    if rule.key_deny.iter().any(|d| k.contains(d.as_str())) {
                        continue;
                    }
                }
                if let Some((conf, example)) = self.judge(rule, m.as_str()) {
                    cands.push((ri, m.start(), m.end(), conf, example));
                }
            }
        }
        // Highest confidence, then longest, claims its span first.
        cands.sort_by(|a, b| {
            b.3.total_cmp(&a.3)
                .then((b.2 - b.1).cmp(&(a.2 - a.1)))
                .then(a.1.cmp(&b.1))
        });
        let mut kept: Vec<(usize, usize, usize, f32, bool)> = Vec::new();
        for c in cands {
            if kept.len() >= MAX_FINDINGS {
                break;
            }
            if kept.iter().all(|k| c.2 <= k.1 || c.1 >= k.2) {
                kept.push(c);
            }
        }
        kept.sort_by_key(|k| (k.1, k.2));
        kept.into_iter()
            .filter_map(|(ri, s, e, conf, example)| {
                let rule = self.rules.get(ri)?;
                let secret = text.get(s..e)?;
                Some(SecretFinding {
                    rule: rule.id.clone(),
                    provider: rule.provider.clone(),
                    start: s,
                    end: e,
                    confidence: conf,
                    example,
                    masked: mask(secret),
                    fingerprint: self.fingerprint(secret),
                    owasp: rule.owasp.clone(),
                    atlas: rule.atlas.clone(),
                })
            })
            .collect()
    }

    /// Confidence and example flag of a candidate, or `None` when the checks reject it.
    fn judge(&self, rule: &SecretRule, secret: &str) -> Option<(f32, bool)> {
        let generic = matches!(rule.check, Check::Password | Check::ApiKey);
        if self.known_examples.contains(secret) || looks_like_example(secret) {
            // Free-form assignments of placeholders are noise; provider formats are reported.
            return (!generic).then_some((rule.confidence.min(EXAMPLE_CONFIDENCE), true));
        }
        if let Some(min) = rule.min_entropy
            && entropy(secret) < min
        {
            return None;
        }
        match rule.check {
            Check::None => Some((rule.confidence, false)),
            Check::GithubCrc32 => {
                if crc32_token_ok(secret) {
                    Some((rule.confidence, false))
                } else {
                    Some((rule.confidence.min(BAD_CHECKSUM_CONFIDENCE), false))
                }
            }
            Check::NpmCrc32 => {
                if crc32_token_ok(secret) {
                    Some((rule.confidence.max(NPM_CHECKSUM_CONFIDENCE), false))
                } else {
                    Some((rule.confidence, false))
                }
            }
            Check::Jwt => jwt_alg(secret).map(|alg| {
                if alg.eq_ignore_ascii_case("none") {
                    (rule.confidence.min(JWT_NONE_CONFIDENCE), false)
                } else {
                    (rule.confidence, false)
                }
            }),
            Check::PrivateKey => private_key_ok(secret).then_some((rule.confidence, false)),
            Check::Password => password_ok(secret).then_some((rule.confidence, false)),
            Check::ApiKey => api_key_ok(secret).then_some((rule.confidence, false)),
        }
    }
}

/// `text` with every finding's span replaced by `[REDACTED:<rule>:<fingerprint prefix>]`.
/// Findings are applied in start order; overlapping or out-of-range spans are skipped.
///
/// ```
/// use ai_incident_mcp::detect::secrets::{SecretScanner, redact};
/// let s = SecretScanner::builtin(b"k").unwrap();
/// let text = "key AKIA2E4FNRJX7LQ3PZ6K end";
/// let out = redact(text, &s.scan(text));
/// assert!(out.starts_with("key [REDACTED:aws.access_key_id:") && out.ends_with("] end"));
/// ```
pub fn redact(text: &str, findings: &[SecretFinding]) -> String {
    let mut spans: Vec<&SecretFinding> = findings.iter().collect();
    spans.sort_by_key(|f| (f.start, f.end));
    let mut out = String::with_capacity(text.len());
    let mut at = 0usize;
    for f in spans {
        if f.start < at || f.end <= f.start {
            continue;
        }
        let (Some(before), Some(_)) = (text.get(at..f.start), text.get(f.start..f.end)) else {
            continue;
        };
        out.push_str(before);
        let fp = f.fingerprint.get(..REDACT_PREFIX).unwrap_or(&f.fingerprint);
        out.push_str(&format!("[REDACTED:{}:{}]", f.rule, fp));
        at = f.end;
    }
    out.push_str(text.get(at..).unwrap_or(""));
    out
}

/// Masked form: first 4 + `…` + last 4 characters for secrets of 16+ characters, 2 + 2 for
/// 12..16, first character only for 6..12, `…` alone below 6.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    let n = chars.len();
    let (head, tail) = match n {
        16.. => (4, 4),
        12..16 => (2, 2),
        6..12 => (1, 0),
        _ => (0, 0),
    };
    let mut s: String = chars.iter().take(head).collect();
    s.push('…');
    s.extend(chars.iter().skip(n - tail));
    s
}

/// Shannon entropy in bits per byte.
pub fn entropy(s: &str) -> f32 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        if let Some(c) = counts.get_mut(b as usize) {
            *c += 1;
        }
    }
    let n = s.len() as f32;
    if n == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f32 / n;
            -p * p.log2()
        })
        .sum()
}

/// Above this length only the marker words count in [`looks_like_example`].
const LONG_SECRET: usize = 128;

/// Documented examples and placeholders: marker words, template syntax, whole-value
/// placeholders (`password`), and for values up to 128 bytes masking runs (8 equal
/// characters), sequential digits/letters, or one character making up half of the value.
pub fn looks_like_example(s: &str) -> bool {
    const MARKERS: [&str; 18] = [
        "example",
        "sample",
        "dummy",
        "placeholder",
        "your",
        "fake",
        "redacted",
        "changeme",
        "xxxx",
        "<",
        ">",
        "${",
        "{{",
        "%(",
        "***",
        "...",
        "…",
        "0123456789",
    ];
    /// Whole values that are placeholders, e.g. `postgres://user:password@host`.
    const WORDS: [&str; 12] = [
        "password",
        "passwd",
        "pass",
        "pwd",
        "pw",
        "secret",
        "mypassword",
        "token",
        "apikey",
        "api_key",
        "key",
        "none",
    ];
    let l = s.to_ascii_lowercase();
    if WORDS.contains(&l.as_str()) {
        return true;
    }
    if MARKERS.iter().any(|m| l.contains(m))
        || l.contains("123456789")
        || l.contains("abcdefghij")
        || l.contains("qwerty")
    {
        return true;
    }
    if l.len() > LONG_SECRET {
        // Key blocks (PEM/OpenSSH bodies) legitimately contain runs such as `AAAAAAAA`.
        return false;
    }
    let mut counts = [0u32; 256];
    let mut run = 0u32;
    let mut prev = None;
    for b in l.bytes() {
        if let Some(c) = counts.get_mut(b as usize) {
            *c += 1;
        }
        run = if prev == Some(b) { run + 1 } else { 1 };
        if run >= 8 {
            return true;
        }
        prev = Some(b);
    }
    let n = l.len() as u32;
    n >= 6 && counts.iter().any(|&c| c * 2 >= n)
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Base62 (0-9A-Za-z) of `v`, left-padded with `0` to 6 characters.
pub fn base62_6(mut v: u32) -> String {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        if let Some(&c) = BASE62.get((v % 62) as usize) {
            *slot = c;
        }
        v /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// CRC-32 (IEEE 802.3, reflected, the zlib/`crc32fast` one).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// `<prefix>_<30 random><6 base62 CRC32 of the 30 random>` (GitHub's 2021 format, also npm's).
fn crc32_token_ok(token: &str) -> bool {
    let Some((_, body)) = token.rsplit_once('_') else {
        return false;
    };
    if body.len() != 36 || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (random, check) = body.split_at(30);
    base62_6(crc32(random.as_bytes())) == check
}

/// A per-process random fingerprint key (from std's randomly seeded hasher), used until the
/// caller sets one: fingerprints are then stable within the process only, and never an
/// unkeyed hash of the secret.
pub fn process_key() -> Vec<u8> {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    let mut key = Vec::with_capacity(32);
    for i in 0u64..4 {
        let mut h = state.build_hasher();
        h.write_u64(i);
        key.extend_from_slice(&h.finish().to_le_bytes());
    }
    key
}

fn b64url(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}

/// The `alg` of a JWT whose header and payload are base64url JSON objects, else `None`.
fn jwt_alg(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let header = b64url(parts.next()?)?;
    let payload = b64url(parts.next()?)?;
    let h = std::str::from_utf8(&header).ok()?.trim();
    let p = std::str::from_utf8(&payload).ok()?.trim();
    if !(h.starts_with('{') && h.ends_with('}') && p.starts_with('{') && p.ends_with('}')) {
        return None;
    }
    let at = h.find("\"alg\"")?;
    let rest = h
        .get(at + 5..)?
        .trim_start()
        .strip_prefix(':')?
        .trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    let alg = rest.get(..end)?;
    (!alg.is_empty()).then(|| alg.to_string())
}

/// A PEM / OpenSSH private key block with a real base64 body (>= 64 characters), also
/// when its newlines are JSON-escaped (`\\n`).
fn private_key_ok(block: &str) -> bool {
    let Some(after) = block.splitn(3, "-----").nth(2) else {
        return false;
    };
    let body = after.split("-----END").next().unwrap_or("");
    let body = body.replace("\\n", "\n").replace("\\r", "");
    let mut n = 0usize;
    for line in body.lines() {
        let l = line.trim();
        if l.contains(':') {
            continue; // Proc-Type / DEK-Info headers
        }
        if l.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        {
            n += l.len();
        }
    }
    n >= 64
}

fn is_symbol(b: u8) -> bool {
    b.is_ascii_punctuation() && !matches!(b, b'_' | b'-' | b'.')
}

/// A dotted or snake_case identifier such as `self.password_hash`, `db_password` or
/// `config.dbPassword` (words with at most two lower→upper case switches; random keys
/// switch case far more often), optionally subscripted (`request.form[`).
fn is_identifier_path(v: &str) -> bool {
    let v = v.split('[').next().unwrap_or(v);
    let ident = |p: &str| {
        let mut b = p.bytes();
        b.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b'$')
            && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
    };
    let wordlike = |w: &str| {
        w.as_bytes()
            .windows(2)
            .filter(|p| {
                p.first().is_some_and(u8::is_ascii_lowercase)
                    && p.get(1).is_some_and(u8::is_ascii_uppercase)
            })
            .count()
            <= 2
    };
    !v.is_empty()
        && (v.contains('.') || v.contains('_'))
        && v.split('.').all(ident)
        && v.split(['.', '_']).all(wordlike)
}

/// Free-form password values: letters plus a digit or symbol; not an identifier, a
/// template variable, a call, a path or a URL.
fn password_ok(v: &str) -> bool {
    let first = v.bytes().next().unwrap_or(b' ');
    if matches!(first, b'$' | b'%' | b'@' | b':' | b'/' | b'~' | b'&' | b'*')
        || v.starts_with("./")
        || v.contains("://")
        || v.contains('(')
        || is_identifier_path(v)
    {
        return false;
    }
    let letters = v.bytes().any(|b| b.is_ascii_alphabetic());
    let digit = v.bytes().any(|b| b.is_ascii_digit());
    let symbol = v.bytes().any(is_symbol);
    letters && (digit || symbol)
}

/// Values after `api_key=` and friends: contain a digit, are not identifiers.
fn api_key_ok(v: &str) -> bool {
    v.bytes().any(|b| b.is_ascii_digit())
        && v.bytes().any(|b| b.is_ascii_alphabetic())
        && !is_identifier_path(v)
        && !v.contains("://")
}

#[cfg(test)]
mod tests;
