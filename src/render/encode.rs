//! Writing the finished photo: JPEG (the configured quality, 4:4:4 so colour edges stay sharp,
//! the ICC profile and the EXIF/XMP/IPTC segments) or PNG (8 or 16 bits as the image is, with
//! iCCP, eXIf and an XMP iTXt chunk).

use std::io::Write;

use super::image::{Image, Samples};
use super::metadata::{Metadata, XMP_PNG_KEYWORD};

pub fn write_jpeg(image: &Image, meta: &Metadata, quality: u8, out: impl Write) -> Result<(), String> {
    let mut encoder = jpeg_encoder::Encoder::new(out, quality);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_4_4);
    let fail = |e: jpeg_encoder::EncodingError| format!("cannot write the JPEG: {e}");
    for (number, segment) in meta.jpeg_app_segments() {
        encoder.add_app_segment(number, segment).map_err(fail)?;
    }
    if let Some(icc) = &meta.icc {
        encoder.add_icc_profile(icc).map_err(fail)?;
    }
    let (w, h) = (
        u16::try_from(image.width).map_err(|_| "too wide for a JPEG (65,535 pixels at most)")?,
        u16::try_from(image.height).map_err(|_| "too tall for a JPEG (65,535 pixels at most)")?,
    );
    encoder.encode(&image.rgb8(), w, h, jpeg_encoder::ColorType::Rgb).map_err(fail)
}

pub fn write_png(image: &Image, meta: &Metadata, out: impl Write) -> Result<(), String> {
    let fail = |e: png::EncodingError| format!("cannot write the PNG: {e}");
    let mut info = png::Info::with_size(image.width, image.height);
    info.color_type = if image.channels == 4 { png::ColorType::Rgba } else { png::ColorType::Rgb };
    info.bit_depth = if image.is_16_bit() { png::BitDepth::Sixteen } else { png::BitDepth::Eight };
    info.icc_profile = meta.icc.as_deref().map(Into::into);
    info.exif_metadata = meta.exif.as_deref().map(Into::into);
    let mut encoder = png::Encoder::with_info(out, info).map_err(fail)?;
    encoder.set_compression(png::Compression::Fast);
    if let Some(xmp) = &meta.xmp {
        encoder.add_itxt_chunk(XMP_PNG_KEYWORD.into(), String::from_utf8_lossy(xmp).into_owned()).map_err(fail)?;
    }
    let mut writer = encoder.write_header().map_err(fail)?;
    match &image.samples {
        Samples::Eight(s) => writer.write_image_data(s).map_err(fail)?,
        Samples::Sixteen(s) => {
            // Big-endian a row at a time: never a second copy of a 16-bit photo.
            let mut stream = writer.stream_writer().map_err(fail)?;
            let row_len = image.width as usize * image.channels;
            let mut bytes = Vec::with_capacity(row_len * 2);
            for row in s.chunks_exact(row_len.max(1)) {
                bytes.clear();
                bytes.extend(row.iter().flat_map(|v| v.to_be_bytes()));
                stream.write_all(&bytes).map_err(|e| format!("cannot write the PNG: {e}"))?;
            }
            return stream.finish().map_err(fail);
        }
    }
    writer.finish().map_err(fail)
}
