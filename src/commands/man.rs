//! `retouchd man`: one complete manual page, retouchd(1), made from the command-line definition
//! (synopsis, options, and a section per command) plus what the definition cannot say: the
//! configuration file, the files retouchd reads and writes, exit status and environment. It
//! names no other retouchd pages, since there are none.

use roff::{Roff, bold, italic, roman};

/// The page, in roff, for the command line `cmd` (the binary's clap definition).
pub fn render(cmd: clap::Command) -> Result<Vec<u8>, std::io::Error> {
    let mut page = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let mut roff = Roff::new();
    commands(&mut roff, &cmd);
    configuration(&mut roff);
    files(&mut roff);
    exit_status(&mut roff);
    environment(&mut roff);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        roman("systemctl(1), journalctl(1), systemd.exec(5); the README and config.example.toml, in "),
        italic("/usr/share/doc/retouchd"),
        roman(" when installed from the package."),
    ]);
    page.extend_from_slice(roff.render().as_bytes());
    man.render_version_section(&mut page)?;
    Ok(page)
}

/// A section per command: its usage, what it does, and its options.
fn commands(roff: &mut Roff, cmd: &clap::Command) {
    roff.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut sub = sub.clone().bin_name(format!("retouchd {}", sub.get_name()));
        let usage = sub.render_usage().to_string();
        roff.control("SS", [usage.trim_start_matches("Usage: ")]);
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            roff.text([roman(about.to_string())]);
        }
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set() && !a.is_global_set()) {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let name = match (arg.get_short(), arg.get_long()) {
                (Some(s), Some(l)) => format!("-{s}, --{l}"),
                (None, Some(l)) => format!("--{l}"),
                (Some(s), None) => format!("-{s}"),
                (None, None) => id.to_uppercase(),
            };
            let value = arg
                .get_value_names()
                // On/off flags (`--once`) take no value.
                .filter(|_| arg.get_action().takes_values())
                .filter(|_| arg.get_long().is_some() || arg.get_short().is_some())
                .map(|v| format!(" {}", v.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(" ")))
                .unwrap_or_default();
            roff.control("TP", []);
            roff.text([bold(name), roman(value)]);
            roff.text([roman(arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default())]);
        }
    }
}

fn paragraph(roff: &mut Roff, text: &str) {
    roff.control("PP", []);
    roff.text([roman(text)]);
}

fn item(roff: &mut Roff, term: &str, text: &str) {
    roff.control("TP", []);
    roff.text([bold(term)]);
    roff.text([roman(text)]);
}

fn configuration(roff: &mut Roff) {
    roff.control("SH", ["CONFIGURATION"]);
    paragraph(
        roff,
        "One TOML file: [server] (url, the token, poll_interval, limits on uploads and jobs in flight, retries), \
         [state] (dir: the journal), [log], [metrics], and one [[watch]] per inbox (inbox, outbox, done_dir, \
         failed_dir, on_success, settle, ignore, mode, hooks, allow_unknown_plugins, and [watch.payload]: the \
         plugins to run). Unknown keys are errors; every problem is reported at once with its key. \
         Durations are written like \"5s\", \"2m\", \"1h\". config.example.toml explains every key; \
         docs/plugins.md lists the plugins, their parameters and ranges. `retouchd check` validates a \
         file and probes the server without spending a credit. SIGHUP reloads it.",
    );
    paragraph(
        roff,
        "The token is given one way: a systemd credential named `token`, token_file, token in the file \
         (then chmod 600 it), or RETOUCHD_TOKEN.",
    );
}

fn files(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    item(
        roff,
        "$CONFIGURATION_DIRECTORY/config.toml, ~/.config/retouchd/config.toml",
        "The configuration file when --config is not given (under systemd, and otherwise).",
    );
    item(
        roff,
        "/etc/retouchd/config.toml, /etc/retouchd/token",
        "The service's configuration and token file, as the unit and the package set them up.",
    );
    item(
        roff,
        "STATE/journal.sqlite",
        "The job journal (STATE is [state] dir: $STATE_DIRECTORY under systemd, else ~/.local/share/retouchd). Never reset by retouchd; move it aside to start over.",
    );
    item(roff, "STATE/retouchd.lock", "One daemon per state folder.");
    item(roff, "STATE/daemon.json", "What the running daemon shows to `retouchd status`.");
    item(
        roff,
        "INBOX/.retouchd",
        "The inbox's marker and owner record: keep it. An inbox without it is taken for an unmounted share.",
    );
    item(roff, "OUTBOX/.retouchd-staging/", "Results being written; renamed into place when whole.");
    item(roff, "FAILED/NAME.error.txt", "Why a file could not be retouched, and what to do.");
}

fn exit_status(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in crate::exit::MEANINGS {
        item(roff, &code.to_string(), &meaning.replace('`', ""));
    }
}

fn environment(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    for (name, text) in [
        ("RETOUCHD_TOKEN", "The token, when the config gives none."),
        ("RUST_LOG", "The log filter, e.g. retouchd=debug; overrides [log] level."),
        (
            "CONFIGURATION_DIRECTORY, STATE_DIRECTORY, CREDENTIALS_DIRECTORY",
            "Set by systemd: where the config, the state folder and the token credential are.",
        ),
        ("NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID", "Set by systemd for Type=notify and its watchdog."),
        (
            "INVOCATION_ID, JOURNAL_STREAM",
            "Set by systemd: logs are plain (journald adds times), and `status` names the journalctl command for the daemon's log.",
        ),
    ] {
        item(roff, name, text);
    }
}
