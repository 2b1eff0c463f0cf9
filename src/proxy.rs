//! The 8-bit stand-in the service is sent for a photo it cannot take as it is (a TIFF, often
//! 16 bits): same pixel size, same colour space (no conversion, so the layers come back in the
//! space they are applied in), 16-bit samples dithered to 8 rather than cut, the orientation
//! recorded as in a camera JPEG and nothing else of the metadata. PNG when it fits the server's
//! size limit, else JPEG at quality 95. The credit and the idempotency key stay the original's;
//! the layers that come back are applied to the original's full-precision samples.

use std::fs::File;
use std::io::{Seek, Write};

use crate::formats::FileKind;
use crate::render::exif::{self, Field, Fields};
use crate::render::image::{Image, Samples};
use crate::render::metadata::Metadata;

/// JPEG quality when a PNG proxy is too large.
pub const JPEG_QUALITY: u8 = 95;

/// A proxy written to `file` (rewound, ready to send).
#[derive(Debug)]
pub struct Proxy {
    pub kind: FileKind,
    pub bytes: u64,
}

/// Why a proxy could not be made: the original is unusable (`Refused`, said in plain words), or
/// writing it failed (`Io`, a full disk: try again later).
#[derive(Debug)]
pub enum ProxyError {
    Refused(String),
    Io(std::io::Error),
}

/// Writes the proxy of the opened TIFF `original` into `out` (an empty file of our own),
/// within `max_bytes`.
pub fn make(original: &File, out: &mut File, max_bytes: u64) -> Result<Proxy, ProxyError> {
    let mut reader = original.try_clone().map_err(ProxyError::Io)?;
    reader.rewind().map_err(ProxyError::Io)?;
    let (deep, meta) = crate::render::tiff_file::read(std::io::BufReader::with_capacity(1 << 20, reader))
        .map_err(ProxyError::Refused)?;
    let proxy_meta = orientation_only(meta.orientation());
    let image = to_eight_bits(&deep);
    drop(deep); // the 16-bit samples are not needed while encoding (270 MB at 45 MP)
    let mut bytes = Vec::new();
    crate::render::encode::write_png(&image, &proxy_meta, &mut bytes).map_err(ProxyError::Refused)?;
    let mut kind = FileKind::Png;
    if bytes.len() as u64 > max_bytes {
        bytes.clear();
        crate::render::encode::write_jpeg(&image, &proxy_meta, JPEG_QUALITY, &mut bytes)
            .map_err(ProxyError::Refused)?;
        kind = FileKind::Jpeg;
    }
    if bytes.len() as u64 > max_bytes {
        return Err(ProxyError::Refused(format!(
            "even its 8-bit proxy (JPEG, quality {JPEG_QUALITY}) is {:.1} MB, more than the server takes ({:.0} MB)",
            bytes.len() as f64 / 1048576.0,
            max_bytes as f64 / 1048576.0
        )));
    }
    out.set_len(0).map_err(ProxyError::Io)?;
    out.rewind().map_err(ProxyError::Io)?;
    out.write_all(&bytes).map_err(ProxyError::Io)?;
    out.rewind().map_err(ProxyError::Io)?;
    Ok(Proxy { kind, bytes: bytes.len() as u64 })
}

/// EXIF holding only the orientation (none when upright), so the server turns the proxy as it
/// turns a camera JPEG.
fn orientation_only(orientation: u16) -> Metadata {
    if orientation == 1 {
        return Metadata::default();
    }
    let field = Field { tag: 0x0112, kind: 3, count: 1, value: orientation.to_le_bytes().to_vec() };
    Metadata { exif: Some(exif::build(&Fields { main: vec![field], ..Fields::default() })), ..Metadata::default() }
}

/// The image at 8 bits per sample: 16-bit samples are dithered (rounded up with the
/// probability of their fraction, from a fixed pseudo-random sequence), so smooth gradients
/// keep their mean level instead of banding; 8-bit samples are kept.
pub fn to_eight_bits(image: &Image) -> Image {
    let samples = match &image.samples {
        Samples::Eight(s) => s.clone(),
        Samples::Sixteen(s) => s
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let scaled = u32::from(v) * 255; // 0..=255 × 65535
                let (whole, fraction) = (scaled / 65535, scaled % 65535);
                let threshold = (noise(i as u64) % 65535) as u32;
                (whole + u32::from(fraction > threshold)).min(255) as u8
            })
            .collect(),
    };
    Image { width: image.width, height: image.height, channels: image.channels, samples: Samples::Eight(samples) }
}

/// A well-mixed 64-bit value for each index (SplitMix64's finaliser).
fn noise(index: u64) -> u64 {
    let mut z = index.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dithering_keeps_the_mean_level_and_never_strays_more_than_one_step() {
        // A flat 16-bit grey a third of the way between two 8-bit steps.
        let level = (100.0 + 1.0 / 3.0) * 65535.0 / 255.0;
        let flat =
            Image { width: 300, height: 100, channels: 3, samples: Samples::Sixteen(vec![level as u16; 90_000]) };
        let Samples::Eight(out) = to_eight_bits(&flat).samples else { panic!("8-bit") };
        assert!(out.iter().all(|&v| v == 100 || v == 101), "within one step");
        let mean = out.iter().map(|&v| f64::from(v)).sum::<f64>() / out.len() as f64;
        assert!((mean - 100.333).abs() < 0.01, "mean {mean} keeps the level (truncation gives 100)");
        let exact =
            Image { width: 2, height: 1, channels: 3, samples: Samples::Sixteen(vec![0, 65535, 257, 514, 0, 65535]) };
        assert_eq!(to_eight_bits(&exact).samples, Samples::Eight(vec![0, 255, 1, 2, 0, 255]), "exact steps stay exact");
    }

    #[test]
    fn only_the_orientation_goes_with_the_proxy() {
        assert_eq!(orientation_only(1), Metadata::default());
        let meta = orientation_only(6);
        assert_eq!(meta.orientation(), 6);
        assert!(meta.icc.is_none() && meta.xmp.is_none() && meta.iptc.is_none());
    }

    fn made(max_bytes: u64) -> (Result<Proxy, ProxyError>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("a.tif");
        std::fs::write(&original, crate::imagegen::tiff16_bytes(320, 200, [180, 140, 120])).unwrap();
        let mut out = tempfile::tempfile().unwrap();
        let made = make(&File::open(&original).unwrap(), &mut out, max_bytes);
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut bytes).unwrap();
        (made, bytes)
    }

    #[test]
    fn a_png_proxy_when_it_fits_a_jpeg_when_only_that_fits_and_a_reason_when_neither_does() {
        let (png, png_bytes) = made(100 << 20);
        let png = png.unwrap();
        assert_eq!((png.kind, png.bytes), (FileKind::Png, png_bytes.len() as u64), "rewound, ready to send");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("proxy.png"), &png_bytes).unwrap();
        let decoded = crate::render::decode::read_photo(&dir.path().join("proxy.png")).unwrap();
        assert_eq!((decoded.image.width, decoded.image.height, decoded.image.is_16_bit()), (320, 200, false));
        let (jpeg, jpeg_bytes) = made(png.bytes - 1);
        let jpeg = jpeg.unwrap();
        assert_eq!(jpeg.kind, FileKind::Jpeg);
        assert!(jpeg_bytes.starts_with(&[0xFF, 0xD8]) && jpeg.bytes < png.bytes);
        match made(1000).0 {
            Err(ProxyError::Refused(why)) => assert!(why.contains("more than the server takes"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
