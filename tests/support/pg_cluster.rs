//! A PostgreSQL cluster of a test's own, for the drills that stop and
//! start the server: `initdb` in a temporary folder, as the unprivileged
//! `postgres` user when the tests run as root, on a free loopback port.

use std::path::PathBuf;
use std::process::Command;

/// A running throwaway cluster, stopped and removed when dropped.
pub struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

/// Runs a PostgreSQL program as the user that owns the cluster.
fn as_owner(program: PathBuf) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

impl Cluster {
    /// A new cluster with a `hookrelay` database, or None (saying so)
    /// without PostgreSQL's programs (HOOKRELAY_PG_BIN, set by scripts/test).
    pub fn start() -> Option<Cluster> {
        let Some(bin) = std::env::var_os("HOOKRELAY_PG_BIN").map(PathBuf::from) else {
            super::skip_outside_ci("HOOKRELAY_PG_BIN is not set: run the tests with scripts/test");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let status = Command::new("chown").arg("postgres:").arg(dir.path()).status().unwrap();
            assert!(status.success());
        }
        let status = as_owner(bin.join("initdb"))
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "-D"])
            .arg(dir.path().join("data"))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "initdb failed");
        let cluster = Cluster {
            bin,
            dir,
            port: super::free_port(),
        };
        cluster.up();
        let mut admin = postgres::Client::connect(&cluster.url("postgres"), postgres::NoTls).unwrap();
        admin.batch_execute("CREATE DATABASE hookrelay").unwrap();
        Some(cluster)
    }

    /// The URL of database `name` on this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        as_owner(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// Starts the server and waits until it takes connections.
    pub fn up(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=on -c synchronous_commit=on",
            self.port,
            self.dir.path().display()
        );
        assert!(
            self.pg_ctl(&["-w", "-o", &options, "start"]),
            "PostgreSQL did not start"
        );
    }

    /// Stops the server at once, as a crash or a forced restart would
    /// (its clients' sessions break).
    pub fn down(&self) {
        assert!(
            self.pg_ctl(&["-w", "-m", "immediate", "stop"]),
            "PostgreSQL did not stop"
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}
