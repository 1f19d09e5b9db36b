//! regie itself, started in-process on a free port for one test, as `main` starts it.

use std::io::Write;
use std::path::Path;

use regie::settings::Settings;
use regie::startup::{Application, StopHandle};
use secrecy::SecretString;
use serde_json::Value;

/// A running regie; stopped when dropped.
pub struct Running {
    /// Base URL, e.g. `http://127.0.0.1:41234`; also the public URL of its tracking links.
    pub url: String,
    stop: StopHandle,
    _inventory: tempfile::NamedTempFile,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop();
    }
}

/// Starts regie with the embedded store, `inventory` and the admin API on `admin_token`.
pub async fn start(admin_token: &str, inventory: &Value) -> Running {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(inventory.to_string().as_bytes()).unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut settings = Settings::load_from(&config, "local", false).expect("the settings load");
    settings.listen = "127.0.0.1:0".into();
    settings.public_url = None;
    settings.redis_url = None;
    settings.inventory = file.path().to_owned();
    settings.admin_token = Some(SecretString::from(admin_token.to_owned()));
    settings.workers = Some(2);
    let app = Application::build(settings).await.expect("regie starts");
    let url = format!("http://127.0.0.1:{}", app.port());
    let stop = app.stop_handle();
    tokio::spawn(app.run_until_stopped());
    Running { url, stop, _inventory: file }
}
