//! `retouchd init`: a first setup that asks instead of making people read a reference. It asks
//! for the inbox (and offers outbox, done and failed folders beside it), the token (hidden on a
//! terminal; stored in a `token` file of mode 0600 beside the config, never in the config) and a
//! payload preset; validates the result as `check` does (spending no credit); and writes the
//! config atomically with mode 0600. With `--inbox` it asks nothing (for scripts). It never
//! replaces an existing config without `--force`, except the Debian package's untouched default.
//! Run as root for the system service (`/etc/retouchd/config.toml`), it also gives the config,
//! token and new folders to the service's user and lists the folders in the unit's
//! ReadWritePaths drop-in.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::{self, Environment};

/// A named payload for a common kind of work: which plugins, at a [`Strength`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    pub tasks: &'static [PresetTask],
}

/// One task of a preset; its strength comes from [`suggested`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetTask {
    pub plugin: &'static str,
    /// Other fields, as TOML (`Scale = 0`), or "".
    pub extra: &'static str,
    pub layer: bool,
}

const fn task(plugin: &'static str, extra: &'static str, layer: bool) -> PresetTask {
    PresetTask { plugin, extra, layer }
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "portrait",
        about: "portraits, as layers to refine: Heal, Dodge Burn, Skin Tone, Portrait Volumes",
        tasks: &[
            task("Heal", "Scale = 0", true),
            task("Dodge Burn", "", true),
            task("Skin Tone", "", true),
            task("Portrait Volumes", "", true),
        ],
    },
    Preset {
        name: "portrait-flat",
        about: "portraits, as one finished image: the same plugins merged",
        tasks: &[
            task("Heal", "Scale = 0", false),
            task("Dodge Burn", "", false),
            task("Skin Tone", "", false),
            task("Portrait Volumes", "", false),
        ],
    },
    Preset {
        name: "light",
        about: "a light touch, as layers: Heal and Mattifier",
        tasks: &[task("Heal", "Scale = 0", true), task("Mattifier", "", true)],
    },
    Preset {
        name: "eyes-teeth",
        about: "eyes and teeth, as layers: Eye Vessels, Eye Brilliance, White Teeth",
        tasks: &[task("Eye Vessels", "", true), task("Eye Brilliance", "", true), task("White Teeth", "", true)],
    },
    Preset {
        name: "studio-backdrop",
        about: "studio backdrops and dust, as layers: Clean Backdrop, Dust",
        tasks: &[task("Clean Backdrop", "Automask = true", true), task("Dust", "", true)],
    },
];

/// How strongly the presets' plugins work: the vendor's suggested values (its API document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strength {
    Subtle,
    Normal,
    Extreme,
}

impl Strength {
    pub const ALL: [Strength; 3] = [Strength::Subtle, Strength::Normal, Strength::Extreme];

    pub fn name(self) -> &'static str {
        match self {
            Strength::Subtle => "subtle",
            Strength::Normal => "normal",
            Strength::Extreme => "extreme",
        }
    }

    pub fn parse(text: &str) -> Option<Strength> {
        Strength::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(text.trim()))
    }
}

/// A plugin's suggested Alpha1 and Alpha2, subtle / normal / extreme.
type Suggested = (&'static str, [f64; 3], Option<[f64; 3]>);

/// The vendor's suggested (Alpha1, Alpha2) per plugin.
const SUGGESTED: &[Suggested] = &[
    ("Heal", [0.2, 0.6, 1.0], None),
    ("Dodge Burn", [0.2, 0.6, 1.0], Some([0.05, 0.15, 0.35])),
    ("Portrait Volumes", [0.1, 0.3, 0.9], None),
    ("Eye Vessels", [0.2, 0.5, 1.0], None),
    ("Eye Brilliance", [0.2, 0.5, 0.85], None),
    ("White Teeth", [0.1, 0.25, 0.65], Some([0.08, 0.25, 0.55])),
    ("Mattifier", [0.2, 0.5, 0.9], None),
    ("Skin Tone", [0.2, 0.5, 1.0], Some([0.2, 0.5, 1.0])),
    ("Fabric", [0.1, 0.39, 0.75], None),
    ("Dust", [0.2, 0.5, 1.0], None),
    ("Clean Backdrop", [0.2, 0.5, 1.0], None),
];

/// The suggested Alpha1 (and Alpha2) of `plugin` at `strength`.
pub fn suggested(plugin: &str, strength: Strength) -> Option<(f64, Option<f64>)> {
    let i = strength as usize;
    SUGGESTED.iter().find(|(p, _, _)| *p == plugin).map(|(_, a1, a2)| (a1[i], a2.map(|a| a[i])))
}

impl Preset {
    /// The `tasks` list, as TOML, at `strength`.
    pub fn tasks_toml(&self, strength: Strength) -> String {
        let tasks: Vec<String> = self
            .tasks
            .iter()
            .map(|t| {
                let mut fields = vec![format!("Plugin = \"{}\"", t.plugin)];
                if let Some((alpha1, alpha2)) = suggested(t.plugin, strength) {
                    fields.push(format!("Alpha1 = {alpha1}"));
                    if let Some(alpha2) = alpha2 {
                        fields.push(format!("Alpha2 = {alpha2}"));
                    }
                }
                if !t.extra.is_empty() {
                    fields.push(t.extra.to_string());
                }
                fields.push(format!("Layer = {}", u8::from(t.layer)));
                format!("{{ {} }}", fields.join(", "))
            })
            .collect();
        format!("[ {} ]", tasks.join(",\n          "))
    }
}

/// What a watch delivers, as offered by `init` (`[watch.output]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outputs {
    pub name: &'static str,
    pub about: &'static str,
    /// The `[watch.output]` lines.
    pub toml: &'static str,
}

