//! The sample creatives of the default inventory, served by regie itself so that `cargo run`
//! shows real images on a machine without internet access.

use actix_web::{web, HttpResponse};

use crate::error::ApiError;

const CREATIVES: [(&str, &str); 6] = [
    (
        "3vision-728x90.svg",
        include_str!("../../static/creatives/3vision-728x90.svg"),
    ),
    (
        "3vision-300x250.svg",
        include_str!("../../static/creatives/3vision-300x250.svg"),
    ),
    (
        "atelier-300x250.svg",
        include_str!("../../static/creatives/atelier-300x250.svg"),
    ),
    (
        "annonceurs-728x90.svg",
        include_str!("../../static/creatives/annonceurs-728x90.svg"),
    ),
    (
        "3vision-320x50.svg",
        include_str!("../../static/creatives/3vision-320x50.svg"),
    ),
    (
        "annonceurs-320x50.svg",
        include_str!("../../static/creatives/annonceurs-320x50.svg"),
    ),
];

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource("/creatives/{file}")
            .route(web::get().to(creative))
            .default_service(super::errors::allow("GET")),
    );
}

async fn creative(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (_, svg) = CREATIVES
        .iter()
        .find(|(name, _)| *name == file.as_str())
        .ok_or_else(|| ApiError::not_found("not_found", "no such creative"))?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        // An SVG opened directly must not run anything.
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'",
        ))
        .body(*svg))
}
