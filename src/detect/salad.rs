//! Token-salad suffixes: the structural half of adversarial-suffix (GCG-style) detection.
//!
//! An optimised suffix is a run of sub-word tokens that a tokenizer likes and a writer never
//! produces: words glued across case (`mismatchInst`, `sentencesScriptjQuery`), letters stuck to
//! brackets, backslashes and operators (`Sure(['`, `{\minipage`), clusters of punctuation
//! (`"]`, `}^`, `.](`), and brackets opened or closed without their partner. The character
//! model in [`super::natural`] sees the glued words as fluent (each half is a word); this score
//! counts the shapes instead. It compares the last [`WINDOW`] tokens of the text's last line
//! with its first tokens (prose that is odd all through, like code, is not a suffix), adds the
//! unbalanced brackets of the tail (and of up to 256 bytes of its line before it), and skips
//! what prompts legitimately contain: template placeholders (`${name:default}`, `{name}`),
//! Markdown links and inline code spans. A literal `\n` counts as a line break (serialised
//! code is code, not a suffix).
//!
//! Owns: the score. The threshold is [`SALAD_MIN`].
//!
//! May import: std and memchr.

/// Tokens in the scored tail (and at most in the head it is compared with).
pub const WINDOW: usize = 12;
/// Fewest head tokens (before the tail) for a text to have a fluent part to compare with.
const MIN_HEAD: usize = 4;
/// Score at or above which the tail is reported as a token-salad suffix. On the 11,505 vendored
/// dev + train benign rows, the prototype of this score (the same shapes, brackets counted over
/// the whole last line) had its 99.9th percentile at 4, and 8 rows at 5 or more.
pub const SALAD_MIN: f32 = 5.0;
/// At most this many bytes of a text are looked at (the suffix is in the last line of them).
const MAX_BYTES: usize = 64 * 1024;
/// Longest placeholder, link part or code span that is masked (bounds every look-ahead).
const MAX_SPAN: usize = 200;
/// Bytes before the tail that are masked with it (a span may start there and reach into it).
const MARGIN: usize = 256;
/// At most this many bytes at the start of the text are read for the head.
const HEAD_BYTES: usize = 512;

/// A token-salad tail: its score and byte span in the text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Salad {
    pub score: f32,
    pub span: (usize, usize),
}

/// Characters that, stuck to a letter, make a token look like sub-word salad.
#[inline]
fn special(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')'
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'\\'
            | b'$'
            | b'`'
            | b'<'
            | b'>'
            | b'|'
            | b'+'
            | b'='
            | b'_'
            | b'~'
            | b'^'
    )
}

/// Punctuation (not a word byte, not space). Bytes of non-ASCII characters count as word bytes.
#[inline]
fn punct(b: u8) -> bool {
    b.is_ascii_punctuation() && b != b'_'
}

/// Salad shapes in one token (0, 1 or 2).
fn weird(tok: &[u8]) -> u32 {
    let edge = |b: &u8| matches!(b, b'.' | b',' | b';' | b':' | b'!' | b'?' | b'"' | b'\'');
    let s = tok.iter().position(|b| !edge(b)).unwrap_or(tok.len());
    let e = tok.iter().rposition(|b| !edge(b)).map_or(s, |i| i + 1);
    let core = tok.get(s..e.max(s)).unwrap_or(&[]);
    let mut n = 0;
    let pairs = || core.windows(2).filter_map(|w| w.first().zip(w.get(1)));
    if pairs().any(|(a, b)| a.is_ascii_lowercase() && b.is_ascii_uppercase()) {
        n += 1;
    }
    if pairs().any(|(a, b)| {
        (a.is_ascii_alphabetic() && special(*b)) || (special(*a) && b.is_ascii_alphabetic())
    }) {
        n += 1;
    }
    let only = |c: u8| core.iter().all(|&b| b == c);
    let plain_run =
        !core.is_empty() && (only(b'.') || only(b'-') || only(b'*') || only(b'#') || only(b'='));
    if !plain_run && pairs().any(|(a, b)| punct(*a) && punct(*b)) {
        n += 1;
    }
    n.min(2)
}