pub const OUTPUTS: &[Outputs] = &[
    Outputs {
        name: "layers+photo",
        about: "the server's layers and the finished photo (JPEG or PNG, as the source)",
        toml: "layers = true\nflat = \"same\"\npsd = false",
    },
    Outputs { name: "photo", about: "the finished photo only", toml: "layers = false\nflat = \"same\"\npsd = false" },
    Outputs {
        name: "photo+psd",
        about: "the finished photo and a layered PSD to refine",
        toml: "layers = false\nflat = \"same\"\npsd = true",
    },
    Outputs {
        name: "all",
        about: "the layers, the finished photo and a layered PSD",
        toml: "layers = true\nflat = \"same\"\npsd = true",
    },
    Outputs { name: "layers", about: "the server's layers only", toml: "layers = true\nflat = \"none\"\npsd = false" },
];

/// The config the Debian package installs; `init` may replace it while it carries this line.
pub const PACKAGED_DEFAULT_MARK: &str = "# retouchd: packaged default, watches nothing";
/// The system service's config, and its state folder.
pub const SYSTEM_CONFIG: &str = "/etc/retouchd/config.toml";
const SYSTEM_STATE_DIR: &str = "/var/lib/retouchd";
/// The drop-in listing the folders the hardened service may write.
pub const SYSTEM_DROP_IN: &str = "/etc/systemd/system/retouchd.service.d/retouchd-init.conf";
/// The service's user.
const SERVICE_USER: &str = "retouchd";

pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// What `init` was told on the command line.
#[derive(Debug, Default)]
pub struct Request {
    /// Where to write the config.
    pub config: PathBuf,
    pub inbox: Option<PathBuf>,
    pub outbox: Option<PathBuf>,
    pub done: Option<PathBuf>,
    pub failed: Option<PathBuf>,
    /// A token file that exists already (used as it is).
    pub token_file: Option<PathBuf>,
    pub preset: Option<String>,
    /// The presets' strength by name (see [`Strength`]); normal by default.
    pub strength: Option<String>,
    /// The outputs by name (see [`OUTPUTS`]).
    pub outputs: Option<String>,
    /// The API base; the default is the service's main host.
    pub server_url: Option<String>,
    pub force: bool,
    /// Skip the server check (no network at setup time).
    pub no_check: bool,
}

