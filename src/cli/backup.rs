//! `hookrelay backup PATH`: a consistent copy of the database, safe while
//! the daemon runs (README, "Backup and restore"). A running daemon takes
//! it on its writer connection, asked through its control socket
//! ([`control`]); without one, it is taken here.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{load_config, Cli, Failure};
use crate::{control, store};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The new file to write (it must not exist).
    path: PathBuf,
}

pub fn run(cli: &Cli, args: &Args) -> Result<(), Failure> {
    let config = load_config(cli)?;
    let started = Instant::now();
    if config.storage.url.is_some() {
        return Err(Failure::Usage(
            "backup copies a SQLite database; this one is PostgreSQL (storage.url): copy it with pg_dump".into(),
        ));
    }
    if args.path.exists() {
        return Err(Failure::Runtime(format!(
            "{} exists; a backup never overwrites, name a new file",
            args.path.display()
        )));
    }
    // Checked before the daemon spends minutes on a copy it could not hand over.
    let folder = match args.path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !folder.is_dir() {
        return Err(Failure::Runtime(format!(
            "{}: no such folder for the copy",
            folder.display()
        )));
    }
    let (report, how) = match control::ask_backup(&config.storage.path) {
        control::Asked::Done((report, copy)) => {
            move_into_place(&copy, &args.path)?;
            (report, "by the running daemon")
        }
        control::Asked::Failed(reason) => {
            return Err(Failure::Runtime(format!("the daemon's backup failed: {reason}")))
        }
        control::Asked::NoDaemon => (
            store::backup(&config.storage.path, &args.path)?,
            "with no daemon running",
        ),
    };
    println!(
        "backed up {} operation(s) to {} ({:.1} MB) in {:.1} s, {how}",
        report.operations,
        args.path.display(),
        report.bytes as f64 / 1_048_576.0,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Moves the daemon's copy from the database's folder to `target`: a hard
/// link on the same file system (refused if `target` exists), else a copy,
/// synced, owner-only; then the daemon's file goes.
fn move_into_place(copy: &Path, target: &Path) -> Result<(), Failure> {
    let failed = |err: std::io::Error| {
        Failure::Runtime(format!(
            "cannot move the copy {} to {}: {err} (the copy is left where it is)",
            copy.display(),
            target.display()
        ))
    };
    match std::fs::hard_link(copy, target) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Err(failed(err)),
        Err(_) => {
            let mut out = store::create_private(target)?;
            let mut source = std::fs::File::open(copy).map_err(failed)?;
            std::io::copy(&mut source, &mut out).map_err(failed)?;
            out.sync_all().map_err(failed)?;
        }
    }
    std::fs::remove_file(copy).map_err(failed)
}
