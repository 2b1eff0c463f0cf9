//! The exit codes of the `retouchd` binary, with what each means (the README and the man page
//! list these).

/// Other failure (the message says what); a run to the end in which files failed or were refused.
pub const FAILURE: u8 = 1;
/// The command line could not be parsed (clap's code).
pub const USAGE: u8 = 2;
pub const CONFIG: u8 = 3;
pub const JOURNAL: u8 = 4;
pub const LOCKED: u8 = 5;
pub const SERVER: u8 = 6;

/// Every code and what it means.
pub const MEANINGS: [(u8, &str); 7] = [
    (0, "success"),
    (FAILURE, "other failure (the message says what); `run --once`, `process`: some files failed or were refused"),
    (USAGE, "bad command line"),
    (CONFIG, "config error (every problem is listed, each with its key)"),
    (
        JOURNAL,
        "state folder or journal error (damaged or not writable; it is never reset), or a shared journal's database \
         that cannot be used (unreachable at start, a node name in use)",
    ),
    (
        LOCKED,
        "another retouchd holds the state folder, or owns an inbox (the message names its host, pid and state folder)",
    ),
    (SERVER, "`check`: the server does not answer properly, has no start route at `server.url`, or refuses the token"),
];
