//! Small, real, decodable images and archives made in memory: the simulator's result layers, the
//! demo's sample photos, and test fixtures.

use std::io::{Cursor, Write};

/// A PNG of `width` × `height` with a gentle gradient tinted by `tint`.
pub fn png_bytes(width: u32, height: u32, tint: [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("in-memory PNG header");
        let data = gradient(width, height, tint, true);
        writer.write_image_data(&data).expect("in-memory PNG data");
    }
    out
}

/// A 16-bit RGB TIFF (Deflate, little-endian strips) of `width` × `height`: a gradient whose
/// samples use all 16 bits, tinted by `tint`.
pub fn tiff16_bytes(width: u32, height: u32, tint: [u8; 3]) -> Vec<u8> {
    let samples: Vec<u16> = gradient(width, height, tint, false)
        .chunks_exact(3)
        .enumerate()
        .flat_map(|(i, p)| p.iter().map(move |&v| u16::from(v) * 257 + (i % 257) as u16).collect::<Vec<_>>())
        .collect();
    let mut out = std::io::Cursor::new(Vec::new());
    tiff::encoder::TiffEncoder::new(&mut out)
        .expect("in-memory TIFF")
        .with_compression(tiff::encoder::Compression::Deflate(tiff::encoder::DeflateLevel::Fast))
        .write_image::<tiff::encoder::colortype::RGB16>(width, height, &samples)
        .expect("in-memory TIFF data");
    out.into_inner()
}

/// A baseline JPEG of `width` × `height` with a gradient tinted by `tint`.
pub fn jpeg_bytes(width: u16, height: u16, tint: [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    let data = gradient(width as u32, height as u32, tint, false);
    jpeg_encoder::Encoder::new(&mut out, 85)
        .encode(&data, width, height, jpeg_encoder::ColorType::Rgb)
        .expect("in-memory JPEG");
    out
}

fn gradient(width: u32, height: u32, tint: [u8; 3], alpha: bool) -> Vec<u8> {
    let channels = if alpha { 4 } else { 3 };
    let mut data = Vec::with_capacity((width * height) as usize * channels);
    for y in 0..height {
        for x in 0..width {
            let fx = (x * 255 / width.max(1)) as u8;
            let fy = (y * 255 / height.max(1)) as u8;
            data.push(tint[0] / 2 + fx / 2);
            data.push(tint[1] / 2 + fy / 2);
            data.push(tint[2]);
            if alpha {
                data.push(255);
            }
        }
    }
    data
}

/// A ZIP archive holding the given named entries (deflated).
pub fn zip_of<N: AsRef<str>>(entries: &[(N, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, bytes) in entries {
        writer.start_file(name.as_ref(), options).expect("in-memory zip entry");
        writer.write_all(bytes).expect("in-memory zip write");
    }
    writer.finish().expect("in-memory zip").into_inner()
}

/// What a plugin's layer looks like, roughly as the real plugins' do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerLook {
    /// Transparent except a few opaque patches (Heal's retouched blemishes).
    Patches,
    /// Opaque 50 % grey with soft lighter and darker areas (Dodge Burn, Portrait Volumes,
    /// used with soft light or linear light, where 50 % grey changes nothing).
    GreyRelief,
    /// Transparent except soft, half-opaque darker areas (a darken layer taking out shine).
    Shade,
}

/// A full-size layer PNG (RGBA, 8 bits) with the given look; `seed` places its features.
pub fn layer_png(look: LayerLook, width: u32, height: u32, seed: u64) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut data = match look {
        LayerLook::GreyRelief => [128u8, 128, 128, 255].repeat(w * h),
        LayerLook::Patches | LayerLook::Shade => vec![0u8; w * h * 4],
    };
    let features = 3 + rng.usize(..4);
    for _ in 0..features {
        let (cx, cy) = (rng.f32() * width as f32, rng.f32() * height as f32);
        let r = (width.min(height) as f32 * (0.04 + rng.f32() * 0.12)).max(1.0);
        let lighter = rng.bool();
        let (x0, x1) = (((cx - r).max(0.0)) as usize, ((cx + r) as usize + 1).min(w));
        let (y0, y1) = (((cy - r).max(0.0)) as usize, ((cy + r) as usize + 1).min(h));
        for y in y0..y1 {
            for x in x0..x1 {
                let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt() / r;
                if d >= 1.0 {
                    continue;
                }
                let falloff = 1.0 - d * d;
                let px = &mut data[(y * w + x) * 4..(y * w + x) * 4 + 4];
                match look {
                    LayerLook::GreyRelief => {
                        let shift = (falloff * 36.0) as i16 * if lighter { 1 } else { -1 };
                        let v = (128 + shift).clamp(0, 255) as u8;
                        px.copy_from_slice(&[v, v, v, 255]);
                    }
                    LayerLook::Patches => px.copy_from_slice(&[205, 160, 140, 255]),
                    LayerLook::Shade => px.copy_from_slice(&[150, 110, 95, (falloff * 64.0) as u8]),
                }
            }
        }
    }
    rgba_png(width, height, &data)
}

fn rgba_png(width: u32, height: u32, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().expect("in-memory PNG header");
        writer.write_image_data(data).expect("in-memory PNG data");
    }
    out
}

