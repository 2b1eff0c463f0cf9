//! What a file really is, judged by its bytes: the kind (PNG, JPEG, TIFF, ZIP), image dimensions read
//! from the header without decoding, and whether the content is complete (not still being copied).
//!
//! Names and content types lie (the server serves a ZIP under the original image's name), so
//! everything here looks only at bytes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// The kinds of file the retoucher takes and returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Png,
    Jpeg,
    /// Taken from the inbox but never sent as it is: the server gets an 8-bit proxy
    /// (`crate::proxy`) and the layers are applied to the original.
    Tiff,
    Zip,
    Unknown,
}

impl FileKind {
    /// The usual extension for this kind, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            FileKind::Png => "png",
            FileKind::Jpeg => "jpg",
            FileKind::Tiff => "tif",
            FileKind::Zip => "zip",
            FileKind::Unknown => "bin",
        }
    }

    /// Whether this is an image the server can retouch as it is.
    pub fn is_image(self) -> bool {
        matches!(self, FileKind::Png | FileKind::Jpeg)
    }

    /// Whether this is a photo retouchd takes from an inbox (sent as it is, or as a proxy).
    pub fn is_photo(self) -> bool {
        matches!(self, FileKind::Png | FileKind::Jpeg | FileKind::Tiff)
    }
}

