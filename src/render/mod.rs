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
pub mod patches;
pub mod psd;
pub mod roles;
pub mod tiff_file;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use self::decode::{LayerRows, Photo};
use self::image::Image;
pub use self::metadata::MetadataPolicy;
pub use self::tiff_file::TiffCompression;
use crate::formats::{self, FileKind};

/// The format of the finished photo (`[watch.output] flat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlatFormat {
    /// The source's format.
    Same,
    Jpeg,
    Png,
    /// TIFF at the image's own depth (16 bits from a 16-bit source).
    Tiff,
    None,
}

impl FlatFormat {
    pub fn parse(text: &str) -> Option<FlatFormat> {
        match text {
            "same" => Some(FlatFormat::Same),
            "jpeg" | "jpg" => Some(FlatFormat::Jpeg),
            "png" => Some(FlatFormat::Png),
            "tiff" | "tif" => Some(FlatFormat::Tiff),
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
    pub tiff_compression: TiffCompression,
    pub metadata: MetadataPolicy,
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
            tiff_compression: TiffCompression::default(),
            metadata: MetadataPolicy::All,
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
        self.opacity.iter().find(|(name, _)| crate::vocab::same_plugin(name, plugin)).map_or(1.0, |(_, &o)| o)
    }

    /// Sets a plugin's opacity, replacing one given before under any spelling of its name.
    pub fn set_opacity(&mut self, plugin: &str, value: f32) {
        self.opacity.retain(|name, _| !crate::vocab::same_plugin(name, plugin));
        self.opacity.insert(plugin.to_string(), value);
    }
}

/// A plugin's strength as given in the config or to `retouchd render --opacity`: 0 (off) to 1
/// (as the server made it).
pub fn opacity(value: f64) -> Result<f32, String> {
    if (0.0..=1.0).contains(&value) {
        Ok(value as f32)
    } else {
        Err(format!("{value} is out of range; use a number from 0 (off) to 1 (full strength)"))
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
    if !input.settings.renders() {
        return Ok(Vec::new());
    }
    let _ = std::fs::remove_dir_all(input.work_dir);
    std::fs::create_dir_all(input.work_dir).map_err(Failure::Io)?;
    if input.result.is_dir() {
        let photo = decode::read_photo(input.source).map_err(Failure::Bad)?;
        render_layers(input, photo)
    } else {
        render_flattened(input)
    }
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

/// Glasses Anti Glare patches (a layer of another size than the full ones) become full-size
/// layers placed by result.json's matrices (see [`patches`]); the other layers stay as they are.
fn place_patches(
    input: &RenderInput,
    stack: Vec<(layers::LayerName, PathBuf)>,
    photo: &Photo,
) -> Result<Vec<(layers::LayerName, PathBuf)>, Failure> {
    let is_glasses = |name: &layers::LayerName| crate::vocab::same_plugin(&name.plugin, patches::GLASSES);
    if !stack.iter().any(|(name, _)| is_glasses(name)) {
        return Ok(stack);
    }
    let size_of = |path: &Path| LayerRows::open(path).map(|r| r.size()).map_err(Failure::Bad);
    let full = match stack.iter().find(|(name, _)| !is_glasses(name)) {
        Some((_, path)) => size_of(path)?,
        None => photo.image.oriented_size(photo.meta.orientation()),
    };
    let mut found: Option<crate::api::result_json::ResultJson> = None;
    let mut placed = Vec::with_capacity(stack.len());
    for (name, path) in stack {
        if !is_glasses(&name) || size_of(&path)? == full {
            placed.push((name, path));
            continue;
        }
        if found.is_none() {
            let file = input.result.join("result.json");
            found = Some(match std::fs::read(&file) {
                Ok(bytes) => crate::api::result_json::ResultJson::parse(&bytes).map_err(Failure::Bad)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
                Err(e) => return Err(Failure::Io(e)),
            });
        }
        let faces = found.as_ref().map(|r| r.faces_of(patches::GLASSES)).unwrap_or_default();
        let out = input.work_dir.join(format!("placed-{}.png", name.index));
        let path = patches::place(&path, &faces, full, &out)?;
        placed.push((name, path));
    }
    Ok(placed)
}

fn render_layers(input: &RenderInput, photo: Photo) -> Result<Vec<Made>, Failure> {
    let settings = input.settings;
    let stack = place_patches(input, layer_stack(input.result)?, &photo)?;
    let rows = open_layers(&stack)?;
    let size = rows[0].size();
    if let Some(((name, _), odd)) = stack.iter().zip(&rows).find(|(_, r)| r.size() != size) {
        let (w, h) = odd.size();
        return Err(Failure::Bad(format!("the layer {} is {w}×{h}, the others {}×{}", name.file, size.0, size.1)));
    }
    if let Some((flow, _)) = stack.iter().find(|(name, _)| roles::role_of(&name.plugin) == roles::Role::Flow) {
        roles::apply_flow(&flow.plugin)?;
    }
    let kind = photo.kind;
    let (mut image, meta, orientation) = match_layers(photo, size)?;
    let background = settings.psd.then(|| image.clone());
    // Helper masks are left out of the finished photo (kept, hidden, in the PSD).
    let stacked: Vec<composite::Layer> = stack
        .iter()
        .zip(rows)
        .filter(|((name, _), _)| roles::role_of(&name.plugin) == roles::Role::Pixels)
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
                visible: roles::role_of(&name.plugin) == roles::Role::Pixels,
            })
            .collect();
        psd::write_psd(&path, &background, &image, layers, meta.icc.as_deref())?;
        made.push(Made { path, ext: "psd" });
    }
    Ok(made)
}

