//! The rule library: TOML schema, validation and compilation into aho-corasick automata.
//!
//! Owns: parsing rule files (`data/rules/default.toml` embedded, plus extra rules from
//! config), validating them with errors that say what to fix, and matching them against a
//! normalised, tokenised text. Imports only std, serde, toml, aho-corasick.

use super::normalize::{Normalized, Tokens, normalize, tokenize};
use super::{Category, DetectError};
use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind};
use serde::Deserialize;
use std::collections::HashMap;

pub const DEFAULT_RULES: &str = include_str!("../../data/rules/default.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    atlas_version: Option<String>,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    category: Category,
    #[serde(default)]
    subcategory: Option<String>,
    weight: f32,
    /// Weight used when the text comes from a tool output or document (defaults to `weight`).
    #[serde(default)]
    indirect_weight: Option<f32>,
    #[serde(default)]
    owasp: Option<String>,
    #[serde(default)]
    atlas: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    phrases: Vec<String>,
    #[serde(default)]
    all_of: Vec<Vec<String>>,
    #[serde(default)]
    window: Option<usize>,
    /// Let keyword classes span sentence ends (default: one sentence).
    #[serde(default)]
    cross_sentence: bool,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub category: Category,
    pub subcategory: Option<String>,
    pub weight: f32,
    pub indirect_weight: f32,
    pub owasp: Option<String>,
    pub atlas: Option<String>,
    pub classes: usize,
    pub window: usize,
    pub cross_sentence: bool,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Phrase { rule: u32 },
    Keyword { rule: u32, class: u8 },
}

#[derive(Debug, Clone)]
struct Pattern {
    /// No word boundary needed at the end (trailing `*`).
    prefix: bool,
    /// No word boundaries at all (scripts written without spaces: CJK, Thai).
    anywhere: bool,
    targets: Vec<Target>,
}

/// A rule hit with a span in the normalised text.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub rule: u32,
    pub nstart: u32,
    pub nend: u32,
}

/// Pseudo keywords filled in by structural scanning.
pub const PSEUDO_EMAIL: &str = "@email";
pub const PSEUDO_URL: &str = "@url";
pub const PSEUDO_FREEMAIL: &str = "@freemail";

/// Mailbox providers anyone can sign up to: data sent there leaves the organisation.
const FREEMAIL: &[&str] = &[
    "gmail.",
    "googlemail.",
    "yahoo.",
    "ymail.",
    "hotmail.",
    "outlook.",
    "live.",
    "msn.",
    "aol.",
    "icloud.",
    "me.com",
    "proton.",
    "protonmail.",
    "pm.me",
    "gmx.",
    "mail.ru",
    "yandex.",
    "zoho.",
    "fastmail.",
    "tutanota.",
    "tuta.",
    "qq.com",
    "163.com",
    "126.com",
    "web.de",
    "mail.com",
    "inbox.",
    "hushmail.",
    "mailinator.",
    "guerrillamail.",
];

pub struct RuleSet {
    pub version: String,
    pub atlas_version: String,
    pub rules: Vec<Rule>,
    word_ac: Option<DFA>,
    word_pats: Vec<Pattern>,
    raw_ac: Option<DFA>,
    raw_pats: Vec<Vec<u32>>,
    /// Per raw pattern: [`MARK_AT`] / [`MARK_URL`] when it also feeds the pseudo keywords.
    raw_marks: Vec<u8>,
    pseudo: HashMap<&'static str, Vec<(u32, u8)>>,
    lexicon: std::collections::HashSet<String>,
}

