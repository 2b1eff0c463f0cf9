//! A layered Photoshop file (PSD, version 1) of a finished photo: the source as a locked
//! "Background", one layer per server layer named by its plugin with its blend mode and
//! opacity, the ICC profile, and the finished photo as the file's composite image, so a viewer
//! that does not composite still shows the result. 8 bits per channel, or 16 when the source
//! has 16 (then the layers go in the `Lr16` block, where Photoshop keeps them at that depth).
//! Channel data is PackBits-compressed (raw where a row could overflow a PSD row count).
//!
//! The layout follows Adobe's "Photoshop File Formats Specification"; `psd-tools` reads it back
//! in the tests.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

use super::Failure;
use super::blend::BlendMode;
use super::decode::LayerRows;
use super::image::{Image, Samples};

/// The largest side a PSD (not PSB) may have.
pub const MAX_SIDE: u32 = 30_000;

/// One server layer to store.
pub struct PsdLayer {
    pub name: String,
    pub mode: BlendMode,
    pub opacity: f32,
    pub rows: LayerRows,
    /// Shown (a helper mask is kept hidden: there for the retoucher, not in the picture).
    pub visible: bool,
}

/// Photoshop's four-letter key of a blend mode.
pub fn mode_key(mode: BlendMode) -> &'static [u8; 4] {
    match mode {
        BlendMode::Normal => b"norm",
        BlendMode::Multiply => b"mul ",
        BlendMode::Screen => b"scrn",
        BlendMode::Overlay => b"over",
        BlendMode::Darken => b"dark",
        BlendMode::Lighten => b"lite",
        BlendMode::ColorDodge => b"div ",
        BlendMode::ColorBurn => b"idiv",
        BlendMode::HardLight => b"hLit",
        BlendMode::SoftLight => b"sLit",
        BlendMode::Difference => b"diff",
        BlendMode::Exclusion => b"smud",
        BlendMode::LinearBurn => b"lbrn",
        BlendMode::LinearDodge => b"lddg",
        BlendMode::LinearLight => b"lLit",
        BlendMode::VividLight => b"vLit",
        BlendMode::PinLight => b"pLit",
    }
}

/// One channel, compressed: its compression code and bytes (row counts included).
type Channel = Vec<u8>;

/// What a layer record says, besides its channels' lengths.
struct RecordHead {
    name: String,
    mode: BlendMode,
    opacity: u8,
    locked: bool,
    hidden: bool,
    channel_ids: Vec<i16>,
}

