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
                        let shift = (falloff * 60.0) as i16 * if lighter { 1 } else { -1 };
                        let v = (128 + shift).clamp(0, 255) as u8;
                        px.copy_from_slice(&[v, v, v, 255]);
                    }
                    LayerLook::Patches => px.copy_from_slice(&[205, 160, 140, 255]),
                    LayerLook::Shade => px.copy_from_slice(&[150, 110, 95, (falloff * 128.0) as u8]),
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder.write_header().expect("in-memory PNG header");
        writer.write_image_data(&data).expect("in-memory PNG data");
    }
    out
}
