//! The original (pre-optimisation) normalisation, kept as a test oracle.
#![allow(dead_code)]
use super::{NormSignals, Normalized};
use unicode_normalization::char::{decompose_compatible, is_combining_mark};

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
        map: super::SpanMap::Chars {
            starts: orig_start,
            ends: orig_end,
        },
        signals: sig,
    }
}

fn is_tok(c: char) -> bool {
    c.is_alphanumeric() || c == '$'
}

/// 0: not a separator, 1: space, 2: punctuation separator.
fn sep_kind(c: char) -> u8 {
    match c {
        ' ' => 1,
        c if is_sep(c) => 2,
        _ => 0,
    }
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
        // One separator kind per run (spaces, or punctuation): "i.g.n.o.r.e a.l.l" is two words.
        let kind = |k: usize| units.get(k).map(|u| sep_kind(u.c)).unwrap_or(0);
        let k0 = kind(i + 1);
        let mut j = i;
        let mut count = 1;
        while j + 2 < n && k0 != 0 && kind(j + 1) == k0 && single(j + 2) {
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