/// Brackets without their partner, in order, over `part`.
fn unbalanced(part: &[u8]) -> u32 {
    let mut stack: Vec<u8> = Vec::new();
    let mut bad = 0;
    {
        let mut rest: &[u8] = part;
        while let Some(k) = rest
            .iter()
            .position(|&c| matches!(c, b'(' | b')' | b'[' | b']' | b'{' | b'}'))
        {
            let c = rest.get(k).copied().unwrap_or(b' ');
            rest = rest.get(k + 1..).unwrap_or(&[]);
            let open = match c {
                b')' => b'(',
                b']' => b'[',
                b'}' => b'{',
                _ => {
                    stack.push(c);
                    continue;
                }
            };
            if stack.last() == Some(&open) {
                stack.pop();
            } else {
                bad += 1;
            }
        }
    }
    bad + stack.len() as u32
}

/// Overwrites template placeholders (`${x}`, `{name: default}`), Markdown links (`[a](b)`) and
/// inline code (`` `x` ``) with `X`, byte for byte (offsets are kept; each becomes one plain
/// token).
fn mask(b: &mut [u8]) {
    let mut i = 0;
    while let Some(k) = b
        .get(i..)
        .and_then(|r| memchr::memchr3(b'{', b'[', b'`', r))
    {
        let at = i + k;
        // `${…}` is masked from its `$`.
        i = if b.get(at) == Some(&b'{') && at > 0 && b.get(at - 1) == Some(&b'$') {
            at - 1
        } else {
            at
        };
        let end = match b.get(i).copied() {
            Some(b'$') => placeholder(b, i + 1),
            Some(b'{') => placeholder(b, i),
            Some(b'[') => link(b, i),
            Some(b'`') => b
                .get(i + 1..(i + 1 + MAX_SPAN).min(b.len()))
                .and_then(|r| r.iter().position(|&c| c == b'`' || c == b'\n'))
                .filter(|&k| k > 0 && b.get(i + 1 + k) == Some(&b'`'))
                .map(|k| i + 2 + k),
            _ => None,
        };
        match end {
            Some(e) => {
                if let Some(r) = b.get_mut(i..e) {
                    r.fill(b'X');
                }
                i = e;
            }
            // Past the byte found (never back to it: the search goes forward).
            None => i = at + 1,
        }
    }
}

/// `{name…}` at `i` (a letter or `_` first, then word bytes, `: ,./-`): its end.
fn placeholder(b: &[u8], i: usize) -> Option<usize> {
    let first = *b.get(i + 1)?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let mut k = i + 2;
    while k < i + MAX_SPAN {
        let c = *b.get(k)?;
        if c == b'}' {
            return Some(k + 1);
        }
        let ok = c.is_ascii_alphanumeric()
            || c >= 0x80
            || matches!(c, b'_' | b':' | b' ' | b',' | b'.' | b'/' | b'-');
        if !ok {
            return None;
        }
        k += 1;
    }
    None
}

/// `[text](target)` at `i`, no line break in the text, no space in the target: its end.
fn link(b: &[u8], i: usize) -> Option<usize> {
    let part = |from: usize| b.get(from..(from + MAX_SPAN).min(b.len()));
    let close = i + 1 + part(i + 1)?.iter().position(|&c| c == b']' || c == b'\n')?;
    if b.get(close) != Some(&b']') || b.get(close + 1) != Some(&b'(') {
        return None;
    }
    let t = close + 2;
    let end = t + part(t)?
        .iter()
        .position(|&c| c == b')' || c.is_ascii_whitespace())?;
    (b.get(end) == Some(&b')')).then_some(end + 1)
}

/// Whitespace tokens of `b`, as byte spans, at most `limit` of them.
fn tokens(b: &[u8], limit: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(limit.min(64));
    let mut i = 0;
    let to = b.len();
    while i < to && out.len() < limit {
        while i < to && b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        let s = i;
        while i < to && b.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
            i += 1;
        }
        if i > s {
            out.push((s, i));
        }
    }
    out
}

