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
    /// `orig_start[i]`/`orig_end[i]`: span in the original text of the char that produced byte `i`.
    pub orig_start: Vec<u32>,
    pub orig_end: Vec<u32>,
    pub signals: NormSignals,
}

impl Normalized {
    /// Maps a non-empty normalised byte range to an original byte range (char boundaries).
    pub fn map_span(&self, start: usize, end: usize) -> Option<(usize, usize)> {
        if start >= end || end > self.text.len() {
            return None;
        }
        let s = *self.orig_start.get(start)? as usize;
        let e = *self.orig_end.get(end - 1)? as usize;
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

/// Folds one char: compatibility decomposition, lower-casing, mark stripping, confusables.
fn fold_char(c: char, out: &mut Vec<char>, sig: &mut NormSignals) {
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
    let mut first: Vec<char> = Vec::with_capacity(4);
    decompose_compatible(c, |d| first.push(d));
    for d in first {
        for l in d.to_lowercase() {
            let mut tmp: Vec<char> = Vec::with_capacity(2);
            decompose_compatible(l, |x| tmp.push(x));
            for x in tmp {
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

/// Normalises `input`. Idempotent: `normalize(normalize(x).text).text == normalize(x).text`.
pub fn normalize(input: &str) -> Normalized {
    let mut sig = NormSignals::default();
    // Pass 1: fold chars.
    let mut units: Vec<Unit> = Vec::with_capacity(input.len());
    let mut buf: Vec<char> = Vec::with_capacity(4);
    for (i, c) in input.char_indices() {
        let s = i as u32;
        let e = (i + c.len_utf8()) as u32;
        if ('\u{E0020}'..='\u{E007E}').contains(&c) {
            // Unicode tag characters smuggle ASCII: decode them.
            sig.tag_chars = true;
            sig.invisible = true;
            let a = char::from_u32(c as u32 - 0xE0000).unwrap_or(' ');
            units.push(Unit {
                c: a.to_ascii_lowercase(),
                s,
                e,
            });
            continue;
        }
        if is_invisible(c) {
            sig.invisible = true;
            continue;
        }
        buf.clear();
        fold_char(c, &mut buf, &mut sig);
        for &d in &buf {
            units.push(Unit { c: d, s, e });
        }
    }
    // Pass 2: join single letters spaced/punctuated apart ("i g n o r e", "i.g.n.o.r.e").
    let units = join_spaced(units, &mut sig);
    // Pass 3: leetspeak inside tokens that contain letters.
    let units = map_leet(units, &mut sig);
    let mut text = String::with_capacity(units.len());
    let mut orig_start = Vec::with_capacity(units.len());
    let mut orig_end = Vec::with_capacity(units.len());
    for u in &units {
        text.push(u.c);
        for _ in 0..u.c.len_utf8() {
            orig_start.push(u.s);
            orig_end.push(u.e);
        }
    }
    Normalized {
        text,
        orig_start,
        orig_end,
        signals: sig,
    }
}

fn is_tok(c: char) -> bool {
    c.is_alphanumeric() || c == '$'
}

fn join_spaced(units: Vec<Unit>, sig: &mut NormSignals) -> Vec<Unit> {
    let n = units.len();
    // single[i]: units[i] is a one-char token (neighbours are not token chars).
    let single = |i: usize| -> bool {
        let Some(u) = units.get(i) else { return false };
        if !is_tok(u.c) {
            return false;
        }
        let prev_ok = i == 0 || units.get(i - 1).is_none_or(|p| !is_tok(p.c));
        let next_ok = units.get(i + 1).is_none_or(|p| !is_tok(p.c));
        prev_ok && next_ok
    };
    let mut drop = vec![false; n];
    let mut any = false;
    let mut i = 0;
    while i < n {
        if !single(i) {
            i += 1;
            continue;
        }
        // extend run: single (sep single)*
        let mut j = i;
        let mut count = 1;
        while j + 2 < n && units.get(j + 1).is_some_and(|u| is_sep(u.c)) && single(j + 2) {
            j += 2;
            count += 1;
        }
        if count >= 3 {
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
    if !any {
        return units;
    }
    sig.spaced = true;
    units
        .into_iter()
        .zip(drop)
        .filter(|(_, d)| !d)
        .map(|(u, _)| u)
        .collect()
}

fn map_leet(mut units: Vec<Unit>, sig: &mut NormSignals) -> Vec<Unit> {
    let n = units.len();
    let mut i = 0;
    while i < n {
        if !units.get(i).is_some_and(|u| is_tok(u.c)) {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut has_letter = false;
        let mut has_leet = false;
        while let Some(u) = units.get(j) {
            if !is_tok(u.c) {
                break;
            }
            if u.c.is_alphabetic() {
                has_letter = true;
            } else if leet(u.c).is_some() {
                has_leet = true;
            }
            j += 1;
        }
        if has_letter && has_leet {
            sig.leet = true;
            for u in units.iter_mut().take(j).skip(i) {
                if let Some(m) = leet(u.c) {
                    u.c = m;
                }
            }
        }
        i = j;
    }
    units
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
    /// Index of the token containing byte `pos` of `words`.
    pub fn token_at(&self, pos: usize) -> usize {
        match self.wstart.binary_search(&(pos as u32)) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }
}

pub fn tokenize(norm: &str) -> Tokens {
    let mut t = Tokens {
        words: String::with_capacity(norm.len()),
        wstart: Vec::with_capacity(norm.len() / 5 + 1),
        nspan: Vec::with_capacity(norm.len() / 5 + 1),
        sent: Vec::with_capacity(norm.len() / 5 + 1),
    };
    let mut start: Option<usize> = None;
    let mut sent: u32 = 0;
    for (i, c) in norm.char_indices() {
        if c.is_alphanumeric() {
            if start.is_none() {
                start = Some(i);
            }
        } else {
            if let Some(s) = start.take() {
                push_tok(&mut t, norm, s, i, sent);
            }
            if matches!(c, '.' | '!' | '?' | ';' | '\n' | '。' | '！' | '？') {
                sent += 1;
            }
        }
    }
    if let Some(s) = start {
        push_tok(&mut t, norm, s, norm.len(), sent);
    }
    t.words.push(' ');
    t
}

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

    #[test]
    fn spans_map_back() {
        let s = "xx ｉｇｎｏｒｅ yy";
        let n = normalize(s);
        let p = n.text.find("ignore").unwrap_or(0);
        let (a, b) = n.map_span(p, p + 6).unwrap_or((0, 0));
        assert_eq!(&s[a..b], "ｉｇｎｏｒｅ");
    }
}
