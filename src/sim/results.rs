//! Results like the real server's: with any `Layer: 1` task, a ZIP of decodable PNG layers named
//! `index=N&blendmode=MODE&name=PLUGIN.png` plus a `result.json`; with every task at `Layer: 0`,
//! one image in the input's format (the simulator's "retouch" leaves the pixels as they were).
//! A zip input (what the real server does with one is not documented) gives a zip with one
//! result per image entry.

use std::io::{Cursor, Read};
use std::path::Path;

use axum::body::Body;
use serde_json::{Value, json};

use crate::formats::{self, FileKind};
use crate::imagegen;

/// A result ready to send, with its exact length.
pub(super) struct Rendered {
    body: Body,
    len: u64,
}

impl axum::response::IntoResponse for Rendered {
    fn into_response(self) -> axum::response::Response {
        let mut response = axum::response::Response::new(self.body);
        response.headers_mut().insert(axum::http::header::CONTENT_LENGTH, self.len.into());
        response
    }
}

/// Blend mode the real server reports for a plugin's layer (a plausible table, not a spec).
fn blend_mode(plugin: &str) -> &'static str {
    match plugin {
        "Dodge Burn" | "Portrait Volumes" => "softLight",
        "Mattifier" => "darken",
        "Eye Brilliance" | "Glasses Anti Glare" => "linearLight",
        _ => "normal",
    }
}

/// The plugins whose task asks for a separate layer.
fn layer_plugins(payload: &Value) -> Vec<String> {
    let tasks = payload.get("tasks").and_then(Value::as_array).cloned().unwrap_or_default();
    tasks
        .iter()
        .filter(|t| crate::plugins::wants_layer(t))
        .map(|t| t.get("Plugin").and_then(Value::as_str).unwrap_or("Unknown").to_string())
        .collect()
}

/// Whether the payload has a Color Correction task (accepted only flat, `Layer = 0`).
fn color_corrects(payload: &Value) -> bool {
    let tasks = payload.get("tasks").and_then(Value::as_array).cloned().unwrap_or_default();
    tasks.iter().any(|t| t.get("Plugin").and_then(Value::as_str) == Some("Color Correction"))
}

/// The flat photo with Color Correction applied, as the simulator does it: a visible exposure
/// lift (one sixth of a stop, in the stored values), in the photo's own format and metadata.
fn color_corrected(input: &Path) -> std::io::Result<Vec<u8>> {
    let photo = crate::render::decode::read_photo(input).map_err(std::io::Error::other)?;
    let mut image = photo.image;
    let mut row = vec![0.0f32; image.width as usize * 3];
    for y in 0..image.height as usize {
        image.read_row(y, &mut row);
        row.iter_mut().for_each(|v| *v = (*v * 1.12).min(1.0));
        image.write_row(y, &row);
    }
    let mut out = Vec::new();
    let written = match photo.kind {
        FileKind::Png => crate::render::encode::write_png(&image, &photo.meta, &mut out),
        _ => crate::render::encode::write_jpeg(&image, &photo.meta, 92, &mut out),
    };
    written.map_err(std::io::Error::other)?;
    Ok(out)
}

/// Whether the payload asks Glasses Anti Glare for its patch layout (`LayoutMode = "patch"`, in
/// the task or its `User Params`).
fn glasses_patch(payload: &Value) -> bool {
    let tasks = payload.get("tasks").and_then(Value::as_array).cloned().unwrap_or_default();
    tasks.iter().any(|t| {
        t.get("Plugin").and_then(Value::as_str) == Some("Glasses Anti Glare")
            && [t.get("LayoutMode"), t.get("User Params").and_then(|p| p.get("LayoutMode"))]
                .into_iter()
                .flatten()
                .any(|m| m == "patch")
    })
}

/// The face the simulator "finds" in every photo: a box, as fractions of the frame.
const FACE_BOX: [f64; 4] = [0.3, 0.2, 0.4, 0.5];

/// A Glasses Anti Glare patch for a `width` × `height` photo: the face box at half resolution,
/// with the matrix mapping photo coordinates into it.
fn glasses_patch_layer(width: u32, height: u32, seed: u64) -> (Vec<u8>, Value) {
    let [fx, fy, fw, fh] = FACE_BOX;
    let (x0, y0) = (fx * f64::from(width), fy * f64::from(height));
    let (pw, ph) =
        (((fw * f64::from(width)) / 2.0).round().max(2.0), ((fh * f64::from(height)) / 2.0).round().max(2.0));
    let layer = imagegen::layer_png(imagegen::LayerLook::GreyRelief, pw as u32, ph as u32, seed);
    let face = json!({
        "confidence": 0.97,
        "faceGlasses": 0.95,
        "glassesAntiGlarePatchMatrix": [[0.5, 0.0, -0.5 * x0], [0.0, 0.5, -0.5 * y0]],
        "patchWidth": pw,
        "patchHeight": ph,
    });
    (layer, face)
}

