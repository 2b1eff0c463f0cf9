//! TIFF photos, the raw developers' hand-off format (Lightroom, Capture One): reading 8- or
//! 16-bit RGB, RGBA or grey TIFFs (strips or tiles; uncompressed, LZW, Deflate, PackBits or
//! JPEG; either byte order; BigTIFF) with their ICC profile, XMP, IPTC (Photoshop resources)
//! and EXIF (IFD0's descriptive tags with the EXIF and GPS sub-IFDs); and writing the finished
//! photo as a TIFF at the image's own depth with the same metadata.

use std::io::{Read, Seek, Write};

use tiff::decoder::{Decoder, DecodingResult};
use tiff::encoder::{TiffEncoder, colortype};
use tiff::tags::{Tag, Type};

use super::Failure;
use super::exif::{self, Field, Fields};
use super::image::{Image, Samples};
use super::metadata::Metadata;

/// The most pixels a TIFF may have to be decoded (a header can claim anything).
const MAX_PIXELS: u64 = 400_000_000;
const XMP: u16 = 700;
const IPTC_NAA: u16 = 33723;
const PHOTOSHOP: u16 = 34377;

/// How the finished TIFF is compressed (`[watch.output] tiff_compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TiffCompression {
    None,
    Lzw,
    #[default]
    Deflate,
    PackBits,
}

impl TiffCompression {
    pub const NAMES: &'static str = "\"deflate\", \"lzw\", \"packbits\" or \"none\"";

    pub fn parse(text: &str) -> Option<TiffCompression> {
        match text {
            "none" => Some(TiffCompression::None),
            "lzw" => Some(TiffCompression::Lzw),
            "deflate" | "zip" => Some(TiffCompression::Deflate),
            "packbits" => Some(TiffCompression::PackBits),
            _ => None,
        }
    }
}

fn decoder<R: Read + Seek>(reader: R) -> Result<Decoder<R>, String> {
    let mut limits = tiff::decoder::Limits::default();
    limits.decoding_buffer_size = (MAX_PIXELS * 8) as usize;
    limits.intermediate_buffer_size = 1 << 30;
    Decoder::new(reader).map(|d| d.with_limits(limits)).map_err(|e| format!("not a readable TIFF ({e})"))
}

/// The size of a TIFF's first image, when retouchd can read it (checked from its header).
pub fn check_header(reader: impl Read + Seek) -> Result<(u32, u32), String> {
    let mut decoder = decoder(reader)?;
    layout(&mut decoder).map(|l| l.size)
}

/// What the first image's header says: size, channels in and out (grey becomes RGB).
struct Layout {
    size: (u32, u32),
    in_ch: usize,
    out_ch: usize,
}

fn layout<R: Read + Seek>(decoder: &mut Decoder<R>) -> Result<Layout, String> {
    use tiff::ColorType as C;
    let (width, height) = decoder.dimensions().map_err(|e| format!("not a readable TIFF ({e})"))?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(format!("the TIFF claims {width}×{height} pixels, more than retouchd decodes"));
    }
    let color = decoder.colortype().map_err(|e| format!("not a readable TIFF ({e})"))?;
    let (in_ch, out_ch, bits) = match color {
        C::Gray(b) => (1, 3, b),
        C::GrayA(b) => (2, 4, b),
        C::RGB(b) => (3, 3, b),
        C::RGBA(b) => (4, 4, b),
        C::CMYK(_) | C::CMYKA(_) => {
            return Err("a CMYK TIFF (print separations): convert it to RGB to get a finished photo".into());
        }
        other => return Err(format!("a TIFF in {other:?}; export it as 8- or 16-bit RGB")),
    };
    if bits != 8 && bits != 16 {
        return Err(format!("a {bits}-bit TIFF; export it as 8- or 16-bit RGB"));
    }
    Ok(Layout { size: (width, height), in_ch, out_ch })
}

/// Reads a TIFF's first image and its metadata.
pub fn read(reader: impl Read + Seek) -> Result<(Image, Metadata), String> {
    let mut decoder = decoder(reader)?;
    let Layout { size: (width, height), in_ch, out_ch } = layout(&mut decoder)?;
    let meta = metadata(&mut decoder);
    let pixels = width as usize * height as usize;
    let samples = match decoder.read_image().map_err(|e| format!("the TIFF data is damaged ({e})"))? {
        DecodingResult::U8(s) if s.len() >= pixels * in_ch => Samples::Eight(as_rgb(s, in_ch, out_ch, pixels)),
        DecodingResult::U16(s) if s.len() >= pixels * in_ch => Samples::Sixteen(as_rgb(s, in_ch, out_ch, pixels)),
        _ => return Err("a TIFF of signed or floating-point samples; export it as 8- or 16-bit RGB".into()),
    };
    Ok((Image { width, height, channels: out_ch, samples }, meta))
}

