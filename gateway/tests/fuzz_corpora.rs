//! The fuzz targets' seeds and every crash input the fuzzers ever found, replayed through the same
//! entry points (`gateway::fuzzing`) on every `cargo test`, on the stable toolchain. A regression
//! is a file under `fuzz/regressions/TARGET/`; how to run the fuzzers themselves: README,
//! "Fuzzing".

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gateway::fuzzing::{run, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs one input, turning a panic into a message that names the file.
fn replay(target: &str, file: &Path) -> Result<(), String> {
    let data = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    std::panic::catch_unwind(|| run(target, &data))
        .map_err(|_| format!("{target}: {} panics", file.display()))
}

#[test]
fn every_fuzz_target_has_a_libfuzzer_binary_and_seeds() {
    let binaries: BTreeSet<String> = files_in(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    let targets: BTreeSet<String> = TARGETS.iter().map(|t| t.name.to_owned()).collect();
    assert_eq!(
        binaries, targets,
        "fuzz/fuzz_targets/ and gateway::fuzzing::TARGETS differ"
    );
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for target in &targets {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has no [[bin]] for {target}"
        );
        assert!(
            !files_in(&fuzz_dir().join("seeds").join(target)).is_empty(),
            "fuzz/seeds/{target} is empty: run `cargo xtask fuzz seed`"
        );
    }
}

#[test]
fn every_seed_and_every_past_crash_runs_clean() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for target in TARGETS {
        for folder in ["seeds", "regressions"] {
            for file in files_in(&fuzz_dir().join(folder).join(target.name)) {
                replayed += 1;
                if let Err(failure) = replay(target.name, &file) {
                    failures.push(failure);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        replayed >= TARGETS.len(),
        "only {replayed} inputs were replayed"
    );
}

/// A seed set that only reaches rejections would leave the fuzzer to find the interesting inputs
/// alone; the fixtures hold real, valid values for these parsers.
#[test]
fn seeds_reach_the_success_paths_not_only_the_errors() {
    let seeds = |target: &str| -> Vec<Vec<u8>> {
        files_in(&fuzz_dir().join("seeds").join(target))
            .iter()
            .map(|f| std::fs::read(f).unwrap())
            .collect()
    };

    let pfx = seeds("pfx");
    assert!(
        pfx.iter().any(|s| s[0] == 0),
        "no pfx seed is the PFX Key Vault recorded"
    );
    let decodable = pfx
        .iter()
        .filter(|s| {
            let password = (s[0] == 1).then_some("test-password");
            cert_bundle::CertificateBundle::from_pfx(&s[1..], password).is_ok()
        })
        .count();
    assert!(decodable >= 20, "only {decodable} pfx seeds decode");

    let configs = seeds("config");
    let valid = configs
        .iter()
        .filter(|c| {
            let text = std::str::from_utf8(c).unwrap();
            gateway::config::Config::parse(Path::new("/etc/gateway.toml"), text).is_ok()
        })
        .count();
    assert!(
        valid >= 2,
        "only {valid} config seeds (README configs) parse"
    );

    let identifiers = seeds("identifier");
    let parsed = identifiers
        .iter()
        .filter(|s| {
            let text = std::str::from_utf8(s).unwrap();
            vault_client::SecretId::parse(text).is_ok()
        })
        .count();
    // The recorded URIs are mostly operations (`…/create`, `…/pending`) on the sanitized host
    // `keyvault_name`, which no real vault name can be: refusals worth fuzzing from.
    assert!(
        parsed >= 5,
        "only {parsed} of {} identifier seeds parse",
        identifiers.len()
    );
}
