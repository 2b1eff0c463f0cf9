//! Reading pictures: the source photo (baseline or progressive JPEG, 8- or 16-bit PNG or TIFF)
//! whole,
//! with its metadata; and the server's layer PNGs (8 or 16 bits, grey, RGB, RGBA or palette)
//! row by row, so a stack of full-size layers never has to fit in memory at once.
//! Every problem is a plain sentence naming the file.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::image::{Image, Samples};
use super::metadata::Metadata;
use crate::formats::{self, FileKind};

/// The source photo: its pixels as stored and its metadata.
pub struct Photo {
    pub image: Image,
    pub meta: Metadata,
    pub kind: FileKind,
}

fn name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Reads a JPEG, PNG or TIFF photo. A PNG or TIFF is decoded from the file as it is read, so a
/// 45-megapixel 16-bit photo costs its pixels' memory and little more.
pub fn read_photo(path: &Path) -> Result<Photo, String> {
    use std::io::Read;
    let fail = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut file = File::open(path).map_err(fail)?;
    let mut head = [0u8; 8];
    let n = file.read(&mut head).map_err(fail)?;
    let named = |e: String| format!("{}: {e}", name(path));
    match formats::sniff(&head[..n]) {
        FileKind::Tiff | FileKind::Png => {
            std::io::Seek::rewind(&mut file).map_err(fail)?;
            let reader = BufReader::with_capacity(1 << 20, file);
            if formats::sniff(&head[..n]) == FileKind::Png {
                return read_png(reader).map_err(named);
            }
            let (image, meta) = super::tiff_file::read(reader).map_err(named)?;
            Ok(Photo { image, meta, kind: FileKind::Tiff })
        }
        FileKind::Jpeg => {
            let mut bytes = head[..n].to_vec();
            file.read_to_end(&mut bytes).map_err(fail)?;
            read_jpeg(&bytes).map_err(named)
        }
        _ => Err(format!("{} is not a JPEG, PNG or TIFF image", name(path))),
    }
}

/// A photo's metadata, kind and stored size, reading only its headers (a 100 MB PNG costs a
/// few kilobytes of memory here).
pub fn read_metadata(path: &Path) -> Result<(Metadata, FileKind, (u32, u32)), String> {
    use std::io::{Read, Seek};
    let fail = |e: &dyn std::fmt::Display| format!("cannot read {}: {e}", path.display());
    let mut file = BufReader::new(File::open(path).map_err(|e| fail(&e))?);
    let kind = formats::sniff(std::io::BufRead::fill_buf(&mut file).map_err(|e| fail(&e))?);
    let unreadable = || format!("{} is not a readable JPEG, PNG or TIFF image", name(path));
    match kind {
        FileKind::Jpeg => {
            let size = formats::image_dimensions(&mut file, kind).ok().flatten().ok_or_else(unreadable)?;
            file.rewind().map_err(|e| fail(&e))?;
            // The segments before the first scan, whatever their number.
            let mut head = vec![0u8; 2];
            file.read_exact(&mut head).map_err(|e| fail(&e))?;
            loop {
                let mut marker = [0u8; 4];
                if file.read_exact(&mut marker).is_err() || marker[0] != 0xFF || marker[1] == 0xDA {
                    break;
                }
                let len = usize::from(u16::from_be_bytes([marker[2], marker[3]])).saturating_sub(2);
                head.extend_from_slice(&marker);
                let at = head.len();
                head.resize(at + len, 0);
                if file.read_exact(&mut head[at..]).is_err() {
                    break;
                }
            }
            Ok((Metadata::from_jpeg(&head), kind, size))
        }
        FileKind::Png => {
            let reader =
                png::Decoder::new(file).read_info().map_err(|e| format!("{}: not a readable PNG ({e})", name(path)))?;
            Ok((Metadata::from_png(reader.info()), kind, reader.info().size()))
        }
        FileKind::Tiff => super::tiff_file::read_metadata(file)
            .map(|(meta, size)| (meta, kind, size))
            .map_err(|e| format!("{}: {e}", name(path))),
        _ => Err(unreadable()),
    }
}

