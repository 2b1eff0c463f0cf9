//! Blend modes and compositing, pure: pixels in, pixels out.
//!
//! The separable blend modes of the W3C Compositing and Blending Level 1 specification (which
//! match Photoshop's, soft light included), plus Photoshop's linear burn, linear dodge, linear
//! light, vivid light and pin light, under the names the retoucher server gives its layers
//! (`softLight`, `linearLight`; matched case-insensitively). Values are channel intensities in
//! 0..=1 as stored (gamma-encoded, as Photoshop blends them).
//!
//! A layer over an opaque backdrop (the photo) is composited by the specification's formula
//! with an opaque backdrop: `co = (1 - αs)·cb + αs·B(cb, cs)`, where `αs` is the layer pixel's
//! alpha times the layer's opacity.

/// How a layer merges onto what lies below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlendMode {
    Normal,
    Multiply,
    Screen,
    Overlay,
    Darken,
    Lighten,
    ColorDodge,
    ColorBurn,
    HardLight,
    SoftLight,
    Difference,
    Exclusion,
    LinearBurn,
    LinearDodge,
    LinearLight,
    VividLight,
    PinLight,
}

impl BlendMode {
    pub const ALL: [BlendMode; 17] = [
        BlendMode::Normal,
        BlendMode::Multiply,
        BlendMode::Screen,
        BlendMode::Overlay,
        BlendMode::Darken,
        BlendMode::Lighten,
        BlendMode::ColorDodge,
        BlendMode::ColorBurn,
        BlendMode::HardLight,
        BlendMode::SoftLight,
        BlendMode::Difference,
        BlendMode::Exclusion,
        BlendMode::LinearBurn,
        BlendMode::LinearDodge,
        BlendMode::LinearLight,
        BlendMode::VividLight,
        BlendMode::PinLight,
    ];

    /// The name as the server spells it in a layer's file name (`blendmode=softLight`).
    pub fn name(self) -> &'static str {
        match self {
            BlendMode::Normal => "normal",
            BlendMode::Multiply => "multiply",
            BlendMode::Screen => "screen",
            BlendMode::Overlay => "overlay",
            BlendMode::Darken => "darken",
            BlendMode::Lighten => "lighten",
            BlendMode::ColorDodge => "colorDodge",
            BlendMode::ColorBurn => "colorBurn",
            BlendMode::HardLight => "hardLight",
            BlendMode::SoftLight => "softLight",
            BlendMode::Difference => "difference",
            BlendMode::Exclusion => "exclusion",
            BlendMode::LinearBurn => "linearBurn",
            BlendMode::LinearDodge => "linearDodge",
            BlendMode::LinearLight => "linearLight",
            BlendMode::VividLight => "vividLight",
            BlendMode::PinLight => "pinLight",
        }
    }

    /// The mode for a name, in any case (`softLight`, `SoftLight`, `softlight`).
    pub fn parse(name: &str) -> Option<BlendMode> {
        BlendMode::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(name.trim()))
    }

    /// `B(cb, cs)`: the blended value of backdrop `cb` and source `cs`, both in 0..=1.
    pub fn blend(self, cb: f32, cs: f32) -> f32 {
        let b = match self {
            BlendMode::Normal => cs,
            BlendMode::Multiply => cb * cs,
            BlendMode::Screen => screen(cb, cs),
            BlendMode::Overlay => hard_light(cs, cb),
            BlendMode::Darken => cb.min(cs),
            BlendMode::Lighten => cb.max(cs),
            BlendMode::ColorDodge => color_dodge(cb, cs),
            BlendMode::ColorBurn => color_burn(cb, cs),
            BlendMode::HardLight => hard_light(cb, cs),
            BlendMode::SoftLight => soft_light(cb, cs),
            BlendMode::Difference => (cb - cs).abs(),
            BlendMode::Exclusion => cb + cs - 2.0 * cb * cs,
            BlendMode::LinearBurn => cb + cs - 1.0,
            BlendMode::LinearDodge => cb + cs,
            BlendMode::LinearLight => cb + 2.0 * cs - 1.0,
            BlendMode::VividLight => {
                if cs <= 0.5 {
                    color_burn(cb, 2.0 * cs)
                } else {
                    color_dodge(cb, 2.0 * cs - 1.0)
                }
            }
            BlendMode::PinLight => {
                if cs <= 0.5 {
                    cb.min(2.0 * cs)
                } else {
                    cb.max(2.0 * cs - 1.0)
                }
            }
        };
        b.clamp(0.0, 1.0)
    }
}

fn screen(cb: f32, cs: f32) -> f32 {
    cb + cs - cb * cs
}

