//! Text normalisation with a map back to the original byte offsets.
//!
//! Owns: Unicode compatibility folding (NFKC-style compatibility decomposition, case
//! folding, combining-mark stripping), removal of invisible / bidi / tag characters
//! (ASCII-smuggling tag characters are decoded to ASCII), confusable homoglyph mapping,
//! joining of letters spaced or punctuated apart, leetspeak mapping, and word tokenisation.
//! Imports only std and `unicode-normalization`.

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// Signals raised while normalising.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NormSignals {
    pub invisible: bool,
    pub tag_chars: bool,
    pub homoglyphs: bool,
    pub spaced: bool,
    pub leet: bool,
}

/// Normalised text plus, for every byte of it, the original byte span of the char it came from.
#[derive(Debug, Clone, Default)]
pub struct Normalized {
    pub text: String,
    /// Byte `i` of `text` came from the char at `map.span(i)` of the original text.
    pub map: SpanMap,
    pub signals: NormSignals,
}

/// Where each byte of a normalised text came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SpanMap {
    /// Byte `i` came from byte `i` (ASCII text that normalisation left in place).
    #[default]
    Identity,
    /// Byte `i` came from the single byte `starts[i]` (ASCII text with bytes dropped).
    Bytes(Vec<u32>),
    /// Byte `i` came from the char at `starts[i]..ends[i]`.
    Chars { starts: Vec<u32>, ends: Vec<u32> },
}

impl SpanMap {
    /// The original span of normalised byte `i` (`len` = the normalised text's length).
    #[inline]
    pub fn span(&self, i: usize, len: usize) -> Option<(u32, u32)> {
        match self {
            SpanMap::Identity => {
                let i = u32::try_from(i).ok().filter(|_| i < len)?;
                Some((i, i + 1))
            }
            SpanMap::Bytes(v) => v.get(i).map(|&s| (s, s + 1)),
            SpanMap::Chars { starts, ends } => Some((*starts.get(i)?, *ends.get(i)?)),
        }
    }
}

impl Normalized {
    /// Maps a non-empty normalised byte range to an original byte range (char boundaries).
    pub fn map_span(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        if start >= end || end > self.text.len() {
            return None;
        }
        let s = self.map.span(start, self.text.len())?.0 as usize;
        let e = self.map.span(end - 1, self.text.len())?.1 as usize;
        if s < e { Some((s, e)) } else { None }
    }
}

#[derive(Clone, Copy)]
struct Unit {
    c: char,
    s: u32,
    e: u32,
}

fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// Cyrillic / Greek / other look-alikes of Latin letters (already lower-cased input).
fn confusable(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' | 'ɑ' => 'a',
        'в' | 'β' | 'ь' => 'b',
        'с' | 'ϲ' | 'ς' => 'c',
        'ԁ' | 'ɗ' => 'd',
        'е' | 'ё' | 'ε' | 'є' => 'e',
        'ғ' => 'f',
        'ɡ' | 'ց' => 'g',
        'һ' | 'η' | 'н' => 'h',
        'і' | 'ї' | 'ι' | 'ı' | 'ɩ' => 'i',
        'ј' | 'ϳ' => 'j',
        'к' | 'κ' => 'k',
        'ӏ' | 'ℓ' => 'l',
        'м' => 'm',
        'п' | 'ո' => 'n',
        'о' | 'ο' | 'σ' | 'օ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'г' => 'r',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' | 'ս' => 'u',
        'ν' | 'ѵ' => 'v',
        'ԝ' | 'ω' | 'ш' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'γ' | 'ү' => 'y',
        'ᴢ' => 'z',
        _ => return None,
    })
}

fn leet(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        '$' => 's',
        _ => return None,
    })
}

fn is_sep(c: char) -> bool {
    matches!(c, ' ' | '.' | '-' | '_' | '*' | ',' | '|' | '/' | '+' | '~')
}

/// 0: not a separator, 1: space, 2: punctuation separator.
fn sep_kind(c: char) -> u8 {
    match c {
        ' ' => 1,
        c if is_sep(c) => 2,
        _ => 0,
    }
}

