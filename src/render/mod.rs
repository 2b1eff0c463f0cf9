//! Finished photos from the server's answer: the source photo with the layers composited onto
//! it as Photoshop would ([`blend`], [`composite`]), written as JPEG or PNG with the source's
//! metadata ([`metadata`], [`exif`], [`encode`]) and, when asked, a layered PSD ([`psd`]).
//! When the server flattened the result itself (every task `Layer: 0`), its image becomes the
//! finished photo, converted if asked and with the source's metadata restored.
//!
//! [`render`] is one pure-ish step: files in (source, staged result), files out (staged
//! outputs in a work folder), no journal and no network, so the daemon's render step and
//! `retouchd render` share it. A problem with the inputs is a [`Failure::Bad`] with a plain
//! reason (the layers are delivered all the same); a problem writing is [`Failure::Io`]
//! (a full disk: try again later).

pub mod blend;
pub mod composite;
pub mod decode;
pub mod encode;
pub mod exif;
pub mod image;
pub mod layers;
pub mod metadata;
pub mod psd;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use self::decode::{LayerRows, Photo};
use self::image::Image;
pub use self::metadata::MetadataPolicy;
use crate::formats::{self, FileKind};

/// The format of the finished photo (`[watch.output] flat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlatFormat {
    /// The source's format.
    Same,
    Jpeg,
    Png,
    None,
}

impl FlatFormat {
    pub fn parse(text: &str) -> Option<FlatFormat> {
        match text {
            "same" => Some(FlatFormat::Same),
            "jpeg" | "jpg" => Some(FlatFormat::Jpeg),
            "png" => Some(FlatFormat::Png),
            "none" => Some(FlatFormat::None),
            _ => None,
        }
    }
}

/// What a watch delivers (`[watch.output]`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSettings {
    /// The server's layers, as a folder.
    pub layers: bool,
    pub flat: FlatFormat,
    pub psd: bool,
    pub jpeg_quality: u8,
    pub metadata: MetadataPolicy,
    /// The finished outputs' file name without extension; see [`NameTemplate`].
    pub name: NameTemplate,
    /// Per plugin (as the layer names it), 0..=1.
    pub opacity: BTreeMap<String, f32>,
}

impl Default for OutputSettings {
    fn default() -> Self {
        OutputSettings {
            layers: true,
            flat: FlatFormat::Same,
            psd: false,
            jpeg_quality: 95,
            metadata: MetadataPolicy::All,
            name: NameTemplate::default(),
            opacity: BTreeMap::new(),
        }
    }
}

impl OutputSettings {
    /// Whether anything is made locally.
    pub fn renders(&self) -> bool {
        self.flat != FlatFormat::None || self.psd
    }

    /// The opacity for a plugin's layer (names matched without regard to case).
    pub fn opacity_for(&self, plugin: &str) -> f32 {
        self.opacity.iter().find(|(name, _)| name.eq_ignore_ascii_case(plugin)).map_or(1.0, |(_, &o)| o)
    }
}

/// The name of the finished outputs: text with `{stem}`, `{ext}`, `{watch}`, `{date}` and
/// `{time}` (UTC, `2026-11-29` and `193005`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate(String);

impl Default for NameTemplate {
    fn default() -> Self {
        NameTemplate("{stem}".into())
    }
}

/// What a name's tokens stand for.
pub struct NameParts<'a> {
    pub stem: &'a str,
    pub ext: &'a str,
    /// The watch's inbox folder name.
    pub watch: &'a str,
    pub now: std::time::SystemTime,
}

impl NameTemplate {
    pub const TOKENS: [&'static str; 5] = ["stem", "ext", "watch", "date", "time"];

    /// Checks a template: known tokens only, and no folder separators.
    pub fn parse(text: &str) -> Result<NameTemplate, String> {
        if text.trim().is_empty() {
            return Err("is empty; use \"{stem}\" for the source's name".into());
        }
        if text.contains('/') || text.contains('\0') {
            return Err("must be a file name, without `/`".into());
        }
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').ok_or("has a `{` without its `}`")? + open;
            let token = &rest[open + 1..close];
            if !Self::TOKENS.contains(&token) {
                return Err(format!(
                    "`{{{token}}}` is not a token; use {}",
                    Self::TOKENS.map(|t| format!("{{{t}}}")).join(" ")
                ));
            }
            rest = &rest[close + 1..];
        }
        Ok(NameTemplate(text.to_string()))
    }

