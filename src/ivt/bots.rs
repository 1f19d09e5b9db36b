//! Known bots by their user agent: crawlers, monitors, HTTP libraries and headless browsers,
//! from the list shipped in `config/bots.txt` (see the README for its source and how to update
//! it), plus requests without any user agent.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use regex::bytes::RegexSet;

/// The list compiled into the binary: nothing is read or downloaded at run time.
const BOTS_TXT: &str = include_str!("../../config/bots.txt");

/// Longest user agent looked at, in bytes. Real ones are a few hundred bytes; a longer header
/// is cut there, so one request can never cost more than this many bytes of matching.
const MAX_USER_AGENT_BYTES: usize = 1_024;

/// Verdicts each thread remembers: the few user agents of a site's audience repeat on most
/// requests, and a repeated one costs a hash and a comparison instead of running the
/// automaton of 1 500 patterns (see `cargo bench --bench ivt`).
const REMEMBERED_PER_THREAD: usize = 64;

/// Tells matchers apart in the per-thread memory (tests build several).
static NEXT_MATCHER: AtomicU64 = AtomicU64::new(0);

/// A remembered verdict: the matcher, the user agent's hash and bytes, whether it is a bot.
type Verdict = (u64, u64, Box<[u8]>, bool);

thread_local! {
    /// This thread's remembered verdicts, a slot per user-agent hash (the newest wins).
    static VERDICTS: RefCell<Vec<Option<Verdict>>> =
        RefCell::new(vec![None; REMEMBERED_PER_THREAD]);
}

/// The known-bots matcher: every pattern of the list in one compiled automaton, built once at
/// start-up and shared by every request.
#[derive(Debug, Clone)]
pub struct BotMatcher {
    set: RegexSet,
    /// This matcher's verdicts in each thread's memory.
    id: u64,
    hasher: hashbrown::DefaultHashBuilder,
}

impl BotMatcher {
    /// Compiles the shipped list.
    pub fn new() -> Self {
        Self::from_list(BOTS_TXT).expect("config/bots.txt compiles (checked by its tests)")
    }

    /// Compiles a list: one regular expression per line, `#` starts a comment line.
    pub fn from_list(list: &str) -> Result<Self, regex::Error> {
        let patterns = patterns(list);
        let set = regex::bytes::RegexSetBuilder::new(patterns)
            // 1 500 patterns need more than the default budget of the compiled program and of
            // the lazy DFA's cache; both stay a few megabytes.
            .size_limit(64 << 20)
            .dfa_size_limit(16 << 20)
            .build()?;
        Ok(Self {
            set,
            id: NEXT_MATCHER.fetch_add(1, Ordering::Relaxed),
            hasher: hashbrown::DefaultHashBuilder::default(),
        })
    }

    /// How many patterns the matcher holds.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether the matcher holds no pattern.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Whether a request with this `User-Agent` header (raw bytes, `None` when absent) is a
    /// known bot. An absent, empty or blank user agent is one: browsers always send theirs.
    pub fn is_bot(&self, user_agent: Option<&[u8]>) -> bool {
        let Some(ua) = user_agent else { return true };
        if ua.iter().all(u8::is_ascii_whitespace) {
            return true;
        }
        let ua = &ua[..ua.len().min(MAX_USER_AGENT_BYTES)];
        let hash = self.hasher.hash_one(ua);
        let slot = (hash % REMEMBERED_PER_THREAD as u64) as usize;
        VERDICTS.with_borrow_mut(|verdicts| match &verdicts[slot] {
            Some((id, h, bytes, bot)) if *id == self.id && *h == hash && **bytes == *ua => *bot,
            _ => {
                let bot = self.set.is_match(ua);
                verdicts[slot] = Some((self.id, hash, ua.into(), bot));
                bot
            }
        })
    }
}

impl Default for BotMatcher {
    fn default() -> Self {
        Self::new()
    }
}

