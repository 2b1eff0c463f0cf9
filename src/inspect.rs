//! Checks a ready file against the server's limits before any credit is spent: the real format
//! by magic bytes, the size, the megapixels from the header (no decoding), and for a zip, that
//! every entry is an allowed image within the limits. A refusal says in plain words why.

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;

use crate::api::Limits;
use crate::formats::{self, FileKind};

/// Entries that archivers add and that are not the user's photos.
fn is_archive_junk(name: &str) -> bool {
    let lower = name.to_lowercase();
    let base = lower.rsplit('/').next().unwrap_or(&lower);
    lower.starts_with("__macosx/") || base.starts_with("._") || base == ".ds_store" || base == "thumbs.db"
}

fn megapixels(w: u32, h: u32) -> f64 {
    w as f64 * h as f64 / 1_000_000.0
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The file's kind when it may be sent, or the reason it may not.
pub fn inspect(path: &Path, limits: &Limits) -> std::io::Result<Result<FileKind, String>> {
    inspect_file(File::open(path)?, limits)
}

/// [`inspect`] for a file already opened (the daemon opens inbox files beneath their inbox).
pub fn inspect_file(mut file: File, limits: &Limits) -> std::io::Result<Result<FileKind, String>> {
    let size = file.metadata()?.len();
    if size == 0 {
        return Ok(Err("the file is empty (0 bytes)".into()));
    }
    let mut head = [0u8; 8];
    let n = file.read(&mut head)?;
    let kind = formats::sniff(&head[..n]);
    // A TIFF is never sent: its proxy is, and that is checked against the size limit when made.
    if size > limits.max_file_bytes() && kind != FileKind::Tiff {
        return Ok(Err(format!(
            "the file is {:.1} MB; the server takes at most {} MB",
            mb(size),
            limits.max_file_size_mb
        )));
    }
    let verdict = match kind {
        FileKind::Unknown => Err(format!(
            "this is not a PNG, JPEG, TIFF or ZIP file (its first bytes are {}); only those formats can be retouched",
            head[..n].iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ")
        )),
        FileKind::Png | FileKind::Jpeg => check_image(&mut file, kind, limits),
        FileKind::Tiff => check_tiff(&mut file, limits),
        FileKind::Zip => check_zip(file, limits),
    };
    Ok(verdict.map(|()| kind))
}

fn check_image(reader: &mut (impl Read + std::io::Seek), kind: FileKind, limits: &Limits) -> Result<(), String> {
    let format = kind.extension();
    if !limits.image_formats.iter().any(|f| f == format || (kind == FileKind::Jpeg && f == "jpeg")) {
        return Err(format!("the server does not take {kind} images"));
    }
    match formats::image_dimensions(reader, kind) {
        Ok(Some((w, h))) if w == 0 || h == 0 => {
            Err(format!("the {kind} header says the image is {w}×{h}; it is corrupt"))
        }
        Ok(Some((w, h))) if megapixels(w, h) > limits.max_megapixels => Err(format!(
            "the image is {w}×{h} ({:.0} megapixels); the server takes at most {} megapixels",
            megapixels(w, h),
            limits.max_megapixels
        )),
        Ok(Some(_)) => Ok(()),
        Ok(None) | Err(_) => Err(format!("the {kind} header cannot be read; the file is corrupt or truncated")),
    }
}

/// A TIFF is sent as an 8-bit PNG or JPEG proxy of the same pixel size: the server must take
/// one of those, and the TIFF must be one retouchd can read (RGB or grey, 8 or 16 bits).
fn check_tiff(file: &mut File, limits: &Limits) -> Result<(), String> {
    if !limits.image_formats.iter().any(|f| matches!(f.as_str(), "png" | "jpg" | "jpeg")) {
        return Err("a TIFF is sent as a PNG or JPEG proxy, and the server takes neither".into());
    }
    std::io::Seek::rewind(file).map_err(|e| format!("the file cannot be read: {e}"))?;
    let (w, h) = crate::render::tiff_file::check_header(std::io::BufReader::new(file))?;
    if w == 0 || h == 0 {
        return Err(format!("the TIFF header says the image is {w}×{h}; it is corrupt"));
    }
    if megapixels(w, h) > limits.max_megapixels {
        return Err(format!(
            "the image is {w}×{h} ({:.0} megapixels); the server takes at most {} megapixels",
            megapixels(w, h),
            limits.max_megapixels
        ));
    }
    Ok(())
}

/// The most entries an input zip may have: each photo in it comes back as several files, so an
/// archive of a hundred thousand empty entries would flood the outbox.
pub const MAX_ZIP_ENTRIES: usize = 2_000;

fn check_zip(file: File, limits: &Limits) -> Result<(), String> {
    if !limits.archive_formats.iter().any(|f| f == "zip") {
        return Err("the server does not take zip archives".into());
    }
    let mut archive = zip::ZipArchive::new(file).map_err(|e| format!("the zip archive cannot be read: {e}"))?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(format!(
            "the zip has {} entries; at most {MAX_ZIP_ENTRIES} are taken in one archive (each photo comes back as \
             several files): split it, or drop the photos themselves into the inbox",
            archive.len()
        ));
    }
    let mut images = 0;
    let mut problems = Vec::new();
    for i in 0..archive.len() {
        let mut entry = match archive.by_index(i) {
            Ok(e) => e,
            Err(e) => return Err(format!("entry {i} of the zip cannot be read: {e}")),
        };
        let name = match entry.name() {
            Ok(n) => n.into_owned(),
            Err(e) => return Err(format!("entry {i} of the zip has an unreadable name: {e}")),
        };
        if entry.is_dir() || is_archive_junk(&name) {
            continue;
        }
        if entry.size() > limits.max_file_bytes() {
            problems.push(format!("`{name}` is {:.1} MB (at most {} MB)", mb(entry.size()), limits.max_file_size_mb));
            continue;
        }
        // Enough of the entry to find the image header behind large metadata blocks.
        let mut head = Vec::new();
        if let Err(e) = (&mut entry).take(512 * 1024).read_to_end(&mut head) {
            problems.push(format!("`{name}` cannot be read: {e}"));
            continue;
        }
        let kind = formats::sniff(&head);
        match kind {
            FileKind::Zip => problems.push(format!("`{name}` is a zip inside the zip (nested archives are not taken)")),
            FileKind::Unknown => problems.push(format!("`{name}` is not a PNG or JPEG image")),
            FileKind::Tiff => problems.push(format!(
                "`{name}` is a TIFF (a zip is sent as it is and the server takes only PNG and JPEG; drop TIFFs \
                 into the inbox themselves and they are sent as proxies)"
            )),
            FileKind::Png | FileKind::Jpeg => match check_image(&mut Cursor::new(&head), kind, limits) {
                Ok(()) => images += 1,
                Err(why) if head.len() as u64 == entry.size() => problems.push(format!("`{name}`: {why}")),
                // Header beyond what was read: the server will judge it.
                Err(_) => images += 1,
            },
        }
    }
    if !problems.is_empty() {
        return Err(format!("the zip has entries the server does not take: {}", problems.join("; ")));
    }
    if images == 0 {
        return Err("the zip holds no images".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagegen;

    fn check(bytes: &[u8]) -> Result<FileKind, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, bytes).unwrap();
        inspect(&path, &Limits::default()).unwrap()
    }

    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let mut v = imagegen::png_bytes(1, 1, [0, 0, 0]);
        v[16..20].copy_from_slice(&w.to_be_bytes());
        v[20..24].copy_from_slice(&h.to_be_bytes());
        v
    }

    #[test]
    fn real_images_and_zips_of_images_pass() {
        assert_eq!(check(&imagegen::jpeg_bytes(32, 32, [1, 2, 3])), Ok(FileKind::Jpeg));
        assert_eq!(check(&imagegen::png_bytes(32, 32, [1, 2, 3])), Ok(FileKind::Png));
        let zip = imagegen::zip_of(&[("a.jpg", imagegen::jpeg_bytes(8, 8, [0; 3])), ("__MACOSX/._a.jpg", vec![1, 2])]);
        assert_eq!(check(&zip), Ok(FileKind::Zip));
    }

    #[test]
    fn a_tiff_is_judged_by_the_proxy_it_becomes() {
        let tiff = imagegen::tiff16_bytes(400, 300, [1, 2, 3]);
        assert_eq!(check(&tiff), Ok(FileKind::Tiff));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.tif");
        std::fs::write(&path, &tiff).unwrap();
        // Larger than the server takes, yet passed: its proxy's size is checked when it is made.
        let small = Limits { max_file_size_mb: 0.0, ..Limits::default() };
        assert_eq!(inspect(&path, &small).unwrap(), Ok(FileKind::Tiff));
        let tight = Limits { max_megapixels: 0.1, ..Limits::default() };
        assert!(inspect(&path, &tight).unwrap().unwrap_err().contains("megapixels"));
        let png_only = Limits { image_formats: vec!["webp".into()], ..Limits::default() };
        assert!(inspect(&path, &png_only).unwrap().unwrap_err().contains("takes neither"));
        let mut cmyk = std::io::Cursor::new(Vec::new());
        tiff::encoder::TiffEncoder::new(&mut cmyk)
            .unwrap()
            .write_image::<tiff::encoder::colortype::CMYK8>(4, 4, &[0u8; 64])
            .unwrap();
        assert!(check(&cmyk.into_inner()).unwrap_err().contains("CMYK"));
        let zip = imagegen::zip_of(&[("a.tif", tiff)]);
        assert!(check(&zip).unwrap_err().contains("drop TIFFs"));
    }

    #[test]
    fn empty_text_and_corrupt_files_are_refused_with_reasons() {
        assert!(check(b"").unwrap_err().contains("empty"));
        assert!(check(b"hello, I am text").unwrap_err().contains("not a PNG, JPEG, TIFF or ZIP"));
        assert!(check(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 1, 2, 3, 0xFF, 0xD9]).unwrap_err().contains("cannot be read"));
    }

    #[test]
    fn a_png_declaring_too_many_megapixels_is_refused_without_decoding() {
        let why = check(&png_header(20_000, 20_000)).unwrap_err();
        assert!(why.contains("400 megapixels"), "{why}");
    }

    #[test]
    fn an_oversize_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.jpg");
        std::fs::write(&path, imagegen::jpeg_bytes(8, 8, [0; 3])).unwrap();
        let limits = Limits { max_file_size_mb: 0.0001, ..Limits::default() };
        assert!(inspect(&path, &limits).unwrap().unwrap_err().contains("at most"));
    }

    #[test]
    fn zips_with_non_images_nested_zips_or_nothing_are_refused() {
        let inner = imagegen::zip_of(&[("x.jpg", imagegen::jpeg_bytes(8, 8, [0; 3]))]);
        let why = check(&imagegen::zip_of(&[("notes.txt", b"hi".to_vec()), ("inner.zip", inner)])).unwrap_err();
        assert!(why.contains("notes.txt") && why.contains("nested"), "{why}");
        let empty: [(&str, Vec<u8>); 0] = [];
        assert!(check(&imagegen::zip_of(&empty)).unwrap_err().contains("no images"));
        let big = imagegen::zip_of(&[("huge.png", png_header(30_000, 30_000))]);
        assert!(check(&big).unwrap_err().contains("megapixels"));
    }

    #[test]
    fn a_zip_of_too_many_entries_is_refused_before_it_floods_the_outbox() {
        let entries: Vec<(String, Vec<u8>)> = (0..=MAX_ZIP_ENTRIES).map(|i| (format!("{i}.jpg"), Vec::new())).collect();
        let why = check(&imagegen::zip_of(&entries)).unwrap_err();
        assert!(why.contains("2001 entries") && why.contains("split it"), "{why}");
    }
}