/// What a layered result holds: the plugins with a layer, Glasses' layout, whether faces are found.
struct Plan {
    plugins: Vec<String>,
    patch: bool,
    faces: bool,
}

/// How the simulator draws a plugin's layer.
fn look(mode: &str) -> imagegen::LayerLook {
    match mode {
        "softLight" | "linearLight" => imagegen::LayerLook::GreyRelief,
        "darken" => imagegen::LayerLook::Shade,
        _ => imagegen::LayerLook::Patches,
    }
}

/// The layers and metadata for one image of `width` × `height`: full-size layers drawn like
/// the real plugins' (see [`imagegen::LayerLook`]).
fn layer_entries(prefix: &str, plan: &Plan, width: u32, height: u32, photo: Option<&[u8]>) -> Vec<(String, Vec<u8>)> {
    let (plugins, patch) = (&plan.plugins, plan.patch);
    let mut glasses_faces = Vec::new();
    let mut entries: Vec<(String, Vec<u8>)> = plugins
        .iter()
        .enumerate()
        .map(|(index, plugin)| {
            let mode = blend_mode(plugin);
            let name = format!("{prefix}index={index}&blendmode={mode}&name={plugin}.png");
            let seed = u64::from(width) * 31 + u64::from(height) * 7 + index as u64;
            let layer = match photo {
                Some(rgb) if plugin == "Heal" => imagegen::heal_layer_png(rgb, width, height, seed),
                _ if plugin == "Glasses Anti Glare" && patch => {
                    let (layer, face) = glasses_patch_layer(width.max(4), height.max(4), seed);
                    glasses_faces.push(face);
                    layer
                }
                // A helper mask: grey, like a selection.
                _ if plugin == "Skin Mask" => {
                    imagegen::layer_png(imagegen::LayerLook::GreyRelief, width.max(1), height.max(1), seed)
                }
                _ => imagegen::layer_png(look(mode), width.max(1), height.max(1), seed),
            };
            (name, layer)
        })
        .collect();
    // Face Lifting's flow layer comes with the matrices needed to apply it (encoding unpublished).
    let flow = plugins.iter().any(|p| p == "Face Lifting");
    let meta = json!({
        "jsonVersion": "1",
        "flowCount": if flow { 1 } else { 0 },
        "flowMatrices": if flow { json!([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]]) } else { json!([]) },
        "plugins": plugins.iter().map(|p| {
            let faces = match p.as_str() {
                "Glasses Anti Glare" if patch && plan.faces => json!(glasses_faces),
                "Face Detection" if plan.faces => json!([{"confidence": 0.97, "faceAge": 32, "faceGenderFemale": 0.8,
                    "faceGenderMale": 0.2, "faceGlasses": 0.1,
                    "landmarks": [{"x": 0.42, "y": 0.38}, {"x": 0.58, "y": 0.38}]}]),
                _ => json!([]),
            };
            json!({"pluginName": p, "metadata": {}, "faces": faces})
        }).collect::<Vec<_>>(),
        "faces": if plan.faces {
            json!([{"x": FACE_BOX[0], "y": FACE_BOX[1], "width": FACE_BOX[2], "height": FACE_BOX[3]}])
        } else {
            json!([])
        },
        "crop": {"x": 0, "y": 0, "width": width, "height": height},
    });
    entries.push((format!("{prefix}result.json"), meta.to_string().into_bytes()));
    entries
}

pub(super) async fn render(input: &Path, kind: FileKind, payload: &Value, faces: bool) -> std::io::Result<Rendered> {
    let plan = Plan { plugins: layer_plugins(payload), patch: glasses_patch(payload), faces };
    if kind.is_image() && plan.plugins.is_empty() && color_corrects(payload) {
        let input = input.to_path_buf();
        let bytes =
            tokio::task::spawn_blocking(move || color_corrected(&input)).await.map_err(std::io::Error::other)??;
        return Ok(Rendered { len: bytes.len() as u64, body: Body::from(bytes) });
    }
    if kind.is_image() && plan.plugins.is_empty() {
        let file = tokio::fs::File::open(input).await?;
        let len = file.metadata().await?.len();
        let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
        return Ok(Rendered { body, len });
    }
    let input = input.to_path_buf();
    let bytes =
        tokio::task::spawn_blocking(move || render_zip(&input, kind, &plan)).await.map_err(std::io::Error::other)??;
    Ok(Rendered { len: bytes.len() as u64, body: Body::from(bytes) })
}

fn dimensions(bytes: &[u8], kind: FileKind) -> (u32, u32) {
    formats::image_dimensions(&mut Cursor::new(bytes), kind).ok().flatten().unwrap_or((64, 64))
}