/// Why `init` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} exists already; nothing was changed. Add --force to replace it")]
    Exists(PathBuf),
    #[error("{0}")]
    Input(String),
    #[error("the new config would not be valid, so it was not written:\n{0}")]
    Invalid(String),
    #[error(
        "{0}\nThe config was not written (nor the token). Fix it, or add --no-check to write the config without asking the server"
    )]
    Check(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The answers, complete.
#[derive(Debug, Clone)]
pub struct Answers {
    pub inbox: PathBuf,
    pub outbox: PathBuf,
    pub done: PathBuf,
    pub failed: PathBuf,
    /// The token file, as the config names it (relative to the config's folder, or absolute).
    pub token_file: PathBuf,
    pub preset: &'static Preset,
    pub strength: Strength,
    pub outputs: &'static Outputs,
    pub server_url: String,
    /// For the system service: its state folder (the service's own is used otherwise).
    pub state_dir: Option<PathBuf>,
}

/// The config file for `answers`.
pub fn config_text(a: &Answers) -> String {
    let q = |p: &Path| toml::Value::String(p.display().to_string()).to_string();
    format!(
        r#"# Made by `retouchd init`. config.example.toml explains every key; docs/plugins.md the
# plugins. `retouchd check` validates this file and asks the server (no credit spent).

[server]
url = {url}
# The token is in its own file (mode 0600), never here.
token_file = {token}
{state}
[[watch]]
inbox = {inbox}
outbox = {outbox}
done_dir = {done}
failed_dir = {failed}

# Outputs "{outputs}": {outputs_about}.
[watch.output]
{outputs_toml}

# Preset "{name}": {about}; at the vendor's "{strength}" strength (Alpha1 1 = 100 %).
[watch.payload]
mode = "professional"
tasks = {tasks}
"#,
        state = a.state_dir.as_deref().map(|d| format!("\n[state]\ndir = {}\n", q(d))).unwrap_or_default(),
        outputs = a.outputs.name,
        outputs_about = a.outputs.about,
        outputs_toml = a.outputs.toml,
        url = toml::Value::String(a.server_url.clone()),
        token = q(&a.token_file),
        inbox = q(&a.inbox),
        outbox = q(&a.outbox),
        done = q(&a.done),
        failed = q(&a.failed),
        name = a.preset.name,
        about = a.preset.about,
        strength = a.strength.name(),
        tasks = a.preset.tasks_toml(a.strength),
    )
}

/// Reads answers from `input`, offering defaults (a line left empty takes the default).
struct Asker<'a> {
    input: &'a mut dyn BufRead,
}

impl Asker<'_> {
    fn ask(&mut self, question: &str, default: Option<&str>) -> Result<String, InitError> {
        match default {
            Some(d) => print!("{question} [{d}]: "),
            None => print!("{question}: "),
        }
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let read =
            self.input.read_line(&mut line).map_err(|e| InitError::Input(format!("cannot read the answer: {e}")))?;
        let line = line.trim();
        match (line.is_empty(), default) {
            (false, _) => Ok(line.to_string()),
            (true, Some(d)) => Ok(d.to_string()),
            (true, None) if read == 0 => Err(InitError::Input(format!("no answer for \"{question}\""))),
            (true, None) => self.ask(question, default),
        }
    }
}

/// A folder beside `inbox` named `name`.
fn beside(inbox: &Path, name: &str) -> PathBuf {
    inbox.parent().map(|p| p.join(name)).unwrap_or_else(|| PathBuf::from(name))
}