/// Writes `path`: `background` (the source pixels), `layers` over it, `flat` as the composite.
pub fn write_psd(
    path: &Path,
    background: &Image,
    flat: &Image,
    layers: Vec<PsdLayer>,
    icc: Option<&[u8]>,
) -> Result<(), Failure> {
    let io = Failure::Io;
    let (width, height) = (background.width, background.height);
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(Failure::Bad(format!("{width}×{height} is larger than a PSD can hold ({MAX_SIDE} pixels a side)")));
    }
    let sixteen = background.is_16_bit();
    let mut heads = vec![RecordHead {
        name: "Background".into(),
        mode: BlendMode::Normal,
        opacity: 255,
        locked: true,
        hidden: false,
        channel_ids: vec![0, 1, 2],
    }];
    for layer in &layers {
        heads.push(RecordHead {
            name: layer.name.clone(),
            mode: layer.mode,
            opacity: (layer.opacity.clamp(0.0, 1.0) * 255.0).round() as u8,
            locked: false,
            hidden: !layer.visible,
            channel_ids: vec![-1, 0, 1, 2],
        });
    }

    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io)?);
    // Header.
    out.write_all(b"8BPS").map_err(io)?;
    put_u16(&mut out, 1)?;
    out.write_all(&[0; 6]).map_err(io)?;
    put_u16(&mut out, 3)?;
    put_u32(&mut out, height)?;
    put_u32(&mut out, width)?;
    put_u16(&mut out, if sixteen { 16 } else { 8 })?;
    put_u16(&mut out, 3)?; // RGB
    put_u32(&mut out, 0)?; // colour mode data
    // Image resources: the ICC profile (1039).
    let mut resources = Vec::new();
    if let Some(icc) = icc {
        resources.extend_from_slice(b"8BIM");
        resources.extend_from_slice(&1039u16.to_be_bytes());
        resources.extend_from_slice(&[0, 0]); // empty name, padded
        resources.extend_from_slice(&(icc.len() as u32).to_be_bytes());
        resources.extend_from_slice(icc);
        if icc.len() % 2 == 1 {
            resources.push(0);
        }
    }
    put_u32(&mut out, resources.len() as u32)?;
    out.write_all(&resources).map_err(io)?;

    // Layer and mask information, with lengths filled in once the channels are written.
    let section_at = out.stream_position().map_err(io)?;
    put_u32(&mut out, 0)?; // section length
    if sixteen {
        put_u32(&mut out, 0)?; // the 8-bit layer info is empty
        put_u32(&mut out, 0)?; // global layer mask
        out.write_all(b"8BIMLr16").map_err(io)?;
    }
    let info_len_at = out.stream_position().map_err(io)?;
    put_u32(&mut out, 0)?; // layer info length
    let info_start = out.stream_position().map_err(io)?;
    put_u16(&mut out, heads.len() as u16)?;
    let records_at = out.stream_position().map_err(io)?;
    let record_sizes: Vec<usize> = heads.iter().map(|h| record(h, (width, height), &[]).len()).collect();
    out.seek(SeekFrom::Current(record_sizes.iter().sum::<usize>() as i64)).map_err(io)?;

    let mut lengths: Vec<Vec<u32>> = Vec::new();
    let channels = planes(background, sixteen);
    lengths.push(write_channels(&mut out, &channels)?);
    for mut layer in layers {
        let channels = layer_channels(&mut layer.rows, width, height, sixteen).map_err(Failure::Bad)?;
        lengths.push(write_channels(&mut out, &channels)?);
    }
    let mut info_len = out.stream_position().map_err(io)? - info_start;
    while !info_len.is_multiple_of(4) {
        out.write_all(&[0]).map_err(io)?;
        info_len += 1;
    }
    if !sixteen {
        put_u32(&mut out, 0)?; // global layer mask
    }
    let section_end = out.stream_position().map_err(io)?;

    // Back to fill in the records and lengths.
    out.seek(SeekFrom::Start(records_at)).map_err(io)?;
    for (head, lens) in heads.iter().zip(&lengths) {
        out.write_all(&record(head, (width, height), lens)).map_err(io)?;
    }
    out.seek(SeekFrom::Start(info_len_at)).map_err(io)?;
    put_u32(&mut out, info_len as u32)?;
    out.seek(SeekFrom::Start(section_at)).map_err(io)?;
    put_u32(&mut out, (section_end - section_at - 4) as u32)?;
    out.seek(SeekFrom::Start(section_end)).map_err(io)?;

    // The composite image: planar, all rows' counts first, then the rows.
    let flat_planes = planes(flat, sixteen);
    let packable = flat_planes.iter().all(|c| c.first() == Some(&0) && c.get(1) == Some(&1));
    if packable {
        put_u16(&mut out, 1)?;
        let rows = height as usize * 2;
        for c in &flat_planes {
            out.write_all(&c[2..2 + rows]).map_err(io)?;
        }
        for c in &flat_planes {
            out.write_all(&c[2 + rows..]).map_err(io)?;
        }
    } else {
        put_u16(&mut out, 0)?;
        for plane in raw_planes(flat, sixteen) {
            out.write_all(&plane).map_err(io)?;
        }
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)
}

fn put_u16(out: &mut impl Write, v: u16) -> Result<(), Failure> {
    out.write_all(&v.to_be_bytes()).map_err(Failure::Io)
}

fn put_u32(out: &mut impl Write, v: u32) -> Result<(), Failure> {
    out.write_all(&v.to_be_bytes()).map_err(Failure::Io)
}

