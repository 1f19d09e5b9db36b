//! Moving a single Redis from the key layout without hash tags (`P:totals:CAMPAIGN`, …) to the
//! layout of [`super::keys`] (`P:{c:CAMPAIGN}:totals`, …): `regie migrate-keys`, run once while
//! no instance runs.
//!
//! Each key is renamed with `RENAMENX`, which keeps its value and expiry and never overwrites a
//! key of the new layout: a key whose new name is taken is left where it is and reported.
//! Batch markers of the old layout are left to expire (a day); they guard nothing any more.

/// What a migration did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Keys renamed to the new layout.
    pub renamed: u64,
    /// Old keys left in place because their new name was taken.
    pub conflicts: Vec<String>,
}

/// The new name of a key of the old layout under `prefix`, if it is one.
pub fn new_name(prefix: &str, key: &str) -> Option<String> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(':')?;
    let (kind, tail) = rest.split_once(':').unwrap_or((rest, ""));
    let renamed = match (kind, tail) {
        ("inventory", "") => "{inventory}:json".to_owned(),
        ("inventory", "version") => "{inventory}:version".to_owned(),
        ("stats", tail) => {
            let (campaign, day) = tail.split_once(':')?;
            format!("{{c:{campaign}}}:stats:{day}")
        }
        ("totals", campaign) if !campaign.is_empty() => format!("{{c:{campaign}}}:totals"),
        ("slot-totals", campaign) if !campaign.is_empty() => {
            format!("{{c:{campaign}}}:slot-totals")
        }
        ("lease", tail) if !tail.is_empty() => match tail.split_once(':') {
            Some((campaign, day)) => format!("{{c:{campaign}}}:lease:{day}"),
            None => format!("{{c:{tail}}}:lease"),
        },
        ("seen", tail) => {
            let (counter, decision) = tail.split_once(':')?;
            format!("{{d:{decision}}}:seen:{counter}")
        }
        ("apikey", hash) if !hash.is_empty() => format!("{{keys}}:apikey:{hash}"),
        ("advertiser-key", id) if !id.is_empty() => format!("{{keys}}:advertiser-key:{id}"),
        ("freq", tail) => {
            let (viewer, campaign) = tail.split_once(':')?;
            format!("{{v:{viewer}}}:freq:{campaign}")
        }
        _ => return None,
    };
    Some(format!("{prefix}:{renamed}"))
}

/// Renames every key of the old layout under `prefix` on the Redis at `url`.
pub fn migrate_keys(url: &str, prefix: &str) -> redis::RedisResult<Migration> {
    let mut conn = redis::Client::open(url)?.get_connection()?;
    // Glob characters in the prefix match themselves only.
    let escaped: String = prefix
        .chars()
        .flat_map(|c| match c {
            '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{escaped}:*"))
        .arg("COUNT")
        .arg(1_000)
        .clone()
        .iter(&mut conn)?
        .collect::<Result<_, _>>()?;
    let mut migration = Migration::default();
    for key in keys {
        let Some(renamed) = new_name(prefix, &key) else {
            continue;
        };
        let moved: bool = redis::cmd("RENAMENX")
            .arg(&key)
            .arg(&renamed)
            .query(&mut conn)?;
        if moved {
            migration.renamed += 1;
        } else {
            migration.conflicts.push(key);
        }
    }
    Ok(migration)
}

#[cfg(test)]
mod tests {
    use super::new_name;

    #[test]
    fn every_key_of_the_old_layout_gets_its_tagged_name() {
        let cases = [
            ("regie:inventory", "regie:{inventory}:json"),
            ("regie:inventory:version", "regie:{inventory}:version"),
            ("regie:stats:c1:2026-11-30", "regie:{c:c1}:stats:2026-11-30"),
            ("regie:totals:c1", "regie:{c:c1}:totals"),
            ("regie:slot-totals:c1", "regie:{c:c1}:slot-totals"),
            ("regie:lease:c1", "regie:{c:c1}:lease"),
            ("regie:lease:c1:2026-11-30", "regie:{c:c1}:lease:2026-11-30"),
            ("regie:seen:clicks:01JD", "regie:{d:01JD}:seen:clicks"),
            ("regie:apikey:ab12", "regie:{keys}:apikey:ab12"),
            (
                "regie:advertiser-key:adv",
                "regie:{keys}:advertiser-key:adv",
            ),
            ("regie:freq:f00d:c1", "regie:{v:f00d}:freq:c1"),
        ];
        for (old, new) in cases {
            assert_eq!(new_name("regie", old).as_deref(), Some(new), "{old}");
        }
        for untouched in [
            "regie:{c:c1}:totals",
            "regie:batch:01JD",
            "other:totals:c1",
            "regie:inventory:changed",
        ] {
            assert_eq!(new_name("regie", untouched), None, "{untouched}");
        }
    }
}
