//! `egress-guard scan`, `policy test`, `dict build` and `rules import-gitleaks`, run as a user
//! runs them: the real binary, real files, exit codes and output checked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_egress-guard"))
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "egress-guard-scan-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("parent dir");
        }
        std::fs::write(&path, contents).expect("write file");
        path
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run egress-guard")
}

fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

const EMAIL: &str = "jane.doe@acme-corp.com";

#[test]
fn json_findings_carry_exactly_the_contract_fields_and_never_the_value() {
    let dir = TempDir::new();
    let file = dir.write("notes.txt", format!("hello\nmail {EMAIL} now\n"));
    let output = run(bin().args(["scan", "--format", "json"]).arg(&file));
    assert_eq!(output.status.code(), Some(1), "findings exit 1");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains(EMAIL), "value printed: {stdout}");
    let findings = json_lines(&output);
    assert_eq!(findings.len(), 1, "{stdout}");
    let finding = findings[0].as_object().expect("object");
    let keys: Vec<_> = finding.keys().map(String::as_str).collect();
    let mut expected = [
        "path", "detector", "category", "severity", "start", "end", "line", "action",
    ];
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(keys_sorted, expected);
    assert_eq!(finding["path"], file.display().to_string());
    assert_eq!(finding["detector"], "pii.email");
    assert_eq!(finding["category"], "pii");
    assert_eq!(finding["severity"], "medium");
    assert_eq!(finding["line"], 2);
    assert_eq!(finding["action"], "pseudonymize");
    let start = finding["start"].as_u64().expect("start") as usize;
    let end = finding["end"].as_u64().expect("end") as usize;
    let text = std::fs::read(&file).expect("read back");
    assert_eq!(&text[start..end], EMAIL.as_bytes());
}

#[test]
fn a_clean_tree_exits_zero_with_no_output() {
    let dir = TempDir::new();
    dir.write("src/main.rs", "fn main() { println!(\"hi\"); }\n");
    let output = run(bin().args(["scan", "--format", "json"]).arg(dir.path()));
    assert_eq!(output.status.code(), Some(0));
    assert!(output.stdout.is_empty());
}