impl RuleSet {
    /// Compiles the given rule files (the first one provides the version).
    ///
    /// # Errors
    /// [`DetectError`] when a file is not valid TOML, a rule is malformed or ids repeat.
    pub fn compile(files: &[(&str, &str)]) -> Result<RuleSet, DetectError> {
        let mut version = String::new();
        let mut atlas_version = String::new();
        let mut rules: Vec<Rule> = Vec::new();
        let mut word_map: HashMap<(String, bool), usize> = HashMap::new();
        let mut word_keys: Vec<String> = Vec::new();
        let mut word_pats: Vec<Pattern> = Vec::new();
        let mut raw_map: HashMap<String, usize> = HashMap::new();
        let mut raw_keys: Vec<String> = Vec::new();
        let mut raw_pats: Vec<Vec<u32>> = Vec::new();
        let mut pseudo: HashMap<&'static str, Vec<(u32, u8)>> = HashMap::new();
        let mut seen: HashMap<String, ()> = HashMap::new();

        for (fi, (name, src)) in files.iter().enumerate() {
            let file: RuleFile = toml::from_str(src).map_err(|e| DetectError::RuleSyntax {
                file: (*name).to_owned(),
                message: e.to_string(),
            })?;
            if fi == 0 {
                version = file
                    .version
                    .clone()
                    .ok_or_else(|| DetectError::InvalidRule {
                        file: (*name).to_owned(),
                        rule: String::new(),
                        message: "the rule file needs a top-level `version = \"...\"`".into(),
                    })?;
                atlas_version = file.atlas_version.clone().unwrap_or_default();
            }
            for spec in file.rules {
                let bad = |m: String| DetectError::InvalidRule {
                    file: (*name).to_owned(),
                    rule: spec.id.clone(),
                    message: m,
                };
                if spec.id.trim().is_empty() {
                    return Err(bad("`id` must not be empty".into()));
                }
                if seen.insert(spec.id.clone(), ()).is_some() {
                    return Err(bad("duplicate rule id; give each rule a unique `id`".into()));
                }
                if !(spec.weight > 0.0 && spec.weight <= 1.0) {
                    return Err(bad(format!(
                        "`weight` must be in (0, 1], got {}",
                        spec.weight
                    )));
                }
                let iw = spec.indirect_weight.unwrap_or(spec.weight);
                if !(0.0..=1.0).contains(&iw) {
                    return Err(bad(format!(
                        "`indirect_weight` must be in [0, 1], got {iw}"
                    )));
                }
                if spec.phrases.is_empty() == spec.all_of.is_empty() {
                    return Err(bad(
                        "give exactly one of `phrases = [...]` or `all_of = [[...], ...]`".into(),
                    ));
                }
                if spec.all_of.len() > 8 {
                    return Err(bad("`all_of` supports at most 8 keyword classes".into()));
                }
                let window = spec.window.unwrap_or(spec.all_of.len().max(1) * 3);
                if !spec.all_of.is_empty() && window < spec.all_of.len() {
                    return Err(bad(format!(
                        "`window` ({window}) must be at least the number of classes ({})",
                        spec.all_of.len()
                    )));
                }
                let _ = &spec.description;
                let ri = rules.len() as u32;
                for p in &spec.phrases {
                    let (key, prefix, raw) = prep(p);
                    if key.is_empty() {
                        return Err(bad(format!("phrase {p:?} is empty after normalisation")));
                    }
                    if raw {
                        let id = *raw_map.entry(key.clone()).or_insert_with(|| {
                            raw_keys.push(key.clone());
                            raw_pats.push(Vec::new());
                            raw_keys.len() - 1
                        });
                        if let Some(v) = raw_pats.get_mut(id) {
                            v.push(ri);
                        }
                    } else {
                        let id = *word_map.entry((key.clone(), prefix)).or_insert_with(|| {
                            word_keys.push(key.clone());
                            word_pats.push(Pattern {
                                prefix,
                                anywhere: unspaced(&key),
                                targets: Vec::new(),
                            });
                            word_keys.len() - 1
                        });
                        if let Some(v) = word_pats.get_mut(id) {
                            v.targets.push(Target::Phrase { rule: ri });
                        }
                    }
                }
                for (ci, class) in spec.all_of.iter().enumerate() {
                    if class.is_empty() {
                        return Err(bad(format!("keyword class {ci} of `all_of` is empty")));
                    }
                    for kw in class {
                        if kw == PSEUDO_EMAIL || kw == PSEUDO_URL || kw == PSEUDO_FREEMAIL {
                            let k: &'static str = if kw == PSEUDO_EMAIL {
                                PSEUDO_EMAIL
                            } else if kw == PSEUDO_URL {
                                PSEUDO_URL
                            } else {
                                PSEUDO_FREEMAIL
                            };
                            pseudo.entry(k).or_default().push((ri, ci as u8));
                            continue;
                        }
                        let (key, prefix, raw) = prep(kw);
                        if key.is_empty() || raw {
                            return Err(bad(format!(
                                "keyword {kw:?} must be words (letters/digits), optionally ending in `*`"
                            )));
                        }
                        let id = *word_map.entry((key.clone(), prefix)).or_insert_with(|| {
                            word_keys.push(key.clone());
                            word_pats.push(Pattern {
                                prefix,
                                anywhere: unspaced(&key),
                                targets: Vec::new(),
                            });
                            word_keys.len() - 1
                        });
                        if let Some(v) = word_pats.get_mut(id) {
                            v.targets.push(Target::Keyword {
                                rule: ri,
                                class: ci as u8,
                            });
                        }
                    }
                }
                rules.push(Rule {
                    id: spec.id.clone(),
                    category: spec.category,
                    subcategory: spec.subcategory.clone(),
                    weight: spec.weight,
                    indirect_weight: iw,
                    owasp: spec.owasp.clone(),
                    atlas: spec.atlas.clone(),
                    classes: spec.all_of.len(),
                    window,
                    cross_sentence: spec.cross_sentence,
                });
            }
        }
        // Word patterns are padded with spaces (the token text is too), so they can only
        // match whole words; prefix patterns get no trailing space, CJK/Thai ones no padding.
        let padded: Vec<String> = word_keys
            .iter()
            .zip(word_pats.iter())
            .map(|(k, p)| {
                if p.anywhere {
                    k.clone()
                } else if p.prefix {
                    format!(" {k}")
                } else {
                    format!(" {k} ")
                }
            })
            .collect();
        let word_keys = padded;
        // Lexicon for re-segmenting letters spaced apart with single spaces throughout
        // ("i g n o r e a l l ..." joins into one token): every ASCII word of the keywords.
        let mut lexicon: std::collections::HashSet<String> = std::collections::HashSet::new();
        for (k, _) in word_map.keys() {
            for w in k.split(' ') {
                if w.len() >= 2 && w.bytes().all(|b| b.is_ascii_lowercase()) {
                    lexicon.insert(w.to_owned());
                }
            }
        }
        // The structural pseudo keywords are found by the raw automaton too: `@` (then
        // checked for an address around it) and the URL openings.
        let mut raw_marks = vec![0u8; raw_keys.len()];
        let mut mark = |key: &str, m: u8| {
            let id = *raw_map.entry(key.to_owned()).or_insert_with(|| {
                raw_keys.push(key.to_owned());
                raw_pats.push(Vec::new());
                raw_marks.push(0);
                raw_keys.len() - 1
            });
            if let Some(x) = raw_marks.get_mut(id) {
                *x |= m;
            }
        };
        if pseudo.contains_key(PSEUDO_EMAIL) || pseudo.contains_key(PSEUDO_FREEMAIL) {
            mark("@", MARK_AT);
        }
        if pseudo.contains_key(PSEUDO_URL) {
            for p in URL_OPENINGS {
                mark(p, MARK_URL);
            }
        }
        let build = |keys: &[String]| -> Result<Option<DFA>, DetectError> {
            if keys.is_empty() {
                return Ok(None);
            }
            // A bare DFA without prefilter, driven by `Lanes` below: same matches, in the
            // same order, as `AhoCorasick::find_overlapping_iter` with a DFA.
            DFA::builder()
                .match_kind(MatchKind::Standard)
                .prefilter(false)
                .build(keys)
                .map(Some)
                .map_err(|e| DetectError::Build(e.to_string()))
        };
        Ok(RuleSet {
            version,
            atlas_version,
            rules,
            word_ac: build(&word_keys)?,
            word_pats,
            raw_ac: build(&raw_keys)?,
            raw_pats,
            raw_marks,
            pseudo,
            lexicon,
        })
    }

    /// Splits a run of letters into lexicon words where that covers it best
    /// ("ignoreallpreviousinstructions" -> "ignore all previous instructions"); letters no
    /// word covers stay as one-letter words. `None` when fewer than two words are found.
    pub fn segment(&self, tok: &str) -> Option<String> {
        const LONGEST: usize = 20;
        let b = tok.as_bytes();
        let n = b.len();
        if !(8..=512).contains(&n) || !b.iter().all(|c| c.is_ascii_lowercase()) {
            return None;
        }
        // best[i] = (covered letters, words, previous cut) for the prefix b[..i].
        let mut best: Vec<(usize, usize, usize)> = vec![(0, 0, 0); n + 1];
        for i in 1..=n {
            let mut cur = best.get(i - 1).map_or((0, 0, 0), |p| (p.0, p.1, i - 1));
            for l in 2..=LONGEST.min(i) {
                let Some(w) = tok.get(i - l..i) else { continue };
                if self.lexicon.contains(w)
                    && let Some(p) = best.get(i - l)
                    && (p.0 + l, usize::MAX - p.1 - 1) > (cur.0, usize::MAX - cur.1)
                {
                    cur = (p.0 + l, p.1 + 1, i - l);
                }
            }
            if let Some(x) = best.get_mut(i) {
                *x = cur;
            }
        }
        let (_, words, _) = best.get(n).copied()?;
        if words < 2 {
            return None;
        }
        let mut cuts = Vec::new();
        let mut i = n;
        while i > 0 {
            let p = best.get(i).map_or(0, |x| x.2);
            cuts.push((p, i));
            i = p;
        }
        let parts: Vec<&str> = cuts
            .iter()
            .rev()
            .filter_map(|&(a, e)| tok.get(a..e))
            .collect();
        Some(parts.join(" "))
    }

    /// Heap bytes of the compiled automata and pattern tables (approximate).
    pub fn heap_bytes(&self) -> usize {
        let ac = self.word_ac.as_ref().map_or(0, |a| a.memory_usage())
            + self.raw_ac.as_ref().map_or(0, |a| a.memory_usage());
        let pats: usize = self
            .word_pats
            .iter()
            .map(|p| 16 + p.targets.capacity() * 12)
            .sum();
        let rules: usize = self.rules.iter().map(|r| 160 + r.id.len()).sum();
        ac + pats + rules
    }

    /// Matches all rules. `words` is `toks.words` or a transformed copy of the same length
    /// (e.g. rot13). Returns hits with spans in the normalised text.
    pub fn scan(
        &self,
        norm: &Normalized,
        toks: &Tokens,
        words: &str,
        transformed: bool,
        out: &mut Vec<Hit>,
    ) {
        self.scan_views(norm, toks, &[(words, transformed)], &mut [out]);
    }

    /// [`RuleSet::scan`] over several views of one text (e.g. the words and their rot13),
    /// `outs[i]` receiving the hits of `views[i]`. Same hits, in the same order, as one
    /// `scan` per view; the automaton walks of all views run interleaved (see [`Lanes`]).
    pub fn scan_views(
        &self,
        norm: &Normalized,
        toks: &Tokens,
        views: &[(&str, bool)],
        outs: &mut [&mut Vec<Hit>],
    ) {
        let mut lanes = Lanes::default();
        for (vi, (words, _)) in views.iter().enumerate() {
            if let Some(ac) = &self.word_ac {
                lanes.add(ac, words.as_bytes(), stream_id(vi));
            }
        }
        let any_raw = views.iter().any(|(_, t)| !*t);
        if let Some(ac) = &self.raw_ac
            && any_raw
        {
            lanes.add(ac, norm.text.as_bytes(), RAW_STREAM);
        }
        let found = lanes.run();
        for (vi, ((words, transformed), out)) in views.iter().zip(outs.iter_mut()).enumerate() {
            let mut kw: Vec<u64> = Vec::new();
            let wb = words.as_bytes();
            // Matches come by end offset, so token lookups walk from the previous answer.
            let mut hint = 0usize;
            for m in found.stream(stream_id(vi)) {
                self.word_match(toks, wb, m, &mut hint, out, &mut kw);
            }
            if !transformed {
                self.pseudo_hits(norm, toks, found.stream(RAW_STREAM), &mut kw);
                for m in found.stream(RAW_STREAM) {
                    if let Some(rs) = self.raw_pats.get(m.pid as usize) {
                        for &rule in rs {
                            out.push(Hit {
                                rule,
                                nstart: m.start(),
                                nend: m.end,
                            });
                        }
                    }
                }
            }
            self.keyword_windows(toks, &mut kw, out);
        }
    }

    #[inline]
    fn word_match(
        &self,
        toks: &Tokens,
        wb: &[u8],
        m: &LaneMatch,
        hint: &mut usize,
        out: &mut Vec<Hit>,
        kw: &mut Vec<u64>,
    ) {
        let Some(pat) = self.word_pats.get(m.pid as usize) else {
            return;
        };
        let mut s = m.start() as usize;
        let mut e = m.end as usize;
        if wb.get(s) == Some(&b' ') {
            s += 1;
        }
        if e > s + 1 && wb.get(e - 1) == Some(&b' ') {
            e -= 1;
        }
        if s >= e {
            return;
        }
        let t1 = token_near(&toks.wstart, e.saturating_sub(1), *hint);
        *hint = t1;
        let t0 = token_near(&toks.wstart, s, t1);
        for t in &pat.targets {
            match *t {
                Target::Phrase { rule } => {
                    if let (Some(a), Some(b)) = (toks.nspan.get(t0), toks.nspan.get(t1)) {
                        out.push(Hit {
                            rule,
                            nstart: a.0,
                            nend: b.1,
                        });
                    }
                }
                Target::Keyword { rule, class } => kw.push(kw_key(rule, class, t0 as u32)),
            }
        }
    }

    fn keyword_windows(&self, toks: &Tokens, kw: &mut [u64], out: &mut Vec<Hit>) {
        if kw.is_empty() {
            return;
        }
        kw.sort_unstable();
        let mut i = 0;
        while i < kw.len() {
            let rule = kw.get(i).map_or(0, |&k| (k >> 40) as u32);
            let mut j = i;
            while kw.get(j).is_some_and(|&k| (k >> 40) as u32 == rule) {
                j += 1;
            }
            if let (Some(r), Some(group)) = (self.rules.get(rule as usize), kw.get(i..j)) {
                let sent = if r.cross_sentence {
                    None
                } else {
                    Some(toks.sent.as_slice())
                };
                if let Some((a, b)) = window_match(group, r.classes, r.window, sent)
                    && let (Some(x), Some(y)) =
                        (toks.nspan.get(a as usize), toks.nspan.get(b as usize))
                {
                    out.push(Hit {
                        rule,
                        nstart: x.0,
                        nend: y.1,
                    });
                }
            }
            i = j;
        }
    }

    /// Keyword hits of the pseudo keywords (`@email`, `@freemail`, `@url`), from the raw
    /// automaton's `@` and URL-opening matches on the normalised text.
    fn pseudo_hits<'m>(
        &self,
        norm: &Normalized,
        toks: &Tokens,
        raw: impl Iterator<Item = &'m LaneMatch>,
        kw: &mut Vec<u64>,
    ) {
        if self.pseudo.is_empty() {
            return;
        }
        let text = &norm.text;
        let tok_of_n = |pos: usize| -> u32 {
            match toks.nspan.binary_search_by(|s| s.0.cmp(&(pos as u32))) {
                Ok(i) => i as u32,
                Err(i) => i.saturating_sub(1) as u32,
            }
        };
        let email_t = self.pseudo.get(PSEUDO_EMAIL);
        let free_t = self.pseudo.get(PSEUDO_FREEMAIL);
        let url_t = self.pseudo.get(PSEUDO_URL);
        let b = text.as_bytes();
        for m in raw {
            let marks = self.raw_marks.get(m.pid as usize).copied().unwrap_or(0);
            if marks == 0 {
                continue;
            }
            let i = m.start() as usize;
            if marks & MARK_AT != 0 && (email_t.is_some() || free_t.is_some()) {
                let before = i > 0
                    && b.get(i - 1)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'_');
                let rest = text.get(i + 1..).unwrap_or("");
                let dom: &str = rest
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
                    .next()
                    .unwrap_or("");
                if before && dom.contains('.') && dom.len() >= 4 {
                    let t = tok_of_n(i);
                    for &(r, c) in email_t.into_iter().flatten() {
                        kw.push(kw_key(r, c, t));
                    }
                    if FREEMAIL
                        .iter()
                        .any(|f| dom.starts_with(f) || dom.contains(&format!(".{f}")))
                    {
                        for &(r, c) in free_t.into_iter().flatten() {
                            kw.push(kw_key(r, c, t));
                        }
                    }
                }
            }
            if marks & MARK_URL != 0
                && let Some(targets) = url_t
            {
                let t = tok_of_n(i);
                for &(r, c) in targets {
                    kw.push(kw_key(r, c, t));
                }
            }
        }
    }
}

