//! Before/after thumbnails for the job page: made by the daemon from the two pictures a job
//! knows (its source photo where it is now, and the finished photo among its outputs), never
//! from a path a request names, and cached as small JPEGs in `<state>/thumbnails/`. A cached
//! thumbnail is used while it is newer than its picture.

use std::fs::File;
use std::path::{Path, PathBuf};

use tokio::sync::Semaphore;

use crate::beneath::Dir;
use crate::config::Config;

use crate::journal::JobRecord;
use crate::render::decode::read_photo;
use crate::render::image::Image;
use crate::render::metadata::Metadata;

/// The longer side of a thumbnail, in pixels.
pub const SIZE: u32 = 480;
/// The cache's folder in the state folder.
pub const DIR: &str = "thumbnails";

/// Which picture of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Before,
    After,
}

impl Which {
    pub fn parse(text: &str) -> Option<Which> {
        match text {
            "before" => Some(Which::Before),
            "after" => Some(Which::After),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Which::Before => "before",
            Which::After => "after",
        }
    }
}

/// Thumbnails are made one at a time (each decodes a whole photo).
pub struct Thumbnails {
    dir: PathBuf,
    making: Semaphore,
}

impl Thumbnails {
    pub fn new(state_dir: &Path) -> Thumbnails {
        Thumbnails { dir: state_dir.join(DIR), making: Semaphore::new(1) }
    }