fn patterns(list: &str) -> impl Iterator<Item = &str> {
    list.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// The upstream example user agents kept in the list's comments (`#! …`), for the tests.
#[cfg(test)]
fn examples(list: &str) -> impl Iterator<Item = &str> {
    list.lines().filter_map(|line| line.strip_prefix("#! "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// User agents of browsers people use, desktop and mobile, none of which is a bot.
    pub(crate) const BROWSERS: &[&str] = &[
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0",
        "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
    ];

    #[test]
    fn the_shipped_list_compiles_into_one_matcher_of_every_pattern() {
        let matcher = BotMatcher::new();
        assert_eq!(matcher.len(), patterns(BOTS_TXT).count());
        assert!(matcher.len() > 1_000, "the list is the maintained one");
    }

    #[test]
    fn every_upstream_example_is_a_bot() {
        let matcher = BotMatcher::new();
        let missed: Vec<&str> = examples(BOTS_TXT)
            .filter(|ua| !matcher.is_bot(Some(ua.as_bytes())))
            .collect();
        assert!(examples(BOTS_TXT).count() > 1_000);
        assert!(missed.is_empty(), "not recognised: {missed:?}");
    }

    #[test]
    fn a_remembered_verdict_is_the_matchers_own_and_the_same_user_agents() {
        let everyone = BotMatcher::from_list("Mozilla").unwrap();
        let nobody = BotMatcher::from_list("NoSuchAgent").unwrap();
        let ua = BROWSERS[0].as_bytes();
        for _ in 0..3 {
            assert!(everyone.is_bot(Some(ua)));
            assert!(!nobody.is_bot(Some(ua)));
        }
        // Many user agents through one slot table: each answered as the automaton would.
        for i in 0..1_000 {
            let agent = format!("Mozilla/5.0 test {i}");
            let other = format!("curl/{i}");
            assert!(everyone.is_bot(Some(agent.as_bytes())));
            assert!(!everyone.is_bot(Some(other.as_bytes())));
            assert!(!nobody.is_bot(Some(agent.as_bytes())));
        }
    }

    #[test]
    fn ordinary_browsers_are_people() {
        let matcher = BotMatcher::new();
        for ua in BROWSERS {
            assert!(!matcher.is_bot(Some(ua.as_bytes())), "{ua}");
        }
    }

    #[test]
    fn http_libraries_headless_browsers_and_tools_are_bots() {
        let matcher = BotMatcher::new();
        for ua in [
            "curl/8.5.0",
            "Wget/1.21.4",
            "python-requests/2.32.3",
            "Go-http-client/1.1",
            "Go-http-client/2.0",
            "okhttp/4.12.0",
            "axios/1.7.7",
            "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
            "Python-urllib/3.12",
            "Java/17.0.2",
            "reqwest/0.12.9",
            "PostmanRuntime/7.42.0",
            "Scrapy/2.11.2 (+https://scrapy.org)",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
            "Mozilla/5.0",
        ] {
            assert!(matcher.is_bot(Some(ua.as_bytes())), "{ua}");
        }
    }

    #[test]
    fn a_missing_empty_or_blank_user_agent_is_a_bot() {
        let matcher = BotMatcher::new();
        assert!(matcher.is_bot(None));
        assert!(matcher.is_bot(Some(b"")));
        assert!(matcher.is_bot(Some(b"  \t")));
    }

    #[test]
    fn a_huge_or_binary_user_agent_is_looked_at_without_panicking() {
        let matcher = BotMatcher::new();
        let huge = format!("{} curl/8.0", BROWSERS[0].repeat(100));
        assert!(
            !matcher.is_bot(Some(huge.as_bytes())),
            "only the first kilobyte is looked at"
        );
        assert!(!matcher.is_bot(Some(&[0xff, 0xfe, 0x00, 0x80])));
    }

    #[test]
    fn a_list_with_a_broken_pattern_is_refused() {
        assert!(BotMatcher::from_list("# comment\nGooglebot\n(unclosed\n").is_err());
        let small = BotMatcher::from_list("# comment\n\nGooglebot\n").unwrap();
        assert_eq!(small.len(), 1);
    }
}