/// Raw pattern marks: the pattern is `@` / a URL opening.
const MARK_AT: u8 = 1;
const MARK_URL: u8 = 2;
/// Text that opens a URL.
const URL_OPENINGS: [&str; 4] = ["http://", "https://", "www.", "ftp://"];

const RAW_STREAM: u8 = u8::MAX;

fn stream_id(view: usize) -> u8 {
    u8::try_from(view).unwrap_or(u8::MAX - 1).min(u8::MAX - 1)
}

/// One automaton match: pattern `pid` of length `len` ending at byte `end` of stream `stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LaneMatch {
    stream: u8,
    end: u32,
    len: u32,
    pid: u32,
}

impl LaneMatch {
    fn start(&self) -> u32 {
        self.end.saturating_sub(self.len)
    }
}

/// Matches of a [`Lanes::run`], sorted by (stream, end offset, longest first): the order in
/// which `AhoCorasick::find_overlapping_iter` with a DFA reports them (a state lists its own
/// pattern first, then those of its failure chain, each shorter than the last).
struct Found(Vec<LaneMatch>);

impl Found {
    fn stream(&self, id: u8) -> impl Iterator<Item = &LaneMatch> {
        let a = self.0.partition_point(|m| m.stream < id);
        let b = self.0.partition_point(|m| m.stream <= id);
        self.0.get(a..b).unwrap_or(&[]).iter()
    }
}