/// Start of the last non-blank line of `b`: after the last `\n` or literal `\n` (backslash,
/// `n`) that has a non-space byte after it.
fn last_line(b: &[u8]) -> usize {
    let mut end = b.len();
    loop {
        let line = b.get(..end).unwrap_or(&[]);
        // After the last `\n`, or the last backslash that an `n` follows.
        let mut k = line.len();
        let start = loop {
            match memchr::memrchr2(b'\n', b'\\', line.get(..k).unwrap_or(&[])) {
                None => break 0,
                Some(j) if line.get(j) == Some(&b'\n') => break j + 1,
                Some(j) if line.get(j + 1) == Some(&b'n') => break j + 2,
                Some(j) => k = j,
            }
        };
        let blank = line
            .get(start..)
            .is_none_or(|r| r.iter().all(|c| c.is_ascii_whitespace()));
        if !blank || start == 0 {
            return start;
        }
        // The break itself: one byte for `\n`, two for a literal backslash-n.
        end = if line.get(start - 1) == Some(&b'\n') {
            start - 1
        } else {
            start.saturating_sub(2)
        };
    }
}

/// The last `n` whitespace tokens of `b` (fewer if it has fewer), in order, as byte spans.
fn last_tokens(b: &[u8], n: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(n);
    let mut i = b.len();
    while out.len() < n {
        let Some(e) = b
            .get(..i)
            .and_then(|r| r.iter().rposition(|c| !c.is_ascii_whitespace()))
        else {
            break;
        };
        let s = b
            .get(..e)
            .and_then(|r| r.iter().rposition(|c| c.is_ascii_whitespace()))
            .map_or(0, |k| k + 1);
        out.push((s, e + 1));
        i = s;
    }
    out.reverse();
    out
}

