//! A photo's metadata as a finished photo carries it over: the ICC colour profile, EXIF, XMP and
//! IPTC, read from a JPEG's APP segments or a PNG's chunks, filtered by the watch's `metadata`
//! setting, and laid out again for a JPEG (APP segments) or a PNG (iCCP, eXIf, XMP iTXt).
//! A PNG has no standard place for IPTC, so it is not written there (XMP carries the same
//! fields in files from current software).

use super::exif;

/// How much of the source's metadata goes into the finished photo (`[watch.output] metadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetadataPolicy {
    #[default]
    All,
    /// Everything but the location: EXIF's GPS block and XMP's `exif:GPS…` properties.
    NoGps,
    /// Nothing, not even the colour profile.
    None,
}

const EXIF_HEADER: &[u8] = b"Exif\0\0";
const XMP_HEADER: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const ICC_HEADER: &[u8] = b"ICC_PROFILE\0";
const IPTC_HEADER: &[u8] = b"Photoshop 3.0\0";
/// The XMP packet's keyword in a PNG iTXt chunk.
pub const XMP_PNG_KEYWORD: &str = "XML:com.adobe.xmp";

/// What a finished photo can carry over from its source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub icc: Option<Vec<u8>>,
    /// From the TIFF header on.
    pub exif: Option<Vec<u8>>,
    /// The XMP packet (XML).
    pub xmp: Option<Vec<u8>>,
    /// The whole Photoshop APP13 payload after its header (image resource blocks, IPTC among them).
    pub iptc: Option<Vec<u8>>,
}

impl Metadata {
    /// Reads the metadata segments of a JPEG (everything before the first scan).
    pub fn from_jpeg(bytes: &[u8]) -> Metadata {
        let mut meta = Metadata::default();
        let mut icc_chunks: Vec<(u8, &[u8])> = Vec::new();
        for (marker, data) in jpeg_segments(bytes) {
            match marker {
                0xE1 if data.starts_with(EXIF_HEADER) && meta.exif.is_none() => {
                    meta.exif = Some(data[EXIF_HEADER.len()..].to_vec())
                }
                0xE1 if data.starts_with(XMP_HEADER) && meta.xmp.is_none() => {
                    meta.xmp = Some(data[XMP_HEADER.len()..].to_vec())
                }
                0xE2 if data.starts_with(ICC_HEADER) && data.len() > ICC_HEADER.len() + 2 => {
                    icc_chunks.push((data[ICC_HEADER.len()], &data[ICC_HEADER.len() + 2..]))
                }
                0xED if data.starts_with(IPTC_HEADER) && meta.iptc.is_none() => {
                    meta.iptc = Some(data[IPTC_HEADER.len()..].to_vec())
                }
                _ => {}
            }
        }
        if !icc_chunks.is_empty() {
            icc_chunks.sort_by_key(|c| c.0);
            meta.icc = Some(icc_chunks.iter().flat_map(|c| c.1.iter().copied()).collect());
        }
        meta
    }

    /// Reads a PNG's iCCP, eXIf and XMP iTXt chunks.
    pub fn from_png(info: &png::Info) -> Metadata {
        let xmp = info
            .utf8_text
            .iter()
            .find(|t| t.keyword == XMP_PNG_KEYWORD)
            .and_then(|t| t.get_text().ok())
            .map(String::into_bytes);
        Metadata {
            icc: info.icc_profile.as_ref().map(|p| p.to_vec()),
            exif: info.exif_metadata.as_ref().map(|p| p.to_vec()),
            xmp,
            iptc: None,
        }
    }

    /// What the policy lets through.
    pub fn filtered(mut self, policy: MetadataPolicy) -> Metadata {
        match policy {
            MetadataPolicy::All => self,
            MetadataPolicy::None => Metadata::default(),
            MetadataPolicy::NoGps => {
                if let Some(exif) = self.exif.as_mut() {
                    exif::strip_gps(exif);
                }
                if let Some(xmp) = self.xmp.take() {
                    self.xmp = strip_xmp_gps(&String::from_utf8_lossy(&xmp)).map(String::into_bytes);
                }
                self
            }
        }
    }

