//! The keyword prefilter: every occurrence of every rule keyword (case-insensitive).
//!
//! One aho-corasick DFA over all keywords, built with `MatchKind::Standard` so that keywords
//! that overlap each other (`sk-`, `sk-ant-`) are all reported, as the rule engine needs.
//!
//! Why the automaton is stepped here rather than searched with `find_overlapping_iter`: with
//! ~470 case-insensitive keywords no prefilter of the crate applies, and each byte's step is a
//! table load that depends on the previous one, so one walk through the text runs at the
//! latency of that load (~430 MB/s here). The text is instead cut into [`LANES`] lanes walked
//! in lockstep: eight independent chains of loads that the CPU overlaps, about twice as fast
//! (benches/detect_profile.rs). Each lane starts early by the longest keyword's length less
//! one, so that a keyword across a lane boundary is seen whole, and reports only the keywords
//! that *end* in its own part, so that nothing is reported twice.
//!
//! Measured and not taken: aho-corasick's SIMD Teddy searchers (one pass per 64 keywords,
//! 2-4x slower); hashing every position's next four bytes into a table of keyword
//! fingerprints (1.4x faster than one walk, slower than the lanes).

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::{dfa, Anchored, MatchKind};

/// Lanes walked in lockstep: enough independent loads to hide the latency of each.
const LANES: usize = 8;
/// Below this many bytes per lane, one walk: the lanes' overlap would cost more than it saves.
const MIN_LANE: usize = 1024;

pub struct Prefilter {
    /// Multi-byte keywords; `multi_ids[i]` is automaton pattern i's keyword index.
    automaton: Option<Walk>,
    multi_ids: Vec<usize>,
    /// Single-byte keywords: `(byte, keyword index)`, found with `memchr`.
    single: Vec<(u8, usize)>,
}

/// The automaton and what a walk needs to know about it.
struct Walk {
    dfa: dfa::DFA,
    start: StateID,
    /// The longest keyword's length less one: how far before its own part a lane starts.
    overlap: usize,
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
                    multi.push(keyword.as_slice());
                    multi_ids.push(i);
                }
            }
        }
        let automaton = if multi.is_empty() {
            None
        } else {
            let dfa = dfa::Builder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                // The crate's own prefilter would make the start state "special" and send
                // every return to it through the slow path of the walk below.
                .prefilter(false)
                .build(&multi)
                .map_err(|error| error.to_string())?;
            let start = dfa
                .start_state(Anchored::No)
                .map_err(|error| error.to_string())?;
            let overlap = multi.iter().map(|k| k.len()).max().unwrap_or(1) - 1;
            Some(Walk {
                dfa,
                start,
                overlap,
            })
        };
        Ok(Prefilter {
            automaton,
            multi_ids,
            single,
        })
    }

    /// Calls `found(keyword index, start, end)` for every occurrence in `text`, overlapping ones
    /// included: single-byte keywords first, each in order, then the others in order of their
    /// end.
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
        let Some(walk) = &self.automaton else {
            return;
        };
        let part = text.len() / LANES;
        if part < MIN_LANE.max(walk.overlap) {
            walk.run(text, 0, walk.start, 0, &mut |sid, end| {
                self.report(walk, sid, end, &mut found)
            });
            return;
        }
        // Lane k owns the ends in (own[k], to[k]] and walks from `own[k] - overlap`.
        let mut from = [0usize; LANES];
        let mut to = [0usize; LANES];
        let mut own = [0usize; LANES];
        for k in 0..LANES {
            own[k] = k * part;
            from[k] = own[k].saturating_sub(walk.overlap);
            to[k] = if k + 1 == LANES {
                text.len()
            } else {
                (k + 1) * part
            };
        }
        let steps = (0..LANES).map(|k| to[k] - from[k]).min().unwrap_or(0);
        let mut state = [walk.start; LANES];
        // Hits are reported in order of their end, as one walk would: the rule engine merges
        // each rule's windows as they arrive and must sort them otherwise (measured: on a
        // request that repeats a keyword thousands of times, out-of-order hits made the
        // whole scan 1.6x slower). Lane 0's hits go out at once; the others' wait their turn.
        let mut held: [Vec<(StateID, usize)>; LANES] = std::array::from_fn(|_| Vec::new());
        for step in 0..steps {
            for k in 0..LANES {
                let at = from[k] + step;
                let next = walk.dfa.next_state(Anchored::No, state[k], text[at]);
                state[k] = next;
                if walk.dfa.is_special(next) && walk.dfa.is_match(next) && at + 1 > own[k] {
                    if k == 0 {
                        self.report(walk, next, at + 1, &mut found);
                    } else {
                        held[k].push((next, at + 1));
                    }
                }
            }
        }
        for k in 0..LANES {
            for &(sid, end) in &held[k] {
                self.report(walk, sid, end, &mut found);
            }
            walk.run(
                &text[..to[k]],
                from[k] + steps,
                state[k],
                own[k],
                &mut |sid, end| self.report(walk, sid, end, &mut found),
            );
        }
    }
}