fn sep_kind_byte(b: u8) -> u8 {
    match b {
        b' ' => 1,
        b if is_sep_byte(b) => 2,
        _ => 0,
    }
}

/// Folds one non-ASCII char: compatibility decomposition, lower-casing, mark stripping,
/// confusables. `first`/`tmp` are scratch buffers (no allocation per char).
fn fold_char(
    c: char,
    out: &mut Vec<char>,
    sig: &mut NormSignals,
    first: &mut Vec<char>,
    tmp: &mut Vec<char>,
) {
    if c.is_ascii() {
        if c == '\n' {
            out.push('\n');
        } else if c.is_ascii_whitespace() {
            out.push(' ');
        } else if c.is_ascii_control() {
            // dropped
        } else {
            out.push(c.to_ascii_lowercase());
        }
        return;
    }
    if c.is_whitespace() {
        out.push(' ');
        return;
    }
    if c.is_control() {
        return;
    }
    first.clear();
    decompose_compatible(c, |d| first.push(d));
    for &d in first.iter() {
        for l in d.to_lowercase() {
            tmp.clear();
            decompose_compatible(l, |x| tmp.push(x));
            for &x in tmp.iter() {
                if is_combining_mark(x) || is_invisible(x) {
                    continue;
                }
                if x.is_whitespace() {
                    out.push(' ');
                } else if x.is_control() {
                    continue;
                } else if let Some(m) = confusable(x) {
                    sig.homoglyphs = true;
                    out.push(m);
                } else {
                    out.push(x);
                }
            }
        }
    }
}

/// Class bits of a unit: token char (`is_tok`) and alphabetic.
const F_TOK: u8 = 1;
const F_ALPHA: u8 = 2;

#[inline]
fn class_of(c: char) -> u8 {
    if c.is_ascii() {
        ascii_class(c as u8)
    } else if c.is_alphabetic() {
        F_TOK | F_ALPHA
    } else if c.is_numeric() {
        F_TOK
    } else {
        0
    }
}

#[inline]
fn ascii_class(b: u8) -> u8 {
    ASCII_CLASS.get(b as usize).copied().unwrap_or(0)
}

const fn ascii_class_const(b: u8) -> u8 {
    if b.is_ascii_alphabetic() {
        F_TOK | F_ALPHA
    } else if b.is_ascii_digit() || b == b'$' {
        F_TOK
    } else {
        0
    }
}

/// [`ascii_class`] of every byte (0 for non-ASCII bytes).
static ASCII_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 128 {
        t[i] = ascii_class_const(i as u8);
        i += 1;
    }
    t
};

/// Byte that an ASCII byte folds to; [`DROP`] for dropped control chars.
const DROP: u8 = 0xFF;
static ASCII_FOLD: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = match b {
            b'\n' => b'\n',
            b' ' | b'\t' | b'\x0C' | b'\r' => b' ',
            0..=0x1F | 0x7F => DROP,
            _ => b.to_ascii_lowercase(),
        };
        i += 1;
    }
    t
};

#[inline]
fn is_sep_byte(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'.' | b'-' | b'_' | b'*' | b',' | b'|' | b'/' | b'+' | b'~'
    )
}

#[inline]
fn leet_byte(b: u8) -> Option<u8> {
    Some(match b {
        b'0' => b'o',
        b'1' => b'i',
        b'3' => b'e',
        b'4' => b'a',
        b'5' => b's',
        b'7' => b't',
        b'$' => b's',
        _ => return None,
    })
}

