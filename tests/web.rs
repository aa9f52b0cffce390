//! The web pages over a real socket (the Chromium walk-through is tests/e2e/web.sh).

use crate::common::*;

/// `application/x-www-form-urlencoded`, as a browser sends a form.
fn enc(pairs: &[(&str, &str)]) -> String {
    let e = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", e(k), e(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn pages_escape_input_and_forms_need_the_same_origin() {
    let d = tempdir();
    let (_srv, url) = http_server(&db_in(d.path()), &[]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = [
        ("incident_type", "security"),
        ("description", "<script>alert(1)</script> model leaked data"),
        ("reporter_email", "oncall@example.com"),
    ];
    // no Origin and no Sec-Fetch-Site: refused (CSRF)
    let r = http
        .post(format!("{url}/report-incident"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(enc(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // another site's Origin is refused by the app guard
    let r = http
        .post(format!("{url}/report-incident"))
        .header("Origin", "http://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(enc(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(format!("{url}/report-incident"))
        .header("Origin", &url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(enc(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with("/incidents/INC-"), "{loc}");
    let page = http
        .get(format!("{url}{loc}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>alert(1)"));
    let dash = http.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(dash.contains(&loc), "the dashboard links the incident");
    assert!(!dash.contains("<script>alert(1)"));
    // an illegal action is shown on the page with a 409, not a crash
    let id = loc.trim_start_matches("/incidents/");
    for expect in [303, 409] {
        let r = http
            .post(format!("{url}/incidents/{id}/acknowledge"))
            .header("Origin", &url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(enc(&[("responder", "alice")]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expect);
    }
    // a bad report keeps what was typed and names the field
    let r = http
        .post(format!("{url}/report-incident"))
        .header("Origin", &url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(enc(&[
            ("incident_type", "security"),
            ("description", "typed text stays"),
            ("reporter_email", "nope"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"reporter_email-error\""));
    assert!(body.contains("typed text stays</textarea>"));
}
