//! The parts of a decision request that concern the reader and the page layout rather than
//! the slot: consent, the reader's country, the slots' widths and the advertisers the page
//! keeps apart. Parsed here, once; the rules themselves are in [`crate::targeting`].

use actix_web::http::header::{HeaderMap, HeaderName};

use crate::error::ApiError;
use crate::inventory::AdvertiserId;
use crate::snapshot::Snapshot;
use crate::targeting::Country;

/// The widest slot width a request may give, in CSS pixels (as creatives' own limit).
const MAX_WIDTH: u32 = 10_000;
/// Most advertisers a page may exclude.
const MAX_EXCLUDED_ADVERTISERS: usize = 50;
/// The Global Privacy Control header. A typed constant: looked up by a string, a name outside
/// the standard set is parsed and copied on every request.
const SEC_GPC: HeaderName = HeaderName::from_static("sec-gpc");

/// Whether the reader refused tracking: `consent=0` (query), `"consent": false` (batch body),
/// or the browser's Global Privacy Control (`Sec-GPC: 1`). A malformed `consent` is a 400.
pub(super) fn tracking_refused(
    query: Option<&str>,
    body: Option<bool>,
    headers: &HeaderMap,
) -> Result<bool, ApiError> {
    let asked = match query {
        None => body,
        Some("0") | Some("false") => Some(false),
        Some("1") | Some("true") => Some(true),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_consent",
                "consent must be 1 or 0",
            ))
        }
    };
    let gpc = headers
        .get(SEC_GPC)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"1");
    Ok(asked == Some(false) || gpc)
}

/// The reader's country from the header the CDN or proxy sets; `None` when it is missing or
/// holds no assigned country code.
pub(super) fn country(
    headers: &HeaderMap,
    header: &actix_web::http::header::HeaderName,
) -> Option<Country> {
    Country::from_header(headers.get(header).map(|v| v.as_bytes()))
}

/// A slot's width in CSS pixels, from `w`.
pub(super) fn width(raw: Option<&str>) -> Result<Option<u32>, ApiError> {
    raw.map(|raw| {
        raw.trim()
            .parse::<u32>()
            .ok()
            .filter(|w| (1..=MAX_WIDTH).contains(w))
            .ok_or_else(invalid_width)
    })
    .transpose()
}

/// The batch's `widths`: none, or one per slot (`null` for a slot without one).
pub(super) fn widths(raw: Vec<Option<u32>>, slots: usize) -> Result<Vec<Option<u32>>, ApiError> {
    if raw.is_empty() {
        return Ok(vec![None; slots]);
    }
    if raw.len() != slots {
        return Err(ApiError::bad_request(
            "invalid_width",
            "widths must give one width (or null) per slot",
        ));
    }
    if raw.iter().flatten().any(|w| !(1..=MAX_WIDTH).contains(w)) {
        return Err(invalid_width());
    }
    Ok(raw)
}

fn invalid_width() -> ApiError {
    ApiError::bad_request(
        "invalid_width",
        format!("a width must be a whole number of CSS pixels, 1 to {MAX_WIDTH}"),
    )
}

/// `exclude_advertisers`, as advertiser indexes of the snapshot; ids the inventory does not
/// have are left out (nothing of theirs can be served anyway).
pub(super) fn excluded_advertisers(
    snapshot: &Snapshot,
    raw: impl Iterator<Item = String>,
) -> Result<Vec<usize>, ApiError> {
    let mut excluded = Vec::new();
    for (n, raw) in raw.filter(|r| !r.trim().is_empty()).enumerate() {
        if n >= MAX_EXCLUDED_ADVERTISERS {
            return Err(ApiError::bad_request(
                "invalid_exclude_advertisers",
                format!("at most {MAX_EXCLUDED_ADVERTISERS} excluded advertisers"),
            ));
        }
        let raw = raw.trim();
        let id = AdvertiserId::parse(raw).map_err(|e| {
            ApiError::bad_request(
                "invalid_exclude_advertisers",
                format!("exclude_advertisers: {raw:?} {e}"),
            )
        })?;
        if let Some(&index) = snapshot.advertiser_index.get(&id) {
            excluded.push(index);
        }
    }
    Ok(excluded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    #[test]
    fn consent_is_refused_by_the_query_the_body_or_global_privacy_control() {
        let none = headers(&[]);
        assert!(!tracking_refused(None, None, &none).unwrap());
        assert!(tracking_refused(Some("0"), None, &none).unwrap());
        assert!(!tracking_refused(Some("1"), Some(false), &none).unwrap());
        assert!(tracking_refused(None, Some(false), &none).unwrap());
        assert!(!tracking_refused(None, Some(true), &none).unwrap());
        let gpc = headers(&[("sec-gpc", "1")]);
        assert!(tracking_refused(Some("1"), None, &gpc).unwrap());
        assert!(!tracking_refused(None, None, &headers(&[("sec-gpc", "0")])).unwrap());
        assert!(tracking_refused(Some("yes"), None, &none).is_err());
    }

    #[test]
    fn the_country_comes_from_the_configured_header() {
        let name = HeaderName::from_static("x-country");
        assert_eq!(
            country(&headers(&[("x-country", "be")]), &name).map(|c| c.to_string()),
            Some("BE".into())
        );
        assert_eq!(country(&headers(&[("x-country", "XX")]), &name), None);
        assert_eq!(country(&headers(&[("cf-ipcountry", "FR")]), &name), None);
    }

    #[test]
    fn widths_are_whole_pixels_within_bounds() {
        assert_eq!(width(Some("728")).unwrap(), Some(728));
        assert_eq!(width(None).unwrap(), None);
        for bad in ["0", "-1", "72.5", "abc", "10001", ""] {
            assert!(width(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(widths(vec![], 2).unwrap(), vec![None, None]);
        assert_eq!(
            widths(vec![Some(320), None], 2).unwrap(),
            vec![Some(320), None]
        );
        assert!(widths(vec![Some(320)], 2).is_err());
        assert!(widths(vec![Some(0), None], 2).is_err());
    }
}