    /// Orientation from EXIF (1 when absent).
    pub fn orientation(&self) -> u16 {
        self.exif.as_deref().and_then(exif::orientation).unwrap_or(1)
    }

    /// Records that the pixels are now `width` × `height` and shown as stored
    /// (`orientation` 1 once turned, else the source's).
    pub fn describe_pixels(&mut self, orientation: u16, width: u32, height: u32) {
        if let Some(exif) = self.exif.as_mut() {
            exif::set_orientation_and_size(exif, orientation, width, height);
        }
    }

    /// The APP segments of a JPEG, as (APPn number, payload) in the usual order: EXIF, XMP,
    /// IPTC. (The ICC profile is chunked by the encoder.) A block too large for one segment
    /// is left out rather than cut.
    pub fn jpeg_app_segments(&self) -> Vec<(u8, Vec<u8>)> {
        let mut segments = Vec::new();
        let parts = [(1, EXIF_HEADER, &self.exif), (1, XMP_HEADER, &self.xmp), (13, IPTC_HEADER, &self.iptc)];
        for (number, header, body) in parts {
            if let Some(body) = body
                && header.len() + body.len() <= 65533
            {
                segments.push((number, [header, body.as_slice()].concat()));
            }
        }
        segments
    }

    /// Whether there is nothing to carry.
    pub fn is_empty(&self) -> bool {
        self.icc.is_none() && self.exif.is_none() && self.xmp.is_none() && self.iptc.is_none()
    }

    /// A JPEG with these metadata segments added after its SOI (and JFIF) marker, the image
    /// data untouched: for a JPEG whose metadata was dropped, without decoding it again.
    pub fn insert_into_jpeg(&self, jpeg: &[u8]) -> Vec<u8> {
        let mut at = 2;
        if let Some((0xE0, data)) = jpeg_segments(jpeg).first() {
            at += 4 + data.len();
        }
        let mut out = Vec::with_capacity(jpeg.len() + 1024);
        out.extend_from_slice(&jpeg[..at.min(jpeg.len())]);
        let mut segments = self.jpeg_app_segments();
        if let Some(icc) = &self.icc {
            const CHUNK: usize = 65519 - ICC_HEADER.len();
            let count = icc.len().div_ceil(CHUNK);
            if count < 256 {
                for (i, chunk) in icc.chunks(CHUNK).enumerate() {
                    segments.push((2, [ICC_HEADER, &[i as u8 + 1, count as u8], chunk].concat()));
                }
            }
        }
        for (number, payload) in segments {
            out.extend_from_slice(&[0xFF, 0xE0 + number]);
            out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
            out.extend_from_slice(&payload);
        }
        out.extend_from_slice(&jpeg[at.min(jpeg.len())..]);
        out
    }
}

/// The segments before the first scan of a JPEG: (marker, payload), stopping at anything
/// malformed.
fn jpeg_segments(bytes: &[u8]) -> Vec<(u8, &[u8])> {
    let mut segments = Vec::new();
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return segments;
    }
    let mut at = 2;
    while at + 4 <= bytes.len() {
        if bytes[at] != 0xFF {
            break;
        }
        let marker = bytes[at + 1];
        if marker == 0xFF {
            at += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let len = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        let Some(data) = bytes.get(at + 4..at + 2 + len).filter(|_| len >= 2) else { break };
        segments.push((marker, data));
        at += 2 + len;
    }
    segments
}

/// The XMP namespaces whose `GPS…` properties are the location: EXIF's and EXIF 2.3's.
const LOCATION_NAMESPACES: [&[u8]; 2] = [b"http://ns.adobe.com/exif/1.0/", b"http://cipa.jp/exif/1.0/"];