/// The server flattened the result: its image is the finished photo, in the asked format,
/// with the source's metadata when the server dropped it. Kept as it is (linked, never decoded)
/// when nothing needs changing; a JPEG that only lacks metadata gets it spliced in.
fn render_flattened(input: &RenderInput) -> Result<Vec<Made>, Failure> {
    let settings = input.settings;
    let (source_meta, source_kind, source_size) = decode::read_metadata(input.source).map_err(Failure::Bad)?;
    let (result_meta, result_kind, result_size) = decode::read_metadata(input.result).map_err(Failure::Bad)?;
    let wanted_kind = match settings.flat {
        FlatFormat::None => return Ok(Vec::new()),
        FlatFormat::Same => source_kind,
        FlatFormat::Jpeg => FileKind::Jpeg,
        FlatFormat::Png => FileKind::Png,
        FlatFormat::Tiff => FileKind::Tiff,
    };
    let ext = wanted_kind.extension();
    let path = input.work_dir.join(format!("flat.{ext}"));
    let made = Made { path: path.clone(), ext };
    let server_kept = !result_meta.is_empty();
    // Metadata for the output: the server's if it kept any, else the source's; pixels shown
    // upright by the server record orientation 1.
    let source_orientation = source_meta.orientation();
    let turned = result_size != source_size && source_orientation >= 5 && result_size == (source_size.1, source_size.0);
    let mut meta = if server_kept { result_meta } else { source_meta };
    let orientation = if turned { 1 } else { meta.orientation() };
    meta = meta.filtered(settings.metadata);
    meta.describe_pixels(orientation, result_size.0, result_size.1);
    if result_kind == wanted_kind
        && !turned
        && (server_kept && settings.metadata == MetadataPolicy::All || meta.is_empty())
    {
        std::fs::hard_link(input.result, &path)
            .or_else(|_| std::fs::copy(input.result, &path).map(drop))
            .map_err(Failure::Io)?;
        return Ok(vec![made]);
    }
    if result_kind == FileKind::Jpeg && wanted_kind == FileKind::Jpeg && !server_kept {
        let bytes = std::fs::read(input.result).map_err(Failure::Io)?;
        write_synced(&path, &meta.insert_into_jpeg(&bytes)).map_err(Failure::Io)?;
        return Ok(vec![made]);
    }
    let result = decode::read_photo(input.result).map_err(Failure::Bad)?;
    Ok(write_flat(input, &result.image, &meta, source_kind)?.into_iter().collect())
}

