//! `retouchd demo`: the whole product in one command, with no token, network or config. Starts
//! the simulator in-process, makes a workspace (inbox, outbox, done, failed), puts generated
//! sample photos in (and one broken file, to show a failure), runs the daemon until they are
//! processed, showing progress, and says where everything went.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::sync::broadcast;

use crate::config::{self, Environment};
use crate::daemon::{self, JobUpdate, RunOptions, Summary};
use crate::imagegen;
use crate::job::StateName;
use crate::sim::{SimConfig, Simulator};

const PAYLOAD: &str = r#"mode = "professional"
tasks = [ { Plugin = "Heal", Alpha1 = 1, Scale = 0, Layer = 1 },
          { Plugin = "Dodge Burn", Alpha1 = 1, Alpha2 = 0, Layer = 1 },
          { Plugin = "Portrait Volumes", Alpha1 = 1, Layer = 1 } ]"#;

/// The sample files, relative to the inbox.
fn samples() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("portrait-1.jpg", imagegen::portrait_jpeg(640, 800, [220, 170, 140])),
        ("portrait-2.JPG", imagegen::portrait_jpeg(800, 640, [180, 140, 120])),
        ("studio/headshot.png", imagegen::png_bytes(400, 500, [200, 160, 150])),
        (
            "studio/session.zip",
            imagegen::zip_of(&[
                ("look-a.jpg", imagegen::jpeg_bytes(320, 400, [210, 150, 130])),
                ("look-b.jpg", imagegen::jpeg_bytes(320, 400, [190, 150, 140])),
            ]),
        ),
        (
            "not-a-photo.jpg",
            b"This is a text file with a .jpg name; retouchd refuses it before spending a credit.\n".to_vec(),
        ),
        (".DS_Store", b"junk that is ignored".to_vec()),
    ]
}

fn write_config(dir: &Path, sim: &Simulator) -> anyhow::Result<PathBuf> {
    let text = format!(
        r#"# Made by `retouchd demo`; points at the built-in simulator, which is gone once the demo ends.
[server]
url = "{url}"
balance_url = "{balance}"
token = "demo-token"
poll_interval = "2s"

[state]
dir = "state"

[[watch]]
inbox = "inbox"
outbox = "outbox"
done_dir = "done"
failed_dir = "failed"
settle = "300ms"

# The layers, the finished photo (composited here, metadata kept) and a layered PSD.
[watch.output]
layers = true
flat = "same"
psd = true

[watch.payload]
{PAYLOAD}
"#,
        url = sim.base_url(),
        balance = sim.balance_url()
    );
    let path = dir.join("demo-config.toml");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    // It holds a (demo) token: keep it private like a real one.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(path)
}

fn show(update: &JobUpdate) {
    let what = match (update.state, update.progress) {
        (StateName::Processing, Some(p)) => format!("processing {p:.0}%"),
        (StateName::Failed | StateName::Rejected, _) => {
            format!("{}: {}", update.state, update.reason.as_deref().unwrap_or(""))
        }
        (state, _) => state.to_string(),
    };
    say!("  {:<24} {what}", update.file.display());
    let _ = std::io::stdout().flush();
}

/// Puts the first portrait and its finished photo side by side in `before-after.png`.
fn before_after(dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let (before, after) = (dir.join("done/portrait-1.jpg"), dir.join("outbox/portrait-1.jpg"));
    if !before.exists() || !after.exists() {
        return Ok(None);
    }
    let decode = |path: &Path| -> anyhow::Result<(Vec<u8>, u32, u32)> {
        let bytes = std::fs::read(path)?;
        let mut decoder = zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(&bytes));
        let pixels = decoder.decode().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let info = decoder.info().context("no JPEG header")?;
        Ok((pixels, u32::from(info.width), u32::from(info.height)))
    };
    let ((b, w, h), (a, aw, ah)) = (decode(&before)?, decode(&after)?);
    anyhow::ensure!((w, h) == (aw, ah), "the photos differ in size");
    let path = dir.join("before-after.png");
    std::fs::write(&path, imagegen::side_by_side_png(&b, &a, w, h))?;
    Ok(Some(path))
}

/// Runs the demo in `dir` (made if missing) and returns what the daemon did.
pub async fn run(dir: &Path) -> anyhow::Result<Summary> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir)?;
    let sim_config =
        SimConfig { processing_ms: 2500, completion_lag_ms: 500, store_lag_ms: 300, ..SimConfig::default() };
    let sim = Simulator::start("127.0.0.1:0".parse()?, sim_config).await.context("cannot start the simulator")?;
    let inbox = dir.join("inbox");
    // The samples go in once, when the workspace is new; a second run processes only what was
    // dropped into the inbox since (the journal remembers the rest).
    let first_run = !dir.join("state").join(crate::journal::FILE_NAME).exists();
    if first_run {
        for (rel, bytes) in samples() {
            let path = inbox.join(rel);
            std::fs::create_dir_all(path.parent().unwrap_or(&inbox))?;
            std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    let config_path = write_config(&dir, &sim)?;
    let config = config::load(&config_path, &Environment::default()).map_err(|e| anyhow::anyhow!("{e}"))?;

    say!("retouchd demo in {}", dir.display());
    if !first_run {
        say!("  (the sample photos went in on the first run; now processing what was dropped in since)");
    }
    say!("  simulator: {} (token: demo-token)", sim.base_url());
    say!("  inbox:     {}", inbox.display());
    say!();
    let (tx, mut rx) = broadcast::channel(256);
    let printer = tokio::spawn(async move {
        while let Ok(update) = rx.recv().await {
            show(&update);
        }
    });
    let options = RunOptions { once: true, updates: Some(tx), ..RunOptions::default() };
    let summary = daemon::run(config, options, std::future::pending()).await?;
    let _ = printer.await;
    sim.stop().await;

    say!();
    say!("{} delivered, {} failed, {} refused before sending.", summary.done, summary.failed, summary.rejected);
    say!("  results:        {}", dir.join("outbox").display());
    say!("                  (<name>/ the server's layers, <name>.jpg the finished photo, <name>.psd to refine)");
    match before_after(&dir) {
        Ok(Some(path)) => say!("  before | after:  {}", path.display()),
        Ok(None) => {}
        Err(e) => say!("  (no before/after picture: {e})"),
    }
    say!("  originals:      {}", dir.join("done").display());
    say!("  failed + why:   {}", dir.join("failed").display());
    say!("  config used:    {}", config_path.display());
    say!("Run it again to process new files dropped into the inbox; delete the folder to start over.");
    Ok(summary)
}