/// Whether a property is the location: a `GPS…` name in a [`LOCATION_NAMESPACES`] namespace,
/// whatever prefix the packet binds it to (or, in a packet that never declares it, `exif:`).
fn is_location(namespace: &quick_xml::name::ResolveResult, qualified: &[u8], local: &[u8]) -> bool {
    use quick_xml::name::ResolveResult;
    local.starts_with(b"GPS")
        && match namespace {
            ResolveResult::Bound(ns) => LOCATION_NAMESPACES.contains(&ns.as_ref()),
            ResolveResult::Unknown(prefix) => prefix.as_slice() == b"exif",
            ResolveResult::Unbound => qualified.starts_with(b"exif:"),
        }
}

/// XMP without its location: every `GPS…` property of the EXIF namespaces, as an attribute or
/// an element, found by namespace (an XML parser resolves the prefixes, so `geo:GPSLatitude`
/// with `xmlns:geo` bound to EXIF's namespace goes too). `None` when the packet cannot be
/// parsed: it is then dropped whole rather than risk keeping the location.
fn strip_xmp_gps(xmp: &str) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::reader::NsReader::from_str(xmp);
    let mut writer = quick_xml::Writer::new(Vec::with_capacity(xmp.len()));
    // Inside a removed element: its depth.
    let mut skipping = 0usize;
    loop {
        let (namespace, event) = reader.read_resolved_event().ok()?;
        if skipping > 0 {
            match event {
                Event::Start(_) => skipping += 1,
                Event::End(_) => skipping -= 1,
                Event::Eof => return None,
                _ => {}
            }
            continue;
        }
        let event = match event {
            Event::Eof => break,
            // A location element: its content is skipped to its end tag; an empty one is left out.
            Event::Start(e) if is_location(&namespace, e.name().as_ref(), e.local_name().as_ref()) => {
                skipping = 1;
                continue;
            }
            Event::Empty(e) if is_location(&namespace, e.name().as_ref(), e.local_name().as_ref()) => continue,
            Event::Start(e) => Event::Start(without_location_attributes(&reader, e)?),
            Event::Empty(e) => Event::Empty(without_location_attributes(&reader, e)?),
            other => other,
        };
        writer.write_event(event).ok()?;
    }
    String::from_utf8(writer.into_inner()).ok()
}

