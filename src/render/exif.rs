//! The few EXIF edits a finished photo needs, done in place on the TIFF structure so every other
//! tag (camera, lens, dates, maker notes) is kept byte for byte: read the orientation, set it
//! to 1 after the pixels were turned, set the pixel dimensions, and blank the GPS block.
//! Input is the EXIF block from its TIFF header on (`II*\0` or `MM\0*`); a block that does not
//! parse is left as it is (edits are skipped, never guessed).

const ORIENTATION: u16 = 0x0112;
const EXIF_IFD: u16 = 0x8769;
const GPS_IFD: u16 = 0x8825;
const PIXEL_X: u16 = 0xA002;
const PIXEL_Y: u16 = 0xA003;
const IMAGE_WIDTH: u16 = 0x0100;
const IMAGE_LENGTH: u16 = 0x0101;

const SHORT: u16 = 3;
const LONG: u16 = 4;

/// A view of a TIFF block with its byte order.
struct Tiff<'a> {
    bytes: &'a mut [u8],
    little: bool,
}

/// One 12-byte IFD entry: where it sits and what it says.
#[derive(Clone, Copy)]
struct Entry {
    at: usize,
    tag: u16,
    kind: u16,
    count: u32,
}

impl<'a> Tiff<'a> {
    fn new(bytes: &'a mut [u8]) -> Option<Tiff<'a>> {
        let little = match bytes.get(..4)? {
            [b'I', b'I', 42, 0] => true,
            [b'M', b'M', 0, 42] => false,
            _ => return None,
        };
        Some(Tiff { bytes, little })
    }

    fn u16_at(&self, at: usize) -> Option<u16> {
        let b: [u8; 2] = self.bytes.get(at..at + 2)?.try_into().ok()?;
        Some(if self.little { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) })
    }

    fn u32_at(&self, at: usize) -> Option<u32> {
        let b: [u8; 4] = self.bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if self.little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    }

    fn put_u16(&mut self, at: usize, v: u16) {
        let b = if self.little { v.to_le_bytes() } else { v.to_be_bytes() };
        if let Some(slot) = self.bytes.get_mut(at..at + 2) {
            slot.copy_from_slice(&b);
        }
    }

    fn put_u32(&mut self, at: usize, v: u32) {
        let b = if self.little { v.to_le_bytes() } else { v.to_be_bytes() };
        if let Some(slot) = self.bytes.get_mut(at..at + 4) {
            slot.copy_from_slice(&b);
        }
    }

    fn ifd0(&self) -> Option<usize> {
        self.u32_at(4).map(|o| o as usize)
    }

    /// The entries of the IFD at `offset` (none when it does not fit in the block).
    fn entries(&self, offset: usize) -> Vec<Entry> {
        let Some(count) = self.u16_at(offset) else { return Vec::new() };
        let count = usize::from(count);
        if offset + 2 + count * 12 > self.bytes.len() {
            return Vec::new();
        }
        (0..count)
            .filter_map(|i| {
                let at = offset + 2 + i * 12;
                Some(Entry { at, tag: self.u16_at(at)?, kind: self.u16_at(at + 2)?, count: self.u32_at(at + 4)? })
            })
            .collect()
    }

    fn find(&self, ifd: usize, tag: u16) -> Option<Entry> {
        self.entries(ifd).into_iter().find(|e| e.tag == tag)
    }

    /// The value of a one-count SHORT or LONG entry.
    fn number(&self, e: Entry) -> Option<u32> {
        match (e.kind, e.count) {
            (SHORT, 1) => self.u16_at(e.at + 8).map(u32::from),
            (LONG, 1) => self.u32_at(e.at + 8),
            _ => None,
        }
    }

    /// Overwrites a one-count SHORT or LONG entry (a SHORT too small for `v` is left alone).
    fn set_number(&mut self, e: Entry, v: u32) {
        match (e.kind, e.count) {
            (SHORT, 1) => {
                if let Ok(v) = u16::try_from(v) {
                    self.put_u16(e.at + 8, v);
                }
            }
            (LONG, 1) => self.put_u32(e.at + 8, v),
            _ => {}
        }
    }

    fn sub_ifd(&self, tag: u16) -> Option<usize> {
        let ifd0 = self.ifd0()?;
        self.find(ifd0, tag).and_then(|e| self.u32_at(e.at + 8)).map(|o| o as usize)
    }
}

/// The Orientation tag (1..=8), if the block has one.
pub fn orientation(exif: &[u8]) -> Option<u16> {
    let mut copy = exif.to_vec();
    let tiff = Tiff::new(&mut copy)?;
    let e = tiff.find(tiff.ifd0()?, ORIENTATION)?;
    tiff.number(e).and_then(|v| u16::try_from(v).ok()).filter(|v| (1..=8).contains(v))
}