/// One unanchored walk of a DFA over `hay[pos..stop]`, reporting only matches that start in
/// `lo..hi` (so chunks of one haystack, each run past its end by the longest pattern, report
/// every match exactly once).
#[derive(Clone, Copy)]
struct Lane<'a> {
    dfa: &'a DFA,
    hay: &'a [u8],
    pos: usize,
    stop: usize,
    lo: usize,
    hi: usize,
    sid: aho_corasick::automaton::StateID,
    stream: u8,
}

/// Chunks below this size are not split further.
const MIN_CHUNK: usize = 256;
/// Walks run interleaved in groups of this many.
const LANES: usize = 4;

/// Several automaton walks run interleaved. A DFA walk is one long chain of dependent loads
/// from a table of megabytes, so it waits on memory; independent walks (the views of a text,
/// and chunks of a long one) in one loop overlap those waits.
#[derive(Default)]
struct Lanes<'a> {
    lanes: Vec<Lane<'a>>,
}

impl<'a> Lanes<'a> {
    fn add(&mut self, dfa: &'a DFA, hay: &'a [u8], stream: u8) {
        let Ok(sid) = dfa.start_state(Anchored::No) else {
            return;
        };
        let maxlen = dfa.max_pattern_len();
        let n = hay.len();
        let chunks = (n / MIN_CHUNK).clamp(1, LANES);
        let size = n.div_ceil(chunks).max(1);
        let mut lo = 0;
        while lo < n {
            let hi = (lo + size).min(n);
            self.lanes.push(Lane {
                dfa,
                hay,
                pos: lo,
                stop: (hi + maxlen).min(n),
                lo,
                hi,
                sid,
                stream,
            });
            lo = hi;
        }
    }

