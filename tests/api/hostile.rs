//! Hostile input over HTTP: compressed and oversized bodies, and arbitrary paths and queries.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{spawn_app, StoreKind, TestApp};

/// `{"slots": ["banner"]}`, gzipped: a batch regie would fill if it inflated the body.
const GZIPPED_BATCH: [u8; 41] = [
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xab, 0x56, 0x2a, 0xce, 0xc9, 0x2f,
    0x29, 0x56, 0xb2, 0x52, 0x88, 0x56, 0x4a, 0x4a, 0xcc, 0xcb, 0x4b, 0x2d, 0x52, 0x8a, 0xad, 0x05,
    0x00, 0xa9, 0xb6, 0xa9, 0x7a, 0x15, 0x00, 0x00, 0x00,
];

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response
        .json()
        .await
        .expect("an error answer in the contract's JSON shape");
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (status, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzipped_batch_is_refused_with_415_and_never_inflated() {
    let app = spawn_app(StoreKind::Memory, None).await;

    let response = app
        .client
        .post(format!("{}/v1/decisions", app.address))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(GZIPPED_BATCH.to_vec())
        .send()
        .await
        .unwrap();

    assert_eq!(
        error_code(response).await,
        (415, "unsupported_encoding".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_coding_but_identity_is_refused_on_admin_endpoints_too() {
    let app = spawn_app(StoreKind::Memory, None).await;
    let doc = app.inventory().await;

    for coding in [
        "gzip",
        "br",
        "deflate",
        "zstd",
        "identity, gzip",
        "x-unknown",
    ] {
        let response = app
            .admin(reqwest::Method::PUT, "/v1/admin/inventory")
            .header("Content-Encoding", coding)
            .json(&doc)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(response).await,
            (415, "unsupported_encoding".to_owned()),
            "{coding}"
        );
    }
    let identity = app
        .admin(reqwest::Method::PUT, "/v1/admin/inventory")
        .header("Content-Encoding", "identity")
        .json(&doc)
        .send()
        .await
        .unwrap();
    assert_eq!(identity.status(), 200);
}

async fn post(app: &TestApp, path: &str, body: Vec<u8>, admin: bool) -> reqwest::Response {
    let mut request = app
        .client
        .request(
            if admin {
                reqwest::Method::PUT
            } else {
                reqwest::Method::POST
            },
            format!("{}{path}", app.address),
        )
        .header("Content-Type", "application/json")
        .body(body);
    if admin {
        request = request.bearer_auth(crate::helpers::ADMIN_TOKEN);
    }
    request.send().await.unwrap()
}

/// A JSON document of about `bytes` bytes.
fn big_json(bytes: usize) -> Vec<u8> {
    format!("{{\"name\":\"{}\"}}", "x".repeat(bytes)).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_in_the_contracts_shape_on_every_endpoint() {
    let app = spawn_app(StoreKind::Memory, None).await;
    let cases: [(&str, usize, bool); 4] = [
        ("/v1/decisions", 100 * 1024, false),
        ("/v1/admin/advertisers/3vision", 300 * 1024, true),
        ("/v1/admin/campaigns/3vision-visitez", 300 * 1024, true),
        ("/v1/admin/inventory", 65 * 1024 * 1024, true),
    ];

    for (path, size, admin) in cases {
        let response = post(&app, path, big_json(size), admin).await;
        assert_eq!(
            error_code(response).await,
            (413, "payload_too_large".to_owned()),
            "{path}"
        );
    }
}

/// Sends a raw HTTP/1.1 request and returns the status line and body of the answer.
fn raw_request(address: &str, head: &str, body_chunks: &[Vec<u8>]) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(address.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    for chunk in body_chunks {
        // The server may answer and close before the whole body is sent.
        if stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .and_then(|()| stream.write_all(chunk))
            .and_then(|()| stream.write_all(b"\r\n"))
            .is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_without_a_length_is_cut_at_the_limit_with_a_413() {
    let app = spawn_app(StoreKind::Memory, None).await;
    // Past each endpoint's limit: 64 KiB for decisions, 64 MiB for the inventory.
    let cases = [
        ("POST /v1/decisions", String::new(), 64, 4096),
        (
            "PUT /v1/admin/inventory",
            format!("Authorization: Bearer {}\r\n", crate::helpers::ADMIN_TOKEN),
            65,
            1024 * 1024,
        ),
    ];
    for (request_line, auth, chunks, chunk_bytes) in cases {
        let address = app.address.clone();
        let (status, body) = tokio::task::spawn_blocking(move || {
            let head = format!(
                "{request_line} HTTP/1.1\r\nHost: localhost\r\n{auth}\
                 Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n"
            );
            let chunks: Vec<Vec<u8>> = (0..chunks).map(|_| vec![b' '; chunk_bytes]).collect();
            raw_request(&address, &head, &chunks)
        })
        .await
        .unwrap();

        assert!(status.contains(" 413 "), "{request_line}: {status}");
        assert!(
            body.contains("\"payload_too_large\""),
            "{request_line}: {body}"
        );
    }
}

/// Percent-encodes every byte: the path or query then carries exactly these bytes, invalid
/// UTF-8, NUL and `/` included.
fn encode_all(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// What a request made of arbitrary parts asks for.
#[derive(Debug, Clone)]
enum Hostile {
    Ad {
        slot: Vec<u8>,
        query: Vec<(Vec<u8>, Vec<u8>)>,
    },
    Stats {
        campaign: Vec<u8>,
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Beacon {
        kind: u8,
        token: Vec<u8>,
    },
    Frame {
        slot: Vec<u8>,
        kw: Vec<u8>,
    },
}

fn any_hostile() -> impl proptest::strategy::Strategy<Value = Hostile> {
    use proptest::prelude::*;
    let bytes = || {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            "[ -~]{0,20}".prop_map(String::into_bytes),
            "\\PC{0,10}".prop_map(String::into_bytes),
            prop_oneof![
                Just("-262143-01-01"),
                Just("+262142-12-31"),
                Just("2026-02-30"),
                Just("1"),
                Just("Publicité 2"),
                Just("banner"),
            ]
            .prop_map(|s| s.as_bytes().to_vec()),
        ]
    };
    let key = prop_oneof![
        Just(b"uid".to_vec()),
        Just(b"kw".to_vec()),
        Just(b"exclude".to_vec()),
        Just(b"explain".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    prop_oneof![
        (bytes(), proptest::collection::vec((key, bytes()), 0..5))
            .prop_map(|(slot, query)| Hostile::Ad { slot, query }),
        (bytes(), bytes(), bytes()).prop_map(|(campaign, from, to)| Hostile::Stats {
            campaign,
            from,
            to
        }),
        (0u8..3, bytes()).prop_map(|(kind, token)| Hostile::Beacon { kind, token }),
        (bytes(), bytes()).prop_map(|(slot, kw)| Hostile::Frame { slot, kw }),
    ]
}

impl Hostile {
    fn path(&self) -> String {
        match self {
            Hostile::Ad { slot, query } => {
                let query: Vec<String> = query
                    .iter()
                    .map(|(k, v)| format!("{}={}", encode_all(k), encode_all(v)))
                    .collect();
                format!("/v1/slots/{}/ad?{}", encode_all(slot), query.join("&"))
            }
            Hostile::Stats { campaign, from, to } => format!(
                "/v1/campaigns/{}/stats?from={}&to={}",
                encode_all(campaign),
                encode_all(from),
                encode_all(to)
            ),
            Hostile::Beacon { kind, token } => {
                let kind = ["i", "v", "c"][usize::from(*kind)];
                format!("/v1/{kind}/{}", encode_all(token))
            }
            Hostile::Frame { slot, kw } => {
                format!("/v1/slots/{}/frame?kw={}", encode_all(slot), encode_all(kw))
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_paths_and_queries_get_an_answer_never_a_panic_or_a_500() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let app = spawn_app(StoreKind::Memory, None).await;
    let runtime = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });

    let result = tokio::task::block_in_place(|| {
        runner.run(&any_hostile(), |hostile| {
            let path = hostile.path();
            let (status, content_type, body) = runtime.block_on(async {
                let response = app
                    .client
                    .get(format!("{}{path}", app.address))
                    .bearer_auth(crate::helpers::ADMIN_TOKEN)
                    .send()
                    .await
                    .map_err(|e| TestCaseError::fail(format!("{path}: no answer: {e}")))?;
                let status = response.status().as_u16();
                let content_type = response
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap_or_default().to_owned())
                    .unwrap_or_default();
                let body = response.bytes().await.unwrap_or_default();
                Ok::<_, TestCaseError>((status, content_type, body))
            })?;
            if status >= 500 {
                return Err(TestCaseError::fail(format!("{path}: {status}")));
            }
            if status >= 400 && content_type.starts_with("application/json") {
                let error: Value = serde_json::from_slice(&body)
                    .map_err(|e| TestCaseError::fail(format!("{path}: {e}")))?;
                if !error["error"]["code"].is_string() {
                    return Err(TestCaseError::fail(format!("{path}: {error}")));
                }
            }
            Ok(())
        })
    });

    result.unwrap();
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_request_without_the_token_is_refused_before_its_body_is_read() {
    let app = spawn_app(StoreKind::Memory, None).await;
    let address = app.address.clone();

    // Announces 16 MB, sends 1 KB, then waits: the answer must not wait for the rest.
    let (status, body) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream =
            std::net::TcpStream::connect(address.trim_start_matches("http://")).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let head = "PUT /v1/admin/inventory HTTP/1.1\r\nHost: localhost\r\n\
                    Content-Type: application/json\r\nContent-Length: 16000000\r\n\r\n";
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&[b' '; 1024]).unwrap();
        let mut answer = vec![0u8; 4096];
        let n = stream
            .read(&mut answer)
            .expect("an answer before the body was sent");
        let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        (
            head.lines().next().unwrap_or_default().to_owned(),
            body.to_owned(),
        )
    })
    .await
    .unwrap();

    assert!(status.contains(" 401 "), "{status}");
    assert!(body.contains("\"unauthorized\""), "{body}");
}
