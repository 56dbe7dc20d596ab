//! Scanning each message once per conversation instead of once per request.
//!
//! An agent re-sends the whole conversation with every request, so all but its last few
//! messages were scanned before. The document is scanned group by group (a message's adjacent
//! parts, a tool result, ...) and each group's findings are kept, keyed by a keyed hash of its
//! text and the policy digest, in a bounded cache: the cost of a request then grows with what is
//! new in it. The cache holds spans and detector ids only, never text.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use crate::detect::Finding;
use crate::inspect::content::{Document, RawKeyer};

use super::Detect;

pub struct ScanCache {
    /// Keyed per process, so nobody can craft two texts with the same key; the same hash as
    /// the clean groups' ([`RawKeyer`]), several times faster than SipHash over a cold 200 KB
    /// request's text. `None` (no randomness for a key): nothing is cached.
    keyer: Option<RawKeyer>,
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    findings: HashMap<u128, Arc<[Finding]>>,
    order: VecDeque<u128>,
}

impl ScanCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            keyer: RawKeyer::random(),
            capacity,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Every finding in `document`, spans into `document.text`, ordered by start.
    ///
    /// Every group is looked up, however short: a scanner call on a one-line text block
    /// costs more than hashing it, and an agent's history is mostly such blocks (tool calls,
    /// "let me read that file"). The lock is taken once to look up and once to store.
    ///
    /// `raw_keys` are the keys the reader gave groups of plain JSON strings
    /// ([`crate::inspect::content::Content::raw_keys`]): a group's text is a function of its
    /// raw bytes and the digest alone, which that key covers, so it keys the group here too
    /// rather than hashing the decoded text a second time (a new 200 KB request's text was
    /// hashed twice, about 30 us each). Both kinds of key are outputs of keyed hashes under
    /// independent secret keys, so they share one map without meeting. A group whose number
    /// occurs twice in the document is keyed by its text.
    pub fn scan(
        &self,
        scanner: &dyn Detect,
        digest: &str,
        document: &Document,
        raw_keys: &[(u32, u128)],
    ) -> Vec<Finding> {
        let texts: Vec<&[u8]> = document
            .groups
            .iter()
            .map(|group| &document.text.as_bytes()[group.clone()])
            .collect();
        let keyer = self.keyer.as_ref().filter(|_| self.capacity > 0);
        let found: Vec<Arc<[Finding]>> = if let Some(keyer) = keyer {
            let raw = raw_keys_by_group(raw_keys, &document.group_ids);
            let keys: Vec<u128> = texts
                .iter()
                .zip(&document.group_ids)
                .map(|(&text, group)| match raw.get(group) {
                    Some(&key) => key,
                    None => keyer.key(digest, [text]),
                })
                .collect();
            let cached: Vec<Option<Arc<[Finding]>>> = {
                let entries = self.lock();
                keys.iter()
                    .map(|key| entries.findings.get(key).cloned())
                    .collect()
            };
            let mut fresh = Vec::new();
            let found = cached
                .into_iter()
                .zip(&texts)
                .zip(&keys)
                .map(|((cached, text), &key)| {
                    cached.unwrap_or_else(|| {
                        let found: Arc<[Finding]> = scanner.scan(text).into();
                        fresh.push((key, found.clone()));
                        found
                    })
                })
                .collect();
            if !fresh.is_empty() {
                let mut entries = self.lock();
                for (key, found) in fresh {
                    if entries.findings.insert(key, found).is_none() {
                        entries.order.push_back(key);
                    }
                }
                while entries.order.len() > self.capacity {
                    if let Some(old) = entries.order.pop_front() {
                        entries.findings.remove(&old);
                    }
                }
            }
            found
        } else {
            texts.iter().map(|text| scanner.scan(text).into()).collect()
        };
        let mut all = Vec::new();
        for (group, found) in document.groups.iter().zip(found) {
            all.extend(found.iter().map(|f| Finding {
                span: f.span.start + group.start..f.span.end + group.start,
                ..f.clone()
            }));
        }
        all
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves a consistent map (inserts are single calls).
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `raw_keys` by group number, for the groups that occupy one range of the document: a
/// group's raw key covers all of its strings, so it stands for the text of that range only
/// when the group is not split.
fn raw_keys_by_group(raw_keys: &[(u32, u128)], group_ids: &[u32]) -> HashMap<u32, u128> {
    let mut ranges: HashMap<u32, usize> = HashMap::with_capacity(group_ids.len());
    for &group in group_ids {
        *ranges.entry(group).or_default() += 1;
    }
    raw_keys
        .iter()
        .filter(|(group, _)| ranges.get(group) == Some(&1))
        .copied()
        .collect()
}

/// Raw keys of message groups scanned and found clean (see
/// [`crate::inspect::content::SkipClean`]): such a group is left out of the next request's
/// document before it is even decoded. Bounded, oldest forgotten first; holds hashes only.
pub struct CleanGroups {
    /// The per-process keyed hash of a group's raw bytes; `None` (no randomness for a key)
    /// turns skipping off.
    keyer: Option<RawKeyer>,
    capacity: usize,
    entries: Mutex<(HashSet<u128>, VecDeque<u128>)>,
}

impl CleanGroups {
    pub fn new(capacity: usize) -> Self {
        let keyer = RawKeyer::random();
        if keyer.is_none() {
            tracing::warn!("no randomness for the clean-group key: every message is scanned");
        }
        Self {
            keyer,
            capacity,
            entries: Mutex::new(Default::default()),
        }
    }

    /// The keyed hash, when skipping is on at all (a capacity of 0 turns it off).
    pub fn keyer(&self) -> Option<&RawKeyer> {
        self.keyer.as_ref().filter(|_| self.capacity > 0)
    }

    /// Whether skipping is on at all.
    pub fn enabled(&self) -> bool {
        self.keyer().is_some()
    }

    pub fn contains(&self, key: u128) -> bool {
        self.lock().0.contains(&key)
    }

    /// Remembers the groups of `keys` (group number, raw key) in which `findings` has none.
    pub fn remember(&self, keys: &[(u32, u128)], document: &Document, findings: &[Finding]) {
        if !self.enabled() || keys.is_empty() {
            return;
        }
        let dirty: std::collections::HashSet<u32> = findings
            .iter()
            .filter_map(|f| {
                let index = document
                    .groups
                    .partition_point(|g| g.start <= f.span.start)
                    .checked_sub(1)?;
                document.group_ids.get(index).copied()
            })
            .collect();
        let mut entries = self.lock();
        let (set, order) = &mut *entries;
        for &(group, key) in keys {
            if !dirty.contains(&group) && set.insert(key) {
                order.push_back(key);
            }
        }
        while order.len() > self.capacity {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (HashSet<u128>, VecDeque<u128>)> {
        // Inserts and removals are single calls: a panic elsewhere leaves the set consistent.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Category, Severity};
    use crate::inspect::content::{Place, Segment};
    use crate::inspect::json::Text;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Finds every `KEY` and counts the bytes it was asked to scan.
    #[derive(Default)]
    struct Counting(AtomicUsize);
    impl Detect for Counting {
        fn scan(&self, input: &[u8]) -> Vec<Finding> {
            self.0.fetch_add(input.len(), Ordering::SeqCst);
            input
                .windows(3)
                .enumerate()
                .filter(|(_, w)| *w == b"KEY")
                .map(|(i, _)| Finding {
                    detector: "secret.key".into(),
                    category: Category::Secret,
                    severity: Severity::High,
                    span: i..i + 3,
                })
                .collect()
        }
    }

    fn document(texts: &[String]) -> Document {
        let segments: Vec<Segment> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| Segment {
                location: format!("messages[{i}]"),
                text: Text::from_plain(t.as_bytes(), 0..t.len(), false),
                group: i as u32,
                place: Place::Body,
            })
            .collect();
        Document::build(&segments)
    }

    #[test]
    fn a_repeated_conversation_is_scanned_only_where_it_is_new() {
        let cache = ScanCache::new(16);
        let scanner = Counting::default();
        let old = format!("{} KEY {}", "a".repeat(300), "b".repeat(300));
        let first = document(std::slice::from_ref(&old));
        let found = cache.scan(&scanner, "d", &first, &[]);
        assert_eq!(found.len(), 1);
        let scanned_once = scanner.0.load(Ordering::SeqCst);

        let new = format!("{} KEY", "c".repeat(300));
        let second = document(&[old.clone(), new.clone()]);
        let found = cache.scan(&scanner, "d", &second, &[]);
        assert_eq!(found.len(), 2);
        for f in &found {
            assert_eq!(&second.text[f.span.clone()], "KEY");
        }
        assert_eq!(scanner.0.load(Ordering::SeqCst), scanned_once + new.len());

        // Another policy (digest) scans again.
        cache.scan(&scanner, "other", &second, &[]);
        assert!(scanner.0.load(Ordering::SeqCst) > scanned_once + new.len() * 2);
    }

    #[test]
    fn an_agents_next_turn_scans_only_the_messages_it_adds() {
        use crate::inspect::{providers, Provider};
        let (parts, ()) = http::Request::builder()
            .uri("/v1/messages")
            .header("content-type", "application/json")
            .body(())
            .unwrap()
            .into_parts();
        let file = "fn main() {\n    println!(\"KEY\");\n}\n".repeat(20);
        let mut messages = vec![
            serde_json::json!({"role": "user", "content": "Read src/main.rs"}),
            serde_json::json!({"role": "assistant", "content": [
                {"type": "text", "text": "Reading it."},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"file_path": "src/main.rs"}}]}),
            serde_json::json!({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": file}]}),
        ];
        let body = |messages: &[serde_json::Value]| {
            serde_json::json!({"model": "claude-sonnet-4-5", "system": "You are a coding agent.", "messages": messages})
                .to_string()
        };
        let document = |body: &str| {
            let content = providers::read(Provider::Anthropic, &parts, body.as_bytes()).unwrap();
            Document::build(&content.segments)
        };
        let cache = ScanCache::new(64);
        let scanner = Counting::default();
        let first = document(&body(&messages));
        assert_eq!(cache.scan(&scanner, "d", &first, &[]).len(), 20);
        assert_eq!(
            scanner.0.load(Ordering::SeqCst),
            first.text.len() - 2 * (first.groups.len() - 1)
        );

        messages.push(serde_json::json!({"role": "assistant", "content": "It prints KEY."}));
        messages.push(serde_json::json!({"role": "user", "content": "Make it print KEY twice."}));
        let second = document(&body(&messages));
        let before = scanner.0.load(Ordering::SeqCst);
        let found = cache.scan(&scanner, "d", &second, &[]);
        assert_eq!(
            found.len(),
            22,
            "the history's findings come from the cache"
        );
        let new_text = "It prints KEY.".len() + "Make it print KEY twice.".len();
        assert_eq!(scanner.0.load(Ordering::SeqCst) - before, new_text);
    }

    #[test]
    fn a_group_with_a_raw_key_is_cached_under_it_unless_the_group_is_split() {
        let cache = ScanCache::new(16);
        let scanner = Counting::default();
        // The reader's key stands for the text: a second document whose group has the same
        // raw key is answered from the cache without a scan (were the text hashed instead,
        // its other text would be scanned).
        let first = document(&[format!("{} KEY", "a".repeat(100))]);
        assert_eq!(cache.scan(&scanner, "d", &first, &[(0, 7)]).len(), 1);
        let scanned = scanner.0.load(Ordering::SeqCst);
        assert_eq!(scanned, first.text.len());
        let same_raw = document(&[format!("{} KEY", "a".repeat(100))]);
        assert_eq!(cache.scan(&scanner, "d", &same_raw, &[(0, 7)]).len(), 1);
        assert_eq!(
            scanner.0.load(Ordering::SeqCst),
            scanned,
            "answered by the raw key"
        );
        let other = document(&["b".repeat(50)]);
        assert_eq!(cache.scan(&scanner, "d", &other, &[(0, 8)]).len(), 0);
        assert_eq!(scanner.0.load(Ordering::SeqCst), scanned + 50);

        // Group 0 in two ranges (another group between): its raw key covers both, so neither
        // range is keyed by it; each is keyed by its own text and scanned.
        let segment = |text: &str, group: u32| Segment {
            location: format!("messages[{group}]"),
            text: Text::from_plain(text.as_bytes(), 0..text.len(), false),
            group,
            place: Place::Body,
        };
        let split = Document::build(&[segment("c KEY", 0), segment("d", 1), segment("e KEY e", 0)]);
        assert_eq!(split.group_ids, [0, 1, 0]);
        // The key already stands for another text, which a split group must not be read as.
        cache.scan(&scanner, "d", &document(&["f".repeat(20)]), &[(0, 9)]);
        let before = scanner.0.load(Ordering::SeqCst);
        let found = cache.scan(&scanner, "d", &split, &[(0, 9)]);
        assert_eq!(found.len(), 2);
        assert_eq!(scanner.0.load(Ordering::SeqCst) - before, 5 + 1 + 7);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = ScanCache::new(2);
        let scanner = Counting::default();
        for i in 0..10 {
            cache.scan(
                &scanner,
                "d",
                &document(&[format!("{i}{}", "x".repeat(300))]),
                &[],
            );
        }
        assert!(cache.lock().findings.len() <= 2);
        assert!(cache.lock().order.len() <= 2);
    }
}
