//! Packaging checks that need no package build: the systemd unit's sandbox.

use std::path::Path;
use std::process::Command;

use crate::support::skip_outside_ci;

/// systemd's own offline review rates the unit's exposure 2.0 or lower.
#[test]
fn systemd_unit_exposure_is_at_most_2() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/hookrelay.service");
    let Ok(out) = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
    else {
        return skip_outside_ci("systemd-analyze is not installed");
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|line| line.split("Overall exposure level for hookrelay.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no overall exposure level in:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(score <= 2.0, "exposure {score}:\n{text}");
}

/// The .deb ships both READMEs (the Russian one is the salon's guide), and
/// every file it takes from the source tree exists.
#[test]
fn the_deb_ships_both_readmes() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(manifest.join("Cargo.toml")).unwrap();
    let cargo: toml::Table = toml::from_str(&text).unwrap();
    let assets = cargo["package"]["metadata"]["deb"]["assets"].as_array().unwrap();
    let sources: Vec<&str> = assets.iter().map(|a| a[0].as_str().unwrap()).collect();
    for readme in ["README.md", "README.ru.md"] {
        assert!(sources.contains(&readme), "{readme} is not shipped: {sources:?}");
    }
    for source in sources.iter().filter(|s| !s.starts_with("target/")) {
        assert!(manifest.join(source).exists(), "{source} does not exist");
    }
}