/// Decoded samples as RGB(A), kept in place when they already are (a 45-megapixel 16-bit
/// photo is 270 MB: never copied for nothing).
fn as_rgb<T: Copy>(mut samples: Vec<T>, in_ch: usize, out_ch: usize, pixels: usize) -> Vec<T> {
    samples.truncate(pixels * in_ch);
    if in_ch == out_ch { samples } else { super::image::grey_to_rgb(&samples, in_ch, out_ch, pixels) }
}

/// A TIFF's metadata and size, reading only its directories.
pub fn read_metadata(reader: impl Read + Seek) -> Result<(Metadata, (u32, u32)), String> {
    let mut decoder = decoder(reader)?;
    let size = decoder.dimensions().map_err(|e| format!("not a readable TIFF ({e})"))?;
    Ok((metadata(&mut decoder), size))
}

/// The raw bytes of a tag of the current image (in the file's byte order).
fn raw<R: Read + Seek>(decoder: &mut Decoder<R>, tag: u16) -> Option<Vec<u8>> {
    let mut buf = tiff::tags::ValueBuffer::empty(Type::BYTE);
    decoder.image_ifd().find_tag_buf(Tag::from_u16_exhaustive(tag), &mut buf).ok()??;
    Some(buf.as_bytes().to_vec())
}

/// The fields of a directory, little-endian, keeping those `keep` accepts.
fn fields_of<R: Read + Seek>(
    decoder: &mut Decoder<R>,
    dir: Option<&tiff::Directory>,
    keep: impl Fn(u16) -> bool,
) -> Vec<Field> {
    let tags: Vec<Tag> = match dir {
        Some(dir) => dir.iter().map(|(tag, _)| tag).collect(),
        None => {
            let ifd = decoder.image_ifd();
            exif::DESCRIPTIVE
                .iter()
                .map(|&t| Tag::from_u16_exhaustive(t))
                .filter(|&t| ifd.find_entry(t).is_some())
                .collect()
        }
    };
    let mut out = Vec::new();
    for tag in tags.into_iter().filter(|t| keep(t.to_u16())) {
        let mut buf = tiff::tags::ValueBuffer::empty(Type::BYTE);
        let found = match dir {
            Some(dir) => decoder.read_directory_tags(dir).find_tag_buf(tag, &mut buf),
            None => decoder.image_ifd().find_tag_buf(tag, &mut buf),
        };
        if let Ok(Some(_)) = found {
            buf.set_byte_order(tiff::tags::ByteOrder::LittleEndian);
            let Ok(count) = u32::try_from(buf.count()) else { continue };
            out.push(Field {
                tag: tag.to_u16(),
                kind: buf.data_type().to_u16(),
                count,
                value: buf.as_bytes().to_vec(),
            });
        }
    }
    out
}

/// The metadata of the current image: what cannot be read is left out, never an error.
fn metadata<R: Read + Seek>(decoder: &mut Decoder<R>) -> Metadata {
    let sub_ifd = |decoder: &mut Decoder<R>, tag: Tag| -> Option<tiff::Directory> {
        let pointer = decoder.find_tag(tag).ok()??.into_ifd_pointer().ok()?;
        decoder.read_directory(pointer).ok()
    };
    let exif_dir = sub_ifd(decoder, Tag::ExifDirectory);
    let gps_dir = sub_ifd(decoder, Tag::GpsDirectory);
    let fields = Fields {
        main: fields_of(decoder, None, |_| true),
        exif: exif_dir.as_ref().map(|d| fields_of(decoder, Some(d), |t| t != 0xA005)).unwrap_or_default(),
        gps: gps_dir.as_ref().map(|d| fields_of(decoder, Some(d), |_| true)).unwrap_or_default(),
    };
    let iptc = raw(decoder, PHOTOSHOP).or_else(|| raw(decoder, IPTC_NAA).map(|records| iptc_resource(&records)));
    Metadata {
        icc: raw(decoder, Tag::IccProfile.to_u16()),
        exif: (fields != Fields::default()).then(|| exif::build(&fields)),
        xmp: raw(decoder, XMP),
        iptc,
    }
}