/// A start tag without its location attributes.
fn without_location_attributes<'a>(
    reader: &quick_xml::reader::NsReader<&[u8]>,
    tag: quick_xml::events::BytesStart<'a>,
) -> Option<quick_xml::events::BytesStart<'a>> {
    let mut kept = tag.to_owned();
    kept.clear_attributes();
    for attribute in tag.attributes() {
        let attribute = attribute.ok()?;
        let (namespace, local) = reader.resolve_attribute(attribute.key);
        if !is_location(&namespace, attribute.key.as_ref(), local.as_ref()) {
            kept.push_attribute(attribute);
        }
    }
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    #[test]
    fn a_jpegs_metadata_segments_are_found_and_the_profile_reassembled() {
        let exif = exif::tests::sample(true, 6);
        let mut jpeg = vec![0xFF, 0xD8];
        jpeg.extend(segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        jpeg.extend(segment(0xE1, &[EXIF_HEADER, &exif].concat()));
        jpeg.extend(segment(0xE2, &[ICC_HEADER, &[2, 2], b"second"].concat()));
        jpeg.extend(segment(0xE2, &[ICC_HEADER, &[1, 2], b"first-"].concat()));
        jpeg.extend(segment(0xE1, &[XMP_HEADER, b"<x:xmpmeta/>"].concat()));
        jpeg.extend(segment(0xED, &[IPTC_HEADER, b"8BIM\x04\x04"].concat()));
        jpeg.extend([0xFF, 0xDA, 0, 2, 0xFF, 0xD9]);
        let meta = Metadata::from_jpeg(&jpeg);
        assert_eq!(meta.icc.as_deref(), Some(&b"first-second"[..]));
        assert_eq!(meta.exif.as_deref(), Some(exif.as_slice()));
        assert_eq!(meta.xmp.as_deref(), Some(&b"<x:xmpmeta/>"[..]));
        assert_eq!(meta.iptc.as_deref(), Some(&b"8BIM\x04\x04"[..]));
        assert_eq!(meta.orientation(), 6);
        let segments = meta.jpeg_app_segments();
        assert_eq!(segments.iter().map(|s| s.0).collect::<Vec<_>>(), [1, 1, 13]);
        assert!(segments[0].1.starts_with(EXIF_HEADER));
        assert_eq!(Metadata::from_jpeg(b"\xFF\xD8\xFF\xE1\x00"), Metadata::default(), "truncated");
    }

    #[test]
    fn metadata_inserted_into_a_bare_jpeg_reads_back_and_the_picture_is_untouched() {
        let bare = crate::imagegen::jpeg_bytes(16, 8, [10, 20, 30]);
        let meta = Metadata {
            icc: Some((0..150_000u32).map(|i| i as u8).collect()),
            exif: Some(exif::tests::sample(false, 6)),
            xmp: Some(b"<x:xmpmeta/>".to_vec()),
            iptc: Some(b"8BIM".to_vec()),
        };
        let with = meta.insert_into_jpeg(&bare);
        assert_eq!(Metadata::from_jpeg(&with), meta);
        let decode =
            |b: &[u8]| zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(b)).decode().unwrap();
        assert_eq!(decode(&with), decode(&bare));
    }

    #[test]
    fn the_policy_drops_the_location_or_everything() {
        let xmp = r#"<rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" exif:GPSLatitude="48,51.29N" exif:GPSLongitude='2,17.4E' dc:format="image/jpeg"><exif:GPSAltitude>35/1</exif:GPSAltitude><exif:GPSMapDatum/><dc:title>Portrait</dc:title></rdf:Description>"#;
        let meta = Metadata {
            icc: Some(b"profile".to_vec()),
            exif: Some(exif::tests::sample(false, 1)),
            xmp: Some(xmp.as_bytes().to_vec()),
            iptc: Some(b"iptc".to_vec()),
        };
        let kept = meta.clone().filtered(MetadataPolicy::NoGps);
        let text = String::from_utf8(kept.xmp.clone().unwrap()).unwrap();
        assert!(!text.contains("GPS") && !text.contains("48,51"), "{text}");
        assert!(text.contains(r#"dc:format="image/jpeg""#) && text.contains("<dc:title>Portrait</dc:title>"), "{text}");
        assert_eq!(kept.icc, meta.icc);
        assert_eq!(kept.iptc, meta.iptc);
        assert_ne!(kept.exif, meta.exif, "the GPS block is gone from EXIF");
        assert_eq!(meta.clone().filtered(MetadataPolicy::All), meta);
        // Another prefix bound to EXIF's namespace: the location goes all the same; a packet
        // that cannot be parsed goes whole.
        let other = r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:geo="http://ns.adobe.com/exif/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" geo:GPSLatitude="48,51.29N" xmp:Rating="5"><geo:GPSLongitude>2,17.4E</geo:GPSLongitude><geo:ExposureTime>1/125</geo:ExposureTime></rdf:Description></rdf:RDF></x:xmpmeta>"#;
        let stripped = strip_xmp_gps(other).unwrap();
        assert!(!stripped.contains("48,51") && !stripped.contains("2,17"), "{stripped}");
        assert!(stripped.contains(r#"xmp:Rating="5""#) && stripped.contains("1/125"), "{stripped}");
        assert_eq!(strip_xmp_gps("<a><b></a>"), None);
        assert_eq!(meta.filtered(MetadataPolicy::None), Metadata::default());
    }
}
