//! A small learned model: multinomial logistic regression over hashed word uni/bi-grams
//! (and char bi-grams of non-Latin tokens) of the normalised text.
//!
//! Owns: feature extraction (shared with the trainer `src/bin/train.rs`), the weight-file
//! format (`data/model/weights.bin`) and inference. Imports only std.
//!
//! Weight file (little endian): magic `DTM1` or `DTM2`, u32 `bits`, u32 `classes`, `classes` f32
//! biases, then `(1 << bits) * classes` f32 weights laid out feature-major.
//! Class order: benign, prompt_injection, jailbreak, data_exfiltration, privilege_escalation.
//! `DTM2` files continue with tagged sections (`[u8; 4]` tag, u32 byte length, payload):
//! `FUS1` the stacked fusion ([`Fusion`]: u32 n, f32 bias, f32 shift, n f32 weights) and
//! `NAT1` the naturalness model ([`super::natural::CharLm`]). Unknown tags are an error.

use super::DetectError;
use super::natural::CharLm;
use super::normalize::Tokens;

pub const CLASSES: usize = 5;
pub const MAX_TOKENS: usize = 30_000;

pub struct Model {
    bits: u32,
    bias: [f32; CLASSES],
    w: Vec<f32>,
    /// The stacked combination of rule and model evidence, when the file carries one.
    pub fusion: Option<Fusion>,
    /// The naturalness (adversarial-suffix) model, when the file carries one.
    pub lm: Option<CharLm>,
}

/// Number of inputs of the fusion (see `Engine::fusion_features`).
pub const FUSION_INPUTS: usize = 20;

/// A logistic model over the fusion inputs, fitted out-of-fold (`examples/train_model.rs fuse`).
/// `risk = sigmoid(bias + shift + w . x)`; `shift` moves the threshold chosen on out-of-fold
/// scores onto the default flag threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Fusion {
    pub bias: f32,
    pub shift: f32,
    pub w: [f32; FUSION_INPUTS],
}

