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