#[test]
fn stdin_is_scanned_when_the_path_is_a_dash() {
    let mut child = bin()
        .args(["scan", "--format", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("to: {EMAIL}").as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(1));
    let findings = json_lines(&output);
    assert_eq!(findings[0]["path"], "-");
    assert_eq!(findings[0]["start"], 4);
}

#[test]
fn gitignored_and_binary_files_are_skipped_hidden_files_are_not() {
    let dir = TempDir::new();
    dir.write(".gitignore", "build/\n");
    dir.write("build/out.txt", EMAIL);
    dir.write(
        "image.bin",
        [b"\x00\x01PNG".as_slice(), EMAIL.as_bytes()].concat(),
    );
    dir.write(".env", format!("OWNER={EMAIL}\n"));
    let output = run(bin().args(["scan", "--format", "json"]).arg(dir.path()));
    assert_eq!(output.status.code(), Some(1));
    let paths: Vec<_> = json_lines(&output)
        .iter()
        .map(|f| f["path"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(paths[0].ends_with(".env"), "{paths:?}");
}

#[test]
fn a_missing_path_is_an_error() {
    let dir = TempDir::new();
    let output = run(bin().arg("scan").arg(dir.path().join("missing.txt")));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.txt"));
}

#[test]
fn text_format_masks_the_value() {
    let dir = TempDir::new();
    let file = dir.write("a.txt", EMAIL);
    let output = run(bin().arg("scan").arg(&file));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("pii.email"), "{stdout}");
    assert!(stdout.contains("jane***"), "{stdout}");
    assert!(!stdout.contains(EMAIL), "{stdout}");
}

const WIDGET_RULE: &str = r#"
[[rule]]
id = "secret.widget_key"
name = "Widget key"
category = "secret"
severity = "critical"
keywords = ["wdg_"]
pattern = '''\b(wdg_[A-Za-z0-9]{24})\b'''

[rule.tests]
match = ["key wdg_Q8rT2mX9vL4pZ7nB3kW6yH1c"]
no_match = ["wdg_short"]
"#;

#[test]
fn a_policy_directory_adds_rules_dictionaries_and_exact_data() {
    let dir = TempDir::new();
    dir.write("policy/rules/widget.toml", WIDGET_RULE);
    dir.write(
        "policy/dictionaries/projects.txt",
        "# code names\nBlue Heron\nOsprey\n",
    );
    dir.write(
        "policy/dictionaries/projects.toml",
        "id = \"custom.project_names\"\nseverity = \"high\"\n",
    );
    let csv = dir.write(
        "customers.csv",
        "name,email,phone\nMarguerite Okonkwo-Lind,m.okonkwo@fabrikam.net,+44 7700 900417\n",
    );
    let edm = dir.path().join("policy/dictionaries/customers.edm");
    let built = run(bin().args(["dict", "build"]).arg(&csv).arg("-o").arg(&edm));
    assert_eq!(built.status.code(), Some(0), "{built:?}");
    let stored = std::fs::read_to_string(&edm).expect("edm written");
    for plain in ["Marguerite", "marguerite", "okonkwo", "fabrikam", "+44"] {
        assert!(!stored.contains(plain), "plain value `{plain}` stored");
    }

    let input = dir.write(
        "prompt.txt",
        "Ship Osprey with wdg_Q8rT2mX9vL4pZ7nB3kW6yH1c; the customer is MARGUERITE okonkwo lind.\n\
         An osprey flew by. Ospreys too.\n",
    );
    let output = run(bin()
        .args(["scan", "--format", "json", "--policy"])
        .arg(dir.path().join("policy"))
        .arg(&input));
    assert_eq!(output.status.code(), Some(1));
    let detectors: Vec<_> = json_lines(&output)
        .iter()
        .map(|f| {
            (
                f["detector"].as_str().unwrap_or_default().to_string(),
                f["action"].clone(),
            )
        })
        .collect();
    assert_eq!(
        detectors,
        [
            ("custom.project_names".to_string(), "pseudonymize".into()),
            ("secret.widget_key".to_string(), "redact".into()),
            ("custom.customers".to_string(), "pseudonymize".into()),
            ("custom.project_names".to_string(), "pseudonymize".into()),
        ]
    );
}

#[test]
fn policy_test_names_the_failing_rule_and_exits_one() {
    let dir = TempDir::new();
    let broken = WIDGET_RULE.replace(
        "no_match = [\"wdg_short\"]",
        "no_match = [\"x wdg_A8rT2mX9vL4pZ7nB3kW6yH1c\"]",
    );
    dir.write("policy/rules/widget.toml", broken);
    let output = run(bin()
        .args(["policy", "test"])
        .arg(dir.path().join("policy")));
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAIL secret.widget_key"), "{stdout}");

    dir.write("policy/rules/widget.toml", WIDGET_RULE);
    let output = run(bin()
        .args(["policy", "test"])
        .arg(dir.path().join("policy")));
    assert_eq!(output.status.code(), Some(0), "{output:?}");

    dir.write("policy/rules/widget.toml", "[[rule]]\nid = 3\n");
    let output = run(bin()
        .args(["policy", "test"])
        .arg(dir.path().join("policy")));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("widget.toml:2"),
        "{output:?}"
    );
}

/// A gitleaks-format config written for this test: one convertible rule with an allowlist, one
/// with look-around, one path-only.
const GITLEAKS_CONFIG: &str = r#"
title = "team rules"

[allowlist]
stopwords = ["sandbox"]

[[rules]]
id = "acme-deploy-token"
description = "Acme deploy token"
regex = '''\b(adt_[a-z0-9]{32})\b'''
secretGroup = 1
entropy = 3.0
keywords = ["adt_"]
[rules.allowlist]
regexes = ['''^adt_0+$''']

[[rules]]
id = "lookbehind-key"
regex = '''(?<=key=)[A-Z0-9]{20}'''
keywords = ["key="]

[[rules]]
id = "pem-files"
path = '''\.pem$'''
"#;

#[test]
fn import_gitleaks_converts_what_it_can_and_lists_the_rest() {
    let dir = TempDir::new();
    let config = dir.write("team.toml", GITLEAKS_CONFIG);
    let rules_dir = dir.path().join("policy/rules");
    let output = run(bin()
        .args(["rules", "import-gitleaks"])
        .arg(&config)
        .arg("-o")
        .arg(&rules_dir));
    assert_eq!(output.status.code(), Some(1), "partial conversion exits 1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("lookbehind-key") && stderr.contains("look-around"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pem-files") && stderr.contains("path-only"),
        "{stderr}"
    );
    assert!(stderr.contains("converted 1 of 3"), "{stderr}");

    let pack = std::fs::read_to_string(rules_dir.join("team.toml")).expect("pack written");
    assert!(pack.contains("secret.acme_deploy_token"), "{pack}");
    let input = dir.write(
        "deploy.sh",
        "TOKEN=adt_k3j9x2m8q7w1z5r4t6y0u2i8o3p9a1s7\nT2=adt_sandbox0k3j9x2m8q7w1z5r4t6y0u2ab\n",
    );
    let scan = run(bin()
        .args(["scan", "--format", "json", "--policy"])
        .arg(dir.path().join("policy"))
        .arg(&input));
    let found = json_lines(&scan);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["detector"], "secret.acme_deploy_token");
    assert_eq!(found[0]["line"], 1);

    let garbage = dir.write("bad.toml", "rules = 3");
    let output = run(bin().args(["rules", "import-gitleaks"]).arg(&garbage));
    assert_eq!(output.status.code(), Some(2));
}