    fn run(mut self) -> Found {
        let mut out = Vec::new();
        let mut rest: &mut [Lane<'a>] = &mut self.lanes;
        while !rest.is_empty() {
            let (group, tail) = rest.split_at_mut(rest.len().min(LANES));
            match group {
                [a, b, c, d] => walk4([a, b, c, d], &mut out),
                [a, b, c] => walk([a, b, c], &mut out),
                [a, b] => walk([a, b], &mut out),
                _ => {}
            }
            for l in group.iter_mut() {
                walk([l], &mut out);
            }
            rest = tail;
        }
        out.sort_unstable_by(|x, y| {
            (x.stream, x.end)
                .cmp(&(y.stream, y.end))
                .then(y.len.cmp(&x.len))
        });
        Found(out)
    }
}

/// Advances all `lanes` in lock step until the shortest is done (a single lane: to its end).
/// The walk state lives in local arrays so the loop keeps it in registers.
#[inline(always)]
fn walk<const N: usize>(mut lanes: [&mut Lane<'_>; N], out: &mut Vec<LaneMatch>) {
    let steps = lanes
        .iter()
        .map(|l| l.stop.saturating_sub(l.pos))
        .min()
        .unwrap_or(0);
    let dfas: [&DFA; N] = std::array::from_fn(|k| lanes[k].dfa);
    let hays: [&[u8]; N] = std::array::from_fn(|k| {
        let l = &lanes[k];
        l.hay.get(l.pos..l.pos + steps).unwrap_or(&[])
    });
    let mut sids: [aho_corasick::automaton::StateID; N] = std::array::from_fn(|k| lanes[k].sid);
    for i in 0..steps {
        for k in 0..N {
            let Some(&b) = hays[k].get(i) else {
                continue;
            };
            let sid = dfas[k].next_state(Anchored::No, sids[k], b);
            sids[k] = sid;
            if dfas[k].is_special(sid) && dfas[k].is_match(sid) {
                report(lanes[k], sid, lanes[k].pos + i + 1, out);
            }
        }
    }
    for (l, sid) in lanes.iter_mut().zip(sids) {
        l.sid = sid;
        l.pos += steps;
    }
}

/// [`walk`] for four lanes, reading the four haystacks through one zipped iterator (one
/// loop counter, no per-byte bounds checks).
#[inline(always)]
fn walk4<'h>(lanes: [&mut Lane<'h>; 4], out: &mut Vec<LaneMatch>) {
    let steps = lanes
        .iter()
        .map(|l| l.stop.saturating_sub(l.pos))
        .min()
        .unwrap_or(0);
    let [l0, l1, l2, l3] = lanes;
    let cut = |l: &Lane<'h>| -> &'h [u8] { l.hay.get(l.pos..l.pos + steps).unwrap_or(&[]) };
    let (h0, h1, h2, h3) = (cut(l0), cut(l1), cut(l2), cut(l3));
    if [h0.len(), h1.len(), h2.len(), h3.len()] != [steps; 4] {
        // Cannot happen (every lane has `steps` bytes left); the single-lane walks finish.
        return;
    }
    let (d0, d1, d2, d3) = (l0.dfa, l1.dfa, l2.dfa, l3.dfa);
    let (mut s0, mut s1, mut s2, mut s3) = (l0.sid, l1.sid, l2.sid, l3.sid);
    for (i, (((&b0, &b1), &b2), &b3)) in h0.iter().zip(h1).zip(h2).zip(h3).enumerate() {
        s0 = d0.next_state(Anchored::No, s0, b0);
        s1 = d1.next_state(Anchored::No, s1, b1);
        s2 = d2.next_state(Anchored::No, s2, b2);
        s3 = d3.next_state(Anchored::No, s3, b3);
        if d0.is_special(s0) && d0.is_match(s0) {
            report(l0, s0, l0.pos + i + 1, out);
        }
        if d1.is_special(s1) && d1.is_match(s1) {
            report(l1, s1, l1.pos + i + 1, out);
        }
        if d2.is_special(s2) && d2.is_match(s2) {
            report(l2, s2, l2.pos + i + 1, out);
        }
        if d3.is_special(s3) && d3.is_match(s3) {
            report(l3, s3, l3.pos + i + 1, out);
        }
    }
    for (l, sid) in [l0, l1, l2, l3].into_iter().zip([s0, s1, s2, s3]) {
        l.sid = sid;
        l.pos += steps;
    }
}

