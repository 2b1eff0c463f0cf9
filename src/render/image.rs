//! Pixels in memory: interleaved RGB or RGBA, 8 or 16 bits per sample, with the row access the
//! compositing needs (a row as 0..=1 floats and back) and the turns EXIF orientation asks for.

/// The samples of an image, 8 or 16 bits each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Samples {
    Eight(Vec<u8>),
    Sixteen(Vec<u16>),
}

/// An image: `channels` is 3 (RGB) or 4 (RGBA, the alpha kept as it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub channels: usize,
    pub samples: Samples,
}

impl Image {
    pub fn is_16_bit(&self) -> bool {
        matches!(self.samples, Samples::Sixteen(_))
    }

    fn row_len(&self) -> usize {
        self.width as usize * self.channels
    }

    /// Row `y`'s colour as RGB floats in 0..=1, into `out` (3 per pixel).
    pub fn read_row(&self, y: usize, out: &mut [f32]) {
        let (len, ch) = (self.row_len(), self.channels);
        match &self.samples {
            Samples::Eight(s) => {
                for (o, p) in out.chunks_exact_mut(3).zip(s[y * len..(y + 1) * len].chunks_exact(ch)) {
                    for c in 0..3 {
                        o[c] = f32::from(p[c]) * (1.0 / 255.0);
                    }
                }
            }
            Samples::Sixteen(s) => {
                for (o, p) in out.chunks_exact_mut(3).zip(s[y * len..(y + 1) * len].chunks_exact(ch)) {
                    for c in 0..3 {
                        o[c] = f32::from(p[c]) * (1.0 / 65535.0);
                    }
                }
            }
        }
    }

    /// Writes RGB floats (0..=1, rounded to the nearest sample) back into row `y`.
    pub fn write_row(&mut self, y: usize, row: &[f32]) {
        let (len, ch) = (self.row_len(), self.channels);
        match &mut self.samples {
            Samples::Eight(s) => {
                for (p, o) in s[y * len..(y + 1) * len].chunks_exact_mut(ch).zip(row.chunks_exact(3)) {
                    for c in 0..3 {
                        p[c] = (o[c].clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
                    }
                }
            }
            Samples::Sixteen(s) => {
                for (p, o) in s[y * len..(y + 1) * len].chunks_exact_mut(ch).zip(row.chunks_exact(3)) {
                    for c in 0..3 {
                        p[c] = (o[c].clamp(0.0, 1.0) * 65535.0 + 0.5) as u16;
                    }
                }
            }
        }
    }

    /// The size once shown with EXIF `orientation` (5..=8 swap width and height).
    pub fn oriented_size(&self, orientation: u16) -> (u32, u32) {
        if (5..=8).contains(&orientation) { (self.height, self.width) } else { (self.width, self.height) }
    }

    /// The image as EXIF `orientation` says to show it (1: as stored).
    pub fn oriented(self, orientation: u16) -> Image {
        if !(2..=8).contains(&orientation) {
            return self;
        }
        let (w, h) = (self.width as usize, self.height as usize);
        let (nw, nh) = self.oriented_size(orientation);
        // Where the shown pixel (x, y) comes from in the stored image.
        let from = move |x: usize, y: usize| -> (usize, usize) {
            match orientation {
                2 => (w - 1 - x, y),
                3 => (w - 1 - x, h - 1 - y),
                4 => (x, h - 1 - y),
                5 => (y, x),
                6 => (y, h - 1 - x),
                7 => (w - 1 - y, h - 1 - x),
                _ => (w - 1 - y, x), // 8
            }
        };
        let ch = self.channels;
        fn turn<T: Copy + Default>(
            s: &[T],
            nw: usize,
            nh: usize,
            w: usize,
            ch: usize,
            from: impl Fn(usize, usize) -> (usize, usize),
        ) -> Vec<T> {
            let mut out = vec![T::default(); nw * nh * ch];
            for y in 0..nh {
                for x in 0..nw {
                    let (sx, sy) = from(x, y);
                    let (o, i) = ((y * nw + x) * ch, (sy * w + sx) * ch);
                    out[o..o + ch].copy_from_slice(&s[i..i + ch]);
                }
            }
            out
        }
        let samples = match &self.samples {
            Samples::Eight(s) => Samples::Eight(turn(s, nw as usize, nh as usize, w, ch, from)),
            Samples::Sixteen(s) => Samples::Sixteen(turn(s, nw as usize, nh as usize, w, ch, from)),
        };
        Image { width: nw, height: nh, channels: ch, samples }
    }

    /// 8-bit samples of the colour channels (RGB, alpha dropped), for JPEG.
    pub fn rgb8(&self) -> std::borrow::Cow<'_, [u8]> {
        match (&self.samples, self.channels) {
            (Samples::Eight(s), 3) => std::borrow::Cow::Borrowed(s),
            (Samples::Eight(s), ch) => s.chunks_exact(ch).flat_map(|p| [p[0], p[1], p[2]]).collect(),
            (Samples::Sixteen(s), ch) => s
                .chunks_exact(ch)
                .flat_map(|p| [p[0], p[1], p[2]].map(|v| ((u32::from(v) * 255 + 32767) / 65535) as u8))
                .collect(),
        }
    }
}