impl Prefilter {
    /// The keywords that end at `end`, where the walk reached match state `sid`. Inlined: as a
    /// cold out-of-line call the lanes' loop measured slower (about 610 against 710 MB/s).
    #[inline(always)]
    fn report(
        &self,
        walk: &Walk,
        sid: StateID,
        end: usize,
        found: &mut impl FnMut(usize, usize, usize),
    ) {
        for i in 0..walk.dfa.match_len(sid) {
            let pattern = walk.dfa.match_pattern(sid, i);
            let len = walk.dfa.pattern_len(pattern);
            found(self.multi_ids[pattern.as_usize()], end - len, end);
        }
    }
}

impl Walk {
    /// Walks `text[at..]` from `state`, reporting matches that end after `own`.
    fn run(
        &self,
        text: &[u8],
        at: usize,
        mut state: StateID,
        own: usize,
        report: &mut impl FnMut(StateID, usize),
    ) {
        for (at, &byte) in text.iter().enumerate().skip(at) {
            state = self.dfa.next_state(Anchored::No, state, byte);
            if self.dfa.is_special(state) && self.dfa.is_match(state) && at >= own {
                report(state, at + 1);
            }
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

    /// Every (keyword, start, end) a byte-by-byte search finds, overlapping ones included.
    fn naive(keywords: &[&str], text: &str) -> Vec<(usize, usize, usize)> {
        let lower = text.to_ascii_lowercase();
        let mut out = Vec::new();
        for (id, keyword) in keywords.iter().enumerate() {
            for at in 0..lower.len() {
                if lower.as_bytes()[at..].starts_with(keyword.as_bytes()) {
                    out.push((id, at, at + keyword.len()));
                }
            }
        }
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

    #[test]
    fn keywords_across_lane_boundaries_are_found_once() {
        // Long enough for eight lanes; keywords at every offset around each lane boundary,
        // including the longest one, which needs the whole overlap.
        let keywords = [
            "sk-ant-",
            "key",
            "ghp_",
            "a-very-long-keyword-of-thirty-bytes",
            "q~",
        ];
        let unit = "xx sk-ant-Key ghp_ A-VERY-LONG-KEYWORD-OF-THIRTY-BYTES q~ ";
        for pad in 0..unit.len() {
            let text = format!("{}{}", "-".repeat(pad), unit.repeat(200));
            assert_eq!(hits(&keywords, &text), naive(&keywords, &text), "pad {pad}");
        }
        // And in order of their end, as one walk would report them.
        let text = unit.repeat(200);
        let owned: Vec<Vec<u8>> = keywords.iter().map(|k| k.as_bytes().to_vec()).collect();
        let mut ends = Vec::new();
        Prefilter::new(&owned)
            .expect("builds")
            .for_each(text.as_bytes(), |id, _, end| {
                if keywords[id].len() > 1 {
                    ends.push(end);
                }
            });
        assert!(ends.windows(2).all(|w| w[0] <= w[1]), "hits out of order");
    }
}