    pub fn apply(&self, parts: &NameParts) -> String {
        let stamp = humantime::format_rfc3339_seconds(parts.now).to_string(); // 2026-11-29T19:30:05Z
        let (date, time) = (&stamp[..10], stamp[11..19].replace(':', ""));
        let name = self
            .0
            .replace("{stem}", parts.stem)
            .replace("{ext}", parts.ext)
            .replace("{watch}", parts.watch)
            .replace("{date}", date)
            .replace("{time}", &time);
        // A token's value may itself hold a separator (an odd inbox name): never a path.
        name.replace('/', "_")
    }
}

/// Why no finished photo was made.
#[derive(Debug)]
pub enum Failure {
    /// The inputs cannot make one (a layer of the wrong size, an unknown blend mode, a damaged
    /// file, a CMYK source). Retrying will not help; the layers are delivered.
    Bad(String),
    /// Writing the outputs failed (a full disk): try again later.
    Io(std::io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Bad(reason) => f.write_str(reason),
            Failure::Io(e) => write!(f, "cannot write the finished photo: {e}"),
        }
    }
}

/// One finished output in the work folder and the extension it is published with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub path: PathBuf,
    pub ext: &'static str,
}

/// The source and the staged server result of one job, and where to make the outputs.
pub struct RenderInput<'a> {
    pub source: &'a Path,
    /// The extracted layers folder, or the server's flattened image.
    pub result: &'a Path,
    pub settings: &'a OutputSettings,
    /// A folder only this render writes into (emptied first).
    pub work_dir: &'a Path,
}

/// Makes the finished outputs (nothing when the settings ask for none): the flat photo, then
/// the PSD.
pub fn render(input: &RenderInput) -> Result<Vec<Made>, Failure> {
    let settings = input.settings;
    if !settings.renders() {
        return Ok(Vec::new());
    }
    let _ = std::fs::remove_dir_all(input.work_dir);
    std::fs::create_dir_all(input.work_dir).map_err(Failure::Io)?;
    let photo = decode::read_photo(input.source).map_err(Failure::Bad)?;
    if input.result.is_dir() { render_layers(input, photo) } else { render_flattened(input, photo) }
}

/// The layer files of a result folder, in stacking order, with their paths.
fn layer_stack(dir: &Path) -> Result<Vec<(layers::LayerName, PathBuf)>, Failure> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(Failure::Io)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let stack = layers::stack(names.iter().map(String::as_str)).map_err(|e| Failure::Bad(e.to_string()))?;
    if stack.is_empty() {
        return Err(Failure::Bad("the result holds no layers (no index=N&blendmode=MODE&name=PLUGIN.png file)".into()));
    }
    Ok(stack
        .into_iter()
        .map(|l| {
            let path = dir.join(&l.file);
            (l, path)
        })
        .collect())
}

fn open_layers(stack: &[(layers::LayerName, PathBuf)]) -> Result<Vec<LayerRows>, Failure> {
    stack.iter().map(|(_, path)| LayerRows::open(path).map_err(Failure::Bad)).collect()
}

/// Turns the photo if the layers match it only once shown upright; the orientation the
/// output records (1 once turned).
fn match_layers(photo: Photo, layer_size: (u32, u32)) -> Result<(Image, metadata::Metadata, u16), Failure> {
    let orientation = photo.meta.orientation();
    let stored = (photo.image.width, photo.image.height);
    if layer_size == stored {
        return Ok((photo.image, photo.meta, orientation));
    }
    if layer_size == photo.image.oriented_size(orientation) {
        return Ok((photo.image.oriented(orientation), photo.meta, 1));
    }
    Err(Failure::Bad(format!(
        "the layers are {}×{} but the photo is {}×{}: they do not belong to it",
        layer_size.0, layer_size.1, stored.0, stored.1
    )))
}