fn render_zip(input: &Path, kind: FileKind, plan: &Plan) -> std::io::Result<Vec<u8>> {
    if kind.is_image() {
        let mut file = std::fs::File::open(input)?;
        let dims = formats::image_dimensions(&mut file, kind)?.unwrap_or((64, 64));
        // Heal patches follow the photo when it decodes (as the real plugin's would).
        let photo = crate::render::decode::read_photo(input).ok().filter(|p| (p.image.width, p.image.height) == dims);
        let rgb = photo.as_ref().map(|p| p.image.rgb8());
        return Ok(imagegen::zip_of(&layer_entries("", plan, dims.0, dims.1, rgb.as_deref())));
    }
    let mut archive = zip::ZipArchive::new(std::fs::File::open(input)?).map_err(std::io::Error::other)?;
    let mut entries = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(std::io::Error::other)?;
        let Some(name) = entry.enclosed_name() else { continue };
        let mut bytes = Vec::new();
        (&mut entry).take(256 * 1024 * 1024).read_to_end(&mut bytes)?;
        let entry_kind = formats::sniff(&bytes);
        if !entry_kind.is_image() {
            continue;
        }
        let name = name.to_string_lossy().replace('\\', "/");
        if plan.plugins.is_empty() {
            entries.push((name, bytes));
        } else {
            let stem = name.rsplit_once('.').map_or(name.as_str(), |(s, _)| s).to_string();
            let (w, h) = dimensions(&bytes, entry_kind);
            entries.extend(layer_entries(&format!("{stem}/"), plan, w, h, None));
        }
    }
    Ok(imagegen::zip_of(&entries))
}

/// A broken or malicious getFile answer, for the modes that concern getFile.
pub(super) fn hostile(mode: super::Hostile) -> Option<axum::response::Response> {
    use super::Hostile as H;
    use axum::response::IntoResponse;
    let layer = imagegen::png_bytes(4, 4, [1, 2, 3]);
    let zip = |entries: &[(&str, Vec<u8>)]| imagegen::zip_of(entries);
    let bytes = match mode {
        H::TraversalZip => zip(&[("ok.png", layer.clone()), ("../escaped.png", layer)]),
        H::AbsoluteZip => zip(&[("/tmp/retouchd-escaped.png", layer)]),
        H::SymlinkZip => {
            let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
            let options = zip::write::SimpleFileOptions::default();
            writer.add_symlink("link.png", "/etc/passwd", options).ok()?;
            writer.finish().ok()?.into_inner()
        }
        H::DuplicateZip => {
            // Two entries whose names differ by one byte, then made equal (names are not checksummed).
            let mut bytes = zip(&[("layer-a.png", layer.clone()), ("layer-b.png", layer)]);
            let (from, to) = (b"layer-b.png", b"layer-a.png");
            let mut i = 0;
            while i + from.len() <= bytes.len() {
                if &bytes[i..i + from.len()] == from {
                    bytes[i..i + from.len()].copy_from_slice(to);
                }
                i += 1;
            }
            bytes
        }
        H::ZipBomb => zip_bomb(),
        H::TruncatedZip => {
            let whole = zip(&[("index=0&blendmode=normal&name=Heal.png", layer), ("result.json", b"{}".to_vec())]);
            whole[..whole.len() / 2].to_vec()
        }
        H::LyingLength => {
            let whole = zip(&[("index=0&blendmode=normal&name=Heal.png", layer)]);
            let len = whole.len() as u64 * 3;
            // A stream, so that the server library does not notice the lie itself.
            let chunk = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(whole)) });
            let mut response = Body::from_stream(chunk).into_response();
            response.headers_mut().insert(axum::http::header::CONTENT_LENGTH, len.into());
            return Some(response);
        }
        H::Stall => {
            let head =
                futures_util::stream::once(async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"PK\x03\x04")) });
            let stream = futures_util::StreamExt::chain(head, futures_util::stream::pending());
            return Some(Body::from_stream(stream).into_response());
        }
        H::HtmlStatus | H::HugeJson | H::InvalidJson => return None,
    };
    Some(Rendered { len: bytes.len() as u64, body: Body::from(bytes) }.into_response())
}

/// A zip of about 250 KB that expands to 256 MiB of zeros; made once.
fn zip_bomb() -> Vec<u8> {
    use std::io::Write;
    static BOMB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BOMB.get_or_init(|| {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().large_file(false);
        writer.start_file("index=0&blendmode=normal&name=Heal.png", options).expect("in-memory zip");
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            writer.write_all(&zeros).expect("in-memory zip");
        }
        writer.finish().expect("in-memory zip").into_inner()
    })
    .clone()
}