/// Sets Orientation (when present) and the pixel dimensions of the image (the EXIF block's
/// PixelXDimension/PixelYDimension, and ImageWidth/ImageLength when IFD0 has them).
pub fn set_orientation_and_size(exif: &mut [u8], orientation: u16, width: u32, height: u32) {
    let Some(mut tiff) = Tiff::new(exif) else { return };
    let Some(ifd0) = tiff.ifd0() else { return };
    let updates =
        [(ifd0, ORIENTATION, u32::from(orientation)), (ifd0, IMAGE_WIDTH, width), (ifd0, IMAGE_LENGTH, height)];
    let exif_ifd = tiff.sub_ifd(EXIF_IFD);
    let sub_updates = exif_ifd.map(|ifd| [(ifd, PIXEL_X, width), (ifd, PIXEL_Y, height)]);
    for (ifd, tag, value) in updates.into_iter().chain(sub_updates.into_iter().flatten()) {
        if let Some(e) = tiff.find(ifd, tag) {
            tiff.set_number(e, value);
        }
    }
}

/// Removes the location: the GPS block's entries and the values they point to are zeroed, and
/// IFD0's pointer to it is dropped, so no reader finds a position.
pub fn strip_gps(exif: &mut [u8]) {
    let Some(mut tiff) = Tiff::new(exif) else { return };
    let Some(ifd0) = tiff.ifd0() else { return };
    let Some(pointer) = tiff.find(ifd0, GPS_IFD) else { return };
    if let Some(gps) = tiff.u32_at(pointer.at + 8).map(|o| o as usize) {
        for e in tiff.entries(gps) {
            let size = value_size(e.kind).saturating_mul(e.count as usize);
            if size > 4
                && let Some(at) = tiff.u32_at(e.at + 8).map(|o| o as usize)
                && let Some(slot) = tiff.bytes.get_mut(at..at.saturating_add(size))
            {
                slot.fill(0);
            }
        }
        let n = tiff.entries(gps).len();
        if let Some(slot) = tiff.bytes.get_mut(gps + 2..gps + 2 + n * 12) {
            slot.fill(0);
        }
        tiff.put_u16(gps, 0);
    }
    // Drop the pointer entry from IFD0: later entries and the next-IFD offset move up.
    let entries = tiff.entries(ifd0);
    let end = ifd0 + 2 + entries.len() * 12 + 4;
    if end <= tiff.bytes.len() {
        tiff.bytes.copy_within(pointer.at + 12..end, pointer.at);
        tiff.bytes[end - 12..end].fill(0);
        tiff.put_u16(ifd0, entries.len() as u16 - 1);
    }
}

/// One IFD entry lifted out of its block: its value's bytes in little-endian order, so it can be
/// laid out again in another file (a TIFF finished photo, or an EXIF block made from a TIFF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub tag: u16,
    pub kind: u16,
    pub count: u32,
    pub value: Vec<u8>,
}

/// The fields an EXIF block carries: IFD0's (without its pointers), the EXIF sub-IFD's (without
/// the interoperability pointer, whose block is not carried) and the GPS sub-IFD's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pub main: Vec<Field>,
    pub exif: Vec<Field>,
    pub gps: Vec<Field>,
}

/// IFD0 tags that describe the picture or its making (not how its pixels are stored), carried
/// between files: description, make, model, orientation, resolution, software, date, artist,
/// host computer, copyright.
pub const DESCRIPTIVE: [u16; 12] = [270, 271, 272, 274, 282, 283, 296, 305, 306, 315, 316, 33432];
const INTEROP_IFD: u16 = 0xA005;

/// Swaps each value of a field between byte orders (a RATIONAL is two LONGs).
pub fn swap_values(kind: u16, bytes: &mut [u8]) {
    let unit = match kind {
        3 | 8 => 2,
        4 | 9 | 11 | 5 | 10 | 13 => 4,
        12 | 16 | 17 | 18 => 8,
        _ => return,
    };
    for value in bytes.chunks_exact_mut(unit) {
        value.reverse();
    }
}