/// Whether a file's name says it is something retouchd takes (`.jpg`, `.jpeg`, `.png`, `.tif`,
/// `.tiff`, `.zip`, in any case). Used to pass over other files found in folders; what a file really is
/// is still told by its bytes.
pub fn has_photo_extension(path: &Path) -> bool {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    matches!(ext.as_str(), "jpg" | "jpeg" | "png" | "tif" | "tiff" | "zip")
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Png => "PNG",
            FileKind::Jpeg => "JPEG",
            FileKind::Tiff => "TIFF",
            FileKind::Zip => "ZIP",
            FileKind::Unknown => "unknown",
        })
    }
}

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG_MAGIC: &[u8] = &[0xFF, 0xD8, 0xFF];
/// Little- and big-endian TIFF, then little- and big-endian BigTIFF.
const TIFF_MAGICS: [&[u8]; 4] = [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const ZIP_EMPTY_MAGIC: &[u8] = b"PK\x05\x06";

/// Tells the kind from the first bytes of a file.
pub fn sniff(head: &[u8]) -> FileKind {
    if head.starts_with(PNG_MAGIC) {
        FileKind::Png
    } else if head.starts_with(JPEG_MAGIC) {
        FileKind::Jpeg
    } else if TIFF_MAGICS.iter().any(|m| head.starts_with(m)) {
        FileKind::Tiff
    } else if head.starts_with(ZIP_MAGIC) || head.starts_with(ZIP_EMPTY_MAGIC) {
        FileKind::Zip
    } else {
        FileKind::Unknown
    }
}

/// Reads the first bytes of a file and tells its kind.
pub fn sniff_file(path: &Path) -> io::Result<FileKind> {
    let mut head = [0u8; 8];
    let mut file = File::open(path)?;
    let n = read_up_to(&mut file, &mut head)?;
    Ok(sniff(&head[..n]))
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Width and height of a PNG, JPEG or TIFF (its first image), read from its header. `None` when the header is not
/// readable (truncated or corrupt) or the kind has no dimensions.
pub fn image_dimensions(reader: &mut (impl Read + Seek), kind: FileKind) -> io::Result<Option<(u32, u32)>> {
    reader.seek(SeekFrom::Start(0))?;
    match kind {
        FileKind::Png => png_dimensions(reader),
        FileKind::Jpeg => jpeg_dimensions(reader),
        FileKind::Tiff => Ok(tiff_chunks_end(reader).map(|(size, _)| size)),
        _ => Ok(None),
    }
}

/// A TIFF's first image: its size and where its last strip or tile ends. `None` when the
/// header or the first directory cannot be read (a file still being copied, or damaged).
fn tiff_chunks_end(reader: &mut (impl Read + Seek)) -> Option<((u32, u32), u64)> {
    use tiff::tags::Tag;
    let mut decoder = tiff::decoder::Decoder::new(reader).ok()?;
    let size = decoder.dimensions().ok()?;
    let (offsets, counts) = match decoder.find_tag_unsigned_vec::<u64>(Tag::TileOffsets).ok()? {
        Some(offsets) => (offsets, decoder.find_tag_unsigned_vec::<u64>(Tag::TileByteCounts).ok()??),
        None => (
            decoder.find_tag_unsigned_vec::<u64>(Tag::StripOffsets).ok()??,
            decoder.find_tag_unsigned_vec::<u64>(Tag::StripByteCounts).ok()??,
        ),
    };
    let end = offsets.iter().zip(&counts).map(|(o, c)| o.saturating_add(*c)).max().unwrap_or(0);
    Some((size, end))
}

fn png_dimensions(reader: &mut impl Read) -> io::Result<Option<(u32, u32)>> {
    // signature (8), chunk length (4), "IHDR" (4), width (4), height (4)
    let mut head = [0u8; 24];
    if read_up_to(reader, &mut head)? < 24 || &head[12..16] != b"IHDR" {
        return Ok(None);
    }
    let width = u32::from_be_bytes([head[16], head[17], head[18], head[19]]);
    let height = u32::from_be_bytes([head[20], head[21], head[22], head[23]]);
    Ok(Some((width, height)))
}

fn jpeg_dimensions(reader: &mut impl Read) -> io::Result<Option<(u32, u32)>> {
    let mut reader = io::BufReader::new(reader);
    let mut soi = [0u8; 2];
    if read_up_to(&mut reader, &mut soi)? < 2 || soi != [0xFF, 0xD8] {
        return Ok(None);
    }
    loop {
        // Find the next marker: 0xFF followed by a non-0xFF byte (fill bytes are allowed).
        let mut byte = [0u8; 1];
        if read_up_to(&mut reader, &mut byte)? == 0 {
            return Ok(None);
        }
        if byte[0] != 0xFF {
            return Ok(None);
        }
        let mut marker = 0xFF;
        while marker == 0xFF {
            if read_up_to(&mut reader, &mut byte)? == 0 {
                return Ok(None);
            }
            marker = byte[0];
        }
        match marker {
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => continue,
            0xD9 | 0xDA => return Ok(None), // end of image or start of scan before any frame header
            _ => {}
        }
        let mut len = [0u8; 2];
        if read_up_to(&mut reader, &mut len)? < 2 {
            return Ok(None);
        }
        let len = u16::from_be_bytes(len) as usize;
        if len < 2 {
            return Ok(None);
        }
        let is_frame_header = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_frame_header {
            let mut frame = [0u8; 5];
            if len < 7 || read_up_to(&mut reader, &mut frame)? < 5 {
                return Ok(None);
            }
            let height = u16::from_be_bytes([frame[1], frame[2]]) as u32;
            let width = u16::from_be_bytes([frame[3], frame[4]]) as u32;
            return Ok(Some((width, height)));
        }
        let skipped = io::copy(&mut (&mut reader).take(len as u64 - 2), &mut io::sink())?;
        if skipped < len as u64 - 2 {
            return Ok(None);
        }
    }
}

/// Whether a file of this kind has all its bytes: a JPEG ends with its end-of-image marker, a
/// PNG with its IEND chunk, a TIFF holds every strip or tile of its first image, a ZIP has its
/// end-of-central-directory record. Used to tell a file
/// still being copied from a finished one.
pub fn is_complete(reader: &mut (impl Read + Seek), kind: FileKind) -> io::Result<bool> {
    let len = reader.seek(SeekFrom::End(0))?;
    match kind {
        FileKind::Jpeg => {
            // Some cameras pad after the end marker; accept a little trailing padding.
            let tail = read_tail(reader, len, 64)?;
            let trimmed = trim_trailing_padding(&tail);
            Ok(trimmed.ends_with(&[0xFF, 0xD9]))
        }
        FileKind::Png => {
            let tail = read_tail(reader, len, 12)?;
            Ok(tail.len() == 12 && &tail[4..8] == b"IEND")
        }
        FileKind::Tiff => {
            reader.seek(SeekFrom::Start(0))?;
            Ok(tiff_chunks_end(reader).is_some_and(|(_, end)| end <= len))
        }
        FileKind::Zip => {
            // The end-of-central-directory record sits in the last 22 + 65535 bytes.
            let tail = read_tail(reader, len, 22 + 65_535)?;
            Ok(tail.windows(4).any(|w| w == ZIP_EMPTY_MAGIC))
        }
        FileKind::Unknown => Ok(false),
    }
}

fn trim_trailing_padding(tail: &[u8]) -> &[u8] {
    let end = tail.iter().rposition(|&b| b != 0x00).map_or(0, |i| i + 1);
    &tail[..end]
}

fn read_tail(reader: &mut (impl Read + Seek), len: u64, max: u64) -> io::Result<Vec<u8>> {
    let start = len.saturating_sub(max);
    reader.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::with_capacity((len - start) as usize);
    reader.take(len - start).read_to_end(&mut tail)?;
    Ok(tail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    pub(crate) fn tiny_jpeg(width: u16, height: u16) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        // APP0 segment of length 16
        v.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10]);
        v.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        // SOF0
        v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 0x08]);
        v.extend_from_slice(&height.to_be_bytes());
        v.extend_from_slice(&width.to_be_bytes());
        v.extend_from_slice(&[0x01, 0x01, 0x11, 0x00]);
        v.extend_from_slice(&[0xFF, 0xD9]);
        v
    }

    #[test]
    fn sniff_tells_kinds_by_magic_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), FileKind::Png);
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), FileKind::Jpeg);
        assert_eq!(sniff(b"PK\x03\x04...."), FileKind::Zip);
        for tiff in [&b"II*\0"[..], b"MM\0*", b"II+\0", b"MM\0+"] {
            assert_eq!(sniff(tiff), FileKind::Tiff);
        }
        assert_eq!(sniff(b"<html>"), FileKind::Unknown);
        assert_eq!(sniff(b""), FileKind::Unknown);
    }

    #[test]
    fn a_tiff_has_its_dimensions_and_is_complete_only_with_every_strip() {
        let tiff = crate::imagegen::tiff16_bytes(64, 40, [90, 120, 150]);
        assert_eq!(image_dimensions(&mut Cursor::new(&tiff), FileKind::Tiff).unwrap(), Some((64, 40)));
        assert!(is_complete(&mut Cursor::new(&tiff), FileKind::Tiff).unwrap());
        // The crate writes the directory last: a copy cut short has none, and one with its
        // directory but not all its strips (data cut from the middle) is incomplete too.
        let cut = &tiff[..tiff.len() / 2];
        assert!(!is_complete(&mut Cursor::new(cut), FileKind::Tiff).unwrap());
        assert_eq!(image_dimensions(&mut Cursor::new(cut), FileKind::Tiff).unwrap(), None);
        assert!(has_photo_extension(Path::new("a.TIFF")) && has_photo_extension(Path::new("a.tif")));
    }

    #[test]
    fn jpeg_dimensions_come_from_the_frame_header() {
        let jpeg = tiny_jpeg(640, 480);
        let dims = image_dimensions(&mut Cursor::new(jpeg), FileKind::Jpeg).unwrap();
        assert_eq!(dims, Some((640, 480)));
    }

    #[test]
    fn truncated_jpeg_has_no_dimensions_and_is_incomplete() {
        let jpeg = tiny_jpeg(640, 480);
        let cut = &jpeg[..10];
        assert_eq!(image_dimensions(&mut Cursor::new(cut), FileKind::Jpeg).unwrap(), None);
        assert!(!is_complete(&mut Cursor::new(cut), FileKind::Jpeg).unwrap());
        assert!(is_complete(&mut Cursor::new(&jpeg), FileKind::Jpeg).unwrap());
    }

    #[test]
    fn png_completeness_needs_iend() {
        let png = crate::imagegen::png_bytes(7, 5, [1, 2, 3]);
        assert_eq!(image_dimensions(&mut Cursor::new(&png), FileKind::Png).unwrap(), Some((7, 5)));
        assert!(is_complete(&mut Cursor::new(&png), FileKind::Png).unwrap());
        assert!(!is_complete(&mut Cursor::new(&png[..png.len() - 3]), FileKind::Png).unwrap());
    }

    #[test]
    fn zip_completeness_needs_the_central_directory() {
        let zip = crate::imagegen::zip_of(&[("a.png", crate::imagegen::png_bytes(2, 2, [0, 0, 0]))]);
        assert!(is_complete(&mut Cursor::new(&zip), FileKind::Zip).unwrap());
        assert!(!is_complete(&mut Cursor::new(&zip[..zip.len() / 2]), FileKind::Zip).unwrap());
    }
}