/// Writes the flat photo in the configured format (`kind`: the source's).
fn write_flat(
    input: &RenderInput,
    image: &Image,
    meta: &metadata::Metadata,
    kind: FileKind,
) -> Result<Option<Made>, Failure> {
    let wanted = match input.settings.flat {
        FlatFormat::None => return Ok(None),
        FlatFormat::Png => FileKind::Png,
        FlatFormat::Jpeg => FileKind::Jpeg,
        FlatFormat::Tiff => FileKind::Tiff,
        FlatFormat::Same if matches!(kind, FileKind::Png | FileKind::Tiff) => kind,
        FlatFormat::Same => FileKind::Jpeg,
    };
    let ext = wanted.extension();
    let path = input.work_dir.join(format!("flat.{ext}"));
    if wanted == FileKind::Jpeg {
        let mut bytes = Vec::new();
        encode::write_jpeg(image, meta, input.settings.jpeg_quality, &mut bytes).map_err(Failure::Bad)?;
        write_synced(&path, &bytes).map_err(Failure::Io)?;
        return Ok(Some(Made { path, ext }));
    }
    // Streamed to the file: a 16-bit photo's PNG or TIFF is hundreds of megabytes. A writer
    // that fails (a full disk) is an I/O problem; the encoder's own, a bad input.
    let file = std::fs::File::create(&path).map_err(Failure::Io)?;
    let mut out = IoWatch { inner: std::io::BufWriter::with_capacity(1 << 20, file), failed: None };
    let written = match wanted {
        FileKind::Tiff => tiff_file::write(image, meta, input.settings.tiff_compression, &mut out),
        _ => encode::write_png(image, meta, &mut out).map_err(Failure::Bad),
    };
    if let Some(e) = out.failed.take() {
        return Err(Failure::Io(e));
    }
    written?;
    let file = out.inner.into_inner().map_err(|e| Failure::Io(e.into_error()))?;
    file.sync_all().map_err(Failure::Io)?;
    Ok(Some(Made { path, ext }))
}

/// A writer that remembers its first I/O error, so an encoder's failure can be told apart
/// from the disk's.
struct IoWatch<W> {
    inner: W,
    failed: Option<std::io::Error>,
}

impl<W: std::io::Write> std::io::Write for IoWatch<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| {
            self.failed.get_or_insert_with(|| std::io::Error::new(e.kind(), e.to_string()));
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|e| {
            self.failed.get_or_insert_with(|| std::io::Error::new(e.kind(), e.to_string()));
        })
    }
}

