//! The finished photo's cost: `retouchd render` flattening a 24-megapixel JPEG with three
//! full-size RGBA layers (normal, soft light, darken) and writing a JPEG, beside ImageMagick
//! doing the same composite in the same run; the two composites compared before JPEG (as PNG);
//! peak memory; and how the time grows with the number of layers. `render16`: the 16-bit round
//! trip, a 45-megapixel 16-bit TIFF (and PNG) with three layers written at 16 bits, beside
//! ImageMagick's Q16 build doing the same in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use retouchd::imagegen::{LayerLook, layer_png};

use crate::Row;
use crate::rig::bench_root;

const WIDTH: u32 = 6000;
const HEIGHT: u32 = 4000;

/// A child's wall time, peak RSS (MB, its `VmHWM`, read every few milliseconds until it exits:
/// wait4's `ru_maxrss` would also count this process's own peak, which Linux carries over to a
/// child started with vfork) and success.
fn measured(command: &mut Command) -> (Duration, f64, bool) {
    let started = Instant::now();
    let mut child =
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::inherit()).spawn().expect("start");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0.0f64;
    let status = loop {
        if let Some(kb) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        }) {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(3));
    };
    (started.elapsed(), peak_kb * 1024.0 / 1e6, status.success())
}

/// A photo-like 24 MP JPEG: gradients with fine noise (quality 90).
fn photo(path: &Path) {
    let mut rng = fastrand::Rng::with_seed(24);
    let mut pixels = Vec::with_capacity((WIDTH * HEIGHT * 3) as usize);
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let n = rng.u8(..24);
            pixels.push((90 + x * 110 / WIDTH) as u8 + n);
            pixels.push((60 + y * 100 / HEIGHT) as u8 + n);
            pixels.push(70 + n);
        }
    }
    let mut bytes = Vec::new();
    jpeg_encoder::Encoder::new(&mut bytes, 90)
        .encode(&pixels, WIDTH as u16, HEIGHT as u16, jpeg_encoder::ColorType::Rgb)
        .expect("bench photo");
    std::fs::write(path, bytes).expect("write photo");
}

/// The layers folder with the first `count` of: Heal (normal), Dodge Burn (soft light),
/// Mattifier (darken), then more soft-light layers.
fn layers(dir: &Path, count: usize) -> Vec<(PathBuf, &'static str)> {
    layers_sized(dir, count, WIDTH, HEIGHT)
}

fn layers_sized(dir: &Path, count: usize, width: u32, height: u32) -> Vec<(PathBuf, &'static str)> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("layers folder");
    (0..count)
        .map(|i| {
            let (mode, plugin, look, im) = match i {
                0 => ("normal", "Heal".to_string(), LayerLook::Patches, "Over"),
                2 => ("darken", "Mattifier".to_string(), LayerLook::Shade, "Darken"),
                1 => ("softLight", "Dodge Burn".to_string(), LayerLook::GreyRelief, "SoftLight"),
                n => ("softLight", format!("Relief {n}"), LayerLook::GreyRelief, "SoftLight"),
            };
            let path = dir.join(format!("index={i}&blendmode={mode}&name={plugin}.png"));
            std::fs::write(&path, layer_png(look, width, height, i as u64)).expect("layer");
            (path, im)
        })
        .collect()
}

fn retouchd_render(source: &Path, layers: &Path, out: &Path, flat: &str) -> (Duration, f64, bool) {
    let _ = std::fs::remove_dir_all(out);
    let bin = Path::new(env!("CARGO_BIN_EXE_retouchd"));
    measured(
        Command::new(bin)
            .args(["render", "--flat", flat, "--source"])
            .arg(source)
            .arg("--out")
            .arg(out)
            .arg(layers)
            .env("XDG_CONFIG_HOME", out.parent().unwrap_or(out)),
    )
}

fn imagemagick(source: &Path, layers: &[(PathBuf, &str)], out: &Path) -> Option<(Duration, f64, bool)> {
    let convert = ["/usr/bin/convert", "/usr/bin/magick"].into_iter().find(|p| Path::new(p).exists())?;
    let mut command = Command::new(convert);
    command.arg(source);
    for (layer, compose) in layers {
        command.arg(layer).args(["-compose", compose, "-composite"]);
    }
    if out.extension().is_some_and(|e| e == "jpg") {
        command.args(["-quality", "95", "-sampling-factor", "4:4:4"]);
    }
    if out.extension().is_some_and(|e| e == "tif") {
        command.args(["-depth", "16", "-compress", "zip"]);
    }
    command.arg(out);
    Some(measured(&mut command))
}