fn render_layers(input: &RenderInput, photo: Photo) -> Result<Vec<Made>, Failure> {
    let settings = input.settings;
    let stack = layer_stack(input.result)?;
    let rows = open_layers(&stack)?;
    let size = rows[0].size();
    if let Some(((name, _), odd)) = stack.iter().zip(&rows).find(|(_, r)| r.size() != size) {
        let (w, h) = odd.size();
        return Err(Failure::Bad(format!("the layer {} is {w}×{h}, the others {}×{}", name.file, size.0, size.1)));
    }
    let kind = photo.kind;
    let (mut image, meta, orientation) = match_layers(photo, size)?;
    let background = settings.psd.then(|| image.clone());
    let stacked: Vec<composite::Layer> = stack
        .iter()
        .zip(rows)
        .map(|((name, _), rows)| composite::Layer {
            rows,
            mode: name.mode,
            opacity: settings.opacity_for(&name.plugin),
        })
        .collect();
    composite::composite(&mut image, stacked).map_err(Failure::Bad)?;
    let mut meta = meta.filtered(settings.metadata);
    meta.describe_pixels(orientation, image.width, image.height);
    let mut made = Vec::new();
    if let Some(flat) = write_flat(input, &image, &meta, kind)? {
        made.push(flat);
    }
    if let Some(background) = background {
        let path = input.work_dir.join("layers.psd");
        let layers = stack
            .iter()
            .zip(open_layers(&stack)?)
            .map(|((name, _), rows)| psd::PsdLayer {
                name: name.plugin.clone(),
                mode: name.mode,
                opacity: settings.opacity_for(&name.plugin),
                rows,
            })
            .collect();
        psd::write_psd(&path, &background, &image, layers, meta.icc.as_deref())?;
        made.push(Made { path, ext: "psd" });
    }
    Ok(made)
}

/// The server flattened the result: its image is the finished photo, in the asked format,
/// with the source's metadata when the server dropped it.
fn render_flattened(input: &RenderInput, source: Photo) -> Result<Vec<Made>, Failure> {
    let result = decode::read_photo(input.result).map_err(Failure::Bad)?;
    let server_kept_metadata = result.meta.exif.is_some() || result.meta.icc.is_some() || result.meta.xmp.is_some();
    let mut meta = if server_kept_metadata { result.meta } else { source.meta.clone() };
    let shown_upright = (result.image.width, result.image.height) != (source.image.width, source.image.height)
        && (result.image.width, result.image.height) == source.image.oriented_size(source.meta.orientation());
    let orientation = if shown_upright { 1 } else { meta.orientation() };
    meta = meta.filtered(input.settings.metadata);
    meta.describe_pixels(orientation, result.image.width, result.image.height);
    Ok(write_flat(input, &result.image, &meta, source.kind)?.into_iter().collect())
}

/// Writes the flat photo in the configured format (`kind`: the source's).
fn write_flat(
    input: &RenderInput,
    image: &Image,
    meta: &metadata::Metadata,
    kind: FileKind,
) -> Result<Option<Made>, Failure> {
    let as_png = match input.settings.flat {
        FlatFormat::None => return Ok(None),
        FlatFormat::Png => true,
        FlatFormat::Jpeg => false,
        FlatFormat::Same => kind == FileKind::Png,
    };
    let mut bytes = Vec::new();
    if as_png {
        encode::write_png(image, meta, &mut bytes).map_err(Failure::Bad)?;
    } else {
        encode::write_jpeg(image, meta, input.settings.jpeg_quality, &mut bytes).map_err(Failure::Bad)?;
    }
    let ext = if as_png { FileKind::Png.extension() } else { FileKind::Jpeg.extension() };
    let path = input.work_dir.join(format!("flat.{ext}"));
    write_synced(&path, &bytes).map_err(Failure::Io)?;
    Ok(Some(Made { path, ext }))
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Whether a source can have a finished photo at all (an archive of photos cannot: its
/// results are delivered as the server sent them).
pub fn can_render(source: &Path) -> bool {
    formats::sniff_file(source).is_ok_and(FileKind::is_image)
}