/// Pass 2 ("i g n o r e", "i.g.n.o.r.e"): marks the separators between single letters
/// spaced/punctuated apart in `drop` (allocated on first use). Returns whether any.
#[inline]
fn spaced_runs(
    n: usize,
    tok: impl Fn(usize) -> bool,
    sep: impl Fn(usize) -> u8,
    drop: &mut Vec<bool>,
) -> bool {
    // single(i): unit i is a one-char token (neighbours are not token chars).
    let single = |i: usize| -> bool {
        i < n && tok(i) && (i == 0 || !tok(i - 1)) && (i + 1 >= n || !tok(i + 1))
    };
    let mut any = false;
    let mut i = 0;
    while i < n {
        if !tok(i) {
            i += 1;
            continue;
        }
        // A token run of more than one char holds no single: skip it whole.
        let mut r = i + 1;
        while r < n && tok(r) {
            r += 1;
        }
        if r - i > 1 || (i > 0 && tok(i - 1)) {
            i = r;
            continue;
        }
        // extend run: single (sep single)*, one separator kind per run (spaces, or
        // punctuation), so "i.g.n.o.r.e a.l.l" stays two words.
        let k0 = sep(i + 1);
        let mut j = i;
        let mut count = 1;
        while j + 2 < n && k0 != 0 && sep(j + 1) == k0 && single(j + 2) {
            j += 2;
            count += 1;
        }
        if count >= 3 {
            if drop.len() != n {
                drop.clear();
                drop.resize(n, false);
            }
            let mut k = i + 1;
            while k < j {
                if let Some(d) = drop.get_mut(k) {
                    *d = true;
                }
                k += 2;
            }
            any = true;
        }
        i = j + 1;
    }
    any
}

/// Removes the items marked in `drop` from two parallel vectors (same length), keeping order.
fn drop_marked<A: Copy, B: Copy>(drop: &[bool], a: &mut Vec<A>, b: &mut Vec<B>) {
    let mut w = 0;
    for r in 0..a.len().min(b.len()) {
        if drop.get(r).copied().unwrap_or(false) {
            continue;
        }
        if let (Some(&x), Some(&y)) = (a.get(r), b.get(r)) {
            if let Some(slot) = a.get_mut(w) {
                *slot = x;
            }
            if let Some(slot) = b.get_mut(w) {
                *slot = y;
            }
        }
        w += 1;
    }
    a.truncate(w);
    b.truncate(w);
}

