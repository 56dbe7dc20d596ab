//! The commands around the proxy: `ca init|path`, `env` for each shell, `exec`, and refusing a
//! bad configuration with exit code 2.

mod support;

use std::process::{Command, Output};

use support::guard::Guard;

fn egress_guard(args: &[&str]) -> Output {
    Command::new(Guard::binary())
        .args(args)
        .env_remove("EGRESS_GUARD_DATA_DIR")
        .output()
        .expect("run egress-guard")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

#[test]
fn ca_init_is_idempotent_and_keeps_the_key_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().expect("utf8");

    let missing = egress_guard(&["ca", "path", "--data-dir", data]);
    assert_eq!(missing.status.code(), Some(2), "no CA yet");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("ca init"));

    let first = egress_guard(&["ca", "init", "--data-dir", data]);
    assert!(first.status.success());
    let path = stdout(&first).trim().to_string();
    assert_eq!(path, data_dir.join("ca.pem").display().to_string());
    let pem = std::fs::read(&path).expect("CA written");
    assert!(pem.starts_with(b"-----BEGIN CERTIFICATE-----"));

    let again = egress_guard(&["ca", "init", "--data-dir", data]);
    assert!(again.status.success());
    assert_eq!(stdout(&again).trim(), path);
    assert_eq!(
        std::fs::read(&path).expect("still there"),
        pem,
        "not re-created"
    );

    let found = egress_guard(&["ca", "path", "--data-dir", data]);
    assert!(found.status.success());
    assert_eq!(stdout(&found).trim(), path);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = std::fs::metadata(data_dir.join("ca-key.pem")).expect("key file");
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn env_prints_the_proxy_and_trust_lines_for_each_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8");
    let ca = dir.path().join("ca.pem").display().to_string();
    let bundle = dir.path().join("ca-bundle.pem").display().to_string();

    let sh = egress_guard(&["env", "--data-dir", data]);
    assert!(sh.status.success());
    let sh = stdout(&sh);
    for line in [
        "export HTTPS_PROXY='http://127.0.0.1:8877'".to_string(),
        "export https_proxy='http://127.0.0.1:8877'".to_string(),
        "export NO_PROXY='localhost,127.0.0.1,::1'".to_string(),
        format!("export NODE_EXTRA_CA_CERTS='{ca}'"),
        format!("export SSL_CERT_FILE='{bundle}'"),
        format!("export REQUESTS_CA_BUNDLE='{bundle}'"),
        format!("export CURL_CA_BUNDLE='{bundle}'"),
    ] {
        assert!(sh.lines().any(|l| l == line), "missing {line} in\n{sh}");
    }

    // The bundle holds our CA (first) and is a PEM list.
    let our_ca = std::fs::read_to_string(&ca).expect("CA created by env");
    let bundle_text = std::fs::read_to_string(&bundle).expect("bundle written");
    assert!(
        bundle_text.starts_with(our_ca.trim()),
        "our CA leads the bundle"
    );

    let fish = stdout(&egress_guard(&[
        "env",
        "--shell",
        "fish",
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:9999",
    ]));
    assert!(
        fish.lines()
            .any(|l| l == "set -gx HTTPS_PROXY 'http://127.0.0.1:9999';"),
        "{fish}"
    );
    assert!(fish
        .lines()
        .any(|l| l == format!("set -gx SSL_CERT_FILE '{bundle}';")));

    let ps = stdout(&egress_guard(&[
        "env",
        "--shell",
        "powershell",
        "--data-dir",
        data,
    ]));
    assert!(
        ps.lines()
            .any(|l| l == "$env:HTTPS_PROXY = 'http://127.0.0.1:8877'"),
        "{ps}"
    );
    assert!(ps
        .lines()
        .any(|l| l == format!("$env:NODE_EXTRA_CA_CERTS = '{ca}'")));
}

#[test]
fn exec_start_runs_the_command_behind_a_proxy_and_returns_its_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8");
    let output = egress_guard(&[
        "exec",
        "--start",
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        "echo \"$HTTPS_PROXY $SSL_CERT_FILE\"; exit 7",
    ]);
    assert_eq!(output.status.code(), Some(7), "the command's own status");
    let printed = stdout(&output);
    let (proxy, bundle) = printed.trim().split_once(' ').expect("two values");
    assert!(proxy.starts_with("http://127.0.0.1:"), "{printed}");
    assert_ne!(proxy, "http://127.0.0.1:0", "the real bound port");
    assert_eq!(
        bundle,
        dir.path().join("ca-bundle.pem").display().to_string()
    );
}

#[test]
fn exec_without_a_running_proxy_says_how_to_start_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nothing listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let output = egress_guard(&[
        "exec",
        "--data-dir",
        dir.path().to_str().expect("utf8"),
        "--listen",
        &listen,
        "--",
        "true",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--start"));
}

#[test]
fn a_bad_configuration_exits_2_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("guard.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nlisen = \"typo\"\n").expect("write");
    let output = egress_guard(&[
        "run",
        "--config",
        config.to_str().expect("utf8"),
        "--data-dir",
        dir.path().to_str().expect("utf8"),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("lisen"));

    let output = egress_guard(&[
        "run",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().expect("utf8"),
        "--resolve",
        "api.openai.com=127.0.0.1",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("HOST:PORT=ADDR:PORT"));
}

#[tokio::test]
async fn a_config_file_sets_the_same_keys_and_flags_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("guard.toml");
    std::fs::write(
        &config,
        "admin = \"127.0.0.1:1\"\nmax-body = \"1KiB\"\nrefuse-others = true\n",
    )
    .expect("write");
    // --admin from the flag (Guard passes 127.0.0.1:0) wins over the file's port 1.
    let guard = Guard::start(&["--config".to_string(), config.display().to_string()]);
    assert_ne!(guard.admin.port(), 1);
    let response = guard
        .direct_client()
        .post(format!("{}/openai/v1/chat/completions", guard.proxy_url()))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 413, "max-body from the file");
}

#[test]
fn exec_points_the_command_at_a_running_proxy() {
    let guard = Guard::start(&[]);
    let data = guard.data_dir().to_str().expect("utf8").to_string();
    let listen = guard.proxy.to_string();
    let output = egress_guard(&[
        "exec",
        "--data-dir",
        &data,
        "--listen",
        &listen,
        "--",
        "sh",
        "-c",
        "echo \"$HTTPS_PROXY|$NODE_EXTRA_CA_CERTS|$NO_PROXY\"",
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stdout(&output).trim(),
        format!(
            "http://{listen}|{}|localhost,127.0.0.1,::1",
            guard.ca_path.display()
        )
    );
}
