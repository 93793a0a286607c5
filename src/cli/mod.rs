//! The command line: parsing with clap, one file per subcommand, and exit
//! codes (0 success, 1 runtime failure, 2 usage or config error).

mod amocrm;
mod backup;
mod cancel;
mod check;
mod docs;
mod dry_run;
mod export;
mod fields;
mod follow;
mod history;
mod klientiks;
mod migrate_store;
mod notify_test;
mod prune;
mod receiver;
mod replay;
mod requeue;
mod rows;
mod run;
mod show;
mod status;
mod token;
mod try_send;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub(crate) use crate::clock::rfc3339;
use crate::config::{Config, ConfigError, DEFAULT_PATH};
use crate::store::StoreError;

/// hookrelay: webhooks in, stored in SQLite, forwarded with retries.
#[derive(Parser, Debug)]
#[command(version, about, propagate_version = true)]
pub struct Cli {
    /// The config file.
    #[arg(short, long, global = true, env = "HOOKRELAY_CONFIG", default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon (systemd's ExecStart).
    Run,
    /// Validate the config and print each webhook address.
    Check,
    /// Print a new random token for a processing.
    Token,
    /// List received operations, newest first.
    History(history::Args),
    /// Show one operation: fields, warnings, deliveries and every attempt.
    Show(show::Args),
    /// Show each processing and receiver now: state, backlog, last success and error.
    Status(status::Args),
    /// Show the fields of the latest request to a processing.
    Fields(fields::Args),
    /// Render a processing's actions for given fields; print, send nothing.
    Try(dry_run::Args),
    /// Queue fresh deliveries for recorded operations.
    Replay(replay::Args),
    /// Render waiting deliveries again from the current config (after fixing an action).
    Requeue(requeue::Args),
    /// Cancel waiting deliveries of operations, or to a receiver: never sent.
    Cancel(cancel::Args),
    /// Act on a receiver: `receiver reset URL` closes its circuit breaker by hand.
    Receiver(receiver::Args),
    /// Sign an amocrm action's OAuth2 integration in: `amocrm authorize PROCESSING ACTION CODE`.
    Amocrm(amocrm::Args),
    /// Print the address to paste into Klientiks for an event.
    Klientiks(klientiks::Args),
    /// Send a test message through every notification channel.
    NotifyTest,
    /// Delete finished operations older than storage.keep_days.
    Prune(prune::Args),
    /// Stream operations with their fields and outcome as JSON lines or CSV.
    Export(export::Args),
    /// Write a consistent copy of the database to a new file, safe while the daemon runs.
    Backup(backup::Args),
    /// Copy the SQLite history into an empty PostgreSQL database (the daemon stopped).
    MigrateStore(migrate_store::Args),
    /// Print the man page (roff): `hookrelay man | man -l -`.
    Man,
    /// Print the shell completion script for a shell.
    Completions(docs::CompletionsArgs),
}

/// Asks a daemon running on the SQLite file to do it (`ask`), since its
/// writer must not wait behind a connection of ours; with none (or on
/// PostgreSQL) does it `here`. The result, and how, for the command's
/// last line: ", by the running daemon" or "".
fn through_daemon<T>(
    config: &Config,
    what: &str,
    ask: impl FnOnce(&std::path::Path) -> crate::control::Asked<T>,
    here: impl FnOnce() -> Result<T, Failure>,
) -> Result<(T, &'static str), Failure> {
    use crate::control::Asked;
    let asked = match config.storage.location().file() {
        Some(path) => ask(path),
        None => Asked::NoDaemon,
    };
    match asked {
        Asked::Done(done) => Ok((done, ", by the running daemon")),
        Asked::Failed(reason) => Err(Failure::Runtime(format!("the daemon's {what} failed: {reason}"))),
        Asked::NoDaemon => Ok((here()?, "")),
    }
}

/// The receiver (`scheme://host:port/`) of a URL typed on the command line.
fn receiver_target(url: &str) -> Result<String, Failure> {
    if url::Url::parse(url).map_or(true, |u| !u.has_host()) {
        return Err(Failure::Usage(format!(
            "`{url}` is not a URL with a host, such as https://plarin.example"
        )));
    }
    Ok(crate::model::target_of(url))
}

/// The recorded operations with these ids; ids with none are left out.
fn operations(reader: &crate::store::Reader, ids: &[i64]) -> Result<Vec<crate::store::OperationView>, Failure> {
    let mut operations = Vec::with_capacity(ids.len());
    for &id in ids {
        operations.extend(reader.operation(id)?);
    }
    Ok(operations)
}