/// Bare IPTC records as a Photoshop image resource block (`8BIM`, resource 0x0404), the form
/// [`Metadata::iptc`] holds.
fn iptc_resource(records: &[u8]) -> Vec<u8> {
    let mut block = b"8BIM\x04\x04\0\0".to_vec();
    block.extend_from_slice(&(records.len() as u32).to_be_bytes());
    block.extend_from_slice(records);
    if records.len() % 2 == 1 {
        block.push(0);
    }
    block
}

/// Writes `image` as a TIFF at its own depth (8 or 16 bits, RGB or RGBA) with `meta`. A
/// failing writer (a full disk) is [`Failure::Io`].
pub fn write(
    image: &Image,
    meta: &Metadata,
    compression: TiffCompression,
    out: impl Write + Seek,
) -> Result<(), Failure> {
    use tiff::encoder::{Compression, DeflateLevel, Predictor};
    let fail = |e: tiff::TiffError| match e {
        tiff::TiffError::IoError(e) => Failure::Io(e),
        other => Failure::Bad(format!("cannot write the TIFF: {other}")),
    };
    let (codec, predict) = match compression {
        TiffCompression::None => (Compression::Uncompressed, false),
        TiffCompression::Lzw => (Compression::Lzw, true),
        TiffCompression::Deflate => (Compression::Deflate(DeflateLevel::Fast), true),
        TiffCompression::PackBits => (Compression::Packbits, false),
    };
    let mut tiff = TiffEncoder::new(out).map_err(fail)?.with_compression(codec);
    if predict {
        tiff = tiff.with_predictor(Predictor::Horizontal);
    }
    let fields = meta.exif.as_deref().and_then(exif::fields).unwrap_or_default();
    let mut sub_ifd = |entries: &[Field]| -> Result<Option<u32>, Failure> {
        if entries.is_empty() {
            return Ok(None);
        }
        let mut dir = tiff.extra_directory().map_err(fail)?;
        put_fields(&mut dir, entries).map_err(fail)?;
        Ok(Some(dir.finish_with_offsets().map_err(fail)?.offset))
    };
    let pointers = [(Tag::ExifDirectory, sub_ifd(&fields.exif)?), (Tag::GpsDirectory, sub_ifd(&fields.gps)?)];
    let main: Vec<Field> = fields.main.into_iter().filter(|f| exif::DESCRIPTIVE.contains(&f.tag)).collect();
    let mut blobs = Vec::new();
    for (tag, kind, bytes) in [
        (Tag::IccProfile.to_u16(), Type::UNDEFINED, &meta.icc),
        (XMP, Type::BYTE, &meta.xmp),
        (PHOTOSHOP, Type::UNDEFINED, &meta.iptc),
    ] {
        if let Some(bytes) = bytes {
            blobs.push(Field { tag, kind: kind.to_u16(), count: bytes.len() as u32, value: bytes.clone() });
        }
    }
    let describe = |dir: &mut tiff::encoder::DirectoryEncoder<'_, _, _>| -> tiff::TiffResult<()> {
        put_fields(dir, &main)?;
        put_fields(dir, &blobs)?;
        for (tag, at) in pointers {
            if let Some(at) = at {
                dir.write_tag(tag, at)?;
            }
        }
        Ok(())
    };
    let (w, h) = (image.width, image.height);
    let alpha = image.channels == 4;
    // RGBA colour types rather than RGB with an extra sample: the crate's predictor steps by
    // the colour type's samples. The fourth is declared unassociated (straight) alpha.
    macro_rules! encode {
        ($color:ty, $samples:expr) => {{
            let mut encoder = tiff.new_image::<$color>(w, h).map_err(fail)?;
            if alpha {
                let straight = tiff::tags::ExtraSamples::UnassociatedAlpha.to_u16();
                encoder.encoder().write_tag(Tag::ExtraSamples, straight).map_err(fail)?;
            }
            describe(encoder.encoder()).map_err(fail)?;
            encoder.write_data($samples).map_err(fail)
        }};
    }
    match (&image.samples, alpha) {
        (Samples::Eight(s), false) => encode!(colortype::RGB8, s),
        (Samples::Eight(s), true) => encode!(colortype::RGBA8, s),
        (Samples::Sixteen(s), false) => encode!(colortype::RGB16, s),
        (Samples::Sixteen(s), true) => encode!(colortype::RGBA16, s),
    }
}