/// Pass 3: leetspeak inside tokens that contain letters. Calls `map(i)` on every unit of
/// such tokens. Returns whether any token was mapped.
#[inline]
fn leet_tokens(
    n: usize,
    class: impl Fn(usize) -> u8,
    is_leet: impl Fn(usize) -> bool,
    mut map: impl FnMut(usize),
) -> bool {
    let mut any = false;
    let mut i = 0;
    while i < n {
        if class(i) & F_TOK == 0 {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut has_letter = false;
        let mut has_leet = false;
        while j < n {
            let f = class(j);
            if f & F_TOK == 0 {
                break;
            }
            if f & F_ALPHA != 0 {
                has_letter = true;
            } else if is_leet(j) {
                has_leet = true;
            }
            j += 1;
        }
        if has_letter && has_leet {
            any = true;
            for k in i..j {
                map(k);
            }
        }
        i = j;
    }
    any
}

/// Normalises `input`. Idempotent: `normalize(normalize(x).text).text == normalize(x).text`.
pub fn normalize(input: &str) -> Normalized {
    if input.is_ascii() {
        return normalize_ascii(input);
    }
    let mut sig = NormSignals::default();
    // Pass 1: fold chars.
    let mut units: Vec<Unit> = Vec::with_capacity(input.len());
    let mut class: Vec<u8> = Vec::with_capacity(input.len());
    let mut buf: Vec<char> = Vec::with_capacity(8);
    let mut first: Vec<char> = Vec::with_capacity(8);
    let mut tmp: Vec<char> = Vec::with_capacity(8);
    for (i, c) in input.char_indices() {
        let s = i as u32;
        if c.is_ascii() {
            let b = c as u8;
            let o = match b {
                b'\n' => b'\n',
                b' ' | b'\t' | b'\x0C' | b'\r' => b' ',
                0..=0x1F | 0x7F => continue,
                _ => b.to_ascii_lowercase(),
            };
            units.push(Unit {
                c: o as char,
                s,
                e: s + 1,
            });
            class.push(ascii_class(o));
            continue;
        }
        let e = (i + c.len_utf8()) as u32;
        if ('\u{E0020}'..='\u{E007E}').contains(&c) {
            // Unicode tag characters smuggle ASCII: decode them.
            sig.tag_chars = true;
            sig.invisible = true;
            let a = char::from_u32(c as u32 - 0xE0000).unwrap_or(' ');
            let a = a.to_ascii_lowercase();
            units.push(Unit { c: a, s, e });
            class.push(class_of(a));
            continue;
        }
        if is_invisible(c) {
            sig.invisible = true;
            continue;
        }
        buf.clear();
        fold_char(c, &mut buf, &mut sig, &mut first, &mut tmp);
        for &d in &buf {
            units.push(Unit { c: d, s, e });
            class.push(class_of(d));
        }
    }
    // Pass 2: join single letters spaced/punctuated apart ("i g n o r e", "i.g.n.o.r.e").
    let n = units.len();
    let mut drop: Vec<bool> = Vec::new();
    let spaced = {
        let (u, cl) = (&units, &class);
        spaced_runs(
            n,
            |i| cl.get(i).is_some_and(|f| f & F_TOK != 0),
            |i| u.get(i).map_or(0, |x| sep_kind(x.c)),
            &mut drop,
        )
    };
    if spaced {
        sig.spaced = true;
        drop_marked(&drop, &mut units, &mut class);
    }
    // Pass 3: leetspeak inside tokens that contain letters.
    let n = units.len();
    let mut lmap: Vec<usize> = Vec::new();
    let leet_any = {
        let (u, cl) = (&units, &class);
        leet_tokens(
            n,
            |i| cl.get(i).copied().unwrap_or(0),
            |i| u.get(i).is_some_and(|x| leet(x.c).is_some()),
            |i| lmap.push(i),
        )
    };
    if leet_any {
        sig.leet = true;
        for i in lmap {
            if let Some(u) = units.get_mut(i)
                && let Some(m) = leet(u.c)
            {
                u.c = m;
            }
        }
    }
    let mut text = String::with_capacity(units.len() + units.len() / 2);
    let mut orig_start = Vec::with_capacity(text.capacity());
    let mut orig_end = Vec::with_capacity(text.capacity());
    for u in &units {
        text.push(u.c);
        for _ in 0..u.c.len_utf8() {
            orig_start.push(u.s);
            orig_end.push(u.e);
        }
    }
    Normalized {
        text,
        map: SpanMap::Chars {
            starts: orig_start,
            ends: orig_end,
        },
        signals: sig,
    }
}

/// [`normalize`] for ASCII input: every unit is one byte (same semantics, byte-wise).
fn normalize_ascii(input: &str) -> Normalized {
    let mut sig = NormSignals::default();
    let src = input.as_bytes();
    let fold = |b: u8| ASCII_FOLD.get(b as usize).copied().unwrap_or(DROP);
    let mut t: Vec<u8>;
    // Original offset of each byte of `t`; `None` while it is the identity.
    let mut idx: Option<Vec<u32>> = None;
    if !src.iter().any(|&b| fold(b) == DROP) {
        t = src.iter().map(|&b| fold(b)).collect();
    } else {
        t = Vec::with_capacity(src.len());
        let mut v: Vec<u32> = Vec::with_capacity(src.len());
        for (i, &b) in src.iter().enumerate() {
            let o = fold(b);
            if o != DROP {
                v.push(i as u32);
                t.push(o);
            }
        }
        idx = Some(v);
    }
    // Pass 2: spaced letters.
    let n = t.len();
    let mut drop: Vec<bool> = Vec::new();
    let spaced = {
        let tb = &t;
        spaced_runs(
            n,
            |i| tb.get(i).is_some_and(|&b| ascii_class(b) & F_TOK != 0),
            |i| tb.get(i).map_or(0, |&b| sep_kind_byte(b)),
            &mut drop,
        )
    };
    if spaced {
        sig.spaced = true;
        let v = idx.get_or_insert_with(|| (0..n as u32).collect());
        drop_marked(&drop, &mut t, v);
    }
    // Pass 3: leetspeak.
    let n = t.len();
    let mut lmap: Vec<usize> = Vec::new();
    let leet_any = {
        let tb = &t;
        leet_tokens(
            n,
            |i| tb.get(i).map_or(0, |&b| ascii_class(b)),
            |i| tb.get(i).is_some_and(|&b| leet_byte(b).is_some()),
            |i| lmap.push(i),
        )
    };
    if leet_any {
        sig.leet = true;
        for i in lmap {
            if let Some(b) = t.get_mut(i)
                && let Some(m) = leet_byte(*b)
            {
                *b = m;
            }
        }
    }
    // All bytes are ASCII, so this cannot fail.
    let text = String::from_utf8(t).unwrap_or_default();
    Normalized {
        text,
        map: match idx {
            Some(v) => SpanMap::Bytes(v),
            None => SpanMap::Identity,
        },
        signals: sig,
    }
}

/// Word tokens of a normalised text: runs of alphanumeric chars.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// Tokens joined by single spaces, with a leading and a trailing space (so patterns
    /// padded with spaces only match whole words).
    pub words: String,
    /// Byte start of each token in `words`.
    pub wstart: Vec<u32>,
    /// Byte span of each token in the normalised text.
    pub nspan: Vec<(u32, u32)>,
    /// Sentence number of each token (sentences end at `.`, `!`, `?`, `;` or a line break).
    pub sent: Vec<u32>,
}