fn png_pixels(path: &Path) -> Vec<u8> {
    let mut reader =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).expect("png"))).read_info().expect("png");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("png");
    buf.truncate(info.buffer_size());
    if info.color_type == png::ColorType::Rgba {
        buf.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect()
    } else {
        buf
    }
}

pub fn render(_runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    let root = bench_root().join("render");
    std::fs::create_dir_all(&root).expect("bench folder");
    let source = root.join("photo.jpg");
    photo(&source);
    let stack = layers(&root.join("photo"), 3);
    let mp = f64::from(WIDTH * HEIGHT) / 1e6;
    let mut rows = Vec::new();

    // Best of three each, alternating, so both see the same machine.
    let (mut ours, mut theirs, mut our_rss) = (Duration::MAX, Duration::MAX, 0.0f64);
    for _ in 0..3 {
        let (t, rss, ok) = retouchd_render(&source, &root.join("photo"), &root.join("ours"), "jpeg");
        assert!(ok, "retouchd render failed");
        ours = ours.min(t);
        our_rss = our_rss.max(rss);
        if let Some((t, _, ok)) = imagemagick(&source, &stack, &root.join("magick.jpg")) {
            assert!(ok, "ImageMagick failed");
            theirs = theirs.min(t);
        }
    }
    rows.push(Row::info(
        "render",
        "24 MP JPEG + 3 full-size layers → JPEG q95 4:4:4, retouchd",
        format!("{:.2} s", ours.as_secs_f64()),
    ));
    if theirs != Duration::MAX {
        let speedup = theirs.as_secs_f64() / ours.as_secs_f64();
        rows.push(Row::info(
            "render",
            "the same with ImageMagick (convert … -composite, Debian's)",
            format!("{:.2} s", theirs.as_secs_f64()),
        ));
        rows.push(Row::judged(
            "render",
            "retouchd's speed-up over ImageMagick",
            format!("{speedup:.1}×"),
            "≥ 3×",
            speedup >= 3.0,
        ));
    } else {
        rows.push(Row::info("render", "ImageMagick", "not installed (apt-get install imagemagick)"));
    }
    rows.push(Row::judged(
        "render",
        "retouchd's peak RSS for it",
        format!("{our_rss:.0} MB"),
        "< 300 MB",
        our_rss < 300.0,
    ));
    rows.push(Row::info(
        "render",
        "cost per megapixel (3 layers)",
        format!("{:.1} ms", ours.as_secs_f64() * 1000.0 / mp),
    ));

    // The composites themselves: from a PNG of the photo (JPEG decoders differ by a level
    // among themselves), written as PNG by both, compared sample by sample.
    let png_source = root.join("photo-source.png");
    let converted = imagemagick(&source, &[], &png_source).is_some_and(|r| r.2);
    let (_, _, ok) = retouchd_render(&png_source, &root.join("photo"), &root.join("ours-png"), "png");
    assert!(!converted || ok, "retouchd render to PNG failed");
    if let Some((_, _, true)) = imagemagick(&png_source, &stack, &root.join("magick.png")) {
        let a = png_pixels(&root.join("ours-png/photo.png"));
        let b = png_pixels(&root.join("magick.png"));
        let max = a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(255);
        let off = a.iter().zip(&b).filter(|(x, y)| x != y).count() as f64 * 100.0 / a.len().max(1) as f64;
        rows.push(Row::judged(
            "render",
            "largest difference from ImageMagick's composite (independent reference)",
            format!("{max}/255 ({off:.2} % of samples differ)"),
            "≤ 1/255",
            a.len() == b.len() && max <= 1,
        ));
    }

    // How the time grows with layers.
    for count in [1, 3, 6] {
        let dir = root.join(format!("photo-{count}"));
        let _ = layers(&dir, count);
        let best =
            (0..2).map(|_| retouchd_render(&source, &dir, &root.join("scaling"), "jpeg").0).min().unwrap_or_default();
        rows.push(Row::info(
            "render",
            format!("{count} layer(s)"),
            format!("{:.2} s ({:.1} ms/MP)", best.as_secs_f64(), best.as_secs_f64() * 1000.0 / mp),
        ));
    }
    let _ = std::fs::remove_dir_all(&root);
    rows
}

