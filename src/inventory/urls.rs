//! The inventory's URLs: where a click leads (`landing_url`) and where an image is
//! (`image_url`), each accepted once and kept in one normalised form.
//!
//! A landing URL becomes the `Location` header of the click redirect, an image URL the `src`
//! of an image on a publisher's page. The raw text is checked for control characters before
//! it is parsed, because the `url` crate removes tab, CR and LF without a word (as the WHATWG
//! URL standard says browsers must): parsing first would hide `…/\r\nSet-Cookie: x` rather
//! than refuse it.
//!
//! The normalised form is what the `url` crate writes: lower-case scheme and host, an
//! internationalised host in punycode, spaces and non-ASCII characters of the path and query
//! percent-encoded, the scheme's default port left out. It is plain printable ASCII, so it is
//! always a valid header value, and a browser would request exactly it.

use serde::{Deserialize, Serialize};
use url::{Position, Url};

use super::names::into_text;

const CONTROL_CHARACTERS: &str = "must not contain control characters (CR, LF, tab…)";
const NOT_A_WEB_URL: &str = "must be an absolute http or https URL";
const NOT_AN_IMAGE_URL: &str =
    "must be an absolute http or https URL, or a path on regie itself starting with /";

/// Where a click on a creative leads: an absolute `http` or `https` URL with a host, without
/// control characters, in normalised form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LandingUrl(String);

impl LandingUrl {
    /// Checks `raw` and normalises it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        refuse_control_characters(raw)?;
        web_url(raw).map(Self).ok_or_else(|| NOT_A_WEB_URL.into())
    }

    /// The normalised URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a creative's image is: an absolute `http` or `https` URL, or a root-relative path
/// (`/creatives/x.svg`) of an image regie serves itself, made absolute with the public URL when
/// a decision is answered. Without control characters, in normalised form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageUrl(String);

impl ImageUrl {
    /// Checks `raw` and normalises it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        refuse_control_characters(raw)?;
        own_path(raw)
            .or_else(|| web_url(raw))
            .map(Self)
            .ok_or_else(|| NOT_AN_IMAGE_URL.into())
    }

    /// The normalised URL or path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether regie serves the image itself (the URL is a path).
    pub fn is_own(&self) -> bool {
        self.0.starts_with('/')
    }
}

fn refuse_control_characters(raw: &str) -> Result<(), String> {
    // `char::is_control` is Unicode's Cc category: C0 (tab, LF, CR, NUL…), DEL and C1.
    if raw.chars().any(char::is_control) {
        return Err(CONTROL_CHARACTERS.into());
    }
    Ok(())
}

/// The normalised form of an absolute `http` or `https` URL with a host.
fn web_url(raw: &str) -> Option<String> {
    let url = Url::parse(raw).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.host().is_some()).then(|| url.into())
}

/// The normalised form of a root-relative path. `//host/x` is a URL of another host and `\`
/// counts as `/` for browsers, so neither is a path.
fn own_path(raw: &str) -> Option<String> {
    if !raw.starts_with('/') || raw.starts_with("//") || raw.contains('\\') {
        return None;
    }
    let base = Url::parse("http://regie.invalid/").expect("a constant URL parses");
    let url = base.join(raw).ok()?;
    Some(url[Position::BeforePath..].to_owned())
}

impl TryFrom<String> for LandingUrl {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl TryFrom<String> for ImageUrl {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

into_text!(LandingUrl, ImageUrl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_landing_url_is_kept_in_normalised_form() {
        for (raw, normalised) in [
            (
                "HTTPS://Journal.Example/a b?q=é",
                "https://journal.example/a%20b?q=%C3%A9",
            ),
            ("https://a.example:443/x", "https://a.example/x"),
            ("http://a.example:8080", "http://a.example:8080/"),
            ("https://bücher.example/", "https://xn--bcher-kva.example/"),
            ("  https://a.example/#top  ", "https://a.example/#top"),
        ] {
            assert_eq!(
                LandingUrl::parse(raw).unwrap().as_str(),
                normalised,
                "{raw}"
            );
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        let once = LandingUrl::parse("HTTPS://Bücher.Example:443/a b?q=é#ü").unwrap();
        assert_eq!(LandingUrl::parse(once.as_str()).unwrap(), once);
    }

    #[test]
    fn control_characters_are_refused_before_parsing() {
        for raw in [
            "https://a.example/\r\nSet-Cookie: x=1",
            "https://a.example/\n",
            "https://a.\texample/",
            "https://a.example/\0",
            "https://a.example/\u{1b}[0m",
            "https://a.example/\u{7f}",
            "https://a.example/\u{85}",
            "https://a.example/\u{9f}",
        ] {
            assert_eq!(
                LandingUrl::parse(raw).unwrap_err(),
                CONTROL_CHARACTERS,
                "{raw:?}"
            );
            assert_eq!(
                ImageUrl::parse(raw).unwrap_err(),
                CONTROL_CHARACTERS,
                "{raw:?}"
            );
        }
        assert!(ImageUrl::parse("/creatives/\r\nx.svg").is_err());
    }

    #[test]
    fn only_http_and_https_urls_with_a_host_lead_anywhere() {
        for raw in [
            "javascript:alert(1)",
            "data:text/html,x",
            "ftp://a.example/",
            "/relative",
            "https://",
            "",
        ] {
            assert_eq!(
                LandingUrl::parse(raw).unwrap_err(),
                NOT_A_WEB_URL,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn an_image_may_be_a_path_on_regie_itself_also_normalised() {
        let own = ImageUrl::parse("/creatives/a b/é.svg?v=1").unwrap();
        assert_eq!(own.as_str(), "/creatives/a%20b/%C3%A9.svg?v=1");
        assert!(own.is_own());
        let web = ImageUrl::parse("HTTPS://CDN.example/x.png").unwrap();
        assert_eq!(web.as_str(), "https://cdn.example/x.png");
        assert!(!web.is_own());
        for raw in ["//evil.example/x.png", "/\\evil.example/x.png", "x.png"] {
            assert_eq!(
                ImageUrl::parse(raw).unwrap_err(),
                NOT_AN_IMAGE_URL,
                "{raw:?}"
            );
        }
    }
}