fn hard_light(cb: f32, cs: f32) -> f32 {
    if cs <= 0.5 { cb * (2.0 * cs) } else { screen(cb, 2.0 * cs - 1.0) }
}

fn color_dodge(cb: f32, cs: f32) -> f32 {
    if cb == 0.0 {
        0.0
    } else if cs >= 1.0 {
        1.0
    } else {
        (cb / (1.0 - cs)).min(1.0)
    }
}

fn color_burn(cb: f32, cs: f32) -> f32 {
    if cb >= 1.0 {
        1.0
    } else if cs <= 0.0 {
        0.0
    } else {
        1.0 - ((1.0 - cb) / cs).min(1.0)
    }
}

fn soft_light(cb: f32, cs: f32) -> f32 {
    if cs <= 0.5 {
        cb - (1.0 - 2.0 * cs) * cb * (1.0 - cb)
    } else {
        let d = if cb <= 0.25 { ((16.0 * cb - 12.0) * cb + 4.0) * cb } else { cb.sqrt() };
        cb + (2.0 * cs - 1.0) * (d - cb)
    }
}

/// `co = (1 - αs)·cb + αs·B(cb, cs)` for one pixel, in place (the module's formula).
#[inline(always)]
fn over(backdrop: &mut [f32], layer: &[f32], alpha: f32, blend: impl Fn(f32, f32) -> f32) {
    let a = alpha.clamp(0.0, 1.0);
    for c in 0..3 {
        backdrop[c] = (1.0 - a) * backdrop[c] + a * blend(backdrop[c], layer[c]);
    }
}

/// Composites a row of layer pixels (RGBA, 0..=1) onto a row of backdrop pixels (RGB, 0..=1)
/// in place, with the layer's `opacity`. The rows must hold the same number of pixels.
pub fn composite_row(mode: BlendMode, backdrop: &mut [f32], layer: &[f32], opacity: f32) {
    debug_assert_eq!(backdrop.len() / 3, layer.len() / 4, "rows of different widths");
    // One loop per mode, so each loop has its formula inlined instead of a match per sample.
    macro_rules! per_mode {
        ($($mode:ident),*) => {
            match mode {
                $(BlendMode::$mode => apply_row(backdrop, layer, opacity, |cb, cs| BlendMode::$mode.blend(cb, cs)),)*
            }
        };
    }
    per_mode!(
        Normal,
        Multiply,
        Screen,
        Overlay,
        Darken,
        Lighten,
        ColorDodge,
        ColorBurn,
        HardLight,
        SoftLight,
        Difference,
        Exclusion,
        LinearBurn,
        LinearDodge,
        LinearLight,
        VividLight,
        PinLight
    );
}