/// Runs the setup. `input` gives the answers (stdin); the token is read hidden when stdin is a
/// terminal. Returns the config's path.
pub async fn run(request: Request, input: &mut dyn BufRead) -> Result<PathBuf, InitError> {
    let path = request.config.clone();
    // The Debian package's untouched default may be replaced; anything else only with --force.
    let replace = request.force || is_packaged_default(&path);
    if path.exists() && !replace {
        return Err(InitError::Exists(path));
    }
    let system = system_service(&path);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InitError::Io { path, source }
    };
    let mut asker = Asker { input };
    let interactive = request.inbox.is_none();
    let absolute = |p: PathBuf| if p.is_absolute() { p } else { std::env::current_dir().unwrap_or_default().join(p) };
    let inbox = absolute(match request.inbox {
        Some(p) => p,
        None => PathBuf::from(asker.ask("Inbox: the folder photos are dropped into", None)?),
    });
    let mut folder = |flag: Option<PathBuf>, question: &str, name: &str| -> Result<PathBuf, InitError> {
        let default = beside(&inbox, name);
        Ok(absolute(match flag {
            Some(p) => p,
            None if interactive => PathBuf::from(asker.ask(question, Some(&default.display().to_string()))?),
            None => default,
        }))
    };
    let outbox = folder(request.outbox, "Outbox: where results go", "outbox")?;
    let done = folder(request.done, "Done: where originals go once retouched", "done")?;
    let failed = folder(request.failed, "Failed: where files that cannot be retouched go", "failed")?;
    let preset = match (&request.preset, interactive) {
        (Some(name), _) => preset(name).ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
            InitError::Input(format!("no preset `{name}`; choose from {}", names.join(", ")))
        })?,
        (None, true) => {
            for (n, p) in PRESETS.iter().enumerate() {
                println!("  {}. {}: {}", n + 1, p.name, p.about);
            }
            let answer = asker.ask("Preset (number or name)", Some("1"))?;
            answer
                .parse::<usize>()
                .ok()
                .and_then(|n| PRESETS.get(n.wrapping_sub(1)))
                .or_else(|| preset(&answer))
                .ok_or_else(|| InitError::Input(format!("no preset `{answer}`")))?
        }
        (None, false) => &PRESETS[0],
    };
    let strength = match (&request.strength, interactive) {
        (Some(name), _) => Strength::parse(name)
            .ok_or_else(|| InitError::Input(format!("no strength `{name}`; choose from subtle, normal or extreme")))?,
        (None, true) => {
            let answer = asker.ask("Strength (subtle, normal, extreme)", Some("normal"))?;
            Strength::parse(&answer).ok_or_else(|| InitError::Input(format!("no strength `{answer}`")))?
        }
        (None, false) => Strength::Normal,
    };
    let outputs = match (&request.outputs, interactive) {
        (Some(name), _) => outputs_named(name)?,
        (None, true) => {
            for (n, o) in OUTPUTS.iter().enumerate() {
                println!("  {}. {}: {}", n + 1, o.name, o.about);
            }
            let answer = asker.ask("What to deliver (number or name)", Some("1"))?;
            match answer.parse::<usize>().ok().and_then(|n| OUTPUTS.get(n.wrapping_sub(1))) {
                Some(o) => o,
                None => outputs_named(&answer)?,
            }
        }
        (None, false) => &OUTPUTS[0],
    };
    // The token: a file given, or asked for and stored beside the config.
    let token = match &request.token_file {
        Some(file) => {
            std::fs::metadata(file).map_err(|e| InitError::Input(format!("the token file {}: {e}", file.display())))?;
            None
        }
        None => {
            let answer = if std::io::stdin().is_terminal() {
                rpassword::prompt_password("Token (from your Retouch4me account; not shown): ")
                    .map_err(|e| InitError::Input(format!("cannot read the token: {e}")))?
            } else {
                // Not a terminal (a script piping it in): nothing to hide from.
                asker.ask("Token", None)?
            };
            let token = answer.trim().to_string();
            if token.is_empty() {
                return Err(InitError::Input("no token given; give it at the prompt, or --token-file FILE".into()));
            }
            Some(token)
        }
    };
    let token_file = request.token_file.clone().unwrap_or_else(|| PathBuf::from("token"));
    let answers = Answers {
        inbox,
        outbox,
        done,
        failed,
        token_file: token_file.clone(),
        preset,
        strength,
        outputs,
        server_url: request.server_url.unwrap_or_else(|| crate::api::DEFAULT_BASE_URL.to_string()),
        state_dir: system.is_some().then(|| PathBuf::from(SYSTEM_STATE_DIR)),
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut created = Vec::new();
    for folder in [&answers.inbox, &answers.outbox, &answers.done, &answers.failed] {
        if !folder.exists() {
            created.push(folder.clone());
        }
        std::fs::create_dir_all(folder).map_err(io(folder))?;
    }
    let token_path = dir.join(&token_file);
    let token_file_empty = std::fs::metadata(&token_path).is_ok_and(|m| m.len() == 0);
    if token.is_some() && token_path.exists() && !request.force && !token_file_empty {
        return Err(InitError::Exists(token_path));
    }
    if let Some(token) = &token {
        write_private(&token_path, format!("{token}\n").as_bytes(), true).map_err(io(&token_path))?;
    }
    let written = validate_and_write(&path, &dir, &answers, request.no_check, replace).await;
    if written.is_err() && token.is_some() {
        // The config was not written: neither is the token it would have named (an empty token
        // file that was there, the package's, stays as it was).
        let _ = if token_file_empty { std::fs::write(&token_path, "") } else { std::fs::remove_file(&token_path) };
    }
    written?;
    println!(
        "wrote {} (mode 0600){}",
        path.display(),
        if token.is_some() { format!(" and the token in {}", token_path.display()) } else { String::new() }
    );
    if let Some(user) = system {
        set_up_service(user, &path, &token_path, &answers, &created)?;
    }
    Ok(path)
}

fn outputs_named(name: &str) -> Result<&'static Outputs, InitError> {
    OUTPUTS.iter().find(|o| o.name == name).ok_or_else(|| {
        let names: Vec<&str> = OUTPUTS.iter().map(|o| o.name).collect();
        InitError::Input(format!("no outputs `{name}`; choose from {}", names.join(", ")))
    })
}