/// The fields of an EXIF block; `None` when it does not parse.
pub fn fields(exif: &[u8]) -> Option<Fields> {
    let mut copy = exif.to_vec();
    let tiff = Tiff::new(&mut copy)?;
    let read = |ifd: usize, keep: &dyn Fn(u16) -> bool| -> Vec<Field> {
        tiff.entries(ifd)
            .into_iter()
            .filter(|e| keep(e.tag))
            .filter_map(|e| {
                let size = value_size(e.kind).checked_mul(e.count as usize)?;
                let at = if size <= 4 { e.at + 8 } else { tiff.u32_at(e.at + 8)? as usize };
                let mut value = tiff.bytes.get(at..at.checked_add(size)?)?.to_vec();
                if !tiff.little {
                    swap_values(e.kind, &mut value);
                }
                Some(Field { tag: e.tag, kind: e.kind, count: e.count, value })
            })
            .collect()
    };
    let ifd0 = tiff.ifd0()?;
    let main = read(ifd0, &|tag| tag != EXIF_IFD && tag != GPS_IFD);
    let exif = tiff.sub_ifd(EXIF_IFD).map(|ifd| read(ifd, &|tag| tag != INTEROP_IFD)).unwrap_or_default();
    let gps = tiff.sub_ifd(GPS_IFD).map(|ifd| read(ifd, &|_| true)).unwrap_or_default();
    Some(Fields { main, exif, gps })
}

/// An EXIF block (little-endian TIFF structure) holding `fields`.
pub fn build(fields: &Fields) -> Vec<u8> {
    /// Lays out one IFD at the end of `out`: its entries, then the values that do not fit in
    /// an entry. Returns where each pointer entry's value sits, to be filled in later.
    fn layout(out: &mut Vec<u8>, entries: &[Field], pointers: &[u16]) -> Vec<(u16, usize)> {
        let start = out.len();
        let count = entries.len() + pointers.len();
        let mut all: Vec<(u16, u16, u32, &[u8])> =
            entries.iter().map(|f| (f.tag, f.kind, f.count, f.value.as_slice())).collect();
        all.extend(pointers.iter().map(|&tag| (tag, LONG, 1, &[0u8; 4][..])));
        all.sort_by_key(|e| e.0);
        let mut data_at = start + 2 + count * 12 + 4;
        let mut data = Vec::new();
        let mut slots = Vec::new();
        out.extend_from_slice(&(count as u16).to_le_bytes());
        for (tag, kind, n, value) in all {
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&n.to_le_bytes());
            if pointers.contains(&tag) {
                slots.push((tag, out.len()));
            }
            if value.len() <= 4 {
                let mut inline = [0u8; 4];
                inline[..value.len()].copy_from_slice(value);
                out.extend_from_slice(&inline);
            } else {
                out.extend_from_slice(&(data_at as u32).to_le_bytes());
                data.extend_from_slice(value);
                data_at += value.len();
                if value.len() % 2 == 1 {
                    data.push(0);
                    data_at += 1;
                }
            }
        }
        out.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
        out.extend_from_slice(&data);
        slots
    }
    let mut out = b"II*\0\x08\0\0\0".to_vec();
    let mut pointers = Vec::new();
    if !fields.exif.is_empty() {
        pointers.push(EXIF_IFD);
    }
    if !fields.gps.is_empty() {
        pointers.push(GPS_IFD);
    }
    let slots = layout(&mut out, &fields.main, &pointers);
    for (tag, slot) in slots {
        let at = out.len() as u32;
        out[slot..slot + 4].copy_from_slice(&at.to_le_bytes());
        layout(&mut out, if tag == EXIF_IFD { &fields.exif } else { &fields.gps }, &[]);
    }
    out
}

