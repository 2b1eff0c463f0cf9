//! Glasses Anti Glare's patch layout: the server returns a small patch image instead of a
//! full-frame layer, and result.json gives, per face, a 2x3 matrix mapping the photo's
//! coordinates to the patch's (`glassesAntiGlarePatchMatrix`, with `patchWidth`/`patchHeight`).
//! Each photo pixel's centre is mapped through the matrix of the first face whose patch it lands
//! in, and the patch is sampled there (bicubic, Keys a = -0.5, on premultiplied alpha; outside
//! the patch is transparent). The result is a full-size layer, written as a 16-bit RGBA PNG in
//! the render's work folder, so it is composited with its blend mode (linear light) and put in
//! the PSD like any other layer. A patch without a matrix is a reason not to composite, never a
//! patch pasted at a corner.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::Failure;
use super::decode::LayerRows;
use crate::api::result_json::Face;

/// The plugin whose layer may be a patch.
pub const GLASSES: &str = "Glasses Anti Glare";

/// A patch image, whole, as RGBA floats with alpha premultiplied.
struct Patch {
    width: usize,
    height: usize,
    premultiplied: Vec<f32>,
}

impl Patch {
    fn read(path: &Path) -> Result<Patch, Failure> {
        let mut rows = LayerRows::open(path).map_err(Failure::Bad)?;
        let (width, height) = (rows.size().0 as usize, rows.size().1 as usize);
        if width == 0 || height == 0 {
            return Err(Failure::Bad(format!("the {GLASSES} patch has no pixels")));
        }
        let mut premultiplied = vec![0.0f32; width * height * 4];
        for row in premultiplied.chunks_exact_mut(width * 4) {
            rows.next_row(row).map_err(Failure::Bad)?;
            for px in row.chunks_exact_mut(4) {
                let a = px[3];
                px[0] *= a;
                px[1] *= a;
                px[2] *= a;
            }
        }
        Ok(Patch { width, height, premultiplied })
    }

    /// The pixel at (x, y), clamped to the edge.
    fn at(&self, x: isize, y: isize) -> &[f32] {
        let x = x.clamp(0, self.width as isize - 1) as usize;
        let y = y.clamp(0, self.height as isize - 1) as usize;
        &self.premultiplied[(y * self.width + x) * 4..][..4]
    }

    /// Bicubic sample at patch coordinates (u, v) (pixel centres at n + 0.5), straight RGBA.
    fn sample(&self, u: f64, v: f64) -> [f32; 4] {
        let (x, y) = (u - 0.5, v - 0.5);
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let wx = [keys(1.0 + fx), keys(fx), keys(1.0 - fx), keys(2.0 - fx)];
        let wy = [keys(1.0 + fy), keys(fy), keys(1.0 - fy), keys(2.0 - fy)];
        let mut sum = [0.0f64; 4];
        for (j, wyj) in wy.iter().enumerate() {
            for (i, wxi) in wx.iter().enumerate() {
                let px = self.at(x0 as isize - 1 + i as isize, y0 as isize - 1 + j as isize);
                let w = wxi * wyj;
                for c in 0..4 {
                    sum[c] += w * f64::from(px[c]);
                }
            }
        }
        let a = sum[3].clamp(0.0, 1.0);
        if a <= 0.0 {
            return [0.0; 4];
        }
        let straight = |c: f64| (c / a).clamp(0.0, 1.0) as f32;
        [straight(sum[0]), straight(sum[1]), straight(sum[2]), a as f32]
    }
}

/// The bicubic (Keys, a = -0.5) weight at distance `t`.
fn keys(t: f64) -> f64 {
    const A: f64 = -0.5;
    let t = t.abs();
    if t <= 1.0 {
        ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0
    } else if t < 2.0 {
        ((A * t - 5.0 * A) * t + 8.0 * A) * t - 4.0 * A
    } else {
        0.0
    }
}

/// One face's placement: its matrix and the part of the patch it covers.
struct Placement {
    m: [f64; 6],
    width: f64,
    height: f64,
}