impl<W: std::io::Seek> std::io::Seek for IoWatch<W> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
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
    formats::sniff_file(source).is_ok_and(FileKind::is_photo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::metadata::Metadata;

    /// A PNG of the given samples (8-bit unless `sixteen`), RGB or RGBA by `channels`.
    fn png_file(path: &Path, width: u32, height: u32, channels: usize, samples: &[u16], sixteen: bool) {
        let mut encoder = png::Encoder::new(std::fs::File::create(path).unwrap(), width, height);
        encoder.set_color(if channels == 4 { png::ColorType::Rgba } else { png::ColorType::Rgb });
        encoder.set_depth(if sixteen { png::BitDepth::Sixteen } else { png::BitDepth::Eight });
        let mut writer = encoder.write_header().unwrap();
        let bytes: Vec<u8> = if sixteen {
            samples.iter().flat_map(|v| v.to_be_bytes()).collect()
        } else {
            samples.iter().map(|&v| v as u8).collect()
        };
        writer.write_image_data(&bytes).unwrap();
    }

    /// A JPEG of `width` × `height` (a smooth gradient), with the given metadata.
    fn jpeg_file(path: &Path, width: u16, height: u16, meta: &Metadata) {
        let pixels: Vec<u8> =
            (0..height).flat_map(|y| (0..width).flat_map(move |x| [(x * 20) as u8, (y * 20) as u8, 90])).collect();
        let mut bytes = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, 100);
        for (n, segment) in meta.jpeg_app_segments() {
            encoder.add_app_segment(n, segment).unwrap();
        }
        if let Some(icc) = &meta.icc {
            encoder.add_icc_profile(icc).unwrap();
        }
        encoder.encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn layer_name(index: u32, mode: &str, plugin: &str) -> String {
        format!("index={index}&blendmode={mode}&name={plugin}.png")
    }

    struct Case {
        dir: tempfile::TempDir,
        settings: OutputSettings,
    }

    impl Case {
        fn new() -> Case {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("layers")).unwrap();
            Case { dir, settings: OutputSettings::default() }
        }
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
        fn render(&self, source: &str) -> Result<Vec<Made>, Failure> {
            let (source, result, work) = (self.path(source), self.path("layers"), self.path("work"));
            render(&RenderInput { source: &source, result: &result, settings: &self.settings, work_dir: &work })
        }
    }

    fn decode_png(path: &Path) -> (png::OutputInfo, Vec<u8>, Metadata) {
        let mut reader =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap())).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let meta = Metadata::from_png(reader.info());
        (info, buf, meta)
    }

    #[test]
    fn neutral_soft_light_changes_nothing_and_a_full_normal_layer_replaces() {
        let case = Case::new();
        let source: Vec<u16> = (0..4 * 3 * 3).map(|i| (i * 7 % 256) as u16).collect();
        png_file(&case.path("photo.png"), 4, 3, 3, &source, false);
        let grey = [128u16, 128, 128, 255].repeat(12);
        png_file(&case.path("layers").join(layer_name(1, "softLight", "Dodge Burn")), 4, 3, 4, &grey, false);
        // Transparent but for pixel 5, an opaque red.
        let mut heal = vec![0u16; 12 * 4];
        heal[20..24].copy_from_slice(&[255, 0, 0, 255]);
        png_file(&case.path("layers").join(layer_name(0, "normal", "Heal")), 4, 3, 4, &heal, false);
        let made = case.render("photo.png").unwrap();
        assert_eq!(made, [Made { path: case.path("work/flat.png"), ext: "png" }]);
        let (info, pixels, _) = decode_png(&made[0].path);
        assert_eq!((info.width, info.height, info.bit_depth), (4, 3, png::BitDepth::Eight));
        let mut expected: Vec<u8> = source.iter().map(|&v| v as u8).collect();
        expected[15..18].copy_from_slice(&[255, 0, 0]);
        assert_eq!(pixels, expected);
    }

    /// Writes one layer in a given PNG colour type and depth.
    fn layer_file(path: &Path, color: png::ColorType, depth: png::BitDepth, palette: Option<Vec<u8>>, data: &[u8]) {
        let mut encoder = png::Encoder::new(std::fs::File::create(path).unwrap(), 2, 2);
        encoder.set_color(color);
        encoder.set_depth(depth);
        if let Some(p) = palette {
            encoder.set_palette(p);
            encoder.set_trns(vec![255, 0]);
        }
        encoder.write_header().unwrap().write_image_data(data).unwrap();
    }

    /// A layer written one way: name, colour type, depth, palette, samples.
    type LayerCase = (&'static str, png::ColorType, png::BitDepth, Option<Vec<u8>>, Vec<u8>);

    #[test]
    fn grey_palette_and_sixteen_bit_layers_composite_like_their_rgba_equivalent() {
        // The same multiply layer, mid grey over pixels 0 and 3, transparent elsewhere, written
        // five ways; each must give the photo the RGBA 8-bit one gives.
        let cases: Vec<LayerCase> = vec![
            (
                "rgba8",
                png::ColorType::Rgba,
                png::BitDepth::Eight,
                None,
                [[128, 128, 128, 255], [0, 0, 0, 0], [0, 0, 0, 0], [128, 128, 128, 255]].concat(),
            ),
            (
                "rgba16",
                png::ColorType::Rgba,
                png::BitDepth::Sixteen,
                None,
                [[128, 128, 128, 128, 128, 128, 255, 255], [0; 8], [0; 8], [128, 128, 128, 128, 128, 128, 255, 255]]
                    .concat(),
            ),
            (
                "grey-alpha8",
                png::ColorType::GrayscaleAlpha,
                png::BitDepth::Eight,
                None,
                vec![128, 255, 0, 0, 0, 0, 128, 255],
            ),
            (
                "palette",
                png::ColorType::Indexed,
                png::BitDepth::Eight,
                Some(vec![128, 128, 128, 0, 0, 0]),
                vec![0, 1, 1, 0],
            ),
        ];
        let mut results = Vec::new();
        for (name, color, depth, palette, data) in cases {
            let case = Case::new();
            png_file(&case.path("photo.png"), 2, 2, 3, &[200, 100, 50, 10, 20, 30, 40, 50, 60, 250, 250, 250], false);
            layer_file(&case.path("layers").join(layer_name(0, "multiply", "Shade")), color, depth, palette, &data);
            let made = case.render("photo.png").unwrap_or_else(|e| panic!("{name}: {e}"));
            results.push((name, decode_png(&made[0].path).1));
        }
        let expected: Vec<u8> = vec![100, 50, 25, 10, 20, 30, 40, 50, 60, 125, 125, 125];
        for (name, pixels) in results {
            let close = pixels.iter().zip(&expected).all(|(a, b)| a.abs_diff(*b) <= 1);
            assert!(close, "{name}: {pixels:?}, expected {expected:?}");
        }
        // A grey layer without alpha is opaque everywhere.
        let case = Case::new();
        png_file(&case.path("photo.png"), 2, 2, 3, &[200; 12], false);
        layer_file(
            &case.path("layers").join(layer_name(0, "multiply", "Shade")),
            png::ColorType::Grayscale,
            png::BitDepth::Eight,
            None,
            &[128; 4],
        );
        let made = case.render("photo.png").unwrap();
        assert!(decode_png(&made[0].path).1.iter().all(|&v| v.abs_diff(100) <= 1));
    }

    #[test]
    fn sixteen_bit_sources_stay_sixteen_bit_with_their_profile() {
        let case = Case::new();
        let source: Vec<u16> = (0..2 * 2 * 3).map(|i| 1000 + i * 5003).collect();
        let path = case.path("deep.png");
        {
            let mut info = png::Info::with_size(2, 2);
            info.color_type = png::ColorType::Rgb;
            info.bit_depth = png::BitDepth::Sixteen;
            info.icc_profile = Some(b"fake icc profile".to_vec().into());
            let mut writer =
                png::Encoder::with_info(std::fs::File::create(&path).unwrap(), info).unwrap().write_header().unwrap();
            writer.write_image_data(&source.iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<u8>>()).unwrap();
        }
        let grey16 = [32768u16, 32768, 32768, 65535].repeat(4);
        png_file(&case.path("layers").join(layer_name(0, "softLight", "Portrait Volumes")), 2, 2, 4, &grey16, true);
        let made = case.render("deep.png").unwrap();
        let (info, bytes, meta) = decode_png(&made[0].path);
        assert_eq!(info.bit_depth, png::BitDepth::Sixteen);
        let out: Vec<u16> = bytes.chunks_exact(2).map(|b| u16::from_be_bytes([b[0], b[1]])).collect();
        for (o, s) in out.iter().zip(&source) {
            assert!(o.abs_diff(*s) <= 1, "{out:?} vs {source:?}");
        }
        assert_eq!(meta.icc.as_deref(), Some(&b"fake icc profile"[..]));
    }

    #[test]
    fn a_rotated_camera_photo_is_turned_upright_and_keeps_its_metadata() {
        let mut case = Case::new();
        let meta = Metadata {
            icc: Some(vec![7u8; 70_000]), // more than one APP2 segment
            exif: Some(exif::tests::sample(true, 6)),
            xmp: Some(
                br#"<x:xmpmeta><rdf:Description exif:GPSLatitude="1,2N" dc:format="image/jpeg"/></x:xmpmeta>"#.to_vec(),
            ),
            iptc: Some(b"8BIM\x04\x04\0\0\0\0\0\0".to_vec()),
        };
        jpeg_file(&case.path("camera.jpg"), 6, 4, &meta);
        // The layers come upright: 4 wide, 6 tall. A neutral linear-light layer.
        let grey = [128u16, 128, 128, 255].repeat(24);
        png_file(&case.path("layers").join(layer_name(0, "linearLight", "Eye Brilliance")), 4, 6, 4, &grey, false);
        case.settings.metadata = MetadataPolicy::NoGps;
        let made = case.render("camera.jpg").unwrap();
        assert_eq!(made[0].ext, "jpg");
        let bytes = std::fs::read(&made[0].path).unwrap();
        let out = Metadata::from_jpeg(&bytes);
        assert_eq!(out.orientation(), 1, "turned, so shown as stored");
        assert_eq!(out.icc, meta.icc);
        assert_eq!(out.iptc, meta.iptc);
        let xmp = String::from_utf8(out.xmp.clone().unwrap()).unwrap();
        assert!(!xmp.contains("GPS") && xmp.contains("dc:format"), "{xmp}");
        let mut decoder = zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(&bytes));
        let pixels = decoder.decode().unwrap();
        let info = decoder.info().unwrap();
        assert_eq!((info.width, info.height), (4, 6));
        // 4:4:4: every component's sampling factors are 1×1 (the SOF0 segment).
        let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        let components = &bytes[sof + 10..sof + 10 + 9];
        assert!(components.chunks(3).all(|c| c[1] == 0x11), "{components:?}");
        // Upright pixel (x, y) is stored pixel (y, 3 - x) of the 6×4 source: red = 20·y, green =
        // 20·(3 - x); neighbours differ by 20, two JPEG generations by a few levels.
        let at = |x: usize, y: usize| &pixels[(y * 4 + x) * 3..(y * 4 + x) * 3 + 3];
        for (x, y) in [(0, 0), (3, 5), (1, 2)] {
            let [r, g, _] = [at(x, y)[0], at(x, y)[1], at(x, y)[2]];
            assert!(
                r.abs_diff((20 * y) as u8) <= 6 && g.abs_diff((20 * (3 - x)) as u8) <= 6,
                "({x}, {y}) = {:?}",
                at(x, y)
            );
        }
    }

    #[test]
    fn a_rotated_sixteen_bit_tiff_is_turned_like_a_camera_jpeg_and_stays_sixteen_bit() {
        let case = Case::new();
        // Stored 3 wide, 2 tall, orientation 6 (shown turned clockwise): red = 1000 + stored x.
        let stored: Vec<u16> = (0..6).flat_map(|i| [1000 + (i % 3) as u16, 2000, 3000]).collect();
        let meta = Metadata {
            exif: Some(exif::tests::sample(true, 6)),
            icc: Some(b"adobe rgb".to_vec()),
            ..Metadata::default()
        };
        let image = image::Image { width: 3, height: 2, channels: 3, samples: image::Samples::Sixteen(stored) };
        tiff_file::write(&image, &meta, TiffCompression::Lzw, std::fs::File::create(case.path("raw.tif")).unwrap())
            .unwrap();
        // The server's layers come upright (2 wide, 3 tall): fully transparent, so nothing changes.
        png_file(&case.path("layers").join(layer_name(0, "normal", "Heal")), 2, 3, 4, &[0u16; 24], false);
        let made = case.render("raw.tif").unwrap();
        assert_eq!(made[0].ext, "tif");
        let (out, out_meta) = tiff_file::read(std::fs::File::open(&made[0].path).unwrap()).unwrap();
        assert_eq!((out.width, out.height, out.is_16_bit()), (2, 3, true));
        assert_eq!(out_meta.orientation(), 1, "turned, so shown as stored");
        assert_eq!(out_meta.icc, meta.icc);
        // Upright (x, y) is stored (y, 1 - x): its red is 1000 + y, bit for bit.
        let image::Samples::Sixteen(samples) = &out.samples else { unreachable!() };
        for y in 0..3 {
            for x in 0..2 {
                assert_eq!(samples[(y * 2 + x) * 3], 1000 + y as u16, "({x}, {y})");
            }
        }
    }

    #[test]
    fn bad_layers_and_sources_are_reasons_that_name_the_problem() {
        let case = Case::new();
        png_file(&case.path("photo.png"), 4, 4, 3, &[10; 48], false);
        let layers = case.path("layers");
        png_file(&layers.join(layer_name(0, "normal", "Heal")), 3, 5, 4, &[0; 60], false);
        let reason = |r: Result<Vec<Made>, Failure>| match r {
            Err(Failure::Bad(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(reason(case.render("photo.png")).contains("the layers are 3×5 but the photo is 4×4"));
        std::fs::remove_file(layers.join(layer_name(0, "normal", "Heal"))).unwrap();
        png_file(&layers.join(layer_name(0, "dissolve", "Heal")), 4, 4, 4, &[0; 64], false);
        assert!(reason(case.render("photo.png")).contains("blend mode `dissolve`"));
        std::fs::remove_file(layers.join(layer_name(0, "dissolve", "Heal"))).unwrap();
        std::fs::write(layers.join(layer_name(0, "normal", "Heal")), b"\x89PNG\r\n\x1a\nbroken").unwrap();
        assert!(reason(case.render("photo.png")).contains("Heal.png is not a readable PNG"));
        let mut cmyk = Vec::new();
        jpeg_encoder::Encoder::new(&mut cmyk, 90).encode(&[0u8; 4 * 16], 4, 4, jpeg_encoder::ColorType::Cmyk).unwrap();
        std::fs::write(case.path("print.jpg"), cmyk).unwrap();
        assert!(reason(case.render("print.jpg")).contains("CMYK"));
    }

    #[test]
    fn a_result_the_server_flattened_gets_the_sources_metadata_back_without_a_new_generation() {
        let mut case = Case::new();
        let meta = Metadata {
            icc: Some(b"profile".to_vec()),
            exif: Some(exif::tests::sample(true, 1)),
            xmp: None,
            iptc: None,
        };
        jpeg_file(&case.path("photo.jpg"), 8, 8, &meta);
        // The server's image: same size, no metadata.
        let server = crate::imagegen::jpeg_bytes(8, 8, [1, 2, 3]);
        std::fs::write(case.path("server.jpg"), &server).unwrap();
        let flatten = |case: &Case| {
            let (source, result, work) = (case.path("photo.jpg"), case.path("server.jpg"), case.path("work"));
            render(&RenderInput { source: &source, result: &result, settings: &case.settings, work_dir: &work })
                .unwrap()
        };
        let made = flatten(&case);
        let out = std::fs::read(&made[0].path).unwrap();
        assert_eq!(Metadata::from_jpeg(&out).icc.as_deref(), Some(&b"profile"[..]));
        let decode =
            |b: &[u8]| zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(b)).decode().unwrap();
        assert_eq!(decode(&out), decode(&server), "the image data is the server's, not re-encoded");
        case.settings.flat = FlatFormat::Png;
        let made = flatten(&case);
        assert_eq!(made[0].ext, "png");
        assert_eq!(decode_png(&made[0].path).2.icc.as_deref(), Some(&b"profile"[..]));
        case.settings.flat = FlatFormat::None;
        assert!(flatten(&case).is_empty());
    }
}