/// A layer record; `lengths` are its channels' byte counts (zeros while reserving space).
fn record(head: &RecordHead, (width, height): (u32, u32), lengths: &[u32]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(&[0u8; 8]); // top, left
    r.extend_from_slice(&height.to_be_bytes()); // bottom
    r.extend_from_slice(&width.to_be_bytes()); // right
    r.extend_from_slice(&(head.channel_ids.len() as u16).to_be_bytes());
    for (i, id) in head.channel_ids.iter().enumerate() {
        r.extend_from_slice(&id.to_be_bytes());
        r.extend_from_slice(&lengths.get(i).copied().unwrap_or(0).to_be_bytes());
    }
    r.extend_from_slice(b"8BIM");
    r.extend_from_slice(mode_key(head.mode));
    r.push(head.opacity);
    r.push(0); // clipping: base
    // Flags: bit 0 transparency protected, bit 1 hidden.
    r.push(u8::from(head.locked) | (u8::from(head.hidden) << 1));
    r.push(0);
    let mut extra = Vec::new();
    extra.extend_from_slice(&0u32.to_be_bytes()); // no mask
    extra.extend_from_slice(&0u32.to_be_bytes()); // no blending ranges
    let ascii: Vec<u8> = head.name.chars().take(255).map(|c| if c.is_ascii() { c as u8 } else { b'?' }).collect();
    extra.push(ascii.len() as u8);
    extra.extend_from_slice(&ascii);
    while !extra.len().is_multiple_of(4) {
        extra.push(0);
    }
    // The name in full (Unicode).
    let utf16: Vec<u16> = head.name.encode_utf16().collect();
    let mut luni = (utf16.len() as u32).to_be_bytes().to_vec();
    utf16.iter().for_each(|u| luni.extend_from_slice(&u.to_be_bytes()));
    while !luni.len().is_multiple_of(4) {
        luni.push(0);
    }
    tagged_block(&mut extra, b"luni", &luni);
    if head.locked {
        tagged_block(&mut extra, b"lspf", &0x8000_0000u32.to_be_bytes());
    }
    r.extend_from_slice(&(extra.len() as u32).to_be_bytes());
    r.extend_from_slice(&extra);
    r
}

fn tagged_block(out: &mut Vec<u8>, key: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(b"8BIM");
    out.extend_from_slice(key);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

fn write_channels(out: &mut impl Write, channels: &[Channel]) -> Result<Vec<u32>, Failure> {
    let mut lengths = Vec::new();
    for c in channels {
        out.write_all(c).map_err(Failure::Io)?;
        lengths.push(c.len() as u32);
    }
    Ok(lengths)
}

/// An image's colour channels as big-endian planes of 8- or 16-bit samples.
fn raw_planes(image: &Image, sixteen: bool) -> Vec<Vec<u8>> {
    let ch = image.channels;
    (0..3)
        .map(|c| match &image.samples {
            Samples::Eight(s) if !sixteen => s.iter().skip(c).step_by(ch).copied().collect(),
            Samples::Eight(s) => {
                s.iter().skip(c).step_by(ch).flat_map(|&v| (u16::from(v) * 257).to_be_bytes()).collect()
            }
            Samples::Sixteen(s) => s.iter().skip(c).step_by(ch).flat_map(|&v| v.to_be_bytes()).collect(),
        })
        .collect()
}

/// An image's colour channels, compressed, with ids 0, 1, 2.
fn planes(image: &Image, sixteen: bool) -> Vec<Channel> {
    let row = image.width as usize * if sixteen { 2 } else { 1 };
    raw_planes(image, sixteen).into_iter().map(|plane| compress(&plane, row)).collect()
}

/// A layer's alpha and colour channels (ids -1, 0, 1, 2), decoded row by row.
fn layer_channels(rows: &mut LayerRows, width: u32, height: u32, sixteen: bool) -> Result<Vec<Channel>, String> {
    if rows.size() != (width, height) {
        return Err(format!("a layer is {}×{} but the photo is {width}×{height}", rows.size().0, rows.size().1));
    }
    let bytes = if sixteen { 2 } else { 1 };
    let row_len = width as usize * bytes;
    let mut planes: Vec<Vec<u8>> = (0..4).map(|_| Vec::with_capacity(row_len * height as usize)).collect();
    let mut px = vec![0.0f32; width as usize * 4];
    for _ in 0..height {
        rows.next_row(&mut px)?;
        // Planes in channel-id order: alpha (-1), red, green, blue.
        for (plane, c) in planes.iter_mut().zip([3, 0, 1, 2]) {
            for p in px.chunks_exact(4) {
                if sixteen {
                    plane.extend_from_slice(&((p[c] * 65535.0 + 0.5) as u16).to_be_bytes());
                } else {
                    plane.push((p[c] * 255.0 + 0.5) as u8);
                }
            }
        }
    }
    Ok(planes.into_iter().map(|plane| compress(&plane, row_len)).collect())
}

/// A plane as PSD channel data: PackBits (code 1, then a u16 count per row, then the rows)
/// when every packed row fits a u16 count, else raw (code 0).
fn compress(plane: &[u8], row_len: usize) -> Vec<u8> {
    if row_len + row_len / 128 + 2 > usize::from(u16::MAX) || row_len == 0 {
        return [&[0u8, 0][..], plane].concat();
    }
    let rows = plane.len() / row_len;
    let mut counts = Vec::with_capacity(rows * 2);
    let mut packed = Vec::with_capacity(plane.len() / 4);
    for row in plane.chunks_exact(row_len) {
        let before = packed.len();
        packbits(row, &mut packed);
        counts.extend_from_slice(&((packed.len() - before) as u16).to_be_bytes());
    }
    let mut out = Vec::with_capacity(2 + counts.len() + packed.len());
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&counts);
    out.extend_from_slice(&packed);
    out
}

