//! The admin token a developer's instance makes up when none is configured, so that everything
//! can be tried after `cargo run` without stopping the service to choose one.
//!
//! Only in the `local` environment: any other environment (`production` above all) keeps the
//! contract's rule that an unset `REGIE_ADMIN_TOKEN` disables the admin API.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use crate::settings::Settings;

/// Random bytes in a made-up token: as many as the shortest token a deployment may configure.
pub const TOKEN_BYTES: usize = 32;

/// In the local environment and without a configured admin token, makes one up, puts it in
/// `settings` and returns it, to be shown once with [`announcement`]; otherwise `None`.
pub fn make_up(settings: &mut Settings) -> Option<SecretString> {
    if !settings.is_local() || settings.admin_token.is_some() {
        return None;
    }
    // ThreadRng is a CSPRNG seeded from the operating system.
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    let token = SecretString::from(URL_SAFE_NO_PAD.encode(bytes));
    settings.admin_token = Some(token.clone());
    Some(token)
}

/// What the binary prints once at start: the token, and a `curl` line ready to paste that
/// reads the inventory with it from `base_url`. The `ADMIN` line is what the README's
/// examples use.
pub fn announcement(token: &SecretString, base_url: &str) -> String {
    let token = token.expose_secret();
    format!(
        "REGIE_ADMIN_TOKEN is unset: this local instance made up an admin token, valid until it stops:\n\
         \x20 REGIE_ADMIN_TOKEN={token}\n\
         Try the admin API (the README's examples use $ADMIN):\n\
         \x20 curl -H 'Authorization: Bearer {token}' {base_url}/v1/admin/inventory\n\
         \x20 ADMIN='Authorization: Bearer {token}'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(environment: &str) -> Settings {
        Settings::load_from(std::path::Path::new("config"), environment, false).unwrap()
    }

    #[test]
    fn a_local_instance_without_a_token_makes_up_a_long_random_one() {
        let mut first = settings("local");
        let mut second = settings("local");

        let a = make_up(&mut first).expect("a token");
        let b = make_up(&mut second).expect("a token");

        assert!(a.expose_secret().len() >= TOKEN_BYTES);
        assert_eq!(
            URL_SAFE_NO_PAD.decode(a.expose_secret()).unwrap().len(),
            TOKEN_BYTES
        );
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(
            first.admin_token.as_ref().map(|t| t.expose_secret()),
            Some(a.expose_secret())
        );
    }

    #[test]
    fn a_configured_token_is_kept() {
        let mut local = settings("local");
        local.admin_token = Some(SecretString::from("chosen-token-of-32-bytes-or-more!!"));

        assert!(make_up(&mut local).is_none());
        assert_eq!(
            local.admin_token.unwrap().expose_secret(),
            "chosen-token-of-32-bytes-or-more!!"
        );
    }

    #[test]
    fn production_never_makes_one_up() {
        let mut production = settings("production");

        assert!(make_up(&mut production).is_none());
        assert!(production.admin_token.is_none());
    }

    #[test]
    fn the_announcement_has_a_curl_line_with_the_token_and_the_url() {
        let token = SecretString::from("abc");

        let text = announcement(&token, "http://127.0.0.1:8080");

        assert!(text.contains(
            "curl -H 'Authorization: Bearer abc' http://127.0.0.1:8080/v1/admin/inventory"
        ));
    }
}