#[cold]
#[inline(never)]
fn report(
    l: &Lane<'_>,
    sid: aho_corasick::automaton::StateID,
    end: usize,
    out: &mut Vec<LaneMatch>,
) {
    for i in 0..l.dfa.match_len(sid) {
        let pid = l.dfa.match_pattern(sid, i);
        let len = l.dfa.pattern_len(pid);
        let start = end.saturating_sub(len);
        if start >= l.lo && start < l.hi {
            out.push(LaneMatch {
                stream: l.stream,
                end: u32::try_from(end).unwrap_or(u32::MAX),
                len: u32::try_from(len).unwrap_or(u32::MAX),
                pid: pid.as_u32(),
            });
        }
    }
}

/// Normalises a phrase/keyword: returns (key, prefix, raw). Raw keys contain punctuation and
/// are matched on the normalised text; others on the token text.
fn prep(p: &str) -> (String, bool, bool) {
    let p = p.trim();
    let (body, prefix) = match p.strip_suffix('*') {
        Some(b)
            if !b.is_empty()
                && !b.ends_with(' ')
                && b.chars().last().is_some_and(|c| c.is_alphanumeric()) =>
        {
            (b, true)
        }
        _ => (p, false),
    };
    let n = normalize(body);
    let raw = n.text.chars().any(|c| !(c.is_alphanumeric() || c == ' '));
    if raw {
        return (n.text, false, true);
    }
    let t = tokenize(&n.text);
    (t.words.trim().to_owned(), prefix, false)
}