fn read_jpeg(bytes: &[u8]) -> Result<Photo, String> {
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(1 << 16)
        .set_max_height(1 << 16);
    let mut decoder =
        zune_jpeg::JpegDecoder::new_with_options(zune_jpeg::zune_core::bytestream::ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(|e| format!("not a readable JPEG ({e})"))?;
    if matches!(decoder.input_colorspace(), Some(ColorSpace::CMYK | ColorSpace::YCCK)) {
        return Err("a CMYK JPEG (print separations): convert it to RGB to get a finished photo; \
                    the layers are delivered"
            .into());
    }
    let pixels = decoder.decode().map_err(|e| format!("the JPEG data is damaged ({e})"))?;
    let info = decoder.info().ok_or("the JPEG has no frame header")?;
    let image = Image {
        width: u32::from(info.width),
        height: u32::from(info.height),
        channels: 3,
        samples: Samples::Eight(pixels),
    };
    if image.rgb8().len() != image.width as usize * image.height as usize * 3 {
        return Err("the JPEG decoded to an unexpected size".into());
    }
    Ok(Photo { image, meta: Metadata::from_jpeg(bytes), kind: FileKind::Jpeg })
}

fn read_png(input: impl std::io::BufRead + std::io::Seek) -> Result<Photo, String> {
    let mut decoder = png::Decoder::new(input);
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| format!("not a readable PNG ({e})"))?;
    let damaged = |e: png::DecodingError| format!("the PNG data is damaged ({e})");
    let image = if reader.info().interlaced {
        // Interlaced rows come in passes: decoded whole.
        let mut buf = vec![0; reader.output_buffer_size().ok_or("the PNG is too large")?];
        let frame = reader.next_frame(&mut buf).map_err(damaged)?;
        buf.truncate(frame.buffer_size());
        to_rgb_image(frame.width, frame.height, frame.color_type, frame.bit_depth, &buf)?
    } else {
        let (width, height) = reader.info().size();
        let (color, depth) = reader.output_color_type();
        let (in_ch, out_ch) = png_channels(color)?;
        let (w, total) = (width as usize, width as usize * height as usize * out_ch);
        let samples = match depth {
            png::BitDepth::Sixteen => {
                let mut out: Vec<u16> = Vec::with_capacity(total);
                while let Some(row) = reader.next_row().map_err(damaged)? {
                    let values: Vec<u16> =
                        row.data().chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]])).collect();
                    out.extend_from_slice(&super::image::grey_to_rgb(&values, in_ch, out_ch, w));
                }
                Samples::Sixteen(out)
            }
            png::BitDepth::Eight => {
                let mut out: Vec<u8> = Vec::with_capacity(total);
                while let Some(row) = reader.next_row().map_err(damaged)? {
                    out.extend_from_slice(&super::image::grey_to_rgb(row.data(), in_ch, out_ch, w));
                }
                Samples::Eight(out)
            }
            other => return Err(format!("{other:?}-bit samples that did not expand")),
        };
        let got = match &samples {
            Samples::Eight(s) => s.len(),
            Samples::Sixteen(s) => s.len(),
        };
        if got != total {
            return Err("the PNG ends early".into());
        }
        // Chunks after the image data (an XMP packet may be there).
        let _ = reader.finish();
        Image { width, height, channels: out_ch, samples }
    };
    Ok(Photo { image, meta: Metadata::from_png(reader.info()), kind: FileKind::Png })
}

/// Channels per pixel in and out (grey becomes RGB) of a decoded PNG colour type.
fn png_channels(color: png::ColorType) -> Result<(usize, usize), String> {
    use png::ColorType::*;
    match color {
        Grayscale => Ok((1, 3)),
        GrayscaleAlpha => Ok((2, 4)),
        Rgb => Ok((3, 3)),
        Rgba => Ok((4, 4)),
        Indexed => Err("a palette PNG that did not expand".into()),
    }
}

/// Decoded PNG samples (after EXPAND: 8 or 16 bits, grey, grey+alpha, RGB or RGBA) as RGB(A).
fn to_rgb_image(
    width: u32,
    height: u32,
    color: png::ColorType,
    depth: png::BitDepth,
    buf: &[u8],
) -> Result<Image, String> {
    let (in_ch, out_ch) = png_channels(color)?;
    let pixels = width as usize * height as usize;
    let samples = match depth {
        png::BitDepth::Sixteen => {
            let values: Vec<u16> = buf.chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]])).collect();
            Samples::Sixteen(super::image::grey_to_rgb(&values, in_ch, out_ch, pixels))
        }
        png::BitDepth::Eight => Samples::Eight(super::image::grey_to_rgb(buf, in_ch, out_ch, pixels)),
        other => return Err(format!("{other:?}-bit samples that did not expand")),
    };
    Ok(Image { width, height, channels: out_ch, samples })
}

