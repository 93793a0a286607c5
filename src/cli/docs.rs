//! `hookrelay man` and `hookrelay completions SHELL`: the man page and the
//! shell completions, generated from the parser's own definitions. The .deb
//! installs both (packaging/build-deb).

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};

use super::{Cli, Failure};

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

/// Prints the man page (roff) for hookrelay(1) to stdout: one page for
/// every command, so nothing points at pages that are not shipped.
pub fn man() -> Result<(), Failure> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    commands(&command).to_writer(&mut page)?;
    closing_sections().to_writer(&mut page)?;
    std::io::stdout().write_all(&page)?;
    Ok(())
}

/// COMMANDS: each subcommand with what it does, its usage and options.
fn commands(command: &clap::Command) -> Roff {
    let mut roff = Roff::default();
    roff.control("SH", ["COMMANDS"]);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        roff.control("SS", [format!("hookrelay {}", sub.get_name()).as_str()]);
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            roff.text([roman(about.to_string())]);
        }
        let usage = sub.clone().render_usage().to_string();
        roff.control("PP", []).control("nf", []);
        roff.text([roman(usage.trim_start_matches("Usage: ").to_string())]);
        roff.control("fi", []);
        // Global options (-c) are the OPTIONS section's, above.
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set() && !["help", "version"].contains(&a.get_id().as_str()))
        {
            let values = arg
                .get_value_names()
                .map(|names| names.iter().map(|n| format!(" <{n}>")).collect::<String>())
                .unwrap_or_default();
            let name = match (arg.get_short(), arg.get_long()) {
                (Some(short), Some(long)) => format!("-{short}, --{long}{values}"),
                (None, Some(long)) => format!(
                    "--{long}{}",
                    if arg.get_action().takes_values() {
                        values
                    } else {
                        String::new()
                    }
                ),
                (Some(short), None) => format!("-{short}{values}"),
                (None, None) => format!("<{}>", arg.get_id().as_str().to_uppercase()),
            };
            roff.control("TP", []).text([bold(name)]);
            let mut help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(ToString::to_string)
                .unwrap_or_default();
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .map(|v| v.get_name().to_string())
                .collect();
            // The values, unless the help lists them all already.
            if !possible.is_empty() && !possible.iter().all(|v| help.contains(v.as_str())) {
                help.push_str(&format!(". One of: {}.", possible.join(", ")));
            }
            roff.text([roman(help)]);
        }
    }
    roff
}

/// FILES, ENVIRONMENT, EXIT STATUS, EXAMPLES and SEE ALSO.
fn closing_sections() -> Roff {
    let mut roff = Roff::default();
    let entries = |roff: &mut Roff, title: &str, items: &[(&str, &str)]| {
        roff.control("SH", [title]);
        for (name, text) in items {
            roff.control("TP", []).text([bold(*name)]).text([roman(*text)]);
        }
    };
    entries(
        &mut roff,
        "FILES",
        &[
            ("/etc/hookrelay/config.toml", "The config, unless -c or HOOKRELAY_CONFIG names another; `hookrelay check` validates it."),
            ("/var/lib/hookrelay/hookrelay.db", "The SQLite database ([storage] path), with its -wal and -shm files, the -search index file, the .sock control socket of the running daemon and its .lock file."),
        ],
    );
    entries(
        &mut roff,
        "ENVIRONMENT",
        &[
            ("HOOKRELAY_CONFIG", "The config's path when -c is not given."),
            ("RUST_LOG", "The log's level: error, warn, info (the default) or debug."),
        ],
    );
    entries(
        &mut roff,
        "EXIT STATUS",
        &[
            ("0", "Success; `check` also exits 0 with warnings."),
            (
                "1",
                "A runtime failure: the database, the network, a daemon that is not there.",
            ),
            ("2", "A usage or config error, said in one line on stderr."),
        ],
    );
    roff.control("SH", ["EXAMPLES"]).control("nf", []);
    for line in [
        "hookrelay check",
        "hookrelay try klientiks-plarin --from 12",
        "hookrelay history --status failed --since 24h",
        "hookrelay show 12",
        "hookrelay replay --status failed --processing klientiks-plarin",
        "hookrelay status --json",
        "hookrelay backup /var/backups/hookrelay.db",
    ] {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "systemctl(1), journalctl(1); the README shipped in /usr/share/doc/hookrelay, and README.ru.md, the step-by-step guide in Russian.",
    )]);
    roff
}

/// Prints the completion script for `args.shell` to stdout.
pub fn completions(args: &CompletionsArgs) -> Result<(), Failure> {
    clap_complete::generate(args.shell, &mut Cli::command(), "hookrelay", &mut std::io::stdout());
    Ok(())
}
