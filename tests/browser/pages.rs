//! How regie serves its browser files: content types, and the policies that keep its own pages
//! free of inline scripts and third-party loads while the tag and the frame stay embeddable.

use crate::harness::TestApp;

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.url))
        .send()
        .await
        .unwrap()
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

#[tokio::test]
async fn regie_pages_forbid_inline_scripts_and_other_origins() {
    let app = TestApp::start().await;

    for (path, framing) in [
        ("/demo", "frame-ancestors 'self'"),
        ("/dashboard", "frame-ancestors 'none'"),
        ("/v1/slots/Publicit%C3%A9%202/frame", "frame-ancestors *"),
    ] {
        let res = get(&app, path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert!(
            header(&res, "content-type").starts_with("text/html"),
            "{path}"
        );
        let policy = header(&res, "content-security-policy").to_owned();
        assert!(policy.contains("default-src 'self'"), "{path}: {policy}");
        assert!(policy.contains("script-src 'self';"), "{path}: {policy}");
        assert!(policy.contains(framing), "{path}: {policy}");
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("<script>") && !body.contains(" onclick="),
            "{path} has inline script"
        );
    }
    for path in ["/tag.js", "/demo.js", "/dashboard.js"] {
        let res = get(&app, path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(
            header(&res, "content-type"),
            "text/javascript; charset=utf-8",
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_frame_of_an_unknown_slot_is_an_empty_page() {
    let app = TestApp::start().await;

    let res = get(&app, "/v1/slots/%3Cscript%3Ealert(1)%3C%2Fscript%3E/frame").await;

    assert_eq!(res.status(), 404);
    assert!(header(&res, "content-type").starts_with("text/html"));
    assert!(!res.text().await.unwrap().contains("alert"));
}

#[tokio::test]
async fn the_frame_carries_the_slot_and_keywords_as_escaped_text() {
    let app = TestApp::start().await;

    let res = get(
        &app,
        "/v1/slots/Publicit%C3%A9%202/frame?kw=%22%3E%3Cscript%3E,%7B%7BSLOT%7D%7D",
    )
    .await;

    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(body.contains(r#"data-regie-slot="Publicité 2""#), "{body}");
    assert!(
        body.contains(r#"data-regie-keywords="&quot;&gt;&lt;script&gt;,&#123;&#123;SLOT}}""#),
        "{body}"
    );
}