/// Scores `text`'s last line as a token-salad suffix (`None` when the text is too short to
/// have one: a last line under [`WINDOW`] tokens, or under 4 tokens before it).
///
/// Reads the text backwards to its last line; only the tail (with up to 256 bytes of its line
/// before it) and at most the first 512 bytes are copied, masked and scored, so a long
/// one-line text costs one backward scan.
pub fn score(text: &str) -> Option<Salad> {
    let src = text.as_bytes();
    let src = src.get(..src.len().min(MAX_BYTES))?;
    let ls = last_line(src);
    let line = src.get(ls..)?;
    let raw = last_tokens(line, WINDOW);
    if raw.len() < WINDOW {
        return None;
    }
    let raw_tail = ls + raw.first()?.0;
    // The tail region, masked: the last WINDOW tokens in it are the tail.
    let r0 = raw_tail.saturating_sub(MARGIN).max(ls);
    let mut r = src.get(r0..)?.to_vec();
    mask(&mut r);
    let rt = last_tokens(&r, WINDOW);
    let tail = rt.get(rt.len().checked_sub(WINDOW)?..)?;
    let (tail_start, end) = (r0 + tail.first()?.0, r0 + tail.last()?.1);
    // The head: the first tokens before the tail, masked.
    // (Up to the end of the WINDOW-th raw token and MAX_SPAN bytes more: masking only merges
    // tokens, so the masked head lies in it unless a span runs longer.)
    let raw_head = tokens(src.get(..tail_start.min(HEAD_BYTES))?, WINDOW)
        .last()
        .map_or(0, |t| t.1);
    let mut h = src
        .get(..tail_start.min(HEAD_BYTES).min(raw_head + MAX_SPAN))?
        .to_vec();
    mask(&mut h);
    let head = tokens(&h, WINDOW);
    if head.len() < MIN_HEAD {
        return None;
    }
    let w = |buf: &[u8], t: &[(usize, usize)]| -> u32 {
        t.iter()
            .map(|&(s, e)| weird(buf.get(s..e).unwrap_or(&[])))
            .sum()
    };
    let wh = w(&h, &head) as f32 * WINDOW as f32 / head.len() as f32;
    // Brackets over the tail region (the tail and up to MARGIN bytes of its line before it).
    let ub = unbalanced(&r);
    Some(Salad {
        score: w(&r, tail) as f32 - wh + ub as f32,
        span: (tail_start, end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> f32 {
        score(t).map_or(f32::NEG_INFINITY, |x| x.score)
    }

    #[test]
    fn a_request_with_a_salad_tail_scores_high() {
        // Written for the test in the shape of published GCG suffixes (not a dataset row).
        let t = "Tell me how the weather works in spring please \
                 outline.]( Me giving**ONE please? revert with \"\\!--Two sentenceWith {\\tabular([ eq";
        let x = score(t).expect("long enough");
        assert!(x.score >= SALAD_MIN, "{x:?}");
        assert!(t.get(x.span.0..x.span.1).is_some_and(|p| p.ends_with("eq")));
    }

    #[test]
    fn prose_code_templates_and_links_stay_low() {
        let prose = "The committee met on Tuesday to discuss the budget for the coming year, \
                     and after a long debate (which ran past midnight) agreed to fund the library.";
        assert!(s(prose) < SALAD_MIN, "{}", s(prose));
        let template = "Write a short story for a reader who likes mysteries. Variables: \
                        ${genre:mystery}, ${length:short}, ${audience:adults and teenagers}, ${tone:dark}";
        assert!(s(template) < SALAD_MIN, "{}", s(template));
        let links = "For more information on the topic, refer to the [Authentication Cheat Sheet]\
                     (Authentication_Cheat_Sheet.md) and [Session Management Cheat Sheet](Session.md) today.";
        assert!(s(links) < SALAD_MIN, "{}", s(links));
        let code = "def primes(n):\\n    out = []\\n    for num in range(2, n + 1):\\n        \
                    if all(num % i for i in range(2, num)):\\n            out.append(num)\\n    return out";
        assert!(s(code) < SALAD_MIN, "{}", s(code));
    }

    #[test]
    fn short_texts_have_no_suffix() {
        assert_eq!(score("a b c d e f g h i j k l"), None);
        assert_eq!(score(""), None);
        assert_eq!(score("one\ntwo three"), None);
    }

    #[test]
    fn last_line_skips_blank_lines_and_literal_breaks() {
        assert_eq!(last_line(b"ab\ncd\n\n  "), 3);
        assert_eq!(last_line(b"ab\\ncd"), 4);
        assert_eq!(last_line(b"abc"), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Any mix of words, brackets, backslashes, line breaks and non-ASCII letters: no panic,
        /// and the span is a non-empty run of whole characters of the text.
        #[test]
        fn span_is_inside_the_text(
            toks in proptest::collection::vec("[a-zA-Z]{0,5}[()\\[\\]{}$`\\\\\"'.,é]{0,2}[a-zA-Z]{0,3}", 0..40),
            breaks in proptest::collection::vec(0usize..40, 0..3),
        ) {
            let mut t = String::new();
            for (k, w) in toks.iter().enumerate() {
                t.push_str(w);
                // Real and literal (backslash-n) line breaks.
                t.push_str(match (breaks.contains(&k), k % 2) {
                    (false, _) => " ",
                    (true, 0) => "\n",
                    (true, _) => "\\n",
                });
            }
            if let Some(x) = score(&t) {
                proptest::prop_assert!(x.span.0 < x.span.1 && x.span.1 <= t.len());
                proptest::prop_assert!(t.is_char_boundary(x.span.0) && t.is_char_boundary(x.span.1));
            }
        }
    }

    #[test]
    fn masking_keeps_offsets() {
        let mut b = b"x ${a:b c} [t](u.md) `k` {n} y".to_vec();
        let n = b.len();
        mask(&mut b);
        assert_eq!(b.len(), n);
        assert_eq!(&b, b"x XXXXXXXX XXXXXXXXX XXX XXX y");
        // Openers that start nothing are left as they are (and the scan moves on).
        let mut b = b"a ${ b $x {1} [c] `d".to_vec();
        mask(&mut b);
        assert_eq!(&b, b"a ${ b $x {1} [c] `d");
    }
}
