//! Per-rule cost profile: how long each rule's regex, the prefilter and the blob sweep take on
//! the bench inputs. A diagnostic for rule authors, not a criterion bench:
//! `cargo bench --bench detect_profile` prints the slowest rules first.

use std::time::Instant;

use egress_guard::detect::normalize::find_blobs;
use egress_guard::detect::Scanner;

#[path = "detect.rs"]
#[allow(dead_code)]
mod inputs;

fn main() {
    let scanner = Scanner::builtin().expect("shipped rules load");
    for (name, input) in [
        ("code", inputs::code_corpus()),
        ("prose", inputs::prose_corpus()),
    ] {
        let mb = input.len() as f64 / 1e6;
        let mut costs: Vec<(f64, String, usize)> = scanner
            .rules()
            .iter()
            .map(|rule| {
                let t = Instant::now();
                let n = rule.regex().map_or(0, |r| r.find_iter(&input).count());
                (t.elapsed().as_secs_f64(), rule.spec.id.clone(), n)
            })
            .collect();
        costs.sort_by(|a, b| b.0.total_cmp(&a.0));
        println!("== {name} ({mb:.1} MB)");
        scanner.scan(&input);
        let t = Instant::now();
        let findings = scanner.scan(&input).len();
        println!(
            "  whole scan: {:.1} MB/s, {findings} findings",
            mb / t.elapsed().as_secs_f64()
        );
        for (pack, text) in egress_guard::detect::rules::BUILTIN_PACKS {
            let one = Scanner::from_packs(&[(pack, text)]).expect("pack loads");
            one.scan(&input);
            let t = Instant::now();
            one.scan(&input);
            println!("  pack {pack}: {:.1} MB/s", mb / t.elapsed().as_secs_f64());
        }
        let keywords: Vec<Vec<u8>> = scanner
            .rules()
            .iter()
            .flat_map(|r| r.keywords.clone())
            .collect();
        for kind in [
            aho_corasick::AhoCorasickKind::DFA,
            aho_corasick::AhoCorasickKind::ContiguousNFA,
        ] {
            let ac = aho_corasick::AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .kind(Some(kind))
                .build(&keywords)
                .expect("automaton");
            let t = Instant::now();
            let hits = ac.find_overlapping_iter(&input).count();
            println!(
                "  keyword prefilter {kind:?}: {:.1} MB/s, {hits} hits",
                mb / t.elapsed().as_secs_f64()
            );
            let t = Instant::now();
            let hits = ac.find_iter(&input).count();
            println!(
                "  keyword find_iter {kind:?}: {:.1} MB/s, {hits} hits",
                mb / t.elapsed().as_secs_f64()
            );
        }
        let mut unique = keywords.clone();
        unique.sort();
        unique.dedup();
        let prefilter = egress_guard::detect::prefilter::Prefilter::new(&unique);
        // Best of nine: this one is compared across changes, on a machine whose speed swings.
        let mut best = f64::MAX;
        let mut hits = 0;
        for _ in 0..9 {
            let t = Instant::now();
            hits = 0;
            prefilter.for_each(&input, |_, _, _| hits += 1);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "  keyword prefilter (shipped, best of 9): {:.1} MB/s, {hits} hits",
            mb / best
        );
        let ac = aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&keywords)
            .expect("automaton");
        let t = Instant::now();
        let hits = ac.find_iter(&input).count();
        println!(
            "  keyword find_iter DFA leftmost-longest: {:.1} MB/s, {hits} hits",
            mb / t.elapsed().as_secs_f64()
        );
        let mut digit_hits = 0;
        for rule in scanner.rules() {
            if let Some(n) = rule.spec.digits {
                let run = regex::bytes::Regex::new(&format!(r"\d(?:[ .-]?\d){{{},}}", n - 1))
                    .expect("digit run regex");
                digit_hits += run.find_iter(&input).count();
            }
        }
        println!("  digit-run hits (all digit rules): {digit_hits}");
        let t = Instant::now();
        let n = memchr::memchr_iter(b'\x01', &input).count();
        println!(
            "  memchr (machine speed reference): {:.1} MB/s ({n})",
            mb / t.elapsed().as_secs_f64()
        );
        let empty = Scanner::from_packs(&[]).expect("no rules");
        let t = Instant::now();
        empty.scan(&input);
        println!(
            "  no rules (fold + blobs): {:.1} MB/s",
            mb / t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let mut budget = 8 << 20;
        let blobs = find_blobs(&input, &mut budget).len();
        println!(
            "  blob sweep: {:.1} MB/s, {blobs} blobs",
            mb / t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        let ascii = input.is_ascii();
        println!(
            "  is_ascii: {:.1} MB/s ({ascii})",
            mb / t.elapsed().as_secs_f64()
        );
        for (secs, id, n) in costs.iter().take(12) {
            println!("  {:>8.1} MB/s {id} ({n} matches)", mb / secs);
        }
        let lower = input.to_ascii_lowercase();
        for rule in scanner.rules() {
            let max_match = rule.shape().map(|shape| shape.max_match);
            let unbounded = max_match.is_none_or(|m| m > 4096);
            let triggered = rule
                .keywords
                .iter()
                .filter(|k| lower.windows(k.len()).any(|w| w == k.as_slice()))
                .count();
            if triggered > 0 && unbounded {
                println!(
                    "  whole-input rule triggered: {} (max match {:?})",
                    rule.spec.id, max_match
                );
            }
        }
    }
}