/// Whether `path` is the Debian package's untouched default config.
fn is_packaged_default(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| text.lines().any(|l| l.trim() == PACKAGED_DEFAULT_MARK))
}

/// The service user's ids, when `init` writes the system service's config as root.
#[derive(Debug, Clone, Copy)]
struct ServiceUser {
    uid: u32,
    gid: u32,
}

fn system_service(config: &Path) -> Option<ServiceUser> {
    // SAFETY: geteuid has no preconditions.
    if config != Path::new(SYSTEM_CONFIG) || unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new(SERVICE_USER).ok()?;
    // SAFETY: a valid NUL-terminated name; the result is read at once, before any other call.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return None;
    }
    // SAFETY: checked non-null just above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Some(ServiceUser { uid, gid })
}

/// For the system service: the config, the token and the folders `init` made belong to the
/// service's user, and the hardened unit may write the folders (a drop-in with ReadWritePaths).
fn set_up_service(
    user: ServiceUser,
    config: &Path,
    token: &Path,
    answers: &Answers,
    created: &[PathBuf],
) -> Result<(), InitError> {
    let own = |path: &Path| {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(|source| InitError::Io { path: path.to_path_buf(), source })
    };
    own(config)?;
    if token.exists() {
        own(token)?;
    }
    for folder in created {
        own(folder)?;
    }
    let folders = [&answers.inbox, &answers.outbox, &answers.done, &answers.failed];
    for folder in folders {
        if !created.contains(folder) {
            println!(
                "note: {} existed already; make sure the user {SERVICE_USER} may write it (e.g. chgrp {SERVICE_USER} and chmod g+rwx)",
                folder.display()
            );
        }
    }
    let quoted: Vec<String> = folders.iter().map(|f| format!("\"{}\"", f.display())).collect();
    let drop_in = format!(
        "# Written by `retouchd init`: the folders the service may write (it runs with\n\
         # ProtectSystem=strict). Run `retouchd init` again, or edit this, when they change.\n\
         [Service]\nReadWritePaths={}\n",
        quoted.join(" ")
    );
    let drop_in_path = Path::new(SYSTEM_DROP_IN);
    if let Some(parent) = drop_in_path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| InitError::Io { path: parent.to_path_buf(), source })?;
    }
    // Not secret: readable like any unit file.
    std::fs::write(drop_in_path, drop_in.as_bytes())
        .map_err(|source| InitError::Io { path: drop_in_path.to_path_buf(), source })?;
    println!("wrote {SYSTEM_DROP_IN} (the folders the service may write)");
    if Path::new("/run/systemd/system").exists() {
        let _ = std::process::Command::new("systemctl").arg("daemon-reload").status();
    }
    Ok(())
}

/// Validates the config for `answers` (as `check` does, unless told not to) and writes it.
async fn validate_and_write(
    path: &Path,
    dir: &Path,
    answers: &Answers,
    no_check: bool,
    force: bool,
) -> Result<(), InitError> {
    let text = config_text(answers);
    let config = config::parse(&text, dir, &Environment::default()).map_err(|problems| {
        InitError::Invalid(
            problems.iter().map(|p| format!("  {}: {}", p.key, p.message)).collect::<Vec<_>>().join("\n"),
        )
    })?;
    if !no_check {
        crate::commands::check::run(&config).await.map_err(|e| InitError::Check(e.to_string()))?;
    }
    write_private(path, text.as_bytes(), force).map_err(|source| InitError::Io { path: path.to_path_buf(), source })
}

/// Writes a file only its owner can read: a temp file beside it, synced, then renamed into
/// place (replacing an existing one only when `replace`).
fn write_private(path: &Path, bytes: &[u8], replace: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    let placed = written.and_then(|()| {
        if replace { std::fs::rename(&tmp, path) } else { crate::deliver::rename_noreplace(&tmp, path) }
    });
    if placed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    placed?;
    crate::deliver::sync_dir(dir);
    Ok(())
}