/// A Heal layer made from the photo itself: transparent except small round patches over
/// spots clearly darker than an even surrounding, each filled with the colour around it, as a
/// healing brush would. `rgb` is the photo, 8-bit RGB, `width` × `height`.
pub fn heal_layer_png(rgb: &[u8], width: u32, height: u32, seed: u64) -> Vec<u8> {
    let (w, h) = (width as usize, height as usize);
    let mut data = vec![0u8; w * h * 4];
    let mut rng = fastrand::Rng::with_seed(seed);
    let r = (width.min(height) as f32 * 0.008).max(1.5);
    let px = |x: usize, y: usize| -> [u8; 3] {
        let i = (y.min(h - 1) * w + x.min(w - 1)) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    };
    let luma = |p: [u8; 3]| u32::from(p[0]) * 3 + u32::from(p[1]) * 6 + u32::from(p[2]);
    let stride = ((r / 2.0) as usize).max(1);
    let jitter = rng.usize(..stride);
    let centres = (jitter..h).step_by(stride).flat_map(|y| (jitter..w).step_by(stride).map(move |x| (x, y)));
    for (cx, cy) in centres {
        let ring: Vec<[u8; 3]> = (0..8)
            .map(|k| {
                let a = k as f32 * std::f32::consts::TAU / 8.0;
                px((cx as f32 + a.cos() * r * 2.5).max(0.0) as usize, (cy as f32 + a.sin() * r * 2.5).max(0.0) as usize)
            })
            .collect();
        let around: [u32; 3] = std::array::from_fn(|c| ring.iter().map(|p| u32::from(p[c])).sum::<u32>() / 8);
        let around_px = around.map(|v| v as u8);
        let spread =
            ring.iter().map(|p| luma(*p)).max().unwrap_or(0) - ring.iter().map(|p| luma(*p)).min().unwrap_or(0);
        if luma(px(cx, cy)) + 60 > luma(around_px) || spread > 120 {
            continue; // not darker than an even surrounding: nothing to heal
        }
        let (x0, x1) = ((cx as f32 - r) as usize, ((cx as f32 + r) as usize + 1).min(w));
        let (y0, y1) = ((cy as f32 - r).max(0.0) as usize, ((cy as f32 + r) as usize + 1).min(h));
        for y in y0..y1 {
            for x in x0.min(w)..x1 {
                if ((x as f32 - cx as f32).powi(2) + (y as f32 - cy as f32).powi(2)).sqrt() <= r {
                    data[(y * w + x) * 4..(y * w + x) * 4 + 4].copy_from_slice(&[
                        around_px[0],
                        around_px[1],
                        around_px[2],
                        255,
                    ]);
                }
            }
        }
    }
    rgba_png(width, height, &data)
}

/// A stylised portrait JPEG (backdrop, shoulders, face with a few dark spots) of `width` ×
/// `height`: something a person recognises in the demo's before/after picture.
pub fn portrait_jpeg(width: u16, height: u16, skin: [u8; 3]) -> Vec<u8> {
    let (w, h) = (f32::from(width), f32::from(height));
    let mut rng = fastrand::Rng::with_seed(u64::from(width) * 7 + u64::from(height));
    let spots: Vec<(f32, f32)> =
        (0..12).map(|_| (0.5 + (rng.f32() - 0.5) * 0.2, 0.42 + (rng.f32() - 0.5) * 0.26)).collect();
    let mut data = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = (f32::from(x) / w, f32::from(y) / h);
            let grain = rng.f32() * 6.0;
            let mut px = [40.0 + 60.0 * fy + grain, 60.0 + 50.0 * fy + grain, 90.0 + 40.0 * (1.0 - fy) + grain];
            let face = ((fx - 0.5) / 0.2).powi(2) + ((fy - 0.42) / 0.24).powi(2);
            let shoulders = ((fx - 0.5) / 0.45).powi(2) + ((fy - 1.05) / 0.3).powi(2);
            let hair = ((fx - 0.5) / 0.23).powi(2) + ((fy - 0.33) / 0.22).powi(2);
            if shoulders < 1.0 {
                px = [60.0 + grain, 62.0 + grain, 70.0 + grain];
            }
            if hair < 1.0 && fy < 0.4 {
                px = [70.0 + grain, 45.0 + grain, 30.0 + grain];
            }
            if face < 1.0 {
                let shade = 1.0 - 0.25 * face;
                px = skin.map(|c| f32::from(c) * shade + grain);
                for (sx, sy) in &spots {
                    if ((fx - sx) * w).powi(2) + ((fy - sy) * h).powi(2) < (w * 0.006).powi(2) {
                        px = px.map(|c| c * 0.7);
                    }
                }
                for eye in [0.42, 0.58] {
                    if ((fx - eye) / 0.03).powi(2) + ((fy - 0.4) / 0.015).powi(2) < 1.0 {
                        px = [30.0, 25.0, 25.0];
                    }
                }
            }
            data.extend(px.map(|c| c.clamp(0.0, 255.0) as u8));
        }
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&data, width, height, jpeg_encoder::ColorType::Rgb)
        .expect("in-memory JPEG");
    out
}

/// Two images of one size side by side (a small gap between), halved, as a PNG: a before/after.
pub fn side_by_side_png(left: &[u8], right: &[u8], width: u32, height: u32) -> Vec<u8> {
    let (hw, hh) = (width / 2, height / 2);
    let gap = 8;
    let out_w = hw * 2 + gap;
    let mut data = vec![255u8; (out_w * hh * 3) as usize];
    for (image, x0) in [(left, 0), (right, hw + gap)] {
        for y in 0..hh {
            for x in 0..hw {
                let mut sum = [0u32; 3];
                for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let i = (((y * 2 + dy) * width + x * 2 + dx) * 3) as usize;
                    for c in 0..3 {
                        sum[c] += u32::from(image[i + c]);
                    }
                }
                let o = ((y * out_w + x0 + x) * 3) as usize;
                for c in 0..3 {
                    data[o + c] = (sum[c] / 4) as u8;
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, out_w, hh);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().expect("in-memory PNG header");
        writer.write_image_data(&data).expect("in-memory PNG data");
    }
    out
}