/// PackBits: runs of 2..=128 equal bytes as (1 - n, byte); other bytes as (n - 1, n bytes).
/// At most `len + len / 128 + 2` bytes.
fn packbits(row: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < row.len() {
        let run = row[i..].iter().take(128).take_while(|&&b| b == row[i]).count();
        if run >= 2 {
            out.push((1i16 - run as i16) as u8);
            out.push(row[i]);
            i += run;
            continue;
        }
        // Literal bytes up to the next run of at least three (a pair costs no more inside a
        // literal than as its own run), or 128 bytes.
        let start = i;
        while i < row.len() && i - start < 128 && !(i + 2 < row.len() && row[i] == row[i + 1] && row[i] == row[i + 2]) {
            i += 1;
        }
        out.push((i - start - 1) as u8);
        out.extend_from_slice(&row[start..i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(mut data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some((&n, rest)) = data.split_first() {
            let n = n as i8;
            if n >= 0 {
                out.extend_from_slice(&rest[..n as usize + 1]);
                data = &rest[n as usize + 1..];
            } else if n != -128 {
                out.extend(std::iter::repeat_n(rest[0], (1 - n as i16) as usize));
                data = &rest[1..];
            } else {
                data = rest;
            }
        }
        out
    }

    #[test]
    fn packbits_round_trips_runs_literals_and_long_rows() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut rows: Vec<Vec<u8>> = vec![vec![], vec![5], vec![5, 5], vec![1, 2, 3], vec![9; 300]];
        rows.push((0..1000).map(|_| rng.u8(..)).collect());
        rows.push((0..1000).map(|i| if i % 7 < 3 { 1 } else { rng.u8(..4) }).collect());
        for row in rows {
            let mut packed = Vec::new();
            packbits(&row, &mut packed);
            assert_eq!(unpack(&packed), row);
            assert!(packed.len() <= row.len() + row.len() / 128 + 2, "{} bytes packed to {}", row.len(), packed.len());
        }
    }

    #[test]
    fn every_blend_mode_has_a_distinct_photoshop_key() {
        let keys: std::collections::HashSet<_> = BlendMode::ALL.iter().map(|&m| mode_key(m)).collect();
        assert_eq!(keys.len(), BlendMode::ALL.len());
    }
}