/// Bytes per value of a TIFF type.
fn value_size(kind: u16) -> usize {
    match kind {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 => 4,
        5 | 10 | 12 => 8,
        _ => 0,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A little- or big-endian EXIF block: IFD0 with Orientation, ImageWidth (LONG), an EXIF
    /// pointer and a GPS pointer; the EXIF IFD with PixelX/PixelY (SHORT); a GPS IFD with a
    /// latitude (three RATIONALs, stored out of line).
    pub(crate) fn sample(little: bool, orientation: u16) -> Vec<u8> {
        let mut b: Vec<u8> = Vec::new();
        let u16b = |v: u16| if little { v.to_le_bytes() } else { v.to_be_bytes() };
        let u32b = |v: u32| if little { v.to_le_bytes() } else { v.to_be_bytes() };
        b.extend_from_slice(if little { b"II*\0" } else { b"MM\0*" });
        b.extend_from_slice(&u32b(8));
        let entry = |b: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]| {
            b.extend_from_slice(&u16b(tag));
            b.extend_from_slice(&u16b(kind));
            b.extend_from_slice(&u32b(count));
            b.extend_from_slice(&value);
        };
        let short = |v: u16| {
            let mut x = [0u8; 4];
            x[..2].copy_from_slice(&u16b(v));
            x
        };
        // IFD0 at 8: 4 entries → ends at 8 + 2 + 48 + 4 = 62.
        b.extend_from_slice(&u16b(4));
        entry(&mut b, IMAGE_WIDTH, LONG, 1, u32b(4000));
        entry(&mut b, ORIENTATION, SHORT, 1, short(orientation));
        entry(&mut b, EXIF_IFD, LONG, 1, u32b(62));
        entry(&mut b, GPS_IFD, LONG, 1, u32b(92));
        b.extend_from_slice(&u32b(0));
        // EXIF IFD at 62: 2 entries → ends at 62 + 2 + 24 + 4 = 92.
        b.extend_from_slice(&u16b(2));
        entry(&mut b, PIXEL_X, SHORT, 1, short(4000));
        entry(&mut b, PIXEL_Y, SHORT, 1, short(3000));
        b.extend_from_slice(&u32b(0));
        // GPS IFD at 92: 1 entry → ends at 92 + 2 + 12 + 4 = 110; latitude at 110 (24 bytes).
        b.extend_from_slice(&u16b(1));
        entry(&mut b, 0x0002, 5, 3, u32b(110));
        b.extend_from_slice(&u32b(0));
        for v in [48u32, 1, 51, 1, 2900, 100] {
            b.extend_from_slice(&u32b(v));
        }
        b
    }

    /// The fields of [`sample`], for other modules' tests.
    pub(crate) fn tests_fields() -> Fields {
        fields(&sample(false, 6)).expect("the sample parses")
    }

    fn read_number(exif: &mut [u8], sub: Option<u16>, tag: u16) -> Option<u32> {
        let tiff = Tiff::new(exif)?;
        let ifd = match sub {
            None => tiff.ifd0()?,
            Some(sub) => tiff.sub_ifd(sub)?,
        };
        tiff.find(ifd, tag).and_then(|e| tiff.number(e))
    }

    #[test]
    fn orientation_and_size_are_read_and_written_in_both_byte_orders() {
        for little in [true, false] {
            let mut exif = sample(little, 6);
            assert_eq!(orientation(&exif), Some(6));
            set_orientation_and_size(&mut exif, 1, 3000, 4000);
            assert_eq!(orientation(&exif), Some(1));
            assert_eq!(read_number(&mut exif, None, IMAGE_WIDTH), Some(3000));
            assert_eq!(read_number(&mut exif, Some(EXIF_IFD), PIXEL_X), Some(3000));
            assert_eq!(read_number(&mut exif, Some(EXIF_IFD), PIXEL_Y), Some(4000));
        }
    }

    #[test]
    fn stripping_gps_drops_the_pointer_and_zeroes_the_position() {
        for little in [true, false] {
            let mut exif = sample(little, 3);
            let latitude_bytes = exif[110..134].to_vec();
            strip_gps(&mut exif);
            assert_eq!(read_number(&mut exif, None, GPS_IFD), None, "no GPS pointer");
            assert!(exif[110..134].iter().all(|&b| b == 0), "latitude zeroed (was {latitude_bytes:?})");
            // The rest still reads.
            assert_eq!(orientation(&exif), Some(3));
            assert_eq!(read_number(&mut exif, Some(EXIF_IFD), PIXEL_Y), Some(3000));
        }
    }

    #[test]
    fn a_block_that_does_not_parse_is_left_alone() {
        let mut junk = b"not exif at all".to_vec();
        assert_eq!(orientation(&junk), None);
        set_orientation_and_size(&mut junk, 1, 10, 10);
        strip_gps(&mut junk);
        assert_eq!(junk, b"not exif at all");
        let mut truncated = sample(true, 6)[..40].to_vec();
        let before = truncated.clone();
        strip_gps(&mut truncated);
        assert_eq!(orientation(&truncated), None, "IFD0 runs past the end");
        assert_eq!(truncated, before);
    }

    #[test]
    fn fields_lifted_from_either_byte_order_build_a_block_that_reads_the_same() {
        let little = fields(&sample(true, 6)).unwrap();
        assert_eq!(fields(&sample(false, 6)).unwrap(), little, "values come out little-endian");
        assert_eq!(little.main.iter().map(|f| f.tag).collect::<Vec<_>>(), [IMAGE_WIDTH, ORIENTATION]);
        assert_eq!(little.gps[0].value.len(), 24, "three RATIONALs, out of line");
        let mut built = build(&little);
        assert_eq!(fields(&built).unwrap(), little);
        assert_eq!(orientation(&built), Some(6));
        assert_eq!(read_number(&mut built, Some(EXIF_IFD), PIXEL_Y), Some(3000));
        let latitude: Vec<u32> =
            little.gps[0].value.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(latitude, [48, 1, 51, 1, 2900, 100]);
    }
}
