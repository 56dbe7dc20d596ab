//! Every shipped rule keeps its own promises: each `match` case is found by that rule and each
//! `no_match` case is not, through the whole scanner (prefilter, folding, checks).

use egress_guard::detect::{Category, Scanner};

#[test]
fn every_shipped_rule_passes_its_own_cases() {
    let scanner = Scanner::builtin().expect("the shipped packs load");
    assert!(!scanner.rules().is_empty(), "no rule packs embedded");
    let failures = scanner.check_rule_cases();
    assert!(
        failures.is_empty(),
        "{} failing rule case(s):\n{}",
        failures.len(),
        failures
            .iter()
            .map(|f| format!("  {f}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn shipped_rule_ids_are_unique_and_match_their_category() {
    let scanner = Scanner::builtin().expect("the shipped packs load");
    let mut ids: Vec<_> = scanner.rules().iter().map(|r| r.spec.id.as_str()).collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "duplicate rule ids across packs");
    for rule in scanner.rules() {
        let prefix = match rule.spec.category {
            Category::Secret => "secret.",
            Category::Pii => "pii.",
            Category::Custom => "custom.",
        };
        assert!(rule.spec.id.starts_with(prefix), "{}", rule.spec.id);
    }
}

#[test]
fn a_malformed_pack_names_file_and_line() {
    let pack = "[[rule]]\nid = \"secret.broken\"\nname = \"x\"\ncategory = \"secret\"\n\
                severity = \"high\"\nkeywords = [\"brk_\"]\npattern = '''(brk_[a-z'''\n";
    let error = Scanner::from_packs(&[("broken.toml", pack)])
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("broken.toml:1:"), "{error}");
    assert!(error.contains("secret.broken"), "{error}");

    let pack = "[[rule]]\nid = \"secret.ok\"\nname = \"x\"\ncategory = \"secret\"\n\n\
                severity = \"hgih\"\nkeywords = [\"a\"]\npattern = 'a'\n";
    let error = Scanner::from_packs(&[("typo.toml", pack)])
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("typo.toml:6:"), "{error}");

    let pack = "[[rule]]\nid = \"secret.nokw\"\nname = \"x\"\ncategory = \"secret\"\n\
                severity = \"high\"\npattern = 'a'\n";
    let error = Scanner::from_packs(&[("nokw.toml", pack)])
        .unwrap_err()
        .to_string();
    assert!(error.contains("keywords"), "{error}");
}

#[test]
fn a_rule_whose_cases_are_wrong_is_reported_by_id() {
    let pack = r#"
[[rule]]
id = "secret.test_widget_key"
name = "Widget key"
category = "secret"
severity = "high"
keywords = ["wdg_"]
pattern = '''\b(wdg_[A-Za-z0-9]{24})\b'''

[rule.tests]
match = ["key wdg_Q8rT2mX9vL4pZ7nB3kW6yH1c", "wdg_short"]
no_match = ["wdg_A8rT2mX9vL4pZ7nB3kW6yH1c"]
"#;
    let scanner = Scanner::from_packs(&[("widget.toml", pack)]).expect("pack loads");
    let failures = scanner.check_rule_cases();
    let cases: Vec<_> = failures
        .iter()
        .map(|f| (f.rule.as_str(), f.case.as_str()))
        .collect();
    assert_eq!(
        cases,
        [
            ("secret.test_widget_key", "wdg_short"),
            ("secret.test_widget_key", "wdg_A8rT2mX9vL4pZ7nB3kW6yH1c")
        ]
    );
    assert!(
        failures[0].origin.starts_with("widget.toml:2"),
        "{}",
        failures[0].origin
    );
}