/// Samples of `in_ch` channels per pixel as RGB(A): grey is repeated into red, green and blue
/// (its alpha kept); RGB and RGBA are taken as they are.
pub fn grey_to_rgb<T: Copy>(samples: &[T], in_ch: usize, out_ch: usize, pixels: usize) -> Vec<T> {
    if in_ch == out_ch {
        return samples.to_vec();
    }
    let mut out = Vec::with_capacity(pixels * out_ch);
    for px in samples.chunks_exact(in_ch) {
        out.extend_from_slice(&[px[0]; 3]);
        if in_ch == 2 {
            out.push(px[1]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3 × 2 RGB image whose red sample is the pixel's number, 1..=6, row by row.
    fn numbered() -> Image {
        Image { width: 3, height: 2, channels: 3, samples: Samples::Eight((1..=6).flat_map(|n| [n, 0, 0]).collect()) }
    }

    fn reds(image: &Image) -> Vec<u8> {
        match &image.samples {
            Samples::Eight(s) => s.chunks_exact(image.channels).map(|p| p[0]).collect(),
            Samples::Sixteen(_) => unreachable!(),
        }
    }

    #[test]
    fn every_orientation_turns_the_pixels_as_exif_defines() {
        // Stored:  1 2 3     The EXIF spec's transforms, shown as rows of the result.
        //          4 5 6
        let cases: [(u16, (u32, u32), [u8; 6]); 8] = [
            (1, (3, 2), [1, 2, 3, 4, 5, 6]),
            (2, (3, 2), [3, 2, 1, 6, 5, 4]), // mirrored
            (3, (3, 2), [6, 5, 4, 3, 2, 1]), // 180°
            (4, (3, 2), [4, 5, 6, 1, 2, 3]), // flipped
            (5, (2, 3), [1, 4, 2, 5, 3, 6]), // transposed
            (6, (2, 3), [4, 1, 5, 2, 6, 3]), // 90° clockwise
            (7, (2, 3), [6, 3, 5, 2, 4, 1]), // transverse
            (8, (2, 3), [3, 6, 2, 5, 1, 4]), // 90° counter-clockwise
        ];
        for (orientation, size, expected) in cases {
            let turned = numbered().oriented(orientation);
            assert_eq!((turned.width, turned.height), size, "orientation {orientation}");
            assert_eq!(reds(&turned), expected, "orientation {orientation}");
        }
    }

    #[test]
    fn rows_round_trip_through_floats_at_both_depths() {
        let mut eight = numbered();
        let mut row = vec![0.0; 9];
        eight.read_row(1, &mut row);
        assert_eq!(row[0], 4.0 / 255.0);
        eight.write_row(1, &row);
        assert_eq!(eight, numbered());
        let mut sixteen =
            Image { width: 1, height: 1, channels: 4, samples: Samples::Sixteen(vec![65535, 32768, 1, 7]) };
        let mut px = [0.0; 3];
        sixteen.read_row(0, &mut px);
        sixteen.write_row(0, &px);
        assert_eq!(sixteen.samples, Samples::Sixteen(vec![65535, 32768, 1, 7]), "alpha untouched");
        assert_eq!(sixteen.rgb8().as_ref(), [255, 128, 0]);
    }
}