const WIDTH_45: u32 = 8192;
const HEIGHT_45: u32 = 5504;

/// A photo-like 45 MP 16-bit RGB image: gradients using all 16 bits, with fine noise.
fn photo16() -> Vec<u16> {
    let mut rng = fastrand::Rng::with_seed(45);
    let mut samples = Vec::with_capacity((WIDTH_45 * HEIGHT_45 * 3) as usize);
    for y in 0..HEIGHT_45 {
        for x in 0..WIDTH_45 {
            let n = rng.u16(..2000);
            samples.push((20_000 + x * 28_000 / WIDTH_45) as u16 + n);
            samples.push((15_000 + y * 25_000 / HEIGHT_45) as u16 + n);
            samples.push(18_000 + n);
        }
    }
    samples
}

/// The 16-bit round trip at 45 MP: a Deflate TIFF (as Lightroom exports) and a 16-bit PNG, each
/// with three full-size layers, written at 16 bits by retouchd and by ImageMagick (Q16), one run
/// each (best of two for retouchd), with peak memory.
pub fn render16(_runtime: &tokio::runtime::Runtime) -> Vec<Row> {
    let root = bench_root().join("render16");
    std::fs::create_dir_all(&root).expect("bench folder");
    let samples = photo16();
    let tiff_source = root.join("photo.tif");
    {
        let file = std::io::BufWriter::new(std::fs::File::create(&tiff_source).expect("tiff"));
        let mut tiff = tiff::encoder::TiffEncoder::new(file)
            .expect("tiff")
            .with_compression(tiff::encoder::Compression::Deflate(tiff::encoder::DeflateLevel::Fast))
            .with_predictor(tiff::encoder::Predictor::Horizontal);
        tiff.write_image::<tiff::encoder::colortype::RGB16>(WIDTH_45, HEIGHT_45, &samples).expect("tiff");
    }
    let png_source = root.join("photo.png");
    {
        let file = std::io::BufWriter::new(std::fs::File::create(&png_source).expect("png"));
        let mut encoder = png::Encoder::new(file, WIDTH_45, HEIGHT_45);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Sixteen);
        encoder.set_compression(png::Compression::Fast);
        let bytes: Vec<u8> = samples.iter().flat_map(|v| v.to_be_bytes()).collect();
        encoder.write_header().expect("png").write_image_data(&bytes).expect("png");
    }
    drop(samples);
    let stack = layers_sized(&root.join("photo"), 3, WIDTH_45, HEIGHT_45);
    let mp = f64::from(WIDTH_45 * HEIGHT_45) / 1e6;
    let mut rows = Vec::new();
    for (source, flat, ext) in [(&tiff_source, "tiff", "tif"), (&png_source, "png", "png")] {
        let what = format!("{mp:.0} MP 16-bit {} + 3 layers → 16-bit {}", ext.to_uppercase(), ext.to_uppercase());
        let (mut ours, mut our_rss) = (Duration::MAX, 0.0f64);
        for _ in 0..2 {
            let (t, rss, ok) = retouchd_render(source, &root.join("photo"), &root.join("ours"), flat);
            assert!(ok, "retouchd render failed");
            ours = ours.min(t);
            our_rss = our_rss.max(rss);
        }
        rows.push(Row::info("render16", format!("{what}, retouchd"), format!("{:.2} s", ours.as_secs_f64())));
        rows.push(Row::judged(
            "render16",
            "retouchd's peak RSS for it",
            format!("{our_rss:.0} MB"),
            "< 1000 MB",
            our_rss < 1000.0,
        ));
        match imagemagick(source, &stack, &root.join(format!("magick.{ext}"))) {
            Some((theirs, their_rss, true)) => {
                rows.push(Row::info(
                    "render16",
                    "the same with ImageMagick (Debian's Q16 convert … -composite)",
                    format!("{:.2} s, {their_rss:.0} MB peak", theirs.as_secs_f64()),
                ));
                let speedup = theirs.as_secs_f64() / ours.as_secs_f64();
                rows.push(Row::judged(
                    "render16",
                    "retouchd's speed-up over ImageMagick",
                    format!("{speedup:.1}×"),
                    "> 1×",
                    speedup > 1.0,
                ));
            }
            _ => rows.push(Row::info(
                "render16",
                "ImageMagick",
                "not installed, or failed (apt-get install imagemagick)",
            )),
        }
    }
    let _ = std::fs::remove_dir_all(&root);
    rows
}