impl Tokens {
    /// Empty tokens with room for those of `norm`.
    fn for_text(norm: &str) -> Tokens {
        Tokens {
            words: String::with_capacity(norm.len() + 2),
            wstart: Vec::with_capacity(norm.len() / 5 + 1),
            nspan: Vec::with_capacity(norm.len() / 5 + 1),
            sent: Vec::with_capacity(norm.len() / 5 + 1),
        }
    }

    /// Index of the token containing byte `pos` of `words`.
    pub fn token_at(&self, pos: usize) -> usize {
        match self.wstart.binary_search(&(pos as u32)) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }
}

pub fn tokenize(norm: &str) -> Tokens {
    if norm.is_ascii() {
        return tokenize_ascii(norm);
    }
    tokenize_general(norm)
}

/// Bit 0: ASCII letter or digit (a token byte); bit 1: ends a sentence.
static TOK_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() {
            t[i] = 1;
        } else if matches!(b, b'.' | b'!' | b'?' | b';' | b'\n') {
            t[i] = 2;
        }
        i += 1;
    }
    t
};

/// [`tokenize`] for ASCII text: the same tokens, by table lookups over whole runs.
fn tokenize_ascii(norm: &str) -> Tokens {
    let mut t = Tokens::for_text(norm);
    let b = norm.as_bytes();
    let class = |i: usize| {
        b.get(i)
            .map_or(0, |&c| TOK_CLASS.get(c as usize).copied().unwrap_or(0))
    };
    let n = b.len();
    let mut sent: u32 = 0;
    let mut i = 0;
    while i < n {
        // Separators: count sentence ends.
        let f = class(i);
        if f & 1 == 0 {
            sent += u32::from(f >> 1);
            i += 1;
            continue;
        }
        let s = i;
        while i < n && class(i) & 1 != 0 {
            i += 1;
        }
        push_tok(&mut t, norm, s, i, sent);
    }
    t.words.push(' ');
    t
}

fn tokenize_general(norm: &str) -> Tokens {
    let mut t = Tokens::for_text(norm);
    let b = norm.as_bytes();
    let n = b.len();
    let mut start: Option<usize> = None;
    let mut sent: u32 = 0;
    let mut i = 0;
    while i < n {
        let c = b.get(i).copied().unwrap_or(0);
        let (alnum, len, end_sent) = if c < 0x80 {
            (
                c.is_ascii_alphanumeric(),
                1,
                matches!(c, b'.' | b'!' | b'?' | b';' | b'\n'),
            )
        } else {
            match norm.get(i..).and_then(|r| r.chars().next()) {
                Some(ch) => (
                    ch.is_alphanumeric(),
                    ch.len_utf8(),
                    matches!(ch, '。' | '！' | '？'),
                ),
                None => (false, 1, false),
            }
        };
        if alnum {
            if start.is_none() {
                start = Some(i);
            }
        } else {
            if let Some(s) = start.take() {
                push_tok(&mut t, norm, s, i, sent);
            }
            if end_sent {
                sent += 1;
            }
        }
        i += len;
    }
    if let Some(s) = start {
        push_tok(&mut t, norm, s, norm.len(), sent);
    }
    t.words.push(' ');
    t
}