    /// The thumbnail's JPEG bytes, or `None` when the job has no such picture (any more).
    /// `config` names the folders a picture may be in.
    pub async fn get(&self, job: &JobRecord, which: Which, config: &Config) -> Result<Option<Vec<u8>>, String> {
        let picture = match which {
            Which::Before => super::views::source_photo(job),
            Which::After => super::views::finished_photo(&job.state).map(Path::to_path_buf),
        };
        let Some(picture) = picture else { return Ok(None) };
        let cached = format!("{}-{}.jpg", job.id, which.as_str());
        if let Some(bytes) = fresh(&self.dir.join(&cached), &picture) {
            return Ok(Some(bytes));
        }
        let _permit = self.making.acquire().await.map_err(|e| e.to_string())?;
        if let Some(bytes) = fresh(&self.dir.join(&cached), &picture) {
            return Ok(Some(bytes));
        }
        let (dir, job, roots) = (self.dir.clone(), job.clone(), roots(config));
        tokio::task::spawn_blocking(move || {
            let file = open_picture(&job, &picture, &roots)?;
            let bytes = make_from(&file, &picture)?;
            // The cache is a help: a thumbnail that cannot be kept is still shown.
            let _ = Dir::root_made(&dir).and_then(|d| d.write_replace(Path::new(&cached), &bytes));
            Ok(Some(bytes))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// The folders a job's pictures may be in: every watch's inbox, outbox, done and failed folder.
fn roots(config: &Config) -> Vec<PathBuf> {
    config
        .watches
        .iter()
        .flat_map(|w| [Some(&w.inbox), Some(&w.outbox), w.done_dir.as_ref(), w.failed_dir.as_ref()])
        .flatten()
        .cloned()
        .collect()
}

/// Opens a job's picture as the runner would: the source still in the inbox only while it is
/// the version sent; anything else beneath the folder that holds it, never through a link.
fn open_picture(job: &JobRecord, picture: &Path, roots: &[PathBuf]) -> Result<File, String> {
    if picture == job.source.path() {
        return job.source.open_same(false).map_err(|_| "the source changed or left the inbox".to_string());
    }
    let root = roots
        .iter()
        .filter(|r| picture.starts_with(r))
        .max_by_key(|r| r.as_os_str().len())
        .ok_or_else(|| format!("{} is in none of the watched folders", picture.display()))?;
    let rel = picture.strip_prefix(root).map_err(|e| e.to_string())?;
    Dir::root(root).and_then(|d| d.open_file(rel)).map_err(|e| format!("cannot open {}: {e}", picture.display()))
}

/// The cached thumbnail, if it is newer than its picture.
fn fresh(cached: &Path, picture: &Path) -> Option<Vec<u8>> {
    let made = std::fs::metadata(cached).and_then(|m| m.modified()).ok()?;
    let changed = std::fs::metadata(picture).and_then(|m| m.modified()).ok()?;
    (made >= changed).then(|| std::fs::read(cached).ok()).flatten()
}

/// Decodes `picture`, turns it upright, shrinks it to [`SIZE`] and encodes it as a JPEG.
pub fn make(picture: &Path) -> Result<Vec<u8>, String> {
    let file = File::open(picture).map_err(|e| format!("cannot read {}: {e}", picture.display()))?;
    make_from(&file, picture)
}

/// The most pixels a picture may have to get a thumbnail: a tiny file can declare a huge image
/// (a 1 MB PNG of 20000×20000), and decoding it whole would take gigabytes.
pub const MAX_PIXELS: u64 = 100_000_000;

/// [`make`] for an opened picture (`picture` names it in messages).
fn make_from(file: &File, picture: &Path) -> Result<Vec<u8>, String> {
    let mut reader = std::io::BufReader::new(file.try_clone().map_err(|e| e.to_string())?);
    let mut head = [0u8; 8];
    std::io::Read::read_exact(&mut reader, &mut head).map_err(|e| format!("cannot read {}: {e}", picture.display()))?;
    let kind = crate::formats::sniff(&head);
    std::io::Seek::rewind(&mut reader).map_err(|e| e.to_string())?;
    match crate::formats::image_dimensions(&mut reader, kind) {
        Ok(Some((w, h))) if u64::from(w) * u64::from(h) <= MAX_PIXELS => {}
        Ok(Some((w, h))) => {
            return Err(format!(
                "{} is {w}×{h}, too large for a thumbnail (at most 100 megapixels)",
                picture.display()
            ));
        }
        _ => return Err(format!("{} is not a readable JPEG, PNG or TIFF", picture.display())),
    }
    let photo = read_photo(&crate::beneath::anchored(file))?;
    let image = photo.image.oriented(photo.meta.orientation());
    let small = shrink(&image, SIZE);
    let mut out = Vec::new();
    crate::render::encode::write_jpeg(&small, &Metadata::default(), 80, &mut out)?;
    Ok(out)
}

/// `image` shrunk (never enlarged) so its longer side is at most `size`, each pixel the mean of
/// the pixels it covers; 8-bit RGB.
fn shrink(image: &Image, size: u32) -> Image {
    let (w, h) = (image.width as usize, image.height as usize);
    let scale = (w.max(h) as f64 / f64::from(size)).max(1.0);
    let (tw, th) = (((w as f64 / scale).round() as usize).max(1), ((h as f64 / scale).round() as usize).max(1));
    let rgb = image.rgb8();
    let mut out = vec![0u8; tw * th * 3];
    for ty in 0..th {
        let (y0, y1) = (ty * h / th, ((ty + 1) * h / th).max(ty * h / th + 1));
        for tx in 0..tw {
            let (x0, x1) = (tx * w / tw, ((tx + 1) * w / tw).max(tx * w / tw + 1));
            let mut sum = [0u64; 3];
            for y in y0..y1 {
                for px in rgb[(y * w + x0) * 3..(y * w + x1) * 3].chunks_exact(3) {
                    for c in 0..3 {
                        sum[c] += u64::from(px[c]);
                    }
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u64;
            for c in 0..3 {
                out[(ty * tw + tx) * 3 + c] = ((sum[c] + n / 2) / n) as u8;
            }
        }
    }
    Image { width: tw as u32, height: th as u32, channels: 3, samples: crate::render::image::Samples::Eight(out) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::image::Samples;

    #[test]
    fn shrinking_keeps_the_shape_and_averages_the_pixels_it_covers() {
        // 4×2: left half black, right half white → 2×1: one black, one white pixel.
        let mut px = Vec::new();
        for _ in 0..2 {
            px.extend([0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255]);
        }
        let image = Image { width: 4, height: 2, channels: 3, samples: Samples::Eight(px) };
        let small = shrink(&image, 2);
        assert_eq!((small.width, small.height), (2, 1));
        assert_eq!(small.samples, Samples::Eight(vec![0, 0, 0, 255, 255, 255]));
        assert_eq!(shrink(&image, 100).width, 4, "never enlarged");
        let tall = Image { width: 10, height: 1000, channels: 3, samples: Samples::Eight(vec![9; 30_000]) };
        let small = shrink(&tall, SIZE);
        assert_eq!((small.width, small.height), (5, 480));
    }

    #[test]
    fn a_thumbnail_is_a_small_upright_jpeg_of_the_photo() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("p.jpg");
        std::fs::write(&photo, crate::imagegen::portrait_jpeg(1200, 800, [200, 160, 140])).unwrap();
        let bytes = make(&photo).unwrap();
        std::fs::write(dir.path().join("t.jpg"), &bytes).unwrap();
        let thumb = read_photo(&dir.path().join("t.jpg")).unwrap();
        assert_eq!((thumb.image.width, thumb.image.height), (480, 320));
        assert!(make(&dir.path().join("missing.jpg")).unwrap_err().contains("missing.jpg"));
    }

    #[test]
    fn a_sixteen_bit_tiff_original_gets_a_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("p.tif");
        std::fs::write(&photo, crate::imagegen::tiff16_bytes(960, 640, [200, 160, 140])).unwrap();
        std::fs::write(dir.path().join("t.jpg"), make(&photo).unwrap()).unwrap();
        let thumb = read_photo(&dir.path().join("t.jpg")).unwrap();
        assert_eq!((thumb.image.width, thumb.image.height), (480, 320));
    }

    #[test]
    fn a_small_file_declaring_a_huge_image_gets_no_thumbnail_and_is_not_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let mut png = crate::imagegen::png_bytes(1, 1, [0, 0, 0]);
        png[16..20].copy_from_slice(&20_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&20_000u32.to_be_bytes());
        let path = dir.path().join("bomb.png");
        std::fs::write(&path, png).unwrap();
        let why = make(&path).unwrap_err();
        assert!(why.contains("20000×20000") && why.contains("too large"), "{why}");
    }

    #[test]
    fn a_source_swapped_for_a_link_gets_no_thumbnail() {
        use crate::job::JobState;
        use crate::source::{Source, Stamp};
        let dir = tempfile::tempdir().unwrap();
        let (inbox, private) = (dir.path().join("inbox"), dir.path().join("private"));
        std::fs::create_dir_all(inbox.join("shoot")).unwrap();
        std::fs::create_dir_all(&private).unwrap();
        let photo = crate::imagegen::portrait_jpeg(64, 48, [200, 160, 140]);
        std::fs::write(inbox.join("shoot/a.jpg"), &photo).unwrap();
        let stamp = Stamp::of(&std::fs::metadata(inbox.join("shoot/a.jpg")).unwrap());
        let job = JobRecord {
            id: 1,
            source: Source { inbox: inbox.clone(), rel_path: "shoot/a.jpg".into(), stamp },
            state: JobState::Processing { task_id: "t".into(), host: "h".into() },
            created_at: 0,
            updated_at: 0,
            progress: None,
            generation: 1,
        };
        let roots = vec![inbox.clone()];
        assert!(open_picture(&job, &inbox.join("shoot/a.jpg"), &roots).is_ok());
        std::fs::rename(inbox.join("shoot"), dir.path().join("was")).unwrap();
        std::fs::write(private.join("a.jpg"), &photo).unwrap();
        std::os::unix::fs::symlink(&private, inbox.join("shoot")).unwrap();
        assert!(open_picture(&job, &inbox.join("shoot/a.jpg"), &roots).is_err());
        assert!(open_picture(&job, &private.join("a.jpg"), &roots).is_err(), "outside every watched folder");
    }
}
