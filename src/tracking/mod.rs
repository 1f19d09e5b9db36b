//! Tracking: signed tokens in the impression, viewable and click URLs.

mod shared;
mod token;

pub use shared::{adopt_store_key, share_through_store};

pub use token::{
    KeysError, SignedToken, Signer, TokenError, TokenPayload, MAX_TOKEN_CHARS, MIN_SECRET_BYTES,
};

/// Clocks of instances may disagree a little: a token issued up to this long in the future
/// (by another instance's clock) is accepted.
pub const CLOCK_SKEW_SECS: i64 = 300;

/// The kinds of events a token can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// The creative was rendered.
    Impression,
    /// Half of it was in view for one continuous second (MRC).
    Viewable,
    /// The viewer clicked.
    Click,
}

impl EventKind {
    /// The short name used in Redis keys and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Impression => "impression",
            EventKind::Viewable => "viewable",
            EventKind::Click => "click",
        }
    }

    /// Every kind.
    pub const ALL: [EventKind; 3] = [EventKind::Impression, EventKind::Viewable, EventKind::Click];
}