/// Why a command failed, which decides the exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad usage or a bad config: exit 2.
    Usage(String),
    /// Something went wrong at run time: exit 1.
    Runtime(String),
}

impl From<ConfigError> for Failure {
    fn from(err: ConfigError) -> Self {
        Failure::Usage(err.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        Failure::Runtime(err.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Failure::Runtime(err.to_string())
    }
}

/// Parses the command line, runs the command, and maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run) {
        default_sigpipe();
    }
    init_logging();
    let result = match &cli.command {
        Command::Run => run::run(&cli),
        Command::Check => check::run(&cli),
        Command::Token => token::run(),
        Command::History(args) => history::run(&cli, args),
        Command::Show(args) => show::run(&cli, args),
        Command::Status(args) => status::run(&cli, args),
        Command::Fields(args) => fields::run(&cli, args),
        Command::Try(args) => dry_run::run(&cli, args),
        Command::Replay(args) => replay::run(&cli, args),
        Command::Receiver(args) => receiver::run(&cli, args),
        Command::Cancel(args) => cancel::run(&cli, args),
        Command::Requeue(args) => requeue::run(&cli, args),
        Command::Amocrm(args) => amocrm::run(&cli, args),
        Command::Klientiks(args) => klientiks::run(&cli, args),
        Command::NotifyTest => notify_test::run(&cli),
        Command::Prune(args) => prune::run(&cli, args),
        Command::Export(args) => export::run(&cli, args),
        Command::Backup(args) => backup::run(&cli, args),
        Command::MigrateStore(args) => migrate_store::run(&cli, args),
        Command::Man => docs::man(),
        Command::Completions(args) => docs::completions(args),
    };
    // Printed once, here; commands do not also log their fatal error.
    let (message, code) = match result {
        Ok(()) => return ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => (message, 2),
        Err(Failure::Runtime(message)) => (message, 1),
    };
    let priority = if under_journald() { "<3>" } else { "" };
    eprintln!("{priority}hookrelay: {message}");
    ExitCode::from(code)
}

/// Rust ignores SIGPIPE, so `hookrelay history | head` would panic on
/// "Broken pipe" once head exits; a command-line tool should just stop, as
/// `ls | head` does. Not for the daemon, whose sockets report EPIPE.
fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to the default, before any
    // thread is started, touches no Rust state.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Whether stderr goes to the journal (systemd sets JOURNAL_STREAM for it).
fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// The syslog priority journald reads from a `<N>` line prefix, so that
/// `journalctl -p err` and `-p warning` find hookrelay's lines.
fn syslog_priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

fn init_logging() {
    use std::io::Write;
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if under_journald() {
        // journald stamps each line itself and files it by the prefix.
        builder.format(|buf, record| {
            writeln!(
                buf,
                "<{}>{}: {}",
                syslog_priority(record.level()),
                record.level(),
                record.args()
            )
        });
    } else if !std::io::stderr().is_terminal() {
        builder.format_timestamp_millis();
    }
    builder.init();
}

/// The config `-c`, `HOOKRELAY_CONFIG` or the default path names; a file
/// that is not there says how to name another.
fn load_config(cli: &Cli) -> Result<Config, Failure> {
    match Config::load(&cli.config) {
        Err(crate::config::ConfigError::Read { path, source }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(Failure::Usage(format!(
                "no config at {}: name one with -c PATH or the HOOKRELAY_CONFIG environment variable \
                 (config.example.toml is a start)",
                path.display()
            )))
        }
        loaded => Ok(loaded?),
    }
}

/// The processing called `name`, or a usage error listing the known ones.
fn find_processing<'a>(config: &'a Config, name: &str) -> Result<&'a crate::config::Processing, Failure> {
    config.processing(name).ok_or_else(|| {
        let known: Vec<_> = config.processings.iter().map(|p| p.name.as_str()).collect();
        Failure::Usage(format!(
            "no processing `{name}` in the config (there are: {})",
            known.join(", ")
        ))
    })
}

/// Prints fields as an aligned name/value table.
fn print_fields(fields: &std::collections::BTreeMap<String, String>) {
    let width = fields.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    for (name, value) in fields {
        println!("  {name:<width$}  {value}");
    }
    if fields.is_empty() {
        println!("  (none)");
    }
}