/// A layer PNG read one row at a time, each row as RGBA floats in 0..=1.
pub struct LayerRows {
    file: String,
    width: u32,
    height: u32,
    source: RowSource,
    color: png::ColorType,
    sixteen: bool,
}

enum RowSource {
    /// Rows come off the decoder as they are needed.
    Stream(Box<png::Reader<BufReader<File>>>),
    /// An interlaced PNG cannot be read row by row: it is decoded whole.
    Whole { buf: Vec<u8>, line: usize, next: usize },
}

impl LayerRows {
    pub fn open(path: &Path) -> Result<LayerRows, String> {
        let file = name(path);
        let bad = |e: &dyn std::fmt::Display| format!("the layer {file} is not a readable PNG ({e})");
        let handle = File::open(path).map_err(|e| format!("cannot read the layer {file}: {e}"))?;
        let mut decoder = png::Decoder::new(BufReader::with_capacity(256 * 1024, handle));
        decoder.set_transformations(png::Transformations::EXPAND);
        decoder.set_ignore_text_chunk(true);
        let mut reader = decoder.read_info().map_err(|e| bad(&e))?;
        let (width, height) = reader.info().size();
        let (color, depth) = reader.output_color_type();
        let source = if reader.info().interlaced {
            let mut buf = vec![0; reader.output_buffer_size().ok_or_else(|| bad(&"too large"))?];
            let frame = reader.next_frame(&mut buf).map_err(|e| bad(&e))?;
            RowSource::Whole { buf, line: frame.line_size, next: 0 }
        } else {
            RowSource::Stream(Box::new(reader))
        };
        Ok(LayerRows { file, width, height, source, color, sixteen: depth == png::BitDepth::Sixteen })
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The next row as RGBA floats (4 per pixel) into `out`.
    pub fn next_row(&mut self, out: &mut [f32]) -> Result<(), String> {
        let raw: &[u8] = match &mut self.source {
            RowSource::Stream(reader) => match reader.next_row() {
                Ok(Some(row)) => row.data(),
                Ok(None) => return Err(format!("the layer {} ends early", self.file)),
                Err(e) => return Err(format!("the layer {} is damaged ({e})", self.file)),
            },
            RowSource::Whole { buf, line, next } => {
                let row = buf
                    .get(*next * *line..(*next + 1) * *line)
                    .ok_or_else(|| format!("the layer {} ends early", self.file))?;
                *next += 1;
                row
            }
        };
        to_rgba_floats(raw, self.color, self.sixteen, out);
        Ok(())
    }
}

/// One decoded PNG row (after EXPAND) as RGBA floats.
fn to_rgba_floats(raw: &[u8], color: png::ColorType, sixteen: bool, out: &mut [f32]) {
    use png::ColorType::*;
    let ch = match color {
        Grayscale => 1,
        GrayscaleAlpha => 2,
        Rgb => 3,
        _ => 4,
    };
    let bytes = if sixteen { 2 } else { 1 };
    let scale = if sixteen { 1.0 / 65535.0 } else { 1.0 / 255.0 };
    let sample = |px: &[u8], c: usize| -> f32 {
        if sixteen {
            f32::from(u16::from_be_bytes([px[2 * c], px[2 * c + 1]])) * scale
        } else {
            f32::from(px[c]) * scale
        }
    };
    for (o, px) in out.chunks_exact_mut(4).zip(raw.chunks_exact(ch * bytes)) {
        let [r, g, b, a] = match ch {
            1 => [sample(px, 0), sample(px, 0), sample(px, 0), 1.0],
            2 => [sample(px, 0), sample(px, 0), sample(px, 0), sample(px, 1)],
            3 => [sample(px, 0), sample(px, 1), sample(px, 2), 1.0],
            _ => [sample(px, 0), sample(px, 1), sample(px, 2), sample(px, 3)],
        };
        o.copy_from_slice(&[r, g, b, a]);
    }
}