#[inline(always)]
fn apply_row(backdrop: &mut [f32], layer: &[f32], opacity: f32, blend: impl Fn(f32, f32) -> f32) {
    for (b, l) in backdrop.chunks_exact_mut(3).zip(layer.chunks_exact(4)) {
        let a = l[3] * opacity;
        if a > 0.0 {
            over(b, l, a, &blend);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One layer pixel over an opaque backdrop pixel: `alpha` is the layer pixel's alpha times the
    /// layer's opacity, in 0..=1.
    fn composite_pixel(mode: BlendMode, backdrop: [f32; 3], layer: [f32; 3], alpha: f32) -> [f32; 3] {
        let mut out = backdrop;
        over(&mut out, &layer, alpha, |cb, cs| mode.blend(cb, cs));
        out
    }

    const EPS: f32 = 1e-6;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn every_mode_follows_its_formula() {
        use BlendMode::*;
        // (mode, cb, cs, expected), worked out by hand from the formulas.
        #[rustfmt::skip]
        let table: &[(BlendMode, f32, f32, f32)] = &[
            (Normal, 0.2, 0.7, 0.7),
            (Multiply, 0.5, 0.4, 0.2),
            (Screen, 0.5, 0.4, 0.7),
            (Overlay, 0.25, 0.8, 0.4),          // cb <= .5: 0.8 · 0.5
            (Overlay, 0.75, 0.2, 0.6),          // cb > .5: screen(0.2, 0.5)
            (Darken, 0.3, 0.6, 0.3),
            (Lighten, 0.3, 0.6, 0.6),
            (ColorDodge, 0.0, 0.9, 0.0),
            (ColorDodge, 0.3, 1.0, 1.0),
            (ColorDodge, 0.3, 0.5, 0.6),
            (ColorDodge, 0.8, 0.5, 1.0),        // capped
            (ColorBurn, 1.0, 0.1, 1.0),
            (ColorBurn, 0.3, 0.0, 0.0),
            (ColorBurn, 0.8, 0.5, 0.6),         // 1 - 0.2/0.5
            (HardLight, 0.8, 0.25, 0.4),        // multiply(0.8, 0.5)
            (HardLight, 0.4, 0.75, 0.7),        // screen(0.4, 0.5)
            (SoftLight, 0.3, 0.5, 0.3),         // neutral
            (SoftLight, 0.5, 0.25, 0.375),      // 0.5 - 0.5·0.5·0.5
            (SoftLight, 0.64, 0.75, 0.72),      // 0.64 + 0.5·(0.8 - 0.64)
            (SoftLight, 0.25, 1.0, 0.5),        // D(0.25) = ((4 - 12)·0.25 + 4)·0.25 = 0.5
            (Difference, 0.3, 0.8, 0.5),
            (Exclusion, 0.5, 0.5, 0.5),
            (LinearBurn, 0.7, 0.6, 0.3),
            (LinearBurn, 0.2, 0.3, 0.0),        // clamped
            (LinearDodge, 0.2, 0.3, 0.5),
            (LinearDodge, 0.7, 0.6, 1.0),       // clamped
            (LinearLight, 0.4, 0.5, 0.4),       // neutral
            (LinearLight, 0.4, 0.7, 0.8),
            (VividLight, 0.8, 0.25, 0.6),       // colorBurn(0.8, 0.5)
            (VividLight, 0.3, 0.75, 0.6),       // colorDodge(0.3, 0.5)
            (PinLight, 0.7, 0.25, 0.5),         // min(0.7, 0.5)
            (PinLight, 0.2, 0.75, 0.5),         // max(0.2, 0.5)
        ];
        for &(mode, cb, cs, expected) in table {
            let got = mode.blend(cb, cs);
            assert!(close(got, expected), "{} ({cb}, {cs}) = {got}, expected {expected}", mode.name());
        }
        let covered: std::collections::HashSet<BlendMode> = table.iter().map(|r| r.0).collect();
        assert_eq!(covered.len(), BlendMode::ALL.len(), "every mode has a row");
    }

    #[test]
    fn names_are_the_servers_in_any_case() {
        for mode in BlendMode::ALL {
            assert_eq!(BlendMode::parse(mode.name()), Some(mode));
            assert_eq!(BlendMode::parse(&mode.name().to_uppercase()), Some(mode));
        }
        assert_eq!(BlendMode::parse("softLight"), Some(BlendMode::SoftLight));
        assert_eq!(BlendMode::parse("Linear Light"), None, "spelled as the server spells it");
        assert_eq!(BlendMode::parse("dissolve"), None);
    }

    #[test]
    fn a_normal_layer_with_full_alpha_replaces_and_transparent_pixels_change_nothing() {
        let mut row = vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        let layer = [0.9, 0.8, 0.7, 1.0, 0.9, 0.8, 0.7, 0.0];
        composite_row(BlendMode::Normal, &mut row, &layer, 1.0);
        assert_eq!(row, [0.9, 0.8, 0.7, 0.4, 0.5, 0.6]);
    }

    #[test]
    fn alpha_and_opacity_mix_the_blend_with_the_backdrop() {
        let out = composite_pixel(BlendMode::Multiply, [0.8, 0.8, 0.8], [0.5, 0.5, 0.5], 0.5 * 0.5);
        // B = 0.4; co = 0.75·0.8 + 0.25·0.4
        assert!(out.iter().all(|&c| close(c, 0.7)), "{out:?}");
        let mut row = [0.8, 0.8, 0.8];
        composite_row(BlendMode::Multiply, &mut row, &[0.5, 0.5, 0.5, 0.5], 0.5);
        assert!(row.iter().all(|&c| close(c, 0.7)), "{row:?}");
    }

    #[test]
    fn a_neutral_soft_light_layer_of_8_bit_grey_changes_no_8_bit_value() {
        let grey = 128.0 / 255.0;
        for v in 0..=255u8 {
            let cb = f32::from(v) / 255.0;
            let out = composite_pixel(BlendMode::SoftLight, [cb; 3], [grey; 3], 1.0);
            assert_eq!((out[0] * 255.0).round() as u8, v, "backdrop {v}");
        }
    }

    #[test]
    fn results_stay_in_range_for_any_input() {
        for mode in BlendMode::ALL {
            for i in 0..=20 {
                for j in 0..=20 {
                    let (cb, cs) = (i as f32 / 20.0, j as f32 / 20.0);
                    let b = mode.blend(cb, cs);
                    assert!((-EPS..=1.0 + EPS).contains(&b), "{} ({cb}, {cs}) = {b}", mode.name());
                }
            }
        }
    }
}
