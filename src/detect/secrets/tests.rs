use super::*;

fn scanner() -> &'static SecretScanner {
    static S: std::sync::OnceLock<SecretScanner> = std::sync::OnceLock::new();
    S.get_or_init(|| SecretScanner::builtin(b"test key").unwrap())
}

#[test]
fn every_rule_has_cases_and_its_positives_and_negatives_hold() {
    let s = scanner();
    assert!(s.rules().len() >= 25, "rule count {}", s.rules().len());
    let mut bad = Vec::new();
    for r in s.rules() {
        if r.positive.is_empty() || r.negative.is_empty() {
            bad.push(format!("{}: needs a positive and a negative case", r.id));
        }
        let want = r.confidence().min(0.8);
        for p in &r.positive {
            let f = s.scan(p);
            if !f
                .iter()
                .any(|f| f.rule == r.id && f.confidence >= want && !f.example)
            {
                bad.push(format!(
                    "{}: positive not reported at >= {want}: {p:?} -> {f:?}",
                    r.id
                ));
            }
        }
        for n in &r.negative {
            let f = s.scan(n);
            if f.iter().any(|f| f.rule == r.id && f.confidence >= 0.5) {
                bad.push(format!("{}: negative reported: {n:?} -> {f:?}", r.id));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn crc32_and_base62_match_the_reference_values() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(base62_6(0), "000000");
    assert_eq!(base62_6(61), "00000z");
    assert_eq!(base62_6(62), "000010");
    assert_eq!(base62_6(u32::MAX), "4gfFC3");
}

#[test]
fn github_token_with_a_bad_checksum_is_reported_below_flag() {
    let s = scanner();
    let good = s.scan("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");
    assert_eq!(good.len(), 1);
    assert!(good[0].confidence >= 0.99);
    let bad = s.scan("ghp_Kq3Lz8Xp2Nv7Bw4Rt9Yh1Gf6Jd0Sa53B5Odw");
    assert_eq!(bad.len(), 1);
    assert!(bad[0].confidence <= BAD_CHECKSUM_CONFIDENCE);
}

#[test]
fn documented_example_keys_are_reported_at_low_confidence() {
    let s = scanner();
    for t in [
        "aws_access_key_id=AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "Stripe.api_key = 'sk_test_4eC39HqLyjWDarjtT1zdp7dc'",
    ] {
        let f = s.scan(t);
        assert!(!f.is_empty(), "{t}");
        assert!(
            f.iter()
                .all(|f| f.example && f.confidence <= EXAMPLE_CONFIDENCE),
            "{t}: {f:?}"
        );
    }
}

#[test]
fn mask_shows_less_of_short_secrets() {
    assert_eq!(mask("AKIAIOSFODNN7EXAMPLE"), "AKIA…MPLE");
    assert_eq!(mask("abcdefghijkl"), "ab…kl");
    assert_eq!(mask("hunter2x"), "h…");
    assert_eq!(mask("abc"), "…");
    assert_eq!(mask("pässwörd-ünïcode"), "päss…code");
}

#[test]
fn fingerprint_is_keyed_and_stable_and_the_secret_is_not_kept() {
    let a = SecretScanner::builtin(b"key one").unwrap();
    let b = SecretScanner::builtin(b"key two").unwrap();
    let text = "TOKEN=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";
    let fa = a.scan(text);
    let fa2 = a.scan(&format!("other words {text}"));
    let fb = b.scan(text);
    assert_eq!(fa[0].fingerprint.len(), 32);
    assert_eq!(fa[0].fingerprint, fa2[0].fingerprint);
    assert_ne!(fa[0].fingerprint, fb[0].fingerprint);
    let secret = &text[fa[0].start..fa[0].end];
    assert_eq!(secret, "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");
    let json = serde_json::to_string(&fa[0]).unwrap();
    let dbg = format!("{:?}", fa[0]);
    for inner in ["Kq3Lz8Xp2Nv7", "Jd0Sa53B"] {
        assert!(!json.contains(inner), "{json}");
        assert!(!dbg.contains(inner), "{dbg}");
    }
}

#[test]
fn redact_replaces_every_span_with_rule_and_fingerprint_prefix() {
    let s = scanner();
    let text = "a=AKIA2E4FNRJX7LQ3PZ6K and b=postgres://app:N7vq2Lx9kRw4@db:5432/x — done";
    let f = s.scan(text);
    assert_eq!(f.len(), 2, "{f:?}");
    let out = redact(text, &f);
    assert!(
        !out.contains("AKIA2E4F") && !out.contains("N7vq2Lx9kRw4"),
        "{out}"
    );
    let want0 = format!(
        "a=[REDACTED:aws.access_key_id:{}] and b=postgres://app:[REDACTED:database.url_password:{}]@db:5432/x — done",
        &f[0].fingerprint[..8],
        &f[1].fingerprint[..8]
    );
    assert_eq!(out, want0);
    assert_eq!(redact(text, &[]), text);
}

#[test]
fn overlapping_rules_keep_the_more_specific_finding() {
    let s = scanner();
    let f = s.scan(
        "api_key = \"sk-ant-api03-Kq3Lz8Xp2Nv7Bw4Rt9Yh1Gf6Jd0Sa5Ue3Io8Mc2Lw7Zk4Pn9Vb1Qx6Ty-AA\"",
    );
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].rule, "anthropic.api_key");
}

#[test]
fn bad_rule_files_get_errors_that_name_the_problem() {
    let dup = "[[secret]]\nid='x'\nprovider='p'\nprefixes=['a']\npattern='a+'\nconfidence=0.5\n";
    let two = format!("{dup}{dup}");
    let e = SecretScanner::compile(&[("f", &two)], b"").unwrap_err();
    assert!(e.to_string().contains("duplicate"), "{e}");
    let bad_re = dup.replace("a+", "(");
    let e = SecretScanner::compile(&[("f", &bad_re)], b"").unwrap_err();
    assert!(e.to_string().contains("pattern"), "{e}");
    let no_pre = dup.replace("['a']", "[]");
    let e = SecretScanner::compile(&[("f", &no_pre)], b"").unwrap_err();
    assert!(e.to_string().contains("prefixes"), "{e}");
    let conf = dup.replace("0.5", "1.5");
    let e = SecretScanner::compile(&[("f", &conf)], b"").unwrap_err();
    assert!(e.to_string().contains("confidence"), "{e}");
    let unknown = format!("{dup}colour='red'\n");
    let e = SecretScanner::compile(&[("f", &unknown)], b"").unwrap_err();
    assert!(e.to_string().contains("colour"), "{e}");
    let deny = format!("{dup}key_deny=['x']\n");
    let e = SecretScanner::compile(&[("f", &deny)], b"").unwrap_err();
    assert!(e.to_string().contains("key"), "{e}");
}

#[test]
fn extra_rule_files_extend_the_defaults() {
    let extra = r#"
[[secret]]
id = "acme.token"
provider = "acme"
prefixes = ["acme_"]
pattern = '\bacme_[a-z0-9]{20}\b'
confidence = 0.9
positive = ["acme_k3l8x2n7b4r9h1f6j0s5"]
negative = ["acme_short"]
"#;
    let s = SecretScanner::compile(
        &[
            ("data/rules/secrets.toml", DEFAULT_SECRET_RULES),
            ("extra", extra),
        ],
        b"k",
    )
    .unwrap();
    let f = s.scan("use acme_k3l8x2n7b4r9h1f6j0s5 now");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].rule, "acme.token");
    assert_eq!(f[0].owasp, None);
    assert!(s.version.starts_with("20"));
}

proptest::proptest! {
    #[test]
    fn spans_are_char_boundaries_inside_the_text(
        a in "\\PC{0,40}",
        b in "(AKIA[A-Z2-7]{16}|password=[!-~]{8,20}|sk_live_[a-zA-Z0-9]{24}|ghp_[a-zA-Z0-9]{36})",
        c in "\\PC{0,40}",
    ) {
        let s = scanner();
        let text = format!("{a} {b} {c}");
        let f = s.scan(&text);
        let mut last = 0;
        for x in &f {
            proptest::prop_assert!(x.start < x.end && x.end <= text.len());
            proptest::prop_assert!(text.is_char_boundary(x.start) && text.is_char_boundary(x.end));
            proptest::prop_assert!(x.start >= last);
            last = x.end;
        }
        let r = redact(&text, &f);
        for x in &f {
            let secret = &text[x.start..x.end];
            if secret.len() >= 12 {
                proptest::prop_assert!(!r.contains(secret));
            }
        }
    }
}
