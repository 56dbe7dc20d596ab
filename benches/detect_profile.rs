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
            let unbounded = rule.max_match.is_none_or(|m| m > 4096);
            let triggered = rule
                .keywords
                .iter()
                .filter(|k| lower.windows(k.len()).any(|w| w == k.as_slice()))
                .count();
            if triggered > 0 && unbounded {
                println!(
                    "  whole-input rule triggered: {} (max match {:?})",
                    rule.spec.id, rule.max_match
                );
            }
        }
    }
}