impl Fusion {
    /// The fused risk for inputs `x`.
    pub fn risk(&self, x: &[f32; FUSION_INPUTS]) -> f32 {
        let z = self.bias + self.shift + self.w.iter().zip(x).map(|(a, b)| a * b).sum::<f32>();
        1.0 / (1.0 + (-z).exp())
    }
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

fn f32_at(b: &[u8], o: usize) -> Option<f32> {
    u32_at(b, o).map(f32::from_bits)
}

#[inline]
fn fnv(bytes: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[inline]
fn mix(a: u64, b: u64) -> u64 {
    (a.rotate_left(17) ^ b).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Window size (tokens) and stride of the windowed scoring.
pub const WINDOW: usize = 64;
pub const STRIDE: usize = 32;

/// The word tokens of a [`Tokens`], capped at [`MAX_TOKENS`].
pub fn words(toks: &Tokens) -> Vec<&str> {
    // `words` is " w0 w1 ... " with single spaces and tokens without spaces, so token `i`
    // starts at `wstart[i]` and is as long as its span in the normalised text.
    let n = toks.wstart.len().min(toks.nspan.len()).min(MAX_TOKENS);
    let mut v = Vec::with_capacity(n);
    for (&st, &(a, b)) in toks.wstart.iter().zip(toks.nspan.iter()).take(n) {
        let st = st as usize;
        let len = b.saturating_sub(a) as usize;
        if let Some(w) = toks.words.get(st..st + len)
            && !w.is_empty()
        {
            v.push(w);
        }
    }
    v
}

/// Token ranges of the scoring windows: one window for short texts, else overlapping
/// windows of [`WINDOW`] tokens every [`STRIDE`] tokens.
pub fn windows(n: usize) -> Vec<(usize, usize)> {
    if n <= WINDOW {
        return vec![(0, n)];
    }
    let mut v = Vec::with_capacity(n / STRIDE + 1);
    let mut s = 0;
    loop {
        let e = (s + WINDOW).min(n);
        v.push((s, e));
        if e == n {
            break;
        }
        s += STRIDE;
    }
    v
}

/// Appends the hashed feature ids of token `i` (unigram, bigram with the previous token of the
/// whole text, char bigrams of non-ASCII tokens).
#[inline]
fn token_features(words: &[&str], hashes: &[u64], i: usize, mask: u64, mut emit: impl FnMut(u32)) {
    let h = hashes.get(i).copied().unwrap_or(0);
    let prev = if i == 0 {
        0x5151
    } else {
        hashes.get(i - 1).copied().unwrap_or(0)
    };
    emit((h & mask) as u32);
    emit((mix(prev, h) & mask) as u32);
    let w = words.get(i).copied().unwrap_or("");
    if !w.is_ascii() {
        let mut last: Option<char> = None;
        for (k, c) in w.chars().enumerate() {
            if k > 64 {
                break;
            }
            if let Some(p) = last {
                let mut b = [0u8; 8];
                let pl = p.encode_utf8(&mut b[..4]).len();
                let cl = c.encode_utf8(&mut b[pl..]).len();
                let g = b.get(..pl + cl).unwrap_or(&[]);
                emit((fnv(g, 7) & mask) as u32);
            }
            last = Some(c);
        }
    }
}

/// Per-window extra features: end-of-window marker and a length bucket.
#[inline]
fn window_extras(hashes: &[u64], s: usize, e: usize, mask: u64, out: &mut Vec<u32>) {
    let last = if e > s {
        hashes.get(e - 1).copied().unwrap_or(0)
    } else {
        0x5151
    };
    out.push((mix(last, 0xE0D) & mask) as u32);
    let n = e - s;
    let bucket = (usize::BITS - n.leading_zeros()) as u64;
    out.push((fnv(&bucket.to_le_bytes(), 99) & mask) as u32);
}

/// Token hashes of a word list.
pub fn hashes(words: &[&str]) -> Vec<u64> {
    words.iter().map(|w| fnv(w.as_bytes(), 0)).collect()
}

/// Appends the hashed feature ids (mod `1 << bits`) of window `s..e` of `words` to `out`.
/// Training uses this; inference computes the same sums with prefix sums.
pub fn window_features(
    words: &[&str],
    hashes: &[u64],
    s: usize,
    e: usize,
    bits: u32,
    out: &mut Vec<u32>,
) {
    let mask = (1u64 << bits) - 1;
    for i in s..e {
        token_features(words, hashes, i, mask, |f| out.push(f));
    }
    window_extras(hashes, s, e, mask, out);
}

impl Model {
    /// Parses a weight file. An empty input means "no model".
    ///
    /// # Errors
    /// [`DetectError::Model`] when the bytes are not a valid weight file.
    pub fn from_bytes(b: &[u8]) -> Result<Option<Model>, DetectError> {
        if b.is_empty() {
            return Ok(None);
        }
        let bad = |m: &str| DetectError::Model(m.to_owned());
        let v2 = match b.get(..4) {
            Some(b"DTM1") => false,
            Some(b"DTM2") => true,
            _ => {
                return Err(bad(
                    "weight file must start with magic DTM1 or DTM2; retrain with `cargo run --release --example train_model`",
                ));
            }
        };
        let bits = u32_at(b, 4).ok_or_else(|| bad("truncated header"))?;
        let classes = u32_at(b, 8).ok_or_else(|| bad("truncated header"))? as usize;
        if classes != CLASSES || !(8..=24).contains(&bits) {
            return Err(bad(
                "unsupported weight file: expected 5 classes and 8..=24 hash bits",
            ));
        }
        let n = (1usize << bits) * CLASSES;
        let body = 12 + 4 * (CLASSES + n);
        if b.len() < body || (!v2 && b.len() != body) {
            return Err(bad("weight file has the wrong length for its header"));
        }
        let mut floats = b.get(12..body).unwrap_or(&[]).chunks_exact(4).map(|c| {
            let a: [u8; 4] = c.try_into().unwrap_or([0; 4]);
            f32::from_le_bytes(a)
        });
        let mut bias = [0f32; CLASSES];
        for x in bias.iter_mut() {
            *x = floats.next().unwrap_or(0.0);
        }
        let w: Vec<f32> = floats.collect();
        let mut m = Model {
            bits,
            bias,
            w,
            fusion: None,
            lm: None,
        };
        let mut o = body;
        while o < b.len() {
            let tag = b
                .get(o..o + 4)
                .ok_or_else(|| bad("truncated section tag"))?;
            let len = u32_at(b, o + 4).ok_or_else(|| bad("truncated section length"))? as usize;
            let p = b
                .get(o + 8..o + 8 + len)
                .ok_or_else(|| bad("section runs past the end of the file"))?;
            match tag {
                b"FUS1" => m.fusion = Some(parse_fusion(p).ok_or_else(|| bad("bad FUS1 section"))?),
                b"NAT1" => {
                    m.lm = Some(CharLm::from_bytes(p).ok_or_else(|| bad("bad NAT1 section"))?)
                }
                _ => return Err(bad("unknown section in the weight file")),
            }
            o += 8 + len;
        }
        Ok(Some(m))
    }

    /// Serialises the model (with its fusion and naturalness sections) as a `DTM2` file.
    pub fn to_bytes(&self) -> Vec<u8> {
        write_file(
            self.bits,
            &self.bias,
            &self.w,
            self.fusion.as_ref(),
            self.lm.as_ref(),
        )
    }

    /// Assembles a model from trained parts.
    pub fn from_parts(bits: u32, bias: [f32; CLASSES], w: Vec<f32>) -> Model {
        Model {
            bits,
            bias,
            w,
            fusion: None,
            lm: None,
        }
    }

    pub fn bits(&self) -> u32 {
        self.bits
    }

    pub fn heap_bytes(&self) -> usize {
        self.w.capacity() * 4
    }

    /// Per-class attack probabilities: the maximum over the text's windows.
    /// Index 0 (benign) is the minimum benign probability.
    pub fn predict(&self, toks: &Tokens, scratch: &mut Vec<u32>) -> [f32; CLASSES] {
        let ws = words(toks);
        let hs = hashes(&ws);
        let mask = (1u64 << self.bits) - 1;
        // prefix sums of per-token weight vectors and feature counts
        let mut pre: Vec<([f32; CLASSES], u32)> = Vec::with_capacity(ws.len() + 1);
        let mut acc = [0f32; CLASSES];
        let mut cnt = 0u32;
        pre.push((acc, cnt));
        for i in 0..ws.len() {
            // Features are added as they are made (no buffer), in `token_features` order.
            token_features(&ws, &hs, i, mask, |f| {
                let o = f as usize * CLASSES;
                if let Some(w) = self.w.get(o..o + CLASSES) {
                    for (a, x) in acc.iter_mut().zip(w) {
                        *a += *x;
                    }
                }
                cnt += 1;
            });
            pre.push((acc, cnt));
        }
        let mut best = [0f32; CLASSES];
        best[0] = 1.0;
        for (s, e) in windows(ws.len()) {
            let (Some(ps), Some(pe)) = (pre.get(s), pre.get(e)) else {
                continue;
            };
            scratch.clear();
            window_extras(&hs, s, e, mask, scratch);
            let mut z = [0f32; CLASSES];
            for (c, zc) in z.iter_mut().enumerate() {
                *zc = pe.0.get(c).copied().unwrap_or(0.0) - ps.0.get(c).copied().unwrap_or(0.0);
            }
            for &f in scratch.iter() {
                let o = f as usize * CLASSES;
                if let Some(w) = self.w.get(o..o + CLASSES) {
                    for (a, x) in z.iter_mut().zip(w) {
                        *a += *x;
                    }
                }
            }
            let n = (pe.1 - ps.1) as usize + scratch.len();
            let scale = 1.0 / (n.max(1) as f32).sqrt();
            for (zi, bi) in z.iter_mut().zip(self.bias.iter()) {
                *zi = *zi * scale + *bi;
            }
            let p = softmax(z);
            best[0] = best[0].min(p[0]);
            for (b, pc) in best.iter_mut().zip(p.iter()).skip(1) {
                *b = b.max(*pc);
            }
        }
        best
    }
}

pub fn softmax(z: [f32; CLASSES]) -> [f32; CLASSES] {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut p = [0f32; CLASSES];
    let mut s = 0f32;
    for (pi, zi) in p.iter_mut().zip(z.iter()) {
        *pi = (*zi - m).exp();
        s += *pi;
    }
    for pi in p.iter_mut() {
        *pi /= s.max(f32::MIN_POSITIVE);
    }
    p
}

fn parse_fusion(p: &[u8]) -> Option<Fusion> {
    let n = u32_at(p, 0)? as usize;
    if n != FUSION_INPUTS || p.len() != 12 + 4 * n {
        return None;
    }
    let mut w = [0f32; FUSION_INPUTS];
    for (i, x) in w.iter_mut().enumerate() {
        *x = f32_at(p, 12 + 4 * i)?;
    }
    let f = Fusion {
        bias: f32_at(p, 4)?,
        shift: f32_at(p, 8)?,
        w,
    };
    (f.bias.is_finite() && f.shift.is_finite() && f.w.iter().all(|x| x.is_finite())).then_some(f)
}

/// Writes a `DTM2` weight file.
pub fn write_file(
    bits: u32,
    bias: &[f32; CLASSES],
    w: &[f32],
    fusion: Option<&Fusion>,
    lm: Option<&CharLm>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + 4 * (CLASSES + w.len()));
    out.extend_from_slice(b"DTM2");
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(&(CLASSES as u32).to_le_bytes());
    for x in bias.iter().chain(w.iter()) {
        out.extend_from_slice(&x.to_le_bytes());
    }
    if let Some(f) = fusion {
        let mut p = Vec::new();
        p.extend_from_slice(&(FUSION_INPUTS as u32).to_le_bytes());
        p.extend_from_slice(&f.bias.to_le_bytes());
        p.extend_from_slice(&f.shift.to_le_bytes());
        for x in f.w.iter() {
            p.extend_from_slice(&x.to_le_bytes());
        }
        section(&mut out, b"FUS1", &p);
    }
    if let Some(l) = lm {
        section(&mut out, b"NAT1", &l.to_bytes());
    }
    out
}

fn section(out: &mut Vec<u8>, tag: &[u8; 4], p: &[u8]) {
    out.extend_from_slice(tag);
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    out.extend_from_slice(p);
}
