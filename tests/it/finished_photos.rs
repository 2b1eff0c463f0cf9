//! Finished photos as a user gets them: the real daemon against the simulator, the outputs
//! read back by independent readers (psd-tools from PyPI for the PSD, the png crate for the
//! flat photo), a render problem delivered with its reason, and `retouchd render` tuning a
//! plugin without the server.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;

/// Runs tests/psd_check.py; panics with its output unless the PSD passes.
fn check_psd(psd: &Path, flat: &Path, expected: serde_json::Value) {
    let spec = psd.with_extension("expected.json");
    std::fs::write(&spec, expected.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/psd_check.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .args([psd, flat, &spec])
        .output()
        .expect("python3 runs (tests/run makes a venv with psd-tools)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "psd-tools does not accept {}:\n{text}", psd.display());
}

/// A workspace whose watch sends four plugins (normal, soft light, darken, linear light), with
/// `output` as its `[watch.output]` table.
fn four_plugin_workspace(sim: &retouchd::sim::Simulator, output: &str) -> Workspace {
    let tasks = r#"[ { Plugin = "Heal", Alpha1 = 1, Layer = 1 }, { Plugin = "Dodge Burn", Alpha1 = 1, Alpha2 = 0, Layer = 1 }, { Plugin = "Mattifier", Alpha1 = 1, Layer = 1 }, { Plugin = "Eye Brilliance", Alpha1 = 1, Layer = 1 } ]"#;
    workspace_with_tasks(sim, tasks, output)
}

/// A workspace whose watch sends `tasks` (a TOML array), with `output` as its `[watch.output]`.
fn workspace_with_tasks(sim: &retouchd::sim::Simulator, tasks: &str, output: &str) -> Workspace {
    let ws = Workspace::new(sim, "", &format!("[watch.output]\n{output}\n"));
    ws.set_tasks(tasks);
    ws
}

/// A simulator and a workspace sending `tasks` with `output`, after `run --once` delivered the
/// photo `name` (made of `bytes`).
async fn delivered_once(tasks: &str, output: &str, name: &str, bytes: &[u8]) -> (retouchd::sim::Simulator, Workspace) {
    let sim = start_sim(fast_sim()).await;
    let ws = workspace_with_tasks(&sim, tasks, output);
    ws.drop_file(name, bytes);
    let out = ws.run_once(Duration::from_secs(60)).await;
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (sim, ws)
}

fn layer_specs(opacity: &[(&str, u8)]) -> serde_json::Value {
    let modes =
        [("Heal", "normal"), ("Dodge Burn", "softLight"), ("Mattifier", "darken"), ("Eye Brilliance", "linearLight")];
    serde_json::Value::Array(
        modes
            .iter()
            .map(|(name, mode)| {
                let o = opacity.iter().find(|(n, _)| n == name).map_or(255, |(_, o)| *o);
                serde_json::json!({ "name": name, "mode": mode, "opacity": o })
            })
            .collect(),
    )
}

fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let mut reader =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap())).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_photo_comes_back_finished_with_its_layers_and_a_psd_that_psd_tools_reads() {
    let sim = start_sim(fast_sim()).await;
    let ws = four_plugin_workspace(&sim, "flat = \"png\"\npsd = true\n[watch.output.opacity]\n\"Dodge Burn\" = 0.6");
    ws.drop_file("portrait.jpg", &retouchd::imagegen::jpeg_bytes(160, 120, [200, 150, 120]));
    let out = ws.run_once(Duration::from_secs(60)).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files = ws.files("outbox");
    for expected in
        ["portrait.png", "portrait.psd", "portrait/index=0&blendmode=normal&name=Heal.png", "portrait/result.json"]
    {
        assert!(files.contains(&expected.to_string()), "{expected} missing from {files:?}");
    }
    assert!(
        !files.iter().any(|f| f.starts_with(".retouchd-staging") && !f.ends_with('/')),
        "staging emptied: {files:?}"
    );
    let (w, h, pixels) = decode_png(&ws.path("outbox/portrait.png"));
    assert_eq!((w, h), (160, 120));
    // The layers changed the photo (the simulator's layers have real content).
    let source = zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(
        std::fs::read(ws.path("done/portrait.jpg")).unwrap(),
    ))
    .decode()
    .unwrap();
    let changed = pixels.iter().zip(&source).filter(|(a, b)| a.abs_diff(**b) > 2).count();
    assert!(changed > 100, "only {changed} samples changed");
    check_psd(
        &ws.path("outbox/portrait.psd"),
        &ws.path("outbox/portrait.png"),
        serde_json::json!({ "depth": 8, "layers": layer_specs(&[("Dodge Burn", 153)]) }),
    );

    // A misspelt plugin is refused with a suggestion, never a silent 100 %.
    let typo = ws.command(&["render", "--opacity", "Dodge Brun=0.5", "outbox/portrait"]).output().unwrap();
    let said = String::from_utf8_lossy(&typo.stderr);
    assert!(!typo.status.success() && said.contains("did you mean \"Dodge Burn\"?"), "{said}");

    // `render` tunes a plugin without the server: Dodge Burn off, another PSD, never overwriting.
    let starts = sim.stats().charged_starts;
    let out = ws.command(&["render", "--opacity", "Dodge Burn=0", "--psd", "outbox/portrait"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("portrait (2).png") && text.contains("portrait (2).psd"), "{text}");
    assert_eq!(sim.stats().charged_starts, starts, "no credit spent");
    let (_, _, tuned) = decode_png(&ws.path("outbox/portrait (2).png"));
    assert_ne!(tuned, pixels, "a different strength, a different photo");
    check_psd(
        &ws.path("outbox/portrait (2).psd"),
        &ws.path("outbox/portrait (2).png"),
        serde_json::json!({ "depth": 8, "layers": layer_specs(&[("Dodge Burn", 0)]) }),
    );

    // `render` names its outputs by the watch's name template, as the daemon does.
    let config = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(&ws.config, config.replacen("[watch.output]\n", "[watch.output]\nname = \"{stem}-{watch}\"\n", 1))
        .unwrap();
    let out = ws.command(&["render", "outbox/portrait"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ws.path("outbox/portrait-inbox.png").is_file(), "{:?}", ws.files("outbox"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixteen_bit_png_gives_a_sixteen_bit_finished_photo_and_psd() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (48u32, 32u32);
    let source = dir.path().join("deep.png");
    {
        let mut encoder = png::Encoder::new(std::fs::File::create(&source).unwrap(), w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Sixteen);
        let samples: Vec<u8> = (0..w * h * 3).flat_map(|i| ((i * 97 % 65536) as u16).to_be_bytes()).collect();
        encoder.write_header().unwrap().write_image_data(&samples).unwrap();
    }
    let layers = dir.path().join("deep");
    std::fs::create_dir(&layers).unwrap();
    let looks = [
        ("index=0&blendmode=normal&name=Heal.png", retouchd::imagegen::LayerLook::Patches),
        ("index=1&blendmode=softLight&name=Portrait Volumes.png", retouchd::imagegen::LayerLook::GreyRelief),
    ];
    for (i, (name, look)) in looks.into_iter().enumerate() {
        std::fs::write(layers.join(name), retouchd::imagegen::layer_png(look, w, h, i as u64)).unwrap();
    }
    let out = bin().args(["render", "--psd", "--source"]).arg(&source).arg(&layers).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(dir.path().join("deep.png")).unwrap()));
    assert_eq!(decoder.read_info().unwrap().info().bit_depth, png::BitDepth::Sixteen);
    let flat = dir.path().join("deep (2).png");
    let reader = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&flat).unwrap())).read_info().unwrap();
    assert_eq!(reader.info().bit_depth, png::BitDepth::Sixteen, "the finished photo keeps 16 bits");
    let expected = serde_json::json!({ "depth": 16, "layers": [
        { "name": "Heal", "mode": "normal", "opacity": 255 },
        { "name": "Portrait Volumes", "mode": "softLight", "opacity": 255 },
    ]});
    check_psd(&dir.path().join("deep.psd"), &flat, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cmyk_photo_gets_its_layers_with_the_reason_in_a_note_the_status_and_the_hook() {
    let sim = start_sim(fast_sim()).await;
    let hook_out = tempfile::NamedTempFile::new().unwrap();
    let hook = format!(
        "on_delivered = [\"sh\", \"-c\", \"echo \\\"$RETOUCHD_RENDER_ERROR\\\" > {}\"]",
        hook_out.path().display()
    );
    let ws = Workspace::new(&sim, "", &hook);
    let mut cmyk = Vec::new();
    jpeg_encoder::Encoder::new(&mut cmyk, 90)
        .encode(&[90u8; 4 * 64 * 48], 64, 48, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    ws.drop_file("print.jpg", &cmyk);
    let out = ws.run_once(Duration::from_secs(60)).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files = ws.files("outbox");
    assert!(files.contains(&"print/result.json".to_string()), "the layers are delivered: {files:?}");
    assert!(!files.contains(&"print.jpg".to_string()), "no finished photo: {files:?}");
    let note = std::fs::read_to_string(ws.path("outbox/print.render-error.txt")).unwrap();
    assert!(note.contains("CMYK") && note.contains("retouchd render"), "{note}");
    assert!(ws.path("done/print.jpg").exists(), "the job itself succeeded");
    assert_eq!(sim.stats().charged_starts, 1, "one credit, none spent again");
    let status = ws.command(&["status"]).output().unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("delivered without a finished photo") && status.contains("CMYK"), "{status}");
    let hooked = std::fs::read_to_string(hook_out.path()).unwrap();
    assert!(hooked.contains("CMYK"), "hook saw: {hooked:?}");
}

/// Where `render` looks for a layers folder's photo when the journal has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_finds_the_photo_through_the_journal_or_says_to_give_it() {
    let sim = start_sim(fast_sim()).await;
    let ws = Workspace::new(&sim, "", "");
    ws.drop_file("a.png", &png());
    assert!(ws.run_once(Duration::from_secs(60)).await.status.success());
    let out = ws.command(&["render", "--flat", "jpeg", "--out", "again", "outbox/a"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(ws.path("again/a.jpg").exists(), "{:?}", ws.files("again"));
    std::fs::remove_file(ws.path("done/a.png")).unwrap();
    let out = ws.command(&["render", "outbox/a"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no longer in done/") && err.contains("--source"), "{err}");
    let stray: PathBuf = ws.path("stray");
    std::fs::create_dir(&stray).unwrap();
    let out = ws.command(&["render", "stray"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no delivery into"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skin_mask_stays_out_of_the_finished_photo_and_is_kept_hidden_in_the_psd() {
    let tasks = r#"[ { Plugin = "Skin Mask", Alpha1 = 1, Layer = 1 }, { Plugin = "Heal", Alpha1 = 1, Layer = 1 }, { Plugin = "Dodge Burn", Alpha1 = 1, Alpha2 = 0, Layer = 1 } ]"#;
    let (_sim, ws) = delivered_once(
        tasks,
        "flat = \"png\"\npsd = true",
        "portrait.jpg",
        &retouchd::imagegen::jpeg_bytes(160, 120, [200, 150, 120]),
    )
    .await;
    let files = ws.files("outbox");
    assert!(files.contains(&"portrait/index=0&blendmode=normal&name=Skin Mask.png".to_string()), "{files:?}");
    assert!(!files.iter().any(|f| f.ends_with("render-error.txt")), "{files:?}");
    // psd-tools composites the visible layers only: equal to the flat photo only if the mask
    // was left out of it.
    let layers = serde_json::json!([
        { "name": "Skin Mask", "mode": "normal", "opacity": 255, "visible": false },
        { "name": "Heal", "mode": "normal", "opacity": 255 },
        { "name": "Dodge Burn", "mode": "softLight", "opacity": 255 },
    ]);
    check_psd(
        &ws.path("outbox/portrait.psd"),
        &ws.path("outbox/portrait.png"),
        serde_json::json!({ "depth": 8, "layers": layers }),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_face_lifting_flow_layer_is_never_blended_the_layers_come_with_a_note_saying_how() {
    let tasks = r#"[ { Plugin = "Heal", Alpha1 = 1, Layer = 1 }, { Plugin = "Face Lifting", Layer = 1, face_lifting_version = 3, "Face Lifting" = 0.5 } ]"#;
    let (sim, ws) = delivered_once(
        tasks,
        "flat = \"png\"",
        "portrait.jpg",
        &retouchd::imagegen::jpeg_bytes(160, 120, [200, 150, 120]),
    )
    .await;
    let files = ws.files("outbox");
    assert!(files.contains(&"portrait/index=1&blendmode=normal&name=Face Lifting.png".to_string()), "{files:?}");
    assert!(!files.contains(&"portrait.png".to_string()), "no finished photo with the flow left out: {files:?}");
    let note = std::fs::read_to_string(ws.path("outbox/portrait.render-error.txt")).unwrap();
    assert!(note.contains("Face Lifting flow layer") && note.contains("`Layer = 0`"), "{note}");
    assert_eq!(sim.stats().charged_starts, 1);
}

/// A portrait delivered with Glasses Anti Glare in `layout` mode, as a flat PNG and a PSD.
async fn glasses_delivered(layout: &str) -> Workspace {
    let tasks = format!(
        r#"[ {{ Plugin = "Glasses Anti Glare", "Glasses Glare Removal" = 0.8, LayoutMode = "{layout}", Layer = 1 }} ]"#
    );
    let photo = retouchd::imagegen::png_bytes(160, 120, [180, 140, 120]);
    delivered_once(&tasks, "flat = \"png\"\npsd = true", "portrait.png", &photo).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glasses_patches_are_placed_by_their_matrix_as_an_independent_reference_does() {
    let ws = glasses_delivered("patch").await;
    let files = ws.files("outbox");
    assert!(!files.iter().any(|f| f.ends_with("render-error.txt")), "{files:?}");
    let layer = ws.path("outbox/portrait/index=0&blendmode=linearLight&name=Glasses Anti Glare.png");
    let (pw, ph, _) = decode_png(&layer);
    assert!((pw, ph) != (160, 120), "the simulator sent a patch, not a full layer");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/patch_check.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .arg(ws.path("done/portrait.png"))
        .arg(&layer)
        .arg(ws.path("outbox/portrait/result.json"))
        .arg(ws.path("outbox/portrait.png"))
        .output()
        .expect("python3 runs (tests/run makes a venv with numpy and Pillow)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "the reference disagrees:\n{text}");
    // In the PSD: one full-size layer, blended with linear light. The 8-bit PSD stores the placed
    // layer (made at 16 bits) rounded, which linear light doubles: two levels for psd-tools.
    let layers = serde_json::json!([{ "name": "Glasses Anti Glare", "mode": "linearLight", "opacity": 255 }]);
    let expected = serde_json::json!({ "depth": 8, "layers": layers, "tolerance": 2.0 });
    check_psd(&ws.path("outbox/portrait.psd"), &ws.path("outbox/portrait.png"), expected);

    // Without its matrix, a patch is never pasted at a corner: layers and a note.
    let result = ws.path("outbox/portrait/result.json");
    std::fs::write(&result, br#"{"jsonVersion": "1", "plugins": [{"pluginName": "Glasses Anti Glare", "faces": []}]}"#)
        .unwrap();
    let again = ws.command(&["render", "outbox/portrait"]).output().unwrap();
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && said.contains("glassesAntiGlarePatchMatrix"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_frame_glasses_are_blended_with_linear_light_as_psd_tools_blends_them() {
    let ws = glasses_delivered("full").await;
    let layer = ws.path("outbox/portrait/index=0&blendmode=linearLight&name=Glasses Anti Glare.png");
    assert_eq!(decode_png(&layer).0, 160, "a full-size layer");
    // psd-tools' own linear light (numpy) over the same layer must give retouchd's flat photo.
    let layers = serde_json::json!([{ "name": "Glasses Anti Glare", "mode": "linearLight", "opacity": 255 }]);
    check_psd(
        &ws.path("outbox/portrait.psd"),
        &ws.path("outbox/portrait.png"),
        serde_json::json!({ "depth": 8, "layers": layers }),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn color_correction_comes_back_flat_and_the_finished_photo_is_the_servers() {
    let tasks = r#"[ { Plugin = "Color Correction", Layer = 0, "User Params" = { AI = { "Color Correction Mode" = "Full" }, Basic = { "Enable Basic" = true } } } ]"#;
    let (_sim, ws) = delivered_once(
        tasks,
        "flat = \"same\"",
        "portrait.png",
        &retouchd::imagegen::png_bytes(160, 120, [120, 100, 90]),
    )
    .await;
    let files = ws.files("outbox");
    assert!(files.contains(&"portrait.png".to_string()), "{files:?}");
    let mean = |pixels: &[u8]| pixels.iter().map(|&v| f64::from(v)).sum::<f64>() / pixels.len() as f64;
    let (_, _, before) = decode_png(&ws.path("done/portrait.png"));
    let (_, _, after) = decode_png(&ws.path("outbox/portrait.png"));
    assert!(mean(&after) > mean(&before) * 1.05, "the server's exposure lift: {} → {}", mean(&before), mean(&after));
}

/// Runs tests/tiff_check.py with `args`; panics with its output unless it passes.
fn tiff_check(args: &[&std::ffi::OsStr]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tiff_check.py");
    let out = std::process::Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs (tests/run makes a venv with tifffile, numpy and Pillow)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "tiff_check.py {args:?}:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixteen_bit_tiff_is_sent_as_an_8_bit_proxy_and_finished_at_16_bits_with_its_profile() {
    let sim = start_sim(fast_sim()).await;
    let tasks = r#"[ { Plugin = "Heal", Alpha1 = 1, Layer = 1 }, { Plugin = "Mattifier", Alpha1 = 1, Layer = 1 } ]"#;
    let ws = workspace_with_tasks(&sim, tasks, "psd = true");
    // The source by an independent writer (tifffile: Deflate, little-endian strips); the other
    // layouts by libtiff's tiffcp: LZW in big-endian tiles, PackBits in a BigTIFF.
    let made = tempfile::tempdir().unwrap();
    let source = made.path().join("deflate-strips.tif");
    tiff_check(&[OsStr::new("make"), source.as_os_str()]);
    // A camera's EXIF (sub-IFD and GPS) and IPTC, added by exiftool as a raw developer would.
    let exif =
        ["-DateTimeOriginal=2026:12:06 10:00:00", "-LensModel=Test 85mm", "-GPSLatitude=48.85", "-GPSLatitudeRef=N"];
    let iptc = ["-IPTC:Keywords=retouchd", "-IPTC:By-line=A. Photographer"];
    let tagged = std::process::Command::new("exiftool")
        .args(["-q", "-overwrite_original"])
        .args(exif)
        .args(iptc)
        .arg(&source)
        .status()
        .expect("exiftool runs (tests/run installs it)");
    assert!(tagged.success());
    let variants: [(&str, &[&str]); 2] = [
        ("lzw-tiles-big-endian.tif", &["-c", "lzw", "-t", "-w", "64", "-l", "64", "-B"]),
        ("packbits-bigtiff.tif", &["-c", "packbits", "-8"]),
    ];
    for (name, args) in variants {
        let out = std::process::Command::new("tiffcp").args(args).arg(&source).arg(made.path().join(name)).output();
        let out = out.expect("tiffcp runs (tests/run installs libtiff-tools)");
        assert!(out.status.success(), "tiffcp: {}", String::from_utf8_lossy(&out.stderr));
    }
    let names = ["deflate-strips.tif", "lzw-tiles-big-endian.tif", "packbits-bigtiff.tif"];
    for name in names {
        ws.drop_file(name, &std::fs::read(made.path().join(name)).unwrap());
    }
    let out = ws.run_once(Duration::from_secs(60)).await;
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // The server got three 8-bit PNG proxies and charged one credit for each TIFF.
    let stats = sim.stats();
    assert_eq!(stats.charged_by_kind, [("PNG".to_string(), 3)].into(), "{:?}", ws.files("outbox"));
    for name in names {
        let stem = name.trim_end_matches(".tif");
        assert_eq!(
            std::fs::read(ws.path(&format!("done/{name}"))).unwrap(),
            std::fs::read(made.path().join(name)).unwrap()
        );
        // The tags are the variant's own (tiffcp leaves XMP out); the samples are the same in
        // every variant, and tifffile decodes the Deflate one.
        let summary = tiff_check(&[
            OsStr::new("check"),
            made.path().join(name).as_os_str(),
            ws.path(&format!("outbox/{stem}.tif")).as_os_str(),
            ws.path(&format!("outbox/{stem}")).as_os_str(),
            source.as_os_str(),
        ]);
        println!("{name}: {summary}");
        let psd = std::fs::read(ws.path(&format!("outbox/{stem}.psd"))).unwrap();
        assert_eq!(&psd[22..24], &[0, 16], "the PSD of a 16-bit original is 16-bit");
    }

    // EXIF, GPS and IPTC as exiftool reads them in the finished photo.
    let read = std::process::Command::new("exiftool")
        .args(["-j", "-DateTimeOriginal", "-LensModel", "-GPSLatitude", "-Keywords", "-By-line", "-ProfileDescription"])
        .arg(ws.path("outbox/deflate-strips.tif"))
        .output()
        .unwrap();
    let tags: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    let tags = &tags[0];
    assert_eq!(tags["DateTimeOriginal"], "2026:12:06 10:00:00", "{tags}");
    assert_eq!(tags["LensModel"], "Test 85mm", "{tags}");
    assert!(tags["GPSLatitude"].as_str().is_some_and(|l| l.starts_with("48 deg 51")), "{tags}");
    assert_eq!((&tags["Keywords"], &tags["By-line"]), (&"retouchd".into(), &"A. Photographer".into()), "{tags}");
    assert_eq!(tags["ProfileDescription"], "ProPhoto RGB", "{tags}");

    // `render` makes it again from the original, as the daemon did.
    let out = ws.command(&["render", "--out", "again", "outbox/deflate-strips"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        std::fs::read(ws.path("again/deflate-strips.tif")).unwrap(),
        std::fs::read(ws.path("outbox/deflate-strips.tif")).unwrap(),
        "the same finished photo"
    );
}