/// True when `key` contains characters of scripts written without spaces.
fn unspaced(key: &str) -> bool {
    key.chars().any(|c| {
        matches!(c as u32, 0x0E00..=0x0E7F | 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF)
    })
}

#[inline]
fn kw_key(rule: u32, class: u8, tok: u32) -> u64 {
    (u64::from(rule) << 40) | (u64::from(class) << 32) | u64::from(tok)
}

/// Same as `Tokens::token_at` (index of the last token starting at or before `pos`, else 0),
/// found by walking from `hint`; cheap when successive positions are close.
#[inline]
fn token_near(ws: &[u32], pos: usize, hint: usize) -> usize {
    let Ok(p) = u32::try_from(pos) else {
        return ws.len().saturating_sub(1);
    };
    let mut i = hint.min(ws.len().saturating_sub(1));
    while ws.get(i + 1).is_some_and(|&x| x <= p) {
        i += 1;
    }
    while i > 0 && ws.get(i).is_some_and(|&x| x > p) {
        i -= 1;
    }
    i
}

/// Finds classes 0..k in order within `window` tokens. Returns (first token, last token).
/// `group` holds one rule's keys (see `kw_key`), sorted.
fn window_match(
    group: &[u64],
    k: usize,
    window: usize,
    sent: Option<&[u32]>,
) -> Option<(u32, u32)> {
    let same = |a: u32, b: u32| match sent {
        Some(s) => s.get(a as usize) == s.get(b as usize),
        None => true,
    };
    let class = |x: u64| ((x >> 32) & 0xff) as usize;
    let tok = |x: u64| x as u32;
    // Sorted by class then token: class c is a contiguous run.
    let run = |c: usize| -> &[u64] {
        let a = group.partition_point(|&x| class(x) < c);
        let b = group.partition_point(|&x| class(x) <= c);
        group.get(a..b).unwrap_or(&[])
    };
    if k == 0 || k > 8 {
        return None;
    }
    let mut by: [&[u64]; 8] = [&[]; 8];
    for (c, slot) in by.iter_mut().enumerate().take(k) {
        *slot = run(c);
        if slot.is_empty() {
            return None;
        }
    }
    let by = by.get(..k)?;
    let first = by.first()?;
    'outer: for &x0 in first.iter() {
        let t0 = tok(x0);
        let mut prev = t0;
        for v in by.iter().skip(1) {
            let idx = v.partition_point(|&x| tok(x) <= prev);
            match v.get(idx) {
                Some(&x) if (tok(x) - t0) < window as u32 && same(t0, tok(x)) => prev = tok(x),
                _ => continue 'outer,
            }
        }
        return Some((t0, prev));
    }
    None
}