#[inline]
fn push_tok(t: &mut Tokens, norm: &str, s: usize, e: usize, sent: u32) {
    if let Some(w) = norm.get(s..e) {
        t.words.push(' ');
        t.wstart.push(t.words.len() as u32);
        t.words.push_str(w);
        t.nspan.push((s as u32, e as u32));
        t.sent.push(sent);
    }
}

#[cfg(test)]
#[path = "normalize_ref.rs"]
pub(crate) mod reference;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_obfuscation() {
        assert_eq!(normalize("I G N O R E all").text, "ignore all");
        assert_eq!(normalize("i.g.n.o.r.e").text, "ignore");
        assert_eq!(normalize("1gn0r3 pr3v10us").text, "ignore previous");
        assert_eq!(normalize("ｉｇｎｏｒｅ").text, "ignore");
        assert_eq!(normalize("ig\u{200B}nore").text, "ignore");
        assert_eq!(normalize("ѕуѕtеm").text, "system");
        assert_eq!(normalize("user@gmail.com").text, "user@gmail.com");
        assert!(normalize("ig\u{200B}nore").signals.invisible);
    }

    proptest::proptest! {
        /// The ASCII tokenizer gives exactly the general one's tokens.
        #[test]
        fn ascii_tokenizer_matches_general(s in "[\\x00-\\x7f]{0,120}") {
            let a = tokenize_ascii(&s);
            let g = tokenize_general(&s);
            proptest::prop_assert_eq!(&a.words, &g.words);
            proptest::prop_assert_eq!(&a.wstart, &g.wstart);
            proptest::prop_assert_eq!(&a.nspan, &g.nspan);
            proptest::prop_assert_eq!(&a.sent, &g.sent);
        }
    }

    fn same_as_reference(s: &str) {
        let a = normalize(s);
        let b = reference::normalize(s);
        assert_eq!(a.text, b.text, "{s:?}");
        for i in 0..b.text.len() + 1 {
            assert_eq!(
                a.map.span(i, a.text.len()),
                b.map.span(i, b.text.len()),
                "{s:?} byte {i}"
            );
        }
        assert_eq!(a.signals, b.signals, "{s:?}");
    }

    #[test]
    fn matches_reference_examples() {
        for s in [
            "",
            "a",
            "I G N O R E all",
            "i.g.n.o.r.e",
            "1gn0r3 pr3v10us",
            "ｉｇｎｏｒｅ",
            "ig\u{200B}nore",
            "ѕуѕtеm",
            "user@gmail.com",
            "a\x01b\x7fc d e f",
            "\x0b x y z \t\r\n",
            "$5 c0$t a b c",
            "é a b c",
            "ß İ ﬁ",
            "\u{E0069}\u{E0067}x",
            "x 1 2 3 y",
            "a-b-c-d",
        ] {
            same_as_reference(s);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn matches_reference_any(s in "\\PC{0,80}") {
            same_as_reference(&s);
        }
        #[test]
        fn matches_reference_ascii(s in "[\\x00-\\x7f]{0,80}") {
            same_as_reference(&s);
        }
        #[test]
        fn matches_reference_obfuscation(s in "([a-zA-Z0-9$]|[ .\\-_*,|/+~\\t\\n\\x01]|\u{200B}|[а-я]|[α-ω]|[Ａ-Ｚ]|é|ß|İ|ﬁ|\u{E0041}){0,60}") {
            same_as_reference(&s);
        }
    }

    #[test]
    fn spans_map_back() {
        let s = "xx ｉｇｎｏｒｅ yy";
        let n = normalize(s);
        let p = n.text.find("ignore").unwrap_or(0);
        let (a, b) = n.map_span(p, p + 6).unwrap_or((0, 0));
        assert_eq!(&s[a..b], "ｉｇｎｏｒｅ");
    }
}