/// Adds fields (values little-endian) to a directory being written.
fn put_fields<W: Write + Seek, K: tiff::encoder::TiffKind>(
    dir: &mut tiff::encoder::DirectoryEncoder<'_, W, K>,
    fields: &[Field],
) -> tiff::TiffResult<()> {
    let mut entries = tiff::Directory::empty();
    for field in fields {
        let Some(kind) = Type::from_u16(field.kind) else { continue };
        let mut value = field.value.clone();
        if cfg!(target_endian = "big") {
            exif::swap_values(field.kind, &mut value);
        }
        let entry = dir.write_entry_bytes(kind, &value)?;
        entries.extend([(Tag::from_u16_exhaustive(field.tag), entry)]);
    }
    dir.extend_from(&entries);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(samples: Samples, channels: usize) -> Image {
        Image { width: 5, height: 3, channels, samples }
    }

    fn meta() -> Metadata {
        let exif = exif::build(&exif::tests::tests_fields());
        Metadata {
            icc: Some(b"\0\0\x01\x00ProPhoto-like profile bytes".to_vec()),
            exif: Some(exif),
            xmp: Some(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>".to_vec()),
            iptc: Some(iptc_resource(b"\x1c\x02\x05\0\x05Title")),
        }
    }

    #[test]
    fn every_depth_layout_and_compression_reads_back_as_written_with_its_metadata() {
        let sixteen: Vec<u16> = (0..15 * 3).map(|i| (i * 1457 % 65536) as u16).collect();
        let eight_rgba: Vec<u8> = (0..15 * 4).map(|i| (i * 37 % 256) as u8).collect();
        for image in [photo(Samples::Sixteen(sixteen), 3), photo(Samples::Eight(eight_rgba), 4)] {
            for compression in
                [TiffCompression::None, TiffCompression::Lzw, TiffCompression::Deflate, TiffCompression::PackBits]
            {
                let mut file = std::io::Cursor::new(Vec::new());
                write(&image, &meta(), compression, &mut file).unwrap();
                file.set_position(0);
                let (read_back, read_meta) = read(&mut file).unwrap();
                assert_eq!(read_back, image, "{compression:?}");
                let (wrote, got) = (meta(), read_meta.clone());
                assert_eq!((&got.icc, &got.xmp, &got.iptc), (&wrote.icc, &wrote.xmp, &wrote.iptc), "{compression:?}");
                // EXIF: the sub-IFDs whole, and IFD0's descriptive tags (the sample's ImageWidth
                // is the old file's structure, not carried; the encoder adds a resolution).
                let (sent, came) = (exif::tests::tests_fields(), exif::fields(&got.exif.unwrap()).unwrap());
                assert_eq!((&came.exif, &came.gps), (&sent.exif, &sent.gps));
                assert_eq!(read_meta.orientation(), 6);
                file.set_position(0);
                assert_eq!(check_header(&mut file).unwrap(), (5, 3));
            }
        }
    }

    #[test]
    fn no_gps_leaves_the_location_out_of_a_tiff_and_keeps_the_rest() {
        let image = photo(Samples::Sixteen(vec![1000; 45]), 3);
        let filtered = meta().filtered(crate::render::MetadataPolicy::NoGps);
        let mut file = std::io::Cursor::new(Vec::new());
        write(&image, &filtered, TiffCompression::Deflate, &mut file).unwrap();
        file.set_position(0);
        let (_, read_meta) = read(&mut file).unwrap();
        let fields = exif::fields(read_meta.exif.as_deref().unwrap()).unwrap();
        assert!(fields.gps.is_empty(), "no GPS block");
        assert_eq!(fields.exif, exif::tests::tests_fields().exif, "the camera's EXIF stays");
        assert_eq!(read_meta.icc, meta().icc);
    }

    #[test]
    fn unreadable_kinds_are_refused_in_plain_words() {
        let mut cmyk = std::io::Cursor::new(Vec::new());
        TiffEncoder::new(&mut cmyk).unwrap().write_image::<colortype::CMYK8>(2, 2, &[0u8; 16]).unwrap();
        cmyk.set_position(0);
        assert!(read(&mut cmyk).unwrap_err().contains("CMYK"));
        let mut float = std::io::Cursor::new(Vec::new());
        TiffEncoder::new(&mut float).unwrap().write_image::<colortype::RGB32Float>(2, 2, &[0f32; 12]).unwrap();
        float.set_position(0);
        assert!(read(&mut float).unwrap_err().contains("8- or 16-bit"));
        assert!(read(std::io::Cursor::new(b"II*\0garbage".to_vec())).unwrap_err().contains("not a readable TIFF"));
    }
}
