//! Embeds every `policies/rules/*.toml` rule pack in the binary, so that adding a pack is a data
//! change only: this script writes a table of `(file name, include_str!(...))` that
//! `detect::rules` reads at start-up.

use std::env;
use std::fs;
use std::path::Path;

fn main() {
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("policies").join("rules");
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut packs: Vec<_> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
                .collect()
        })
        .unwrap_or_default();
    // Sorted so the embedded order (and so the rule order) does not depend on the file system.
    packs.sort();

    let mut table = String::from("&[\n");
    for path in &packs {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        table.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    table.push(']');

    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("builtin_rules.rs");
    fs::write(out, table).expect("OUT_DIR is writable");
}
