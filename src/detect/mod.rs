//! Prompt screening: finds attack patterns in text and scores them.
//!
//! Interim engine (to be replaced by the full rule library): the spec's
//! pattern set done properly — one ASCII-case-insensitive aho-corasick pass,
//! byte spans into the caller's text. May import: std, serde, aho-corasick.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::{Deserialize, Serialize};

/// Where the screened text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    User,
    ToolOutput,
    Document,
}

/// The screening decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Flag,
    Block,
}

/// Attack category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    PromptInjection,
    Jailbreak,
    DataExfiltration,
    PrivilegeEscalation,
}

impl Category {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Category::PromptInjection => "prompt_injection",
            Category::Jailbreak => "jailbreak",
            Category::DataExfiltration => "data_exfiltration",
            Category::PrivilegeEscalation => "privilege_escalation",
        }
    }
}

/// Score of one category.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryScore {
    pub category: Category,
    pub score: f32,
}

/// One matched rule, with its byte span in the original text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleMatch {
    pub rule: String,
    pub category: Category,
    pub start: usize,
    pub end: usize,
    pub owasp: Option<String>,
    pub atlas: Option<String>,
}

/// The result of screening one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Screening {
    pub verdict: Verdict,
    pub risk_score: f32,
    pub categories: Vec<CategoryScore>,
    pub matches: Vec<RuleMatch>,
    pub signals: Vec<String>,
}

/// Score thresholds for flag and block.
#[derive(Debug, Clone, Deserialize)]
pub struct Thresholds {
    pub flag: f32,
    pub block: f32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            flag: 0.5,
            block: 0.8,
        }
    }
}

/// A rule set could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("could not compile the rule automaton: {0}")]
    Build(String),
}

const PATTERNS: &[(&str, Category, f32)] = &[
    (
        "ignore previous instructions",
        Category::PromptInjection,
        0.9,
    ),
    (
        "ignore all previous instructions",
        Category::PromptInjection,
        0.9,
    ),
    ("bypass security", Category::PromptInjection, 0.8),
    ("dump the database", Category::DataExfiltration, 0.8),
    ("export all client", Category::DataExfiltration, 0.7),
    ("root privileges", Category::PrivilegeEscalation, 0.8),
    ("grant me admin", Category::PrivilegeEscalation, 0.8),
    ("override permissions", Category::PrivilegeEscalation, 0.8),
    ("developer mode", Category::Jailbreak, 0.7),
    ("do anything now", Category::Jailbreak, 0.9),
];

/// The screening engine. Compiled once; cheap to share (`Send + Sync`).
pub struct Engine {
    ac: AhoCorasick,
    thresholds: Thresholds,
}

impl Engine {
    /// The built-in rules with default thresholds.
    ///
    /// # Errors
    /// [`DetectError::Build`] if the automaton cannot be built.
    pub fn builtin() -> Result<Engine, DetectError> {
        Self::with_extra_rules("", Thresholds::default())
    }

    /// Built-in rules plus extra rules from config.
    ///
    /// # Errors
    /// [`DetectError::Build`] if the automaton cannot be built.
    pub fn with_extra_rules(_extra: &str, thresholds: Thresholds) -> Result<Engine, DetectError> {
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(PATTERNS.iter().map(|p| p.0))
            .map_err(|e| DetectError::Build(e.to_string()))?;
        Ok(Engine { ac, thresholds })
    }

    /// Version of the rule library.
    pub fn rules_version(&self) -> &str {
        "interim-0"
    }

    /// Number of rules.
    pub fn rule_count(&self) -> usize {
        PATTERNS.len()
    }

    /// Screens `text`.
    pub fn screen(&self, text: &str, _source: Source) -> Screening {
        let mut matches = Vec::new();
        let mut best: Vec<CategoryScore> = Vec::new();
        for m in self.ac.find_iter(text) {
            let Some(&(rule, category, w)) = PATTERNS.get(m.pattern().as_usize()) else {
                continue;
            };
            matches.push(RuleMatch {
                rule: rule.replace(' ', "_"),
                category,
                start: m.start(),
                end: m.end(),
                owasp: Some("LLM01:2025".into()),
                atlas: Some("AML.T0051".into()),
            });
            match best.iter_mut().find(|c| c.category == category) {
                Some(c) => c.score = c.score.max(w),
                None => best.push(CategoryScore { category, score: w }),
            }
        }
        best.sort_by(|a, b| b.score.total_cmp(&a.score));
        let risk = best.first().map(|c| c.score).unwrap_or(0.0);
        let verdict = if risk >= self.thresholds.block {
            Verdict::Block
        } else if risk >= self.thresholds.flag {
            Verdict::Flag
        } else {
            Verdict::Allow
        };
        Screening {
            verdict,
            risk_score: risk,
            categories: best,
            matches,
            signals: Vec::new(),
        }
    }
}
