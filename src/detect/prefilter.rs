//! The keyword prefilter: every occurrence of every rule keyword (case-insensitive).
//!
//! One aho-corasick DFA over all keywords, searched in overlapping mode so that keywords that
//! overlap each other (`sk-`, `sk-ant-`) are all reported, as the rule engine needs.
//!
//! Measured alternatives (benches/detect_profile.rs, same machine, same run): aho-corasick's
//! SIMD "Teddy" searchers need one pass per 64 keywords and with ~400 keywords were 2-4x slower
//! than this automaton; a byte-pair bitmap filter in front of it was 2.5x slower. The
//! automaton's per-byte cost is now the floor of a scan on ordinary text.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

pub struct Prefilter {
    /// Multi-byte keywords, lower-cased; `multi_ids[i]` is automaton pattern i's keyword index.
    automaton: Option<AhoCorasick>,
    multi_ids: Vec<usize>,
    /// Single-byte keywords: `(byte, keyword index)`, found with `memchr`.
    single: Vec<(u8, usize)>,
}

impl std::fmt::Debug for Prefilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefilter")
            .field("keywords", &(self.multi_ids.len() + self.single.len()))
            .finish()
    }
}

impl Prefilter {
    /// `keywords` must be lower-case ASCII-folded; their index is what `for_each` reports.
    pub fn new(keywords: &[Vec<u8>]) -> Result<Self, String> {
        let mut single = Vec::new();
        let mut multi = Vec::new();
        let mut multi_ids = Vec::new();
        for (i, keyword) in keywords.iter().enumerate() {
            match keyword.as_slice() {
                [] => {}
                [byte] => single.push((*byte, i)),
                _ => {
                    multi.push(keyword.clone());
                    multi_ids.push(i);
                }
            }
        }
        let automaton = if multi.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&multi)
                    .map_err(|error| error.to_string())?,
            )
        };
        Ok(Prefilter {
            automaton,
            multi_ids,
            single,
        })
    }

    /// Calls `found(keyword index, start, end)` for every occurrence in `text`, overlapping ones
    /// included, in no particular order.
    pub fn for_each(&self, text: &[u8], mut found: impl FnMut(usize, usize, usize)) {
        for &(byte, id) in &self.single {
            let other = if byte.is_ascii_lowercase() {
                byte.to_ascii_uppercase()
            } else {
                byte
            };
            for at in memchr::memchr2_iter(byte, other, text) {
                found(id, at, at + 1);
            }
        }
        let Some(automaton) = &self.automaton else {
            return;
        };
        for hit in automaton.find_overlapping_iter(text) {
            found(
                self.multi_ids[hit.pattern().as_usize()],
                hit.start(),
                hit.end(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(keywords: &[&str], text: &str) -> Vec<(usize, usize, usize)> {
        let keywords: Vec<Vec<u8>> = keywords.iter().map(|k| k.as_bytes().to_vec()).collect();
        let prefilter = Prefilter::new(&keywords).expect("builds");
        let mut out = Vec::new();
        prefilter.for_each(text.as_bytes(), |id, start, end| out.push((id, start, end)));
        out.sort_unstable();
        out
    }

    #[test]
    fn overlapping_and_case_folded_keywords_are_all_found() {
        let text = "xx SK-ANT-api03 and sk- plus a@b, then Github_Token here and more padding";
        assert_eq!(
            hits(&["sk-", "sk-ant-", "@", "github", "token"], text),
            [
                (0, 3, 6),
                (0, 20, 23),
                (1, 3, 10),
                (2, 30, 31),
                (3, 39, 45),
                (4, 46, 51)
            ]
        );
    }

    #[test]
    fn more_keywords_than_one_shard_holds() {
        let keywords: Vec<String> = (0..300).map(|i| format!("kw{i:03}_")).collect();
        let refs: Vec<&str> = keywords.iter().map(String::as_str).collect();
        let text = "a kw299_ b KW007_ c kw150_kw151_ d".repeat(3);
        let found = hits(&refs, &text);
        assert_eq!(found.len(), 12, "{found:?}");
    }
}
