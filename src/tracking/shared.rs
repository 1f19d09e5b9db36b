//! The signing key of instances that share a store without `REGIE_TRACKING_KEYS`: kept in the
//! store, created once by whichever instance comes first, read by every other, so that a
//! beacon answered by any instance verifies a token signed by any other.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Signer;
use crate::store::{Backend, Store, StoreError};

/// How often an instance that could not reach the store at start asks again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Makes `signer` sign with the store's shared key, creating it if the store has none.
pub async fn adopt_store_key(signer: &Signer, store: &impl Backend) -> Result<(), StoreError> {
    let secret = store.tracking_secret(&Signer::random_secret()).await?;
    signer.adopt_shared(&secret);
    Ok(())
}

/// Sets up signing for a store shared by several instances when no keys are configured: the
/// store's key at once when it answers, else in the background as soon as it does (tokens
/// signed meanwhile verify on this instance only). Answers the background task, if one runs.
pub async fn share_through_store(
    signer: Arc<Signer>,
    store: Store,
    mut shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    match adopt_store_key(&signer, &store).await {
        Ok(()) => {
            tracing::info!("REGIE_TRACKING_KEYS is unset: signing with the key kept in the store");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "the store's tracking key cannot be read yet; tokens signed until it can verify on this instance only");
            Some(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY_EVERY) => {}
                        _ = shutdown.changed() => return,
                    }
                    if adopt_store_key(&signer, &store).await.is_ok() {
                        tracing::info!("signing with the tracking key kept in the store");
                        return;
                    }
                }
            }))
        }
    }
}
