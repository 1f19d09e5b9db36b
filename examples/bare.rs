//! A bare actix-web server for the load test's baseline (`scripts/loadtest.sh`).
//!
//! It answers every `GET` with one fixed body of `--body-bytes` bytes, built once at start, so
//! that the load test can compare regie's requests per second with the cost of actix-web, the
//! kernel and `wrk` alone on the same machine, for an answer of the same size.
//!
//! ```text
//! cargo build --release --example bare
//! target/release/examples/bare --listen 127.0.0.1:18090 --body-bytes 612 [--workers 2]
//!     [--content-type application/json]
//! ```

use std::process::ExitCode;

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};

struct Options {
    listen: String,
    body_bytes: usize,
    workers: usize,
    content_type: String,
}

fn usage() -> String {
    "usage: bare --listen ADDR --body-bytes N [--workers N] [--content-type TYPE]".to_owned()
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        listen: String::new(),
        body_bytes: 0,
        workers: 2,
        content_type: "application/json".to_owned(),
    };
    let mut body_bytes = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value\n{}", usage()))
        };
        match flag.as_str() {
            "--listen" => options.listen = value()?,
            "--body-bytes" => {
                body_bytes = Some(value()?.parse().map_err(|e| format!("--body-bytes: {e}"))?)
            }
            "--workers" => {
                options.workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?;
                if options.workers == 0 {
                    return Err("--workers must be at least 1".to_owned());
                }
            }
            "--content-type" => options.content_type = value()?,
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    if options.listen.is_empty() {
        return Err(format!("--listen is required\n{}", usage()));
    }
    options.body_bytes =
        body_bytes.ok_or_else(|| format!("--body-bytes is required\n{}", usage()))?;
    Ok(options)
}

/// A JSON object of exactly `len` bytes (`{"pad":"xxx…"}`), or plain `x`s when `len` is too
/// short to hold one: the byte count is what the comparison needs.
fn body_of(len: usize) -> Bytes {
    const FRAME: &str = r#"{"pad":""}"#;
    if len < FRAME.len() {
        return Bytes::from(vec![b'x'; len]);
    }
    let mut body = String::with_capacity(len);
    body.push_str(r#"{"pad":""#);
    body.extend(std::iter::repeat_n('x', len - FRAME.len()));
    body.push_str(r#""}"#);
    debug_assert_eq!(body.len(), len);
    Bytes::from(body)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let content_type = match HeaderValue::from_str(&options.content_type) {
        Ok(value) => value,
        Err(e) => {
            eprintln!("--content-type: {e}");
            return ExitCode::from(2);
        }
    };
    let body = body_of(options.body_bytes);
    let result = actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let body = body.clone();
            let content_type = content_type.clone();
            App::new().route(
                "/{tail:.*}",
                web::get().to(move || {
                    // `Bytes` clones share the buffer: no copy of the body per request.
                    let body = body.clone();
                    let content_type = content_type.clone();
                    async move {
                        HttpResponse::Ok()
                            .insert_header((header::CONTENT_TYPE, content_type))
                            .body(body)
                    }
                }),
            )
        })
        .workers(options.workers)
        .bind(&options.listen)?
        .run()
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare: {e}");
            ExitCode::FAILURE
        }
    }
}