/// Writes the full-size (`size`) layer for the patch image `patch` placed by `faces`' matrices
/// into `out` (a 16-bit RGBA PNG).
pub fn place(patch_path: &Path, faces: &[&Face], size: (u32, u32), out: &Path) -> Result<PathBuf, Failure> {
    let patch = Patch::read(patch_path)?;
    let placements: Vec<Placement> = faces
        .iter()
        .filter_map(|f| {
            let m = f.patch_matrix?;
            let (w, h) = f.patch_size.unwrap_or((patch.width as u32, patch.height as u32));
            Some(Placement {
                m,
                width: f64::from(w).min(patch.width as f64),
                height: f64::from(h).min(patch.height as f64),
            })
        })
        .collect();
    if placements.is_empty() {
        return Err(Failure::Bad(format!(
            "the {GLASSES} layer is a patch ({}×{}) but result.json gives no glassesAntiGlarePatchMatrix to place it \
             (LayoutMode = \"patch\"); the layers are delivered as they are (LayoutMode = \"full\" returns a full-size layer)",
            patch.width, patch.height
        )));
    }
    let (width, height) = size;
    let file = std::fs::File::create(out).map_err(Failure::Io)?;
    let mut encoder = png::Encoder::new(BufWriter::with_capacity(1 << 20, file), width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Sixteen);
    encoder.set_compression(png::Compression::Fast);
    let bad = |e: png::EncodingError| match e {
        png::EncodingError::IoError(e) => Failure::Io(e),
        other => Failure::Bad(format!("cannot write the placed {GLASSES} layer: {other}")),
    };
    let mut writer = encoder.write_header().map_err(bad)?;
    let mut stream = writer.stream_writer().map_err(bad)?;
    let mut row = vec![0u8; width as usize * 8];
    for y in 0..height {
        row.fill(0);
        let cy = f64::from(y) + 0.5;
        for (x, px) in row.chunks_exact_mut(8).enumerate() {
            let cx = x as f64 + 0.5;
            let inside = placements.iter().find_map(|p| {
                let u = p.m[0] * cx + p.m[1] * cy + p.m[2];
                let v = p.m[3] * cx + p.m[4] * cy + p.m[5];
                (u >= 0.0 && v >= 0.0 && u < p.width && v < p.height).then_some((u, v))
            });
            if let Some((u, v)) = inside {
                for (c, value) in patch.sample(u, v).into_iter().enumerate() {
                    let q = (value * 65535.0).round() as u16;
                    px[c * 2..c * 2 + 2].copy_from_slice(&q.to_be_bytes());
                }
            }
        }
        stream.write_all(&row).map_err(Failure::Io)?;
    }
    stream.finish().map_err(bad)?;
    Ok(out.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bicubic_weights_sum_to_one_and_interpolate() {
        for f in [0.0, 0.25, 0.5, 0.9] {
            let sum: f64 = [keys(1.0 + f), keys(f), keys(1.0 - f), keys(2.0 - f)].iter().sum();
            assert!((sum - 1.0).abs() < 1e-12, "{f}: {sum}");
        }
        assert_eq!((keys(0.0), keys(1.0), keys(2.0)), (1.0, 0.0, 0.0));
    }

    fn patch_png(path: &Path, w: u32, h: u32, rgba: [u8; 4]) {
        let mut encoder = png::Encoder::new(std::fs::File::create(path).unwrap(), w, h);
        encoder.set_color(png::ColorType::Rgba);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&rgba.repeat((w * h) as usize)).unwrap();
    }

    #[test]
    fn a_patch_lands_where_its_matrix_says_and_nowhere_else_and_without_a_matrix_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let patch = dir.path().join("patch.png");
        patch_png(&patch, 4, 4, [200, 100, 50, 255]);
        // Photo pixels 10..14 × 20..24 map onto the 4×4 patch (a translation).
        let face = Face { patch_matrix: Some([1.0, 0.0, -10.0, 0.0, 1.0, -20.0]), ..Face::default() };
        let out = place(&patch, &[&face], (40, 30), &dir.path().join("placed.png")).unwrap();
        let mut reader =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(out).unwrap())).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        let alpha = |x: usize, y: usize| u16::from_be_bytes([buf[(y * 40 + x) * 8 + 6], buf[(y * 40 + x) * 8 + 7]]);
        let red = |x: usize, y: usize| u16::from_be_bytes([buf[(y * 40 + x) * 8], buf[(y * 40 + x) * 8 + 1]]);
        assert_eq!(alpha(12, 22), 65535);
        assert_eq!(red(12, 22), 200 * 257, "a flat patch samples to its own colour");
        for (x, y) in [(9, 22), (14, 22), (12, 19), (12, 24), (0, 0), (39, 29)] {
            assert_eq!(alpha(x, y), 0, "({x}, {y}) is outside the patch: transparent");
        }
        let Err(Failure::Bad(why)) = place(&patch, &[&Face::default()], (40, 30), &dir.path().join("x.png")) else {
            panic!("a patch without its matrix is never placed")
        };
        assert!(why.contains("glassesAntiGlarePatchMatrix"), "{why}");
    }
}