#[cfg(test)]
mod lane_tests {
    use super::*;
    use aho_corasick::AhoCorasick;
    use proptest::prelude::*;

    const PATS: &[&str] = &[
        " ignore ",
        " ignore all",
        "all previous ",
        "re",
        "previous",
        " a ",
        "aa",
        "ab",
    ];

    fn lanes_matches(hays: &[&str]) -> Vec<(u8, usize, usize, usize)> {
        let dfa = DFA::builder()
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(PATS)
            .unwrap();
        let mut lanes = Lanes::default();
        for (i, h) in hays.iter().enumerate() {
            lanes.add(&dfa, h.as_bytes(), i as u8);
        }
        lanes
            .run()
            .0
            .iter()
            .map(|m| (m.stream, m.pid as usize, m.start() as usize, m.end as usize))
            .collect()
    }

    fn reference(hays: &[&str]) -> Vec<(u8, usize, usize, usize)> {
        let ac = AhoCorasick::builder()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(PATS)
            .unwrap();
        let mut out = Vec::new();
        for (i, h) in hays.iter().enumerate() {
            for m in ac.find_overlapping_iter(*h) {
                out.push((i as u8, m.pattern().as_usize(), m.start(), m.end()));
            }
        }
        out
    }

    proptest! {
        /// Interleaved, chunked walks report exactly the matches of one plain overlapping
        /// search per haystack, in the same order (chunk seams included: texts up to 3 KB).
        #[test]
        fn lanes_equal_plain_overlapping_search(
            a in proptest::collection::vec(prop_oneof![
                Just("ignore "), Just("all "), Just("previous "), Just("a"), Just("b"),
                Just(" "), Just("re"), Just("x")], 0..600),
            b in proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just(" ")], 0..2000),
        ) {
            let a: String = a.concat();
            let b: String = b.concat();
            let hays = [a.as_str(), b.as_str(), a.as_str()];
            prop_assert_eq!(lanes_matches(&hays), reference(&hays));
        }
    }
}
