//! `egress-guard policy check|test` as a person fixing a policy uses them: errors name the file,
//! line and column; the policy's own cases say which passed.

use std::process::Command;

fn egress_guard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_egress-guard"))
        .args(args)
        .output()
        .expect("run egress-guard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_shipped_policy_checks_clean() {
    let (code, stdout, _) = egress_guard(&["policy", "check"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("policy `default` is valid"), "{stdout}");
    let (code, stdout, _) = egress_guard(&["policy", "check", "policies"]);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn a_mistake_is_reported_with_file_line_and_column_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        "name = \"mine\"\n\n[[rule]]\nname = \"secrets\"\ncategory = [\"secret\"]\naction = \"redcat\"\n",
    )
    .unwrap();
    let path = dir.path().display().to_string();
    let (code, _, stderr) = egress_guard(&["policy", "check", &path]);
    assert_eq!(code, 2);
    assert!(stderr.contains("policy.toml:6:10:"), "{stderr}");
    assert!(stderr.contains("redcat"), "{stderr}");
    let (code, _, _) = egress_guard(&["policy", "test", &path]);
    assert_eq!(code, 2);
}

#[test]
fn policy_test_runs_the_cases_and_names_each_failure() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        r#"
name = "mine"
[[destination]]
hosts = ["@ai"]
route = "inspect"
[[rule]]
name = "no-emails"
detector = ["pii.email"]
action = "block"
"#,
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(
        dir.path().join("tests/cases.toml"),
        r#"
[[case]]
name = "emails are blocked"
host = "api.openai.com"
path = "/v1/chat/completions"
body = '{"model":"gpt-4o","messages":[{"role":"user","content":"mail jane.doe@acme-corp.com"}]}'
expect = "block"
expect_rule = "no-emails"

[[case]]
name = "a wrong expectation"
host = "api.openai.com"
path = "/v1/chat/completions"
body = '{"model":"gpt-4o","messages":[{"role":"user","content":"mail jane.doe@acme-corp.com"}]}'
expect = "allow"
"#,
    )
    .unwrap();
    let path = dir.path().display().to_string();
    let (code, stdout, _) = egress_guard(&["policy", "test", &path]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("ok   emails are blocked"), "{stdout}");
    assert!(
        stdout.contains("FAIL a wrong expectation: expected allow, got block (rule no-emails"),
        "{stdout}"
    );
    assert!(
        stdout.contains("policy cases: 1 passed, 1 failed"),
        "{stdout}"
    );
}