/// What to run next, for a config at `path`.
pub fn next_step(path: &Path) -> String {
    if path == Path::new(SYSTEM_CONFIG) {
        "next: `systemctl enable --now retouchd` starts the service".into()
    } else {
        format!("next: `retouchd run --config {}` (or `retouchd demo` to see it work first)", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_at_every_strength_is_a_valid_payload_with_the_vendors_values() {
        for p in PRESETS {
            for strength in Strength::ALL {
                let text = format!("mode = \"professional\"\ntasks = {}", p.tasks_toml(strength));
                let table: toml::Table = toml::from_str(&text).unwrap();
                let json = serde_json::to_value(&table).unwrap();
                let found = crate::plugins::check_payload(&json, false);
                assert_eq!(found, crate::plugins::Findings::default(), "preset {} {}", p.name, strength.name());
            }
        }
        let portrait = preset("portrait").unwrap();
        assert!(
            portrait
                .tasks_toml(Strength::Subtle)
                .contains(r#"{ Plugin = "Dodge Burn", Alpha1 = 0.2, Alpha2 = 0.05, Layer = 1 }"#)
        );
        assert!(
            portrait.tasks_toml(Strength::Extreme).contains(r#"{ Plugin = "Heal", Alpha1 = 1, Scale = 0, Layer = 1 }"#)
        );
        let teeth = preset("eyes-teeth").unwrap().tasks_toml(Strength::Normal);
        assert!(teeth.contains(r#"{ Plugin = "White Teeth", Alpha1 = 0.25, Alpha2 = 0.25, Layer = 1 }"#), "{teeth}");
        assert_eq!(Strength::parse(" Extreme"), Some(Strength::Extreme));
        assert_eq!(Strength::parse("strong"), None);
    }

    /// The container's default config (made on its first start) is valid as the container sees
    /// it (token and dashboard password as credentials) and carries the portrait preset.
    #[test]
    fn the_container_config_is_valid_and_carries_the_portrait_preset_at_normal_strength() {
        let text = include_str!("../../packaging/container/config.toml");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        for d in ["photos/inbox", "photos/outbox", "photos/done", "photos/failed", "config", "creds"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("creds/token"), "t").unwrap();
        std::fs::write(dir.path().join("creds/web-password"), "a long dashboard password").unwrap();
        let env = crate::config::Environment {
            credentials_directory: Some(dir.path().join("creds")),
            ..crate::config::Environment::default()
        };
        let mounted =
            text.replace("\"/photos", &format!("\"{root}/photos")).replace("\"/config", &format!("\"{root}/config"));
        let config = crate::config::parse(&mounted, dir.path(), &env).unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(config.watches[0].mode, crate::config::WatchMode::Auto, "scans network shares");
        assert!(!config.web.as_ref().unwrap().listen.ip().is_loopback(), "the dashboard is reachable");
        let table: toml::Table = toml::from_str(text).unwrap();
        let tasks = &table["watch"].as_array().unwrap()[0]["payload"]["tasks"];
        let preset: toml::Table =
            toml::from_str(&format!("tasks = {}", preset("portrait").unwrap().tasks_toml(Strength::Normal))).unwrap();
        assert_eq!(tasks, &preset["tasks"], "the portrait preset at normal strength");
    }

    #[test]
    fn the_config_names_the_token_file_and_never_the_token() {
        let answers = Answers {
            inbox: "/srv/p \"x\"/inbox".into(),
            outbox: "/srv/p/outbox".into(),
            done: "/srv/p/done".into(),
            failed: "/srv/p/failed".into(),
            token_file: "token".into(),
            preset: &PRESETS[0],
            strength: Strength::Normal,
            outputs: &OUTPUTS[2],
            server_url: "https://example/api/v1".into(),
            state_dir: Some("/var/lib/retouchd".into()),
        };
        let text = config_text(&answers);
        assert!(text.contains("[state]\ndir = \"/var/lib/retouchd\""), "{text}");
        assert!(text.contains("token_file = \"token\"") && !text.contains("\ntoken ="), "{text}");
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["watch"][0]["inbox"].as_str(), Some("/srv/p \"x\"/inbox"), "paths are quoted safely");
        assert_eq!(parsed["watch"][0]["output"]["psd"].as_bool(), Some(true));
    }

    #[test]
    fn every_outputs_choice_is_a_valid_output_table_and_the_packaged_config_may_be_replaced() {
        for o in OUTPUTS {
            let table: toml::Table = toml::from_str(o.toml).unwrap();
            assert!(table.contains_key("layers") && table.contains_key("flat"), "{}", o.name);
        }
        let dir = tempfile::tempdir().unwrap();
        let packaged = dir.path().join("config.toml");
        std::fs::write(&packaged, include_str!("../../packaging/deb/config.toml")).unwrap();
        assert!(is_packaged_default(&packaged));
        std::fs::write(&packaged, "[server]\ntoken_file = \"token\"\n").unwrap();
        assert!(!is_packaged_default(&packaged), "an edited config is the user's");
    }
}
